use ndarray::{s, Array2};

use super::*;
use crate::kernels::gemm::reference_gemm;

/// Every level this CPU runs, lowest first: each test runs every kernel it has.
fn levels() -> impl Iterator<Item = Isa> {
    Isa::ALL.into_iter().filter(|&isa| isa <= Isa::detected())
}

fn filled(rows: usize, cols: usize, seed: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| ((i * 31 + j * 17 + seed * 7) % 23) as f32 / 7.0 - 1.5)
}

/// `act(a·b + bias)` by the textbook loop.
fn expected(a: &Array2<f32>, b: ArrayView2<f32>, bias: Option<&[f32]>, act: Activation) -> Array2<f32> {
    let mut want = Array2::zeros((a.nrows(), b.ncols()));
    reference_gemm(1.0, a.view(), b, 0.0, want.view_mut()).unwrap();
    for mut row in want.rows_mut() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = act.apply(*v + bias.map_or(0.0, |b| b[j]));
        }
    }
    want
}

/// `got` against [`expected`], within the rounding bound of a k-term f32 sum: k·ε times the
/// sum of the terms' magnitudes (both sides round).
fn assert_near(got: &[f32], a: &Array2<f32>, b: ArrayView2<f32>, bias: Option<&[f32]>, act: Activation) {
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    let want = expected(a, b, bias, act);
    let magnitude = expected(&a.mapv(f32::abs), b.mapv(f32::abs).view(), None, Activation::None);
    for (i, ((g, w), size)) in got.iter().zip(want.iter()).zip(magnitude.iter()).enumerate() {
        assert!((g - w).abs() <= k as f32 * f32::EPSILON * (1.0 + size), "{m}x{k}x{n} at {i}: {g} vs {w}");
    }
}

fn check(packed: &PackedMatrix, a: &Array2<f32>, b: ArrayView2<f32>, bias: Option<&[f32]>, act: Activation) {
    // NaN in every slot: a slot left unwritten fails the comparison.
    let mut got = vec![f32::NAN; a.nrows() * b.ncols()];
    let values = packed.matmul(a.as_slice().unwrap(), a.nrows(), (&mut got[..]).into(), bias, act).unwrap();
    assert_near(values, a, b, bias, act);
}

#[test]
fn every_level_matches_the_reference_on_every_tail() {
    // Rows around the 6- and 8-row blocks, columns around the 8-lane vectors, the 16-column
    // part and the 48-column panel, depths around the 128-deep slice, and products large
    // enough to run in parallel.
    let shapes = [
        (1, 1, 1),
        (3, 5, 7),
        (6, 16, 16),
        (8, 128, 32),
        (9, 129, 33),
        (13, 40, 9),
        (5, 17, 24),
        (12, 31, 47),
        (8, 20, 48),
        (7, 33, 49),
        (9, 130, 95),
        (17, 300, 65),
        (7, 64, 100),
        (70, 260, 500),
        (128, 257, 96),
    ];
    for &(m, k, n) in &shapes {
        let a = filled(m, k, 1);
        let b = filled(k, n, 2);
        let bias: Vec<f32> = (0..n).map(|j| j as f32 / 10.0 - 1.0).collect();
        for isa in levels() {
            let packed = PackedMatrix::for_isa(b.view(), isa);
            assert_eq!((packed.rows(), packed.cols()), (k, n));
            check(&packed, &a, b.view(), None, Activation::None);
            check(&packed, &a, b.view(), Some(&bias), Activation::GeluTanh);
        }
    }
}

#[test]
fn transposed_operand_is_packed_by_its_strides() {
    let stored = filled(45, 70, 3); // n×k, as a Gemm with transB keeps it
    let b = stored.t();
    let a = filled(20, 70, 4);
    let reversed = filled(70, 45, 5);
    let flipped = reversed.slice(s![..;-1, ..]);
    for isa in levels() {
        check(&PackedMatrix::for_isa(b, isa), &a, b, None, Activation::GeluErf);
        check(&PackedMatrix::for_isa(flipped, isa), &a, flipped, None, Activation::None);
    }
}

#[test]
fn empty_depth_leaves_bias_and_mismatched_sizes_are_errors() {
    for isa in levels() {
        let b = Array2::<f32>::zeros((0, 3));
        let packed = PackedMatrix::for_isa(b.view(), isa);
        let mut out = vec![f32::NAN; 6];
        packed.matmul(&[], 2, (&mut out[..]).into(), Some(&[1.0, 2.0, 3.0]), Activation::None).unwrap();
        assert_eq!(out, [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
        let packed = PackedMatrix::for_isa(filled(4, 3, 1).view(), isa);
        let bad = |a: &[f32], out: &mut [f32], bias: Option<&[f32]>| packed.matmul(a, 2, out.into(), bias, Activation::None).is_err();
        assert!(bad(&[0.0; 7], &mut [0.0; 6], None));
        assert!(bad(&[0.0; 8], &mut [0.0; 5], None));
        assert!(bad(&[0.0; 8], &mut [0.0; 6], Some(&[0.0; 2])));
    }
}

#[test]
fn the_public_constructor_packs_for_the_current_level() {
    let b = filled(5, 40, 8);
    let packed = PackedMatrix::new(b.view());
    #[cfg(target_arch = "x86_64")]
    assert_eq!(matches!(packed.layout, Layout::Panels(_)), crate::kernels::isa::avx2());
    check(&packed, &filled(3, 5, 9), b.view(), None, Activation::None);
}

#[test]
fn decoded_rows_match_the_reference_on_every_tail() {
    // Depths around the 8x8 and 16x16 transposes and the 128-deep slice, rows of W around the
    // panel; every level with a kernel runs, the portable one declines.
    let shapes = [(1, 1, 1), (5, 16, 48), (7, 8, 48), (6, 23, 32), (9, 40, 70), (20, 129, 64), (33, 300, 97), (64, 264, 160), (3, 16, 49)];
    for (isa, &(m, k, n)) in levels().flat_map(|isa| shapes.iter().map(move |s| (isa, s))) {
        let a = filled(m, k, 6);
        let w = filled(n, k, 7); // n rows of k, as compressed weights decode
        let rows_of_w = w.as_slice().unwrap();
        let decode = |_: &mut (), first: usize, rows: &mut [f32]| {
            rows.copy_from_slice(&rows_of_w[first * k..first * k + rows.len()]);
        };
        let mut got = vec![f32::NAN; m * n];
        let ran = matmul_decoded(isa, a.as_slice().unwrap(), m, k, n, (&mut got[..]).into(), || (), decode);
        let kernel = isa >= Isa::Avx2 && cfg!(target_arch = "x86_64");
        assert_eq!((ran.is_ok(), decodes_by_panels(isa)), (kernel, kernel), "{isa}");
        if let Ok(values) = ran {
            assert_near(values, &a, w.t(), None, Activation::None);
        }
        let mut small = [0.0; 4];
        assert!(matmul_decoded(isa, &[0.0; 3], 2, 2, 2, (&mut small[..]).into(), || (), |_, _, _| ()).is_err());
    }
}

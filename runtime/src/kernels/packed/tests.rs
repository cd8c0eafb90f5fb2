use ndarray::{s, Array2};

use super::*;
use crate::kernels::gemm::reference_gemm;

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

fn check(packed: &PackedMatrix, a: &Array2<f32>, b: ArrayView2<f32>, bias: Option<&[f32]>, act: Activation) {
    let (m, n) = (a.nrows(), b.ncols());
    let want = expected(a, b, bias, act);
    // The rounding of a sum scales with the sum of its terms' magnitudes.
    let magnitude = expected(&a.mapv(f32::abs), b.mapv(f32::abs).view(), None, Activation::None);
    let mut got = vec![f32::NAN; m * n];
    packed.matmul(a.as_slice().unwrap(), m, &mut got, bias, act).unwrap();
    for (i, ((g, w), size)) in got.iter().zip(want.iter()).zip(magnitude.iter()).enumerate() {
        assert!((g - w).abs() <= 1e-6 * (1.0 + size),  "{m}x{}x{n} at {i}: {g} vs {w}", b.nrows());
    }
}

#[test]
fn packed_and_plain_match_the_reference_on_every_tail() {
    // Rows around the 8-row block, columns around the 32-column panel, depths around the
    // 128-deep slice, and one product large enough to run in parallel.
    let shapes = [(1, 1, 1), (3, 5, 7), (8, 128, 32), (9, 129, 33), (17, 300, 65), (7, 64, 100), (70, 260, 500)];
    for &(m, k, n) in &shapes {
        let a = filled(m, k, 1);
        let b = filled(k, n, 2);
        let bias: Vec<f32> = (0..n).map(|j| j as f32 / 10.0 - 1.0).collect();
        for packed in [PackedMatrix::new(b.view()), PackedMatrix::plain(b.view())] {
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
    check(&PackedMatrix::new(b), &a, b, None, Activation::GeluErf);
    let reversed = filled(70, 45, 5);
    let b = reversed.slice(s![..;-1, ..]);
    check(&PackedMatrix::new(b), &a, b, None, Activation::None);
}

#[test]
fn empty_depth_leaves_bias_and_mismatched_sizes_are_errors() {
    let b = Array2::<f32>::zeros((0, 3));
    let packed = PackedMatrix::new(b.view());
    let mut out = vec![f32::NAN; 6];
    packed.matmul(&[], 2, &mut out, Some(&[1.0, 2.0, 3.0]), Activation::None).unwrap();
    assert_eq!(out, [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
    let packed = PackedMatrix::new(filled(4, 3, 1).view());
    assert!(packed.matmul(&[0.0; 7], 2, &mut [0.0; 6], None, Activation::None).is_err());
    assert!(packed.matmul(&[0.0; 8], 2, &mut [0.0; 5], None, Activation::None).is_err());
    assert!(packed.matmul(&[0.0; 8], 2, &mut [0.0; 6], Some(&[0.0; 2]), Activation::None).is_err());
}

//! Matrix multiply on strided 2-D views, through the `gemm` crate.
//!
//! Views keep their strides, so a transposed or broadcast operand (`.t()`, a stride-0 batch)
//! is read in place, never copied.

use gemm::Parallelism;
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

use crate::error::{op_err, Result};

/// Products with fewer multiply-adds than this run on the calling thread.
const PARALLEL_MIN_WORK: usize = 1 << 18;

/// The element types [`gemm`] multiplies.
pub trait GemmScalar:
    Copy + PartialEq + Send + Sync + 'static + std::ops::Add<Output = Self> + std::ops::Mul<Output = Self>
{
    /// Additive identity.
    const ZERO: Self;
    /// Multiplicative identity.
    const ONE: Self;
}

impl GemmScalar for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

impl GemmScalar for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

fn check_dims<T>(a: &ArrayView2<T>, b: &ArrayView2<T>, c: &ArrayViewMut2<T>) -> Result<()> {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    if k != k2 || c.dim() != (m, n) {
        return Err(op_err(format!(
            "matrix multiply of {m}x{k} by {k2}x{n} into {:?}: dimensions disagree",
            c.dim()
        )));
    }
    Ok(())
}

/// `c = alpha·(a·b) + beta·c` for `a` m×k, `b` k×n and `c` m×n, on any strides. When `beta` is
/// zero, `c` is only written (NaNs in it do not leak into the result). Large products use
/// rayon's threads.
pub fn gemm<T: GemmScalar>(
    alpha: T,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    beta: T,
    c: ArrayViewMut2<T>,
) -> Result<()> {
    let work = a.nrows().saturating_mul(a.ncols()).saturating_mul(b.ncols());
    let threads = rayon::current_num_threads();
    let parallelism = if work < PARALLEL_MIN_WORK || threads < 2 {
        Parallelism::None
    } else {
        Parallelism::Rayon(threads)
    };
    gemm_with(alpha, a, b, beta, c, parallelism)
}

/// One product of a batch: `c = a·b`.
pub struct GemmTask<'a, T> {
    /// Left operand, m×k.
    pub a: ArrayView2<'a, T>,
    /// Right operand, k×n.
    pub b: ArrayView2<'a, T>,
    /// Destination, m×n, only written.
    pub c: ArrayViewMut2<'a, T>,
}

/// Runs independent products `c = a·b`. With at least as many products as threads, the
/// products are spread over rayon's threads, each single-threaded; otherwise each product
/// is parallel inside.
pub fn gemm_batch<T: GemmScalar>(tasks: Vec<GemmTask<'_, T>>) -> Result<()> {
    let one = |t: GemmTask<'_, T>, p| gemm_with(T::ONE, t.a, t.b, T::ZERO, t.c, p);
    if tasks.len() >= rayon::current_num_threads() && tasks.len() > 1 {
        tasks.into_par_iter().try_for_each(|t| one(t, Parallelism::None))
    } else {
        tasks.into_iter().try_for_each(|t| gemm(T::ONE, t.a, t.b, T::ZERO, t.c))
    }
}

fn gemm_with<T: GemmScalar>(
    alpha: T,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    beta: T,
    mut c: ArrayViewMut2<T>,
    parallelism: Parallelism,
) -> Result<()> {
    check_dims(&a, &b, &c)?;
    let (m, k) = a.dim();
    let n = b.ncols();
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        // An empty sum: only the beta term remains.
        c.mapv_inplace(|v| if beta == T::ZERO { T::ZERO } else { beta * v });
        return Ok(());
    }
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    let (c_rs, c_cs) = (c.strides()[0], c.strides()[1]);
    // SAFETY: the dimensions were checked above, and each pointer with its strides addresses
    // exactly the elements of its view, which ndarray guarantees to be in bounds. `c` is a
    // unique mutable view, so the destination aliases neither operand. The crate computes
    // dst = alpha·dst + beta·(lhs·rhs), hence the swapped scalars; it reads dst only when
    // `read_dst` is set.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs,
            c_rs,
            beta != T::ZERO,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

/// The same contract as [`gemm`], by the textbook triple loop: the oracle for tests.
pub fn reference_gemm<T: GemmScalar>(
    alpha: T,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    beta: T,
    mut c: ArrayViewMut2<T>,
) -> Result<()> {
    check_dims(&a, &b, &c)?;
    for ((i, j), out) in c.indexed_iter_mut() {
        let dot = a
            .row(i)
            .iter()
            .zip(b.column(j))
            .fold(T::ZERO, |acc, (&x, &y)| acc + x * y);
        let scaled = alpha * dot;
        *out = if beta == T::ZERO { scaled } else { scaled + beta * *out };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array2};

    fn filled(rows: usize, cols: usize, seed: u32) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |(i, j)| {
            let v = (i as u32 * 31 + j as u32 * 17 + seed * 7) % 23;
            v as f32 / 7.0 - 1.5
        })
    }

    fn assert_close(got: &Array2<f32>, want: &Array2<f32>) {
        assert_eq!(got.dim(), want.dim());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{g} vs {w}");
        }
    }

    #[test]
    fn reference_on_a_hand_computed_product() {
        let a = ndarray::arr2(&[[1.0f32, 2.0], [3.0, 4.0]]);
        let b = ndarray::arr2(&[[5.0f32, 6.0], [7.0, 8.0]]);
        let mut c = ndarray::arr2(&[[1.0f32, 1.0], [1.0, 1.0]]);
        reference_gemm(2.0, a.view(), b.view(), 0.5, c.view_mut()).unwrap();
        assert_eq!(c, ndarray::arr2(&[[38.5f32, 44.5], [86.5, 100.5]]));
    }

    #[test]
    fn matches_reference_for_contiguous_transposed_and_reversed_views() {
        for &(m, k, n) in &[(1, 1, 1), (3, 5, 2), (17, 33, 9), (64, 80, 96), (130, 70, 40)] {
            let a = filled(m, k, 1);
            let bt = filled(n, k, 2); // b stored transposed
            let b_rev = filled(k, n, 3);
            let b_rev = b_rev.slice(s![..;-1, ..]); // negative row stride
            for b in [bt.t(), b_rev] {
                let mut want = filled(m, n, 4);
                let mut got = want.clone();
                reference_gemm(1.5, a.view(), b, 0.25, want.view_mut()).unwrap();
                gemm(1.5, a.view(), b, 0.25, got.view_mut()).unwrap();
                assert_close(&got, &want);
            }
        }
    }

    #[test]
    fn broadcast_operand_and_zero_beta_ignore_nan_destination() {
        let row = filled(1, 8, 5);
        let a = row.broadcast((6, 8)).unwrap(); // stride-0 rows
        let b = filled(8, 4, 6);
        let mut want = Array2::<f32>::zeros((6, 4));
        reference_gemm(1.0, a, b.view(), 0.0, want.view_mut()).unwrap();
        let mut got = Array2::from_elem((6, 4), f32::NAN);
        gemm(1.0, a, b.view(), 0.0, got.view_mut()).unwrap();
        assert_close(&got, &want);
    }

    #[test]
    fn empty_inner_dimension_leaves_beta_term() {
        let a = Array2::<f32>::zeros((2, 0));
        let b = Array2::<f32>::zeros((0, 3));
        let mut c = Array2::from_elem((2, 3), 2.0f32);
        gemm(1.0, a.view(), b.view(), 0.5, c.view_mut()).unwrap();
        assert_eq!(c, Array2::from_elem((2, 3), 1.0f32));
    }

    #[test]
    fn batch_matches_reference_serial_and_parallel() {
        for count in [1, 3, 16] {
            let a: Vec<_> = (0..count).map(|i| filled(9, 7, i)).collect();
            let b: Vec<_> = (0..count).map(|i| filled(7, 5, i + 100)).collect();
            let mut got: Vec<_> = (0..count).map(|_| Array2::<f32>::from_elem((9, 5), f32::NAN)).collect();
            let tasks = a
                .iter()
                .zip(&b)
                .zip(got.iter_mut())
                .map(|((a, b), c)| GemmTask { a: a.view(), b: b.view(), c: c.view_mut() })
                .collect();
            gemm_batch(tasks).unwrap();
            for i in 0..count as usize {
                let mut want = Array2::<f32>::zeros((9, 5));
                reference_gemm(1.0, a[i].view(), b[i].view(), 0.0, want.view_mut()).unwrap();
                assert_close(&got[i], &want);
            }
        }
    }

    #[test]
    fn mismatched_dimensions_are_an_error() {
        let a = filled(2, 3, 1);
        let b = filled(4, 2, 1);
        let mut c = Array2::<f32>::zeros((2, 2));
        assert!(gemm(1.0, a.view(), b.view(), 0.0, c.view_mut()).is_err());
        assert!(reference_gemm(1.0, a.view(), b.view(), 0.0, c.view_mut()).is_err());
    }
}

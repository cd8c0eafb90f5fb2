//! Matrix multiply on strided 2-D views, through the `gemm` crate.
//!
//! Views keep their strides, so a transposed or broadcast operand (`.t()`, a stride-0 batch)
//! is read in place, never copied.

use ndarray::{ArrayView2, ArrayViewMut2};

use crate::error::{op_err, Result};

/// Products with fewer multiply-adds than this run on the calling thread.
const PARALLEL_MIN_WORK: usize = 1 << 18;

/// The element types [`gemm`] multiplies.
pub trait GemmScalar:
    Copy + PartialEq + Send + Sync + 'static + std::ops::Add<Output = Self> + std::ops::Mul<Output = Self>
{
    /// Additive identity.
    const ZERO: Self;
}

impl GemmScalar for f32 {
    const ZERO: Self = 0.0;
}

impl GemmScalar for f64 {
    const ZERO: Self = 0.0;
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
/// zero, `c` is only written (NaNs in it do not leak into the result).
pub fn gemm<T: GemmScalar>(
    alpha: T,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    beta: T,
    mut c: ArrayViewMut2<T>,
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
    let work = m.saturating_mul(n).saturating_mul(k);
    let threads = rayon::current_num_threads();
    let parallelism = if work < PARALLEL_MIN_WORK || threads < 2 {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(threads)
    };
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
    fn mismatched_dimensions_are_an_error() {
        let a = filled(2, 3, 1);
        let b = filled(4, 2, 1);
        let mut c = Array2::<f32>::zeros((2, 2));
        assert!(gemm(1.0, a.view(), b.view(), 0.0, c.view_mut()).is_err());
        assert!(reference_gemm(1.0, a.view(), b.view(), 0.0, c.view_mut()).is_err());
    }
}

//! Row reductions in independent lanes, so the compiler keeps full vectors of partial results.

/// Lanes of the reductions (wide enough for the compiler to use full vectors).
const LANES: usize = 8;

/// Reduces `row`: `step(acc, v)` folds values into [`LANES`] partial results (and the
/// remainder into one more), all starting from `init`; `combine` then joins them.
#[inline(always)]
pub fn lanes_fold<T: Copy>(row: &[T], init: T, step: impl Fn(T, T) -> T, combine: impl Fn(T, T) -> T) -> T {
    let mut acc = [init; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder().iter().fold(init, |a, &v| step(a, v));
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = step(*a, v);
        }
    }
    acc.into_iter().fold(rest, combine)
}

/// Dot product in [`LANES`] independent partial sums (vectorises).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..LANES {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_maxima_and_mapped_sums_of_any_length() {
        for len in [0usize, 3, 8, 21] {
            let row: Vec<f64> = (0..len).map(|i| (i * 7 % 5) as f64 - 1.5).collect();
            let sum = lanes_fold(&row, 0.0, |a, v| a + v, |a, b| a + b);
            assert_eq!(sum, row.iter().sum::<f64>());
            let squares = lanes_fold(&row, 0.0, |a, v| a + v * v, |a, b| a + b);
            assert_eq!(squares, row.iter().map(|v| v * v).sum::<f64>());
            let max = lanes_fold(&row, f64::MIN, f64::max, f64::max);
            assert_eq!(max, row.iter().copied().fold(f64::MIN, f64::max));
        }
    }
}

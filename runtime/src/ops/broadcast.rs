//! ONNX (numpy) multidirectional broadcasting: shapes, views, and the elementwise loops of
//! binary ops and Where.

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use rayon::prelude::*;

use super::common::{checked_len, contiguous, from_shape_vec};
use crate::error::{op_err, Result};
use crate::tensor::Array;

/// The shape two shapes broadcast to, or an error naming both.
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| if i + s.len() < rank { 1 } else { s[i + s.len() - rank] };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            _ => Err(op_err(format!("shapes {a:?} and {b:?} cannot be broadcast together"))),
        })
        .collect()
}

/// Views `a` as `shape` (unidirectional broadcast), or fails naming both shapes.
pub(crate) fn broadcast_to<'a, T>(a: &'a Array<T>, shape: &[usize]) -> Result<ArrayViewD<'a, T>> {
    a.broadcast(IxDyn(shape))
        .ok_or_else(|| op_err(format!("shape {:?} cannot be broadcast to {shape:?}", a.shape())))
}

/// A broadcast over `K` row-major operands, with dims of size one dropped and adjacent dims
/// merged wherever every operand steps through them alike. Strides count elements; a
/// broadcast dim has stride 0.
struct Plan<const K: usize> {
    dims: Vec<usize>,
    strides: Vec<[usize; K]>,
}

impl<const K: usize> Plan<K> {
    fn new(shape: &[usize], operands: [&[usize]; K]) -> Self {
        let rank = shape.len();
        let stride = |op: &[usize], d: usize| -> usize {
            match (d + op.len()).checked_sub(rank) {
                Some(i) if op[i] != 1 => op[i + 1..].iter().product(),
                _ => 0,
            }
        };
        let mut plan = Plan { dims: Vec::new(), strides: Vec::new() };
        for (d, &size) in shape.iter().enumerate() {
            if size == 1 {
                continue;
            }
            let s = operands.map(|op| stride(op, d));
            let mergeable = plan.strides.last().is_some_and(|outer| (0..K).all(|k| outer[k] == s[k] * size));
            match (plan.dims.last_mut(), plan.strides.last_mut()) {
                (Some(dim), Some(outer)) if mergeable => {
                    *dim *= size;
                    *outer = s;
                }
                _ => {
                    plan.dims.push(size);
                    plan.strides.push(s);
                }
            }
        }
        plan
    }

    /// Calls `row(offsets, len, strides)` for each innermost row, in row-major order.
    fn for_each_row(&self, mut row: impl FnMut([usize; K], usize, [usize; K])) {
        let Some((&len, outer)) = self.dims.split_last() else {
            return row([0; K], 1, [0; K]);
        };
        let inner = self.strides[outer.len()];
        let rows: usize = outer.iter().product();
        let mut index = vec![0; outer.len()];
        let mut offsets = [0; K];
        for _ in 0..rows {
            row(offsets, len, inner);
            for d in (0..outer.len()).rev() {
                index[d] += 1;
                (0..K).for_each(|k| offsets[k] += self.strides[d][k]);
                if index[d] < outer[d] {
                    break;
                }
                index[d] = 0;
                (0..K).for_each(|k| offsets[k] -= self.strides[d][k] * outer[d]);
            }
        }
    }
}

/// Operands of the same shape with at least this many elements are split over rayon's
/// threads (a residual Add of a prompt's hidden states).
const PARALLEL_MIN_LEN: usize = 1 << 16;

/// `f(a, b)` elementwise under multidirectional broadcasting. Operands are read row-major
/// (copied first only if they are not contiguous); rows where both step by one or one side
/// stays put (same shape, a scalar, a bias, a keepdims statistic) run as plain slice loops,
/// and two large row-major operands of one shape on rayon's threads.
pub(crate) fn zip_broadcast<A: Copy + Send + Sync, B: Copy + Send + Sync, O: Send>(
    a: &Array<A>,
    b: &Array<B>,
    f: impl Fn(A, B) -> O + Sync + Send,
) -> Result<ArrayD<O>> {
    if a.shape() == b.shape() && a.len() >= PARALLEL_MIN_LEN {
        if let (Some(x), Some(y)) = (a.as_slice(), b.as_slice()) {
            let mut out = Vec::with_capacity(x.len());
            out.par_extend(x.par_iter().zip(y).map(|(&p, &q)| f(p, q)));
            return from_shape_vec(a.shape(), out);
        }
    }
    // A scalar against an array of no lower rank: map the array in its memory order, keeping its
    // strides, so a transposed operand (Kᵀ times a scale) is not gathered element by element.
    if scalar_against(b.shape(), a) {
        if let Some(&q) = b.iter().next() {
            return Ok(a.map(|&p| f(p, q)));
        }
    }
    if scalar_against(a.shape(), b) {
        if let Some(&p) = a.iter().next() {
            return Ok(b.map(|&q| f(p, q)));
        }
    }
    let shape = broadcast_shape(a.shape(), b.shape())?;
    let mut out = Vec::with_capacity(checked_len(&shape)?);
    if shape.iter().all(|&d| d > 0) {
        let (x, y) = (contiguous(a), contiguous(b));
        Plan::new(&shape, [a.shape(), b.shape()]).for_each_row(|[i, j], len, strides| match strides {
            [1, 1] => out.extend(x[i..i + len].iter().zip(&y[j..j + len]).map(|(&p, &q)| f(p, q))),
            [1, 0] => {
                let q = y[j];
                out.extend(x[i..i + len].iter().map(|&p| f(p, q)));
            }
            [0, 1] => {
                let p = x[i];
                out.extend(y[j..j + len].iter().map(|&q| f(p, q)));
            }
            [s, t] => out.extend((0..len).map(|n| f(x[i + n * s], y[j + n * t]))),
        });
    }
    from_shape_vec(&shape, out)
}

/// Whether an operand of shape `scalar` is one value broadcast to `x` without raising its rank,
/// with `x` contiguous in memory (in any order).
fn scalar_against<T>(scalar: &[usize], x: &Array<T>) -> bool {
    scalar.iter().all(|&d| d == 1) && scalar.len() <= x.ndim() && x.as_slice_memory_order().is_some()
}

/// `if cond { x } else { y }` elementwise, all three broadcast together.
pub(crate) fn select_broadcast<T: Copy + Send + Sync>(cond: &Array<bool>, x: &Array<T>, y: &Array<T>) -> Result<ArrayD<T>> {
    let shape = broadcast_shape(&broadcast_shape(cond.shape(), x.shape())?, y.shape())?;
    let mut out = Vec::with_capacity(checked_len(&shape)?);
    if shape.iter().all(|&d| d > 0) {
        let (c, p, q) = (contiguous(cond), contiguous(x), contiguous(y));
        Plan::new(&shape, [cond.shape(), x.shape(), y.shape()]).for_each_row(|[i, j, k], len, [sc, sp, sq]| {
            out.extend((0..len).map(|n| if c[i + n * sc] { p[j + n * sp] } else { q[k + n * sq] }));
        });
    }
    from_shape_vec(&shape, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(shape: &[usize], data: Vec<i64>) -> Array<i64> {
        ArrayD::from_shape_vec(IxDyn(shape), data).unwrap().into_shared()
    }

    /// Reference: index-by-index broadcasting.
    fn slow_add(a: &Array<i64>, b: &Array<i64>) -> ArrayD<i64> {
        let shape = broadcast_shape(a.shape(), b.shape()).unwrap();
        let av = a.broadcast(IxDyn(&shape)).unwrap();
        let bv = b.broadcast(IxDyn(&shape)).unwrap();
        ArrayD::from_shape_fn(IxDyn(&shape), |i| av[&i] * 100 + bv[&i])
    }

    #[test]
    fn shapes_broadcast_per_numpy() {
        assert_eq!(broadcast_shape(&[2, 3, 4], &[4]).unwrap(), vec![2, 3, 4]);
        assert_eq!(broadcast_shape(&[2, 1, 4], &[3, 1]).unwrap(), vec![2, 3, 4]);
        assert_eq!(broadcast_shape(&[], &[5]).unwrap(), vec![5]);
        assert_eq!(broadcast_shape(&[0, 1], &[1, 3]).unwrap(), vec![0, 3]);
        let err = broadcast_shape(&[2, 3], &[4]).unwrap_err().to_string();
        assert!(err.contains("[2, 3]") && err.contains("[4]"), "{err}");
    }

    #[test]
    fn every_layout_matches_the_index_reference() {
        let big = arr(&[2, 3, 4], (0..24).collect());
        let cases = [
            arr(&[2, 3, 4], (0..24).map(|v| v * 3).collect()), // same shape
            arr(&[], vec![7]),                                 // scalar
            arr(&[1, 1], vec![7]),                             // scalar of higher rank
            arr(&[4], vec![1, 2, 3, 4]),                       // trailing bias
            arr(&[1, 3, 4], (0..12).collect()),                // trailing with leading one
            arr(&[2, 3, 1], (0..6).collect()),                 // keepdims statistic
            arr(&[2, 1, 1], vec![5, 6]),                       // leading
            arr(&[3, 1], vec![1, 2, 3]),                       // middle: generic path
        ];
        for small in &cases {
            let want = slow_add(&big, small);
            assert_eq!(zip_broadcast(&big, small, |x, y| x * 100 + y).unwrap(), want);
            let want_swapped = slow_add(small, &big);
            assert_eq!(zip_broadcast(small, &big, |x, y| x * 100 + y).unwrap(), want_swapped);
        }
    }

    #[test]
    fn both_sides_stretch_and_views_work() {
        let col = arr(&[3, 1], vec![1, 2, 3]);
        let row = arr(&[1, 4], vec![10, 20, 30, 40]);
        let out = zip_broadcast(&col, &row, |x, y| x + y).unwrap();
        assert_eq!(out.shape(), &[3, 4]);
        assert_eq!(out[[2, 3]], 43);
        let t = arr(&[2, 3], (0..6).collect()).reversed_axes(); // non-contiguous
        let out = zip_broadcast(&t, &arr(&[2], vec![1, 1]), |x, y| x + y).unwrap();
        assert_eq!(out.iter().copied().collect::<Vec<_>>(), vec![1, 4, 2, 5, 3, 6]);
        // A scalar on either side of a transposed operand: the layout is kept, values are right.
        for scalar in [arr(&[], vec![7]), arr(&[1, 1], vec![7])] {
            let out = zip_broadcast(&t, &scalar, |x, y| x * 100 + y).unwrap();
            assert_eq!(out, slow_add(&t, &scalar));
            assert_eq!(out.strides(), t.strides());
            assert_eq!(zip_broadcast(&scalar, &t, |x, y| x * 100 + y).unwrap(), slow_add(&scalar, &t));
        }
    }

    #[test]
    fn large_operands_of_one_shape_split_over_threads_in_order() {
        let n = PARALLEL_MIN_LEN + 37;
        let (a, b) = (arr(&[3, n], (0..3 * n as i64).collect()), arr(&[3, n], (0..3 * n as i64).map(|v| 7 * v).collect()));
        let got = zip_broadcast(&a, &b, |x, y| y - x).unwrap();
        assert_eq!(got.shape(), &[3, n]);
        assert!(got.iter().enumerate().all(|(i, &v)| v == 6 * i as i64));
    }

    #[test]
    fn select_broadcasts_three_operands() {
        let cond = ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![true, false]).unwrap().into_shared();
        let x = arr(&[3], vec![1, 2, 3]);
        let y = arr(&[2, 3], vec![10, 20, 30, 40, 50, 60]).reversed_axes().reversed_axes();
        let out = select_broadcast(&cond, &x, &y).unwrap();
        assert_eq!(out.shape(), &[2, 3]);
        assert_eq!(out.iter().copied().collect::<Vec<_>>(), vec![1, 2, 3, 40, 50, 60]);
        let scalar = select_broadcast(&cond.clone().into_shape_with_order(IxDyn(&[2])).unwrap(), &arr(&[], vec![7]), &arr(&[], vec![8]));
        assert_eq!(scalar.unwrap().iter().copied().collect::<Vec<_>>(), vec![7, 8]);
        assert!(select_broadcast(&cond, &arr(&[2], vec![1, 2]), &arr(&[3], vec![1, 2, 3])).is_err());
    }

    #[test]
    fn plan_merges_dims_that_step_alike() {
        let plan = Plan::new(&[2, 3, 4], [&[2, 3, 4], &[4]]);
        assert_eq!(plan.dims, vec![6, 4]);
        assert_eq!(plan.strides, vec![[4, 0], [1, 1]]);
        let plan = Plan::new(&[2, 3, 4], [&[2, 3, 4], &[2, 3, 4]]);
        assert_eq!(plan.dims, vec![24]);
        let plan = Plan::new(&[2, 1, 4], [&[2, 1, 1], &[1, 1, 4]]);
        assert_eq!(plan.dims, vec![2, 4]);
        assert_eq!(plan.strides, vec![[1, 0], [0, 1]]);
    }

    #[test]
    fn incompatible_and_empty_shapes() {
        let a = arr(&[2, 3], vec![0; 6]);
        assert!(zip_broadcast(&a, &arr(&[2], vec![1, 2]), |x, y| x + y).is_err());
        let empty = arr(&[0, 3], vec![]);
        assert_eq!(zip_broadcast(&empty, &arr(&[3], vec![1, 2, 3]), |x, y| x + y).unwrap().shape(), &[0, 3]);
    }
}

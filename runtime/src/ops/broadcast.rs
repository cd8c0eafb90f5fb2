//! ONNX (numpy) multidirectional broadcasting, with direct loops for the common layouts.

use ndarray::{ArrayD, ArrayViewD, IxDyn, Zip};

use super::common::from_shape_vec;
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

/// How a smaller contiguous operand lines up with a contiguous operand of the output's shape.
#[derive(Clone, Copy)]
enum Repeat {
    /// One element, used everywhere.
    Scalar,
    /// The small operand matches the trailing dims: it repeats every `n` elements (this
    /// includes equal shapes, with `n` the whole length).
    Tiled(usize),
    /// The small operand matches the leading dims, with ones after: each of its elements
    /// covers `n` consecutive elements.
    Stretched(usize),
}

/// Recognizes the fast layouts of `small` against the full `shape`.
fn repeat_pattern(small: &[usize], shape: &[usize]) -> Option<Repeat> {
    let len: usize = small.iter().product();
    if len == 1 {
        return Some(Repeat::Scalar);
    }
    let significant = &small[small.iter().take_while(|&&d| d == 1).count()..];
    if shape.ends_with(significant) {
        return Some(Repeat::Tiled(len));
    }
    let kept = small.len() - small.iter().rev().take_while(|&&d| d == 1).count();
    if small.len() == shape.len() && small[..kept] == shape[..kept] {
        return Some(Repeat::Stretched(shape[kept..].iter().product()));
    }
    None
}

/// `f(full[i], small[j])` over the full operand, `small` repeated as `pattern` says.
fn repeat_map<A: Copy, B: Copy, O>(full: &[A], small: &[B], pattern: Repeat, f: impl Fn(A, B) -> O) -> Vec<O> {
    let mut out = Vec::with_capacity(full.len());
    match pattern {
        Repeat::Scalar => {
            let s = small[0];
            out.extend(full.iter().map(|&x| f(x, s)));
        }
        Repeat::Tiled(n) => {
            for chunk in full.chunks_exact(n) {
                out.extend(chunk.iter().zip(small).map(|(&x, &y)| f(x, y)));
            }
        }
        Repeat::Stretched(n) => {
            for (chunk, &y) in full.chunks_exact(n).zip(small) {
                out.extend(chunk.iter().map(|&x| f(x, y)));
            }
        }
    }
    out
}

/// `f(a, b)` elementwise under multidirectional broadcasting. Contiguous operands in the
/// common layouts (same shape, a scalar, a trailing bias, a keepdims statistic) take a direct
/// loop; anything else goes through strided broadcast views.
pub(crate) fn zip_broadcast<A: Copy, B: Copy, O>(
    a: &Array<A>,
    b: &Array<B>,
    f: impl Fn(A, B) -> O,
) -> Result<ArrayD<O>> {
    let shape = broadcast_shape(a.shape(), b.shape())?;
    let out_len: usize = shape.iter().product();
    if out_len > 0 {
        if let (Some(x), Some(y)) = (a.as_slice(), b.as_slice()) {
            if a.shape() == shape.as_slice() {
                if let Some(p) = repeat_pattern(b.shape(), &shape) {
                    return from_shape_vec(&shape, repeat_map(x, y, p, f));
                }
            }
            if b.shape() == shape.as_slice() {
                if let Some(p) = repeat_pattern(a.shape(), &shape) {
                    return from_shape_vec(&shape, repeat_map(y, x, p, |q, p| f(p, q)));
                }
            }
        }
    }
    let av = broadcast_to(a, &shape)?;
    let bv = broadcast_to(b, &shape)?;
    Ok(Zip::from(&av).and(&bv).map_collect(|&x, &y| f(x, y)))
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
    }

    #[test]
    fn incompatible_and_empty_shapes() {
        let a = arr(&[2, 3], vec![0; 6]);
        assert!(zip_broadcast(&a, &arr(&[2], vec![1, 2]), |x, y| x + y).is_err());
        let empty = arr(&[0, 3], vec![]);
        assert_eq!(zip_broadcast(&empty, &arr(&[3], vec![1, 2, 3]), |x, y| x + y).unwrap().shape(), &[0, 3]);
    }
}

//! TopK: the `k` largest (or smallest) elements along an axis, with their indices.

use std::cmp::Ordering;

use super::common::{contiguous, from_shape_vec, input_int, kernel, model_err, normalize_axis};
use super::{input, Kernel, OpContext, Registry};
use crate::error::{op_err, Result};
use crate::tensor::{Array, Element, Tensor};
use crate::with_array;

/// Orders `a` before `b` for the requested direction; NaN counts as the largest value, and
/// equal values keep the lower index first (the spec's tie rule).
fn rank<T: PartialOrd>(a: &T, b: &T, largest: bool) -> Ordering {
    let nan_a = a.partial_cmp(a).is_none();
    let nan_b = b.partial_cmp(b).is_none();
    let ascending = match (nan_a, nan_b) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    };
    if largest {
        ascending.reverse()
    } else {
        ascending
    }
}

fn topk_typed<T: Element>(x: &Array<T>, axis: usize, k: usize, largest: bool) -> Result<[Tensor; 2]> {
    let shape = x.shape();
    let n = shape[axis];
    if k > n {
        return Err(op_err(format!("TopK: k = {k} exceeds the axis length {n} of shape {shape:?}")));
    }
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let data = contiguous(x);
    let mut values = vec![T::default(); outer * k * inner];
    let mut indices = vec![0i64; outer * k * inner];
    let mut order: Vec<usize> = Vec::with_capacity(n);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| data[(o * n + j) * inner + i];
            order.clear();
            order.extend(0..n);
            // A stable sort keeps equal values in index order.
            order.sort_by(|&p, &q| rank(&at(p), &at(q), largest));
            for (r, &j) in order.iter().take(k).enumerate() {
                let dst = (o * k + r) * inner + i;
                values[dst] = at(j);
                indices[dst] = j as i64;
            }
        }
    }
    let mut out_shape = shape.to_vec();
    out_shape[axis] = k;
    Ok([from_shape_vec(&out_shape, values)?.into(), from_shape_vec(&out_shape, indices)?.into()])
}

/// Runs TopK on any dtype; `k` must be in `[0, shape[axis]]`.
fn topk(x: &Tensor, axis: i64, k: i64, largest: bool) -> Result<[Tensor; 2]> {
    if x.rank() == 0 {
        return Err(op_err("TopK needs a tensor of rank >= 1, got a scalar"));
    }
    let axis = normalize_axis(axis, x.rank())?;
    let k = usize::try_from(k).map_err(|_| op_err(format!("TopK: k must not be negative, got {k}")))?;
    with_array!(x, a => topk_typed(a, axis, k, largest))
}

fn topk_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let axis = ctx.attrs.int_or("axis", -1);
    // `largest` and `sorted` arrived in opset 11; results are always sorted (allowed when
    // `sorted` is 0, where the order is unspecified).
    let largest = ctx.attrs.int_or("largest", 1) != 0;
    let k_attr = if ctx.opset < 10 { Some(ctx.attrs.require_int("k")?) } else { None };
    if ctx.num_outputs() > 2 {
        return Err(model_err(ctx, format!("declares {} outputs, TopK has 2", ctx.num_outputs())));
    }
    kernel(move |inputs| {
        let k = match k_attr {
            Some(k) => k,
            None => input_int(inputs, 1)?,
        };
        Ok(topk(input(inputs, 0)?, axis, k, largest)?.into())
    })
}

/// Registers TopK (k as an attribute before opset 10, as an input from then on).
pub(super) fn register(reg: &mut Registry) {
    for since in [1, 10, 11, 24] {
        reg.register("", "TopK", since, topk_factory);
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::testutil::{assert_err, node, t, values};

    #[test]
    fn largest_smallest_ties_and_axes() {
        let x = t(&[2, 4], &[1.0f32, 3.0, 3.0, 2.0, f32::NAN, 0.0, -1.0, 5.0]);
        let k = t(&[1], &[2i64]);
        let out = node("TopK").outputs(2).opset(11).run(&[&x, &k]).unwrap();
        let (shape, v) = values::<f32>(&out[0]);
        assert_eq!(shape, vec![2, 2]);
        assert_eq!(v[..2], [3.0, 3.0]);
        assert!(v[2].is_nan() && v[3] == 5.0);
        assert_eq!(values::<i64>(&out[1]).1, vec![1, 2, 0, 3]);
        let out = node("TopK").outputs(2).opset(11).int("largest", 0).int("axis", 0).run(&[&x, &t(&[1], &[1i64])]).unwrap();
        assert_eq!(values::<f32>(&out[0]).1, vec![1.0, 0.0, -1.0, 2.0]);
        assert_eq!(values::<i64>(&out[1]).1, vec![0, 1, 1, 0]);
    }

    #[test]
    fn k_attribute_before_opset_10_and_errors() {
        let x = t(&[3], &[2i64, 9, 4]);
        let out = node("TopK").outputs(2).opset(1).int("k", 2).run(&[&x]).unwrap();
        assert_eq!(values::<i64>(&out[0]).1, vec![9, 4]);
        assert_err(node("TopK").outputs(2).opset(11).run(&[&x, &t(&[1], &[4i64])]), "exceeds");
        assert_err(node("TopK").outputs(2).opset(11).run(&[&x, &t(&[1], &[-1i64])]), "negative");
        assert_err(node("TopK").outputs(2).opset(11).int("axis", 1).run(&[&x, &t(&[1], &[1i64])]), "out of range");
        assert_err(node("TopK").outputs(2).opset(11).run(&[&t(&[], &[1i64]), &t(&[1], &[1i64])]), "rank");
        assert!(node("TopK").outputs(2).opset(1).build().is_err(), "k attribute is required");
    }
}

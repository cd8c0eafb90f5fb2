//! OneHot: expands integer indices into one-hot vectors along a new axis.

use super::cast::cast;
use super::common::{checked_len, contiguous, from_shape_vec, kernel, normalize_axis};
use super::{input, Kernel, OpContext, Registry};
use crate::error::{op_err, Result};
use crate::tensor::{Array, DType, Element, Tensor};
use crate::with_array;

/// Builds the output from `[off, on]` values; an index outside `[-depth, depth)` yields a row
/// of `off` (the spec's rule), a negative one counts from the end.
fn onehot_typed<T: Element>(indices: &[f64], shape: &[usize], depth: usize, axis: usize, values: &Array<T>) -> Result<Tensor> {
    let pair = contiguous(values);
    let [off, on] = pair[..] else {
        return Err(op_err(format!("OneHot: values must hold 2 elements [off, on], got {}", pair.len())));
    };
    let mut out_shape = shape.to_vec();
    out_shape.insert(axis, depth);
    let len = checked_len(&out_shape)?;
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis..].iter().product();
    let mut data = vec![off; len];
    let d = depth as i64;
    for o in 0..outer {
        for i in 0..inner {
            let raw = indices[o * inner + i];
            if !raw.is_finite() {
                continue;
            }
            let mut k = raw.trunc() as i64;
            if k < 0 {
                k += d;
            }
            if (0..d).contains(&k) {
                data[(o * depth + k as usize) * inner + i] = on;
            }
        }
    }
    Ok(from_shape_vec(&out_shape, data)?.into())
}

/// OneHot of `indices` (any numeric dtype) with `depth` classes; `axis` is in `[-r-1, r]`.
fn onehot(indices: &Tensor, depth: &Tensor, values: &Tensor, axis: i64) -> Result<Tensor> {
    if indices.dtype() == DType::Bool {
        return Err(op_err("OneHot: indices must be numeric, got bool"));
    }
    let depth = depth.scalar_f64()?.trunc();
    if !(depth >= 1.0 && depth <= u32::MAX as f64) {
        return Err(op_err(format!("OneHot: depth must be a positive size, got {depth}")));
    }
    let axis = normalize_axis(axis, indices.rank() + 1)?;
    let as_f64 = cast(indices, DType::F64);
    let flat = contiguous(as_f64.array::<f64>()?).into_owned();
    with_array!(values, v => onehot_typed(&flat, indices.shape(), depth as usize, axis, v))
}

fn onehot_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let axis = ctx.attrs.int_or("axis", -1);
    kernel(move |inputs| Ok(vec![onehot(input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?, axis)?]))
}

/// Registers OneHot (opset 11 added negative indices; the computation is the same since).
pub(super) fn register(reg: &mut Registry) {
    reg.register("", "OneHot", 9, onehot_factory);
    reg.register("", "OneHot", 11, onehot_factory);
}

#[cfg(test)]
mod tests {
    use crate::ops::testutil::{assert_err, node, t, values};

    #[test]
    fn axes_negative_and_out_of_range_indices() {
        let idx = t(&[3], &[0i64, -1, 7]);
        let depth = t(&[], &[3.0f32]);
        let vals = t(&[2], &[0i32, 5]);
        let y = node("OneHot").opset(11).run1(&[&idx, &depth, &vals]).unwrap();
        assert_eq!(values::<i32>(&y), (vec![3, 3], vec![5, 0, 0, 0, 0, 5, 0, 0, 0]));
        let y = node("OneHot").opset(11).int("axis", 0).run1(&[&idx, &depth, &vals]).unwrap();
        assert_eq!(values::<i32>(&y), (vec![3, 3], vec![5, 0, 0, 0, 0, 0, 0, 5, 0]));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let idx = t(&[1], &[0i64]);
        let vals = t(&[2], &[0.0f32, 1.0]);
        assert_err(node("OneHot").opset(11).run1(&[&idx, &t(&[], &[0i64]), &vals]), "depth");
        assert_err(node("OneHot").opset(11).run1(&[&idx, &t(&[], &[2i64]), &t(&[3], &[0.0f32, 1.0, 2.0])]), "2 elements");
        assert_err(node("OneHot").opset(11).int("axis", 2).run1(&[&idx, &t(&[], &[2i64]), &vals]), "out of range");
        assert_err(node("OneHot").opset(11).run1(&[&idx, &t(&[2], &[2i64, 3]), &vals]), "scalar");
    }
}

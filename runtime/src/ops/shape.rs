//! Ops that change only a tensor's shape, or read it: Shape, Size, Reshape, Squeeze,
//! Unsqueeze, Flatten, Expand, Identity. All but Expand share the input's buffer when it is
//! contiguous.

use super::broadcast::{broadcast_shape, broadcast_to};
use super::common::{checked_len, dims_to_shape, input_ints, kernel, model_err, normalize_axes, IntsFrom};
use super::{input, Kernel, OpContext, Registry};
use crate::error::{op_err, Result};
use crate::tensor::Tensor;
use crate::with_array;

/// The dims `[start, end)` of a shape, as Shape-15 clamps them.
fn shape_range(shape: &[usize], start: i64, end: Option<i64>) -> Tensor {
    let rank = shape.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
    let (s, e) = (clamp(start), clamp(end.unwrap_or(rank)));
    let dims: Vec<i64> = shape[s..e.max(s)].iter().map(|&d| d as i64).collect();
    Tensor::from(ndarray::Array1::from(dims).into_dyn())
}

fn shape_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let start = ctx.attrs.int_or("start", 0);
    let end = ctx.attrs.int("end");
    kernel(move |inputs| Ok(vec![shape_range(input(inputs, 0)?.shape(), start, end)]))
}

/// The output shape of Reshape: 0 copies the input dim (unless `allow_zero`), -1 is inferred.
pub(super) fn reshape_target(input: &[usize], spec: &[i64], allow_zero: bool) -> Result<Vec<usize>> {
    let bad = |why: &str| op_err(format!("cannot reshape {input:?} to {spec:?}: {why}"));
    let mut out = Vec::with_capacity(spec.len());
    let mut inferred = None;
    for (i, &d) in spec.iter().enumerate() {
        out.push(match d {
            -1 if inferred.is_some() => return Err(bad("more than one -1")),
            -1 => {
                inferred = Some(i);
                1
            }
            0 if !allow_zero => *input.get(i).ok_or_else(|| bad("a 0 past the input's rank"))?,
            d if d < 0 => return Err(bad("negative dimension")),
            d => usize::try_from(d).map_err(|_| bad("dimension too large"))?,
        });
    }
    let total: usize = input.iter().product();
    if let Some(i) = inferred {
        let known = checked_len(&out)?;
        if known == 0 || !total.is_multiple_of(known) {
            return Err(bad("the -1 dimension cannot be inferred"));
        }
        out[i] = total / known;
    }
    if checked_len(&out)? != total {
        return Err(bad("element counts differ"));
    }
    Ok(out)
}

fn reshape_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let allow_zero = ctx.attrs.int_or("allowzero", 0) != 0;
    kernel(move |inputs| {
        let x = input(inputs, 0)?;
        let target = reshape_target(x.shape(), &input_ints(inputs, 1)?, allow_zero)?;
        Ok(vec![x.reshape(&target)?])
    })
}

fn squeeze(x: &Tensor, axes: Option<Vec<i64>>) -> Result<Tensor> {
    let shape = x.shape();
    let squeezed = match axes {
        None => shape.iter().map(|&d| d == 1).collect::<Vec<_>>(),
        Some(axes) => {
            let mut mask = vec![false; shape.len()];
            for a in normalize_axes(&axes, shape.len())? {
                if shape[a] != 1 {
                    return Err(op_err(format!("cannot squeeze axis {a} of size {} in {shape:?}", shape[a])));
                }
                mask[a] = true;
            }
            mask
        }
    };
    let out: Vec<usize> = shape.iter().zip(&squeezed).filter(|(_, &s)| !s).map(|(&d, _)| d).collect();
    x.reshape(&out)
}

fn squeeze_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let axes = IntsFrom::for_opset(ctx, 13, "axes", 1);
    kernel(move |inputs| Ok(vec![squeeze(input(inputs, 0)?, axes.get(inputs)?)?]))
}

fn unsqueeze(x: &Tensor, axes: &[i64]) -> Result<Tensor> {
    let rank = x.rank() + axes.len();
    let axes = normalize_axes(axes, rank)?;
    let mut dims = x.shape().iter();
    let out: Vec<usize> = (0..rank)
        .map(|i| if axes.contains(&i) { 1 } else { dims.next().copied().unwrap_or(1) })
        .collect();
    x.reshape(&out)
}

fn unsqueeze_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let axes = IntsFrom::for_opset(ctx, 13, "axes", 1);
    if matches!(axes, IntsFrom::Attr(None)) {
        return Err(model_err(ctx, "attribute 'axes' is required"));
    }
    kernel(move |inputs| {
        let axes = axes.get(inputs)?.ok_or_else(|| op_err("Unsqueeze needs axes (input #1)"))?;
        Ok(vec![unsqueeze(input(inputs, 0)?, &axes)?])
    })
}

fn flatten(x: &Tensor, axis: i64) -> Result<Tensor> {
    let rank = x.rank() as i64;
    let a = if axis < 0 { axis + rank } else { axis };
    if !(0..=rank).contains(&a) {
        return Err(op_err(format!("axis {axis} is out of range for Flatten of rank {rank}")));
    }
    let (outer, inner) = x.shape().split_at(a as usize);
    x.reshape(&[outer.iter().product(), inner.iter().product()])
}

fn flatten_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let axis = ctx.attrs.int_or("axis", 1);
    kernel(move |inputs| Ok(vec![flatten(input(inputs, 0)?, axis)?]))
}

fn expand(x: &Tensor, dims: &[i64]) -> Result<Tensor> {
    let shape = broadcast_shape(x.shape(), &dims_to_shape(dims)?)?;
    checked_len(&shape)?;
    if shape == x.shape() {
        return Ok(x.clone());
    }
    with_array!(x, a => Ok(Tensor::from(broadcast_to(a, &shape)?.to_owned())))
}

/// Registers the shape ops.
pub(super) fn register(reg: &mut Registry) {
    reg.register("", "Shape", 1, shape_factory);
    reg.register("", "Size", 1, |_| {
        kernel(|inputs| Ok(vec![Tensor::scalar(input(inputs, 0)?.len() as i64)]))
    });
    reg.register("", "Reshape", 5, reshape_factory);
    reg.register("", "Squeeze", 1, squeeze_factory);
    reg.register("", "Unsqueeze", 1, unsqueeze_factory);
    reg.register("", "Flatten", 1, flatten_factory);
    reg.register("", "Expand", 8, |_| {
        kernel(|inputs| Ok(vec![expand(input(inputs, 0)?, &input_ints(inputs, 1)?)?]))
    });
    reg.register("", "Identity", 1, |_| kernel(|inputs| Ok(vec![input(inputs, 0)?.clone()])));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::{assert_err, node, t, values};

    fn shape_of(x: &Tensor) -> Vec<usize> {
        x.shape().to_vec()
    }

    fn zeros(shape: &[usize]) -> Tensor {
        t(shape, &vec![0.0f32; shape.iter().product()])
    }

    #[test]
    fn shape_and_size() {
        let x = zeros(&[2, 3, 4]);
        assert_eq!(values::<i64>(&node("Shape").run1(&[&x]).unwrap()), (vec![3], vec![2, 3, 4]));
        let y = node("Shape").opset(15).int("start", -2).run1(&[&x]).unwrap();
        assert_eq!(values::<i64>(&y).1, vec![3, 4]);
        let y = node("Shape").opset(15).int("start", 1).int("end", -1).run1(&[&x]).unwrap();
        assert_eq!(values::<i64>(&y).1, vec![3]);
        let y = node("Shape").opset(15).int("start", 5).int("end", 2).run1(&[&x]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![0], vec![]));
        let y = node("Size").run1(&[&x]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![], vec![24]));
    }

    #[test]
    fn reshape_copies_zeros_and_infers_minus_one() {
        let x = t(&[2, 3, 4], &(0..24).collect::<Vec<i64>>());
        let y = node("Reshape").run1(&[&x, &t(&[3], &[0i64, -1, 2])]).unwrap();
        assert_eq!(shape_of(&y), vec![2, 6, 2]);
        assert_eq!(values::<i64>(&y).1, (0..24).collect::<Vec<_>>());
        let y = node("Reshape").run1(&[&x, &t(&[1], &[-1i64])]).unwrap();
        assert_eq!(shape_of(&y), vec![24]);
        let empty = zeros(&[0, 4]);
        let y = node("Reshape").opset(14).int("allowzero", 1).run1(&[&empty, &t(&[2], &[4i64, 0])]).unwrap();
        assert_eq!(shape_of(&y), vec![4, 0]);
    }

    #[test]
    fn reshape_errors() {
        let x = zeros(&[2, 3]);
        assert_err(node("Reshape").run1(&[&x, &t(&[2], &[-1i64, -1])]), "more than one -1");
        assert_err(node("Reshape").run1(&[&x, &t(&[2], &[4i64, -1])]), "cannot be inferred");
        assert_err(node("Reshape").run1(&[&x, &t(&[2], &[5i64, 2])]), "element counts differ");
        assert_err(node("Reshape").run1(&[&x, &t(&[3], &[1i64, 1, 0])]), "past the input's rank");
        assert_err(node("Reshape").run1(&[&x, &t(&[2], &[-2i64, 3])]), "negative dimension");
        assert_err(node("Reshape").run1(&[&x, &t(&[2], &[2.0f32, 3.0])]), "int64 or int32");
    }

    #[test]
    fn squeeze_forms_by_opset() {
        let x = zeros(&[1, 3, 1, 2]);
        assert_eq!(shape_of(&node("Squeeze").run1(&[&x]).unwrap()), vec![3, 2]);
        let y = node("Squeeze").opset(11).ints("axes", &[-2]).run1(&[&x]).unwrap();
        assert_eq!(shape_of(&y), vec![1, 3, 2]);
        let y = node("Squeeze").opset(13).run1(&[&x, &t(&[1], &[0i64])]).unwrap();
        assert_eq!(shape_of(&y), vec![3, 1, 2]);
        assert_err(node("Squeeze").opset(13).run1(&[&x, &t(&[1], &[1i64])]), "cannot squeeze axis 1 of size 3");
        assert_err(node("Squeeze").opset(13).run1(&[&x, &t(&[1], &[4i64])]), "out of range");
    }

    #[test]
    fn unsqueeze_forms_by_opset() {
        let x = t(&[2, 3], &[1i64, 2, 3, 4, 5, 6]);
        let y = node("Unsqueeze").opset(11).ints("axes", &[0, -1]).run1(&[&x]).unwrap();
        assert_eq!(shape_of(&y), vec![1, 2, 3, 1]);
        let y = node("Unsqueeze").opset(13).run1(&[&x, &t(&[2], &[1i64, 3])]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![2, 1, 3, 1], vec![1, 2, 3, 4, 5, 6]));
        let scalar = Tensor::scalar(7i64);
        let y = node("Unsqueeze").opset(13).run1(&[&scalar, &t(&[1], &[0i64])]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![1], vec![7]));
        assert_err(node("Unsqueeze").opset(13).run1(&[&x, &t(&[2], &[1i64, 1])]), "repeated");
        assert_err(node("Unsqueeze").opset(13).run1(&[&x, &t(&[1], &[3i64])]), "out of range");
        assert_err(node("Unsqueeze").opset(11).run1(&[&x]), "'axes' is required");
    }

    #[test]
    fn flatten_axes() {
        let x = zeros(&[2, 3, 4]);
        assert_eq!(shape_of(&node("Flatten").run1(&[&x]).unwrap()), vec![2, 12]);
        assert_eq!(shape_of(&node("Flatten").int("axis", 0).run1(&[&x]).unwrap()), vec![1, 24]);
        assert_eq!(shape_of(&node("Flatten").int("axis", 3).run1(&[&x]).unwrap()), vec![24, 1]);
        assert_eq!(shape_of(&node("Flatten").int("axis", -1).run1(&[&x]).unwrap()), vec![6, 4]);
        assert_err(node("Flatten").int("axis", 4).run1(&[&x]), "out of range");
    }

    #[test]
    fn expand_broadcasts_both_ways() {
        let x = t(&[3, 1], &[1i64, 2, 3]);
        let y = node("Expand").run1(&[&x, &t(&[2], &[3i64, 2])]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![3, 2], vec![1, 1, 2, 2, 3, 3]));
        let y = node("Expand").run1(&[&x, &t(&[3], &[2i64, 1, 1])]).unwrap();
        assert_eq!(shape_of(&y), vec![2, 3, 1]);
        assert_err(node("Expand").run1(&[&x, &t(&[2], &[2i64, 2])]), "cannot be broadcast");
        assert_err(node("Expand").run1(&[&x, &t(&[1], &[-3i64])]), "negative dimension");
    }

    #[test]
    fn identity_shares_the_buffer() {
        let x = t(&[2], &[1.0f32, 2.0]);
        let y = node("Identity").run1(&[&x]).unwrap();
        assert_eq!(y.as_f32().unwrap().as_ptr(), x.as_f32().unwrap().as_ptr());
    }
}

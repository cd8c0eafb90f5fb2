//! Reductions and ops that work along an axis: ReduceSum, ReduceMean, ReduceMax, ArgMax,
//! CumSum, Softmax. Each moves the axes it works on last, then walks contiguous rows.

use std::borrow::Cow;

use ndarray::{ArrayBase, ArrayD, ArrayViewD, Axis, Data, Ix1, IxDyn};

use super::cast::cast;
use super::common::{contiguous, from_shape_vec, input_int, kernel, normalize_axes, normalize_axis, IntsFrom};
use super::numeric::{numeric, on_float, Float, FloatFn, Num};
use super::{input, Kernel, OpContext, Registry};
use crate::error::{op_err, Result};
use crate::tensor::{Array, DType, Element, Tensor};
use crate::with_array;

/// The order of axes that puts `axes` last (keeping both groups in order).
fn axes_last(rank: usize, axes: &[usize]) -> Vec<usize> {
    (0..rank).filter(|d| !axes.contains(d)).chain(axes.iter().copied()).collect()
}

/// The elements with `axes` moved last, in row-major order, and the row length (the product
/// of those dims). Borrowed when nothing has to move.
fn rows_along<'a, T: Clone, S: Data<Elem = T>>(a: &'a ArrayBase<S, IxDyn>, axes: &[usize]) -> (Cow<'a, [T]>, usize) {
    let perm = axes_last(a.ndim(), axes);
    let row: usize = axes.iter().map(|&d| a.shape()[d]).product();
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return (contiguous(a), row);
    }
    (Cow::Owned(a.view().permuted_axes(IxDyn(&perm)).iter().cloned().collect()), row)
}

/// The reductions.
#[derive(Clone, Copy)]
enum Reduce {
    Sum,
    Mean,
    Max,
}

fn reduce_row<T: Num>(op: Reduce, row: &[T]) -> T {
    match op {
        Reduce::Sum => row.iter().fold(T::default(), |s, &v| s.add(v)),
        Reduce::Mean => reduce_row(Reduce::Sum, row).div(T::from_usize(row.len())),
        Reduce::Max => row.iter().fold(T::lowest(), |m, &v| m.max(v)),
    }
}

/// The shape left after reducing `axes`, with ones in their place when `keepdims`.
fn reduced_shape(shape: &[usize], axes: &[usize], keepdims: bool) -> Vec<usize> {
    (0..shape.len())
        .filter_map(|d| match (axes.contains(&d), keepdims) {
            (false, _) => Some(shape[d]),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect()
}

fn reduce_typed<T: Num>(a: &Array<T>, op: Reduce, axes: &[usize], keepdims: bool) -> Result<Tensor> {
    let (data, n) = rows_along(a, axes);
    let out: Vec<T> = if n == 0 {
        let outer = a.shape().iter().enumerate().filter(|(d, _)| !axes.contains(d)).map(|(_, &s)| s).product();
        vec![reduce_row(op, &[]); outer]
    } else {
        data.chunks_exact(n).map(|row| reduce_row(op, row)).collect()
    };
    Ok(from_shape_vec(&reduced_shape(a.shape(), axes, keepdims), out)?.into())
}

fn reduce(x: &Tensor, op: Reduce, axes: &[usize], keepdims: bool) -> Result<Tensor> {
    if x.dtype() == DType::F16 {
        // Accumulate half-precision data in float32.
        return Ok(cast(&reduce(&cast(x, DType::F32), op, axes, keepdims)?, DType::F16));
    }
    numeric!(x, a => reduce_typed(a, op, axes, keepdims))
}

fn reduce_factory(ctx: &OpContext, op: Reduce, axes_input_since: i64) -> Result<Box<dyn Kernel>> {
    let axes = IntsFrom::for_opset(ctx, axes_input_since, "axes", 1);
    let keepdims = ctx.attrs.int_or("keepdims", 1) != 0;
    let noop_when_empty = ctx.attrs.int_or("noop_with_empty_axes", 0) != 0;
    kernel(move |inputs| {
        let x = input(inputs, 0)?;
        let axes = match axes.get(inputs)? {
            Some(axes) if !axes.is_empty() => normalize_axes(&axes, x.rank())?,
            _ if noop_when_empty => return Ok(vec![x.clone()]),
            _ => (0..x.rank()).collect(),
        };
        Ok(vec![reduce(x, op, &axes, keepdims)?])
    })
}

fn argmax_typed<T: Element>(a: &Array<T>, axis: usize, keepdims: bool, last: bool) -> Result<Tensor> {
    if a.shape()[axis] == 0 {
        return Err(op_err(format!("ArgMax over axis {axis} of size 0")));
    }
    let (data, n) = rows_along(a, &[axis]);
    let out: Vec<i64> = data
        .chunks_exact(n)
        .map(|row| {
            let mut best = 0;
            for (i, v) in row.iter().enumerate().skip(1) {
                if *v > row[best] || (last && *v == row[best]) {
                    best = i;
                }
            }
            best as i64
        })
        .collect();
    Ok(from_shape_vec(&reduced_shape(a.shape(), &[axis], keepdims), out)?.into())
}

fn argmax_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let axis = ctx.attrs.int_or("axis", 0);
    let keepdims = ctx.attrs.int_or("keepdims", 1) != 0;
    let last = ctx.attrs.int_or("select_last_index", 0) != 0;
    kernel(move |inputs| {
        let x = input(inputs, 0)?;
        let axis = normalize_axis(axis, x.rank())?;
        Ok(vec![with_array!(x, a => argmax_typed(a, axis, keepdims, last))?])
    })
}

fn cumsum_typed<T: Num>(a: &Array<T>, axis: usize, exclusive: bool, reverse: bool) -> Result<Tensor> {
    let mut out = a.to_owned();
    for lane in out.lanes_mut(Axis(axis)) {
        let mut lane = lane.into_dimensionality::<Ix1>().map_err(|e| op_err(format!("CumSum: {e}")))?;
        let mut acc = T::default();
        let mut step = |v: &mut T| {
            let x = *v;
            if exclusive {
                *v = acc;
                acc = acc.add(x);
            } else {
                acc = acc.add(x);
                *v = acc;
            }
        };
        if reverse {
            lane.iter_mut().rev().for_each(&mut step);
        } else {
            lane.iter_mut().for_each(&mut step);
        }
    }
    Ok(out.into())
}

fn cumsum_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let exclusive = ctx.attrs.int_or("exclusive", 0) != 0;
    let reverse = ctx.attrs.int_or("reverse", 0) != 0;
    kernel(move |inputs| {
        let x = input(inputs, 0)?;
        let axis = normalize_axis(input_int(inputs, 1)?, x.rank())?;
        Ok(vec![numeric!(x, a => cumsum_typed(a, axis, exclusive, reverse))?])
    })
}

fn softmax_row<F: Float>(row: &mut [F]) {
    let max = row.iter().fold(F::lowest(), |m, &v| m.max(v));
    let mut sum = F::ZERO;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = F::ONE / sum;
    for v in row.iter_mut() {
        *v = *v * inv;
    }
}

/// Softmax over one axis (opset 13), or over the flattened dims from `axis` on (before 13).
struct Softmax {
    axis: i64,
    flatten_from_axis: bool,
}

impl FloatFn for Softmax {
    fn call<F: Float>(&self, x: ArrayViewD<'_, F>) -> Result<ArrayD<F>> {
        let axis = normalize_axis(self.axis, x.ndim())?;
        let moved = if self.flatten_from_axis { vec![] } else { vec![axis] };
        let (data, _) = rows_along(&x, &moved);
        let row: usize = if self.flatten_from_axis { x.shape()[axis..].iter().product() } else { x.shape()[axis] };
        let mut data = data.into_owned();
        if row > 0 {
            data.chunks_exact_mut(row).for_each(softmax_row);
        }
        if moved.is_empty() || axis + 1 == x.ndim() {
            return from_shape_vec(x.shape(), data);
        }
        let perm = axes_last(x.ndim(), &moved);
        let moved_shape: Vec<usize> = perm.iter().map(|&d| x.shape()[d]).collect();
        let mut inverse = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        Ok(from_shape_vec(&moved_shape, data)?.permuted_axes(IxDyn(&inverse)))
    }
}

fn softmax_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let legacy = ctx.opset < 13;
    let softmax = Softmax { axis: ctx.attrs.int_or("axis", if legacy { 1 } else { -1 }), flatten_from_axis: legacy };
    kernel(move |inputs| Ok(vec![on_float(input(inputs, 0)?, &softmax)?]))
}

/// Registers the reductions, ArgMax, CumSum and Softmax.
pub(super) fn register(reg: &mut Registry) {
    reg.register("", "ReduceSum", 1, |ctx| reduce_factory(ctx, Reduce::Sum, 13));
    reg.register("", "ReduceMean", 1, |ctx| reduce_factory(ctx, Reduce::Mean, 18));
    reg.register("", "ReduceMax", 1, |ctx| reduce_factory(ctx, Reduce::Max, 18));
    reg.register("", "ArgMax", 1, argmax_factory);
    reg.register("", "CumSum", 11, cumsum_factory);
    reg.register("", "Softmax", 1, softmax_factory);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::{assert_close, assert_err, node, t, values};
    use half::f16;

    fn x23() -> Tensor {
        t(&[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])
    }

    #[test]
    fn reductions_with_axes_attribute_and_keepdims() {
        let y = node("ReduceMean").opset(13).ints("axes", &[-1]).run1(&[&x23()]).unwrap();
        assert_close(&y, &[2, 1], &[2.0, 5.0]);
        let y = node("ReduceMax").opset(13).ints("axes", &[0]).int("keepdims", 0).run1(&[&x23()]).unwrap();
        assert_close(&y, &[3], &[4.0, 5.0, 6.0]);
        let y = node("ReduceSum").opset(11).int("keepdims", 0).run1(&[&x23()]).unwrap();
        assert_close(&y, &[], &[21.0]);
    }

    #[test]
    fn reductions_with_axes_input_and_noop() {
        let axes = t(&[1], &[0i64]);
        let y = node("ReduceSum").opset(13).run1(&[&x23(), &axes]).unwrap();
        assert_close(&y, &[1, 3], &[5.0, 7.0, 9.0]);
        let y = node("ReduceMean").opset(18).run1(&[&x23(), &t(&[2], &[1i64, 0])]).unwrap();
        assert_close(&y, &[1, 1], &[3.5]);
        let y = node("ReduceSum").opset(13).int("noop_with_empty_axes", 1).run1(&[&x23()]).unwrap();
        assert_eq!(y, x23());
        let y = node("ReduceMax").opset(18).run1(&[&x23()]).unwrap();
        assert_close(&y, &[1, 1], &[6.0]);
    }

    #[test]
    fn reductions_on_ints_half_and_middle_axes() {
        let x = t(&[2, 2, 2], &[1i64, 2, 3, 4, 5, 6, 7, 9]);
        let y = node("ReduceMean").opset(13).ints("axes", &[1]).int("keepdims", 0).run1(&[&x]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![2, 2], vec![2, 3, 6, 7]));
        let y = node("ReduceSum").opset(11).ints("axes", &[0, 2]).run1(&[&x]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![1, 2, 1], vec![14, 23]));
        let h = t(&[3], &[f16::from_f32(1000.0), f16::from_f32(0.25), f16::from_f32(0.25)]);
        let y = node("ReduceSum").opset(11).run1(&[&h]).unwrap();
        assert_eq!(values::<f16>(&y).1, vec![f16::from_f32(1000.5)]);
    }

    #[test]
    fn reductions_over_empty_axes_and_errors() {
        let empty = t::<f32>(&[2, 0], &[]);
        let y = node("ReduceSum").opset(13).run1(&[&empty, &t(&[1], &[1i64])]).unwrap();
        assert_close(&y, &[2, 1], &[0.0, 0.0]);
        let y = node("ReduceMax").opset(13).ints("axes", &[1]).run1(&[&empty]).unwrap();
        assert_close(&y, &[2, 1], &[f32::NEG_INFINITY, f32::NEG_INFINITY]);
        assert_err(node("ReduceSum").opset(13).run1(&[&x23(), &t(&[1], &[2i64])]), "axis 2 is out of range");
        assert_err(node("ReduceMean").opset(13).ints("axes", &[0, -2]).run1(&[&x23()]), "repeated");
        assert_err(node("ReduceSum").opset(13).run1(&[&t(&[1], &[true])]), "numeric");
    }

    #[test]
    fn argmax_ties_and_last_index() {
        let x = t(&[2, 3], &[1.0f32, 5.0, 5.0, 7.0, 2.0, 7.0]);
        let y = node("ArgMax").int("axis", 1).run1(&[&x]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![2, 1], vec![1, 0]));
        let y = node("ArgMax").int("axis", -1).int("keepdims", 0).int("select_last_index", 1).run1(&[&x]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![2], vec![2, 2]));
        let y = node("ArgMax").run1(&[&x]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![1, 3], vec![1, 0, 1]));
        assert_err(node("ArgMax").int("axis", 2).run1(&[&x]), "out of range");
        assert_err(node("ArgMax").int("axis", 1).run1(&[&t::<f32>(&[2, 0], &[])]), "size 0");
    }

    #[test]
    fn cumsum_modes() {
        let x = t(&[2, 3], &[1i64, 2, 3, 4, 5, 6]);
        let run = |n: crate::ops::testutil::NodeSpec, axis: i64| values::<i64>(&n.run1(&[&x, &Tensor::scalar(axis)]).unwrap()).1;
        assert_eq!(run(node("CumSum"), 1), vec![1, 3, 6, 4, 9, 15]);
        assert_eq!(run(node("CumSum"), 0), vec![1, 2, 3, 5, 7, 9]);
        assert_eq!(run(node("CumSum").int("exclusive", 1), -1), vec![0, 1, 3, 0, 4, 9]);
        assert_eq!(run(node("CumSum").int("reverse", 1), 1), vec![6, 5, 3, 15, 11, 6]);
        assert_eq!(run(node("CumSum").int("reverse", 1).int("exclusive", 1), 1), vec![5, 3, 0, 11, 6, 0]);
        assert_err(node("CumSum").run1(&[&x, &Tensor::scalar(2i64)]), "out of range");
        assert_err(node("CumSum").run1(&[&x, &Tensor::scalar(1.0f32)]), "int64 or int32");
    }

    #[test]
    fn softmax_last_axis_and_middle_axis() {
        let x = t(&[2, 2], &[0.0f32, 0.0, 0.0, 2.0_f32.ln()]);
        let y = node("Softmax").opset(13).run1(&[&x]).unwrap();
        assert_close(&y, &[2, 2], &[0.5, 0.5, 1.0 / 3.0, 2.0 / 3.0]);
        let x = t(&[2, 2], &[0.0f32, 1000.0, 3.0_f32.ln(), 1000.0]);
        let y = node("Softmax").opset(13).int("axis", 0).run1(&[&x]).unwrap();
        assert_close(&y, &[2, 2], &[0.25, 0.5, 0.75, 0.5]);
    }

    #[test]
    fn softmax_legacy_flattens_from_axis() {
        let x = t(&[2, 2], &[0.0f32, 0.0, 0.0, 0.0]);
        let y = node("Softmax").opset(11).int("axis", 0).run1(&[&x]).unwrap();
        assert_close(&y, &[2, 2], &[0.25; 4]);
        let y = node("Softmax").opset(11).run1(&[&x]).unwrap();
        assert_close(&y, &[2, 2], &[0.5; 4]);
        assert_err(node("Softmax").opset(13).int("axis", 2).run1(&[&x]), "out of range");
        assert_err(node("Softmax").run1(&[&t(&[1], &[1i64])]), "float tensor");
    }
}

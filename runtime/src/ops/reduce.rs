//! Reductions and ops that work along an axis: the Reduce* family, ArgMax, ArgMin, CumSum,
//! Softmax, LogSoftmax. Each moves the axes it works on last, then walks contiguous rows.

use std::borrow::Cow;

use ndarray::{ArrayBase, ArrayD, ArrayViewD, Axis, Data, Ix1, IxDyn};

use super::cast::cast;
use super::common::{contiguous, from_shape_vec, input_int, kernel, normalize_axes, normalize_axis, IntsFrom};
use super::numeric::{numeric, on_float, Float, FloatFn, Num};
use super::{input, Kernel, OpContext, Registry};
use crate::error::{op_err, Result};
use crate::kernels::layout::to_row_major;
use crate::tensor::{Array, DType, Element, Tensor};
use crate::with_array;

/// The order of axes that puts `axes` last (keeping both groups in order).
fn axes_last(rank: usize, axes: &[usize]) -> Vec<usize> {
    (0..rank).filter(|d| !axes.contains(d)).chain(axes.iter().copied()).collect()
}

/// The elements with `axes` moved last, in row-major order, and the row length (the product
/// of those dims). Borrowed when nothing has to move.
fn rows_along<'a, T: Copy + Send + Sync, S: Data<Elem = T>>(a: &'a ArrayBase<S, IxDyn>, axes: &[usize]) -> (Cow<'a, [T]>, usize) {
    let perm = axes_last(a.ndim(), axes);
    let row: usize = axes.iter().map(|&d| a.shape()[d]).product();
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return (contiguous(a), row);
    }
    (Cow::Owned(to_row_major(a.view().permuted_axes(IxDyn(&perm)))), row)
}

/// The reductions defined on every numeric type.
#[derive(Clone, Copy)]
enum Reduce {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    SumSquare,
    L1,
}

/// The reductions that need float math; computed in float64 whatever the input type.
#[derive(Clone, Copy)]
enum FloatReduce {
    L2,
    LogSum,
    LogSumExp,
}

/// Either kind of reduction.
#[derive(Clone, Copy)]
enum Reduction {
    Num(Reduce),
    Float(FloatReduce),
}

fn reduce_row<T: Num>(op: Reduce, row: &[T]) -> T {
    let sum = |it: &mut dyn Iterator<Item = T>| it.fold(T::default(), T::add);
    match op {
        Reduce::Sum => sum(&mut row.iter().copied()),
        Reduce::Mean => reduce_row(Reduce::Sum, row).div(T::from_usize(row.len())),
        Reduce::Max => row.iter().fold(T::lowest(), |m, &v| m.max(v)),
        Reduce::Min => row.iter().fold(T::highest(), |m, &v| m.min(v)),
        Reduce::Prod => row.iter().fold(T::from_usize(1), |p, &v| p.mul(v)),
        Reduce::SumSquare => sum(&mut row.iter().map(|&v| v.mul(v))),
        Reduce::L1 => sum(&mut row.iter().map(|&v| v.abs())),
    }
}

fn float_row(op: FloatReduce, row: &[f64]) -> f64 {
    match op {
        FloatReduce::L2 => row.iter().map(|v| v * v).sum::<f64>().sqrt(),
        FloatReduce::LogSum => row.iter().sum::<f64>().ln(),
        FloatReduce::LogSumExp => {
            // log(sum(exp(v))) shifted by the max so that nothing overflows.
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if max.is_infinite() {
                max
            } else {
                max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
            }
        }
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

fn reduce_typed<T: Element>(a: &Array<T>, axes: &[usize], keepdims: bool, row: impl Fn(&[T]) -> T) -> Result<Tensor> {
    let (data, n) = rows_along(a, axes);
    let out: Vec<T> = if n == 0 {
        let outer = a.shape().iter().enumerate().filter(|(d, _)| !axes.contains(d)).map(|(_, &s)| s).product();
        vec![row(&[]); outer]
    } else {
        data.chunks_exact(n).map(row).collect()
    };
    Ok(from_shape_vec(&reduced_shape(a.shape(), axes, keepdims), out)?.into())
}

fn reduce(x: &Tensor, op: Reduction, axes: &[usize], keepdims: bool) -> Result<Tensor> {
    let via = |dtype: DType| Ok(cast(&reduce(&cast(x, dtype), op, axes, keepdims)?, x.dtype()));
    match (op, x.dtype()) {
        (Reduction::Float(f), DType::F64) => reduce_typed(x.array::<f64>()?, axes, keepdims, |r| float_row(f, r)),
        (Reduction::Float(_), DType::Bool) => Err(op_err("expected a numeric tensor, got bool")),
        (Reduction::Float(_), _) => via(DType::F64),
        // Max and Min of bools are "any" and "all" (opset 20).
        (Reduction::Num(Reduce::Max | Reduce::Min), DType::Bool) => via(DType::U8),
        // Accumulate half-precision data in float32.
        (Reduction::Num(_), dtype) if dtype.is_half() => via(DType::F32),
        (Reduction::Num(r), _) => numeric!(x, a => reduce_typed(a, axes, keepdims, |row| reduce_row(r, row))),
    }
}

fn reduce_factory(ctx: &OpContext, op: Reduction, axes_input_since: i64) -> Result<Box<dyn Kernel>> {
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

/// ArgMax, or ArgMin with `min`.
fn argmax_typed<T: Element>(a: &Array<T>, axis: usize, keepdims: bool, last: bool, min: bool) -> Result<Tensor> {
    if a.shape()[axis] == 0 {
        return Err(op_err(format!("ArgMax/ArgMin over axis {axis} of size 0")));
    }
    let (data, n) = rows_along(a, &[axis]);
    let out: Vec<i64> = data
        .chunks_exact(n)
        .map(|row| {
            let mut best = 0;
            for (i, v) in row.iter().enumerate().skip(1) {
                let better = if min { *v < row[best] } else { *v > row[best] };
                if better || (last && *v == row[best]) {
                    best = i;
                }
            }
            best as i64
        })
        .collect();
    Ok(from_shape_vec(&reduced_shape(a.shape(), &[axis], keepdims), out)?.into())
}

fn argmax_factory(ctx: &OpContext, min: bool) -> Result<Box<dyn Kernel>> {
    let axis = ctx.attrs.int_or("axis", 0);
    let keepdims = ctx.attrs.int_or("keepdims", 1) != 0;
    let last = ctx.attrs.int_or("select_last_index", 0) != 0;
    kernel(move |inputs| {
        let x = input(inputs, 0)?;
        let axis = normalize_axis(axis, x.rank())?;
        Ok(vec![with_array!(x, a => argmax_typed(a, axis, keepdims, last, min))?])
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

/// A sum in eight interleaved lanes, so that it vectorizes (and rounds a little better).
fn lane_sum<F: Float>(xs: &[F]) -> F {
    let mut lanes = [F::ZERO; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        lanes.iter_mut().zip(chunk).for_each(|(l, &v)| *l += v);
    }
    lanes.iter().chain(rest).fold(F::ZERO, |s, &v| s + v)
}

fn softmax_row<F: Float>(row: &mut [F]) {
    let max = row.iter().fold(F::lowest(), |m, &v| m.max(v));
    row.iter_mut().for_each(|v| *v = (*v - max).exp());
    let inv = F::ONE / lane_sum(row);
    row.iter_mut().for_each(|v| *v = *v * inv);
}

fn log_softmax_row<F: Float>(row: &mut [F]) {
    let max = row.iter().fold(F::lowest(), |m, &v| m.max(v));
    row.iter_mut().for_each(|v| *v = *v - max);
    let exps: Vec<F> = row.iter().map(|&v| v.exp()).collect();
    let log_sum = lane_sum(&exps).ln();
    row.iter_mut().for_each(|v| *v = *v - log_sum);
}

/// Softmax (or LogSoftmax with `log`) over one axis (opset 13), or over the flattened dims
/// from `axis` on (before 13).
struct Softmax {
    axis: i64,
    flatten_from_axis: bool,
    log: bool,
}

impl FloatFn for Softmax {
    fn call<F: Float>(&self, x: ArrayViewD<'_, F>) -> Result<ArrayD<F>> {
        let axis = normalize_axis(self.axis, x.ndim())?;
        let moved = if self.flatten_from_axis { vec![] } else { vec![axis] };
        let (data, _) = rows_along(&x, &moved);
        let row: usize = if self.flatten_from_axis { x.shape()[axis..].iter().product() } else { x.shape()[axis] };
        let mut data = data.into_owned();
        if row > 0 {
            let f = if self.log { log_softmax_row::<F> } else { softmax_row::<F> };
            data.chunks_exact_mut(row).for_each(f);
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

fn softmax_factory(ctx: &OpContext, log: bool) -> Result<Box<dyn Kernel>> {
    let legacy = ctx.opset < 13;
    let axis = ctx.attrs.int_or("axis", if legacy { 1 } else { -1 });
    let softmax = Softmax { axis, flatten_from_axis: legacy, log };
    kernel(move |inputs| Ok(vec![on_float(input(inputs, 0)?, &softmax)?]))
}

/// Registers the reductions, ArgMax, ArgMin, CumSum, Softmax and LogSoftmax.
pub(super) fn register(reg: &mut Registry) {
    // ReduceSum takes its axes as an input from opset 13, the others from 18.
    reg.register("", "ReduceSum", 1, |ctx| reduce_factory(ctx, Reduction::Num(Reduce::Sum), 13));
    reg.register("", "ReduceMean", 1, |ctx| reduce_factory(ctx, Reduction::Num(Reduce::Mean), 18));
    reg.register("", "ReduceMax", 1, |ctx| reduce_factory(ctx, Reduction::Num(Reduce::Max), 18));
    reg.register("", "ReduceMin", 1, |ctx| reduce_factory(ctx, Reduction::Num(Reduce::Min), 18));
    reg.register("", "ReduceProd", 1, |ctx| reduce_factory(ctx, Reduction::Num(Reduce::Prod), 18));
    reg.register("", "ReduceSumSquare", 1, |ctx| reduce_factory(ctx, Reduction::Num(Reduce::SumSquare), 18));
    reg.register("", "ReduceL1", 1, |ctx| reduce_factory(ctx, Reduction::Num(Reduce::L1), 18));
    reg.register("", "ReduceL2", 1, |ctx| reduce_factory(ctx, Reduction::Float(FloatReduce::L2), 18));
    reg.register("", "ReduceLogSum", 1, |ctx| reduce_factory(ctx, Reduction::Float(FloatReduce::LogSum), 18));
    reg.register("", "ReduceLogSumExp", 1, |ctx| reduce_factory(ctx, Reduction::Float(FloatReduce::LogSumExp), 18));
    reg.register("", "ArgMax", 1, |ctx| argmax_factory(ctx, false));
    reg.register("", "ArgMin", 1, |ctx| argmax_factory(ctx, true));
    reg.register("", "CumSum", 11, cumsum_factory);
    reg.register("", "Softmax", 1, |ctx| softmax_factory(ctx, false));
    reg.register("", "LogSoftmax", 1, |ctx| softmax_factory(ctx, true));
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
    fn bfloat16_accumulates_in_float32_and_wide_unsigned_keeps_its_range() {
        let h = t(&[3], &[256.0f32, 1.0, 1.0].map(half::bf16::from_f32));
        // Summed in bfloat16 each 1 would vanish next to 256; in float32 they add to 258.
        let y = node("ReduceSum").int("keepdims", 0).run1(&[&h]).unwrap();
        assert_eq!(values::<half::bf16>(&y).1, vec![half::bf16::from_f32(258.0)]);
        let u = t(&[3], &[u64::MAX, 1, 7]);
        assert_eq!(values::<u64>(&node("ReduceMax").int("keepdims", 0).run1(&[&u]).unwrap()).1, vec![u64::MAX]);
        let arg = node("ArgMin").run1(&[&t(&[3], &[5u16, 2, 9])]).unwrap();
        assert_eq!(values::<i64>(&arg).1, vec![1]);
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
    fn min_prod_norms_and_log_sums() {
        let x = t(&[2, 2], &[1.0f32, -2.0, 3.0, 4.0]);
        let reduce = |op: &str| node(op).opset(18).int("keepdims", 0).run1(&[&x, &t(&[1], &[1i64])]).unwrap();
        assert_close(&reduce("ReduceMin"), &[2], &[-2.0, 3.0]);
        assert_close(&reduce("ReduceProd"), &[2], &[-2.0, 12.0]);
        assert_close(&reduce("ReduceSumSquare"), &[2], &[5.0, 25.0]);
        assert_close(&reduce("ReduceL1"), &[2], &[3.0, 7.0]);
        assert_close(&reduce("ReduceL2"), &[2], &[5f32.sqrt(), 5.0]);
        assert_close(&reduce("ReduceLogSum"), &[2], &[f32::NAN, 7f32.ln()]);
        let lse = |a: f32, b: f32| (a.exp() + b.exp()).ln();
        assert_close(&reduce("ReduceLogSumExp"), &[2], &[lse(1.0, -2.0), lse(3.0, 4.0)]);
        let big = t(&[2], &[1000.0f32, 1000.0]);
        let y = node("ReduceLogSumExp").opset(18).run1(&[&big]).unwrap();
        assert_close(&y, &[1], &[1000.0 + 2f32.ln()]);
        let empty = t::<f32>(&[0], &[]);
        assert_close(&node("ReduceMin").opset(18).run1(&[&empty]).unwrap(), &[1], &[f32::INFINITY]);
        assert_close(&node("ReduceProd").opset(18).run1(&[&empty]).unwrap(), &[1], &[1.0]);
        let b = t(&[3], &[true, false, true]);
        assert_eq!(values::<bool>(&node("ReduceMax").opset(20).run1(&[&b]).unwrap()).1, vec![true]);
        assert_eq!(values::<bool>(&node("ReduceMin").opset(20).run1(&[&b]).unwrap()).1, vec![false]);
        let i = t(&[2], &[3i64, 4]);
        assert_eq!(values::<i64>(&node("ReduceL2").opset(18).run1(&[&i]).unwrap()).1, vec![5]);
    }

    #[test]
    fn argmin_and_log_softmax() {
        let x = t(&[2, 3], &[3.0f32, 1.0, 1.0, 0.0, 5.0, -1.0]);
        let y = node("ArgMin").int("axis", 1).run1(&[&x]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![2, 1], vec![1, 2]));
        let y = node("ArgMin").int("axis", 1).int("select_last_index", 1).run1(&[&x]).unwrap();
        assert_eq!(values::<i64>(&y).1, vec![2, 2]);
        let y = node("LogSoftmax").opset(13).run1(&[&x]).unwrap();
        let row = [3.0f32, 1.0, 1.0];
        let lse = row.iter().map(|v| v.exp()).sum::<f32>().ln();
        assert_eq!(y.shape(), &[2, 3]);
        let got = values::<f32>(&y).1;
        for (g, v) in got.iter().zip(row) {
            assert!((g - (v - lse)).abs() < 1e-5, "{g} vs {}", v - lse);
        }
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
    fn softmax_long_rows_sum_to_one() {
        let values: Vec<f32> = (0..19).map(|i| i as f32 * 0.5 - 3.0).collect();
        let y = node("Softmax").run1(&[&t(&[19], &values)]).unwrap();
        let total: f64 = values.iter().map(|&v| (v as f64).exp()).sum();
        let want: Vec<f32> = values.iter().map(|&v| ((v as f64).exp() / total) as f32).collect();
        assert_close(&y, &[19], &want);
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

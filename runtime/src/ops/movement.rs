//! Ops that move or select whole slabs of elements: Concat, Split, Slice, Transpose, Tile.
//! Split, Slice and Transpose return views sharing the input's buffer.

use ndarray::{Axis, IxDyn, Slice};

use super::common::{checked_len, contiguous, from_shape_vec, input_ints, kernel, model_err, normalize_axes, normalize_axis, IntsFrom};
use super::{input, optional_input, Kernel, OpContext, Registry};
use crate::error::{op_err, Result};
use crate::kernels::layout::concat_slabs;
use crate::tensor::{Array, Element, Tensor};
use crate::with_array;

/// Row-major concatenation: for each index of the dims before `axis`, every input's contiguous
/// slab in turn (appending a token to a KV cache is a copy at memory speed).
fn concat_typed<T: Element>(first: &Array<T>, rest: &[&Tensor], axis: usize) -> Result<Tensor> {
    let mut arrays = vec![first];
    for t in rest {
        arrays.push(t.array::<T>()?);
    }
    let outer: usize = first.shape()[..axis].iter().product();
    let slabs: Vec<(usize, _)> = arrays
        .iter()
        .map(|a| (a.shape()[axis..].iter().product::<usize>(), contiguous(*a)))
        .collect();
    let parts: Vec<(usize, &[T])> = slabs.iter().map(|(len, data)| (*len, &data[..])).collect();
    let mut shape = first.shape().to_vec();
    shape[axis] = arrays.iter().map(|a| a.shape()[axis]).sum();
    checked_len(&shape)?;
    let out = concat_slabs(outer, &parts);
    Ok(Tensor::from(from_shape_vec(&shape, out)?))
}

/// Checks that `all` can be joined along `axis` (same dtype and rank, every other dim equal);
/// returns the axis in `[0, rank)`.
pub(super) fn concat_axis(all: &[&Tensor], axis: i64) -> Result<usize> {
    let first = all.first().ok_or_else(|| op_err("Concat needs at least one input"))?;
    let axis = normalize_axis(axis, first.rank())?;
    for (i, t) in all.iter().enumerate() {
        let same_dims = t.rank() == first.rank()
            && t.shape().iter().zip(first.shape()).enumerate().all(|(d, (a, b))| d == axis || a == b);
        if t.dtype() != first.dtype() || !same_dims {
            return Err(op_err(format!(
                "input #{i} ({} {:?}) does not match input #0 ({} {:?}) outside axis {axis}",
                t.dtype(),
                t.shape(),
                first.dtype(),
                first.shape()
            )));
        }
    }
    Ok(axis)
}

/// Joins tensors along `axis`; all must agree in dtype, rank and every other dim.
pub(super) fn concat(all: &[&Tensor], axis: i64) -> Result<Tensor> {
    let axis = concat_axis(all, axis)?;
    match all {
        [only] => Ok((*only).clone()),
        [first, rest @ ..] => with_array!(first, a => concat_typed(a, rest, axis)),
        [] => Err(op_err("Concat needs at least one input")),
    }
}

fn concat_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let axis = ctx.attrs.require_int("axis")?;
    kernel(move |inputs| {
        let all = (0..inputs.len()).map(|i| input(inputs, i)).collect::<Result<Vec<_>>>()?;
        Ok(vec![concat(&all, axis)?])
    })
}

/// Views of consecutive pieces of `a` along `axis`, sharing its buffer.
fn pieces<T: Element>(a: &Array<T>, axis: usize, sizes: &[usize]) -> Vec<Tensor> {
    let mut start = 0;
    sizes
        .iter()
        .map(|&n| {
            let mut piece = a.clone();
            piece.slice_axis_inplace(Axis(axis), Slice::from(start..start + n));
            start += n;
            Tensor::from(piece)
        })
        .collect()
}

/// How Split sizes its pieces when no `split` list is given.
#[derive(Clone, Copy)]
enum EqualSplit {
    /// Before opset 18: the dim must divide evenly.
    Exact,
    /// Opset 18: ceil-sized chunks, the last one smaller.
    LastSmaller,
}

fn split(x: &Tensor, axis: i64, sizes: Option<Vec<i64>>, outputs: usize, equal: EqualSplit) -> Result<Vec<Tensor>> {
    let axis = normalize_axis(axis, x.rank())?;
    let dim = x.shape()[axis];
    let sizes: Vec<usize> = match sizes {
        Some(sizes) => {
            let sizes = sizes
                .iter()
                .map(|&s| usize::try_from(s).map_err(|_| op_err(format!("negative split size in {sizes:?}"))))
                .collect::<Result<Vec<_>>>()?;
            if sizes.iter().sum::<usize>() != dim {
                return Err(op_err(format!("split sizes {sizes:?} do not add up to dim {dim} of axis {axis}")));
            }
            sizes
        }
        None if outputs == 0 => return Err(op_err("Split has no outputs")),
        None => {
            let chunk = dim.div_ceil(outputs);
            let exact = dim.is_multiple_of(outputs);
            if matches!(equal, EqualSplit::Exact) && !exact || chunk * (outputs - 1) > dim {
                return Err(op_err(format!("dim {dim} of axis {axis} cannot be split into {outputs} parts")));
            }
            (0..outputs).map(|i| chunk.min(dim - chunk * i)).collect()
        }
    };
    Ok(with_array!(x, a => pieces(a, axis, &sizes)))
}

fn split_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let axis = ctx.attrs.int_or("axis", 0);
    let sizes = IntsFrom::for_opset(ctx, 13, "split", 1);
    let outputs = ctx.num_outputs();
    if let Some(n) = ctx.attrs.int("num_outputs").filter(|&n| n != outputs as i64) {
        return Err(model_err(ctx, format!("num_outputs is {n} but the node has {outputs} outputs")));
    }
    let equal = if ctx.opset >= 18 { EqualSplit::LastSmaller } else { EqualSplit::Exact };
    kernel(move |inputs| {
        // An empty `split` list means equal parts, as when it is absent.
        let sizes = sizes.get(inputs)?.filter(|s| !s.is_empty());
        split(input(inputs, 0)?, axis, sizes, outputs, equal)
    })
}

/// The ndarray slice selecting `start:end:step` on a dim of size `dim`, clamped as the ONNX
/// spec says (like numpy, except that a negative-step start before the dim clamps to 0).
fn slice_range(dim: usize, start: i64, end: i64, step: i64) -> Result<Slice> {
    if step == 0 {
        return Err(op_err("slice step cannot be 0"));
    }
    let d = dim as i64;
    let resolve = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    // Steps longer than the dim select at most one element either way.
    let step = step.clamp(-d - 1, d + 1);
    let empty = Slice::new(0, Some(0), 1);
    if step > 0 {
        let (s, e) = (resolve(start).clamp(0, d), resolve(end).clamp(0, d));
        return Ok(if s < e { Slice::new(s as isize, Some(e as isize), step as isize) } else { empty });
    }
    if d == 0 {
        return Ok(empty);
    }
    let (s, e) = (resolve(start).clamp(0, d - 1), resolve(end).clamp(-1, d - 1));
    if s <= e {
        return Ok(empty);
    }
    // Indices s, s+step, ... while > e. ndarray walks a negative step down from the range's
    // end, so the range must start at the last index taken.
    let count = (s - e - 1) / -step + 1;
    let last = s + (count - 1) * step;
    Ok(Slice::new(last as isize, Some(s as isize + 1), step as isize))
}

fn slice(x: &Tensor, starts: &[i64], ends: &[i64], axes: Option<Vec<i64>>, steps: Option<Vec<i64>>) -> Result<Tensor> {
    let n = starts.len();
    let axes = match axes {
        Some(axes) => normalize_axes(&axes, x.rank())?,
        None => (0..n).collect(),
    };
    let steps = steps.unwrap_or_else(|| vec![1; n]);
    if ends.len() != n || axes.len() != n || steps.len() != n {
        return Err(op_err(format!(
            "starts, ends, axes and steps differ in length ({n}, {}, {}, {})",
            ends.len(),
            axes.len(),
            steps.len()
        )));
    }
    if let Some(&bad) = axes.iter().find(|&&a| a >= x.rank()) {
        return Err(op_err(format!("axis {bad} is out of range for a tensor of rank {}", x.rank())));
    }
    let ranges = (0..n)
        .map(|i| slice_range(x.shape()[axes[i]], starts[i], ends[i], steps[i]))
        .collect::<Result<Vec<_>>>()?;
    Ok(with_array!(x, a => {
        let mut view = a.clone();
        for (&axis, &range) in axes.iter().zip(&ranges) {
            view.slice_axis_inplace(Axis(axis), range);
        }
        Tensor::from(view)
    }))
}

fn slice_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    if ctx.opset >= 10 {
        return kernel(|inputs| {
            let ints = |i| optional_input(inputs, i).map(Tensor::to_i64_vec).transpose();
            Ok(vec![slice(input(inputs, 0)?, &input_ints(inputs, 1)?, &input_ints(inputs, 2)?, ints(3)?, ints(4)?)?])
        });
    }
    let required = |name| ctx.attrs.ints(name).ok_or_else(|| model_err(ctx, format!("attribute '{name}' is required")));
    let (starts, ends, axes) = (required("starts")?, required("ends")?, ctx.attrs.ints("axes"));
    kernel(move |inputs| Ok(vec![slice(input(inputs, 0)?, &starts, &ends, axes.clone(), None)?]))
}

fn transpose(x: &Tensor, perm: Option<&[i64]>) -> Result<Tensor> {
    let rank = x.rank();
    let perm: Vec<usize> = match perm {
        None => (0..rank).rev().collect(),
        Some(p) => {
            let mut seen = vec![false; rank];
            let valid = p.len() == rank
                && p.iter().all(|&a| {
                    usize::try_from(a).is_ok_and(|a| a < rank && !std::mem::replace(&mut seen[a], true))
                });
            if !valid {
                return Err(op_err(format!("perm {p:?} is not a permutation of the {rank} axes")));
            }
            p.iter().map(|&a| a as usize).collect()
        }
    };
    Ok(with_array!(x, a => Tensor::from(a.clone().permuted_axes(IxDyn(&perm)))))
}

fn transpose_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let perm = ctx.attrs.ints("perm");
    kernel(move |inputs| Ok(vec![transpose(input(inputs, 0)?, perm.as_deref())?]))
}

/// Repeats `a` `reps[i]` times along each axis: a `[1, d0, 1, d1, ..]` view broadcast to
/// `[r0, d0, r1, d1, ..]`, then flattened pairwise.
fn tile_typed<T: Element>(a: &Array<T>, reps: &[usize]) -> Result<Tensor> {
    let (mut paired, mut repeated, mut out) = (Vec::new(), Vec::new(), Vec::new());
    for (&d, &r) in a.shape().iter().zip(reps) {
        paired.extend([1, d]);
        repeated.extend([r, d]);
        out.push(r * d);
    }
    checked_len(&out)?;
    let standard = a.as_standard_layout();
    let paired = standard
        .view()
        .into_shape_with_order(IxDyn(&paired))
        .map_err(|e| op_err(format!("Tile: {e}")))?;
    let expanded = paired
        .broadcast(IxDyn(&repeated))
        .ok_or_else(|| op_err("Tile: internal broadcast failed"))?;
    Ok(from_shape_vec(&out, expanded.iter().copied().collect())?.into())
}

fn tile(x: &Tensor, reps: &[i64]) -> Result<Tensor> {
    if reps.len() != x.rank() {
        return Err(op_err(format!("{} repeats for a tensor of rank {}", reps.len(), x.rank())));
    }
    let reps = reps
        .iter()
        .map(|&r| usize::try_from(r).map_err(|_| op_err(format!("negative repeat count in {reps:?}"))))
        .collect::<Result<Vec<_>>>()?;
    with_array!(x, a => tile_typed(a, &reps))
}

/// Registers the movement ops.
pub(super) fn register(reg: &mut Registry) {
    reg.register("", "Concat", 4, concat_factory);
    reg.register("", "Split", 2, split_factory);
    reg.register("", "Slice", 1, slice_factory);
    reg.register("", "Transpose", 1, transpose_factory);
    reg.register("", "Tile", 6, |_| kernel(|inputs| Ok(vec![tile(input(inputs, 0)?, &input_ints(inputs, 1)?)?])));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::{assert_err, node, t, values};

    fn iota(shape: &[usize]) -> Tensor {
        t(shape, &(0..shape.iter().product::<usize>() as i64).collect::<Vec<_>>())
    }

    #[test]
    fn concat_along_negative_axis_and_errors() {
        let a = iota(&[2, 2]);
        let b = t(&[2, 1], &[10i64, 11]);
        let y = node("Concat").int("axis", -1).run1(&[&a, &b]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![2, 3], vec![0, 1, 10, 2, 3, 11]));
        let y = node("Concat").int("axis", 0).run1(&[&a, &iota(&[0, 2])]).unwrap();
        assert_eq!(values::<i64>(&y).0, vec![2, 2]);
        assert_err(node("Concat").int("axis", 0).run1(&[&a, &b]), "does not match input #0");
        assert_err(node("Concat").int("axis", 0).run1(&[&a, &t(&[1, 2], &[1.0f32, 2.0])]), "input #1 (float32");
        assert_err(node("Concat").int("axis", 2).run1(&[&a, &a]), "axis 2 is out of range");
        assert_err(node("Concat").run1(&[&a, &a]), "'axis' is required");
    }

    #[test]
    fn concat_along_a_middle_axis_of_a_transposed_view() {
        // A KV-cache append: [2, 2, 3] past with [2, 1, 3] new, the new one a transposed view.
        let past = iota(&[2, 2, 3]);
        let new = Tensor::from(iota(&[3, 1, 2]).array::<i64>().unwrap().clone().permuted_axes(IxDyn(&[2, 1, 0])));
        let y = node("Concat").int("axis", 1).run1(&[&past, &new]).unwrap();
        let expected = ndarray::concatenate(
            Axis(1),
            &[past.array::<i64>().unwrap().view(), new.array::<i64>().unwrap().view()],
        )
        .unwrap();
        assert_eq!(values::<i64>(&y), (vec![2, 3, 3], expected.iter().copied().collect()));
    }

    #[test]
    fn split_by_attribute_input_and_num_outputs() {
        let x = iota(&[2, 5]);
        let out = node("Split").opset(11).outputs(2).int("axis", 1).ints("split", &[2, 3]).run(&[&x]).unwrap();
        assert_eq!(values::<i64>(&out[0]), (vec![2, 2], vec![0, 1, 5, 6]));
        assert_eq!(values::<i64>(&out[1]), (vec![2, 3], vec![2, 3, 4, 7, 8, 9]));
        let out = node("Split").opset(13).outputs(2).int("axis", -1).run(&[&x, &t(&[2], &[4i64, 1])]).unwrap();
        assert_eq!(values::<i64>(&out[1]), (vec![2, 1], vec![4, 9]));
        let out = node("Split").opset(18).outputs(3).int("axis", 1).int("num_outputs", 3).run(&[&x]).unwrap();
        let widths: Vec<usize> = out.iter().map(|t| t.shape()[1]).collect();
        assert_eq!(widths, vec![2, 2, 1]);
        assert_eq!(values::<i64>(&out[2]).1, vec![4, 9]);
        let out = node("Split").opset(13).outputs(2).run(&[&x]).unwrap();
        assert_eq!(values::<i64>(&out[1]), (vec![1, 5], vec![5, 6, 7, 8, 9]));
        let out = node("Split").opset(13).outputs(2).run(&[&x, &t::<i64>(&[0], &[])]).unwrap();
        assert_eq!(values::<i64>(&out[0]), (vec![1, 5], vec![0, 1, 2, 3, 4]));
    }

    #[test]
    fn split_errors() {
        let x = iota(&[2, 5]);
        assert_err(node("Split").opset(13).outputs(2).int("axis", 1).run(&[&x]), "cannot be split into 2");
        assert_err(node("Split").opset(13).outputs(2).int("axis", 1).run(&[&x, &t(&[2], &[2i64, 2])]), "do not add up");
        assert_err(node("Split").opset(13).outputs(2).int("axis", 1).run(&[&x, &t(&[2], &[6i64, -1])]), "negative");
        assert_err(node("Split").opset(18).outputs(4).int("axis", 1).run(&[&x]), "cannot be split into 4");
        assert_err(node("Split").opset(18).outputs(2).int("num_outputs", 3).run(&[&x]), "num_outputs is 3");
        assert_err(node("Split").opset(13).outputs(2).int("axis", 2).run(&[&x]), "out of range");
    }

    #[test]
    fn slice_ranges_follow_numpy() {
        let cases: [(i64, i64, i64, Vec<i64>); 10] = [
            (-10, i64::MIN, -1, vec![0]),
            (1, 4, 1, vec![1, 2, 3]),
            (-3, i64::MAX, 1, vec![3, 4, 5]),
            (0, 6, 2, vec![0, 2, 4]),
            (5, 0, -2, vec![5, 3, 1]),
            (-1, i64::MIN, -1, vec![5, 4, 3, 2, 1, 0]),
            (4, 1, -3, vec![4]),
            (10, -10, -4, vec![5, 1]),
            (3, 3, 1, vec![]),
            (0, 6, i64::MAX, vec![0]),
        ];
        let x = iota(&[6]);
        for (start, end, step, want) in cases {
            let y = node("Slice")
                .run1(&[&x, &t(&[1], &[start]), &t(&[1], &[end]), &t(&[1], &[0i64]), &t(&[1], &[step])])
                .unwrap();
            assert_eq!(values::<i64>(&y).1, want, "{start}:{end}:{step}");
        }
    }

    #[test]
    fn slice_axes_optional_inputs_and_legacy_form() {
        let x = iota(&[3, 4]);
        let y = node("Slice").run_opt(&[Some(&x), Some(&t(&[1], &[1i64])), Some(&t(&[1], &[3i64])), Some(&t(&[1], &[-1i64])), None]).unwrap();
        assert_eq!(values::<i64>(&y[0]), (vec![3, 2], vec![1, 2, 5, 6, 9, 10]));
        let y = node("Slice").run1(&[&x, &t(&[2], &[1i64, 0]), &t(&[2], &[3i64, 1])]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![2, 1], vec![4, 8]));
        let y = node("Slice").opset(9).ints("starts", &[1]).ints("ends", &[100]).ints("axes", &[0]).run1(&[&x]).unwrap();
        assert_eq!(values::<i64>(&y).0, vec![2, 4]);
        let i32_bounds = node("Slice").run1(&[&x, &t(&[1], &[2i32]), &t(&[1], &[3i32])]).unwrap();
        assert_eq!(values::<i64>(&i32_bounds).1, vec![8, 9, 10, 11]);
    }

    #[test]
    fn slice_errors() {
        let x = iota(&[3, 4]);
        let one = t(&[1], &[1i64]);
        assert_err(node("Slice").run1(&[&x, &one, &one, &one, &t(&[1], &[0i64])]), "step cannot be 0");
        assert_err(node("Slice").run1(&[&x, &one, &one, &t(&[1], &[2i64])]), "axis 2 is out of range");
        assert_err(node("Slice").run1(&[&x, &one, &t(&[2], &[1i64, 2])]), "differ in length");
        assert_err(node("Slice").run1(&[&x, &one, &one, &t(&[2], &[0i64, -1])]), "differ in length");
        assert_err(node("Slice").run1(&[&x, &t(&[2], &[0i64, 0]), &t(&[2], &[1i64, 1]), &t(&[2], &[0i64, -2])]), "repeated");
        assert_err(node("Slice").opset(9).ints("ends", &[1]).run1(&[&x]), "'starts' is required");
    }

    #[test]
    fn transpose_default_and_perm() {
        let x = iota(&[2, 3]);
        let y = node("Transpose").run1(&[&x]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![3, 2], vec![0, 3, 1, 4, 2, 5]));
        let x = iota(&[2, 1, 3]);
        let y = node("Transpose").ints("perm", &[2, 0, 1]).run1(&[&x]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![3, 2, 1], vec![0, 3, 1, 4, 2, 5]));
        assert_err(node("Transpose").ints("perm", &[0, 0, 1]).run1(&[&x]), "not a permutation");
        assert_err(node("Transpose").ints("perm", &[0, 1]).run1(&[&x]), "not a permutation");
        assert_err(node("Transpose").ints("perm", &[0, 1, -1]).run1(&[&x]), "not a permutation");
    }

    #[test]
    fn tile_repeats_each_axis() {
        let x = t(&[2, 2], &[1i64, 2, 3, 4]);
        let y = node("Tile").run1(&[&x, &t(&[2], &[1i64, 2])]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![2, 4], vec![1, 2, 1, 2, 3, 4, 3, 4]));
        let y = node("Tile").run1(&[&x, &t(&[2], &[2i64, 1])]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![4, 2], vec![1, 2, 3, 4, 1, 2, 3, 4]));
        let transposed = node("Transpose").run1(&[&x]).unwrap();
        let y = node("Tile").run1(&[&transposed, &t(&[2], &[1i64, 2])]).unwrap();
        assert_eq!(values::<i64>(&y).1, vec![1, 3, 1, 3, 2, 4, 2, 4]);
        assert_err(node("Tile").run1(&[&x, &t(&[1], &[2i64])]), "1 repeats for a tensor of rank 2");
        assert_err(node("Tile").run1(&[&x, &t(&[2], &[2i64, -1])]), "negative repeat");
    }
}

//! Helpers shared by the op families: kernel boxing, axis normalization, shape checks.

use std::borrow::Cow;

use ndarray::{ArrayBase, Data, IxDyn};

use super::{input, FnKernel, Kernel, OpContext};
use crate::error::{op_err, Error, Result};
use crate::kernels::layout::to_row_major;
use crate::onnx::MAX_TENSOR_ELEMENTS;
use crate::tensor::Tensor;

/// Boxes a closure over the node's inputs as a kernel.
pub(super) fn kernel<F>(f: F) -> Result<Box<dyn Kernel>>
where
    F: Fn(&[Option<&Tensor>]) -> Result<Vec<Tensor>> + Send + Sync + 'static,
{
    Ok(Box::new(FnKernel(f)))
}

/// A load-time error about the node's attributes, naming the node.
pub(super) fn model_err(ctx: &OpContext, message: impl std::fmt::Display) -> Error {
    Error::Model(format!("node '{}' ({}): {message}", ctx.node.name, ctx.node.op_type))
}

/// Maps an axis in `[-rank, rank)` to `[0, rank)`.
pub(super) fn normalize_axis(axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let normalized = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&normalized) {
        Ok(normalized as usize)
    } else {
        Err(op_err(format!("axis {axis} is out of range for a tensor of rank {rank}")))
    }
}

/// Normalizes a list of axes (see [`normalize_axis`]), rejecting repeats.
pub(super) fn normalize_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &axis in axes {
        let a = normalize_axis(axis, rank)?;
        if out.contains(&a) {
            return Err(op_err(format!("axis {axis} is repeated in {axes:?}")));
        }
        out.push(a);
    }
    Ok(out)
}

/// Where an op finds a list of integers that moved from an attribute to an input in a newer
/// opset (axes, split sizes).
pub(super) enum IntsFrom {
    /// Read from the named attribute at load (`None` when it is absent).
    Attr(Option<Vec<i64>>),
    /// Read from optional input `#i` at run time.
    Input(usize),
}

impl IntsFrom {
    /// The attribute `name` for opsets before `since`, else input `index`.
    pub(super) fn for_opset(ctx: &OpContext, since: i64, name: &str, index: usize) -> Self {
        if ctx.opset < since {
            IntsFrom::Attr(ctx.attrs.ints(name))
        } else {
            IntsFrom::Input(index)
        }
    }

    /// The integers, or `None` when neither the attribute nor the input is given.
    pub(super) fn get(&self, inputs: &[Option<&Tensor>]) -> Result<Option<Vec<i64>>> {
        match self {
            IntsFrom::Attr(values) => Ok(values.clone()),
            IntsFrom::Input(i) => super::optional_input(inputs, *i).map(Tensor::to_i64_vec).transpose(),
        }
    }
}

/// Converts dims read from a tensor or attribute to sizes, rejecting negatives and absurd
/// element counts.
pub(super) fn dims_to_shape(dims: &[i64]) -> Result<Vec<usize>> {
    let shape = dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| op_err(format!("negative dimension {d} in shape {dims:?}"))))
        .collect::<Result<Vec<_>>>()?;
    checked_len(&shape)?;
    Ok(shape)
}

/// The element count of `shape`, failing if it overflows or exceeds the runtime's limit.
pub(super) fn checked_len(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_TENSOR_ELEMENTS)
        .ok_or_else(|| op_err(format!("shape {shape:?} has too many elements")))
}

/// Reads a required input as a list of integers (int64 or int32).
pub(super) fn input_ints(inputs: &[Option<&Tensor>], i: usize) -> Result<Vec<i64>> {
    input(inputs, i)?.to_i64_vec()
}

/// Reads a required single-element integer input (int64 or int32).
pub(super) fn input_int(inputs: &[Option<&Tensor>], i: usize) -> Result<i64> {
    match input_ints(inputs, i)?.as_slice() {
        [v] => Ok(*v),
        other => Err(op_err(format!("input #{i} must hold one integer, got {} values", other.len()))),
    }
}

/// The array's elements in row-major order, borrowed when it is already contiguous.
pub(super) fn contiguous<T: Copy + Send + Sync, S: Data<Elem = T>>(a: &ArrayBase<S, IxDyn>) -> Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(to_row_major(a.view())),
    }
}

/// Builds an owned array from a shape and row-major data whose length the caller has ensured.
pub(super) fn from_shape_vec<T>(shape: &[usize], data: Vec<T>) -> Result<ndarray::ArrayD<T>> {
    ndarray::ArrayD::from_shape_vec(IxDyn(shape), data)
        .map_err(|e| op_err(format!("cannot build shape {shape:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_normalized_and_checked() {
        assert_eq!(normalize_axis(-1, 3).unwrap(), 2);
        assert_eq!(normalize_axis(0, 3).unwrap(), 0);
        assert!(normalize_axis(3, 3).is_err());
        assert!(normalize_axis(-4, 3).is_err());
        assert!(normalize_axis(0, 0).is_err());
        assert_eq!(normalize_axes(&[-1, 0], 2).unwrap(), vec![1, 0]);
        assert!(normalize_axes(&[1, -1], 2).is_err());
    }

    #[test]
    fn shapes_reject_negative_and_huge_dims() {
        assert_eq!(dims_to_shape(&[2, 0, 3]).unwrap(), vec![2, 0, 3]);
        assert!(dims_to_shape(&[2, -1]).is_err());
        assert!(dims_to_shape(&[1 << 40, 1 << 40]).is_err());
    }

    #[test]
    fn contiguous_borrows_standard_layout_and_copies_others() {
        let a = ndarray::ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1, 2, 3, 4]).unwrap();
        assert!(matches!(contiguous(&a), Cow::Borrowed(_)));
        let t = a.t();
        assert_eq!(contiguous(&t).as_ref(), &[1, 3, 2, 4]);
    }
}

//! The `ai.rbe` custom ops: `RbeMatMul` (with an optional fused activation), `RbeGather`,
//! `RbeLayerNorm`. Their compressed weights
//! are constant `uint8` inputs holding an encoded [`RbeTensor`], parsed once at load; weights
//! are decoded inside the kernels, never kept as a full f32 copy.

use std::sync::Arc;

use crate::error::{op_err, Error, Result};
use crate::kernels::activation::Activation;
use crate::kernels::buffers;
use crate::kernels::epilogue::bias_activation;
use crate::kernels::output::Output;
use crate::kernels::qmm::Activations;
use crate::ops::{input, optional_input, Kernel, OpContext, Registry};
use crate::rbe::RbeTensor;
use crate::tensor::Tensor;

/// The custom-op domain.
pub const DOMAIN: &str = "ai.rbe";

pub(super) fn register(reg: &mut Registry) {
    reg.register(DOMAIN, "RbeMatMul", 1, matmul);
    reg.register(DOMAIN, "RbeGather", 1, gather);
    reg.register(DOMAIN, "RbeLayerNorm", 1, layer_norm);
}

/// Parses the encoded tensor held by constant input `i`, sharing its bytes when the builder
/// kept them as such (initializers), copying them from a tensor otherwise.
fn encoded(ctx: &OpContext, i: usize) -> Result<Arc<RbeTensor>> {
    let bad = |what: &str| {
        Error::Model(format!("node '{}' ({}): input #{i} {what}", ctx.node.name, ctx.node.op_type))
    };
    if let Some(bytes) = ctx.shared_bytes(i) {
        return RbeTensor::from_shared(bytes).map(Arc::new).map_err(|e| bad(&e.to_string()));
    }
    let t = ctx.constant(i).ok_or_else(|| bad("must be a constant encoded tensor"))?;
    let bytes = t.array::<u8>().map_err(|_| bad("must be a uint8 encoded tensor"))?;
    let flat = bytes.as_standard_layout();
    let slice = flat.as_slice().ok_or_else(|| bad("is not contiguous"))?;
    RbeTensor::from_bytes(slice).map(Arc::new).map_err(|e| bad(&e.to_string()))
}

/// A constant float vector of length `n` from input `i`: raw f32, or an encoded single row.
fn param_vector(ctx: &OpContext, i: usize, n: Option<usize>) -> Result<Option<Vec<f32>>> {
    let values = match ctx.constant(i) {
        _ if ctx.shared_bytes(i).is_some() => encoded(ctx, i)?.decode(),
        Some(Tensor::U8(_)) => encoded(ctx, i)?.decode(),
        Some(Tensor::F32(a)) => a.iter().copied().collect(),
        Some(other) => {
            return Err(Error::Model(format!("node '{}': parameter of type {}", ctx.node.name, other.dtype())))
        }
        None => {
            return match ctx.node.input.get(i) {
                Some(name) if !name.is_empty() => Err(Error::Model(format!(
                    "node '{}': input '{name}' must be a constant",
                    ctx.node.name
                ))),
                _ => Ok(None),
            }
        }
    };
    if n.is_some_and(|n| n != values.len()) {
        return Err(Error::Model(format!(
            "node '{}': parameter #{i} has {} values, expected {}",
            ctx.node.name,
            values.len(),
            n.unwrap_or_default()
        )));
    }
    Ok(Some(values))
}

/// Contiguous f32 data of a tensor with its shape.
pub(super) fn contiguous(t: &Tensor) -> Result<(Vec<usize>, std::borrow::Cow<'_, [f32]>)> {
    let a = t.as_f32()?;
    let shape = a.shape().to_vec();
    Ok(match a.as_slice() {
        Some(s) => (shape, std::borrow::Cow::Borrowed(s)),
        None => (shape, std::borrow::Cow::Owned(a.iter().copied().collect())),
    })
}

/// A linear layer's output: the rows of `x` (whose last axis must be `k`) through
/// `product(rows, m, out)`, which writes every slot of `out` (m×n unwritten slots from the
/// buffer pool: a fresh buffer is not zeroed first) and returns the values; shaped like `x`
/// with the last axis `n`.
pub(super) fn linear_rows(
    x: &Tensor,
    k: usize,
    n: usize,
    product: impl for<'o> FnOnce(&[f32], usize, Output<'o>) -> Result<&'o mut [f32]>,
) -> Result<Tensor> {
    let (shape, x) = contiguous(x)?;
    if shape.last() != Some(&k) {
        return Err(op_err(format!("input of shape {shape:?} must end in {k}")));
    }
    let m = x.len() / k.max(1);
    let mut slots = buffers::take_unwritten(m * n);
    let (start, len) = (slots.as_ptr().cast::<f32>(), slots.len());
    let values = product(&x, m, Output::from(&mut slots[..]))?;
    // Safe code gets the values of an `Output` only once all of them are written.
    if values.as_ptr() != start || values.len() != len {
        return Err(op_err("a linear product returned other values than its output".to_string()));
    }
    // SAFETY: `values` are the slots, all written (checked just above).
    let out = unsafe { buffers::into_written(slots) };
    let mut out_shape = shape[..shape.len() - 1].to_vec();
    out_shape.push(n);
    Tensor::from_vec(&out_shape, out)
}

/// Inputs of the fused linear ops after the weight and bias: the residual branch of an `Add`
/// that fusion folded into them, and the shape of the Reshape that stood between.
pub(super) const RESIDUAL_INPUT: usize = 3;

/// Whether a fused linear op takes input `i` over at load: the weight and the bias (the
/// residual and the Reshape shape are values of each run).
pub(super) fn absorbs_linear_input(i: usize) -> bool {
    matches!(i, 1 | 2)
}

/// The linear output `y` with the residual `Add` folded into the op, when the node has one
/// (input [`RESIDUAL_INPUT`], then the optional shape of a Reshape applied to `y` before the
/// Add): `Reshape(y, shape) + residual`. When the two have one shape, the residual is added
/// in place into the output buffer the product just wrote; otherwise the Add's broadcasting
/// computes it.
pub(super) fn add_residual(y: Tensor, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let Some(residual) = optional_input(inputs, RESIDUAL_INPUT) else { return Ok(y) };
    let y = match optional_input(inputs, RESIDUAL_INPUT + 1) {
        Some(shape) => {
            let target = super::shape::reshape_target(y.shape(), &shape.to_i64_vec()?, false)?;
            let reshaped = y.reshape(&target)?;
            // The reshaped tensor shares y's buffer: let go of y so the add stays in place.
            drop(y);
            reshaped
        }
        None => y,
    };
    match (y, residual) {
        (Tensor::F32(mut y), Tensor::F32(r)) if y.shape() == r.shape() => {
            y.zip_mut_with(r, |o, v| *o += v);
            Ok(Tensor::F32(y))
        }
        (y, r) => super::elementwise::add(&y, r),
    }
}

/// The `activation` attribute of fused linear ops ("" when absent).
pub(super) fn activation_attr(ctx: &OpContext) -> Result<Activation> {
    let name = ctx.attrs.string("activation")?.unwrap_or_default();
    Activation::from_name(&name).ok_or_else(|| {
        Error::Model(format!("node '{}' ({}): unknown activation '{name}'", ctx.node.name, ctx.node.op_type))
    })
}

/// `Y = act(X · Wᵀ + bias)` with `W` encoded as `N` rows of length `K`, plus a folded
/// residual when fusion gave the node one ([`add_residual`]).
struct RbeMatMul {
    weight: Arc<RbeTensor>,
    bias: Option<Vec<f32>>,
    activation: Activation,
    activations: Activations,
}

fn matmul(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let weight = encoded(ctx, 1)?;
    let bias = param_vector(ctx, 2, Some(weight.rows()))?;
    let activation = activation_attr(ctx)?;
    Ok(Box::new(RbeMatMul { weight, bias, activation, activations: ctx.options.activations }))
}

impl Kernel for RbeMatMul {
    fn absorbs(&self, input: usize) -> bool {
        absorbs_linear_input(input)
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (k, n) = (self.weight.cols(), self.weight.rows());
        let y = linear_rows(input(inputs, 0)?, k, n, |x, m, out| {
            let out = self.weight.matmul_with(x, m, out, self.activations)?;
            bias_activation(out, n, self.bias.as_deref(), self.activation);
            Ok(out)
        })?;
        Ok(vec![add_residual(y, inputs)?])
    }
}

/// Rows of an encoded `[V, D]` table: output shape `indices.shape + [D]`.
struct RbeGather {
    table: Arc<RbeTensor>,
}

fn gather(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(RbeGather { table: encoded(ctx, 0)? }))
}

impl Kernel for RbeGather {
    fn absorbs(&self, input: usize) -> bool {
        input == 0
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let indices = input(inputs, 1)?;
        let ids = indices.to_i64_vec()?;
        let (v, d) = (self.table.rows(), self.table.cols());
        let mut out = vec![0f32; ids.len() * d];
        for (&id, row) in ids.iter().zip(out.chunks_exact_mut(d.max(1))) {
            let r = if id < 0 { id + v as i64 } else { id };
            if r < 0 || r >= v as i64 {
                return Err(op_err(format!("index {id} is out of range for a table of {v} rows")));
            }
            self.table.decode_row(r as usize, row)?;
        }
        let mut shape = indices.shape().to_vec();
        shape.push(d);
        Tensor::from_vec(&shape, out).map(|t| vec![t])
    }
}

/// LayerNorm over the trailing axes from `axis`, with raw or encoded scale and bias
/// (decoded once at load: they are vectors).
struct RbeLayerNorm {
    axis: i64,
    epsilon: f32,
    scale: Tensor,
    bias: Option<Tensor>,
}

fn layer_norm(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let scale = param_vector(ctx, 1, None)?
        .ok_or_else(|| Error::Model(format!("node '{}': RbeLayerNorm needs a scale", ctx.node.name)))?;
    let n = scale.len();
    let bias = param_vector(ctx, 2, Some(n))?;
    Ok(Box::new(RbeLayerNorm {
        axis: ctx.attrs.int_or("axis", -1),
        epsilon: ctx.attrs.float_or("epsilon", 1e-5),
        scale: Tensor::from_vec(&[n], scale)?,
        bias: bias.map(|b| Tensor::from_vec(&[n], b)).transpose()?,
    }))
}

impl Kernel for RbeLayerNorm {
    fn absorbs(&self, input: usize) -> bool {
        input >= 1
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let [y, _, _] = super::nn::layer_norm(input(inputs, 0)?, &self.scale, self.bias.as_ref(), self.axis, self.epsilon)?;
        Ok(vec![y])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_residual_of_the_reshaped_shape_is_added_in_place_and_one_that_broadcasts_is_not() {
        let y = || Tensor::from_vec(&[2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let shape = Tensor::from_vec(&[3], vec![1i64, 2, 3]).unwrap();
        let residual = Tensor::from_vec(&[1, 2, 3], vec![10.0f32, 20.0, 30.0, 40.0, 50.0, 60.0]).unwrap();
        let (product, none) = (y(), None);
        let start = product.as_f32().unwrap().as_ptr();
        let sum = add_residual(product, &[none, none, none, Some(&residual), Some(&shape)]).unwrap();
        assert_eq!(sum.shape(), &[1, 2, 3]);
        assert_eq!(sum.as_f32().unwrap().as_ptr(), start, "added into the product's buffer");
        assert_eq!(sum.as_f32().unwrap().iter().copied().collect::<Vec<_>>(), [11.0, 22.0, 33.0, 44.0, 55.0, 66.0]);
        let row = Tensor::from_vec(&[2, 1, 3], vec![0.5f32, 0.5, 0.5, -1.0, -1.0, -1.0]).unwrap();
        let sum = add_residual(y(), &[none, none, none, Some(&row), Some(&shape)]).unwrap();
        assert_eq!(sum.shape(), &[2, 2, 3]);
        assert_eq!(sum.as_f32().unwrap().iter().copied().collect::<Vec<_>>(), [1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(add_residual(y(), &[none]).unwrap().shape(), &[2, 3], "no residual: the product as it is");
        let bad = Tensor::from_vec(&[2], vec![4i64, 4]).unwrap();
        assert!(add_residual(y(), &[none, none, none, Some(&residual), Some(&bad)]).is_err());
    }
}

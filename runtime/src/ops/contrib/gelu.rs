//! The GELU family of onnxruntime: `Gelu` (erf form), `FastGelu` (tanh form, optional bias),
//! `BiasGelu` (erf form of `A + B`) and `QuickGelu` (`x · sigmoid(alpha · x)`, alpha 1.702 by
//! default). A bias is one value per element of the last axis. Computed in float32, returned
//! in the input's type.

use super::{f32_values, DOMAIN};
use crate::error::{op_err, Result};
use crate::kernels::activation::{exp, Activation};
use crate::kernels::epilogue::bias_activation;
use crate::ops::cast::cast;
use crate::ops::common::kernel;
use crate::ops::{input, optional_input, Kernel, OpContext, Registry};
use crate::tensor::Tensor;

pub(super) fn register(reg: &mut Registry) {
    reg.register(DOMAIN, "Gelu", 1, |_| gelu_kernel(Activation::GeluErf, false));
    reg.register(DOMAIN, "FastGelu", 1, |_| gelu_kernel(Activation::GeluTanh, false));
    reg.register(DOMAIN, "BiasGelu", 1, |_| gelu_kernel(Activation::GeluErf, true));
    reg.register(DOMAIN, "QuickGelu", 1, quick_gelu);
}

/// `act(x + bias)`, with input #1 as the bias (`required` or optional).
fn gelu_kernel(act: Activation, bias_required: bool) -> Result<Box<dyn Kernel>> {
    kernel(move |inputs| {
        let x = input(inputs, 0)?;
        let bias = if bias_required { Some(input(inputs, 1)?) } else { optional_input(inputs, 1) };
        let (mut y, n) = float_data(x)?;
        let bias = bias.map(|b| row_bias(x, b, n)).transpose()?;
        bias_activation(&mut y, n, bias.as_deref(), act);
        Ok(vec![like(x, y)?])
    })
}

/// `x · sigmoid(alpha · x)`.
fn quick_gelu(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let alpha = ctx.attrs.float_or("alpha", 1.702);
    kernel(move |inputs| {
        let x = input(inputs, 0)?;
        let (mut y, _) = float_data(x)?;
        for v in y.iter_mut() {
            *v /= 1.0 + exp(-alpha * *v);
        }
        Ok(vec![like(x, y)?])
    })
}

/// The input's values as float32 and the length of its last axis (1 for a scalar).
fn float_data(x: &Tensor) -> Result<(Vec<f32>, usize)> {
    Ok((f32_values(x, "the input")?, x.shape().last().copied().unwrap_or(1)))
}

/// The bias as float32, checked to be `[n]` of the input's type.
fn row_bias(x: &Tensor, bias: &Tensor, n: usize) -> Result<Vec<f32>> {
    if bias.dtype() != x.dtype() || bias.shape() != [n] || x.rank() == 0 {
        return Err(op_err(format!(
            "bias is {} {:?}, expected {} [{n}] (the last axis of the input)",
            bias.dtype(),
            bias.shape(),
            x.dtype()
        )));
    }
    f32_values(bias, "bias")
}

/// `values` shaped and typed like `x`.
fn like(x: &Tensor, values: Vec<f32>) -> Result<Tensor> {
    Ok(cast(&Tensor::from_vec(x.shape(), values)?, x.dtype()))
}

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

#[cfg(test)]
mod tests {
    use half::f16;

    use crate::ops::testutil::{assert_close, assert_err, node, t, NodeSpec};

    fn spec(op: &str) -> NodeSpec {
        node(op).domain("com.microsoft").opset(1)
    }

    #[test]
    fn the_family_computes_its_forms() {
        let x = t(&[2, 2], &[-1.0f32, 0.0, 1.0, 2.0]);
        let erf = |v: f64| 0.5 * v * (1.0 + crate::kernels::erf::erf(v / 2f64.sqrt()));
        let want: Vec<f32> = [-1.0, 0.0, 1.0, 2.0].iter().map(|&v| erf(v) as f32).collect();
        assert_close(&spec("Gelu").run1(&[&x]).unwrap(), &[2, 2], &want);
        let bias = t(&[2], &[1.0f32, -1.0]);
        let want: Vec<f32> = [0.0, -1.0, 2.0, 1.0].iter().map(|&v| erf(v) as f32).collect();
        assert_close(&spec("BiasGelu").run1(&[&x, &bias]).unwrap(), &[2, 2], &want);
        let tanh = |v: f64| 0.5 * v * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v)).tanh());
        let want: Vec<f32> = [0.0, -1.0, 2.0, 1.0].iter().map(|&v| tanh(v) as f32).collect();
        assert_close(&spec("FastGelu").run1(&[&x, &bias]).unwrap(), &[2, 2], &want);
        let quick = |v: f64, a: f64| v / (1.0 + (-a * v).exp());
        let want: Vec<f32> = [-1.0, 0.0, 1.0, 2.0].iter().map(|&v| quick(v, 1.702) as f32).collect();
        assert_close(&spec("QuickGelu").run1(&[&x]).unwrap(), &[2, 2], &want);
        let want: Vec<f32> = [-1.0, 0.0, 1.0, 2.0].iter().map(|&v| quick(v, 0.5) as f32).collect();
        assert_close(&spec("QuickGelu").float("alpha", 0.5).run1(&[&x]).unwrap(), &[2, 2], &want);
        let h = t(&[1], &[f16::from_f32(1.0)]);
        assert_eq!(spec("Gelu").run1(&[&h]).unwrap(), t(&[1], &[f16::from_f32(erf(1.0) as f32)]));
    }

    #[test]
    fn a_bias_must_match_the_last_axis() {
        let x = t(&[2, 2], &[1.0f32; 4]);
        assert_err(spec("BiasGelu").run1(&[&x, &t(&[2, 2], &[1.0f32; 4])]), "bias is float32 [2, 2]");
        assert_err(spec("FastGelu").run1(&[&x, &t(&[2], &[f16::from_f32(1.0); 2])]), "bias is float16");
        assert_err(spec("BiasGelu").run_opt(&[Some(&x), None]), "missing required input #1");
        assert_err(spec("Gelu").run1(&[&t(&[1], &[1i64])]), "float");
    }
}

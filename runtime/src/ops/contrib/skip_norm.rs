//! `SkipLayerNormalization` and `SkipSimplifiedLayerNormalization`: the residual sum
//! `s = input + skip (+ bias)` over the last axis, then LayerNorm (`gamma`, optional `beta`)
//! or RMS norm (`gamma`) of `s`. Outputs: the normalized value, the mean (0 for the RMS form)
//! and inverse standard deviation per row (float32, last axis 1), and `s` itself. `input` is
//! 2-D or 3-D; `skip` has its shape or broadcasts over its leading axes (`[S, H]`,
//! `[1, S, H]`); `gamma`, `beta` and `bias` are `[H]`. Computed in float32.

use super::DOMAIN;
use crate::error::{op_err, Result};
use crate::ops::cast::cast;
use crate::ops::common::{kernel, model_err};
use crate::ops::nn::layer_norm;
use crate::ops::rms_norm::rms_norm;
use crate::ops::{input, optional_input, Kernel, OpContext, Registry};
use crate::tensor::{DType, Tensor};

pub(super) fn register(reg: &mut Registry) {
    reg.register(DOMAIN, "SkipLayerNormalization", 1, |ctx| factory(ctx, false));
    reg.register(DOMAIN, "SkipSimplifiedLayerNormalization", 1, |ctx| factory(ctx, true));
}

fn factory(ctx: &OpContext, simplified: bool) -> Result<Box<dyn Kernel>> {
    let epsilon = ctx.attrs.float_or("epsilon", 1e-12);
    if epsilon.is_nan() || epsilon < 0.0 {
        return Err(model_err(ctx, format!("epsilon {epsilon} must be at least 0")));
    }
    let outputs = ctx.num_outputs().clamp(1, 4);
    kernel(move |inputs| {
        let (beta, bias) = if simplified {
            (None, optional_input(inputs, 3))
        } else {
            (optional_input(inputs, 3), optional_input(inputs, 4))
        };
        let x = input(inputs, 0)?;
        let sum = residual_sum(x, input(inputs, 1)?, bias)?;
        let gamma = hidden_vector(x, input(inputs, 2)?, "gamma")?;
        let beta = beta.map(|b| hidden_vector(x, b, "beta")).transpose()?;
        let [y, mean, inv_std] = if simplified {
            let [y, inv_std] = rms_norm(&sum, &gamma, -1, epsilon)?;
            let mean = Tensor::from_vec(inv_std.shape(), vec![0f32; inv_std.len()])?;
            [y, mean, inv_std]
        } else {
            layer_norm(&sum, &gamma, beta.as_ref(), -1, epsilon)?
        };
        let all = [cast(&y, x.dtype()), mean, inv_std, cast(&sum, x.dtype())];
        Ok(all.into_iter().take(outputs).collect())
    })
}

/// A `[H]` parameter of the input's type, as float32.
fn hidden_vector(x: &Tensor, p: &Tensor, what: &str) -> Result<Tensor> {
    let h = x.shape().last().copied().unwrap_or(0);
    if p.dtype() != x.dtype() || p.shape() != [h] {
        return Err(op_err(format!("{what} is {} {:?}, expected {} [{h}]", p.dtype(), p.shape(), x.dtype())));
    }
    Ok(cast(p, DType::F32))
}

/// `input + skip (+ bias)` in float32, after checking the shapes (see the module doc).
fn residual_sum(x: &Tensor, skip: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    if !x.dtype().is_float() {
        return Err(op_err(format!("input must be a float tensor, got {}", x.dtype())));
    }
    let (shape, sk) = (x.shape(), skip.shape());
    if !(2..=3).contains(&shape.len()) || shape.last().is_none_or(|&h| h == 0) {
        return Err(op_err(format!("input must be 2-D or 3-D with a hidden size, got shape {shape:?}")));
    }
    let tail = &shape[shape.len() - 2..];
    let broadcasts = (2..=3).contains(&sk.len()) && sk.ends_with(tail) && sk[..sk.len() - 2].iter().all(|&d| d == 1);
    if skip.dtype() != x.dtype() || !(sk == shape || broadcasts) {
        return Err(op_err(format!("skip is {} {sk:?}, expected {} {shape:?} or {tail:?}", skip.dtype(), x.dtype())));
    }
    let bias = bias.map(|b| hidden_vector(x, b, "bias")).transpose()?;
    let up = |t: &Tensor| cast(t, DType::F32);
    let (xf, sf) = (up(x), up(skip));
    let skip_values: Vec<f32> = sf.as_f32()?.iter().copied().collect();
    let h = shape[shape.len() - 1];
    let bias_values: Vec<f32> = match &bias {
        Some(b) => b.as_f32()?.iter().copied().collect(),
        None => vec![0.0; h],
    };
    let sum = xf
        .as_f32()?
        .iter()
        .zip(skip_values.iter().cycle())
        .zip(bias_values.iter().cycle())
        .map(|((&a, &s), &b)| a + s + b)
        .collect();
    Tensor::from_vec(shape, sum)
}

#[cfg(test)]
mod tests {
    use crate::ops::testutil::{assert_close, assert_err, node, t, NodeSpec};

    fn spec(op: &str) -> NodeSpec {
        node(op).domain("com.microsoft").opset(1).outputs(4).float("epsilon", 0.0)
    }

    #[test]
    fn normalizes_the_residual_sum_and_returns_it() {
        let x = t(&[1, 2, 2], &[1.0f32, 2.0, 3.0, 4.0]);
        let skip = t(&[2, 2], &[1.0f32, 0.0, 0.0, 0.0]);
        let gamma = t(&[2], &[1.0f32, 2.0]);
        let bias = t(&[2], &[0.0f32, 1.0]);
        // Sums (2, 3) and (3, 5): means 2.5 and 4, standard deviations 0.5 and 1.
        let out = spec("SkipLayerNormalization").run_opt(&[Some(&x), Some(&skip), Some(&gamma), None, Some(&bias)]).unwrap();
        assert_close(&out[0], &[1, 2, 2], &[-1.0, 2.0, -1.0, 2.0]);
        assert_close(&out[1], &[1, 2, 1], &[2.5, 4.0]);
        assert_close(&out[2], &[1, 2, 1], &[2.0, 1.0]);
        assert_close(&out[3], &[1, 2, 2], &[2.0, 3.0, 3.0, 5.0]);
        let out = spec("SkipSimplifiedLayerNormalization").run(&[&x, &skip, &gamma, &bias]).unwrap();
        let r = (6.5f32).sqrt();
        assert_close(&out[0], &[1, 2, 2], &[2.0 / r, 6.0 / r, 3.0 / 17f32.sqrt(), 10.0 / 17f32.sqrt()]);
        assert_close(&out[1], &[1, 2, 1], &[0.0, 0.0]);
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let x = t(&[1, 2, 2], &[1.0f32; 4]);
        let gamma = t(&[2], &[1.0f32; 2]);
        let op = spec("SkipLayerNormalization");
        assert_err(op.run(&[&x, &t(&[2], &[1.0f32; 2]), &gamma]), "skip is float32 [2]");
        assert_err(op.run(&[&x, &t(&[2, 2, 2], &[1.0f32; 8]), &gamma]), "skip");
        assert_err(op.run(&[&x, &x, &t(&[3], &[1.0f32; 3])]), "gamma is float32 [3]");
        assert_err(op.run(&[&t(&[4], &[1.0f32; 4]), &t(&[4], &[1.0f32; 4]), &t(&[4], &[1.0f32; 4])]), "2-D or 3-D");
        assert_err(op.run(&[&x, &x, &gamma, &t(&[1], &[0.0f32])]), "beta");
        assert_err(spec("SkipLayerNormalization").float("epsilon", -1.0).build().map(|_| ()), "epsilon");
    }
}

//! RMS normalization, `x / sqrt(mean(x²) + epsilon) * scale` over the dims from `axis` on,
//! computed in float32 and returned in the scale's type: RMSNormalization (opset 23) and
//! onnxruntime's SimplifiedLayerNormalization (default domain, opset 1), which may also
//! return the inverse RMS of each row (float32).

use super::broadcast::broadcast_to;
use super::cast::cast;
use super::common::{contiguous, from_shape_vec, kernel, model_err, normalize_axis};
use super::{input, Kernel, OpContext, Registry};
use crate::error::{op_err, Result};
use crate::tensor::{DType, Tensor};

/// Y (in `scale`'s type) and the inverse RMS per row (float32, shaped like `x` with the
/// normalized dims 1).
pub(super) fn rms_norm(x: &Tensor, scale: &Tensor, axis: i64, epsilon: f32) -> Result<[Tensor; 2]> {
    for t in [x, scale] {
        if !t.dtype().is_float() {
            return Err(op_err(format!("RMS normalization needs float inputs, got {}", t.dtype())));
        }
    }
    let axis = normalize_axis(axis, x.rank())?;
    let normalized = &x.shape()[axis..];
    let n: usize = normalized.iter().product();
    let up = |t: &Tensor| cast(t, DType::F32);
    let (xf, sf) = (up(x), up(scale));
    let scale_row = contiguous(&broadcast_to(sf.as_f32()?, normalized)?).into_owned();
    let data = contiguous(xf.as_f32()?);
    let mut y = vec![0.0f32; data.len()];
    let mut inv_rms = Vec::with_capacity(data.len() / n.max(1));
    if n > 0 {
        for (row, out) in data.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
            let mean_sq = row.iter().map(|v| v * v).sum::<f32>() / n as f32;
            let inv = 1.0 / (mean_sq + epsilon).sqrt();
            inv_rms.push(inv);
            for ((o, &v), &s) in out.iter_mut().zip(row).zip(&scale_row) {
                *o = v * inv * s;
            }
        }
    }
    let stat_shape: Vec<usize> = x.shape().iter().enumerate().map(|(d, &s)| if d < axis { s } else { 1 }).collect();
    let y = cast(&from_shape_vec(x.shape(), y)?.into(), scale.dtype());
    Ok([y, from_shape_vec(&stat_shape, inv_rms)?.into()])
}

/// A kernel returning the first `outputs` of [`rms_norm`] with the node's axis and epsilon.
fn rms_norm_kernel(ctx: &OpContext, outputs: usize) -> Result<Box<dyn Kernel>> {
    let axis = ctx.attrs.int_or("axis", -1);
    let epsilon = ctx.attrs.float_or("epsilon", 1e-5);
    let stash_type = ctx.attrs.int_or("stash_type", 1);
    if stash_type != 1 {
        return Err(model_err(ctx, format!("stash_type {stash_type}: only float32 (1) is supported")));
    }
    kernel(move |inputs| {
        let out = rms_norm(input(inputs, 0)?, input(inputs, 1)?, axis, epsilon)?;
        Ok(out.into_iter().take(outputs).collect())
    })
}

/// Registers RMSNormalization and SimplifiedLayerNormalization.
pub(super) fn register(reg: &mut Registry) {
    reg.register("", "RMSNormalization", 23, |ctx| rms_norm_kernel(ctx, 1));
    reg.register("", "SimplifiedLayerNormalization", 1, |ctx| rms_norm_kernel(ctx, ctx.num_outputs().clamp(1, 2)));
}

#[cfg(test)]
mod tests {
    use half::f16;

    use crate::ops::testutil::{assert_close, assert_err, node, t, values};

    #[test]
    fn normalizes_rows_and_checks_inputs() {
        let x = t(&[2, 2], &[3.0f32, 4.0, 1.0, 1.0]);
        let y = node("RMSNormalization").opset(23).float("epsilon", 0.0).run1(&[&x, &t(&[2], &[1.0f32, 2.0])]).unwrap();
        let r = (12.5f32).sqrt();
        assert_close(&y, &[2, 2], &[3.0 / r, 8.0 / r, 1.0, 2.0]);
        let y = node("RMSNormalization").opset(23).int("axis", 0).float("epsilon", 0.0).run1(&[&x, &t(&[], &[1.0f32])]).unwrap();
        let r = (27.0f32 / 4.0).sqrt();
        assert_close(&y, &[2, 2], &[3.0 / r, 4.0 / r, 1.0 / r, 1.0 / r]);
        assert_err(node("RMSNormalization").opset(23).run1(&[&x, &t(&[3], &[1.0f32; 3])]), "broadcast");
        assert_err(node("RMSNormalization").opset(23).int("axis", 2).run1(&[&x, &t(&[], &[1.0f32])]), "out of range");
        assert_err(node("RMSNormalization").opset(23).run1(&[&t(&[1], &[1i64]), &t(&[], &[1i64])]), "float");
    }

    #[test]
    fn simplified_layer_norm_returns_the_inverse_rms_and_the_scale_type() {
        let x = t(&[2, 2], &[3.0f32, 4.0, 1.0, 1.0]);
        let scale = t(&[2], &[f16::from_f32(1.0), f16::from_f32(2.0)]);
        let out = node("SimplifiedLayerNormalization").opset(1).outputs(2).float("epsilon", 0.0).run(&[&x, &scale]).unwrap();
        let (shape, y) = values::<f16>(&out[0]);
        assert_eq!(shape, [2, 2]);
        let r = (12.5f32).sqrt();
        assert!((y[1].to_f32() - 8.0 / r).abs() < 1e-2, "{y:?}");
        assert_close(&out[1], &[2, 1], &[1.0 / r, 1.0]);
        assert_err(node("SimplifiedLayerNormalization").opset(1).int("stash_type", 0).build().map(|_| ()), "stash_type");
    }
}

//! RMSNormalization (opset 23): `x / sqrt(mean(x²) + epsilon) * scale` over the dims from
//! `axis` on, computed in float32 and returned in the input's type.

use super::broadcast::broadcast_to;
use super::cast::cast;
use super::common::{contiguous, from_shape_vec, kernel, normalize_axis};
use super::{input, Kernel, OpContext, Registry};
use crate::error::{op_err, Result};
use crate::tensor::{DType, Tensor};

fn rms_norm(x: &Tensor, scale: &Tensor, axis: i64, epsilon: f32) -> Result<Tensor> {
    if !matches!(x.dtype(), DType::F32 | DType::F16 | DType::F64) {
        return Err(op_err(format!("RMSNormalization needs a float input, got {}", x.dtype())));
    }
    let axis = normalize_axis(axis, x.rank())?;
    let normalized = &x.shape()[axis..];
    let n: usize = normalized.iter().product();
    let up = |t: &Tensor| cast(t, DType::F32);
    let (xf, sf) = (up(x), up(scale));
    let scale = contiguous(&broadcast_to(sf.as_f32()?, normalized)?).into_owned();
    let data = contiguous(xf.as_f32()?);
    let mut y = vec![0.0f32; data.len()];
    if n > 0 {
        for (row, out) in data.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
            let mean_sq = row.iter().map(|v| v * v).sum::<f32>() / n as f32;
            let inv = 1.0 / (mean_sq + epsilon).sqrt();
            for ((o, &v), &s) in out.iter_mut().zip(row).zip(&scale) {
                *o = v * inv * s;
            }
        }
    }
    Ok(cast(&from_shape_vec(x.shape(), y)?.into(), x.dtype()))
}

fn rms_norm_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let axis = ctx.attrs.int_or("axis", -1);
    let epsilon = ctx.attrs.float_or("epsilon", 1e-5);
    kernel(move |inputs| Ok(vec![rms_norm(input(inputs, 0)?, input(inputs, 1)?, axis, epsilon)?]))
}

/// Registers RMSNormalization.
pub(super) fn register(reg: &mut Registry) {
    reg.register("", "RMSNormalization", 23, rms_norm_factory);
}

#[cfg(test)]
mod tests {
    use crate::ops::testutil::{assert_close, assert_err, node, t};

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
}

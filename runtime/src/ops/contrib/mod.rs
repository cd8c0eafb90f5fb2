//! onnxruntime's contrib ops (domain `com.microsoft`) that exported and quantized models use:
//! `MatMulNBits`, `GatherBlockQuantized`, `SkipLayerNormalization`,
//! `SkipSimplifiedLayerNormalization`, `Gelu`, `FastGelu`, `BiasGelu`, `QuickGelu`,
//! `GroupQueryAttention`, `MultiHeadAttention`, `Attention`, `RotaryEmbedding`. Their
//! semantics are onnxruntime's CPU kernels'; float16 is computed in float32 and returned as
//! float16, as those kernels do.

mod attention_core;
mod blocks;
mod fused_attention;
mod gather_block_quantized;
mod gelu;
mod gqa;
mod matmul_nbits;
mod mha;
mod rotary;
mod skip_norm;

use super::cast::cast;
use super::Registry;
use crate::error::{op_err, Result};
use crate::tensor::{DType, Tensor};

/// The contrib-op domain.
pub const DOMAIN: &str = "com.microsoft";

/// Registers every contrib op.
pub(super) fn register(reg: &mut Registry) {
    fused_attention::register(reg);
    gather_block_quantized::register(reg);
    gelu::register(reg);
    gqa::register(reg);
    matmul_nbits::register(reg);
    mha::register(reg);
    rotary::register(reg);
    skip_norm::register(reg);
}

/// The values of a float tensor as float32, row-major; `what` names it in errors.
fn f32_values(t: &Tensor, what: &str) -> Result<Vec<f32>> {
    if !t.dtype().is_float() {
        return Err(op_err(format!("{what} must be a float tensor, got {}", t.dtype())));
    }
    Ok(cast(t, DType::F32).as_f32()?.iter().copied().collect())
}

/// A float32 tensor of `shape` holding a short repeating ramp in [-1, 1] (for unit tests).
#[cfg(test)]
fn filled(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|i| (i % 9) as f32 / 4.0 - 1.0).collect()).expect("a consistent shape")
}

//! onnxruntime's contrib ops (domain `com.microsoft`) that exported and quantized models use:
//! `MatMulNBits`, `GatherBlockQuantized`, `SkipLayerNormalization`,
//! `SkipSimplifiedLayerNormalization`, `Gelu`, `FastGelu`, `BiasGelu`, `QuickGelu`. Their
//! semantics are onnxruntime's CPU kernels'; float16 is computed in float32 and returned as
//! float16, as those kernels do.

mod blocks;
mod gather_block_quantized;
mod gelu;
mod matmul_nbits;
mod skip_norm;

use super::cast::cast;
use super::Registry;
use crate::error::{op_err, Result};
use crate::tensor::{DType, Tensor};

/// The contrib-op domain.
pub const DOMAIN: &str = "com.microsoft";

/// Registers every contrib op.
pub(super) fn register(reg: &mut Registry) {
    gather_block_quantized::register(reg);
    gelu::register(reg);
    matmul_nbits::register(reg);
    skip_norm::register(reg);
}

/// The values of a float tensor as float32, row-major; `what` names it in errors.
fn f32_values(t: &Tensor, what: &str) -> Result<Vec<f32>> {
    if !t.dtype().is_float() {
        return Err(op_err(format!("{what} must be a float tensor, got {}", t.dtype())));
    }
    Ok(cast(t, DType::F32).as_f32()?.iter().copied().collect())
}

//! [`SessionOptions`]: choices made once, when a model is loaded.

use crate::kernels::qmm::Activations;

/// How a session builds and runs its graph.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Rewrite recognised op patterns (MatMul + bias + GELU, attention, LayerNorm) into fused
    /// ops before planning. On by default; off runs every node as the file spells it.
    pub fuse: bool,
    /// How compressed matmuls treat activations: exact f32 (default), or int8 activations
    /// with integer dot products (faster, like onnxruntime's `accuracy_level=4`): every
    /// single-row product, and several rows by 4-bit codes (see `kernels::qmm::gemm`).
    pub activations: Activations,
}

impl SessionOptions {
    /// The defaults: fusion on, exact activations.
    pub const DEFAULT: Self = Self { fuse: true, activations: Activations::Exact };
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

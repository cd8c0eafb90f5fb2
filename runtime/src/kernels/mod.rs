//! Compute kernels: the numeric inner loops that ops call. SIMD and rayon live here only.

pub mod activation;
pub mod buffers;
pub mod attention;
mod attention_rows;
pub mod blockq;
pub mod epilogue;
pub mod erf;
pub mod gemm;
pub mod head_products;
pub mod isa;
pub mod lanes;
pub mod layout;
pub mod output;
pub mod packed;
pub mod pool;
pub mod qmm;
pub mod sdpa;

//! Compute kernels: the numeric inner loops that ops call. SIMD and rayon live here only.

pub mod erf;
pub mod gemm;

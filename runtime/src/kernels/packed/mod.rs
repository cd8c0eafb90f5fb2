//! Float32 products by a constant right operand packed once, when the model loads:
//! `out = act(a·B + bias)`. On CPUs with AVX2 (or AVX-512) the matrix is kept as aligned
//! panels of columns that the micro-kernel of that level streams as they are (module
//! `panels`, kernels `avx2` and `avx512`); the `gemm` crate would re-pack it on every call,
//! which costs most on a vocabulary-sized head. At the portable level it stays a plain matrix
//! multiplied by the `gemm` crate. [`matmul_decoded`] runs the same kernel on compressed
//! weights, decoding one panel at a time.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod panels;

use ndarray::{Array2, ArrayView2, ArrayViewMut2};

use super::activation::Activation;
use super::epilogue::bias_activation;
use super::gemm::gemm;
use super::isa::Isa;
use super::output::Output;
use crate::error::{op_err, Result};

/// Products with fewer multiply-adds than this run on the calling thread.
const PARALLEL_MIN_WORK: usize = 1 << 18;

/// How the matrix is stored.
enum Layout {
    /// Column panels for the AVX2 or AVX-512 micro-kernel.
    #[cfg(target_arch = "x86_64")]
    Panels(panels::Panels),
    /// As given, for the `gemm` crate.
    Plain(Array2<f32>),
}

/// A constant k×n float32 matrix, stored for fast products `a·B`.
pub struct PackedMatrix {
    k: usize,
    n: usize,
    layout: Layout,
}

impl PackedMatrix {
    /// Packs `b` (k×n, any strides) for the kernel of the current level ([`Isa::current`]).
    pub fn new(b: ArrayView2<f32>) -> Self {
        Self::for_isa(b, Isa::current())
    }

    /// Packs `b` for the kernel of `isa`, lowered to what this CPU supports (plain, for the
    /// `gemm` crate, at the portable level).
    fn for_isa(b: ArrayView2<f32>, isa: Isa) -> Self {
        let (k, n) = b.dim();
        #[cfg(target_arch = "x86_64")]
        if let Some(kernel) = panels::Kernel::new(isa) {
            return PackedMatrix { k, n, layout: Layout::Panels(panels::Panels::pack(b, kernel)) };
        }
        let _ = isa;
        PackedMatrix { k, n, layout: Layout::Plain(b.as_standard_layout().into_owned()) }
    }

    /// Rows (the inner dimension of the product).
    pub fn rows(&self) -> usize {
        self.k
    }

    /// Columns (outputs per row of `a`).
    pub fn cols(&self) -> usize {
        self.n
    }

    /// `out = act(a·B + bias)` for `a` m×k and `out` m×n, both row-major; `bias` has one value
    /// per column. Writes every slot of `out` and returns the values.
    pub fn matmul<'o>(&self, a: &[f32], m: usize, out: Output<'o>, bias: Option<&[f32]>, act: Activation) -> Result<&'o mut [f32]> {
        let (k, n) = (self.k, self.n);
        if a.len() != m * k || out.len() != m * n || bias.is_some_and(|b| b.len() != n) {
            return Err(op_err(format!(
                "product of {} values as {m}x{k} by {k}x{n} into {} values (bias {:?}): sizes disagree",
                a.len(),
                out.len(),
                bias.map(<[f32]>::len)
            )));
        }
        let parallel = m * k * n >= PARALLEL_MIN_WORK && rayon::current_num_threads() > 1;
        match &self.layout {
            #[cfg(target_arch = "x86_64")]
            Layout::Panels(p) if k > 0 => Ok(p.matmul(a, m, out, bias, act, parallel)),
            layout => {
                let out = out.filled(0.0);
                if let (Layout::Plain(b), true) = (layout, k > 0) {
                    let av = ArrayView2::from_shape((m, k), a).map_err(|e| op_err(e.to_string()))?;
                    let ov = ArrayViewMut2::from_shape((m, n), &mut *out).map_err(|e| op_err(e.to_string()))?;
                    gemm(1.0, av, b.view(), 0.0, ov)?;
                }
                bias_activation(out, n, bias, act);
                Ok(out)
            }
        }
    }
}

/// Whether [`matmul_decoded`] has a micro-kernel for `isa` on this CPU (not at the portable
/// level).
pub fn decodes_by_panels(isa: Isa) -> bool {
    #[cfg(target_arch = "x86_64")]
    if panels::Kernel::new(isa).is_some() {
        return true;
    }
    let _ = isa;
    false
}

/// `out = a·Wᵀ` for `a` m×k and a `W` of n rows of k that `decode(state, first, rows)` writes
/// whole rows at a time (rows `first..`; `init` makes one state per task): each panel of 48
/// rows is decoded and laid out for the micro-kernel of `isa` (callers pass [`Isa::current`];
/// tests every level), lowered to what this CPU supports, in a per-thread scratch. Writes
/// every slot of `out` and returns the values; an error where [`decodes_by_panels`] is false.
#[allow(clippy::too_many_arguments)]
pub fn matmul_decoded<'o, S>(
    isa: Isa,
    a: &[f32],
    m: usize,
    k: usize,
    n: usize,
    out: Output<'o>,
    init: impl Fn() -> S + Sync + Send,
    decode: impl Fn(&mut S, usize, &mut [f32]) + Sync + Send,
) -> Result<&'o mut [f32]> {
    if a.len() != m * k || out.len() != m * n {
        return Err(op_err(format!("product of {m}x{k} by {n} rows of {k}: got {} and {} values", a.len(), out.len())));
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(kernel) = panels::Kernel::new(isa) {
        if k == 0 || m == 0 {
            return Ok(out.filled(0.0));
        }
        let parallel = m * k * n >= PARALLEL_MIN_WORK && rayon::current_num_threads() > 1;
        return Ok(panels::matmul_decoded(kernel, a, m, k, n, out, parallel, init, decode));
    }
    let _ = (init, decode);
    Err(op_err(format!("no panel micro-kernel at level {isa}")))
}

#[cfg(test)]
mod tests;

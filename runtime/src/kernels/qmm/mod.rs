//! Fused dequantize-and-multiply of group-quantized matrices ([`QuantMatrix`]): the weights
//! are unpacked in registers, never expanded to an f32 copy of the matrix.
//!
//! - [`gemv`] (one activation row, the generation hot path): per row, per group, the codes
//!   are unpacked with SIMD and multiplied with the activation; per group only a scale (and
//!   an offset times the group's activation sum) is applied. [`Activations::Int8`] quantizes
//!   the activation row once per call to int8 and uses integer dot products (ggml's way).
//! - [`gemm`] (several rows): panels of rows are decoded with SIMD into a per-thread buffer
//!   and multiplied by the GEMM kernel; exact f32. With [`Activations::Int8`], 4-bit codes in
//!   groups of whole sub-blocks take the integer GEMM instead (AVX2 or AVX-512 VNNI: each
//!   weight panel unpacked once for several activation rows; elsewhere the int8 GEMV row by
//!   row), so a prompt gets the same arithmetic as a generated token.
//!
//! AVX2 + FMA is detected at run time, and for the int8 GEMV of 4- and 8-bit codes in groups
//! of 32 and the int8 GEMM AVX-512 VNNI; other CPUs run portable loops with the same results
//! up to f32 rounding. Work is split over rayon's threads by bands of output rows.

mod act;
#[cfg(target_arch = "x86_64")]
mod codes16;
mod decode;
#[cfg(target_arch = "x86_64")]
mod gemm_i8;
#[cfg(target_arch = "x86_64")]
mod gemm_i8_avx2;
mod matrix;
#[cfg(target_arch = "x86_64")]
mod octets;
mod par;
mod rows;
#[cfg(target_arch = "x86_64")]
mod rows_avx512;
#[cfg(target_arch = "x86_64")]
mod rows_vnni;
#[cfg(target_arch = "x86_64")]
mod rows_x86;
mod unpack;
#[cfg(target_arch = "x86_64")]
mod vnni;
#[cfg(target_arch = "x86_64")]
mod wide;
#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests;

pub use act::Activations;
pub use matrix::{QuantMatrix, QuantParts, SUB};
pub use par::{gemm_by, gemv_by, PANEL_BYTES};
pub use unpack::{unpack_codes, unpack_f32};

#[cfg(target_arch = "x86_64")]
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::Result;
use crate::kernels::output::Output;
use act::{Order, Prepared};
use rows::{Ctx, RowsFn, Scratch};

/// `out[r] = Σ_c x[c] · W[r, c]` for every row `r` of `q` (`x`: `cols` values, `out`: `rows`).
pub fn gemv(q: &QuantMatrix, x: &[f32], out: &mut [f32], mode: Activations) -> Result<()> {
    gemv_with(q, None, x, out, mode)
}

/// [`gemv`] that keeps, in `cache`, what the row kernels read of `q` in another layout (the
/// AVX2 kernels' widened group codes): `cache` must only ever be used with this `q`.
pub fn gemv_cached(q: &QuantMatrix, cache: &PanelCache, x: &[f32], out: &mut [f32], mode: Activations) -> Result<()> {
    gemv_with(q, Some(cache), x, out, mode)
}

/// [`gemv`], with `cache` when given.
fn gemv_with(q: &QuantMatrix, cache: Option<&PanelCache>, x: &[f32], out: &mut [f32], mode: Activations) -> Result<()> {
    par::check(q.rows(), q.cols(), x, 1, out.len())?;
    if !q.has_sub_blocks() {
        return gemv_by(
            q.rows(),
            q.cols(),
            x,
            out,
            || Scratch::new(q),
            |s, first, w| decode::decode_rows(q, s, first, w),
        );
    }
    let (kernel, order) = row_kernel(q, mode);
    gemv_using(q, cache, x, out, mode, kernel, order)
}

/// [`gemv`] on the fused path with a given row kernel.
fn gemv_using(
    q: &QuantMatrix,
    cache: Option<&PanelCache>,
    x: &[f32],
    out: &mut [f32],
    mode: Activations,
    kernel: RowsFn,
    order: Order,
) -> Result<()> {
    let act = Prepared::new(q, x, mode, order);
    let ctx = Ctx { q, act: &act, mode, cache };
    let chunk = par::gemv_chunk(q.rows(), q.row_bytes());
    par::for_row_chunks(
        out,
        1,
        chunk,
        || Scratch::new(q),
        |s, first, o| {
            kernel(&ctx, s, first, o);
            Ok(())
        },
    )
}

/// The fastest row kernel this CPU has for `q` in `mode`, and the activation order it reads.
fn row_kernel(q: &QuantMatrix, mode: Activations) -> (RowsFn, Order) {
    #[cfg(target_arch = "x86_64")]
    {
        if mode == Activations::Int8 {
            if let Some(k) = rows_vnni::gemv_rows(q) {
                return k;
            }
        }
        if rows_x86::available() {
            return rows_x86::gemv_rows(q.bits(), mode);
        }
    }
    let _ = (q, mode);
    (rows::rows_portable, Order::Natural)
}

/// `out[m x rows] = x[m x cols] · Wᵀ` for `W` = `q`: exact f32, or with int8 activations
/// where `q` has 4-bit codes in groups of whole sub-blocks and no short last group (see the
/// module doc); other layouts multiply exactly in either mode. Writes every slot of `out` and
/// returns the values.
pub fn gemm<'o>(q: &QuantMatrix, x: &[f32], m: usize, out: Output<'o>, mode: Activations) -> Result<&'o mut [f32]> {
    gemm_cached(q, &PanelCache::default(), x, m, out, mode)
}

/// [`gemm`] that keeps the int8 kernel's layout of `q` in `cache` once `q` is multiplied a
/// second time: `cache` must only ever be used with this `q`.
pub fn gemm_cached<'o>(
    q: &QuantMatrix,
    cache: &PanelCache,
    x: &[f32],
    m: usize,
    out: Output<'o>,
    mode: Activations,
) -> Result<&'o mut [f32]> {
    if mode == Activations::Int8 && int8_gemm_layout(q) {
        par::check(q.rows(), q.cols(), x, m, out.len())?;
        #[cfg(target_arch = "x86_64")]
        if rows_x86::available() {
            let again = cache.panels.get().is_some() || cache.used.swap(true, Ordering::Relaxed);
            let panels = again.then(|| cache.panels.get_or_init(|| gemm_i8::Panels::new(q)));
            return gemm_i8::gemm(q, panels, x, m, out);
        }
        let _ = cache;
        let out = out.filled(0.0);
        for (xi, oi) in x.chunks_exact(q.cols()).zip(out.chunks_exact_mut(q.rows())) {
            gemv(q, xi, oi, mode)?;
        }
        return Ok(out);
    }
    gemm_by(
        q.rows(),
        q.cols(),
        x,
        m,
        out,
        || Scratch::new(q),
        |s, first, w| decode::decode_rows(q, s, first, w),
    )
}

/// One matrix's codes and scales as the int8 prompt GEMM reads them (panels of 32 or 8 rows,
/// interleaved; see `gemm_i8`). A one-off product lays each panel out as it goes; from the
/// matrix's second int8 GEMM on the panels are laid out once and kept, as many bytes again as
/// the matrix's codes (and 4 per group and row for the scales). Also its group codes widened
/// to bytes for the AVX2 GEMV (see `wide`), 2 bytes a group and row, from its first
/// [`gemv_cached`] on such a CPU.
#[derive(Default)]
pub struct PanelCache {
    #[cfg(target_arch = "x86_64")]
    panels: std::sync::OnceLock<gemm_i8::Panels>,
    /// The widened group codes (`None` inside: the layout has none).
    #[cfg(target_arch = "x86_64")]
    wide: std::sync::OnceLock<Option<Box<wide::WideCodes>>>,
    /// Whether the matrix has had an int8 GEMM.
    #[cfg(target_arch = "x86_64")]
    used: AtomicBool,
}

impl Clone for PanelCache {
    fn clone(&self) -> Self {
        PanelCache {
            #[cfg(target_arch = "x86_64")]
            panels: self.panels.clone(),
            #[cfg(target_arch = "x86_64")]
            wide: self.wide.clone(),
            #[cfg(target_arch = "x86_64")]
            used: AtomicBool::new(self.used.load(Ordering::Relaxed)),
        }
    }
}

impl std::fmt::Debug for PanelCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        #[cfg(target_arch = "x86_64")]
        let built = self.panels.get().is_some();
        #[cfg(not(target_arch = "x86_64"))]
        let built = false;
        f.debug_struct("PanelCache").field("built", &built).finish()
    }
}

#[cfg(target_arch = "x86_64")]
impl PanelCache {
    /// `q`'s widened group codes (widened on the first call; `None` when `q` has none).
    fn wide(&self, q: &QuantMatrix) -> Option<&wide::WideCodes> {
        self.wide.get_or_init(|| wide::WideCodes::new(q).map(Box::new)).as_deref()
    }
}

/// Whether [`gemm`] multiplies `q` with int8 activations in [`Activations::Int8`] mode.
fn int8_gemm_layout(q: &QuantMatrix) -> bool {
    q.bits() == 4 && q.has_sub_blocks() && q.full_groups() == q.groups_per_row()
}

/// Decodes rows `first..first + out.len() / cols` of `q` into `out` (whole rows; the caller
/// keeps them inside the matrix), bit for bit like `step * (q - zero_point) + offset`.
pub fn decode_rows(q: &QuantMatrix, first: usize, out: &mut [f32]) {
    decode::decode_rows(q, &mut Scratch::new(q), first, out)
}

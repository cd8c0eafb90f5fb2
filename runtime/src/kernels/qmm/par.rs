//! Splitting a product over rayon's threads by bands of output rows, and the decode-based
//! drivers (GEMM by panels; GEMV for layouts the fused loops do not cover).

use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::kernels::gemm::gemm_serial;
use crate::kernels::isa::Isa;
use crate::kernels::output::Output;
use crate::kernels::packed;

/// Smallest share of the weights worth sending to another thread, in bytes.
const MIN_CHUNK_BYTES: usize = 32 << 10;
/// Chunks per thread: enough for rayon to even out uneven cores, few enough to amortise it.
const CHUNKS_PER_THREAD: usize = 4;
/// Bytes of one decoded GEMM panel (tuned on the layer benches: see BENCHMARKS.md). Every
/// panel is multiplied by its own GEMM call, which repacks the activations: few large panels
/// beat many small ones, as long as a panel stays in the cache.
pub const PANEL_BYTES: usize = 2 << 20;
/// Values of one decoded band on the decode-then-dot GEMV path (~128 KiB: stays in L2).
const BAND_VALUES: usize = 32 * 1024;

/// Rows per chunk for `rows` rows of `row_bytes` bytes each.
fn chunk_rows(rows: usize, row_bytes: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let by_count = rows.div_ceil(threads * CHUNKS_PER_THREAD);
    let by_size = (MIN_CHUNK_BYTES / row_bytes.max(1)).max(1);
    by_count.max(by_size).clamp(1, rows.max(1))
}

/// Calls `body(state, first_row, out_rows)` on bands of `rows` rows (`width` values of `out`
/// each), in parallel when the weights (`row_bytes` per row) are worth splitting; `init` makes
/// one state per worker.
pub(super) fn for_row_chunks<S>(
    out: &mut [f32],
    width: usize,
    chunk: usize,
    init: impl Fn() -> S + Sync + Send,
    body: impl Fn(&mut S, usize, &mut [f32]) -> Result<()> + Sync + Send,
) -> Result<()> {
    let step = chunk.max(1) * width.max(1);
    if out.len() <= step {
        return body(&mut init(), 0, out);
    }
    out.par_chunks_mut(step)
        .enumerate()
        .try_for_each_init(init, |s, (i, o)| body(s, i * chunk.max(1), o))
}

/// Rows per GEMV chunk (see [`for_row_chunks`]).
pub(super) fn gemv_chunk(rows: usize, row_bytes: usize) -> usize {
    chunk_rows(rows, row_bytes)
}

/// `out[r] = x · row r` where `decode(state, first, buf)` writes whole rows `first..` into `buf`.
pub fn gemv_by<S>(
    rows: usize,
    cols: usize,
    x: &[f32],
    out: &mut [f32],
    init: impl Fn() -> S + Sync + Send,
    decode: impl Fn(&mut S, usize, &mut [f32]) + Sync + Send,
) -> Result<()> {
    check(rows, cols, x, 1, out.len())?;
    let band = (BAND_VALUES / cols.max(1)).max(1);
    let chunk = chunk_rows(rows, cols * 4).next_multiple_of(band);
    let init = || (init(), vec![0f32; band * cols]);
    for_row_chunks(out, 1, chunk, init, |(s, buf), first, o| {
        for (b, ob) in o.chunks_mut(band).enumerate() {
            let w = &mut buf[..ob.len() * cols];
            decode(s, first + b * band, w);
            for (y, row) in ob.iter_mut().zip(w.chunks_exact(cols)) {
                *y = super::rows::dot(x, row);
            }
        }
        Ok(())
    })
}

/// `out[m x rows] = x[m x cols] · Wᵀ`, W decoded by `decode` (as in [`gemv_by`]) panel by
/// panel into a per-thread buffer and multiplied there, straight into the panel's columns of
/// `out`: by the packed micro-kernel ([`crate::kernels::packed::matmul_decoded`], 48 rows a
/// panel) where the CPU has it, else by the `gemm` crate on ~2 MiB panels. Writes every slot
/// of `out` and returns the values.
pub fn gemm_by<'o, S: Send>(
    rows: usize,
    cols: usize,
    x: &[f32],
    m: usize,
    out: Output<'o>,
    init: impl Fn() -> S + Sync + Send,
    decode: impl Fn(&mut S, usize, &mut [f32]) + Sync + Send,
) -> Result<&'o mut [f32]> {
    check(rows, cols, x, m, out.len())?;
    if packed::decodes_by_panels(Isa::current()) {
        return packed::matmul_decoded(Isa::current(), x, m, cols, rows, out, &init, &decode);
    }
    let out = out.filled(0.0);
    if m == 0 {
        return Ok(out);
    }
    let shape = |e: ndarray::ShapeError| Error::Input(e.to_string());
    let x = ArrayView2::from_shape((m, cols), x).map_err(shape)?;
    let threads = rayon::current_num_threads().max(1);
    // As few panels as fit PANEL_BYTES, in a multiple of the thread count (equal shares).
    let panels = rows
        .saturating_mul(cols)
        .saturating_mul(4)
        .div_ceil(PANEL_BYTES)
        .next_multiple_of(threads);
    let panel = rows.div_ceil(panels).max(1);
    let mut view = ArrayViewMut2::from_shape((m, rows), &mut *out).map_err(shape)?;
    let blocks: Vec<_> = view
        .axis_chunks_iter_mut(ndarray::Axis(1), panel)
        .enumerate()
        .collect();
    let init = || (init(), vec![0f32; panel * cols]);
    blocks
        .into_par_iter()
        .try_for_each_init(init, |(s, w), (b, c)| {
            let n = c.ncols();
            let w = &mut w[..n * cols];
            decode(s, b * panel, w);
            let wt = ArrayView2::from_shape((n, cols), &*w)
                .map_err(shape)?
                .reversed_axes();
            gemm_serial(x, wt, c)
        })?;
    Ok(out)
}

/// Errors unless `x` holds `m x cols` values and the output `m x rows` (`out_len`).
pub(super) fn check(rows: usize, cols: usize, x: &[f32], m: usize, out_len: usize) -> Result<()> {
    if x.len() != m * cols || out_len != m * rows {
        return Err(Error::Input(format!(
            "matmul: x has {} values and out {out_len}, want {m} x {cols} and {m} x {rows}",
            x.len()
        )));
    }
    Ok(())
}

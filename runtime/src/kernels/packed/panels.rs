//! The AVX-512 path: the matrix as panels of [`NR`] columns (each panel k rows of `NR`
//! values, the last panel zero-padded, 64-byte aligned), and a register-blocked micro-kernel
//! computing [`MR`]×[`NR`] of the output at a time. The left operand is packed per call,
//! k-major in blocks of `MR` rows, so each step of the kernel broadcasts `MR` consecutive
//! values against two vectors of the panel.
//!
//! Work is split by panels: a task owns whole output columns, runs every row block over a
//! [`KC`]-deep slice of its panel while that slice sits in L1, and finishes the bias and
//! activation on its columns while they are still in cache. Compressed weights take the same
//! path one panel at a time ([`matmul_decoded`]): decoded rows, transposed into a scratch panel.

use std::arch::x86_64::*;

use ndarray::ArrayView2;
use rayon::prelude::*;

use crate::kernels::activation::Activation;
use crate::kernels::epilogue::bias_activation;

/// Columns per panel: two AVX-512 vectors of f32.
const NR: usize = 32;
/// Rows of the left operand per micro-kernel call (16 accumulators).
const MR: usize = 8;
/// Depth of the panel slice reused across row blocks (16 KiB of the panel).
const KC: usize = 128;
/// Tasks per thread when a product is split: enough for rayon to even out uneven cores.
const TASKS_PER_THREAD: usize = 4;

/// True when this CPU runs the AVX-512 kernel.
pub fn available() -> bool {
    crate::kernels::isa::avx512()
}

/// 64 bytes of panel data: the alignment unit of [`Panels`].
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// A k×n matrix as column panels.
pub struct Panels {
    k: usize,
    n: usize,
    lines: Vec<Line>,
}

impl Panels {
    /// Packs `b` (k×n, any strides).
    pub fn pack(b: ArrayView2<f32>) -> Self {
        let (k, n) = b.dim();
        let count = n.div_ceil(NR);
        let mut lines = vec![Line([0.0; 16]); count * k * NR / 16];
        for (p, panel) in lines.chunks_exact_mut((k * NR / 16).max(1)).enumerate() {
            let first = p * NR;
            let cols = NR.min(n - first);
            for (r, pair) in panel.chunks_exact_mut(NR / 16).enumerate() {
                for j in 0..cols {
                    pair[j / 16].0[j % 16] = b[(r, first + j)];
                }
            }
        }
        Panels { k, n, lines }
    }

    /// Start of panel `p` (k rows of `NR` values).
    fn panel(&self, p: usize) -> *const f32 {
        // In bounds: the vector holds `count · k · NR` values and `p < count`.
        self.lines[p * self.k * NR / 16..].as_ptr().cast()
    }

    /// `out = act(a·B + bias)`; the caller checked that `a` is m×k, `out` m×n, `bias` n long and
    /// k > 0.
    pub fn matmul(&self, a: &[f32], m: usize, out: &mut [f32], bias: Option<&[f32]>, act: Activation, parallel: bool) {
        let (k, n) = (self.k, self.n);
        let packed_a = pack_left(a, m, k, parallel);
        let job = Job { k, n, a: &packed_a, m, out: Out(out.as_mut_ptr()), bias, act };
        for_panels(n.div_ceil(NR), parallel, || (), |_, p| job.panel(p, self.panel(p)));
    }
}

/// `out = a·Wᵀ` for `a` m×k and a `W` of n rows of k that `decode(state, first, rows)` writes
/// whole rows at a time (rows `first..`): each task decodes the 32 rows of a panel into its
/// own scratch, lays them out as a panel and runs the micro-kernel on it, so the weight is
/// never expanded beyond one panel per thread. The caller checked the sizes and that k > 0.
#[allow(clippy::too_many_arguments)]
pub fn matmul_decoded<S>(
    a: &[f32],
    m: usize,
    k: usize,
    n: usize,
    out: &mut [f32],
    parallel: bool,
    init: impl Fn() -> S + Sync + Send,
    decode: impl Fn(&mut S, usize, &mut [f32]) + Sync + Send,
) {
    let packed_a = pack_left(a, m, k, parallel);
    let job = Job { k, n, a: &packed_a, m, out: Out(out.as_mut_ptr()), bias: None, act: Activation::None };
    let scratch = || (init(), vec![0f32; NR * k], vec![Line([0.0; 16]); k * NR / 16]);
    for_panels(n.div_ceil(NR), parallel, scratch, |(state, rows, panel), p| {
        let cols = NR.min(n - p * NR);
        decode(state, p * NR, &mut rows[..cols * k]);
        lay_out_panel(&rows[..cols * k], k, panel);
        job.panel(p, panel.as_ptr().cast());
    });
}

/// Lays `rows` (up to `NR` rows of `k` values) out as a panel: k rows of `NR` values, missing
/// rows zero. Full 16x16 blocks are transposed in registers.
fn lay_out_panel(rows: &[f32], k: usize, panel: &mut [Line]) {
    let cols = rows.len() / k;
    let full = if cols == NR { k / 16 * 16 } else { 0 };
    // SAFETY: `full > 0` only when all NR rows of k values are there; AVX-512F was detected
    // before anything was packed this way.
    unsafe { transpose_blocks(rows, k, full, panel) };
    for (r, pair) in panel.chunks_exact_mut(NR / 16).enumerate().skip(full) {
        for j in 0..NR {
            pair[j / 16].0[j % 16] = if j < cols { rows[j * k + r] } else { 0.0 };
        }
    }
}

/// Panel rows `0..depth` (a multiple of 16) from the `NR` rows of `k` values in `rows`, by
/// 16x16 transposes: unpack pairs, shuffle quads, then exchange 128-bit lanes twice.
#[target_feature(enable = "avx512f")]
unsafe fn transpose_blocks(rows: &[f32], k: usize, depth: usize, panel: &mut [Line]) {
    for r0 in (0..depth).step_by(16) {
        for half in 0..NR / 16 {
            let x: [__m512; 16] = std::array::from_fn(|j| _mm512_loadu_ps(rows[(half * 16 + j) * k + r0..][..16].as_ptr()));
            let mut t = [_mm512_setzero_ps(); 16];
            for p in 0..8 {
                t[2 * p] = _mm512_unpacklo_ps(x[2 * p], x[2 * p + 1]);
                t[2 * p + 1] = _mm512_unpackhi_ps(x[2 * p], x[2 * p + 1]);
            }
            // u[4g + e]: element e of each 128-bit lane, rows 4g..4g + 4.
            let mut u = [_mm512_setzero_ps(); 16];
            for g in 0..4 {
                u[4 * g] = _mm512_shuffle_ps::<0x44>(t[4 * g], t[4 * g + 2]);
                u[4 * g + 1] = _mm512_shuffle_ps::<0xEE>(t[4 * g], t[4 * g + 2]);
                u[4 * g + 2] = _mm512_shuffle_ps::<0x44>(t[4 * g + 1], t[4 * g + 3]);
                u[4 * g + 3] = _mm512_shuffle_ps::<0xEE>(t[4 * g + 1], t[4 * g + 3]);
            }
            // v[8h + 2e]: columns e and e + 8 of rows 8h..8h + 8; v[8h + 2e + 1]: e + 4, e + 12.
            let mut v = [_mm512_setzero_ps(); 16];
            for h in 0..2 {
                for e in 0..4 {
                    v[8 * h + 2 * e] = _mm512_shuffle_f32x4::<0x88>(u[8 * h + e], u[8 * h + 4 + e]);
                    v[8 * h + 2 * e + 1] = _mm512_shuffle_f32x4::<0xDD>(u[8 * h + e], u[8 * h + 4 + e]);
                }
            }
            for (i, (lo, hi)) in v[..8].iter().zip(&v[8..]).enumerate() {
                let col = i / 2 + 4 * (i % 2);
                panel[(r0 + col) * NR / 16 + half].0 = std::mem::transmute::<__m512, [f32; 16]>(_mm512_shuffle_f32x4::<0x88>(*lo, *hi));
                panel[(r0 + col + 8) * NR / 16 + half].0 = std::mem::transmute::<__m512, [f32; 16]>(_mm512_shuffle_f32x4::<0xDD>(*lo, *hi));
            }
        }
    }
}

/// The left operand packed k-major in blocks of `MR` rows (zero rows padding the last):
/// written in order, read from `MR` row streams.
fn pack_left(a: &[f32], m: usize, k: usize, parallel: bool) -> Vec<f32> {
    let mut packed = vec![0.0f32; m.div_ceil(MR) * MR * k];
    let pack_block = |(block, dst): (usize, &mut [f32])| {
        let mut rows = [&[][..]; MR];
        for (slot, row) in rows.iter_mut().zip(a[block * MR * k..].chunks_exact(k)) {
            *slot = row;
        }
        for (kk, step) in dst.chunks_exact_mut(MR).enumerate() {
            for (v, row) in step.iter_mut().zip(&rows) {
                if let Some(&x) = row.get(kk) {
                    *v = x;
                }
            }
        }
    };
    if parallel {
        packed.par_chunks_exact_mut(MR * k).enumerate().for_each(pack_block);
    } else {
        packed.chunks_exact_mut(MR * k).enumerate().for_each(pack_block);
    }
    packed
}

/// Runs `body(state, p)` for every panel `p < count`: on rayon's threads in runs of
/// consecutive panels when `parallel` (one `init()` state per task), else in order.
fn for_panels<S>(count: usize, parallel: bool, init: impl Fn() -> S + Sync + Send, body: impl Fn(&mut S, usize) + Sync + Send) {
    if parallel {
        let per_task = count.div_ceil(rayon::current_num_threads() * TASKS_PER_THREAD).max(1);
        (0..count.div_ceil(per_task)).into_par_iter().for_each(|t| {
            let mut state = init();
            (t * per_task..count.min((t + 1) * per_task)).for_each(|p| body(&mut state, p));
        });
    } else {
        let mut state = init();
        (0..count).for_each(|p| body(&mut state, p));
    }
}

/// The output pointer, shared by tasks that write disjoint columns.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: each task writes only the columns of its own panels.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// One product in flight.
struct Job<'a> {
    k: usize,
    n: usize,
    /// The left operand, packed by [`pack_left`].
    a: &'a [f32],
    m: usize,
    out: Out,
    bias: Option<&'a [f32]>,
    act: Activation,
}

impl Job<'_> {
    /// All output rows of panel `p`'s columns from the panel at `b` (k rows of `NR` values),
    /// then their bias and activation.
    fn panel(&self, p: usize, b: *const f32) {
        let (k, n, m) = (self.k, self.n, self.m);
        let first = p * NR;
        let cols = NR.min(n - first);
        for k0 in (0..k).step_by(KC) {
            let depth = KC.min(k - k0);
            let blocks = m.div_ceil(MR);
            for block in 0..blocks {
                prefetch_next_slice(b, k0, block, blocks);
                let rows = MR.min(m - block * MR);
                // SAFETY: the packed block holds MR·k values, the panel k·NR, so the kernel's
                // reads at depth k0..k0 + depth are in bounds; it writes `rows` rows of `cols`
                // values from row `block·MR`, column `first`, inside the m×n output. AVX-512F
                // was detected before anything was packed this way.
                unsafe {
                    let tile = Tile {
                        a: self.a.as_ptr().add(block * MR * k + k0 * MR),
                        b: b.add(k0 * NR),
                        c: self.out.0.add(block * MR * n + first),
                        ldc: n,
                        depth,
                        cols,
                        accumulate: k0 > 0,
                    };
                    tile.run(rows);
                }
            }
        }
        if self.bias.is_some() || self.act != Activation::None {
            let bias = self.bias.map(|b| &b[first..first + cols]);
            for r in 0..m {
                // SAFETY: row r's columns first..first + cols belong to this task alone.
                let row = unsafe { std::slice::from_raw_parts_mut(self.out.0.add(r * n + first), cols) };
                bias_activation(row, cols, bias, self.act);
            }
        }
    }
}

/// Bytes of a panel slice (`KC`·`NR` values).
const SLICE_BYTES: usize = KC * NR * 4;

/// Asks for the share of the panel slice after the one at depth `k0` that row block `block`
/// of `blocks` is responsible for, so the weights stream from memory while this slice is
/// multiplied (the next panel follows the last slice in memory).
fn prefetch_next_slice(b: *const f32, k0: usize, block: usize, blocks: usize) {
    let share = SLICE_BYTES.div_ceil(blocks).next_multiple_of(64);
    let start = b.wrapping_add((k0 + KC) * NR).cast::<i8>().wrapping_add(block * share);
    for line in (0..share.min(SLICE_BYTES.saturating_sub(block * share))).step_by(64) {
        // SAFETY: prefetching has no architectural effect and never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(line)) };
    }
}

/// One micro-kernel call: `rows`×`cols` outputs at `c` (row stride `ldc`) from `depth` steps
/// of packed `a` and panel `b`, added to `c` when `accumulate`.
struct Tile {
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    depth: usize,
    cols: usize,
    accumulate: bool,
}

impl Tile {
    /// Runs the kernel specialised for `rows` (1..=MR) rows.
    unsafe fn run(&self, rows: usize) {
        match rows {
            8 => self.kernel::<8>(),
            7 => self.kernel::<7>(),
            6 => self.kernel::<6>(),
            5 => self.kernel::<5>(),
            4 => self.kernel::<4>(),
            3 => self.kernel::<3>(),
            2 => self.kernel::<2>(),
            _ => self.kernel::<1>(),
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn kernel<const R: usize>(&self) {
        let mut lo = [_mm512_setzero_ps(); R];
        let mut hi = [_mm512_setzero_ps(); R];
        for kk in 0..self.depth {
            let b0 = _mm512_load_ps(self.b.add(kk * NR));
            let b1 = _mm512_load_ps(self.b.add(kk * NR + 16));
            for i in 0..R {
                let x = _mm512_set1_ps(*self.a.add(kk * MR + i));
                lo[i] = _mm512_fmadd_ps(x, b0, lo[i]);
                hi[i] = _mm512_fmadd_ps(x, b1, hi[i]);
            }
        }
        let mask = |from: usize| -> __mmask16 { ((1u32 << self.cols.saturating_sub(from).min(16)) - 1) as u16 };
        let (m0, m1) = (mask(0), mask(16));
        for i in 0..R {
            let row = self.c.add(i * self.ldc);
            let (mut v0, mut v1) = (lo[i], hi[i]);
            if self.accumulate {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, row));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, row.add(16)));
            }
            _mm512_mask_storeu_ps(row, m0, v0);
            _mm512_mask_storeu_ps(row.add(16), m1, v1);
        }
    }
}

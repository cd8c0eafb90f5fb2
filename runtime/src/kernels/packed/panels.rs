//! The SIMD path: the matrix as panels of [`NR`] columns (each panel k rows of `NR` values,
//! the last panel zero-padded, 64-byte aligned), and a register-blocked micro-kernel per
//! instruction set ([`Kernel`]) computing `MR`×[`NR`] of the output at a time. The left
//! operand is packed per call, k-major in blocks of the kernel's `MR` rows, so each step of
//! the kernel broadcasts `MR` consecutive values against the vectors of the panel.
//!
//! One panel layout serves every kernel: AVX-512 reads a 48-column row as three 16-lane
//! vectors, AVX2 as three 16-column parts of two 8-lane vectors each (a part is one 64-byte
//! cache line per depth step, so either kernel streams whole lines), and decoded weights are
//! laid out 48 rows at a time whatever the kernel.
//!
//! Work is split by panels: a task owns whole output columns, runs every row block over a
//! [`KC`]-deep slice of its panel while that slice sits in L1, and finishes the bias and
//! activation on its columns while they are still in cache. Compressed weights take the same
//! path one panel at a time ([`matmul_decoded`]): decoded rows, transposed into a scratch panel.

use std::arch::x86_64::*;

use ndarray::ArrayView2;
use rayon::prelude::*;

use super::{avx2, avx512};
use crate::kernels::activation::Activation;
use crate::kernels::epilogue::bias_activation;
use crate::kernels::isa::Isa;
use crate::kernels::output::Output;

/// Columns per panel: three AVX-512 vectors, six AVX2 vectors of f32.
pub(super) const NR: usize = 48;
/// Depth of the panel slice reused across row blocks (24 KiB of the panel).
const KC: usize = 128;
/// Bytes of a panel slice (`KC`·`NR` values).
const SLICE_BYTES: usize = KC * NR * 4;
/// Tasks per thread when a product is split: enough for rayon to even out uneven cores.
const TASKS_PER_THREAD: usize = 4;

/// The micro-kernel of one instruction set. A value exists only when the CPU has that set,
/// which is what makes its `unsafe` kernels sound to call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// 6 rows × 16 columns per pass (12 ymm accumulators), each panel in three parts.
    Avx2,
    /// 8 rows × 48 columns (24 zmm accumulators).
    Avx512,
}

impl Kernel {
    /// The kernel for `isa` lowered to what this CPU supports ([`Isa::supported`]); none at
    /// the portable level.
    pub fn new(isa: Isa) -> Option<Kernel> {
        match isa.supported() {
            Isa::Portable => None,
            Isa::Avx2 => Some(Kernel::Avx2),
            Isa::Avx512 => Some(Kernel::Avx512),
        }
    }

    /// Rows of the left operand per micro-kernel call.
    fn mr(self) -> usize {
        match self {
            Kernel::Avx2 => avx2::MR,
            Kernel::Avx512 => avx512::MR,
        }
    }
}

/// 64 bytes of panel data: the alignment unit of [`Panels`].
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct Line(pub(super) [f32; 16]);

/// A k×n matrix as column panels, for one kernel.
pub struct Panels {
    k: usize,
    n: usize,
    kernel: Kernel,
    lines: Vec<Line>,
}

impl Panels {
    /// Packs `b` (k×n, any strides) for `kernel`.
    pub fn pack(b: ArrayView2<f32>, kernel: Kernel) -> Self {
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
        Panels { k, n, kernel, lines }
    }

    /// Start of panel `p` (k rows of `NR` values).
    fn panel(&self, p: usize) -> *const f32 {
        // In bounds: the vector holds `count · k · NR` values and `p < count`.
        self.lines[p * self.k * NR / 16..].as_ptr().cast()
    }

    /// `out = act(a·B + bias)`, every slot of `out` written; the caller checked that `a` is
    /// m×k, `out` m×n, `bias` n long and k > 0.
    pub fn matmul<'o>(&self, a: &[f32], m: usize, mut out: Output<'o>, bias: Option<&[f32]>, act: Activation, parallel: bool) -> &'o mut [f32] {
        let (k, n, kernel) = (self.k, self.n, self.kernel);
        let packed_a = pack_left(a, m, k, kernel.mr(), parallel);
        let job = Job { kernel, k, n, a: &packed_a, m, out: Out(out.as_mut_ptr()), bias, act };
        for_panels(n.div_ceil(NR), parallel, || (), |_, p| job.panel(p, self.panel(p)));
        crate::kernels::buffers::recycle(packed_a);
        // SAFETY: the panels cover all n columns and each writes every row of its columns.
        unsafe { out.assume_written() }
    }
}

/// `out = a·Wᵀ` for `a` m×k and a `W` of n rows of k that `decode(state, first, rows)` writes
/// whole rows at a time (rows `first..`): each task decodes the 48 rows of a panel into its
/// own scratch, lays them out as a panel and runs `kernel` on it, so the weight is never
/// expanded beyond one panel per thread. Every slot of `out` is written. The caller checked
/// the sizes and that k > 0.
#[allow(clippy::too_many_arguments)]
pub fn matmul_decoded<'o, S>(
    kernel: Kernel,
    a: &[f32],
    m: usize,
    k: usize,
    n: usize,
    mut out: Output<'o>,
    parallel: bool,
    init: impl Fn() -> S + Sync + Send,
    decode: impl Fn(&mut S, usize, &mut [f32]) + Sync + Send,
) -> &'o mut [f32] {
    let packed_a = pack_left(a, m, k, kernel.mr(), parallel);
    let job = Job { kernel, k, n, a: &packed_a, m, out: Out(out.as_mut_ptr()), bias: None, act: Activation::None };
    let scratch = || (init(), vec![0f32; NR * k], vec![Line([0.0; 16]); k * NR / 16]);
    for_panels(n.div_ceil(NR), parallel, scratch, |(state, rows, panel), p| {
        let cols = NR.min(n - p * NR);
        decode(state, p * NR, &mut rows[..cols * k]);
        lay_out_panel(kernel, &rows[..cols * k], k, panel);
        job.panel(p, panel.as_ptr().cast());
    });
    crate::kernels::buffers::recycle(packed_a);
    // SAFETY: the panels cover all n columns and each writes every row of its columns.
    unsafe { out.assume_written() }
}

/// Lays `rows` (up to `NR` rows of `k` values) out as a panel: k rows of `NR` values, missing
/// rows zero. Full square blocks are transposed in registers (16x16 on AVX-512, 8x8 on AVX2).
fn lay_out_panel(kernel: Kernel, rows: &[f32], k: usize, panel: &mut [Line]) {
    let cols = rows.len() / k;
    let full = if cols == NR {
        // SAFETY: all NR rows of k values are there; `kernel` exists only on CPUs with its
        // instruction set.
        unsafe {
            match kernel {
                Kernel::Avx2 => avx2::transpose_blocks(rows, k, panel),
                Kernel::Avx512 => avx512::transpose_blocks(rows, k, panel),
            }
        }
    } else {
        0
    };
    for (r, pair) in panel.chunks_exact_mut(NR / 16).enumerate().skip(full) {
        for j in 0..NR {
            pair[j / 16].0[j % 16] = if j < cols { rows[j * k + r] } else { 0.0 };
        }
    }
}

/// The left operand packed k-major in blocks of `mr` rows (zero rows padding the last),
/// read from `mr` row streams. The buffer comes from the recycled pool; callers hand it back.
fn pack_left(a: &[f32], m: usize, k: usize, mr: usize, parallel: bool) -> Vec<f32> {
    let mut packed = crate::kernels::buffers::take(m.div_ceil(mr) * mr * k);
    let pack_block = |(block, dst): (usize, &mut [f32])| {
        let mut rows = a[block * mr * k..].chunks_exact(k);
        // Row by row: reads in order, writes `mr` apart inside a block that stays in L1.
        for r in 0..mr {
            let slots = dst[r..].iter_mut().step_by(mr);
            match rows.next() {
                Some(row) => slots.zip(row).for_each(|(slot, &v)| *slot = v),
                None => slots.for_each(|slot| *slot = 0.0),
            }
        }
    };
    if parallel {
        packed.par_chunks_exact_mut(mr * k).enumerate().for_each(pack_block);
    } else {
        packed.chunks_exact_mut(mr * k).enumerate().for_each(pack_block);
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
    kernel: Kernel,
    k: usize,
    n: usize,
    /// The left operand, packed by [`pack_left`] for `kernel`.
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
        let (k, n, m, mr) = (self.k, self.n, self.m, self.kernel.mr());
        let first = p * NR;
        let cols = NR.min(n - first);
        for k0 in (0..k).step_by(KC) {
            let depth = KC.min(k - k0);
            let blocks = m.div_ceil(mr);
            // Each row block asks for its share of the next slice (the next panel follows the
            // last slice in memory), spread over its depth steps: the weights stream from
            // memory while this slice is multiplied, and a burst of prefetches does not stall.
            let share = SLICE_BYTES.div_ceil(blocks).next_multiple_of(64);
            let prefetch_lines = (share / 64).div_ceil(depth.div_ceil(PREFETCH_EVERY));
            for block in 0..blocks {
                let rows = mr.min(m - block * mr);
                // SAFETY: the packed block holds mr·k values, the panel k·NR, so the kernel's
                // reads at depth k0..k0 + depth are in bounds; it writes `rows` rows of `cols`
                // values from row `block·mr`, column `first`, inside the m×n output. `kernel`
                // exists only on CPUs with its instruction set.
                unsafe {
                    let tile = Tile {
                        a: self.a.as_ptr().add(block * mr * k + k0 * mr),
                        b: b.add(k0 * NR),
                        c: self.out.0.add(block * mr * n + first),
                        ldc: n,
                        depth,
                        cols,
                        accumulate: k0 > 0,
                        prefetch: b.wrapping_add((k0 + KC) * NR).cast::<i8>().wrapping_add(block * share),
                        prefetch_lines,
                    };
                    match self.kernel {
                        Kernel::Avx2 => avx2::run(&tile, rows),
                        Kernel::Avx512 => avx512::run(&tile, rows),
                    }
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

/// One micro-kernel call: `rows`×`cols` outputs at `c` (row stride `ldc`) from `depth` steps
/// of packed `a` (the kernel's `MR` values a step) and panel `b` (`NR` values a step, 64-byte
/// aligned), added to `c` when `accumulate`.
pub(super) struct Tile {
    pub(super) a: *const f32,
    pub(super) b: *const f32,
    pub(super) c: *mut f32,
    pub(super) ldc: usize,
    pub(super) depth: usize,
    pub(super) cols: usize,
    pub(super) accumulate: bool,
    /// Where the kernel asks for `prefetch_lines` cache lines ahead every [`PREFETCH_EVERY`]
    /// depth steps, in order: its share of the next panel slice.
    pub(super) prefetch: *const i8,
    pub(super) prefetch_lines: usize,
}

/// Depth steps between the micro-kernel's prefetches.
pub(super) const PREFETCH_EVERY: usize = 8;

/// Runs `step(kk)` for each depth step `kk` of `t`, asking for `lines` cache lines of
/// `t.prefetch` (in order) before every [`PREFETCH_EVERY`] steps.
#[inline(always)]
pub(super) fn depth_steps(t: &Tile, lines: usize, mut step: impl FnMut(usize)) {
    let mut ahead = t.prefetch;
    let mut kk = 0;
    while kk < t.depth {
        for line in 0..lines {
            // SAFETY: prefetching has no architectural effect and never faults, whatever the
            // address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line * 64)) };
        }
        ahead = ahead.wrapping_add(lines * 64);
        let end = (kk + PREFETCH_EVERY).min(t.depth);
        (kk..end).for_each(&mut step);
        kk = end;
    }
}

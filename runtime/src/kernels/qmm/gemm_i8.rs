//! The integer prompt GEMM (AVX2, or AVX-512 VNNI where the CPU has it): `out[m x n] = x[m x
//! k] · Wᵀ` for 4-bit codes with the activations quantized to int8 per sub-block, as
//! [`super::gemv`] does for one row (ggml's and onnxruntime's `accuracy_level=4` way), with
//! each weight unpacked once for 8 (AVX2) or 6 (VNNI) activation rows instead of once per row.
//!
//! Per panel of `NC` weight rows (8 for AVX2, 32 for AVX-512) the codes are interleaved, and
//! the scales unpacked, once per panel ([`Panel`], and the AVX2 kernel's own
//! [`Avx2Panel`]; kept for a matrix multiplied again, see
//! [`Panels`]) so that one load holds, for each of 8 or 16 of the panel's rows, 4 codes in its
//! low nibbles and 4 more in its high nibbles: after a mask (and a shift) each 32-bit lane
//! belongs to one output column. VNNI: `vpdpbusd` against 4 broadcast activation bytes adds
//! the 4 products straight into i32 lanes; AVX2: see [`super::gemm_i8_avx2`]. Either way the
//! integer sums are exact, and only one conversion and two float ops are spent per lane and 32
//! depth steps, the zero point's share of the sub-block (`zp · dx · Σ xq`) included; group
//! offsets (asymmetric codes) add one multiply-add per group. Each panel writes its columns of
//! the output in place.
//!
//! The activation rows are quantized once per call and interleaved by blocks of [`MR_VNNI`]
//! (or 8, AVX2) rows ([`RowBlock`]), so that a pass reads one sequential stream rather than
//! one per row.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use ndarray::{ArrayViewMut2, Axis};
use rayon::prelude::*;

use super::act::{place, quantize_fast, Order};
use super::gemm_i8_avx2::{self as avx2, Avx2Panel};
use super::matrix::{QuantMatrix, SUB};
use super::unpack::unpack_f32;
use crate::error::{Error, Result};
use crate::kernels::output::Output;

/// Activation rows per pass over a panel: AVX-512 VNNI (32 zmm registers; 12 chains of
/// `vpdpbusd`, 6 rows by the panel's 2 halves).
const MR_VNNI: usize = 6;
/// Weight rows per panel: AVX-512 VNNI (2 vectors of 16 columns).
const NC_VNNI: usize = 32;

/// A panel's kernel: its `NC` columns of the `MR` (or fewer) rows of one [`RowBlock`].
type PanelFn<P, const NC: usize, const MR: usize> = fn(&P, &Pass<MR>, &mut [[f32; NC]; MR]);

/// What a pass over one block of activation rows reads besides the panel.
pub(super) struct Pass<'a, const MR: usize> {
    /// Sub-blocks per group.
    spg: usize,
    /// The matrix's zero point.
    zp: f32,
    /// The activation rows.
    pub(super) block: &'a RowBlock<MR>,
}

/// A kernel's layout of a panel of weight rows.
pub(super) trait PanelLayout: Clone + Send + Sync {
    /// A panel of `q`'s size, to [`fill`](Self::fill).
    fn empty(q: &QuantMatrix) -> Self;

    /// Lays out weight rows `first..` of `q`, as many as a panel holds (rows past the matrix
    /// repeat its last row).
    fn fill(&mut self, q: &QuantMatrix, first: usize);

    /// Where each of the panel's buffers starts, and its length in bytes (see [`prefetch`]).
    fn buffers(&self) -> [(*const u8, usize); 3];
}

/// The start and byte length of `v`'s elements.
pub(super) fn bytes_of<T>(v: &[T]) -> (*const u8, usize) {
    (v.as_ptr().cast(), size_of_val(v))
}

/// Asks the cache for part `part` of `parts` of `panel`'s bytes (each buffer's share), so that
/// a panel kept in memory is in cache by the time its first pass reads it: its passes would
/// otherwise wait on memory at the start of every panel (the kept panels of all the matrices
/// do not stay in cache from one prompt to the next).
fn prefetch<P: PanelLayout>(panel: &P, part: usize, parts: usize) {
    for (start, len) in panel.buffers() {
        prefetch_lines(start, len, part, parts);
    }
}

/// Asks the cache for part `part` of `parts` of the lines that hold `len` bytes from `start`.
fn prefetch_lines<T>(start: *const T, len: usize, part: usize, parts: usize) {
    for line in part_lines(start as usize, len, part, parts) {
        // SAFETY: a prefetch has no architectural effect and never faults, whatever the
        // address; SSE is part of x86-64.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(start.cast::<i8>().wrapping_add(line.wrapping_sub(start as usize))) };
    }
}

/// The addresses of the 64-byte cache lines in part `part` of `parts` of the lines that hold
/// the `len` bytes from `start`: the parts share the lines out, each line to one part.
fn part_lines(start: usize, len: usize, part: usize, parts: usize) -> std::iter::StepBy<std::ops::Range<usize>> {
    let first = start & !63;
    let lines = (start + len - first).div_ceil(64) * usize::from(len > 0);
    let line = |p: usize| first + 64 * (lines * p / parts.max(1));
    (line(part)..line(part + 1)).step_by(64)
}

/// A matrix's weights laid out for the kernels, panel after panel, for the kernels this CPU
/// runs: built once for a matrix that is multiplied again (see [`super::PanelCache`]).
#[derive(Clone)]
pub(super) enum Panels {
    /// Panels of 32 rows for the AVX-512 VNNI kernel.
    Vnni(Vec<Panel<NC_VNNI>>),
    /// Panels of 8 rows for the AVX2 kernel.
    Avx2(Vec<Avx2Panel>),
}

impl Panels {
    /// Lays out every row of `q` (the caller checked the layout and that the CPU has AVX2).
    pub(super) fn new(q: &QuantMatrix) -> Self {
        if super::vnni::available() {
            Panels::Vnni(panels::<_, NC_VNNI>(q))
        } else {
            Panels::Avx2(panels::<_, { avx2::NC }>(q))
        }
    }
}

/// `q`'s rows as panels of `NC`.
fn panels<P: PanelLayout, const NC: usize>(q: &QuantMatrix) -> Vec<P> {
    (0..q.rows().div_ceil(NC))
        .into_par_iter()
        .map(|p| {
            let mut panel = P::empty(q);
            panel.fill(q, p * NC);
            panel
        })
        .collect()
}

/// `out = x · Wᵀ` with int8 activations, `W` being `q`: laid out as `panels` when given, else
/// one panel at a time by each task, just before its passes; the caller checked the layout
/// (4-bit codes, groups of whole sub-blocks, no short last group) and that the CPU has AVX2.
pub(super) fn gemm<'o>(q: &QuantMatrix, panels: Option<&Panels>, x: &[f32], m: usize, out: Output<'o>) -> Result<&'o mut [f32]> {
    match panels {
        Some(Panels::Vnni(p)) => gemm_with::<_, NC_VNNI, MR_VNNI>(q, Some(p), x, m, out, panel_vnni),
        Some(Panels::Avx2(p)) => gemm_with::<_, { avx2::NC }, { avx2::MR }>(q, Some(p), x, m, out, avx2::panel),
        None if super::vnni::available() => gemm_with::<Panel<NC_VNNI>, NC_VNNI, MR_VNNI>(q, None, x, m, out, panel_vnni),
        None => gemm_with::<Avx2Panel, { avx2::NC }, { avx2::MR }>(q, None, x, m, out, avx2::panel),
    }
}

/// [`gemm`] with panels of `NC` weight rows multiplied by `kernel`, `MR` activation rows at a
/// time.
fn gemm_with<'o, P: PanelLayout, const NC: usize, const MR: usize>(
    q: &QuantMatrix,
    panels: Option<&[P]>,
    x: &[f32],
    m: usize,
    out: Output<'o>,
    kernel: PanelFn<P, NC, MR>,
) -> Result<&'o mut [f32]> {
    let (n, k) = (q.rows(), q.cols());
    if let Some(p) = panels.filter(|p| p.len() != n.div_ceil(NC)) {
        return Err(Error::Input(format!("int8 GEMM: {} panels for {n} rows", p.len())));
    }
    // SAFETY: only `MaybeUninit::new` values are written through the slots.
    let slots = unsafe { out.into_slots() };
    let mut view =
        ArrayViewMut2::from_shape((m, n), &mut *slots).map_err(|e| Error::Input(e.to_string()))?;
    let blocks: Vec<RowBlock<MR>> = x
        .par_chunks(MR * k)
        .map(|rows| RowBlock::new(q, rows))
        .collect();
    let (spg, zp) = (q.group() / SUB, q.zero_point() as f32);
    let columns: Vec<_> = view.axis_chunks_iter_mut(Axis(1), NC).enumerate().collect();
    columns.into_par_iter().for_each_init(|| None, |scratch, (p, mut cols)| {
        let panel = match panels.and_then(|all| all.get(p)) {
            Some(kept) => kept,
            None => {
                let panel = scratch.get_or_insert_with(|| P::empty(q));
                panel.fill(q, p * NC);
                panel
            }
        };
        // The panel this task most likely takes next (tasks split the panels in ranges).
        let next = panels.and_then(|all| all.get(p + 1));
        // Zeroed once a panel (a call to memset): each pass writes the rows it copies out.
        let mut y = [[0f32; NC]; MR];
        // Where the output rows of the panel's columns start: each pass asks for the lines the
        // next pass writes, so that its stores do not wait on memory (a large output, the
        // logits, is not in cache).
        let (row0, stride) = (cols.as_ptr(), cols.strides()[0]);
        for (i, (block, mut dst)) in blocks.iter().zip(cols.axis_chunks_iter_mut(Axis(0), MR)).enumerate() {
            if let Some(next) = next {
                prefetch(next, i, blocks.len());
            }
            for r in (i + 1) * MR..((i + 2) * MR).min(m) {
                prefetch_lines(row0.wrapping_offset(r as isize * stride), NC * size_of::<f32>(), 0, 1);
            }
            kernel(panel, &Pass { spg, zp, block }, &mut y);
            for (mut d, y) in dst.rows_mut().into_iter().zip(&y) {
                match d.as_slice_mut().map(<&mut [MaybeUninit<f32>; NC]>::try_from) {
                    Some(Ok(d)) => (0..NC).for_each(|j| d[j] = MaybeUninit::new(y[j])),
                    _ => d.iter_mut().zip(y).for_each(|(d, &v)| *d = MaybeUninit::new(v)),
                }
            }
        }
    });
    // SAFETY: the panels cover all n columns, and each writes every row of its columns.
    Ok(unsafe { Output::from(slots).assume_written() })
}

/// Up to `MR` activation rows quantized to int8 per sub-block (as
/// [`Prepared`](super::act::Prepared) does, sub-blocks in [`Order::EvenOdd`]), interleaved in
/// the order a pass reads them; rows past `rows` are zero.
pub(super) struct RowBlock<const MR: usize> {
    /// Rows in use (1..=MR).
    pub(super) rows: usize,
    /// Per sub-block of the full groups, each row's 32 values.
    pub(super) xq: Vec<[[i8; SUB]; MR]>,
    /// Per sub-block, each row's scale.
    pub(super) dx: Vec<[f32; MR]>,
    /// Per sub-block, each row's `dx · Σ xq` (what the zero point, and the group offsets,
    /// multiply).
    pub(super) zsub: Vec<[f32; MR]>,
    /// Per group, each row's sum that the group offsets multiply.
    sums: Vec<[f32; MR]>,
}

impl<const MR: usize> RowBlock<MR> {
    /// Quantizes `x` (up to `MR` rows of `q.cols()` values).
    fn new(q: &QuantMatrix, x: &[f32]) -> Self {
        let (subs, spg) = (q.full_blocks(), q.group() / SUB);
        let mut block = RowBlock {
            rows: x.len() / q.cols().max(1),
            xq: vec![[[0; SUB]; MR]; subs],
            dx: vec![[0.0; MR]; subs],
            zsub: vec![[0.0; MR]; subs],
            sums: vec![[0.0; MR]; q.groups_per_row()],
        };
        for (i, row) in x.chunks_exact(q.cols()).enumerate().take(MR) {
            let subs = row.as_chunks::<SUB>().0.iter().zip(&mut block.xq).zip(&mut block.dx).zip(&mut block.zsub);
            for (((xs, xq), dx), zsub) in subs {
                let (d, qs, isum) = quantize_fast(xs);
                place(&qs, Order::EvenOdd, 0, &mut xq[i]);
                (dx[i], zsub[i]) = (d, d * isum as f32);
            }
            for (g, sums) in block.sums.iter_mut().enumerate() {
                sums[i] = block.zsub.get(g * spg..(g + 1) * spg).map_or(0.0, |z| z.iter().map(|z| z[i]).sum());
            }
        }
        block
    }
}

/// One panel of `NC` weight rows, laid out for the kernel (rows past the matrix repeat its
/// last row; their results are dropped).
#[derive(Clone)]
pub(super) struct Panel<const NC: usize> {
    /// Per sub-block, `4 NC` little-endian words: word `d` of row `c`'s 16 code bytes at `NC d
    /// + c`.
    codes: Vec<[u8; 4]>,
    /// Per group, the `NC` rows' steps: scale codes minus the scale bias, times the row's scale
    /// unit.
    scales: Vec<[f32; NC]>,
    /// Per group, the rows' offsets, negated: offset codes times minus the row's offset unit
    /// (asymmetric only, else empty).
    offsets: Vec<[f32; NC]>,
}

impl<const NC: usize> PanelLayout for Panel<NC> {
    fn empty(q: &QuantMatrix) -> Self {
        let groups = q.groups_per_row();
        Panel {
            codes: vec![[0; 4]; q.full_blocks() * 4 * NC],
            scales: vec![[0.0; NC]; groups],
            offsets: vec![[0.0; NC]; if q.asymmetric() { groups } else { 0 }],
        }
    }

    fn fill(&mut self, q: &QuantMatrix, first: usize) {
        let groups = q.groups_per_row();
        interleave_rows::<NC>(q, first, &mut self.codes);
        let mut row = vec![0.0; groups];
        for c in 0..NC {
            let r = (first + c).min(q.rows() - 1);
            let (unit, min_unit) = q.units(r);
            unpack_f32(q.scales_from(r), q.scale_bits(), q.scale_bias(), &mut row);
            for (s, &v) in self.scales.iter_mut().zip(&row) {
                s[c] = v * unit;
            }
            if q.asymmetric() {
                unpack_f32(q.mins_from(r), q.scale_bits(), 0, &mut row);
                for (o, &v) in self.offsets.iter_mut().zip(&row) {
                    o[c] = -v * min_unit;
                }
            }
        }
    }

    fn buffers(&self) -> [(*const u8, usize); 3] {
        [bytes_of(&self.codes), bytes_of(&self.scales), bytes_of(&self.offsets)]
    }
}

/// Lays the full sub-blocks of `q`'s rows `first..first + NC` (rows past the matrix repeat its
/// last row) out as [`interleave`] does.
pub(super) fn interleave_rows<const NC: usize>(q: &QuantMatrix, first: usize, codes: &mut [[u8; 4]]) {
    let row_codes: [&[u8]; NC] = std::array::from_fn(|c| {
        let codes = q.codes_from((first + c).min(q.rows() - 1));
        &codes[..(SUB / 2 * q.full_blocks()).min(codes.len())]
    });
    interleave(&row_codes, codes);
}

/// Lays the sub-blocks of `NC` rows' codes (16 bytes each) out as [`Panel::codes`]: per
/// sub-block, word `d` of row `c` at `NC d + c`. A 4x4 transpose of words in each 128-bit lane
/// of `NC / 4` vectors, whose lane `l` of vector `j` holds row `4 l + j`.
fn interleave<const NC: usize>(rows: &[&[u8]; NC], codes: &mut [[u8; 4]]) {
    let subs = rows.iter().map(|r| r.len() / 16).min().unwrap_or(0).min(codes.len() / (4 * NC));
    if NC.is_multiple_of(16) && super::vnni::available() {
        // SAFETY: AVX-512F and BW come with the VNNI kernels checked just above.
        unsafe { interleave_avx512(rows, subs, codes) }
    } else if NC == 8 && crate::kernels::isa::avx2() {
        // SAFETY: AVX2 checked just above.
        unsafe { interleave_avx2(rows, subs, codes) }
    } else {
        interleave_scalar(rows, subs, codes)
    }
}

/// [`interleave`] one word at a time (what the SIMD versions are tested against).
fn interleave_scalar<const NC: usize>(rows: &[&[u8]; NC], subs: usize, codes: &mut [[u8; 4]]) {
    for (s, dst) in codes.chunks_exact_mut(4 * NC).take(subs).enumerate() {
        for (c, row) in rows.iter().enumerate() {
            let (words, _) = row[16 * s..16 * s + 16].as_chunks::<4>();
            words.iter().enumerate().for_each(|(d, w)| dst[NC * d + c] = *w);
        }
    }
}

/// Sub-block `s` of a row's codes (16 bytes).
#[inline(always)]
fn sub_block(row: &[u8], s: usize) -> __m128i {
    let bytes: &[u8; 16] = row[16 * s..][..16].try_into().unwrap_or(&[0; 16]);
    // SAFETY: 16 readable bytes; unaligned load (SSE2, part of x86-64).
    unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
}

/// [`interleave`] for 16 rows at a time with AVX-512 (one vector holds 4 rows' sub-blocks).
#[target_feature(enable = "avx512f")]
fn interleave_avx512<const NC: usize>(rows: &[&[u8]; NC], subs: usize, codes: &mut [[u8; 4]]) {
    for (s, dst) in codes.chunks_exact_mut(4 * NC).take(subs).enumerate() {
        for (h, rows) in rows.chunks_exact(16).enumerate() {
            let mut z = [_mm512_setzero_si512(); 4];
            for (j, z) in z.iter_mut().enumerate() {
                let v = _mm512_castsi128_si512(sub_block(rows[j], s));
                let v = _mm512_inserti32x4::<1>(v, sub_block(rows[4 + j], s));
                let v = _mm512_inserti32x4::<2>(v, sub_block(rows[8 + j], s));
                *z = _mm512_inserti32x4::<3>(v, sub_block(rows[12 + j], s));
            }
            let (t0, t1) = (_mm512_unpacklo_epi32(z[0], z[1]), _mm512_unpackhi_epi32(z[0], z[1]));
            let (t2, t3) = (_mm512_unpacklo_epi32(z[2], z[3]), _mm512_unpackhi_epi32(z[2], z[3]));
            let words = [
                _mm512_unpacklo_epi64(t0, t2),
                _mm512_unpackhi_epi64(t0, t2),
                _mm512_unpacklo_epi64(t1, t3),
                _mm512_unpackhi_epi64(t1, t3),
            ];
            for (d, w) in words.into_iter().enumerate() {
                let d = &mut dst[NC * d + 16 * h..][..16];
                // SAFETY: 16 writable words; unaligned store.
                unsafe { _mm512_storeu_si512(d.as_mut_ptr().cast(), w) };
            }
        }
    }
}

/// [`interleave`] for 8 rows with AVX2 (one vector holds 2 rows' sub-blocks).
#[target_feature(enable = "avx2")]
fn interleave_avx2<const NC: usize>(rows: &[&[u8]; NC], subs: usize, codes: &mut [[u8; 4]]) {
    for (s, dst) in codes.chunks_exact_mut(32).take(subs).enumerate() {
        let mut z = [_mm256_setzero_si256(); 4];
        for (j, z) in z.iter_mut().enumerate() {
            *z = _mm256_set_m128i(sub_block(rows[4 + j], s), sub_block(rows[j], s));
        }
        let (t0, t1) = (_mm256_unpacklo_epi32(z[0], z[1]), _mm256_unpackhi_epi32(z[0], z[1]));
        let (t2, t3) = (_mm256_unpacklo_epi32(z[2], z[3]), _mm256_unpackhi_epi32(z[2], z[3]));
        let words = [
            _mm256_unpacklo_epi64(t0, t2),
            _mm256_unpackhi_epi64(t0, t2),
            _mm256_unpacklo_epi64(t1, t3),
            _mm256_unpackhi_epi64(t1, t3),
        ];
        for (d, w) in dst.chunks_exact_mut(8).zip(words) {
            // SAFETY: 8 writable words; unaligned store.
            unsafe { _mm256_storeu_si256(d.as_mut_ptr().cast(), w) };
        }
    }
}

/// The 4 activation bytes `xt` as one little-endian word (what the kernels broadcast).
#[inline(always)]
fn word(xt: &[i8; 4]) -> i32 {
    i32::from_le_bytes(xt.map(|b| b as u8))
}

/// The AVX-512 VNNI [`PanelFn`] (panels of 32 rows).
fn panel_vnni(panel: &Panel<NC_VNNI>, pass: &Pass<MR_VNNI>, out: &mut [[f32; NC_VNNI]; MR_VNNI]) {
    // SAFETY: the caller checked AVX-512 VNNI before choosing this kernel.
    unsafe { passes_vnni(panel, pass, out) }
}

/// [`panel_vnni`] with the features enabled, so the passes inline.
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vnni")]
fn passes_vnni(panel: &Panel<NC_VNNI>, pass: &Pass<MR_VNNI>, out: &mut [[f32; NC_VNNI]; MR_VNNI]) {
    if pass.zp != 0.0 {
        rows_vnni_for::<true>(panel, pass, out)
    } else {
        rows_vnni_for::<false>(panel, pass, out)
    }
}

/// [`rows_vnni`] for the block's number of rows.
#[inline]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vnni")]
fn rows_vnni_for<const SYM: bool>(panel: &Panel<NC_VNNI>, pass: &Pass<MR_VNNI>, out: &mut [[f32; NC_VNNI]; MR_VNNI]) {
    match pass.block.rows {
        6 => rows_vnni::<6, SYM>(panel, pass, out),
        5 => rows_vnni::<5, SYM>(panel, pass, out),
        4 => rows_vnni::<4, SYM>(panel, pass, out),
        3 => rows_vnni::<3, SYM>(panel, pass, out),
        2 => rows_vnni::<2, SYM>(panel, pass, out),
        _ => rows_vnni::<1, SYM>(panel, pass, out),
    }
}

/// [`panel_vnni`]'s pass over `R` activation rows, `y = Σ_s step_g(s) (dx_s Σ code · xq - zp
/// zsub_s) - Σ_g offset_g sums_g` per column, for the panel's two halves of 16 columns at
/// once: each broadcast activation word feeds both halves, and the `2 R` chains of 8
/// `vpdpbusd` a sub-block (low and high nibbles alike) hide the instruction's latency
/// (BENCHMARKS.md). `SYM`: the codes have a zero point, whose share
/// each sub-block subtracts (else the per-sub-block activation scale folds into the group
/// scale).
#[inline]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vnni")]
fn rows_vnni<const R: usize, const SYM: bool>(panel: &Panel<NC_VNNI>, pass: &Pass<MR_VNNI>, out: &mut [[f32; NC_VNNI]; MR_VNNI]) {
    let (blocks, _) = panel.codes.as_chunks::<{ 4 * NC_VNNI }>();
    let b = pass.block;
    let nibble = _mm512_set1_epi8(0x0f);
    let zero = _mm512_setzero_ps();
    let mut acc = [[zero; 2]; R];
    // SAFETY (all loads and stores below): unaligned, inside the arrays they name (16 words,
    // or 16 f32, from an offset that leaves them); AVX-512F is enabled on this function.
    let halves = |v: &[f32; NC_VNNI]| unsafe { [_mm512_loadu_ps(v.as_ptr()), _mm512_loadu_ps(v[16..].as_ptr())] };
    for (g, (group, scale)) in blocks.chunks(pass.spg).zip(&panel.scales).enumerate() {
        let scale = halves(scale);
        for (j, block) in group.iter().enumerate() {
            let s = g * pass.spg + j;
            let (Some(xs), Some(ds), Some(zs)) = (b.xq.get(s), b.dx.get(s), b.zsub.get(s)) else {
                break;
            };
            let mut p = [[_mm512_setzero_si512(); 2]; R];
            for t in 0..4 {
                let v = unsafe { [0, 16].map(|h| _mm512_loadu_si512(block[NC_VNNI * t + h..].as_ptr().cast())) };
                let lo = v.map(|v| _mm512_and_si512(v, nibble));
                let hi = v.map(|v| _mm512_and_si512(_mm512_srli_epi16::<4>(v), nibble));
                for (p, xs) in p.iter_mut().zip(xs) {
                    let (x4, _) = xs.as_chunks::<4>();
                    let (xl, xh) = (_mm512_set1_epi32(word(&x4[t])), _mm512_set1_epi32(word(&x4[4 + t])));
                    for h in 0..2 {
                        p[h] = _mm512_dpbusd_epi32(p[h], lo[h], xl);
                        p[h] = _mm512_dpbusd_epi32(p[h], hi[h], xh);
                    }
                }
            }
            for i in 0..R {
                let d = _mm512_set1_ps(ds[i]);
                for h in 0..2 {
                    let p = _mm512_cvtepi32_ps(p[i][h]);
                    acc[i][h] = if SYM {
                        let f = _mm512_fmadd_ps(p, d, _mm512_set1_ps(-pass.zp * zs[i]));
                        _mm512_fmadd_ps(f, scale[h], acc[i][h])
                    } else {
                        _mm512_fmadd_ps(p, _mm512_mul_ps(d, scale[h]), acc[i][h])
                    };
                }
            }
        }
        if let (Some(o), Some(su)) = (panel.offsets.get(g), b.sums.get(g)) {
            let o = halves(o);
            for i in 0..R {
                for h in 0..2 {
                    acc[i][h] = _mm512_fmadd_ps(o[h], _mm512_set1_ps(su[i]), acc[i][h]);
                }
            }
        }
    }
    for i in 0..R {
        for h in 0..2 {
            unsafe { _mm512_storeu_ps(out[i][16 * h..].as_mut_ptr(), acc[i][h]) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SIMD interleaves lay out the same words as the scalar one.
    fn interleave_matches_scalar<const NC: usize>() {
        let subs = 5;
        let bytes: Vec<Vec<u8>> = (0..NC).map(|c| (0..16 * subs).map(|i| (i * 7 + c * 31) as u8).collect()).collect();
        let rows: [&[u8]; NC] = std::array::from_fn(|c| bytes[c].as_slice());
        let (mut simd, mut scalar) = (vec![[0u8; 4]; 4 * NC * subs], vec![[0u8; 4]; 4 * NC * subs]);
        interleave(&rows, &mut simd);
        interleave_scalar(&rows, subs, &mut scalar);
        assert_eq!(simd, scalar);
        assert_eq!(scalar[NC * 2 + 3], bytes[3][8..12]);
    }

    #[test]
    fn prefetch_parts_share_out_every_line_once() {
        for (start, len, parts) in [(0, 4096, 16), (4100, 3072, 16), (63, 2, 3), (1000, 0, 4), (129, 700, 40)] {
            let mut lines: Vec<usize> = (0..parts).flat_map(|p| part_lines(start, len, p, parts)).collect();
            let touched = if len == 0 { 0..0 } else { start / 64..(start + len).div_ceil(64) };
            let expected: Vec<usize> = touched.map(|l| 64 * l).collect();
            lines.sort();
            assert_eq!(lines, expected, "start {start}, len {len}, parts {parts}");
        }
    }

    #[test]
    fn interleaves_match_the_scalar_layout() {
        interleave_matches_scalar::<8>();
        interleave_matches_scalar::<16>();
        interleave_matches_scalar::<32>();
    }
}

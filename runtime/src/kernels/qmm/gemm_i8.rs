//! The integer prompt GEMM (AVX2): `out[m x n] = x[m x k] · Wᵀ` for 4-bit codes with the
//! activations quantized to int8 per sub-block, as [`super::gemv`] does for one row (ggml's
//! and onnxruntime's `accuracy_level=4` way), with each weight unpacked once for
//! [`MR`] activation rows instead of once per row.
//!
//! Per panel of [`NC`] weight rows the codes are interleaved once per call so that one 32-byte
//! load holds, for each of the 8 weight rows, 4 codes in its low nibbles and 4 more in its
//! high nibbles: after a mask (and a shift) each 32-bit lane belongs to one output column and
//! `vpmaddubsw` against 4 broadcast activation bytes adds 4 products into it. A sub-block's 8
//! such steps add up in i16 without overflow (`8 · 2 · 15 · 127 < 2^15`), so the integer sums
//! are exact, and only then is one `vpmaddwd`, one conversion and two float ops spent per 8
//! columns and 32 depth steps. Zero points and group offsets are applied at the end from the
//! prepared activation sums, exactly as the GEMV row skeleton does.

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::act::{Activations, Order, Prepared};
use super::matrix::{QuantMatrix, SUB};
use super::unpack::unpack_f32;

/// Output columns (weight rows) per panel: one 32-bit lane each.
const NC: usize = 8;
/// Activation rows per pass over a panel.
const MR: usize = 4;
/// Bytes of one interleaved sub-block of a panel: 8 rows of 16 bytes.
const BLOCK: usize = NC * SUB / 2;

/// `out = x · Wᵀ` with int8 activations; the caller checked the sizes, the layout (4-bit
/// codes, groups of whole sub-blocks, no short last group) and that the CPU has AVX2.
pub(super) fn gemm(q: &QuantMatrix, x: &[f32], m: usize, out: &mut [f32]) {
    let (n, k) = (q.rows(), q.cols());
    let acts: Vec<Prepared> = x
        .par_chunks_exact(k)
        .map(|row| Prepared::new(q, row, Activations::Int8, Order::EvenOdd))
        .collect();
    let panels = n.div_ceil(NC);
    // Panel-major results ([panel][row][NC]), each panel written by one task.
    let mut tmp = vec![0f32; panels * m * NC];
    tmp.par_chunks_mut(m * NC)
        .enumerate()
        .for_each_init(
            || Panel::new(q),
            |panel, (p, dst)| {
                panel.fill(q, p * NC);
                panel.multiply(q, &acts, dst);
            },
        );
    for (i, row) in out.chunks_exact_mut(n).enumerate() {
        for (p, cols) in row.chunks_mut(NC).enumerate() {
            let at = (p * m + i) * NC;
            cols.copy_from_slice(&tmp[at..at + cols.len()]);
        }
    }
}

/// One panel of [`NC`] weight rows, laid out for the kernel (rows past the matrix repeat its
/// last row; their results are dropped).
struct Panel {
    /// Per sub-block, [`BLOCK`] bytes: dword `d` of row `c`'s 16 code bytes at `32 d + 4 c`.
    codes: Vec<u8>,
    /// Per group, the [`NC`] rows' scale codes minus the scale bias.
    scales: Vec<[f32; NC]>,
    /// Per group, the rows' offset codes (asymmetric only).
    offsets: Vec<[f32; NC]>,
    /// The rows' scale units and offset units.
    units: [f32; NC],
    min_units: [f32; NC],
    /// One row's scale or offset codes, unpacked.
    row: Vec<f32>,
}

impl Panel {
    fn new(q: &QuantMatrix) -> Self {
        let groups = q.groups_per_row();
        Panel {
            codes: vec![0; q.full_blocks() * BLOCK],
            scales: vec![[0.0; NC]; groups],
            offsets: vec![[0.0; NC]; if q.asymmetric() { groups } else { 0 }],
            units: [0.0; NC],
            min_units: [0.0; NC],
            row: vec![0.0; groups],
        }
    }

    /// Lays out weight rows `first..first + NC`.
    fn fill(&mut self, q: &QuantMatrix, first: usize) {
        let groups = q.groups_per_row();
        for c in 0..NC {
            let r = (first + c).min(q.rows() - 1);
            (self.units[c], self.min_units[c]) = q.units(r);
            let (blocks, _) = q.codes_from(r).as_chunks::<{ SUB / 2 }>();
            for (dst, src) in self.codes.chunks_exact_mut(BLOCK).zip(blocks) {
                for (d, word) in src.chunks_exact(4).enumerate() {
                    dst[32 * d + 4 * c..32 * d + 4 * c + 4].copy_from_slice(word);
                }
            }
            unpack_f32(q.scales_from(r), q.scale_bits(), q.scale_bias(), &mut self.row[..groups]);
            for (s, &v) in self.scales.iter_mut().zip(&self.row) {
                s[c] = v;
            }
            if q.asymmetric() {
                unpack_f32(q.mins_from(r), q.scale_bits(), 0, &mut self.row[..groups]);
                for (o, &v) in self.offsets.iter_mut().zip(&self.row) {
                    o[c] = v;
                }
            }
        }
    }

    /// The panel's [`NC`] columns of every activation row into `dst` (`[row][NC]`).
    fn multiply(&self, q: &QuantMatrix, acts: &[Prepared], dst: &mut [f32]) {
        let spg = q.group() / SUB;
        let zp = q.zero_point() as f32;
        for (rows, out) in acts.chunks(MR).zip(dst.chunks_mut(MR * NC)) {
            let mut main = [[0f32; NC]; MR];
            // SAFETY: the caller checked AVX2 and FMA before any `Panel` was made.
            unsafe {
                match rows.len() {
                    4 => main_sums::<4>(&self.codes, &self.scales, spg, rows, &mut main),
                    3 => main_sums::<3>(&self.codes, &self.scales, spg, rows, &mut main),
                    2 => main_sums::<2>(&self.codes, &self.scales, spg, rows, &mut main),
                    _ => main_sums::<1>(&self.codes, &self.scales, spg, rows, &mut main),
                }
            }
            for ((act, sums), y) in rows.iter().zip(&main).zip(out.chunks_exact_mut(NC)) {
                let corr = weighted(&self.scales, &act.zsums);
                let off = weighted(&self.offsets, &act.sums);
                for c in 0..NC {
                    y[c] = self.units[c] * (sums[c] - zp * corr[c]) - self.min_units[c] * off[c];
                }
            }
        }
    }
}

/// `Σ_g per_group[g][c] · by[g]` for each column `c`.
fn weighted(per_group: &[[f32; NC]], by: &[f32]) -> [f32; NC] {
    let mut acc = [0f32; NC];
    for (v, &b) in per_group.iter().zip(by) {
        for (a, &x) in acc.iter_mut().zip(v) {
            *a += x * b;
        }
    }
    acc
}

/// For each of the `R` activation rows, per column: `Σ_s scale[g(s)] · dx[s] · Σ_{i in s}
/// code_i · xq_i` over every sub-block `s` (raw codes; the zero point is corrected later).
#[target_feature(enable = "avx2,fma")]
fn main_sums<const R: usize>(
    codes: &[u8],
    scales: &[[f32; NC]],
    spg: usize,
    acts: &[Prepared],
    out: &mut [[f32; NC]; MR],
) {
    let (blocks, _) = codes.as_chunks::<BLOCK>();
    let xq: [&[[i8; SUB]]; R] = std::array::from_fn(|i| acts[i].xq.as_chunks::<SUB>().0);
    let dx: [&[f32]; R] = std::array::from_fn(|i| acts[i].dx.as_slice());
    let nibble = _mm256_set1_epi8(0x0f);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); R];
    for (g, (group, scale)) in blocks.chunks(spg).zip(scales).enumerate() {
        // SAFETY: 8 readable f32; unaligned load.
        let scale = unsafe { _mm256_loadu_ps(scale.as_ptr()) };
        for (j, block) in group.iter().enumerate() {
            let s = g * spg + j;
            let (lines, _) = block.as_chunks::<32>();
            let mut w = [_mm256_setzero_si256(); 8];
            for (d, line) in lines.iter().enumerate() {
                // SAFETY: 32 readable bytes; unaligned load; AVX2 is enabled on this function.
                let v = unsafe { _mm256_loadu_si256(line.as_ptr().cast()) };
                w[d] = _mm256_and_si256(v, nibble);
                w[4 + d] = _mm256_and_si256(_mm256_srli_epi16::<4>(v), nibble);
            }
            for i in 0..R {
                let (Some(x), Some(&d)) = (xq[i].get(s), dx[i].get(s)) else { continue };
                let (x4, _) = x.as_chunks::<4>();
                let mut p = _mm256_setzero_si256();
                for (wt, xt) in w.iter().zip(x4) {
                    let xt = _mm256_set1_epi32(i32::from_le_bytes(xt.map(|b| b as u8)));
                    p = _mm256_add_epi16(p, _mm256_maddubs_epi16(*wt, xt));
                }
                let f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones)), _mm256_set1_ps(d));
                acc[i] = _mm256_fmadd_ps(f, scale, acc[i]);
            }
        }
    }
    for (o, a) in out.iter_mut().zip(acc) {
        // SAFETY: 8 writable f32 behind a unique reference; unaligned store.
        unsafe { _mm256_storeu_ps(o.as_mut_ptr(), a) };
    }
}

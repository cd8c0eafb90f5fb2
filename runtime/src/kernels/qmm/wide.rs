//! A matrix's group scale and offset codes widened to one byte each, kept per matrix for the
//! AVX2 GEMV's row prologue: widening 8 bytes takes one instruction, where unpacking 8 packed
//! codes took a shuffle, a variable shift and a mask, and the general unpacker's checks cost
//! ~250 instructions a row (BENCHMARKS.md, the Zen 1 section). 2 bytes a group and row.

use std::arch::x86_64::*;

use super::matrix::QuantMatrix;
use super::unpack::unpack_codes;
use super::x86::{hsum, load_ps, store_ps};

/// Row after row, each row's scale codes (and offset codes when asymmetric) as bytes.
#[derive(Clone)]
pub(super) struct WideCodes {
    /// Groups per row (a multiple of 8, see [`WideCodes::new`]).
    groups: usize,
    /// The scale codes, `groups` a row.
    scales: Vec<u8>,
    /// The offset codes, `groups` a row (empty when symmetric).
    mins: Vec<u8>,
}

impl WideCodes {
    /// `q`'s codes widened, or `None` when its rows hold a number of groups that is not a
    /// multiple of 8 (the prologue then unpacks the packed codes).
    pub(super) fn new(q: &QuantMatrix) -> Option<Self> {
        let groups = q.groups_per_row();
        if !groups.is_multiple_of(8) {
            return None;
        }
        let scales = widen_rows(q, |r| q.scales_from(r));
        let mins = if q.asymmetric() { widen_rows(q, |r| q.mins_from(r)) } else { Vec::new() };
        Some(WideCodes { groups, scales, mins })
    }

    /// What [`super::rows_x86::factors`] returns for row `r` of `q` (the matrix these codes
    /// were widened from), `sf` filled alike: scale codes minus the scale bias into `sf`, and
    /// `(Σ sf * zsums, Σ offset codes * sums)`; `sums` and `zsums` may be shorter (missing
    /// entries are 0).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn factors(&self, q: &QuantMatrix, r: usize, sums: &[f32], zsums: &[f32], sf: &mut [f32]) -> (f32, f32) {
        let (scales, mins) = (self.row(&self.scales, r), self.row(&self.mins, r));
        let chunks = self.groups / 8;
        let (sf8, _) = sf.as_chunks_mut::<8>();
        let (z8, _) = zsums.as_chunks::<8>();
        let (s8, _) = sums.as_chunks::<8>();
        let bias = _mm256_set1_epi32(q.scale_bias());
        let (mut corr, mut off) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for (k, (c, f)) in scales.iter().zip(sf8).take(chunks).enumerate() {
            let v = _mm256_cvtepi32_ps(_mm256_sub_epi32(widen(c), bias));
            store_ps(f, v);
            if let Some(z) = z8.get(k) {
                corr = _mm256_fmadd_ps(v, load_ps(z), corr);
            }
        }
        for (c, s) in mins.iter().zip(s8).take(chunks) {
            off = _mm256_fmadd_ps(_mm256_cvtepi32_ps(widen(c)), load_ps(s), off);
        }
        (hsum(corr), hsum(off))
    }

    /// Row `r`'s scale codes and offset codes (empty when symmetric) onwards, in runs of 8.
    pub(super) fn row_codes(&self, r: usize) -> (&[[u8; 8]], &[[u8; 8]]) {
        (self.row(&self.scales, r), self.row(&self.mins, r))
    }

    /// Row `r`'s codes in `codes` (one of this matrix's arrays), in runs of 8.
    fn row<'c>(&self, codes: &'c [u8], r: usize) -> &'c [[u8; 8]] {
        codes.get(r * self.groups..).unwrap_or(&[]).as_chunks::<8>().0
    }
}

/// Every row's codes of `q` as bytes, `from(r)` being row `r`'s packed codes onwards.
fn widen_rows<'a>(q: &QuantMatrix<'a>, from: impl Fn(usize) -> &'a [u8]) -> Vec<u8> {
    let groups = q.groups_per_row();
    let mut all = vec![0u8; q.rows() * groups];
    for (r, row) in all.chunks_exact_mut(groups.max(1)).enumerate() {
        unpack_codes(from(r), q.scale_bits(), row);
    }
    all
}

/// 8 bytes as 8 i32 lanes.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn widen(c: &[u8; 8]) -> __m256i {
    // SAFETY: 8 readable bytes; unaligned load; AVX2 is enabled here.
    _mm256_cvtepu8_epi32(unsafe { _mm_loadl_epi64(c.as_ptr().cast()) })
}

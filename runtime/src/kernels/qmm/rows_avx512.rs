//! The AVX-512 row loop of the exact (f32-activation) GEMV for 4-bit codes. Each 16 codes (8
//! bytes) are broadcast as one 64-bit word and shifted per 32-bit lane by a variable count,
//! then masked: 16 codes in 16 lanes from one load, one shift and one mask, with no shuffle
//! (the AVX2 loop widens bytes with shuffles, which all wait for one port). Lane `j` then holds
//! code `8 (j mod 2) + j / 2` of its 16, the order the activations are prepared in
//! ([`Order::Nibbles`]). The zero point is taken out after the products, once per row, as
//! `zero_point · Σ_g scale_g Σ_{i in g} x_i`.

use std::arch::x86_64::*;

use super::act::{Activations, Order};
use super::matrix::{QuantMatrix, SUB};
use super::rows::{block_factors, dot, each_row, rows_portable, Ctx, RowsFn, Scratch};
use super::rows_x86::{factors, PREFETCH};

/// Per 32-bit lane of a broadcast 64-bit word: the shift that brings code `8 (j mod 2) + j /
/// 2` of its 16 to the lane's low 4 bits.
const SHIFTS: [u32; 16] = {
    let mut t = [0u32; 16];
    let mut j = 0;
    while j < 16 {
        t[j] = 4 * (j as u32 / 2);
        j += 1;
    }
    t
};

/// Whether this CPU may run this loop (the `RBE_CPU` cap included).
fn available() -> bool {
    crate::kernels::isa::avx512()
}

/// The AVX-512 exact GEMV row kernel for `q` and the activation order it reads, if this CPU
/// runs it and `q` has 4-bit codes in groups of whole sub-blocks.
pub(super) fn gemv_rows(q: &QuantMatrix) -> Option<(RowsFn, Order)> {
    (available() && q.bits() == 4 && q.has_sub_blocks()).then_some((rows as RowsFn, Order::Nibbles))
}

fn rows(c: &Ctx, s: &mut Scratch, first: usize, out: &mut [f32]) {
    if available() && c.mode == Activations::Exact {
        // SAFETY: AVX-512F (and so AVX2 and FMA) is present (checked just above).
        unsafe { rows_avx512(c, s, first, out) }
    } else {
        rows_portable(c, s, first, out)
    }
}

#[target_feature(enable = "avx2,fma,avx512f")]
fn rows_avx512(c: &Ctx, s: &mut Scratch, first: usize, out: &mut [f32]) {
    let q = c.q;
    let full = q.full_groups();
    let prologue = |r: usize, s: &mut Scratch| {
        let (_, off) = factors(q, r, &c.act.sums, &[], &mut s.sf, &mut []);
        let corr = match (q.zero_point(), s.sf.get(..full), c.act.sums.get(..full)) {
            (0, _, _) | (_, None, _) | (_, _, None) => 0.0,
            (_, Some(sf), Some(sums)) => dot(sf, sums),
        };
        (corr, off)
    };
    each_row(c, s, first, out, prologue, |w, s| main(c, w, s), 0)
}

/// `Σ_s sd[s] * Σ_{i in s} x_i * q_i` over the full sub-blocks of one row (codes `codes`),
/// `sd[s]` the scale code of sub-block `s`'s group; two sub-blocks a step into two
/// accumulators.
#[inline]
#[target_feature(enable = "avx2,fma,avx512f")]
fn main(c: &Ctx, codes: &[u8], s: &mut Scratch) -> f32 {
    let q = c.q;
    let n = q.full_blocks();
    let sd: &[f32] = if q.group() == SUB {
        s.sf.get(..n).unwrap_or(&[])
    } else {
        block_factors(q, &s.sf, &[], &mut s.sd);
        &s.sd
    };
    // SAFETY: 64 readable bytes; unaligned load; AVX-512F is enabled here.
    let shifts = unsafe { _mm512_loadu_si512(SHIFTS.as_ptr().cast()) };
    let nibble = _mm512_set1_epi32(0x0f);
    let (words, _) = codes.as_chunks::<16>();
    let (xs, _) = c.act.xk.as_chunks::<SUB>();
    let sub_block = |w: &[u8; 16], x: &[f32; SUB]| {
        let (halves, _) = w.as_chunks::<8>();
        let (x16, _) = x.as_chunks::<16>();
        let lanes = |h: &[u8; 8]| {
            let v = _mm512_set1_epi64(i64::from_le_bytes(*h));
            _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srlv_epi32(v, shifts), nibble))
        };
        // SAFETY: 16 readable f32 each; unaligned loads; AVX-512F is enabled here.
        let (x0, x1) = unsafe { (_mm512_loadu_ps(x16[0].as_ptr()), _mm512_loadu_ps(x16[1].as_ptr())) };
        _mm512_fmadd_ps(lanes(&halves[1]), x1, _mm512_mul_ps(lanes(&halves[0]), x0))
    };
    let mut blocks = words.iter().zip(xs).zip(sd).take(n);
    let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    while let Some(((w, x), d)) = blocks.next() {
        // Once per sub-block (16 bytes), so every line ahead is asked for.
        _mm_prefetch::<_MM_HINT_T0>(w.as_ptr().wrapping_add(PREFETCH).cast());
        acc0 = _mm512_fmadd_ps(sub_block(w, x), _mm512_set1_ps(*d), acc0);
        let Some(((w, x), d)) = blocks.next() else {
            break;
        };
        acc1 = _mm512_fmadd_ps(sub_block(w, x), _mm512_set1_ps(*d), acc1);
    }
    _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
}

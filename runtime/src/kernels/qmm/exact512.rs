//! The AVX-512 main loop of the exact-activation GEMV for 4-bit codes: one sub-block (32
//! codes, 16 bytes) per step, widened to two 16-lane vectors (low nibbles, high nibbles) that
//! meet the activations in [`Order::EvenOdd`] with two multiply-adds, where the AVX2 loop needs
//! four 8-lane widenings and four. The row skeleton ([`super::rows::each_row`]) and the
//! factors are the AVX2 kernel's.
//!
//! [`Order::EvenOdd`]: super::act::Order::EvenOdd

use std::arch::x86_64::*;

use super::matrix::SUB;
use super::rows::{block_factors, Ctx, Scratch};
use super::x86::load128;

/// How far ahead of the loop the codes are fetched into L1 (bytes; rows follow each other in
/// memory, so this runs into the next rows).
const PREFETCH: usize = 1024;

/// Whether this CPU runs [`main_f32`].
pub(super) fn available() -> bool {
    crate::kernels::isa::avx512()
}

/// `Σ_g sf[g] * Σ_{i in g} x_i * (q_i - zero_point)` over the full groups of one row of 4-bit
/// codes (`SIGNED`: symmetric codes, centred on the zero point before the products), as the
/// AVX2 loop computes it.
#[inline]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw")]
pub(super) fn main_f32<const SIGNED: bool>(c: &Ctx, codes: &[u8], s: &mut Scratch) -> f32 {
    let spg = c.q.group() / SUB;
    let n = c.q.full_groups() * spg;
    let (xs, _) = c.act.xk.as_chunks::<SUB>();
    let sd: &[f32] = if spg == 1 {
        s.sf.get(..n).unwrap_or(&[])
    } else {
        block_factors(c.q, &s.sf, &[], &mut s.sd);
        &s.sd
    };
    let zp = _mm512_set1_epi32(if SIGNED { c.q.zero_point() } else { 0 });
    let nibble = _mm512_set1_epi32(0x0f);
    let (blocks, _) = codes.as_chunks::<{ SUB / 2 }>();
    let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    for (k, ((b, x), &d)) in blocks.iter().zip(xs).zip(sd).enumerate() {
        if k % 4 == 0 {
            // A prefetch never faults, whatever the address.
            _mm_prefetch::<_MM_HINT_T0>(b.as_ptr().wrapping_add(PREFETCH).cast());
        }
        let v = _mm512_cvtepu8_epi32(load128(b));
        let lo = _mm512_sub_epi32(_mm512_and_si512(v, nibble), zp);
        let hi = _mm512_sub_epi32(_mm512_srli_epi32::<4>(v), zp);
        let (even, odd) = x.split_at(SUB / 2);
        // SAFETY: 16 readable f32 each; unaligned loads; AVX-512F is enabled here.
        let (xe, xo) = unsafe {
            (
                _mm512_loadu_ps(even.as_ptr()),
                _mm512_loadu_ps(odd.as_ptr()),
            )
        };
        let p = _mm512_mul_ps(_mm512_cvtepi32_ps(lo), xe);
        let p = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi), xo, p);
        // Two accumulators, alternating, halve the dependency chain.
        if k % 2 == 0 {
            acc0 = _mm512_fmadd_ps(p, _mm512_set1_ps(d), acc0);
        } else {
            acc1 = _mm512_fmadd_ps(p, _mm512_set1_ps(d), acc1);
        }
    }
    _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
}

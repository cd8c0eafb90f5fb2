//! The AVX-512 row loop of the exact (f32 activation) GEMV on 4-bit codes: a sub-block's 16
//! code bytes are widened to 16 dword lanes once, its low and high nibbles turned into floats
//! by or'ing them into the mantissa of a power of two (no convert), and multiplied by its 32
//! activations in two zmm products, where the AVX2 loop ([`super::x86::dot4_f32`]) works on
//! four 8-lane quarters.

use std::arch::x86_64::*;

use super::codes16::{Codes16, Lanes};
use super::matrix::{QuantMatrix, SUB};
use super::rows::{each_row, exact_block_factors, Ctx, Scratch};
use super::rows_x86::PREFETCH;

/// Whether this CPU runs (and `RBE_CPU` allows) the AVX-512 loop.
pub(super) fn available() -> bool {
    crate::kernels::isa::avx512()
}

/// Rows `first..first + out.len()` of the exact GEMV of a matrix of 4-bit codes, activations
/// in [`Order::EvenOdd`](super::act::Order::EvenOdd), as [`each_row`] defines them.
///
/// # Safety
/// The CPU has AVX-512F and BW, AVX2 and FMA ([`available`]).
#[target_feature(enable = "avx2,fma,avx512f,avx512bw")]
pub(super) unsafe fn rows_exact4(c: &Ctx, s: &mut Scratch, first: usize, out: &mut [f32]) {
    let codes = Codes16::new(c.q.scale_bits(), Lanes::Natural);
    let prologue = |r: usize, s: &mut Scratch| factors(c.q, r, &c.act.sums, &mut s.sf, &codes);
    // Symmetric codes have their zero point subtracted; asymmetric ones (zero point 0) are
    // taken as they are, their offsets applied by the skeleton.
    each_row(c, s, first, out, prologue, |w, s| main_f32(c, w, s, c.q.zero_point()), 0)
}

/// Row `r`'s scale codes minus the scale bias into `sf` (whole runs of 16 groups), 16 groups a
/// step; returns `(0, Σ of * sums)` (`of`: the offset codes, none when symmetric), what
/// [`each_row`] wants in exact mode. Inlined into the row loop, where the AVX2
/// [`factors`](super::rows_x86::factors) is a call.
#[inline]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw")]
fn factors(q: &QuantMatrix, r: usize, sums: &[f32], sf: &mut [f32], codes: &Codes16) -> (f32, f32) {
    let chunks = q.groups_per_row().div_ceil(16);
    let (scales, mins, bias) = (q.scales_from(r), q.mins_from(r), _mm512_set1_epi32(q.scale_bias()));
    let (sf16, _) = sf.as_chunks_mut::<16>();
    let (sums16, _) = sums.as_chunks::<16>();
    let mut off = _mm512_setzero_ps();
    for (k, d) in sf16.iter_mut().take(chunks).enumerate() {
        // SAFETY: 16 writable values behind a unique reference; unaligned store.
        unsafe { _mm512_storeu_ps(d.as_mut_ptr(), codes.get(scales, k, bias)) };
        if let (true, Some(x)) = (q.asymmetric(), sums16.get(k)) {
            // SAFETY: 16 readable values; unaligned load.
            let x = unsafe { _mm512_loadu_ps(x.as_ptr()) };
            off = _mm512_fmadd_ps(codes.get(mins, k, _mm512_setzero_si512()), x, off);
        }
    }
    (0.0, _mm512_reduce_add_ps(off))
}

/// `Σ_s sd[s] * Σ_{i in s} x_i * (q_i - bias)` over the full sub-blocks of one row.
///
/// A code becomes a float without a convert: a nibble or'ed into the low mantissa bits of a
/// power of two `2^e` is the float `2^e + q·2^(k + e - 23)` for a nibble at bits `k..k + 4`;
/// with `e = 23` for the low nibble (bits 0..4) and `e = 19` for the high one (bits 4..8),
/// both read `2^e + q` exactly, and one subtract of `2^e + bias` leaves `q - bias`. Each
/// nibble is one `vpternlogd` (and, or) and one subtract, against two and or shift and a
/// convert (and a subtract) before: exact, so the result is bit for bit what it was.
#[inline]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw")]
fn main_f32(c: &Ctx, codes: &[u8], s: &mut Scratch, bias: i32) -> f32 {
    let sd = exact_block_factors(c.q, s);
    let (chunks, _) = codes.as_chunks::<16>();
    let (xs, _) = c.act.xk.as_chunks::<SUB>();
    let mut blocks = chunks.iter().zip(xs).zip(sd);
    const LOW: f32 = (1 << 23) as f32;
    const HIGH: f32 = (1 << 19) as f32;
    let (low_mask, low_bits) = (_mm512_set1_epi32(0x0f), _mm512_set1_epi32(LOW.to_bits() as i32));
    let (high_mask, high_bits) = (_mm512_set1_epi32(0xf0), _mm512_set1_epi32(HIGH.to_bits() as i32));
    let (low_off, high_off) = (_mm512_set1_ps(LOW + bias as f32), _mm512_set1_ps(HIGH + bias as f32));
    // (a & b) | c
    const AND_OR: i32 = 0xea;
    let dot = |codes: &[u8; 16], x: &[f32; SUB]| {
        // SAFETY: 16 and 2 x 16 readable values; unaligned loads; AVX-512F is enabled here.
        let (bytes, x0, x1) = unsafe {
            (_mm_loadu_si128(codes.as_ptr().cast()), _mm512_loadu_ps(x.as_ptr()), _mm512_loadu_ps(x[16..].as_ptr()))
        };
        let wide = _mm512_cvtepu8_epi32(bytes);
        let lo = _mm512_castsi512_ps(_mm512_ternarylogic_epi32::<AND_OR>(wide, low_mask, low_bits));
        let hi = _mm512_castsi512_ps(_mm512_ternarylogic_epi32::<AND_OR>(wide, high_mask, high_bits));
        let (lo, hi) = (_mm512_sub_ps(lo, low_off), _mm512_sub_ps(hi, high_off));
        _mm512_fmadd_ps(hi, x1, _mm512_mul_ps(lo, x0))
    };
    let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    // Two sub-blocks a step, into two accumulators.
    while let Some(((w, x), d)) = blocks.next() {
        // Once per sub-block (16 bytes), so every line ahead is asked for.
        _mm_prefetch::<_MM_HINT_T0>(w.as_ptr().wrapping_add(PREFETCH).cast());
        acc0 = _mm512_fmadd_ps(dot(w, x), _mm512_set1_ps(*d), acc0);
        let Some(((w, x), d)) = blocks.next() else {
            break;
        };
        acc1 = _mm512_fmadd_ps(dot(w, x), _mm512_set1_ps(*d), acc1);
    }
    _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
}

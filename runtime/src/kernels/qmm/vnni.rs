//! AVX-512 VNNI building blocks of the int8 GEMV: 16 sub-blocks' integer dot products at a
//! time (`vpdpbusd`: unsigned codes times signed int8 activations) reduced to one vector of
//! 16 sums (their lane order: [`TRANSPOSE`]). Every function needs the
//! features [`available`] checks; callers check them at run time before calling.

use std::arch::x86_64::*;

use super::act::XQ_STEP;
use super::matrix::SUB;

/// Whether this CPU runs the AVX-512 VNNI kernels.
pub(super) fn available() -> bool {
    crate::kernels::isa::avx512_vnni()
}

/// Activations of one step of [`dots`]: [`XQ_STEP`] sub-blocks.
pub(super) const STEP_VALUES: usize = XQ_STEP * SUB;

/// Lane `l` of [`dots`]' result holds the sum of sub-block `TRANSPOSE[l]` of its step.
pub(super) const TRANSPOSE: [i32; 16] = {
    let mut t = [0i32; 16];
    let mut l = 0;
    while l < 16 {
        t[l] = (4 * (l % 4) + l / 4) as i32;
        l += 1;
    }
    t
};

#[inline]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vnni")]
pub(super) fn load16(a: &[f32; 16]) -> __m512 {
    // SAFETY: 64 readable bytes; unaligned load; AVX-512F is enabled here.
    unsafe { _mm512_loadu_ps(a.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vnni")]
fn load_i8(a: &[i8]) -> __m512i {
    match a.first_chunk::<64>() {
        // SAFETY: 64 readable bytes; unaligned load; AVX-512F is enabled here.
        Some(a) => unsafe { _mm512_loadu_si512(a.as_ptr().cast()) },
        None => _mm512_setzero_si512(),
    }
}

/// `n` (<= 64) bytes of `src` from `at` (zeros past them and past the end of `src`).
#[inline]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vnni")]
fn load_bytes(src: &[u8], at: usize, n: usize) -> __m512i {
    let rest = src.get(at..).unwrap_or(&[]);
    match rest.first_chunk::<64>() {
        // SAFETY: 64 readable bytes; unaligned load; AVX-512F is enabled here.
        Some(c) if n >= 64 => unsafe { _mm512_loadu_si512(c.as_ptr().cast()) },
        _ => {
            let n = n.min(rest.len()).min(64);
            let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
            // SAFETY: the mask covers only the first `n` bytes, all inside `rest`; masked-off
            // bytes are not accessed (AVX-512BW masked loads suppress their faults).
            unsafe { _mm512_maskz_loadu_epi8(mask, rest.as_ptr().cast()) }
        }
    }
}

/// Sums of the four i32 lanes of each 128-bit lane: lane `4k + j` of the result is the sum of
/// 128-bit lane `k` of `w[j]`.
#[inline]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vnni")]
fn reduce4(w: [__m512i; 4]) -> __m512i {
    let [a, b, c, d] = w;
    let ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    let cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
    _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd))
}

/// `Σ code * xq` of each of the first `n` (<= 16) sub-blocks of one step (`codes`: its packed
/// `B`-bit codes and anything after; `xq`: its activations, in [`Order::EvenOdd4`] for
/// `B` = 4, else in code order), lane `l` holding sub-block `TRANSPOSE[l]`. `B`: 4 or 8.
///
/// [`Order::EvenOdd4`]: super::act::Order::EvenOdd4
#[inline]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vnni")]
pub(super) fn dots<const B: u8>(codes: &[u8], xq: &[i8; STEP_VALUES], n: usize) -> __m512i {
    const { assert!(B == 4 || B == 8) };
    // Each w[j] gets sub-blocks 4j..4j + 4 of the step, one per 128-bit lane.
    let mut w = [_mm512_setzero_si512(); 4];
    let (x4, _) = xq.as_chunks::<{ 4 * SUB }>();
    let block_bytes = 4 * B as usize;
    let bytes = |first: usize, count: usize| n.saturating_sub(first).min(count) * block_bytes;
    for (j, (wj, x)) in w.iter_mut().zip(x4).enumerate() {
        let (xa, xb) = x.split_at(2 * SUB);
        if B == 4 {
            // 64 bytes = 4 sub-blocks; low nibbles (even codes) then high ones.
            let v = load_bytes(codes, 64 * j, bytes(4 * j, 4));
            let nib = _mm512_set1_epi8(0x0f);
            let lo = _mm512_and_si512(v, nib);
            let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), nib);
            let acc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, load_i8(xa));
            *wj = _mm512_dpbusd_epi32(acc, hi, load_i8(xb));
        } else {
            // Two sub-blocks per 64 bytes, one per 256-bit half: fold the halves' lanes.
            let va = load_bytes(codes, 128 * j, bytes(4 * j, 2));
            let vb = load_bytes(codes, 128 * j + 64, bytes(4 * j + 2, 2));
            let a = _mm512_dpbusd_epi32(_mm512_setzero_si512(), va, load_i8(xa));
            let b = _mm512_dpbusd_epi32(_mm512_setzero_si512(), vb, load_i8(xb));
            *wj = _mm512_add_epi32(
                _mm512_shuffle_i32x4::<0x88>(a, b),
                _mm512_shuffle_i32x4::<0xdd>(a, b),
            );
        }
    }
    reduce4(w)
}

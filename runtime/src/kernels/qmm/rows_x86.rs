//! AVX2 row loops: the fused GEMV (f32 and int8 activations) and the row decoder, one
//! instance per code width `B` (`N = 4 * B` bytes per sub-block; the unpacker is chosen at
//! compile time).

use std::arch::x86_64::*;

use super::act::{Activations, Order};
use super::matrix::{QuantMatrix, SUB};
use super::rows::{block_factors, each_row, exact_block_factors, rows_portable, Ctx, RowsFn, Scratch};
use super::x86::{
    centre, decode_block, dot4_f32, dot_f32, dot_i8, dot_i8_bias, hsum, load128_i8, pair_sums4,
    unpack, unpack_even_odd4, Codes8,
};

/// How far ahead of the GEMV loops (here and in `rows_vnni`) each row's codes are fetched into
/// L1, in bytes (rows follow each other in memory, so this runs into the next rows). 4 KiB beat
/// 1 KiB by 5-9% on the GPT-2 small q4 step (AVX-512 Xeon; exact, AVX2 int8 and VNNI int8
/// loops alike), 8 and 16 KiB were no better.
pub(super) const PREFETCH: usize = 4096;

/// Whether this CPU runs the AVX2 kernels.
pub(super) fn available() -> bool {
    crate::kernels::isa::avx2()
}

/// The AVX2 GEMV row kernel for `bits`-wide codes in `mode`, and the activation order it
/// reads (for 4-bit codes in exact mode, the AVX-512 loop's when the CPU runs it).
pub(super) fn gemv_rows(bits: u8, mode: Activations) -> (RowsFn, Order) {
    let f: RowsFn = match bits {
        2 => rows::<2, 8>,
        3 => rows::<3, 12>,
        4 if mode == Activations::Exact && !super::rows_avx512::available() => {
            return (rows::<4, 16>, Order::NibbleByte)
        }
        4 if mode == Activations::Int8 => return (rows::<4, 16>, Order::EvenOdd2),
        4 => return (rows::<4, 16>, Order::EvenOdd),
        5 => rows::<5, 20>,
        6 => rows::<6, 24>,
        7 => rows::<7, 28>,
        8 => rows::<8, 32>,
        _ => rows_portable,
    };
    (f, Order::Natural)
}

fn rows<const B: u8, const N: usize>(c: &Ctx, s: &mut Scratch, first: usize, out: &mut [f32]) {
    if B == 4 && c.mode == Activations::Exact && super::rows_avx512::available() {
        // SAFETY: AVX-512F is present (checked just above), and AVX2 and FMA with it.
        unsafe { super::rows_avx512::rows_exact4(c, s, first, out) }
    } else if available() {
        // SAFETY: AVX2 and FMA are present (checked just above).
        unsafe { rows_avx2::<B, N>(c, s, first, out) }
    } else {
        rows_portable(c, s, first, out)
    }
}

#[target_feature(enable = "avx2,fma")]
fn rows_avx2<const B: u8, const N: usize>(c: &Ctx, s: &mut Scratch, first: usize, out: &mut [f32]) {
    let q = c.q;
    // The zero-point correction only exists in int8 mode, when the dot leaves a zero point in.
    let corr = c.mode == Activations::Int8 && q.zero_point() != dot_i8_bias(B);
    let zsums: &[f32] = if corr { &c.act.zsums } else { &[] };
    let wide = c.cache.and_then(|cache| cache.wide(q));
    if let Some(w) = wide.filter(|_| super::octets::fits(q)) {
        return super::octets::rows(c, w, first, out);
    }
    let prologue = |r: usize, s: &mut Scratch| match wide {
        Some(w) => w.factors(q, r, &c.act.sums, zsums, &mut s.sf),
        None => factors(q, r, &c.act.sums, zsums, &mut s.sf, &mut []),
    };
    match (c.mode, q.asymmetric()) {
        (Activations::Exact, true) => each_row(
            c,
            s,
            first,
            out,
            prologue,
            |w, s| main_f32::<B, N, false>(c, w, s),
            0,
        ),
        (Activations::Exact, false) => each_row(
            c,
            s,
            first,
            out,
            prologue,
            |w, s| main_f32::<B, N, true>(c, w, s),
            0,
        ),
        (Activations::Int8, _) => each_row(
            c,
            s,
            first,
            out,
            prologue,
            |w, s| main_i8::<B, N>(c, w, s),
            dot_i8_bias(B),
        ),
    }
}

/// Row `r`'s scale codes minus the scale bias into `sf` (and its offset codes into `of` unless
/// `of` is empty); returns `(Σ sf * zsums, Σ of * sums)` as [`each_row`] wants. `sf` and `of`
/// hold whole blocks of 32 groups; `sums` and `zsums` may be shorter (missing entries are 0).
/// One instance for every scale width (a call from the row loops all the same: forcing it
/// inline, 11% of the `RBE_CPU=avx2` step's samples moved into the caller's closure).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn factors(
    q: &QuantMatrix,
    r: usize,
    sums: &[f32],
    zsums: &[f32],
    sf: &mut [f32],
    of: &mut [f32],
) -> (f32, f32) {
    let codes = Codes8::new(q.scale_bits());
    let chunks = q.groups_per_row().div_ceil(8);
    let corr = codes.unpack_dot(q.scales_from(r), q.scale_bias(), chunks, zsums, sf);
    let off = if q.asymmetric() { codes.unpack_dot(q.mins_from(r), 0, chunks, sums, of) } else { 0.0 };
    (corr, off)
}

/// The GEMV's unpacker of one sub-block: 4-bit codes in [`Order::EvenOdd`], other widths in
/// code order.
#[inline]
#[target_feature(enable = "avx2")]
fn gemv_unpack<const B: u8, const N: usize>(c: &[u8; N]) -> __m256i {
    match c.first_chunk::<16>() {
        Some(c4) if B == 4 => unpack_even_odd4(c4),
        _ => unpack::<B, N>(c),
    }
}

/// `Σ_s f_s * p_s` over the steps `s` of a row (as many as `xs` and `sd` have), where
/// `step(c_s, x_s, sd_s)` returns `(p_s, f_s)`: the 8-lane partial dot product of `c_s`, the
/// `N` bytes of step `s` in `codes` (a sub-block, or two), with its activations `x_s`, and the
/// factor lanes that multiply it. Two steps per iteration into two accumulators; every length
/// in the loop is known at compile time, so it has no branch but its own.
#[inline(always)]
fn sum_blocks<const N: usize, X, D>(
    codes: &[u8],
    xs: &[X],
    sd: &[D],
    step: impl Fn(&[u8; N], &X, &D) -> (__m256, __m256),
) -> f32 {
    let (chunks, _) = codes.as_chunks::<N>();
    let mut blocks = chunks.iter().zip(xs).zip(sd);
    // SAFETY: `#[inline(always)]` puts this body inside its callers, which all enable AVX2 and
    // FMA and run only after `available()` said yes.
    unsafe {
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        while let Some(((c, x), d)) = blocks.next() {
            // Once per two steps (N <= 32 bytes each), so every line ahead is asked for.
            _mm_prefetch::<_MM_HINT_T0>(c.as_ptr().wrapping_add(PREFETCH).cast());
            let (p, f) = step(c, x, d);
            acc0 = _mm256_fmadd_ps(p, f, acc0);
            let Some(((c, x), d)) = blocks.next() else {
                break;
            };
            let (p, f) = step(c, x, d);
            acc1 = _mm256_fmadd_ps(p, f, acc1);
        }
        hsum(_mm256_add_ps(acc0, acc1))
    }
}

/// `Σ_g sf[g] * Σ_{i in g} x_i * (q_i - zero_point)` over the full groups of one row
/// (`SIGNED`: symmetric codes, centred on the zero point before the products).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn main_f32<const B: u8, const N: usize, const SIGNED: bool>(
    c: &Ctx,
    codes: &[u8],
    s: &mut Scratch,
) -> f32 {
    let zp = c.q.zero_point();
    let (xs, _) = c.act.xk.as_chunks::<SUB>();
    let sd = exact_block_factors(c.q, s);
    let zero = _mm256_setzero_ps();
    sum_blocks::<N, _, _>(codes, xs, sd, |w, x, d| {
        let p = match w.first_chunk::<16>() {
            Some(c4) if B == 4 => dot4_f32::<SIGNED>(c4, x, zp),
            _ => {
                let w = gemv_unpack::<B, N>(w);
                dot_f32::<SIGNED>(if SIGNED { centre(w, zp) } else { w }, x, zero)
            }
        };
        (p, _mm256_broadcast_ss(d))
    })
}

/// `Σ_s sd[s] * Σ_{i in s} xq_i * (q_i - dot_i8_bias(B))` over the full sub-blocks of a row.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn main_i8<const B: u8, const N: usize>(c: &Ctx, codes: &[u8], s: &mut Scratch) -> f32 {
    block_factors(c.q, &s.sf, &c.act.dx, &mut s.sd);
    if B == 4 {
        return sum_pairs4(codes, &c.act.xq, &s.sd);
    }
    let (xq, _) = c.act.xq.as_chunks::<SUB>();
    sum_blocks::<N, _, _>(codes, xq, &s.sd, |w, x, d| {
        (_mm256_cvtepi32_ps(dot_i8::<B>(gemv_unpack::<B, N>(w), x)), _mm256_broadcast_ss(d))
    })
}

/// [`main_i8`] for 4-bit codes, `xq` in [`Order::EvenOdd2`]: two sub-blocks a step, their 32
/// code bytes in one load, the low nibbles of both against their even activations and the high
/// nibbles against the odd ones, the two i16 products added before they are widened (so one
/// `vpmaddwd`, one convert and one FMA per two sub-blocks: on Zen 1 each of those takes its
/// pipe two cycles a ymm), each half of the 8 sums scaled by its sub-block's `sd`. A last odd
/// sub-block is done alone.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn sum_pairs4(codes: &[u8], xq: &[i8], sd: &[f32]) -> f32 {
    let (x_halves, _) = xq.as_chunks::<32>();
    let (x_pairs, _) = x_halves.as_chunks::<2>();
    let (sd_pairs, last) = sd.as_chunks::<2>();
    let ones = _mm256_set1_epi16(1);
    let pairs = sum_blocks::<32, _, _>(codes, x_pairs, sd_pairs, |c, [x_even, x_odd], d| {
        let p = pair_sums4(c, x_even, x_odd);
        let d = _mm256_set_m128(_mm_broadcast_ss(&d[1]), _mm_broadcast_ss(&d[0]));
        (_mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones)), d)
    });
    let Some(c) = codes.get(sd_pairs.len() * 32..).and_then(|c| c.first_chunk::<16>()) else {
        return pairs;
    };
    let [d] = last else {
        return pairs;
    };
    // The last sub-block's even activations open its pair's span, its odd ones its second half.
    let half = |x: &[i8]| x.first_chunk::<16>().map_or(_mm_setzero_si128(), |h| load128_i8(h));
    let x = xq.get(sd_pairs.len() * 64..).unwrap_or(&[]);
    let x = _mm256_set_m128i(half(x.get(32..).unwrap_or(&[])), half(x));
    let p = _mm256_madd_epi16(_mm256_maddubs_epi16(unpack_even_odd4(c), x), ones);
    pairs + hsum(_mm256_mul_ps(_mm256_cvtepi32_ps(p), _mm256_broadcast_ss(d)))
}

/// A row decoder: `decode(q, scratch, first, out)` writes whole rows `first..` into `out`.
pub(super) type DecodeFn = fn(&QuantMatrix, &mut Scratch, usize, &mut [f32]);

/// The AVX2 row decoder for `bits`-wide codes, or `None` if this CPU lacks AVX2.
pub(super) fn decode_rows(bits: u8) -> Option<DecodeFn> {
    if !available() {
        return None;
    }
    Some(match bits {
        2 => decode::<2, 8>,
        3 => decode::<3, 12>,
        4 => decode::<4, 16>,
        5 => decode::<5, 20>,
        6 => decode::<6, 24>,
        7 => decode::<7, 28>,
        _ => decode::<8, 32>,
    })
}

fn decode<const B: u8, const N: usize>(
    q: &QuantMatrix,
    s: &mut Scratch,
    first: usize,
    out: &mut [f32],
) {
    if available() {
        // SAFETY: AVX2 and FMA are present (checked just above).
        unsafe {
            if q.asymmetric() {
                decode_avx2::<B, N, false>(q, s, first, out)
            } else {
                decode_avx2::<B, N, true>(q, s, first, out)
            }
        }
    } else {
        super::decode::decode_portable(q, s, first, out)
    }
}

/// Decodes rows `first..` of `q` into `out` (whole rows), bit for bit like the reference
/// (`SIGNED`: symmetric codes).
#[target_feature(enable = "avx2,fma")]
fn decode_avx2<const B: u8, const N: usize, const SIGNED: bool>(
    q: &QuantMatrix,
    s: &mut Scratch,
    first: usize,
    out: &mut [f32],
) {
    let spg = q.group() / SUB;
    let (zp, full) = (q.zero_point(), q.full_groups());
    for (k, row) in out.chunks_exact_mut(q.cols()).enumerate() {
        let r = first + k;
        let (unit, min_unit) = q.units(r);
        factors(q, r, &[], &[], &mut s.sf, &mut s.of);
        let (codes, _) = q.codes_from(r).as_chunks::<N>();
        let mut codes = codes.iter();
        let (blocks, _) = row.as_chunks_mut::<SUB>();
        for (g, grp) in blocks.chunks_exact_mut(spg).take(full).enumerate() {
            let step = unit * s.sf.get(g).copied().unwrap_or(0.0);
            let offset = if q.asymmetric() {
                -(min_unit * s.of.get(g).copied().unwrap_or(0.0))
            } else {
                0.0
            };
            for (b, c) in grp.iter_mut().zip(&mut codes) {
                let w = unpack::<B, N>(c);
                decode_block::<SIGNED>(if SIGNED { centre(w, zp) } else { w }, step, offset, b);
            }
        }
        if full < q.groups_per_row() {
            super::decode::decode_tail(q, r, &s.sf, &s.of, row);
        }
    }
}

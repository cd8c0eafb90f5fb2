//! The AVX2 GEMV of the q4 layout (4-bit codes, groups of one sub-block, whole runs of 8
//! groups): a row in one pass, 8 sub-blocks a step, the group factors made from the widened
//! group codes in the same step, the offsets dotted on the way, one horizontal sum a row
//! (the row loops of `rows_x86` spend a quarter of a 768-column row outside the sub-block loop
//! on Zen 1: BENCHMARKS.md).
//!
//! Int8: a step's 4 pairs of sub-blocks give 4 registers of 16 i16 sums (low lanes: the first
//! sub-block of the pair, high lanes: the second). Three `vphaddw` and one `vpmaddwd` fold them
//! into the 8 sub-blocks' dot products (in the order 0 2 4 6 1 3 5 7), converted and scaled by
//! one FMA, where the pair loop paid a `vpmaddwd`, a convert, an FMA and two broadcasts a pair.
//! The i16 sums cannot overflow: a pair's lane adds 4 products of at most `15 * 127`, 7620,
//! and the two `vphaddw` four such lanes, 30480. Exact: the sub-blocks' products of
//! [`dot4_f32`] scaled by their factors, the codes unsigned (the zero point of symmetric codes
//! goes with the offsets).

use std::arch::x86_64::*;

use super::act::Activations;
use super::matrix::{QuantMatrix, SUB};
use super::rows::Ctx;
use super::rows_x86::PREFETCH;
use super::wide::{widen, WideCodes};
use super::x86::{dot4_f32, hsum, load_ps, pair_sums4, store_ps};

/// Sub-blocks (and groups) a step.
const STEP: usize = 8;

/// Whether [`rows`] computes the GEMV of `q` (given its widened group codes): 4-bit codes,
/// groups of one sub-block, rows of whole steps (no short group).
pub(super) fn fits(q: &QuantMatrix) -> bool {
    q.bits() == 4 && q.group() == SUB && q.full_groups() == q.groups_per_row() && q.groups_per_row().is_multiple_of(STEP)
}

/// Rows `first..first + out.len()` of the GEMV of `c.q` (which [`fits`]), its group codes
/// widened in `wide`; the activations in [`Order::EvenOdd2`](super::act::Order::EvenOdd2)
/// (int8) or [`Order::NibbleByte`](super::act::Order::NibbleByte) (exact).
#[target_feature(enable = "avx2,fma")]
pub(super) fn rows(c: &Ctx, wide: &WideCodes, first: usize, out: &mut [f32]) {
    match c.mode {
        Activations::Int8 => rows_int8(c, wide, first, out),
        Activations::Exact => rows_exact(c, wide, first, out),
    }
}

/// [`rows`] with int8 activations: a step's 8 integer dot products scaled by one FMA.
#[target_feature(enable = "avx2,fma")]
fn rows_int8(c: &Ctx, wide: &WideCodes, first: usize, out: &mut [f32]) {
    let (x_halves, _) = c.act.xq.as_chunks::<32>();
    let (xs, _) = x_halves.as_chunks::<STEP>();
    let (dx, _) = c.act.dx.as_chunks::<STEP>();
    let perm = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    each_row(c, wide, first, out, |j, codes, sf, acc| {
        let (Some(x), Some(d)) = (xs.get(j), dx.get(j)) else {
            return acc;
        };
        let f = _mm256_permutevar8x32_ps(_mm256_mul_ps(sf, load_ps(d)), perm);
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(step_dots(codes, x)), f, acc)
    });
}

/// [`rows`] with f32 activations: each sub-block's products ([`dot4_f32`]) scaled by its
/// group's factor, two chains of FMAs.
#[target_feature(enable = "avx2,fma")]
fn rows_exact(c: &Ctx, wide: &WideCodes, first: usize, out: &mut [f32]) {
    let (x_blocks, _) = c.act.xk.as_chunks::<SUB>();
    let (x_pairs, _) = x_blocks.as_chunks::<2>();
    let (xs, _) = x_pairs.as_chunks::<{ STEP / 2 }>();
    each_row(c, wide, first, out, |j, codes, sf, acc| {
        let Some(x) = xs.get(j) else {
            return acc;
        };
        let mut f = [0f32; STEP];
        store_ps(&mut f, sf);
        let (blocks, _) = codes.as_flattened().as_chunks::<16>();
        let (block_pairs, _) = blocks.as_chunks::<2>();
        let (f_pairs, _) = f.as_chunks::<2>();
        let (mut a0, mut a1) = (acc, _mm256_setzero_ps());
        for (([b0, b1], [x0, x1]), [f0, f1]) in block_pairs.iter().zip(x).zip(f_pairs) {
            a0 = _mm256_fmadd_ps(dot4_f32::<false>(b0, x0, 0), _mm256_broadcast_ss(f0), a0);
            a1 = _mm256_fmadd_ps(dot4_f32::<false>(b1, x1, 0), _mm256_broadcast_ss(f1), a1);
        }
        _mm256_add_ps(a0, a1)
    });
}

/// Runs the GEMV row by row: `step(j, codes, sf, acc)` adds step `j`'s products to `acc`
/// (`codes`: its 8 sub-blocks' code bytes, by pairs; `sf`: their groups' scale codes minus the
/// scale bias). The codes are unsigned: the offset codes (asymmetric) or the zero point
/// times the scale codes (symmetric) are dotted with the group sums of the activations on
/// the way, and one horizontal sum ends a row.
#[inline(always)]
fn each_row(
    c: &Ctx,
    wide: &WideCodes,
    first: usize,
    out: &mut [f32],
    step: impl Fn(usize, &[[u8; 32]; 4], __m256, __m256) -> __m256,
) {
    let q = c.q;
    let steps = q.groups_per_row() / STEP;
    let (sums, _) = c.act.sums.as_chunks::<STEP>();
    // SAFETY: `#[inline(always)]` puts this body inside its callers, which enable AVX2 and FMA
    // (so run only where both are present).
    unsafe {
        let bias = _mm256_set1_epi32(q.scale_bias());
        for (k, y) in out.iter_mut().enumerate() {
            let r = first + k;
            let (unit, min_unit) = q.units(r);
            let (codes, _) = q.codes_from(r).as_chunks::<32>().0.as_chunks::<4>();
            let (scales, mins) = wide.row_codes(r);
            let (mut acc, mut extra) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for (j, ((c, sc), s)) in codes.iter().zip(scales).zip(sums).take(steps).enumerate() {
                let at = c.as_ptr().cast::<i8>();
                _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(PREFETCH));
                _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(PREFETCH + 64));
                let sf = _mm256_cvtepi32_ps(_mm256_sub_epi32(widen(sc), bias));
                acc = step(j, c, sf, acc);
                let by = match mins.get(j) {
                    Some(m) => _mm256_cvtepi32_ps(widen(m)),
                    None => sf,
                };
                extra = _mm256_fmadd_ps(by, load_ps(s), extra);
            }
            let extra_unit = if q.asymmetric() { min_unit } else { unit * q.zero_point() as f32 };
            *y = hsum(_mm256_fnmadd_ps(_mm256_set1_ps(extra_unit), extra, _mm256_mul_ps(_mm256_set1_ps(unit), acc)));
        }
    }
}

/// The 8 sub-blocks' integer dot products of one step (`c`: their code bytes by pairs, `x`:
/// their activations, each pair's even halves then odd halves), in the order 0 2 4 6 1 3 5 7.
#[inline]
#[target_feature(enable = "avx2")]
fn step_dots(c: &[[u8; 32]; 4], x: &[[i8; 32]; STEP]) -> __m256i {
    let [c0, c1, c2, c3] = c;
    let [x0, x1, x2, x3, x4, x5, x6, x7] = x;
    let p01 = _mm256_hadd_epi16(pair_sums4(c0, x0, x1), pair_sums4(c1, x2, x3));
    let p23 = _mm256_hadd_epi16(pair_sums4(c2, x4, x5), pair_sums4(c3, x6, x7));
    _mm256_madd_epi16(_mm256_hadd_epi16(p01, p23), _mm256_set1_epi16(1))
}

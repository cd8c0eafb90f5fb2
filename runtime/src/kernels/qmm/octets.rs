//! The AVX2 int8 GEMV of the q4 layout (4-bit codes, groups of one sub-block, whole runs of
//! 8 groups): a row in one pass, 8 sub-blocks a step, nothing written to memory on the way.
//!
//! A step's 4 pairs of sub-blocks give 4 registers of 16 i16 sums (low lanes: the first
//! sub-block of the pair, high lanes: the second). Three `vphaddw` and one `vpmaddwd` fold them
//! into the 8 sub-blocks' dot products (in the order 0 2 4 6 1 3 5 7), converted and scaled
//! by one FMA; the group factors come from the widened group codes in the same step. The
//! pairwise `vpmaddwd`, convert, FMA and factor broadcasts of the pair loop (`rows_x86`) cost
//! more on Zen 1 (BENCHMARKS.md). The i16 sums cannot overflow: a pair's lane is at most
//! `4 * 15 * 127 = 7620` in size, four of them 30480.

use std::arch::x86_64::*;

use super::act::Activations;
use super::matrix::{QuantMatrix, SUB};
use super::rows::Ctx;
use super::rows_x86::PREFETCH;
use super::wide::{widen, WideCodes};
use super::x86::{hsum, load256, load_i8, load_ps};

/// Sub-blocks (and groups) a step.
const STEP: usize = 8;

/// Whether [`rows`] computes the int8 GEMV of `q`: 4-bit codes, groups of one sub-block, rows
/// of whole steps (no short group), its group codes widened.
pub(super) fn fits(q: &QuantMatrix, mode: Activations, wide: Option<&WideCodes>) -> bool {
    mode == Activations::Int8
        && wide.is_some()
        && q.bits() == 4
        && q.group() == SUB
        && q.full_groups() == q.groups_per_row()
        && q.groups_per_row().is_multiple_of(STEP)
}

/// Rows `first..first + out.len()` of the int8 GEMV of `c.q` (which [`fits`]), its group codes
/// widened in `wide`, the activations in [`super::act::Order::EvenOdd2`].
#[target_feature(enable = "avx2,fma")]
pub(super) fn rows(c: &Ctx, wide: &WideCodes, first: usize, out: &mut [f32]) {
    let q = c.q;
    let steps = q.groups_per_row() / STEP;
    let (x_halves, _) = c.act.xq.as_chunks::<32>();
    let (xs, _) = x_halves.as_chunks::<STEP>();
    let (dx, _) = c.act.dx.as_chunks::<STEP>();
    // Asymmetric: the offset codes dotted with the group sums; symmetric: the scale factors
    // dotted with the quantized groups' sums, times the zero point (the codes are unsigned).
    let (extra_sums, _) = if q.asymmetric() { c.act.sums.as_chunks::<STEP>() } else { c.act.zsums.as_chunks::<STEP>() };
    let bias = _mm256_set1_epi32(q.scale_bias());
    let perm = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for (k, y) in out.iter_mut().enumerate() {
        let r = first + k;
        let (unit, min_unit) = q.units(r);
        let (codes, _) = q.codes_from(r).as_chunks::<32>().0.as_chunks::<4>();
        let (scales, mins) = wide.row_codes(r);
        let (mut acc, mut extra) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let steps_of_row = codes.iter().zip(xs).zip(scales).zip(dx).zip(extra_sums).take(steps);
        for (j, ((((c, x), sc), d), e)) in steps_of_row.enumerate() {
            let at = c.as_ptr().cast::<i8>();
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(PREFETCH));
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(PREFETCH + 64));
            let sf = _mm256_cvtepi32_ps(_mm256_sub_epi32(widen(sc), bias));
            let f = _mm256_permutevar8x32_ps(_mm256_mul_ps(sf, load_ps(d)), perm);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(step_dots(c, x)), f, acc);
            let by = match mins.get(j) {
                Some(m) => _mm256_cvtepi32_ps(widen(m)),
                None => sf,
            };
            extra = _mm256_fmadd_ps(by, load_ps(e), extra);
        }
        let extra_unit = if q.asymmetric() { min_unit } else { unit * q.zero_point() as f32 };
        *y = hsum(_mm256_fnmadd_ps(_mm256_set1_ps(extra_unit), extra, _mm256_mul_ps(_mm256_set1_ps(unit), acc)));
    }
}

/// The 8 sub-blocks' integer dot products of one step (`c`: their code bytes by pairs, `x`:
/// their activations, each pair's even halves then odd halves), in the order 0 2 4 6 1 3 5 7.
#[inline]
#[target_feature(enable = "avx2")]
fn step_dots(c: &[[u8; 32]; 4], x: &[[i8; 32]; STEP]) -> __m256i {
    let [c0, c1, c2, c3] = c;
    let [x0, x1, x2, x3, x4, x5, x6, x7] = x;
    let p01 = _mm256_hadd_epi16(pair_sums(c0, x0, x1), pair_sums(c1, x2, x3));
    let p23 = _mm256_hadd_epi16(pair_sums(c2, x4, x5), pair_sums(c3, x6, x7));
    _mm256_madd_epi16(_mm256_hadd_epi16(p01, p23), _mm256_set1_epi16(1))
}

/// A pair of sub-blocks' 16 i16 sums of two products (low lanes: the first sub-block): the
/// low nibbles of `c` against `x_even`, the high ones against `x_odd`.
#[inline]
#[target_feature(enable = "avx2")]
fn pair_sums(c: &[u8; 32], x_even: &[i8; 32], x_odd: &[i8; 32]) -> __m256i {
    let nibble = _mm256_set1_epi8(0x0f);
    let v = load256(c);
    let lo = _mm256_and_si256(v, nibble);
    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), nibble);
    _mm256_add_epi16(_mm256_maddubs_epi16(lo, load_i8(x_even)), _mm256_maddubs_epi16(hi, load_i8(x_odd)))
}

//! The AVX2 GEMV of the q4 layout (4-bit codes, groups of one sub-block, whole runs of 8
//! groups): a row in one pass, 8 sub-blocks a step, the group factors made from the widened
//! group codes in the same step, the offsets dotted on the way, one horizontal sum a row
//! (the row loops of `rows_x86` spend a quarter of a 768-column row outside the sub-block loop
//! on Zen 1: BENCHMARKS.md).
//!
//! Int8: a step's 4 pairs of sub-blocks give 4 registers of 16 i16 sums (low lanes: the first
//! sub-block of the pair, high lanes: the second). Three `vphaddw` and one `vpmaddwd` fold them
//! into the 8 sub-blocks' dot products (in the order 0 2 4 6 1 3 5 7), the `vpmaddwd`
//! multiplying each by its scale code (one `vpshufb` puts the step's 8 code bytes in that order),
//! then converted and scaled by the activation scales (permuted once a call) in one FMA; where
//! the pair loop paid a `vpmaddwd`, a convert, an FMA and two broadcasts a pair. Rows go by
//! pairs, which share the activations' loads and one horizontal add. The i16 sums cannot
//! overflow: a pair's lane adds 4 products of at most `15 * 127`, 7620, and the two `vphaddw`
//! four such lanes, 30480; times a scale code, two of those stay below 2^24, so the convert is
//! exact. Exact: the sub-blocks' products of [`dot4_f32`] scaled by their factors, the codes
//! unsigned (the zero point of symmetric codes goes with the offsets), a row at a time (two a
//! pass measured up to 11% slower on Zen 1).

use std::arch::x86_64::*;

use super::act::Activations;
use super::matrix::{QuantMatrix, SUB};
use super::rows::Ctx;
use super::rows_x86::PREFETCH;
use super::wide::{widen, WideCodes};
use super::x86::{dot4_f32, hsum, hsum2, load_ps, pair_sums4, store_ps};

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

/// [`rows`] with int8 activations: a step's 8 integer dot products times their scale codes,
/// scaled by one FMA.
#[target_feature(enable = "avx2,fma")]
fn rows_int8(c: &Ctx, wide: &WideCodes, first: usize, out: &mut [f32]) {
    let (x_halves, _) = c.act.xq.as_chunks::<32>();
    let (xs, _) = x_halves.as_chunks::<STEP>();
    // The activation scales in the order the dot products come out in.
    let perm = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    let dx: Vec<[f32; STEP]> = (c.act.dx.as_chunks::<STEP>().0.iter())
        .map(|d| {
            let mut f = [0f32; STEP];
            store_ps(&mut f, _mm256_permutevar8x32_ps(load_ps(d), perm));
            f
        })
        .collect();
    // Each scale code as both i16 halves of its dot product's lane, in the lanes' order.
    let z = -128;
    #[rustfmt::skip]
    let dup = _mm256_setr_epi8(
        0, z, 0, z, 2, z, 2, z, 4, z, 4, z, 6, z, 6, z,
        1, z, 1, z, 3, z, 3, z, 5, z, 5, z, 7, z, 7, z,
    );
    let bias = _mm256_set1_epi16(c.q.scale_bias() as i16);
    each_row::<true, __m256>(c, wide, first, out, |j, codes, scales, acc| {
        let (Some(x), Some(d)) = (xs.get(j), dx.get(j)) else {
            return acc;
        };
        let sf = _mm256_sub_epi16(_mm256_shuffle_epi8(_mm256_set1_epi64x(i64::from_le_bytes(*scales)), dup), bias);
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(step_dots(codes, x, sf)), load_ps(d), acc)
    });
}

/// [`rows`] with f32 activations: each sub-block's products ([`dot4_f32`]) scaled by its
/// group's factor, two chains of FMAs that run the length of the row (added once a row, not
/// once a step: 1-3% fewer ns a sub-block on Zen 1, BENCHMARKS.md).
#[target_feature(enable = "avx2,fma")]
fn rows_exact(c: &Ctx, wide: &WideCodes, first: usize, out: &mut [f32]) {
    let (x_blocks, _) = c.act.xk.as_chunks::<SUB>();
    let (x_pairs, _) = x_blocks.as_chunks::<2>();
    let (xs, _) = x_pairs.as_chunks::<{ STEP / 2 }>();
    let bias = c.q.scale_bias();
    each_row::<false, [__m256; 2]>(c, wide, first, out, |j, codes, scales, [mut a0, mut a1]| {
        let Some(x) = xs.get(j) else {
            return [a0, a1];
        };
        let mut f = [0f32; STEP];
        store_ps(&mut f, scale_factors(scales, bias));
        let (blocks, _) = codes.as_flattened().as_chunks::<16>();
        let (block_pairs, _) = blocks.as_chunks::<2>();
        let (f_pairs, _) = f.as_chunks::<2>();
        for (([b0, b1], [x0, x1]), [f0, f1]) in block_pairs.iter().zip(x).zip(f_pairs) {
            a0 = _mm256_fmadd_ps(dot4_f32::<false>(b0, x0, 0), _mm256_broadcast_ss(f0), a0);
            a1 = _mm256_fmadd_ps(dot4_f32::<false>(b1, x1, 0), _mm256_broadcast_ss(f1), a1);
        }
        [a0, a1]
    });
}

/// A row's running sums of its steps' products: one register, or two chains of FMAs.
trait Sums: Copy {
    /// Nothing summed yet.
    fn zero() -> Self;
    /// The 8 partial sums.
    fn total(self) -> __m256;
}

impl Sums for __m256 {
    #[inline(always)]
    fn zero() -> Self {
        // SAFETY: inlined into the callers of `each_row`, which enable AVX2.
        unsafe { _mm256_setzero_ps() }
    }

    #[inline(always)]
    fn total(self) -> __m256 {
        self
    }
}

impl Sums for [__m256; 2] {
    #[inline(always)]
    fn zero() -> Self {
        [<__m256 as Sums>::zero(); 2]
    }

    #[inline(always)]
    fn total(self) -> __m256 {
        // SAFETY: inlined into the callers of `each_row`, which enable AVX2.
        unsafe { _mm256_add_ps(self[0], self[1]) }
    }
}

/// Runs the GEMV row by row, or two rows at a time when `PAIRS` (a last odd row alone):
/// `step(j, codes, scales, acc)` adds step `j`'s products to the row's running sums `acc`
/// (`codes`: its 8 sub-blocks' code bytes, by pairs; `scales`: their groups' scale codes).
/// The codes are unsigned: the offset codes (asymmetric) or the zero point times the scale
/// codes (symmetric) are dotted with the group sums of the activations on the way, and one
/// horizontal add ends a row or a pair.
#[inline(always)]
fn each_row<const PAIRS: bool, A: Sums>(
    c: &Ctx,
    wide: &WideCodes,
    first: usize,
    out: &mut [f32],
    step: impl Fn(usize, &[[u8; 32]; 4], &[u8; 8], A) -> A,
) {
    if c.q.asymmetric() {
        each_row_as::<PAIRS, true, A>(c, wide, first, out, step)
    } else {
        each_row_as::<PAIRS, false, A>(c, wide, first, out, step)
    }
}

/// [`each_row`] for symmetric or asymmetric (`ASYM`) codes.
#[inline(always)]
fn each_row_as<const PAIRS: bool, const ASYM: bool, A: Sums>(
    c: &Ctx,
    wide: &WideCodes,
    first: usize,
    out: &mut [f32],
    step: impl Fn(usize, &[[u8; 32]; 4], &[u8; 8], A) -> A,
) {
    let q = c.q;
    let (sums, _) = c.act.sums.as_chunks::<STEP>();
    let steps = (q.groups_per_row() / STEP).min(sums.len());
    let sums = &sums[..steps];
    let done = if PAIRS { out.len() / 2 * 2 } else { 0 };
    let (paired, single) = out.split_at_mut(done);
    // SAFETY: `#[inline(always)]` puts this body inside the callers of `each_row`, which enable
    // AVX2 and FMA (so run only where both are present).
    unsafe {
        for (k, pair) in paired.chunks_exact_mut(2).enumerate() {
            let (a, b) = (Row::<ASYM>::new(q, wide, first + 2 * k, steps), Row::<ASYM>::new(q, wide, first + 2 * k + 1, steps));
            let (mut acc, mut extra) = ([A::zero(); 2], [_mm256_setzero_ps(); 2]);
            for (j, s) in sums.iter().enumerate() {
                let s = load_ps(s);
                (acc[0], extra[0]) = a.step(j, s, acc[0], extra[0], &step);
                (acc[1], extra[1]) = b.step(j, s, acc[1], extra[1], &step);
            }
            let [y0, y1] = hsum2(a.end(acc[0], extra[0]), b.end(acc[1], extra[1]));
            pair.copy_from_slice(&[y0, y1]);
        }
        for (k, y) in single.iter_mut().enumerate() {
            let a = Row::<ASYM>::new(q, wide, first + done + k, steps);
            let (mut acc, mut extra) = (A::zero(), _mm256_setzero_ps());
            for (j, s) in sums.iter().enumerate() {
                (acc, extra) = a.step(j, load_ps(s), acc, extra, &step);
            }
            *y = hsum(a.end(acc, extra));
        }
    }
}

/// What a row's steps read: its codes, its widened group codes, its units.
struct Row<'a, const ASYM: bool> {
    codes: &'a [[[u8; 32]; 4]],
    scales: &'a [[u8; 8]],
    mins: &'a [[u8; 8]],
    bias: i32,
    unit: f32,
    extra_unit: f32,
}

impl<'a, const ASYM: bool> Row<'a, ASYM> {
    /// Row `r` of `q`, `steps` steps long.
    #[inline(always)]
    fn new(q: &'a QuantMatrix, wide: &'a WideCodes, r: usize, steps: usize) -> Self {
        let (codes, _) = q.codes_from(r).as_chunks::<32>().0.as_chunks::<4>();
        let (scales, mins) = wide.row_codes(r);
        let (unit, min_unit) = q.units(r);
        let extra_unit = if ASYM { min_unit } else { unit * q.zero_point() as f32 };
        let cut = |v: &'a [[u8; 8]]| &v[..steps.min(v.len())];
        Row { codes: &codes[..steps.min(codes.len())], scales: cut(scales), mins: cut(mins), bias: q.scale_bias(), unit, extra_unit }
    }

    /// Adds step `j`'s products to `acc` and its offsets term to `extra` (`s`: the step's
    /// group sums of the activations). Safety: AVX2 and FMA must be present.
    #[inline(always)]
    unsafe fn step<A: Sums>(
        &self,
        j: usize,
        s: __m256,
        acc: A,
        extra: __m256,
        step: &impl Fn(usize, &[[u8; 32]; 4], &[u8; 8], A) -> A,
    ) -> (A, __m256) {
        let (Some(codes), Some(scales)) = (self.codes.get(j), self.scales.get(j)) else {
            return (acc, extra);
        };
        let at = codes.as_ptr().cast::<i8>();
        _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(PREFETCH));
        _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(PREFETCH + 64));
        let by = match self.mins.get(j) {
            Some(m) if ASYM => _mm256_cvtepi32_ps(widen(m)),
            _ => scale_factors(scales, self.bias),
        };
        (step(j, codes, scales, acc), _mm256_fmadd_ps(by, s, extra))
    }

    /// The row's 8 partial sums from its steps' `acc` and `extra`. Safety: FMA must be present.
    #[inline(always)]
    unsafe fn end(&self, acc: impl Sums, extra: __m256) -> __m256 {
        _mm256_fnmadd_ps(_mm256_set1_ps(self.extra_unit), extra, _mm256_mul_ps(_mm256_set1_ps(self.unit), acc.total()))
    }
}

/// A step's 8 scale codes minus the scale bias, as floats.
#[inline(always)]
fn scale_factors(scales: &[u8; 8], bias: i32) -> __m256 {
    // SAFETY: inlined into the callers of `each_row`, which enable AVX2.
    unsafe { _mm256_cvtepi32_ps(_mm256_sub_epi32(widen(scales), _mm256_set1_epi32(bias))) }
}

/// The 8 sub-blocks' integer dot products of one step times their scale codes (`c`: their
/// code bytes by pairs, `x`: their activations, each pair's even halves then odd halves;
/// `sf`: each lane's scale code in both of its i16 halves), in the order 0 2 4 6 1 3 5 7.
/// A product is at most 2 x 30480 x 255, inside an f32's exact integers.
#[inline]
#[target_feature(enable = "avx2")]
fn step_dots(c: &[[u8; 32]; 4], x: &[[i8; 32]; STEP], sf: __m256i) -> __m256i {
    let [c0, c1, c2, c3] = c;
    let [x0, x1, x2, x3, x4, x5, x6, x7] = x;
    let p01 = _mm256_hadd_epi16(pair_sums4(c0, x0, x1), pair_sums4(c1, x2, x3));
    let p23 = _mm256_hadd_epi16(pair_sums4(c2, x4, x5), pair_sums4(c3, x6, x7));
    _mm256_madd_epi16(_mm256_hadd_epi16(p01, p23), sf)
}

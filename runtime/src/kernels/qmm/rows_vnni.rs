//! The AVX-512 VNNI row loop of the int8 GEMV, for 4- and 8-bit codes in groups of one
//! sub-block: [`ROWS`] rows at a time, 16 groups per step; per step and row the integer dot
//! products are reduced to one vector, the group scale and offset codes unpacked to f32 lanes
//! in the same order, and everything accumulates in vectors reduced once per row.

use std::arch::x86_64::*;

use super::act::{Activations, Order};
use super::matrix::{QuantMatrix, SUB};
use super::rows::{rows_portable, tail_term, Ctx, RowsFn, Scratch};
use super::rows_x86::PREFETCH;
use super::codes16::{Codes16, Lanes};
use super::vnni::{available, dots, load16, STEP_VALUES, TRANSPOSE};

/// Rows per block of the row loop (they share the activation loads of every step).
const ROWS: usize = 4;

/// The AVX-512 VNNI int8 GEMV row kernel for `q` and the activation order it reads, if this
/// CPU has it and it covers `q`'s layout.
pub(super) fn gemv_rows(q: &QuantMatrix) -> Option<(RowsFn, Order)> {
    if !available() || q.group() != SUB {
        return None;
    }
    match q.bits() {
        4 => Some((rows::<4>, Order::EvenOdd4)),
        8 => Some((rows::<8>, Order::Natural)),
        _ => None,
    }
}

fn rows<const B: u8>(c: &Ctx, s: &mut Scratch, first: usize, out: &mut [f32]) {
    if available() && c.mode == Activations::Int8 && c.q.group() == SUB {
        // SAFETY: every feature the kernel enables is present (checked just above).
        unsafe { rows_vnni::<B>(c, first, out) }
    } else {
        rows_portable(c, s, first, out)
    }
}

#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vnni")]
fn rows_vnni<const B: u8>(c: &Ctx, first: usize, out: &mut [f32]) {
    match c.q.scale_bits() {
        1 => rows_sb::<B, 1>(c, first, out),
        2 => rows_sb::<B, 2>(c, first, out),
        3 => rows_sb::<B, 3>(c, first, out),
        4 => rows_sb::<B, 4>(c, first, out),
        5 => rows_sb::<B, 5>(c, first, out),
        6 => rows_sb::<B, 6>(c, first, out),
        7 => rows_sb::<B, 7>(c, first, out),
        _ => rows_sb::<B, 8>(c, first, out),
    }
}

/// [`rows_vnni`] for `SB`-bit scale codes.
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vnni")]
fn rows_sb<const B: u8, const SB: u8>(c: &Ctx, first: usize, out: &mut [f32]) {
    let (blocks, rest) = out.as_chunks_mut::<ROWS>();
    let after = first + blocks.len() * ROWS;
    for (i, o) in blocks.iter_mut().enumerate() {
        block::<B, SB, ROWS>(c, first + i * ROWS, o);
    }
    for (i, y) in rest.iter_mut().enumerate() {
        block::<B, SB, 1>(c, after + i, std::array::from_mut(y));
    }
}

/// Rows `first..first + R` into `out`: `unit * (Σ_g sf_g dx_s Σ q xq - zero_point Σ_g sf_g
/// zsums_g) - min_unit Σ_g of_g sums_g`, plus the short last group (exact, see [`tail_term`]).
#[inline]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vnni")]
fn block<const B: u8, const SB: u8, const R: usize>(c: &Ctx, first: usize, out: &mut [f32; R]) {
    let q = c.q;
    let (n, zp, bias) = (q.full_blocks(), q.zero_point(), _mm512_set1_epi32(q.scale_bias()));
    let unpack = Codes16::new(SB, Lanes::Transposed);
    let step_bytes = 16 * 4 * B as usize;
    let codes: [&[u8]; R] = std::array::from_fn(|i| q.codes_from(first + i));
    let scales: [&[u8]; R] = std::array::from_fn(|i| q.scales_from(first + i));
    let mins: [&[u8]; R] = std::array::from_fn(|i| q.mins_from(first + i));
    let zero = _mm512_setzero_ps();
    let (mut acc, mut corr, mut off) = ([zero; R], [zero; R], [zero; R]);
    // SAFETY: 64 readable bytes; unaligned load; AVX-512F is enabled here.
    let lanes = unsafe { _mm512_loadu_si512(TRANSPOSE.as_ptr().cast()) };
    let (xq, _) = c.act.xq.as_chunks::<STEP_VALUES>();
    let (dx, _) = c.act.dx.as_chunks::<16>();
    let (sums, _) = c.act.sums.as_chunks::<16>();
    let (zsums, _) = c.act.zsums.as_chunks::<16>();
    let steps = xq.iter().zip(dx).zip(sums.iter().zip(zsums));
    for (k, ((x, d), (su, zs))) in steps.enumerate().take(q.groups_per_row().div_ceil(16)) {
        let d = _mm512_permutexvar_ps(lanes, load16(d));
        let su = _mm512_permutexvar_ps(lanes, load16(su));
        let zs = _mm512_permutexvar_ps(lanes, load16(zs));
        let left = n.saturating_sub(16 * k);
        for i in 0..R {
            let sf = unpack.get(scales[i], k, bias);
            let w = codes[i].get(k * step_bytes..).unwrap_or(&[]);
            for line in (0..step_bytes).step_by(64) {
                // A prefetch never faults, whatever the address.
                _mm_prefetch::<_MM_HINT_T0>(w.as_ptr().wrapping_add(PREFETCH + line).cast());
            }
            let p = _mm512_cvtepi32_ps(dots::<B>(w, x, left));
            acc[i] = _mm512_fmadd_ps(p, _mm512_mul_ps(sf, d), acc[i]);
            if zp != 0 {
                corr[i] = _mm512_fmadd_ps(sf, zs, corr[i]);
            }
            if q.asymmetric() {
                off[i] = _mm512_fmadd_ps(unpack.get(mins[i], k, _mm512_setzero_si512()), su, off[i]);
            }
        }
    }
    for (i, y) in out.iter_mut().enumerate() {
        let r = first + i;
        let (unit, min_unit) = q.units(r);
        let v = _mm512_mul_ps(acc[i], _mm512_set1_ps(unit));
        let v = _mm512_fnmadd_ps(corr[i], _mm512_set1_ps(unit * zp as f32), v);
        let v = _mm512_fnmadd_ps(off[i], _mm512_set1_ps(min_unit), v);
        *y = _mm512_reduce_add_ps(v) + unit * tail_term(q, r, c.act.x);
    }
}

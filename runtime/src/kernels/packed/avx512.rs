//! The AVX-512 micro-kernel of the panel GEMM: 8 rows × 48 columns (three zmm vectors a row,
//! 24 accumulators: 8 broadcasts feed 24 FMAs a depth step, where 8 × 32 fed 16 and issued
//! ~5% fewer FMAs a cycle), and the 16x16 register transpose that lays decoded rows out as a
//! panel.

use std::arch::x86_64::*;

use super::panels::{depth_steps, Line, Tile, NR};

/// Rows of the left operand per micro-kernel call.
pub const MR: usize = 8;

/// Runs `tile` with the kernel specialised for `rows` (1..=MR) rows.
///
/// # Safety
/// The CPU has AVX-512F, and `tile` points at the data it describes.
pub unsafe fn run(tile: &Tile, rows: usize) {
    match rows {
        8 => kernel::<8>(tile),
        7 => kernel::<7>(tile),
        6 => kernel::<6>(tile),
        5 => kernel::<5>(tile),
        4 => kernel::<4>(tile),
        3 => kernel::<3>(tile),
        2 => kernel::<2>(tile),
        _ => kernel::<1>(tile),
    }
}

/// Vectors of 16 columns in a panel row.
const VECS: usize = NR / 16;

#[target_feature(enable = "avx512f")]
unsafe fn kernel<const R: usize>(t: &Tile) {
    let mut acc = [[_mm512_setzero_ps(); VECS]; R];
    depth_steps(t, t.prefetch_lines, |kk| {
        let b: [__m512; VECS] = std::array::from_fn(|v| _mm512_load_ps(t.b.add(kk * NR + 16 * v)));
        for (i, acc) in acc.iter_mut().enumerate() {
            let x = _mm512_set1_ps(*t.a.add(kk * MR + i));
            for v in 0..VECS {
                acc[v] = _mm512_fmadd_ps(x, b[v], acc[v]);
            }
        }
    });
    let mask = |v: usize| -> __mmask16 { ((1u32 << t.cols.saturating_sub(16 * v).min(16)) - 1) as u16 };
    for (i, acc) in acc.iter().enumerate() {
        let row = t.c.add(i * t.ldc);
        for (v, &sum) in acc.iter().enumerate() {
            let (at, m) = (row.add(16 * v), mask(v));
            let value = if t.accumulate { _mm512_add_ps(sum, _mm512_maskz_loadu_ps(m, at)) } else { sum };
            _mm512_mask_storeu_ps(at, m, value);
        }
    }
}

/// Panel rows `0..k / 16 · 16` from the `NR` rows of `k` values in `rows`, by 16x16
/// transposes: unpack pairs, shuffle quads, then exchange 128-bit lanes twice. Returns the
/// depth laid out.
///
/// # Safety
/// The CPU has AVX-512F; `rows` holds `NR · k` values and `panel` `k · NR`.
#[target_feature(enable = "avx512f")]
pub unsafe fn transpose_blocks(rows: &[f32], k: usize, panel: &mut [Line]) -> usize {
    let depth = k / 16 * 16;
    for r0 in (0..depth).step_by(16) {
        for half in 0..NR / 16 {
            let x: [__m512; 16] = std::array::from_fn(|j| _mm512_loadu_ps(rows[(half * 16 + j) * k + r0..][..16].as_ptr()));
            let mut t = [_mm512_setzero_ps(); 16];
            for p in 0..8 {
                t[2 * p] = _mm512_unpacklo_ps(x[2 * p], x[2 * p + 1]);
                t[2 * p + 1] = _mm512_unpackhi_ps(x[2 * p], x[2 * p + 1]);
            }
            // u[4g + e]: element e of each 128-bit lane, rows 4g..4g + 4.
            let mut u = [_mm512_setzero_ps(); 16];
            for g in 0..4 {
                u[4 * g] = _mm512_shuffle_ps::<0x44>(t[4 * g], t[4 * g + 2]);
                u[4 * g + 1] = _mm512_shuffle_ps::<0xEE>(t[4 * g], t[4 * g + 2]);
                u[4 * g + 2] = _mm512_shuffle_ps::<0x44>(t[4 * g + 1], t[4 * g + 3]);
                u[4 * g + 3] = _mm512_shuffle_ps::<0xEE>(t[4 * g + 1], t[4 * g + 3]);
            }
            // v[8h + 2e]: columns e and e + 8 of rows 8h..8h + 8; v[8h + 2e + 1]: e + 4, e + 12.
            let mut v = [_mm512_setzero_ps(); 16];
            for h in 0..2 {
                for e in 0..4 {
                    v[8 * h + 2 * e] = _mm512_shuffle_f32x4::<0x88>(u[8 * h + e], u[8 * h + 4 + e]);
                    v[8 * h + 2 * e + 1] = _mm512_shuffle_f32x4::<0xDD>(u[8 * h + e], u[8 * h + 4 + e]);
                }
            }
            for (i, (lo, hi)) in v[..8].iter().zip(&v[8..]).enumerate() {
                let col = i / 2 + 4 * (i % 2);
                panel[(r0 + col) * NR / 16 + half].0 = std::mem::transmute::<__m512, [f32; 16]>(_mm512_shuffle_f32x4::<0x88>(*lo, *hi));
                panel[(r0 + col + 8) * NR / 16 + half].0 = std::mem::transmute::<__m512, [f32; 16]>(_mm512_shuffle_f32x4::<0xDD>(*lo, *hi));
            }
        }
    }
    depth
}

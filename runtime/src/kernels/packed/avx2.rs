//! The AVX2/FMA micro-kernel of the panel GEMM: 6 rows × 16 columns a pass (two ymm vectors
//! a row, 12 accumulators, two panel vectors and two broadcasts: all 16 ymm registers), run
//! on each 16-column part of a 48-column panel; and the 8x8 register transpose that lays
//! decoded rows out as a panel. A full block of 6 rows runs its depth loop in `asm!`, 8 steps
//! an iteration (2-3% off the prompts on Zen 1 against the same loop in intrinsics, one step
//! an iteration: BENCHMARKS.md); fewer rows take the intrinsics.

use std::arch::asm;
use std::arch::x86_64::*;

use super::panels::{depth_steps, Line, Tile, NR, PREFETCH_EVERY};

/// Rows of the left operand per micro-kernel call.
pub const MR: usize = 6;
/// Columns per pass: a third of a panel, one 64-byte line of it per depth step.
const PART: usize = 16;

/// Runs `tile` with the kernel specialised for `rows` (1..=MR) rows, on each part of the
/// panel that has columns.
///
/// # Safety
/// The CPU has AVX2 and FMA, and `tile` points at the data it describes.
pub unsafe fn run(tile: &Tile, rows: usize) {
    match rows {
        6 => parts::<6>(tile),
        5 => parts::<5>(tile),
        4 => parts::<4>(tile),
        3 => parts::<3>(tile),
        2 => parts::<2>(tile),
        _ => parts::<1>(tile),
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn parts<const R: usize>(t: &Tile) {
    for col0 in (0..t.cols).step_by(PART) {
        // The first part asks for the tile's share of the next slice.
        let prefetch_lines = if col0 == 0 { t.prefetch_lines } else { 0 };
        kernel::<R>(t, col0, (t.cols - col0).min(PART), prefetch_lines);
    }
}

/// `R`×`cols` outputs (cols ≤ 16) from the panel columns `col0..col0 + 16`, asking for
/// `prefetch_lines` of the tile's prefetch lines every few depth steps.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn kernel<const R: usize>(t: &Tile, col0: usize, cols: usize, prefetch_lines: usize) {
    let mut lo = [_mm256_setzero_ps(); R];
    let mut hi = [_mm256_setzero_ps(); R];
    let b = t.b.add(col0);
    if R == MR {
        let (l, h) = six_rows(t, b, prefetch_lines);
        lo.copy_from_slice(&l[..R]);
        hi.copy_from_slice(&h[..R]);
    } else {
        depth_steps(t, prefetch_lines, |kk| {
            let b0 = _mm256_load_ps(b.add(kk * NR));
            let b1 = _mm256_load_ps(b.add(kk * NR + 8));
            for i in 0..R {
                let x = _mm256_broadcast_ss(&*t.a.add(kk * MR + i));
                lo[i] = _mm256_fmadd_ps(x, b0, lo[i]);
                hi[i] = _mm256_fmadd_ps(x, b1, hi[i]);
            }
        });
    }
    let c = t.c.add(col0);
    if cols == PART {
        for i in 0..R {
            let row = c.add(i * t.ldc);
            let (mut v0, mut v1) = (lo[i], hi[i]);
            if t.accumulate {
                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(row));
                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(row.add(8)));
            }
            _mm256_storeu_ps(row, v0);
            _mm256_storeu_ps(row.add(8), v1);
        }
    } else {
        let (m0, m1) = (lane_mask(cols), lane_mask(cols.saturating_sub(8)));
        for i in 0..R {
            let row = c.add(i * t.ldc);
            let (mut v0, mut v1) = (lo[i], hi[i]);
            if t.accumulate {
                v0 = _mm256_add_ps(v0, _mm256_maskload_ps(row, m0));
                v1 = _mm256_add_ps(v1, _mm256_maskload_ps(row.add(8), m1));
            }
            _mm256_maskstore_ps(row, m0, v0);
            _mm256_maskstore_ps(row.add(8), m1, v1);
        }
    }
}

/// Row `i`'s products at depth step `o` of an iteration: its value broadcast into `x`, times
/// both panel vectors, added to its accumulators `lo` and `hi`.
macro_rules! row {
    ($o:literal, $i:literal, $x:ident, $lo:ident, $hi:ident) => {
        concat!(
            "vbroadcastss {", stringify!($x), "}, dword ptr [{a} + ", $o, " * 24 + ", $i, " * 4]\n",
            "vfmadd231ps {", stringify!($lo), "}, {b0}, {", stringify!($x), "}\n",
            "vfmadd231ps {", stringify!($hi), "}, {b1}, {", stringify!($x), "}\n",
        )
    };
}

/// Depth step `o` of an iteration: the panel's two vectors (48 values, 192 bytes, a step),
/// then the 6 rows (6 values, 24 bytes, a step), the broadcasts alternating between two
/// registers.
macro_rules! depth_step {
    ($o:literal) => {
        concat!(
            "vmovaps {b0}, ymmword ptr [{b} + ", $o, " * 192]\n",
            "vmovaps {b1}, ymmword ptr [{b} + ", $o, " * 192 + 32]\n",
            row!($o, 0, x, l0, h0),
            row!($o, 1, y, l1, h1),
            row!($o, 2, x, l2, h2),
            row!($o, 3, y, l3, h3),
            row!($o, 4, x, l4, h4),
            row!($o, 5, y, l5, h5),
        )
    };
}

/// The depth loop of a full 6-row block on the 16 panel columns at `b`: the 12 accumulators,
/// low and high 8 columns of each row. Asks for `lines` of the tile's prefetch lines before
/// each [`PREFETCH_EVERY`] steps, as [`depth_steps`] does. Safety: as for [`run`] (the loop
/// reads `t.depth` steps of the packed rows at `t.a` and of the panel at `b`).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn six_rows(t: &Tile, b: *const f32, lines: usize) -> ([__m256; MR], [__m256; MR]) {
    const _: () = assert!(MR == 6 && PREFETCH_EVERY == 8 && NR * 4 == 192);
    let [mut l0, mut l1, mut l2, mut l3, mut l4, mut l5] = [_mm256_setzero_ps(); MR];
    let [mut h0, mut h1, mut h2, mut h3, mut h4, mut h5] = [_mm256_setzero_ps(); MR];
    asm!(
        "test {chunks}, {chunks}",
        "jz 4f",
        "2:",
        "mov {n}, {lines}",
        "test {n}, {n}",
        "jz 3f",
        "5:",
        "prefetcht0 byte ptr [{ahead}]",
        "add {ahead}, 64",
        "dec {n}",
        "jnz 5b",
        "3:",
        depth_step!(0),
        depth_step!(1),
        depth_step!(2),
        depth_step!(3),
        depth_step!(4),
        depth_step!(5),
        depth_step!(6),
        depth_step!(7),
        "add {a}, 8 * 24",
        "add {b}, 8 * 192",
        "dec {chunks}",
        "jnz 2b",
        "4:",
        "test {rest}, {rest}",
        "jz 7f",
        "mov {n}, {lines}",
        "test {n}, {n}",
        "jz 6f",
        "8:",
        "prefetcht0 byte ptr [{ahead}]",
        "add {ahead}, 64",
        "dec {n}",
        "jnz 8b",
        "6:",
        depth_step!(0),
        "add {a}, 24",
        "add {b}, 192",
        "dec {rest}",
        "jnz 6b",
        "7:",
        a = inout(reg) t.a => _,
        b = inout(reg) b => _,
        ahead = inout(reg) t.prefetch => _,
        chunks = inout(reg) t.depth / PREFETCH_EVERY => _,
        rest = inout(reg) t.depth % PREFETCH_EVERY => _,
        lines = in(reg) lines,
        n = out(reg) _,
        b0 = out(ymm_reg) _,
        b1 = out(ymm_reg) _,
        x = out(ymm_reg) _,
        y = out(ymm_reg) _,
        l0 = inout(ymm_reg) l0,
        l1 = inout(ymm_reg) l1,
        l2 = inout(ymm_reg) l2,
        l3 = inout(ymm_reg) l3,
        l4 = inout(ymm_reg) l4,
        l5 = inout(ymm_reg) l5,
        h0 = inout(ymm_reg) h0,
        h1 = inout(ymm_reg) h1,
        h2 = inout(ymm_reg) h2,
        h3 = inout(ymm_reg) h3,
        h4 = inout(ymm_reg) h4,
        h5 = inout(ymm_reg) h5,
        options(nostack, readonly),
    );
    ([l0, l1, l2, l3, l4, l5], [h0, h1, h2, h3, h4, h5])
}

/// A mask of the first `count` (capped at 8) lanes, for masked loads and stores.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn lane_mask(count: usize) -> __m256i {
    _mm256_cmpgt_epi32(_mm256_set1_epi32(count.min(8) as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
}

/// Panel rows `0..k / 8 · 8` from the `NR` rows of `k` values in `rows`, by 8x8 transposes:
/// unpack pairs, shuffle quads, then exchange 128-bit lanes. Returns the depth laid out.
///
/// # Safety
/// The CPU has AVX2; `rows` holds `NR · k` values and `panel` `k · NR`.
#[target_feature(enable = "avx2")]
pub unsafe fn transpose_blocks(rows: &[f32], k: usize, panel: &mut [Line]) -> usize {
    debug_assert!(rows.len() >= NR * k && panel.len() * 16 >= NR * k);
    let depth = k / 8 * 8;
    let dst = panel.as_mut_ptr().cast::<f32>();
    for r0 in (0..depth).step_by(8) {
        for group in 0..NR / 8 {
            let x: [__m256; 8] = std::array::from_fn(|j| _mm256_loadu_ps(rows.as_ptr().add((group * 8 + j) * k + r0)));
            let mut t = [_mm256_setzero_ps(); 8];
            for p in 0..4 {
                t[2 * p] = _mm256_unpacklo_ps(x[2 * p], x[2 * p + 1]);
                t[2 * p + 1] = _mm256_unpackhi_ps(x[2 * p], x[2 * p + 1]);
            }
            // u[4h + e]: columns e (low lane) and e + 4 (high lane) of rows 4h..4h + 4.
            let mut u = [_mm256_setzero_ps(); 8];
            for h in 0..2 {
                u[4 * h] = _mm256_shuffle_ps::<0x44>(t[4 * h], t[4 * h + 2]);
                u[4 * h + 1] = _mm256_shuffle_ps::<0xEE>(t[4 * h], t[4 * h + 2]);
                u[4 * h + 2] = _mm256_shuffle_ps::<0x44>(t[4 * h + 1], t[4 * h + 3]);
                u[4 * h + 3] = _mm256_shuffle_ps::<0xEE>(t[4 * h + 1], t[4 * h + 3]);
            }
            for e in 0..4 {
                let at = |col: usize| dst.add((r0 + col) * NR + group * 8);
                _mm256_store_ps(at(e), _mm256_permute2f128_ps::<0x20>(u[e], u[4 + e]));
                _mm256_store_ps(at(e + 4), _mm256_permute2f128_ps::<0x31>(u[e], u[4 + e]));
            }
        }
    }
    depth
}

//! The AVX2 kernel of the integer prompt GEMM ([`super::gemm_i8`]): panels of 8 weight rows
//! against blocks of [`MR`] activation rows, one sub-block (32 depth steps) of all 8 rows per
//! `asm!` block.
//!
//! Per depth word (4 codes of each of the panel's 8 rows in one 32-bit lane, low and high
//! nibbles), a row takes a broadcast of its 4 activation bytes, a `vpmaddubsw` and a `vpaddw`
//! for each nibble half: the sub-block's 8 steps add up in i16 without overflow (`8 · 2 · 15 ·
//! 127 < 2^15`). The group's scale codes, as integers, then widen the sums in the one
//! `vpmaddwd` (`(Σ code · xq) · sc`, exact in i32), so a row's sub-block costs one conversion
//! and two FMAs: `acc += dx · sums + off · zsub`, where `off = -(zp · sc + offset / unit)`
//! folds the zero point's and the group offset's share and the row's scale unit multiplies
//! once at the end. With 8 rows, each unpacked weight vector feeds 8 `vpmaddubsw`; the 8 sums, the
//! two unpacked weight vectors, a broadcast, a product, the nibble mask, the scale codes and
//! the offsets take 15 of the 16 ymm registers, and the float accumulators live in memory (one
//! load and store a row and sub-block). Written as `asm!` because the compiler, given the
//! same steps as intrinsics, spilled sums inside the loop (BENCHMARKS.md).

use std::arch::asm;
use std::arch::x86_64::*;

use super::gemm_i8::{bytes_of, interleave_rows, Pass, PanelLayout, RowBlock};
use super::matrix::{QuantMatrix, SUB};
use super::unpack::unpack_f32;

/// Activation rows per pass.
pub(super) const MR: usize = 8;
/// Weight rows per panel.
pub(super) const NC: usize = 8;

/// One panel of [`NC`] weight rows, laid out for the kernel (rows past the matrix repeat its
/// last row; their results are dropped).
#[derive(Clone)]
pub(super) struct Avx2Panel {
    /// Per sub-block, `4 NC` little-endian words: word `d` of row `c`'s 16 code bytes at `NC d
    /// + c`.
    codes: Vec<[u8; 4]>,
    /// Per sub-block, each row's scale code (minus the scale bias) twice: the i16 lanes of its
    /// column.
    scales: Vec<[i16; 2 * NC]>,
    /// Per sub-block, what each weight of a row adds besides `scale · code`, in scale units:
    /// minus the group's offset over the row's unit, minus the zero point times the scale code
    /// (each times the sub-block's activation sum in the kernel).
    offsets: Vec<[f32; NC]>,
    /// Each row's scale unit, applied once to its sums (1 for a row whose scale codes are
    /// dropped, see [`fill`](PanelLayout::fill)).
    units: [f32; NC],
}

impl PanelLayout for Avx2Panel {
    fn empty(q: &QuantMatrix) -> Self {
        let subs = q.full_blocks();
        Avx2Panel {
            codes: vec![[0; 4]; subs * 4 * NC],
            scales: vec![[0; 2 * NC]; subs],
            offsets: vec![[0.0; NC]; subs],
            units: [1.0; NC],
        }
    }

    /// Lays out weight rows `first..first + NC`. A row whose unit is 0, or so small that the
    /// offsets over it overflow, keeps unit 1 and drops its scale codes: its `scale · code`
    /// terms are 0, or below f32's resolution beside the offsets.
    fn fill(&mut self, q: &QuantMatrix, first: usize) {
        interleave_rows::<NC>(q, first, &mut self.codes);
        let last = q.rows() - 1;
        let (spg, zp) = (q.group() / SUB, q.zero_point() as f32);
        let groups = q.groups_per_row();
        let (mut scales, mut mins) = (vec![0.0; groups], vec![0.0; groups]);
        for c in 0..NC {
            let r = (first + c).min(last);
            let (unit, min_unit) = q.units(r);
            let live = unit != 0.0 && (min_unit / unit).is_finite();
            let u = if live { unit } else { 1.0 };
            self.units[c] = u;
            unpack_f32(q.scales_from(r), q.scale_bits(), q.scale_bias(), &mut scales);
            if q.asymmetric() {
                unpack_f32(q.mins_from(r), q.scale_bits(), 0, &mut mins);
            }
            for (s, (sc, off)) in self.scales.iter_mut().zip(&mut self.offsets).enumerate() {
                let g = s / spg;
                let code = if live { scales.get(g).copied().unwrap_or(0.0) } else { 0.0 };
                (sc[2 * c], sc[2 * c + 1]) = (code as i16, code as i16);
                off[c] = -mins.get(g).copied().unwrap_or(0.0) * min_unit / u - zp * code;
            }
        }
    }

    fn buffers(&self) -> [(*const u8, usize); 3] {
        [bytes_of(&self.codes), bytes_of(&self.scales), bytes_of(&self.offsets)]
    }
}

/// This kernel's pass over one block of activation rows (the panel's 8 columns of its rows).
pub(super) fn panel(panel: &Avx2Panel, pass: &Pass<MR>, out: &mut [[f32; NC]; MR]) {
    // SAFETY: the caller checked AVX2 and FMA before choosing this kernel.
    unsafe {
        if pass.block.rows > 4 {
            rows_8(panel, pass.block, out)
        } else {
            rows_4(panel, pass.block, out)
        }
    }
}

/// The depth word `u` of a sub-block's codes (at `{codes}`): `{lo}` its low nibbles, `{hi}`
/// its high nibbles, one byte each.
macro_rules! unpack {
    ($u:literal) => {
        concat!(
            "vmovdqu {lo}, ymmword ptr [{codes} + ", $u, " * 32]\n",
            "vpsrlw {hi}, {lo}, 4\n",
            "vpand {lo}, {lo}, {nibble}\n",
            "vpand {hi}, {hi}, {nibble}\n",
        )
    };
}

/// Row `i`'s products with depth word `u`, added to its sums `p` (`first`: the sums start
/// here). Its activation bytes: `4u..` for the low nibbles, `16 + 4u..` for the high ones.
macro_rules! products {
    ($u:literal, $i:literal, $p:ident, first) => {
        concat!(
            "vpbroadcastd {x}, dword ptr [{xq} + ", $i, " * 32 + ", $u, " * 4]\n",
            "vpmaddubsw {", stringify!($p), "}, {lo}, {x}\n",
            "vpbroadcastd {x}, dword ptr [{xq} + ", $i, " * 32 + 16 + ", $u, " * 4]\n",
            "vpmaddubsw {t}, {hi}, {x}\n",
            "vpaddw {", stringify!($p), "}, {", stringify!($p), "}, {t}\n",
        )
    };
    ($u:literal, $i:literal, $p:ident, add) => {
        concat!(
            "vpbroadcastd {x}, dword ptr [{xq} + ", $i, " * 32 + ", $u, " * 4]\n",
            "vpmaddubsw {t}, {lo}, {x}\n",
            "vpaddw {", stringify!($p), "}, {", stringify!($p), "}, {t}\n",
            "vpbroadcastd {x}, dword ptr [{xq} + ", $i, " * 32 + 16 + ", $u, " * 4]\n",
            "vpmaddubsw {t}, {hi}, {x}\n",
            "vpaddw {", stringify!($p), "}, {", stringify!($p), "}, {t}\n",
        )
    };
}

/// Row `i`'s sub-block into its accumulator: `acc[i] += dx[i] · (sums · scales) + offsets ·
/// zsub[i]`.
macro_rules! finish {
    ($i:literal, $p:ident) => {
        concat!(
            "vpmaddwd {", stringify!($p), "}, {", stringify!($p), "}, {scales}\n",
            "vcvtdq2ps {", stringify!($p), "}, {", stringify!($p), "}\n",
            "vbroadcastss {x}, dword ptr [{dx} + ", $i, " * 4]\n",
            "vfmadd213ps {", stringify!($p), "}, {x}, ymmword ptr [{acc} + ", $i, " * 32]\n",
            "vbroadcastss {x}, dword ptr [{zsub} + ", $i, " * 4]\n",
            "vfmadd231ps {", stringify!($p), "}, {offsets}, {x}\n",
            "vmovups ymmword ptr [{acc} + ", $i, " * 32], {", stringify!($p), "}\n",
        )
    };
}

/// One sub-block of the rows `(i, p)` listed (row index, its sums' register): each row is
/// finished as soon as its last products are in, so the float steps overlap the integer ones.
macro_rules! sub_block {
    ($s:expr, $(($i:literal, $p:ident)),+) => {
        asm!(
            unpack!(0), $(products!(0, $i, $p, first),)+
            unpack!(1), $(products!(1, $i, $p, add),)+
            unpack!(2), $(products!(2, $i, $p, add),)+
            unpack!(3),
            "vmovdqu {scales}, ymmword ptr [{scale_codes}]\n",
            "vmovups {offsets}, ymmword ptr [{offset_values}]\n",
            $(products!(3, $i, $p, add), finish!($i, $p),)+
            codes = in(reg) $s.codes,
            xq = in(reg) $s.xq,
            scale_codes = in(reg) $s.scales,
            offset_values = in(reg) $s.offsets,
            dx = in(reg) $s.dx,
            zsub = in(reg) $s.zsub,
            acc = in(reg) $s.acc,
            nibble = in(ymm_reg) $s.nibble,
            lo = out(ymm_reg) _,
            hi = out(ymm_reg) _,
            x = out(ymm_reg) _,
            t = out(ymm_reg) _,
            scales = out(ymm_reg) _,
            offsets = out(ymm_reg) _,
            $($p = out(ymm_reg) _,)+
            options(nostack, preserves_flags),
        )
    };
}

/// The pointers one sub-block's `asm!` reads (and, `acc`, writes).
struct Step {
    codes: *const [u8; 4],
    xq: *const [i8; SUB],
    scales: *const i16,
    offsets: *const f32,
    dx: *const f32,
    zsub: *const f32,
    acc: *mut [f32; NC],
    nibble: __m256i,
}

/// Runs `step` over every sub-block of `panel` and `block`, then scales the accumulators by
/// the rows' units into `out`.
#[inline(always)]
fn passes(panel: &Avx2Panel, block: &RowBlock<MR>, out: &mut [[f32; NC]; MR], step: impl Fn(&Step)) {
    let (codes, _) = panel.codes.as_chunks::<{ 4 * NC }>();
    let weights = codes.iter().zip(&panel.scales).zip(&panel.offsets);
    let activations = block.xq.iter().zip(&block.dx).zip(&block.zsub);
    let mut acc = [[0f32; NC]; MR];
    // SAFETY: AVX2 is enabled in the callers (the only ones inlining this).
    let nibble = unsafe { _mm256_set1_epi8(0x0f) };
    for (((codes, scales), offsets), ((xq, dx), zsub)) in weights.zip(activations) {
        step(&Step {
            codes: codes.as_ptr(),
            xq: xq.as_ptr(),
            scales: scales.as_ptr(),
            offsets: offsets.as_ptr(),
            dx: dx.as_ptr(),
            zsub: zsub.as_ptr(),
            acc: acc.as_mut_ptr(),
            nibble,
        });
    }
    for (o, a) in out.iter_mut().zip(&acc) {
        for ((o, a), u) in o.iter_mut().zip(a).zip(&panel.units) {
            *o = a * u;
        }
    }
}

/// [`panel`] for blocks of 5 to 8 rows (rows past the block's are zero and give 0).
#[target_feature(enable = "avx2,fma")]
fn rows_8(panel: &Avx2Panel, block: &RowBlock<MR>, out: &mut [[f32; NC]; MR]) {
    passes(panel, block, out, |s| {
        // SAFETY: each pointer is the start of its array for this sub-block, long enough for
        // what the template reads (128 code bytes, 8 rows of 32 activation bytes, 16 i16
        // scale codes, 8 f32 offsets, 8 row scales and shares, 8 rows of 8 accumulators),
        // and `acc` is written by nothing else meanwhile; AVX2 and FMA are enabled here.
        unsafe { sub_block!(s, (0, p0), (1, p1), (2, p2), (3, p3), (4, p4), (5, p5), (6, p6), (7, p7)) }
    })
}

/// [`panel`] for blocks of up to 4 rows.
#[target_feature(enable = "avx2,fma")]
fn rows_4(panel: &Avx2Panel, block: &RowBlock<MR>, out: &mut [[f32; NC]; MR]) {
    passes(panel, block, out, |s| {
        // SAFETY: as in `rows_8`, for the first 4 rows.
        unsafe { sub_block!(s, (0, p0), (1, p1), (2, p2), (3, p3)) }
    })
}

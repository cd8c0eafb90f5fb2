//! Scalar quantization of groups and rows. Scales are searched to minimise squared error; every
//! reconstruction goes through the runtime's dequantizer, so it is what the decoder will produce.

use half::bf16;
use rbe_runtime::rbe::{
    dequant, dequant_group, group_offset, group_step, pack_codes, zero_point, Geometry,
};

/// Candidate scales tried per group: `2 * SEARCH_STEPS + 1`, spread over ±0.9 levels around
/// the absmax (or min/max) scale.
const SEARCH_STEPS: i32 = 4;
/// Spacing of the candidates, in levels.
const SEARCH_DELTA: f32 = 0.9 / SEARCH_STEPS as f32;
/// Number of candidate scales.
const CANDIDATES: usize = 2 * SEARCH_STEPS as usize + 1;

/// Round to nearest (ties to even) for |x| < 2^22, in two vectorisable adds (`f32::round` is a
/// libm call on baseline x86-64). Only used to pick codes, never to reconstruct.
#[inline(always)]
fn round_fast(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    (x + MAGIC) - MAGIC
}

/// The code grid of a group: width, and symmetric (signed levels `-2^(b-1) ..= 2^(b-1) - 1`
/// around zero) or asymmetric (levels `0 ..= 2^b - 1` above an offset).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grid {
    pub bits: u8,
    pub asymmetric: bool,
}

impl Grid {
    fn qmax(self) -> i32 {
        (1 << self.bits) - 1
    }

    fn zero_point(self) -> i32 {
        zero_point(self.bits, self.asymmetric)
    }
}

/// The best unconstrained `(step, offset)` for `x` on `grid`, and its squared error (each
/// value's weighted by its `importance` when given).
pub(crate) fn search(x: &[f32], grid: Grid, importance: Option<&[f32]>) -> (f32, f32, f64) {
    let weight = |i: usize| importance.map_or(1.0, |w| w[i]);
    if grid.asymmetric {
        search_asymmetric(x, grid.qmax(), weight)
    } else {
        search_symmetric(x, grid.zero_point(), weight)
    }
}

/// Least-squares step over a family of code assignments that map the largest-magnitude value
/// to about `-half` (the wider side of the signed grid).
fn search_symmetric(x: &[f32], half: i32, weight: impl Fn(usize) -> f32) -> (f32, f32, f64) {
    let a = x
        .iter()
        .copied()
        .fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m });
    let sum_x2: f64 = x.iter().enumerate().map(|(i, &v)| v as f64 * v as f64 * weight(i) as f64).sum();
    if a == 0.0 {
        return (0.0, 0.0, sum_x2);
    }
    let (lo, hi) = (-half as f32, (half - 1) as f32);
    let iscale: [f32; CANDIDATES] = std::array::from_fn(|k| -(half as f32 + SEARCH_DELTA * (k as i32 - SEARCH_STEPS) as f32) / a);
    // Every candidate's sums in one pass (each summed in the order of `x`).
    let (mut sum_lx, mut sum_l2) = ([0f32; CANDIDATES], [0f32; CANDIDATES]);
    for (i, &v) in x.iter().enumerate() {
        let w = weight(i);
        for k in 0..CANDIDATES {
            let l = round_fast((iscale[k] * v).clamp(lo, hi));
            let wl = l * w;
            sum_lx[k] += wl * v;
            sum_l2[k] += wl * l;
        }
    }
    let mut best = (0f32, sum_x2);
    for k in 0..CANDIDATES {
        if sum_l2[k] > 0.0 {
            let sse = sum_x2 - (sum_lx[k] as f64).powi(2) / sum_l2[k] as f64;
            if sse < best.1 {
                best = (sum_lx[k] / sum_l2[k], sse);
            }
        }
    }
    (best.0, 0.0, best.1.max(0.0))
}

/// Least-squares `(step, offset <= 0)` over code assignments spanning `[min(x, 0), max(x)]`.
fn search_asymmetric(x: &[f32], qmax: i32, weight: impl Fn(usize) -> f32) -> (f32, f32, f64) {
    let mn = x.iter().copied().fold(0f32, f32::min);
    let mx = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum_x: f64 = x.iter().enumerate().map(|(i, &v)| v as f64 * weight(i) as f64).sum();
    let sum_x2: f64 = x.iter().enumerate().map(|(i, &v)| v as f64 * v as f64 * weight(i) as f64).sum();
    let n: f64 = (0..x.len()).map(|i| weight(i) as f64).sum();
    if mx <= mn {
        // Every value equals mn (<= 0): the offset alone is exact.
        return (0.0, mn, 0.0);
    }
    let iscale: [f32; CANDIDATES] = std::array::from_fn(|k| (qmax as f32 + SEARCH_DELTA * (k as i32 - SEARCH_STEPS) as f32) / (mx - mn));
    // Every candidate's sums in one pass (each summed in the order of `x`).
    let (mut sums_l, mut sums_l2, mut sums_lx) = ([0f32; CANDIDATES], [0f32; CANDIDATES], [0f32; CANDIDATES]);
    for (i, &v) in x.iter().enumerate() {
        let w = weight(i);
        for k in 0..CANDIDATES {
            let l = round_fast((iscale[k] * (v - mn)).clamp(0.0, qmax as f32));
            let wl = l * w;
            sums_l[k] += wl;
            sums_l2[k] += wl * l;
            sums_lx[k] += wl * v;
        }
    }
    let mut best = (0f32, mn, f64::INFINITY);
    for k in 0..CANDIDATES {
        let (sl, sl2, slx) = (sums_l[k] as f64, sums_l2[k] as f64, sums_lx[k] as f64);
        if sl2 == 0.0 {
            continue;
        }
        // Weighted least squares x ~ a*l + b, with b forced to 0 when it would be positive (or
        // when all codes are equal and the 2-parameter fit is degenerate).
        let det = n * sl2 - sl * sl;
        let (mut a, mut b) = (slx / sl2, 0.0);
        if det > 0.0 {
            let b2 = (sl2 * sum_x - sl * slx) / det;
            if b2 <= 0.0 {
                (a, b) = ((n * slx - sl * sum_x) / det, b2);
            }
        }
        let sse =
            sum_x2 + a * a * sl2 + n * b * b + 2.0 * a * b * sl - 2.0 * a * slx - 2.0 * b * sum_x;
        if sse < best.2 {
            best = (a as f32, b as f32, sse.max(0.0));
        }
    }
    best
}

/// Nearest codes for `x` with a fixed `step` and `offset`; returns the exact squared error of
/// the dequantized values, each weighted by its `importance` when given.
pub(crate) fn quantize_fixed(
    x: &[f32],
    grid: Grid,
    step: f32,
    offset: f32,
    codes: &mut [u8],
    importance: Option<&[f32]>,
) -> f64 {
    let zp = grid.zero_point();
    let qmax = grid.qmax() as f32;
    let inv = if step != 0.0 { 1.0 / step } else { 0.0 };
    let mut sse = 0f32;
    for (i, (&v, c)) in x.iter().zip(codes.iter_mut()).enumerate() {
        let q = round_fast(((v - offset) * inv + zp as f32).clamp(0.0, qmax));
        *c = q as u8;
        let e = dequant(*c, zp, step, offset) - v;
        sse += e * e * importance.map_or(1.0, |w| w[i]);
    }
    sse as f64
}

/// Where one row's encoded data goes.
pub(crate) struct RowOut<'a> {
    pub row_scale: &'a mut bf16,
    pub row_min: &'a mut bf16,
    pub group_scale: &'a mut [u8],
    pub group_min: &'a mut [u8],
    pub codes: &'a mut [u8],
}

/// Integer codes within 1 of `round(v / unit)`, inside `lo..=hi`.
fn code_candidates(v: f32, unit: f32, lo: i32, hi: i32) -> std::ops::RangeInclusive<i32> {
    let c = if unit > 0.0 {
        ((v / unit).round() as i32).clamp(lo, hi)
    } else {
        0
    };
    (c - 1).max(lo)..=(c + 1).min(hi)
}

/// The smallest bf16 >= `x` (for `x >= 0`), so the largest group's code still fits.
fn bf16_at_least(x: f32) -> bf16 {
    let b = bf16::from_f32(x);
    if b.to_f32() < x {
        bf16::from_bits(b.to_bits() + 1)
    } else {
        b
    }
}

/// A row's units for its group codes: the bf16 step unit that scale codes multiply (and, in
/// asymmetric mode, the unit of offset codes), with the code range they span.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowUnits {
    unit: bf16,
    min_unit: bf16,
    scale_bits: u8,
    grid: Grid,
}

impl RowUnits {
    /// Units wide enough for every group's searched optimum `opt` (step, offset, sse).
    pub(crate) fn new(opt: &[(f32, f32, f64)], grid: Grid, scale_bits: u8) -> Self {
        let (_, hi, _) = scale_code_range(grid, scale_bits);
        let top = (1i32 << scale_bits) - 1;
        let (unit, min_unit) = if grid.asymmetric {
            let smax = opt.iter().fold(0f32, |m, o| m.max(o.0));
            let omax = opt.iter().fold(0f32, |m, o| m.max(-o.1));
            (bf16_at_least(smax / top as f32), bf16_at_least(omax / top as f32))
        } else {
            let smax = opt.iter().fold(0f32, |m, o| m.max(o.0.abs()));
            (bf16_at_least(smax / hi as f32), bf16::ZERO)
        };
        RowUnits { unit, min_unit, scale_bits, grid }
    }

    /// The group's scale (and offset) codes nearest its optimum `o`, chosen by the exact squared
    /// error of `xg` quantized with them (each value's weighted by its `importance` when
    /// given); `codes` receives its codes.
    pub(crate) fn choose(&self, xg: &[f32], o: (f32, f32, f64), codes: &mut [u8], importance: Option<&[f32]>) -> GroupCode {
        let grid = self.grid;
        let (lo, hi, bias) = scale_code_range(grid, self.scale_bits);
        let top = (1i32 << self.scale_bits) - 1;
        let (unit, min_unit) = (self.unit.to_f32(), self.min_unit.to_f32());
        let mins = if grid.asymmetric { code_candidates(-o.1, min_unit, 0, top) } else { 0..=0 };
        // The (at most 3 x 3) nearest code pairs, in order, measured together in one pass.
        let mut tried = [GroupCode { scale: 0, min: 0, step: 0.0, offset: 0.0 }; 9];
        let mut count = 0;
        for sc in code_candidates(o.0, unit, lo, hi) {
            let sc = (sc + bias) as u8;
            let step = group_step(unit, sc, grid.asymmetric, self.scale_bits);
            for m in mins.clone() {
                let offset = if grid.asymmetric { group_offset(min_unit, m as u8) } else { 0.0 };
                tried[count] = GroupCode { scale: sc, min: m as u8, step, offset };
                count += 1;
            }
        }
        let tried = &tried[..count];
        let sse = fixed_errors(xg, grid, tried, importance);
        let mut best = 0;
        for k in 1..count {
            if sse[k] < sse[best] {
                best = k;
            }
        }
        let chosen = tried[best];
        quantize_fixed(xg, grid, chosen.step, chosen.offset, codes, importance);
        chosen
    }
}

/// The squared error of `x` quantized with each of `groups`' step and offset, as
/// [`quantize_fixed`] measures it (every candidate's sum in the order of `x`).
fn fixed_errors(x: &[f32], grid: Grid, groups: &[GroupCode], importance: Option<&[f32]>) -> [f32; 9] {
    let zp = grid.zero_point();
    let qmax = grid.qmax() as f32;
    let mut inv = [0f32; 9];
    let (mut step, mut offset) = ([0f32; 9], [0f32; 9]);
    for (k, g) in groups.iter().enumerate() {
        inv[k] = if g.step != 0.0 { 1.0 / g.step } else { 0.0 };
        (step[k], offset[k]) = (g.step, g.offset);
    }
    let mut sse = [0f32; 9];
    for (i, &v) in x.iter().enumerate() {
        let w = importance.map_or(1.0, |w| w[i]);
        for k in 0..9 {
            let q = round_fast(((v - offset[k]) * inv[k] + zp as f32).clamp(0.0, qmax));
            // `q` is a whole number in range: [`dequant`] of its code, in float arithmetic.
            let e = step[k] * (q - zp as f32) + offset[k] - v;
            sse[k] += e * e * w;
        }
    }
    sse
}

/// Scale codes: `0..=2^sb-1` (asymmetric), or signed `-(2^(sb-1)-1)..=2^(sb-1)-1` stored offset by
/// `2^(sb-1)`: (lowest, highest, storage bias).
fn scale_code_range(grid: Grid, scale_bits: u8) -> (i32, i32, i32) {
    let half = 1i32 << (scale_bits - 1);
    if grid.asymmetric {
        (0, (1 << scale_bits) - 1, 0)
    } else {
        (1 - half, half - 1, half)
    }
}

/// One group's stored codes and the step and offset they decode to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GroupCode {
    pub scale: u8,
    pub min: u8,
    pub step: f32,
    pub offset: f32,
}

/// Quantizes one row `x` (`cols` values): per-group `scale_bits`-bit scale codes under a bf16
/// per-row unit (and, in asymmetric mode, offset codes under a per-row offset unit), chosen per
/// group among the codes nearest the searched optimum by exact squared error. Writes the packed
/// row into `out` and its dequantized values (the runtime's [`dequant_group`]) into `recon`.
pub(crate) fn quantize_row(
    x: &[f32],
    g: &Geometry,
    grid: Grid,
    scale_bits: u8,
    out: RowOut,
    recon: &mut [f32],
) {
    let opt: Vec<(f32, f32, f64)> = x.chunks(g.group).map(|xg| search(xg, grid, None)).collect();
    let units = RowUnits::new(&opt, grid, scale_bits);
    let mut codes = vec![0u8; x.len()];
    let chosen: Vec<GroupCode> = x
        .chunks(g.group)
        .zip(codes.chunks_mut(g.group))
        .zip(&opt)
        .map(|((xg, cg), o)| units.choose(xg, *o, cg, None))
        .collect();
    write_row(g, units, &chosen, &codes, out, recon);
}

/// Packs a row's codes and group codes into `out` and decodes it into `recon`.
pub(crate) fn write_row(g: &Geometry, units: RowUnits, groups: &[GroupCode], codes: &[u8], out: RowOut, recon: &mut [f32]) {
    *out.row_scale = units.unit;
    *out.row_min = units.min_unit;
    let zp = units.grid.zero_point();
    let mut at = 0;
    for ((cg, rg), gc) in codes.chunks(g.group).zip(recon.chunks_mut(g.group)).zip(groups) {
        let nb = g.packed_bytes(cg.len());
        let packed = &mut out.codes[at..at + nb];
        pack_codes(cg, g.bits, packed);
        dequant_group(packed, g.bits, zp, gc.step, gc.offset, rg);
        at += nb;
    }
    let scale_codes: Vec<u8> = groups.iter().map(|c| c.scale).collect();
    pack_codes(&scale_codes, units.scale_bits, out.group_scale);
    if units.grid.asymmetric {
        let min_codes: Vec<u8> = groups.iter().map(|c| c.min).collect();
        pack_codes(&min_codes, units.scale_bits, out.group_min);
    }
}

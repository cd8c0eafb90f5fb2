//! One row at a time: the skeleton every GEMV variant shares (group factors, tail group,
//! offsets), and the portable inner loops.

use super::act::{Activations, Prepared};
use super::matrix::{QuantMatrix, SUB};
use super::unpack::{unpack_codes, unpack_f32};

/// What a row kernel reads: the matrix and the prepared activation row.
pub(super) struct Ctx<'a, 'x> {
    /// The matrix.
    pub q: &'a QuantMatrix<'a>,
    /// The activation row, prepared for the chosen mode.
    pub act: &'a Prepared<'x>,
    /// The mode `act` was prepared for.
    pub mode: Activations,
    /// Layouts of `q` kept between calls, if the caller keeps them.
    pub cache: Option<&'a super::PanelCache>,
}

/// A row kernel: `rows(ctx, scratch, first, out)` fills `out` with rows `first..`.
pub(super) type RowsFn = fn(&Ctx, &mut Scratch, usize, &mut [f32]);

/// Per-thread buffers for one row's group factors.
pub(super) struct Scratch {
    /// Scale codes minus the scale bias, as f32 (padded to whole sub-blocks of groups).
    pub sf: Vec<f32>,
    /// Offset codes as f32 (asymmetric only; same padding).
    pub of: Vec<f32>,
    /// Int8 mode: per full sub-block, its group's `sf` times the activation scale.
    pub sd: Vec<f32>,
}

impl Scratch {
    /// Buffers for rows of `q`.
    pub fn new(q: &QuantMatrix) -> Self {
        let n = q.groups_per_row().next_multiple_of(SUB);
        Scratch {
            sf: vec![0.0; n],
            of: vec![0.0; if q.asymmetric() { n } else { 0 }],
            sd: vec![0.0; q.full_blocks()],
        }
    }
}

pub(super) use crate::kernels::lanes::dot;

/// `Σ x_j * (q_j - zero_point)` over row `r`'s short last group (0 if it has none).
pub(super) fn tail_dot(q: &QuantMatrix, r: usize, x: &[f32]) -> f32 {
    let start = q.full_groups() * q.group();
    let codes = q
        .codes_from(r)
        .get(q.full_groups() * q.group_bytes()..)
        .unwrap_or(&[]);
    let xs = x.get(start..).unwrap_or(&[]);
    let mut buf = [0f32; 64];
    let mut sum = 0.0;
    for (k, xc) in xs.chunks(buf.len()).enumerate() {
        let v = &mut buf[..xc.len()];
        unpack_f32(
            codes.get(k * 8 * q.bits() as usize..).unwrap_or(&[]),
            q.bits(),
            q.zero_point(),
            v,
        );
        sum += dot(xc, v);
    }
    sum
}

/// Row `r`'s short last group: its scale code minus the scale bias times [`tail_dot`]
/// (0 if the row has no short group).
pub(super) fn tail_term(q: &QuantMatrix, r: usize, x: &[f32]) -> f32 {
    let full = q.full_groups();
    if full == q.groups_per_row() {
        return 0.0;
    }
    let mut codes = [0u8; 8];
    let at = full / 8 * q.scale_bits() as usize;
    unpack_codes(
        q.scales_from(r).get(at..).unwrap_or(&[]),
        q.scale_bits(),
        &mut codes,
    );
    let code = codes.get(full % 8).copied().unwrap_or(0);
    (code as i32 - q.scale_bias()) as f32 * tail_dot(q, r, x)
}

/// Fills `sd[s]` with `sf[group of s] * dx[s]` for every full sub-block `s` (`dx` empty: 1).
#[inline(always)]
pub(super) fn block_factors(q: &QuantMatrix, sf: &[f32], dx: &[f32], sd: &mut [f32]) {
    let spg = q.group() / SUB;
    if spg == 1 && !dx.is_empty() {
        for (d, (&f, &x)) in sd.iter_mut().zip(sf.iter().zip(dx)) {
            *d = f * x;
        }
        return;
    }
    for (k, (d, &f)) in sd.chunks_mut(spg).zip(sf).enumerate() {
        for (j, d) in d.iter_mut().enumerate() {
            *d = f * dx.get(k * spg + j).copied().unwrap_or(1.0);
        }
    }
}

/// The factor of each full sub-block of a row in exact mode, from the scale codes the prologue
/// left in `s.sf`: those codes themselves for groups of one sub-block, else each group's code
/// repeated over its sub-blocks (in `s.sd`).
pub(super) fn exact_block_factors<'s>(q: &QuantMatrix, s: &'s mut Scratch) -> &'s [f32] {
    let spg = q.group() / SUB;
    if spg == 1 {
        return s.sf.get(..q.full_groups()).unwrap_or(&[]);
    }
    block_factors(q, &s.sf, &[], &mut s.sd);
    &s.sd
}

/// Runs the GEMV for rows `first..first + out.len()` into `out`.
///
/// `prologue(r, s)` fills `s.sf` with row `r`'s scale codes minus the scale bias (as f32) and
/// returns `(Σ sf * zsums, Σ of * sums)` (`of`: the offset codes, 0 when symmetric);
/// `main(codes, s)` returns `Σ_g sf[g] * Σ_{i in g} x_i * (q_i - zero_point)` over the full
/// groups, except that in int8 mode `x` is quantized and `zero_point` is replaced by
/// `code_bias` (the skeleton corrects with `zsums`).
#[inline(always)]
pub(super) fn each_row(
    c: &Ctx,
    s: &mut Scratch,
    first: usize,
    out: &mut [f32],
    prologue: impl Fn(usize, &mut Scratch) -> (f32, f32),
    main: impl Fn(&[u8], &mut Scratch) -> f32,
    code_bias: i32,
) {
    let q = c.q;
    let (gpr, full) = (q.groups_per_row(), q.full_groups());
    let zp = (q.zero_point() - code_bias) as f32;
    for (k, y) in out.iter_mut().enumerate() {
        let r = first + k;
        let (unit, min_unit) = q.units(r);
        let (corr, off) = prologue(r, s);
        let mut v = main(q.codes_from(r), s) - zp * corr;
        if full < gpr {
            v += s.sf.get(full).copied().unwrap_or(0.0) * tail_dot(q, r, c.act.x);
        }
        *y = unit * v - min_unit * off;
    }
}

/// The portable row kernel (any CPU): [`each_row`] with scalar inner loops.
pub(super) fn rows_portable(c: &Ctx, s: &mut Scratch, first: usize, out: &mut [f32]) {
    let q = c.q;
    let gpr = q.groups_per_row();
    let prologue = |r: usize, s: &mut Scratch| {
        unpack_f32(
            q.scales_from(r),
            q.scale_bits(),
            q.scale_bias(),
            &mut s.sf[..gpr],
        );
        let corr = dot(&s.sf[..gpr], &c.act.zsums[..gpr]);
        if !q.asymmetric() {
            return (corr, 0.0);
        }
        unpack_f32(q.mins_from(r), q.scale_bits(), 0, &mut s.of[..gpr]);
        (corr, dot(&s.of[..gpr], &c.act.sums[..gpr]))
    };
    match c.mode {
        Activations::Exact => each_row(c, s, first, out, prologue, |w, s| main_f32(c, w, &s.sf), 0),
        Activations::Int8 => each_row(c, s, first, out, prologue, |w, s| main_i8(c, w, s), 0),
    }
}

/// Exact-mode main loop: f32 products of x with the codes minus the zero point.
fn main_f32(c: &Ctx, codes: &[u8], sf: &[f32]) -> f32 {
    let q = c.q;
    let gb = q.group_bytes();
    let mut buf = [0f32; SUB];
    let mut acc = 0.0;
    for (g, (&f, xg)) in sf.iter().zip(c.act.x.chunks_exact(q.group())).enumerate() {
        let mut d = 0.0;
        for (k, xs) in xg.chunks_exact(SUB).enumerate() {
            let at = g * gb + k * SUB * q.bits() as usize / 8;
            unpack_f32(
                codes.get(at..).unwrap_or(&[]),
                q.bits(),
                q.zero_point(),
                &mut buf,
            );
            d += dot(xs, &buf);
        }
        acc += f * d;
    }
    acc
}

/// Int8-mode main loop: integer products of the quantized x with the raw codes.
fn main_i8(c: &Ctx, codes: &[u8], s: &mut Scratch) -> f32 {
    let q = c.q;
    block_factors(q, &s.sf, &c.act.dx, &mut s.sd);
    let mut buf = [0u8; SUB];
    let mut acc = 0.0;
    for (k, (xq, &d)) in c.act.xq.chunks_exact(SUB).zip(&s.sd).enumerate() {
        unpack_codes(
            codes.get(k * SUB * q.bits() as usize / 8..).unwrap_or(&[]),
            q.bits(),
            &mut buf,
        );
        let isum: i32 = buf.iter().zip(xq).map(|(&w, &v)| w as i32 * v as i32).sum();
        acc += d * isum as f32;
    }
    acc
}

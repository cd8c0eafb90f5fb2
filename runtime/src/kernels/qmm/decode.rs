//! Decoding rows of a [`QuantMatrix`] to f32, bit for bit like the reference decoder
//! (`step * (q - zero_point) + offset`, a multiply then an add): what the GEMM panels are
//! made of.

use super::matrix::QuantMatrix;
use super::rows::Scratch;
use super::unpack::unpack_f32;

/// Decodes rows `first..first + out.len() / cols` of `q` into `out`.
pub(super) fn decode_rows(q: &QuantMatrix, s: &mut Scratch, first: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if q.has_sub_blocks() {
        if let Some(decode) = super::rows_x86::decode_rows(q.bits()) {
            return decode(q, s, first, out);
        }
    }
    decode_portable(q, s, first, out)
}

/// Step and offset of group `g` of a row with units `unit`, `min_unit` and factors `sf`, `of`.
#[inline(always)]
fn step_offset(
    q: &QuantMatrix,
    unit: f32,
    min_unit: f32,
    sf: &[f32],
    of: &[f32],
    g: usize,
) -> (f32, f32) {
    let step = unit * sf.get(g).copied().unwrap_or(0.0);
    let offset = if q.asymmetric() {
        -(min_unit * of.get(g).copied().unwrap_or(0.0))
    } else {
        0.0
    };
    (step, offset)
}

/// Decodes groups `from..` of row `r` into `row` (`sf`, `of`: the row's factors).
fn decode_groups(q: &QuantMatrix, r: usize, from: usize, sf: &[f32], of: &[f32], row: &mut [f32]) {
    let (unit, min_unit) = q.units(r);
    let codes = q.codes_from(r);
    let gb = q.group_bytes();
    for (g, o) in row.chunks_mut(q.group()).enumerate().skip(from) {
        let (step, offset) = step_offset(q, unit, min_unit, sf, of, g);
        unpack_f32(
            codes.get(g * gb..).unwrap_or(&[]),
            q.bits(),
            q.zero_point(),
            o,
        );
        for v in o.iter_mut() {
            *v = step * *v + offset;
        }
    }
}

/// Decodes the short last group of row `r` into `row` (whole row; earlier groups untouched).
pub(super) fn decode_tail(q: &QuantMatrix, r: usize, sf: &[f32], of: &[f32], row: &mut [f32]) {
    decode_groups(q, r, q.full_groups(), sf, of, row)
}

/// [`decode_rows`] on any CPU.
pub(super) fn decode_portable(q: &QuantMatrix, s: &mut Scratch, first: usize, out: &mut [f32]) {
    let gpr = q.groups_per_row();
    for (k, row) in out.chunks_exact_mut(q.cols()).enumerate() {
        let r = first + k;
        unpack_f32(
            q.scales_from(r),
            q.scale_bits(),
            q.scale_bias(),
            &mut s.sf[..gpr],
        );
        if q.asymmetric() {
            unpack_f32(q.mins_from(r), q.scale_bits(), 0, &mut s.of[..gpr]);
        }
        decode_groups(q, r, 0, &s.sf, &s.of, row);
    }
}

//! Dense mode: every value has a code; per-group scale (and offset) under a per-row scale; an
//! optional smooth basis per tile added back on decode.

use super::basis::{BasisAxes, BasisCoeffs};
use super::geometry::Geometry;
use super::packing::{dequant_group, group_offset, group_step, zero_point};
use crate::error::{Error, Result};

/// The parts of a dense tensor, as the encoder produces them and the format stores them.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseParts {
    /// Codes carry an offset per group (`q` in `0..2^bits`, value `step*q + offset`) instead of
    /// a symmetric signed grid.
    pub asymmetric: bool,
    /// Per row: the unit of the group scale codes (f32, `rows` values).
    pub row_scale: Vec<f32>,
    /// Per row, asymmetric mode only: the unit of the group offset codes (else empty).
    pub row_min: Vec<f32>,
    /// Per group (row-major, `rows * groups_per_row`): scale code, `i8` when symmetric.
    pub group_scale: Vec<u8>,
    /// Per group, asymmetric mode only: offset code (else empty).
    pub group_min: Vec<u8>,
    /// Packed codes, `rows * row_bytes`, each group starting on a byte.
    pub codes: Vec<u8>,
    /// Per tile (tile-row-major): the basis coefficients, or `None`. Empty = no tile has one.
    pub basis: Vec<Option<BasisCoeffs>>,
}

/// A validated dense body, ready to decode.
#[derive(Clone, Debug)]
pub(crate) struct Dense {
    pub(crate) parts: DenseParts,
    /// Tile shapes that carry a basis, with their tables.
    axes: Vec<BasisAxes>,
}

impl Dense {
    /// Checks every length against the geometry and every scale for finiteness.
    pub(crate) fn new(g: &Geometry, parts: DenseParts) -> Result<Self> {
        let bad = |what: &str| Err(Error::Container(format!("dense tensor: {what}")));
        let groups = g.rows * g.groups_per_row();
        let side = |v: usize| if parts.asymmetric { v } else { 0 };
        if parts.row_scale.len() != g.rows || parts.row_min.len() != side(g.rows) {
            return bad("wrong number of row scales");
        }
        if parts.group_scale.len() != groups || parts.group_min.len() != side(groups) {
            return bad("wrong number of group scales");
        }
        if parts.codes.len() != g.rows * g.row_bytes() {
            return bad("wrong code length");
        }
        if !parts.basis.is_empty() && parts.basis.len() != g.tiles() {
            return bad("wrong number of basis flags");
        }
        if parts.row_scale.iter().chain(&parts.row_min).any(|s| !s.is_finite()) {
            return bad("non-finite row scale");
        }
        let mut axes: Vec<BasisAxes> = Vec::new();
        for (t, c) in parts.basis.iter().enumerate() {
            if let Some(c) = c {
                if c.iter().any(|v| !v.is_finite()) {
                    return bad("non-finite basis coefficient");
                }
                let shape = (g.tile_height(t / g.tile_cols()), g.tile_width(t % g.tile_cols()));
                if !axes.iter().any(|a| a.shape() == shape) {
                    axes.push(BasisAxes::new(shape.0, shape.1));
                }
            }
        }
        Ok(Dense { parts, axes })
    }

    /// Whether at least one tile carries a basis.
    pub(crate) fn has_basis(&self) -> bool {
        self.parts.basis.iter().any(Option::is_some)
    }

    /// Number of tiles carrying a basis.
    pub(crate) fn basis_tiles(&self) -> usize {
        self.parts.basis.iter().filter(|c| c.is_some()).count()
    }

    /// Decodes row `r` (< rows) into `out[..cols]`.
    pub(crate) fn decode_row(&self, g: &Geometry, r: usize, out: &mut [f32]) {
        let p = &self.parts;
        let gpr = g.groups_per_row();
        let zp = zero_point(g.bits, p.asymmetric);
        let rb = g.row_bytes();
        let codes = p.codes.get(r * rb..(r + 1) * rb).unwrap_or(&[]);
        let scales = p.group_scale.get(r * gpr..(r + 1) * gpr).unwrap_or(&[]);
        let row_scale = p.row_scale.get(r).copied().unwrap_or(0.0);
        let mut at = 0;
        for (gi, (o, &sc)) in out.chunks_mut(g.group).zip(scales).enumerate() {
            let n = g.packed_bytes(o.len());
            let step = group_step(row_scale, sc, p.asymmetric);
            let offset = if p.asymmetric {
                let m = p.group_min.get(r * gpr + gi).copied().unwrap_or(0);
                group_offset(p.row_min.get(r).copied().unwrap_or(0.0), m)
            } else {
                0.0
            };
            dequant_group(codes.get(at..at + n).unwrap_or(&[]), g.bits, zp, step, offset, o);
            at += n;
        }
        if p.basis.is_empty() {
            return;
        }
        let ti = r / g.block;
        let i = r % g.block;
        let h = g.tile_height(ti);
        let mut surface = [0f32; super::geometry::MAX_BLOCK];
        for tj in 0..g.tile_cols() {
            let Some(Some(c)) = p.basis.get(ti * g.tile_cols() + tj) else { continue };
            let w = g.tile_width(tj);
            let Some(axes) = self.axes.iter().find(|a| a.shape() == (h, w)) else { continue };
            axes.eval_row(c, i, &mut surface);
            let seg = out.iter_mut().skip(tj * g.block).take(w);
            for (o, s) in seg.zip(&surface) {
                *o += *s;
            }
        }
    }
}

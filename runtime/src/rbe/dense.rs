//! Dense mode: every value has a code; per-group scale (and offset) under a per-row scale; an
//! optional smooth basis per tile added back on decode.

use bytes::Bytes;
use half::bf16;

use super::basis::{add_basis_gemv, add_basis_row, basis_axes, BasisAxes, BasisCoeffs};
use super::geometry::Geometry;
use super::packing::{dequant_group, group_offset, group_step, packed_len, read_code, zero_point};
use crate::error::{Error, Result};
use crate::kernels::qmm::PanelCache;

/// Narrowest group scale code.
pub const MIN_SCALE_BITS: u8 = 4;
/// Widest group scale code.
pub const MAX_SCALE_BITS: u8 = 8;

/// The parts of a dense tensor, as the encoder produces them and the format stores them. The
/// byte fields are [`Bytes`], so a parsed tensor shares the buffer it was read from.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseParts {
    /// Codes carry an offset per group (`q` in `0..2^bits`, value `step*q + offset`) instead of
    /// a symmetric signed grid.
    pub asymmetric: bool,
    /// Width of the group scale (and offset) codes, 4..=8.
    pub scale_bits: u8,
    /// Per row: the unit of the group scale codes (`rows` values).
    pub row_scale: Vec<bf16>,
    /// Per row, asymmetric mode only: the unit of the group offset codes (else empty).
    pub row_min: Vec<bf16>,
    /// Per row, [`scale_row_bytes`] bytes: the row's group scale codes packed at `scale_bits`
    /// (see [`group_step`](super::group_step) for how they are read).
    pub group_scale: Bytes,
    /// Asymmetric mode only (else empty): the group offset codes, packed like `group_scale`.
    pub group_min: Bytes,
    /// Packed codes, `rows * row_bytes`, each group starting on a byte.
    pub codes: Bytes,
    /// Per tile (tile-row-major): the basis coefficients, or `None`. Empty = no tile has one.
    pub basis: Vec<Option<BasisCoeffs>>,
}

/// Bytes of one row's packed group scale codes.
pub fn scale_row_bytes(g: &Geometry, scale_bits: u8) -> usize {
    packed_len(g.groups_per_row(), scale_bits)
}

/// A validated dense body, ready to decode.
#[derive(Clone, Debug)]
pub(crate) struct Dense {
    pub(crate) parts: DenseParts,
    /// Tile shapes that carry a basis, with their tables.
    axes: Vec<BasisAxes>,
    /// The int8 prompt GEMM's layout of the codes, kept from their second such GEMM on.
    pub(crate) panels: PanelCache,
}

impl Dense {
    /// Checks every length against the geometry and every scale for finiteness.
    pub(crate) fn new(g: &Geometry, parts: DenseParts) -> Result<Self> {
        let bad = |what: &str| Err(Error::Container(format!("dense tensor: {what}")));
        if !(MIN_SCALE_BITS..=MAX_SCALE_BITS).contains(&parts.scale_bits) {
            return bad("scale code width outside 4..=8");
        }
        let groups = g.rows * scale_row_bytes(g, parts.scale_bits);
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
        if parts
            .row_scale
            .iter()
            .chain(&parts.row_min)
            .any(|s| !s.is_finite())
        {
            return bad("non-finite row scale");
        }
        if parts
            .basis
            .iter()
            .flatten()
            .flatten()
            .any(|v| !v.is_finite())
        {
            return bad("non-finite basis coefficient");
        }
        let axes = basis_axes(g, &parts.basis);
        Ok(Dense { parts, axes, panels: PanelCache::default() })
    }

    /// Whether at least one tile carries a basis.
    pub(crate) fn has_basis(&self) -> bool {
        self.parts.basis.iter().any(Option::is_some)
    }

    /// `out[r] += Σ_c x[c] · basis(r, c)` (nothing without a basis): see [`add_basis_gemv`].
    pub(crate) fn add_basis_gemv(&self, g: &Geometry, x: &[f32], out: &mut [f32]) {
        add_basis_gemv(g, &self.parts.basis, &self.axes, x, out);
    }

    /// Number of tiles carrying a basis.
    pub(crate) fn basis_tiles(&self) -> usize {
        self.parts.basis.iter().filter(|c| c.is_some()).count()
    }

    /// Row `r`'s packed codes, and each group's `(step, offset)`: value `c` of group `gi` is
    /// `dequant(code, zero_point, step, offset)` (plus the basis, when the tile has one).
    fn row_terms(&self, g: &Geometry, r: usize) -> (&[u8], Vec<(f32, f32)>) {
        let p = &self.parts;
        let (sb, rb, srb) = (p.scale_bits, g.row_bytes(), scale_row_bytes(g, p.scale_bits));
        let codes = p.codes.get(r * rb..(r + 1) * rb).unwrap_or(&[]);
        let scales = p.group_scale.get(r * srb..(r + 1) * srb).unwrap_or(&[]);
        let mins = p.group_min.get(r * srb..(r + 1) * srb).unwrap_or(&[]);
        let row_scale = p.row_scale.get(r).map_or(0.0, |v| v.to_f32());
        let row_min = p.row_min.get(r).map_or(0.0, |v| v.to_f32());
        let terms = (0..g.groups_per_row())
            .map(|gi| {
                let step = group_step(row_scale, read_code(scales, sb, gi), p.asymmetric, sb);
                let offset = if p.asymmetric { group_offset(row_min, read_code(mins, sb, gi)) } else { 0.0 };
                (step, offset)
            })
            .collect();
        (codes, terms)
    }

    /// Row `r`'s codes, one per value, and each group's `(step, offset)`.
    pub(crate) fn quantized_row(&self, g: &Geometry, r: usize) -> (Vec<u8>, Vec<(f32, f32)>) {
        let (packed, terms) = self.row_terms(g, r);
        let mut codes = Vec::with_capacity(g.cols);
        let mut at = 0;
        for gi in 0..g.groups_per_row() {
            let len = g.group_len(gi);
            let group = packed.get(at..).unwrap_or(&[]);
            codes.extend((0..len).map(|j| read_code(group, g.bits, j)));
            at += g.packed_bytes(len);
        }
        (codes, terms)
    }

    /// Decodes row `r` (< rows) into `out[..cols]`.
    pub(crate) fn decode_row(&self, g: &Geometry, r: usize, out: &mut [f32]) {
        let p = &self.parts;
        let zp = zero_point(g.bits, p.asymmetric);
        let (codes, terms) = self.row_terms(g, r);
        let mut at = 0;
        for (o, (step, offset)) in out.chunks_mut(g.group).zip(terms) {
            let n = g.packed_bytes(o.len());
            dequant_group(codes.get(at..at + n).unwrap_or(&[]), g.bits, zp, step, offset, o);
            at += n;
        }
        add_basis_row(g, &p.basis, &self.axes, r, out);
    }
}

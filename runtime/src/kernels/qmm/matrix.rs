//! A borrowed, validated view of a group-quantized matrix: what the fused kernels read.

use half::bf16;

use crate::error::{Error, Result};

/// Codes per sub-block: the unit the SIMD loops unpack at once (`4 * bits` bytes, byte-aligned
/// whenever a group holds a whole number of sub-blocks).
pub const SUB: usize = 32;

/// A `rows x cols` matrix of `bits`-wide codes in groups of `group` along each row, every group
/// starting on a byte. Value `(r, c)` in group `g` with code `q`:
///
/// `row_scale[r] * (s - scale_bias) * (q - zero_point) - row_min[r] * o`
///
/// where `s` and `o` are group `g`'s `scale_bits`-wide scale and offset codes (packed per row;
/// `o` only when asymmetric). This is the dense RBE layout without a basis.
#[derive(Copy, Clone, Debug)]
pub struct QuantMatrix<'a> {
    rows: usize,
    cols: usize,
    group: usize,
    bits: u8,
    scale_bits: u8,
    asymmetric: bool,
    row_scale: &'a [bf16],
    row_min: &'a [bf16],
    group_scale: &'a [u8],
    group_min: &'a [u8],
    codes: &'a [u8],
    /// Derived sizes, computed once (the row loops would otherwise divide per row).
    sizes: Sizes,
}

/// Sizes derived from the shape.
#[derive(Copy, Clone, Debug, Default)]
struct Sizes {
    groups_per_row: usize,
    full_groups: usize,
    group_bytes: usize,
    row_bytes: usize,
    scale_row_bytes: usize,
}

/// The parts a [`QuantMatrix`] is built from (see its doc for the arithmetic).
#[derive(Copy, Clone, Debug)]
pub struct QuantParts<'a> {
    /// Number of rows.
    pub rows: usize,
    /// Row length.
    pub cols: usize,
    /// Codes per group (a multiple of 8).
    pub group: usize,
    /// Code width, 2..=8.
    pub bits: u8,
    /// Width of the group scale and offset codes, 1..=8.
    pub scale_bits: u8,
    /// Codes are unsigned with a group offset (zero point 0), else signed around `2^(bits-1)`.
    pub asymmetric: bool,
    /// Per row: the unit of the scale codes.
    pub row_scale: &'a [bf16],
    /// Per row, asymmetric only (else empty): the unit of the offset codes.
    pub row_min: &'a [bf16],
    /// Per row, the group scale codes packed at `scale_bits`.
    pub group_scale: &'a [u8],
    /// Asymmetric only (else empty): the group offset codes, packed like `group_scale`.
    pub group_min: &'a [u8],
    /// The codes, row after row, each group starting on a byte.
    pub codes: &'a [u8],
}

/// Bytes of `n` codes of `bits` bits.
pub(crate) fn packed_len(n: usize, bits: u8) -> usize {
    (n * bits as usize).div_ceil(8)
}

impl<'a> QuantMatrix<'a> {
    /// Checks every length against the shape; errors name the part that does not fit.
    pub fn new(p: QuantParts<'a>) -> Result<Self> {
        let bad = |what: &str| Err(Error::Input(format!("quantized matrix: {what}")));
        if !(2..=8).contains(&p.bits) || !(1..=8).contains(&p.scale_bits) {
            return bad("code widths out of range");
        }
        if p.group == 0 || !p.group.is_multiple_of(8) || p.rows == 0 || p.cols == 0 {
            return bad("empty shape or group not a multiple of 8");
        }
        let full_groups = p.cols / p.group;
        let group_bytes = packed_len(p.group, p.bits);
        let sizes = Sizes {
            groups_per_row: p.cols.div_ceil(p.group),
            full_groups,
            group_bytes,
            row_bytes: full_groups * group_bytes + packed_len(p.cols % p.group, p.bits),
            scale_row_bytes: packed_len(p.cols.div_ceil(p.group), p.scale_bits),
        };
        let m = QuantMatrix {
            sizes,
            rows: p.rows,
            cols: p.cols,
            group: p.group,
            bits: p.bits,
            scale_bits: p.scale_bits,
            asymmetric: p.asymmetric,
            row_scale: p.row_scale,
            row_min: p.row_min,
            group_scale: p.group_scale,
            group_min: p.group_min,
            codes: p.codes,
        };
        let side = |n: usize| if p.asymmetric { n } else { 0 };
        let scales = p.rows.checked_mul(m.scale_row_bytes());
        let codes = p.rows.checked_mul(m.row_bytes());
        if p.row_scale.len() != p.rows || p.row_min.len() != side(p.rows) {
            return bad("wrong number of row units");
        }
        if Some(p.group_scale.len()) != scales || Some(p.group_min.len()) != scales.map(side) {
            return bad("wrong number of group codes");
        }
        if Some(p.codes.len()) != codes {
            return bad("wrong code length");
        }
        Ok(m)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Row length.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Codes per group.
    pub fn group(&self) -> usize {
        self.group
    }

    /// Code width.
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// Width of the scale and offset codes.
    pub fn scale_bits(&self) -> u8 {
        self.scale_bits
    }

    /// Whether groups carry an offset code.
    pub fn asymmetric(&self) -> bool {
        self.asymmetric
    }

    /// Subtracted from every code: `2^(bits-1)` when symmetric, else 0.
    pub fn zero_point(&self) -> i32 {
        if self.asymmetric {
            0
        } else {
            1 << (self.bits - 1)
        }
    }

    /// Subtracted from every scale code: `2^(scale_bits-1)` when symmetric, else 0.
    pub fn scale_bias(&self) -> i32 {
        if self.asymmetric {
            0
        } else {
            1 << (self.scale_bits - 1)
        }
    }

    /// Number of groups in a row (the last one may be short).
    pub fn groups_per_row(&self) -> usize {
        self.sizes.groups_per_row
    }

    /// Number of full groups in a row.
    pub fn full_groups(&self) -> usize {
        self.sizes.full_groups
    }

    /// Number of [`SUB`]-code sub-blocks in a row's full groups (whole ones when
    /// [`has_sub_blocks`](Self::has_sub_blocks)).
    pub fn full_blocks(&self) -> usize {
        self.sizes.full_groups * self.group / SUB
    }

    /// Bytes of one full group's codes.
    pub fn group_bytes(&self) -> usize {
        self.sizes.group_bytes
    }

    /// Bytes of one row's codes.
    pub fn row_bytes(&self) -> usize {
        self.sizes.row_bytes
    }

    /// Bytes of one row's packed scale (or offset) codes.
    pub fn scale_row_bytes(&self) -> usize {
        self.sizes.scale_row_bytes
    }

    /// Whether every full group is a whole number of [`SUB`]-code sub-blocks (the fused SIMD
    /// loops need it; other groupings take the decode path).
    pub fn has_sub_blocks(&self) -> bool {
        self.group.is_multiple_of(SUB)
    }

    /// Row `r`'s scale unit and offset unit (0 when symmetric).
    pub fn units(&self, r: usize) -> (f32, f32) {
        let s = self.row_scale.get(r).map_or(0.0, |v| v.to_f32());
        let m = self.row_min.get(r).map_or(0.0, |v| v.to_f32());
        (s, m)
    }

    /// Row `r`'s codes and everything after them (SIMD loads may read past the row, never past
    /// the returned slice).
    pub fn codes_from(&self, r: usize) -> &'a [u8] {
        self.codes.get(r * self.row_bytes()..).unwrap_or(&[])
    }

    /// Row `r`'s packed scale codes and everything after them.
    pub fn scales_from(&self, r: usize) -> &'a [u8] {
        self.group_scale
            .get(r * self.scale_row_bytes()..)
            .unwrap_or(&[])
    }

    /// Row `r`'s packed offset codes and everything after them (empty when symmetric).
    pub fn mins_from(&self, r: usize) -> &'a [u8] {
        self.group_min
            .get(r * self.scale_row_bytes()..)
            .unwrap_or(&[])
    }
}

//! Byte layout of an RBE tensor (version 1, little-endian).
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `RBET` |
//! | 4 | 1 | version (1) |
//! | 5 | 1 | mode: 0 dense, 1 sparse |
//! | 6 | 1 | bits (2..=8) |
//! | 7 | 1 | flags: bit 0 asymmetric, bit 1 basis present (dense only) |
//! | 8 | 4 | rows (u32) |
//! | 12 | 4 | cols (u32) |
//! | 16 | 2 | block (u16) |
//! | 18 | 2 | group (u16) |
//!
//! Dense body, in order:
//!
//! | size | field |
//! |---|---|
//! | 1 | scale_bits (4..=8): width of the group scale / offset codes |
//! | `ceil(tiles/8)` | if flag bit 1: basis bitmap, bit `t` = tile `t` (tile-row-major) has a basis |
//! | 16 per flagged tile | if flag bit 1: 8 f16 coefficients per flagged tile, in tile order |
//! | 2 * rows | row scale units (bf16) |
//! | 2 * rows | if asymmetric: row offset units (bf16) |
//! | rows * ceil(groups_per_row * scale_bits / 8) | group scale codes, packed per row |
//! | same | if asymmetric: group offset codes, packed per row |
//! | rows * row_bytes | codes, `bits` each, packed per group (each group starts on a byte) |
//!
//! Sparse body (bits must be 8): f32 step, then the tile stream described in `sparse.rs`. Nothing may follow the body.

use bytes::Bytes;
use half::{bf16, f16};

use super::basis::{BasisCoeffs, BASIS_LEN};
use super::dense::{scale_row_bytes, Dense, DenseParts, MAX_SCALE_BITS, MIN_SCALE_BITS};
use super::geometry::Geometry;
use super::reader::Reader;
use super::sparse::Sparse;
use super::{Body, RbeTensor};
use crate::error::{Error, Result};

/// First four bytes of every serialised tensor.
pub const MAGIC: [u8; 4] = *b"RBET";
/// The layout version this code writes and reads.
pub const FORMAT_VERSION: u8 = 1;

const HEADER: usize = 20;
const MODE_DENSE: u8 = 0;
const MODE_SPARSE: u8 = 1;
const FLAG_ASYMMETRIC: u8 = 1;
const FLAG_BASIS: u8 = 2;

fn flags(t: &RbeTensor) -> u8 {
    match &t.body {
        Body::Dense(d) => {
            let mut f = 0;
            if d.parts.asymmetric {
                f |= FLAG_ASYMMETRIC;
            }
            if !d.parts.basis.is_empty() {
                f |= FLAG_BASIS;
            }
            f
        }
        Body::Sparse(_) => 0,
    }
}

/// Exact length of [`to_bytes`]'s output.
pub(crate) fn stored_bytes(t: &RbeTensor) -> usize {
    let g = &t.geom;
    HEADER
        + match &t.body {
            Body::Dense(d) => {
                let p = &d.parts;
                let basis = if p.basis.is_empty() {
                    0
                } else {
                    g.tiles().div_ceil(8) + 2 * BASIS_LEN * d.basis_tiles()
                };
                1 + basis
                    + 2 * (p.row_scale.len() + p.row_min.len())
                    + p.group_scale.len()
                    + p.group_min.len()
                    + p.codes.len()
            }
            Body::Sparse(s) => s.stream.len(),
        }
}

/// Serialises the tensor.
pub(crate) fn to_bytes(t: &RbeTensor) -> Vec<u8> {
    let g = &t.geom;
    let mut out = Vec::with_capacity(stored_bytes(t));
    out.extend_from_slice(&MAGIC);
    let mode = match t.body {
        Body::Dense(_) => MODE_DENSE,
        Body::Sparse(_) => MODE_SPARSE,
    };
    out.extend_from_slice(&[FORMAT_VERSION, mode, g.bits, flags(t)]);
    out.extend_from_slice(&(g.rows as u32).to_le_bytes());
    out.extend_from_slice(&(g.cols as u32).to_le_bytes());
    out.extend_from_slice(&(g.block as u16).to_le_bytes());
    out.extend_from_slice(&(g.group as u16).to_le_bytes());
    match &t.body {
        Body::Dense(d) => {
            let p = &d.parts;
            out.push(p.scale_bits);
            if !p.basis.is_empty() {
                let mut bitmap = vec![0u8; g.tiles().div_ceil(8)];
                for (k, c) in p.basis.iter().enumerate() {
                    if c.is_some() {
                        bitmap[k / 8] |= 1 << (k % 8);
                    }
                }
                out.extend_from_slice(&bitmap);
                for c in p.basis.iter().flatten() {
                    for v in c {
                        out.extend_from_slice(&v.to_bits().to_le_bytes());
                    }
                }
            }
            for s in p.row_scale.iter().chain(&p.row_min) {
                out.extend_from_slice(&s.to_bits().to_le_bytes());
            }
            out.extend_from_slice(&p.group_scale);
            out.extend_from_slice(&p.group_min);
            out.extend_from_slice(&p.codes);
        }
        Body::Sparse(s) => out.extend_from_slice(&s.stream),
    }
    out
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Container(msg.into())
}

/// `a * b`, or an error if it overflows.
fn mul(a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b)
        .ok_or_else(|| bad("RBE tensor: size overflow"))
}

/// The next `n` bytes of `bytes` (read through `r`), shared rather than copied.
fn share(bytes: &Bytes, r: &mut Reader, n: usize, what: &str) -> Result<Bytes> {
    let at = r.position();
    r.take(n, what)?;
    Ok(bytes.slice(at..at + n))
}

/// Parses a serialised tensor; its byte fields share `bytes`.
pub(crate) fn from_bytes(bytes: &Bytes) -> Result<RbeTensor> {
    let mut r = Reader::new(bytes);
    if r.take(4, "magic")? != MAGIC {
        return Err(bad("not an RBE tensor (bad magic)"));
    }
    let version = r.u8("version")?;
    if version != FORMAT_VERSION {
        return Err(bad(format!("unknown RBE tensor version {version}")));
    }
    let mode = r.u8("mode")?;
    let bits = r.u8("bits")?;
    let flags = r.u8("flags")?;
    let rows = r.u32("rows")? as usize;
    let cols = r.u32("cols")? as usize;
    let block = r.u16("block")? as usize;
    let group = r.u16("group")? as usize;
    let geom = Geometry::new(rows, cols, block, group, bits)
        .map_err(|e| bad(format!("RBE tensor: {e}")))?;
    let body = match mode {
        MODE_DENSE => {
            if flags & !(FLAG_ASYMMETRIC | FLAG_BASIS) != 0 {
                return Err(bad(format!("RBE tensor: unknown flags {flags:#x}")));
            }
            Body::Dense(read_dense(bytes, &mut r, &geom, flags)?)
        }
        MODE_SPARSE => {
            if flags != 0 {
                return Err(bad(format!("RBE sparse tensor: unknown flags {flags:#x}")));
            }
            let rest = r.remaining();
            let stream = share(bytes, &mut r, rest, "sparse stream")?;
            Body::Sparse(Sparse::new(&geom, stream)?)
        }
        m => return Err(bad(format!("unknown RBE tensor mode {m}"))),
    };
    if r.remaining() != 0 {
        return Err(bad("RBE tensor: trailing bytes"));
    }
    Ok(RbeTensor { geom, body })
}

fn read_dense(bytes: &Bytes, r: &mut Reader, g: &Geometry, flags: u8) -> Result<Dense> {
    let asymmetric = flags & FLAG_ASYMMETRIC != 0;
    let scale_bits = r.u8("scale code width")?;
    if !(MIN_SCALE_BITS..=MAX_SCALE_BITS).contains(&scale_bits) {
        return Err(bad(format!("RBE tensor: scale code width {scale_bits}")));
    }
    let sides = if asymmetric { 2 } else { 1 };
    let groups = mul(g.rows, scale_row_bytes(g, scale_bits))?;
    // Everything after the basis has a size fixed by the header: check it all fits first.
    let fixed = mul(sides, mul(g.rows, 2)? + groups)? + mul(g.rows, g.row_bytes())?;
    let mut basis: Vec<Option<BasisCoeffs>> = Vec::new();
    if flags & FLAG_BASIS != 0 {
        let bitmap = r.take(g.tiles().div_ceil(8), "basis bitmap")?;
        let flagged: usize = bitmap.iter().map(|b| b.count_ones() as usize).sum();
        if bitmap
            .iter()
            .enumerate()
            .any(|(k, b)| (0..8).any(|i| b >> i & 1 == 1 && k * 8 + i >= g.tiles()))
        {
            return Err(bad("RBE tensor: basis bitmap flags a tile past the end"));
        }
        if mul(flagged, 2 * BASIS_LEN)? + fixed > r.remaining() {
            return Err(bad("RBE tensor truncated in the basis coefficients"));
        }
        basis.reserve_exact(g.tiles());
        for t in 0..g.tiles() {
            if bitmap[t / 8] >> (t % 8) & 1 == 1 {
                let mut c = [f16::ZERO; BASIS_LEN];
                for v in c.iter_mut() {
                    *v = f16::from_bits(r.u16("basis coefficient")?);
                }
                basis.push(Some(c));
            } else {
                basis.push(None);
            }
        }
    }
    if fixed > r.remaining() {
        return Err(bad(format!(
            "RBE tensor truncated: body needs {fixed} bytes, {} left",
            r.remaining()
        )));
    }
    let mut floats = |n: usize, what: &str| -> Result<Vec<bf16>> {
        (0..n).map(|_| r.u16(what).map(bf16::from_bits)).collect()
    };
    let row_scale = floats(g.rows, "row scales")?;
    let row_min = if asymmetric {
        floats(g.rows, "row minima")?
    } else {
        Vec::new()
    };
    let group_scale = share(bytes, r, groups, "group scales")?;
    let group_min = if asymmetric {
        share(bytes, r, groups, "group offsets")?
    } else {
        Bytes::new()
    };
    let codes = share(bytes, r, mul(g.rows, g.row_bytes())?, "codes")?;
    Dense::new(
        g,
        DenseParts {
            asymmetric,
            scale_bits,
            row_scale,
            row_min,
            group_scale,
            group_min,
            codes,
            basis,
        },
    )
}

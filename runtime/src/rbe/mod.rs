//! The RBE compressed tensor: a `rows x cols` matrix stored row-major by output row, cut into
//! `block x block` tiles; "dense" mode quantizes every value in groups along the row (optionally
//! after subtracting a smooth per-tile basis), "sparse" mode keeps a few DCT coefficients per
//! tile. This module owns the format and its decoding; choosing an encoding is the toolkit's job.

mod basis;
mod dct;
mod dense;
mod format;
mod geometry;
mod matmul;
mod packing;
mod reader;
mod sparse;
#[cfg(test)]
mod tests;

pub use basis::{
    add_basis_row, basis_axes, for_each_basis_segment, BasisAxes, BasisCoeffs, BASIS_LEN,
};
pub use dct::DctTable;
pub use dense::{scale_row_bytes, DenseParts, MAX_SCALE_BITS, MIN_SCALE_BITS};
pub use format::{FORMAT_VERSION, MAGIC};
pub use geometry::{Geometry, MAX_BITS, MAX_BLOCK, MAX_GROUP, MIN_BITS, MIN_BLOCK, MIN_GROUP};
pub use packing::{
    dequant, dequant_group, group_offset, group_step, pack_codes, packed_len, read_code, zero_point,
};
pub use sparse::{level_value, SparseTile, SPARSE_BITS};

use crate::error::{Error, Result};
use dense::Dense;
use sparse::Sparse;

/// The body of a tensor, by mode.
#[derive(Clone, Debug)]
enum Body {
    Dense(Dense),
    Sparse(Sparse),
}

/// One row of a dense tensor without a basis: value `c`, in group `g = c / group`, is
/// [`dequant`]`(codes[c], zero_point, terms[g].0, terms[g].1)`, bit for bit.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedRow {
    /// One code per value, each below `2^bits`.
    pub codes: Vec<u8>,
    /// Per group: `(step, offset)`.
    pub terms: Vec<(f32, f32)>,
    /// Subtracted from every code (`2^(bits-1)` symmetric, 0 asymmetric).
    pub zero_point: i32,
}

/// A compressed matrix of `rows x cols` (see the module doc).
#[derive(Clone, Debug)]
pub struct RbeTensor {
    geom: Geometry,
    body: Body,
}

impl RbeTensor {
    /// Builds a dense tensor from its parts, checking every length against the geometry.
    pub fn from_dense(geom: Geometry, parts: DenseParts) -> Result<Self> {
        Ok(RbeTensor {
            geom,
            body: Body::Dense(Dense::new(&geom, parts)?),
        })
    }

    /// Builds a sparse tensor (`geom.bits` must be [`SPARSE_BITS`]) from the uniform `step`
    /// and one [`SparseTile`] per tile (tile-row-major), checking them.
    pub fn from_sparse(geom: Geometry, step: f32, tiles: &[SparseTile]) -> Result<Self> {
        let stream = sparse::write_stream(&geom, step, tiles)?;
        Ok(RbeTensor {
            geom,
            body: Body::Sparse(Sparse::new(&geom, stream.into())?),
        })
    }

    /// Number of (output) rows.
    pub fn rows(&self) -> usize {
        self.geom.rows
    }

    /// Row length.
    pub fn cols(&self) -> usize {
        self.geom.cols
    }

    /// Shape, tiling, grouping and code width.
    pub fn geometry(&self) -> &Geometry {
        &self.geom
    }

    /// Code width in bits of the dense residual codes ([`SPARSE_BITS`], nominal, in sparse mode).
    pub fn bits(&self) -> u8 {
        self.geom.bits
    }

    /// `"dense"`, `"dense+basis"` (at least one tile has a basis) or `"sparse"`.
    pub fn mode_name(&self) -> &'static str {
        match &self.body {
            Body::Dense(d) if d.has_basis() => "dense+basis",
            Body::Dense(_) => "dense",
            Body::Sparse(_) => "sparse",
        }
    }

    /// Number of tiles that carry a basis (0 in sparse mode).
    pub fn basis_tiles(&self) -> usize {
        match &self.body {
            Body::Dense(d) => d.basis_tiles(),
            Body::Sparse(_) => 0,
        }
    }

    /// Number of kept DCT coefficients (0 in dense mode).
    pub fn sparse_coefficients(&self) -> usize {
        match &self.body {
            Body::Dense(_) => 0,
            Body::Sparse(s) => s.kept(),
        }
    }

    /// Every byte the tensor needs at run time: exactly `self.to_bytes().len()`.
    pub fn stored_bytes(&self) -> usize {
        format::stored_bytes(self)
    }

    /// The versioned little-endian serialisation (layout table in `rbe/format.rs`).
    pub fn to_bytes(&self) -> Vec<u8> {
        format::to_bytes(self)
    }

    /// Parses [`to_bytes`](Self::to_bytes) output (copying it; see [`from_shared`](Self::from_shared)).
    pub fn from_bytes(bytes: &[u8]) -> Result<RbeTensor> {
        format::from_bytes(&bytes::Bytes::copy_from_slice(bytes))
    }

    /// Parses [`to_bytes`](Self::to_bytes) output without copying it: the codes and scale
    /// codes stay slices of `bytes`. Corrupt, truncated or unknown-version input gives
    /// `Error::Container`; sizes are checked against the input before allocating.
    pub fn from_shared(bytes: &bytes::Bytes) -> Result<RbeTensor> {
        format::from_bytes(bytes)
    }

    fn check_out(&self, rows: usize, out: &[f32]) -> Result<()> {
        if out.len() != rows * self.geom.cols {
            return Err(Error::Input(format!(
                "RBE decode: output holds {} values, want {} rows x {}",
                out.len(),
                rows,
                self.geom.cols
            )));
        }
        Ok(())
    }

    /// Decodes rows `[start, end)` into `out` (`(end - start) * cols` values), without checks.
    fn decode_rows_into(&self, start: usize, out: &mut [f32]) {
        for (k, row) in out.chunks_mut(self.geom.cols).enumerate() {
            match &self.body {
                Body::Dense(d) => d.decode_row(&self.geom, start + k, row),
                Body::Sparse(s) => s.decode_row(&self.geom, start + k, row),
            }
        }
    }

    /// Row `r` as plain group quantization, when the tensor is dense without a basis (else
    /// `None`, also for `r` out of range): exactly what [`decode_row`](Self::decode_row) computes.
    pub fn quantized_row(&self, r: usize) -> Option<QuantizedRow> {
        match &self.body {
            Body::Dense(d) if !d.has_basis() && r < self.geom.rows => {
                let (codes, terms) = d.quantized_row(&self.geom, r);
                let zero_point = zero_point(self.geom.bits, d.parts.asymmetric);
                Some(QuantizedRow { codes, terms, zero_point })
            }
            _ => None,
        }
    }

    /// Decodes row `r` into `out` (`cols` values): what a Gather needs.
    pub fn decode_row(&self, r: usize, out: &mut [f32]) -> Result<()> {
        self.decode_rows(r, r + 1, out)
    }

    /// Decodes rows `[start, end)` into `out` (`(end - start) * cols` values).
    pub fn decode_rows(&self, start: usize, end: usize, out: &mut [f32]) -> Result<()> {
        if start > end || end > self.geom.rows {
            return Err(Error::Input(format!(
                "RBE decode: rows {start}..{end} out of 0..{}",
                self.geom.rows
            )));
        }
        self.check_out(end - start, out)?;
        self.decode_rows_into(start, out);
        Ok(())
    }

    /// Decodes the whole matrix (tests and tools only: a model never materialises it).
    pub fn decode(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.geom.len()];
        self.decode_rows_into(0, &mut out);
        out
    }
}

//! Block-quantized rows in onnxruntime's layout (`MatMulNBits`, `GatherBlockQuantized`):
//! `bits`-wide codes packed low bits first along each row, one f32 scale and one zero point
//! per block of `block` codes. Value `c` of row `r`, in block `b`, with code `q`:
//! `(q - zero_point[r, b]) * scale[r, b]`.
//!
//! Rows are decoded block by block where they are used (a panel at a time inside the
//! product), never expanded to a full f32 copy of the matrix.

use bytes::Bytes;

use super::qmm::{gemm_by, gemv_by, unpack_f32};
use crate::error::{Error, Result};

/// The geometry of a [`BlockRows`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockShape {
    /// Number of rows.
    pub rows: usize,
    /// Values per row (the last block may be short).
    pub cols: usize,
    /// Codes per block: a power of two, at least 16.
    pub block: usize,
    /// Code width: 2, 4 or 8.
    pub bits: u8,
    /// Bytes from one row's codes to the next (at least the packed row).
    pub row_bytes: usize,
}

impl BlockShape {
    /// Blocks in a row.
    pub fn blocks_per_row(&self) -> usize {
        self.cols.div_ceil(self.block)
    }

    /// Bytes of one full block's codes.
    pub fn block_bytes(&self) -> usize {
        self.block * self.bits as usize / 8
    }
}

/// A validated block-quantized matrix (see the module doc).
#[derive(Clone, Debug)]
pub struct BlockRows {
    shape: BlockShape,
    codes: Bytes,
    /// Per block, row-major.
    scales: Vec<f32>,
    /// Per block, row-major, as floats (integer zero points are exact in f32).
    zero_points: Vec<f32>,
}

impl BlockRows {
    /// Checks every length against `shape`; errors name the part that does not fit.
    pub fn new(shape: BlockShape, codes: Bytes, scales: Vec<f32>, zero_points: Vec<f32>) -> Result<Self> {
        let bad = |what: String| Err(Error::Input(format!("block-quantized matrix: {what}")));
        if !matches!(shape.bits, 2 | 4 | 8) {
            return bad(format!("{} bits (2, 4 or 8 are supported)", shape.bits));
        }
        if shape.block < 16 || !shape.block.is_power_of_two() {
            return bad(format!("block size {} is not a power of two of at least 16", shape.block));
        }
        let blocks = shape.rows.checked_mul(shape.blocks_per_row());
        if shape.row_bytes < (shape.cols * shape.bits as usize).div_ceil(8) {
            return bad(format!("rows of {} bytes cannot hold {} codes", shape.row_bytes, shape.cols));
        }
        if Some(codes.len()) != shape.rows.checked_mul(shape.row_bytes) {
            return bad(format!("{} bytes of codes for {} rows of {} bytes", codes.len(), shape.rows, shape.row_bytes));
        }
        if Some(scales.len()) != blocks || Some(zero_points.len()) != blocks {
            return bad(format!(
                "{} scales and {} zero points for {} blocks",
                scales.len(),
                zero_points.len(),
                blocks.unwrap_or(usize::MAX)
            ));
        }
        Ok(Self { shape, codes, scales, zero_points })
    }

    /// The geometry.
    pub fn shape(&self) -> BlockShape {
        self.shape
    }

    /// Decodes row `r` into `out` (`cols` values).
    pub fn decode_row(&self, r: usize, out: &mut [f32]) {
        let s = self.shape;
        let (per_row, bb) = (s.blocks_per_row(), s.block_bytes());
        let codes = self.codes.get(r * s.row_bytes..).unwrap_or(&[]);
        let params = r * per_row..(r + 1) * per_row;
        let blocks = out.chunks_mut(s.block).zip(&self.scales[params.clone()]).zip(&self.zero_points[params]);
        for (b, ((o, &scale), &zp)) in blocks.enumerate() {
            decode_block(codes.get(b * bb..).unwrap_or(&[]), s.bits, scale, zp, o);
        }
    }

    /// Decodes rows `first..first + out.len() / cols` into `out`.
    pub fn decode_rows(&self, first: usize, out: &mut [f32]) {
        for (k, row) in out.chunks_exact_mut(self.shape.cols.max(1)).enumerate() {
            self.decode_row(first + k, row);
        }
    }

    /// `out[m x rows] = x[m x cols] · Wᵀ`, over rayon's threads by bands of rows of `W`.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) -> Result<()> {
        let (rows, cols) = (self.shape.rows, self.shape.cols);
        let decode = |_: &mut (), first: usize, w: &mut [f32]| self.decode_rows(first, w);
        if m == 1 {
            gemv_by(rows, cols, x, out, || (), decode)
        } else {
            gemm_by(rows, cols, x, m, out, || (), decode)
        }
    }
}

/// Decodes one block (`out.len()` codes, at most a block) from `codes`; codes past the end of
/// `codes` read as 0. 4- and 8-bit codes take straight loops the compiler vectorizes.
fn decode_block(codes: &[u8], bits: u8, scale: f32, zp: f32, out: &mut [f32]) {
    let value = |q: u8| (q as f32 - zp) * scale;
    match bits {
        8 if codes.len() >= out.len() => {
            for (o, &q) in out.iter_mut().zip(codes) {
                *o = value(q);
            }
        }
        4 if codes.len() * 2 >= out.len() => {
            let half = out.len() / 2;
            let mut pairs = out.chunks_exact_mut(2);
            for (o, &q) in (&mut pairs).zip(codes) {
                o[0] = value(q & 0x0f);
                o[1] = value(q >> 4);
            }
            if let ([o], Some(&q)) = (pairs.into_remainder(), codes.get(half)) {
                *o = value(q & 0x0f);
            }
        }
        _ => {
            unpack_f32(codes, bits, 0, out);
            for o in out.iter_mut() {
                *o = (*o - zp) * scale;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::qmm::unpack_codes;

    /// A `rows x cols` matrix with codes, scales and zero points that vary by row and block.
    fn sample(rows: usize, cols: usize, block: usize, bits: u8) -> (BlockRows, Vec<f32>) {
        let shape = BlockShape { rows, cols, block, bits, row_bytes: cols.div_ceil(block) * block * bits as usize / 8 };
        let codes: Vec<u8> = (0..rows * shape.row_bytes).map(|i| (i * 97 + 13) as u8).collect();
        let blocks = rows * shape.blocks_per_row();
        let scales: Vec<f32> = (0..blocks).map(|b| 0.01 + b as f32 * 0.003).collect();
        let zps: Vec<f32> = (0..blocks).map(|b| (b % (1 << bits)) as f32).collect();
        let mut dense = vec![0f32; rows * cols];
        let mut q = vec![0u8; shape.row_bytes * 8 / bits as usize];
        for r in 0..rows {
            unpack_codes(&codes[r * shape.row_bytes..], bits, &mut q);
            for c in 0..cols {
                let b = r * shape.blocks_per_row() + c / block;
                dense[r * cols + c] = (q[c] as f32 - zps[b]) * scales[b];
            }
        }
        (BlockRows::new(shape, Bytes::from(codes), scales, zps).unwrap(), dense)
    }

    #[test]
    fn rows_decode_like_the_definition_for_every_width_and_short_blocks() {
        for bits in [2u8, 4, 8] {
            for (cols, block) in [(64, 16), (40, 32), (33, 16), (200, 128)] {
                let (m, dense) = sample(3, cols, block, bits);
                let mut got = vec![0f32; 3 * cols];
                m.decode_rows(0, &mut got);
                assert_eq!(got, dense, "bits {bits} cols {cols} block {block}");
            }
        }
    }

    #[test]
    fn products_match_the_decoded_matrix() {
        let (rows, cols) = (70, 80);
        let (w, dense) = sample(rows, cols, 32, 4);
        for m in [1usize, 5] {
            let x: Vec<f32> = (0..m * cols).map(|i| ((i * 7) % 13) as f32 / 6.0 - 1.0).collect();
            let mut got = vec![0f32; m * rows];
            w.matmul(&x, m, &mut got).unwrap();
            for i in 0..m {
                for r in 0..rows {
                    let want: f32 = (0..cols).map(|c| x[i * cols + c] * dense[r * cols + c]).sum();
                    let g = got[i * rows + r];
                    assert!((g - want).abs() <= 1e-4 * (1.0 + want.abs()), "m {m} ({i}, {r}): {g} vs {want}");
                }
            }
        }
    }

    #[test]
    fn lengths_are_checked() {
        let shape = BlockShape { rows: 2, cols: 32, block: 32, bits: 4, row_bytes: 16 };
        let ok = |codes: usize, params: usize| BlockRows::new(shape, Bytes::from(vec![0u8; codes]), vec![1.0; params], vec![0.0; params]);
        assert!(ok(32, 2).is_ok());
        assert!(ok(31, 2).is_err());
        assert!(ok(32, 3).is_err());
        for (bits, block) in [(3u8, 32usize), (4, 24), (4, 8)] {
            let s = BlockShape { bits, block, ..shape };
            assert!(BlockRows::new(s, Bytes::from(vec![0u8; 64]), vec![1.0; 2], vec![0.0; 2]).is_err(), "bits {bits} block {block}");
        }
    }
}

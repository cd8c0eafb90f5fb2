//! Block-quantized rows in onnxruntime's layout (`MatMulNBits`, `GatherBlockQuantized`):
//! `bits`-wide codes packed low bits first along each row, one f32 scale and one zero point
//! per block of `block` codes. Value `c` of row `r`, in block `b`, with code `q`:
//! `(q - zero_point[r, b]) * scale[r, b]`.
//!
//! Rows are decoded block by block where they are used (a panel at a time inside the
//! product), never expanded to a full f32 copy of the matrix.

use bytes::Bytes;
use rayon::prelude::*;

use super::isa::{multiversion, Isa};
use super::output::Output;
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

/// Up to this many activation rows (a generation step over a small batch), a product reads
/// the codes once per row in registers ([`BlockRows::gemv`]) rather than decoding panels of
/// the matrix for the GEMM: SmolLM2-135M int4 (model builder), batch 2 step 120 -> 62-66 ms.
const GEMV_ROWS: usize = 4;

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
        self.decode_rows(r, out)
    }

    /// Decodes rows `first..first + out.len() / cols` into `out`, compiled for the CPU's
    /// vector level (the same loops at every level).
    pub fn decode_rows(&self, first: usize, out: &mut [f32]) {
        decode_rows_for(Isa::current(), self, first, out)
    }

    /// `out[m x rows] = x[m x cols] · Wᵀ`, over rayon's threads by bands of rows of `W`.
    /// Writes every slot of `out` and returns the values.
    pub fn matmul<'o>(&self, x: &[f32], m: usize, out: Output<'o>) -> Result<&'o mut [f32]> {
        let (rows, cols) = (self.shape.rows, self.shape.cols);
        let decode = |_: &mut (), first: usize, w: &mut [f32]| self.decode_rows(first, w);
        let whole_blocks = self.shape.row_bytes >= self.shape.blocks_per_row() * self.shape.block_bytes();
        // 4- and 8-bit codes in whole blocks have a fused GEMV, run row by row for few rows.
        let fused_gemv = matches!(self.shape.bits, 4 | 8) && whole_blocks;
        if m > 1 && !(m <= GEMV_ROWS && fused_gemv) {
            return gemm_by(rows, cols, x, m, out, || (), decode);
        }
        let out = out.filled(0.0);
        if x.len() != m * cols || out.len() != m * rows {
            return Err(Error::Input(format!("matmul: x has {} values and out {}, want {} and {}", x.len(), out.len(), m * cols, m * rows)));
        }
        if m == 1 && !fused_gemv {
            gemv_by(rows, cols, x, out, || (), decode)?;
        } else {
            // By output row, so that every row is written even when rows of `x` are empty.
            out.chunks_exact_mut(rows.max(1)).enumerate().try_for_each(|(i, out)| self.gemv(&x[i * cols..(i + 1) * cols], out))?;
        }
        Ok(out)
    }
}

impl BlockRows {
    /// One activation row, 4- or 8-bit codes stored in whole blocks: per block
    /// `scale · (Σ x·q − zero_point · Σ x)`, the codes converted in registers, never decoded
    /// to a buffer. `x` is zero-padded to whole blocks (padding codes then count for nothing)
    /// and, for 4 bits, split per block into the values of the low and the high nibbles.
    fn gemv(&self, x: &[f32], out: &mut [f32]) -> Result<()> {
        let s = self.shape;
        if x.len() != s.cols || out.len() != s.rows {
            return Err(Error::Input(format!("matmul: x has {} values and out {}, want {} and {}", x.len(), out.len(), s.cols, s.rows)));
        }
        let mut xp = vec![0f32; s.blocks_per_row() * s.block];
        xp[..s.cols].copy_from_slice(x);
        let sums: Vec<f32> = xp.chunks_exact(s.block).map(|b| b.iter().sum()).collect();
        if s.bits == 4 {
            for b in xp.chunks_exact_mut(s.block) {
                let (even, odd): (Vec<f32>, Vec<f32>) = b.chunks_exact(2).map(|p| (p[0], p[1])).unzip();
                b[..s.block / 2].copy_from_slice(&even);
                b[s.block / 2..].copy_from_slice(&odd);
            }
        }
        let threads = rayon::current_num_threads().max(1);
        let chunk = s.rows.div_ceil(threads * 4).max(16);
        let isa = Isa::current();
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, o)| gemv_rows_for(isa, self, &xp, &sums, i * chunk, o));
        Ok(())
    }
}

multiversion! {
    /// Rows `first..first + out.len()` of [`BlockRows::gemv`] compiled for `isa`.
    fn gemv_rows_for(m: &BlockRows, x: &[f32], sums: &[f32], first: usize, out: &mut [f32]) => gemv_rows_body
}

/// The body of [`gemv_rows_for`].
#[inline(always)]
fn gemv_rows_body(m: &BlockRows, x: &[f32], sums: &[f32], first: usize, out: &mut [f32]) {
    let s = m.shape;
    let (per_row, bb, half) = (s.blocks_per_row(), s.block_bytes(), s.block / 2);
    for (k, y) in out.iter_mut().enumerate() {
        let r = first + k;
        let codes = &m.codes[r * s.row_bytes..r * s.row_bytes + per_row * bb];
        let params = r * per_row..(r + 1) * per_row;
        let mut acc = 0f32;
        let blocks = codes.chunks_exact(bb).zip(x.chunks_exact(s.block)).zip(sums);
        for (((c, xb), &sum), (&scale, &zp)) in blocks.zip(m.scales[params.clone()].iter().zip(&m.zero_points[params])) {
            // Eight independent partial sums, so that the loop keeps whole vectors.
            let mut lanes = [0f32; 8];
            if s.bits == 8 {
                for (q, v) in c.as_chunks::<8>().0.iter().zip(xb.as_chunks::<8>().0) {
                    for j in 0..8 {
                        lanes[j] += q[j] as f32 * v[j];
                    }
                }
            } else {
                let (lo, hi) = xb.split_at(half);
                let pairs = lo.as_chunks::<8>().0.iter().zip(hi.as_chunks::<8>().0);
                for (q, (l, h)) in c.as_chunks::<8>().0.iter().zip(pairs) {
                    for j in 0..8 {
                        lanes[j] += (q[j] & 0x0f) as f32 * l[j] + (q[j] >> 4) as f32 * h[j];
                    }
                }
            }
            let dot: f32 = lanes.iter().sum();
            acc += scale * (dot - zp * sum);
        }
        *y = acc;
    }
}

multiversion! {
    /// [`BlockRows::decode_rows`] compiled for `isa`.
    fn decode_rows_for(m: &BlockRows, first: usize, out: &mut [f32]) => decode_rows_body
}

/// The body of [`decode_rows_for`].
#[inline(always)]
fn decode_rows_body(m: &BlockRows, first: usize, out: &mut [f32]) {
    let s = m.shape;
    let (per_row, bb) = (s.blocks_per_row(), s.block_bytes());
    for (k, row) in out.chunks_exact_mut(s.cols.max(1)).enumerate() {
        let r = first + k;
        let codes = m.codes.get(r * s.row_bytes..).unwrap_or(&[]);
        let params = r * per_row..(r + 1) * per_row;
        let blocks = row.chunks_mut(s.block).zip(&m.scales[params.clone()]).zip(&m.zero_points[params]);
        for (b, ((o, &scale), &zp)) in blocks.enumerate() {
            decode_block(codes.get(b * bb..).unwrap_or(&[]), s.bits, scale, zp, o);
        }
    }
}

/// Decodes one block (`out.len()` codes, at most a block) from `codes`; codes past the end of
/// `codes` read as 0. 4- and 8-bit codes take straight loops over fixed-size chunks, which
/// the compiler vectorizes.
#[inline(always)]
fn decode_block(codes: &[u8], bits: u8, scale: f32, zp: f32, out: &mut [f32]) {
    let value = |q: u8| (q as f32 - zp) * scale;
    match bits {
        8 if codes.len() >= out.len() => {
            for (o, &q) in out.iter_mut().zip(codes) {
                *o = value(q);
            }
        }
        4 if codes.len() * 2 >= out.len() => {
            let (head, tail) = out.as_chunks_mut::<16>();
            let (pairs, _) = codes.as_chunks::<8>();
            for (o, c) in head.iter_mut().zip(pairs) {
                for j in 0..8 {
                    o[2 * j] = value(c[j] & 0x0f);
                    o[2 * j + 1] = value(c[j] >> 4);
                }
            }
            let done = head.len() * 16;
            for (i, o) in tail.iter_mut().enumerate() {
                let c = done + i;
                *o = value((codes[c / 2] >> (4 * (c % 2))) & 0x0f);
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
    fn rows_decode_like_the_definition_at_every_level_width_and_short_block() {
        for isa in Isa::ALL.into_iter().filter(|&isa| isa <= Isa::detected()) {
            for bits in [2u8, 4, 8] {
                for (cols, block) in [(64, 16), (40, 32), (33, 16), (200, 128), (17, 16)] {
                    let (m, dense) = sample(3, cols, block, bits);
                    let mut got = vec![0f32; 3 * cols];
                    decode_rows_for(isa, &m, 0, &mut got);
                    assert_eq!(got, dense, "{isa} bits {bits} cols {cols} block {block}");
                    let mut row = vec![0f32; cols];
                    m.decode_row(2, &mut row);
                    assert_eq!(row, dense[2 * cols..], "row 2");
                }
            }
        }
    }

    #[test]
    fn products_match_the_decoded_matrix() {
        let (rows, cols) = (70, 80);
        for (bits, m) in [2u8, 4, 8].into_iter().flat_map(|b| [(b, 1usize), (b, 3), (b, GEMV_ROWS + 1)]) {
            let (w, dense) = sample(rows, cols, 32, bits);
            let x: Vec<f32> = (0..m * cols).map(|i| ((i * 7) % 13) as f32 / 6.0 - 1.0).collect();
            let mut got = vec![0f32; m * rows];
            w.matmul(&x, m, (&mut got[..]).into()).unwrap();
            for i in 0..m {
                for r in 0..rows {
                    let want: f32 = (0..cols).map(|c| x[i * cols + c] * dense[r * cols + c]).sum();
                    let g = got[i * rows + r];
                    assert!((g - want).abs() <= 1e-4 * (1.0 + want.abs()), "{bits} bits, m {m} ({i}, {r}): {g} vs {want}");
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

//! An RBE tensor as onnxruntime's block quantization: codes packed at 4 or 8 bits along each
//! row, one f32 scale and one zero point per block, and (asymmetric tensors) one f32 offset per
//! block. `MatMulNBits` and `GatherBlockQuantized` read the first three; the offset is added by
//! ordinary ops. Every value stays what our decoder computes: `scale * (q - zp) + offset`.

use rbe_runtime::rbe::{pack_codes, RbeTensor};

/// Block lengths onnxruntime's block-quantized ops accept.
const BLOCKS: [usize; 5] = [16, 32, 64, 128, 256];

/// A tensor in block-quantized form (`rows x cols`, blocks of `block` along each row).
pub struct Blocks {
    /// Number of rows (N of a MatMul, the vocabulary of a table).
    pub rows: usize,
    /// Row length (K of a MatMul, the width of a table).
    pub cols: usize,
    /// Values per block.
    pub block: usize,
    /// Stored code width: 4 or 8 (our 2- and 3-bit codes widen to 4, 5- to 7-bit ones to 8).
    pub bits: u8,
    /// Codes, row after row, `cols * bits / 8` bytes a row, low nibble first.
    pub codes: Vec<u8>,
    /// Per block, row-major: the step.
    pub scales: Vec<f32>,
    /// Per block, packed at `bits` per row (`ceil(blocks_per_row * bits / 8)` bytes a row).
    pub zero_points: Vec<u8>,
    /// Per block, asymmetric tensors only: the offset added after dequantization.
    pub offsets: Option<Vec<f32>>,
}

impl Blocks {
    /// The block form of `t`, or why it has none (a basis, DCT mode, a group onnxruntime does
    /// not take).
    pub fn of(t: &RbeTensor) -> Result<Blocks, String> {
        let g = t.geometry();
        if !BLOCKS.contains(&g.group) || !g.cols.is_multiple_of(g.group) {
            return Err(format!("groups of {} over rows of {} (block quantization needs a power of two in 16..=256 dividing the row)", g.group, g.cols));
        }
        let bits = if g.bits <= 4 { 4 } else { 8 };
        let per_row = g.groups_per_row();
        let row_bytes = g.cols * bits as usize / 8;
        let zp_row_bytes = (per_row * bits as usize).div_ceil(8);
        let mut out = Blocks {
            rows: g.rows,
            cols: g.cols,
            block: g.group,
            bits,
            codes: vec![0; g.rows * row_bytes],
            scales: Vec::with_capacity(g.rows * per_row),
            zero_points: vec![0; g.rows * zp_row_bytes],
            offsets: None,
        };
        let mut offsets = Vec::with_capacity(g.rows * per_row);
        let mut row_zero_points = vec![0u8; per_row];
        for r in 0..g.rows {
            let q = t.quantized_row(r).ok_or_else(|| format!("mode {}: no plain quantized form", t.mode_name()))?;
            pack_codes(&q.codes, bits, &mut out.codes[r * row_bytes..(r + 1) * row_bytes]);
            let zp = u8::try_from(q.zero_point).map_err(|_| "zero point out of range".to_string())?;
            row_zero_points.fill(zp);
            pack_codes(&row_zero_points, bits, &mut out.zero_points[r * zp_row_bytes..(r + 1) * zp_row_bytes]);
            out.scales.extend(q.terms.iter().map(|&(step, _)| step));
            offsets.extend(q.terms.iter().map(|&(_, offset)| offset));
        }
        if offsets.iter().any(|&o| o != 0.0) {
            out.offsets = Some(offsets);
        }
        Ok(out)
    }

    /// Blocks in a row.
    pub fn blocks_per_row(&self) -> usize {
        self.cols / self.block
    }
}

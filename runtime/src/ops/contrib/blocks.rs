//! The parts of onnxruntime's block quantization shared by `MatMulNBits` and
//! `GatherBlockQuantized`: packed `uint8` codes (kept as shared bytes when they are an
//! initializer), per-block scales and zero points, turned into a [`BlockRows`].

use bytes::Bytes;

use super::f32_values;
use crate::error::{op_err, Result};
use crate::kernels::blockq::{BlockRows, BlockShape};
use crate::kernels::qmm::unpack_codes;
use crate::ops::common::contiguous;
use crate::ops::OpContext;
use crate::tensor::{DType, Tensor};

/// A `uint8` tensor's shape and bytes (a copy of its data).
pub(super) fn u8_parts(t: &Tensor, what: &str) -> Result<(Vec<usize>, Bytes)> {
    let a = t.array::<u8>().map_err(|_| op_err(format!("{what} must be uint8, got {}", t.dtype())))?;
    Ok((a.shape().to_vec(), Bytes::copy_from_slice(&contiguous(a))))
}

/// Constant `uint8` input `i` as shape and bytes: shared with the initializer when the builder
/// kept it as bytes, copied from the constant tensor otherwise; `None` when not constant.
pub(super) fn u8_constant(ctx: &OpContext, i: usize, what: &str) -> Result<Option<(Vec<usize>, Bytes)>> {
    if let Some(s) = ctx.shared_u8(i) {
        return Ok(Some((s.shape.clone(), s.bytes.clone())));
    }
    ctx.constant(i).map(|t| u8_parts(t, what)).transpose()
}

/// Constant input `i` as a tensor, whether the builder holds it as one or as shared bytes
/// (`uint8` initializers); `None` when not constant.
pub(super) fn constant_tensor(ctx: &OpContext, i: usize) -> Result<Option<Tensor>> {
    match ctx.shared_u8(i) {
        Some(s) => s.to_tensor().map(Some),
        None => Ok(ctx.constant(i).cloned()),
    }
}

/// Per-block zero points of `rows` rows of `per_row` blocks, as floats: `2^(bits-1)` when
/// absent; `uint8` ones packed at `bits` along each row (low bits first, each row starting
/// on a byte); float ones one per block.
pub(super) fn zero_points(zp: Option<&Tensor>, rows: usize, per_row: usize, bits: u8) -> Result<Vec<f32>> {
    let Some(zp) = zp else {
        return Ok(vec![(1u32 << (bits - 1)) as f32; rows * per_row]);
    };
    if zp.dtype() != DType::U8 {
        let values = f32_values(zp, "zero_points")?;
        if values.len() != rows * per_row {
            return Err(op_err(format!("{} zero points for {rows} x {per_row} blocks", values.len())));
        }
        return Ok(values);
    }
    let (_, packed) = u8_parts(zp, "zero_points")?;
    let row_bytes = (per_row * bits as usize).div_ceil(8);
    if packed.len() != rows * row_bytes {
        return Err(op_err(format!(
            "{} bytes of zero points for {rows} rows of {per_row} blocks at {bits} bits ({row_bytes} bytes a row)",
            packed.len()
        )));
    }
    let mut codes = vec![0u8; per_row];
    let mut out = Vec::with_capacity(rows * per_row);
    for row in packed.chunks_exact(row_bytes.max(1)).take(rows) {
        unpack_codes(row, bits, &mut codes);
        out.extend(codes.iter().map(|&q| q as f32));
    }
    Ok(out)
}

/// The matrix of `shape` from its codes, scales (float32 or float16) and zero points.
pub(super) fn block_rows(shape: BlockShape, codes: Bytes, scales: &Tensor, zp: Option<&Tensor>) -> Result<BlockRows> {
    let per_row = shape.blocks_per_row();
    let scales = f32_values(scales, "scales")?;
    let zero_points = zero_points(zp, shape.rows, per_row, shape.bits)?;
    BlockRows::new(shape, codes, scales, zero_points).map_err(|e| op_err(e.to_string()))
}

/// Errors unless `block_size` is a power of two of at least 16 and `bits` is 2, 4 or 8.
pub(super) fn check_block_bits(block_size: i64, bits: i64) -> Result<(usize, u8)> {
    if !matches!(bits, 2 | 4 | 8) {
        return Err(op_err(format!("bits must be 2, 4 or 8, got {bits}")));
    }
    match usize::try_from(block_size) {
        Ok(b) if b >= 16 && b.is_power_of_two() => Ok((b, bits as u8)),
        _ => Err(op_err(format!("block_size must be a power of two of at least 16, got {block_size}"))),
    }
}

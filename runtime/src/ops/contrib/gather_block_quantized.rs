//! `GatherBlockQuantized`: `Gather` along axis 0 of a table whose last axis is packed `uint8`
//! codes (2, 4 or 8 bits, low bits first) quantized in blocks along that axis, dequantized as
//! `(q - zero_point) * scale` into the scales' type. A constant table is checked and taken over
//! at load (its codes stay shared with the initializer). Unlike onnxruntime, which writes
//! zeros for an index out of range, an out-of-range index is an error here.

use bytes::Bytes;

use super::blocks::{block_rows, check_block_bits, constant_tensor, u8_constant, u8_parts};
use super::DOMAIN;
use crate::error::{op_err, Result};
use crate::kernels::blockq::{BlockRows, BlockShape};
use crate::ops::cast::cast;
use crate::ops::common::{model_err, normalize_axis};
use crate::ops::{input, optional_input, Kernel, OpContext, Registry};
use crate::tensor::{DType, Tensor};

pub(super) fn register(reg: &mut Registry) {
    reg.register(DOMAIN, "GatherBlockQuantized", 1, factory);
}

/// Input positions.
const DATA: usize = 0;
const INDICES: usize = 1;
const SCALES: usize = 2;
const ZERO_POINTS: usize = 3;

/// The node's attributes.
#[derive(Clone, Copy)]
struct Params {
    block: usize,
    bits: u8,
    gather_axis: i64,
    quantize_axis: i64,
}

/// A checked table: its rows (every axis but the last flattened) and its logical shape.
struct Table {
    rows: BlockRows,
    /// The dequantized shape: the data's, with the last axis unpacked.
    shape: Vec<usize>,
    /// The scales' dtype, which the output takes.
    dtype: DType,
}

impl Params {
    /// The table from the data's shape and bytes, the scales and the zero points.
    fn prepare(&self, data_shape: &[usize], data: Bytes, scales: &Tensor, zp: Option<&Tensor>) -> Result<Table> {
        let rank = data_shape.len();
        let (gather, quantize) = (normalize_axis(self.gather_axis, rank)?, normalize_axis(self.quantize_axis, rank)?);
        if gather != 0 || quantize + 1 != rank || gather == quantize {
            return Err(op_err(format!(
                "uint8 data needs gather_axis 0 and quantize_axis the last of {rank} axes, different axes; got {} and {}",
                self.gather_axis, self.quantize_axis
            )));
        }
        let components = 8 / self.bits as usize;
        let packed = data_shape[rank - 1];
        let cols = packed * components;
        let per_row = cols.div_ceil(self.block);
        let mut blocks_shape = data_shape.to_vec();
        blocks_shape[rank - 1] = per_row;
        if !matches!(scales.dtype(), DType::F32 | DType::F16) || scales.shape() != blocks_shape {
            return Err(op_err(format!(
                "scales are {} {:?}, expected float32 or float16 {blocks_shape:?}",
                scales.dtype(),
                scales.shape()
            )));
        }
        if let Some(zp) = zp {
            blocks_shape[rank - 1] = per_row.div_ceil(components);
            if zp.dtype() != DType::U8 || zp.shape() != blocks_shape {
                return Err(op_err(format!(
                    "zero_points are {} {:?}, expected uint8 {blocks_shape:?}",
                    zp.dtype(),
                    zp.shape()
                )));
            }
        }
        let rows: usize = data_shape[..rank - 1].iter().product();
        let block_shape = BlockShape { rows, cols, block: self.block, bits: self.bits, row_bytes: packed };
        let mut shape = data_shape.to_vec();
        shape[rank - 1] = cols;
        Ok(Table { rows: block_rows(block_shape, data, scales, zp)?, shape, dtype: scales.dtype() })
    }
}

impl Table {
    /// The dequantized slices `table[i]` for each index, shaped `indices.shape + shape[1..]`.
    fn gather(&self, indices: &Tensor) -> Result<Tensor> {
        let ids = indices.to_i64_vec()?;
        let v = self.shape[0];
        let cols = self.rows.shape().cols;
        let inner = self.rows.shape().rows.checked_div(v).unwrap_or(0);
        let slice = inner * cols;
        let mut out = vec![0f32; ids.len() * slice];
        for (&id, o) in ids.iter().zip(out.chunks_exact_mut(slice.max(1))) {
            let r = if id < 0 { id + v as i64 } else { id };
            if r < 0 || r >= v as i64 {
                return Err(op_err(format!("index {id} is out of range for {v} rows")));
            }
            self.rows.decode_rows(r as usize * inner, o);
        }
        let mut shape = indices.shape().to_vec();
        shape.extend_from_slice(&self.shape[1..]);
        Ok(cast(&Tensor::from_vec(&shape, out)?, self.dtype))
    }
}

struct GatherBlockQuantized {
    params: Params,
    /// The table, when data, scales and zero points are constants.
    table: Option<Table>,
}

fn factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let (block, bits) = check_block_bits(ctx.attrs.int_or("block_size", 128), ctx.attrs.int_or("bits", 4))
        .map_err(|e| model_err(ctx, e))?;
    let params = Params {
        block,
        bits,
        gather_axis: ctx.attrs.int_or("gather_axis", 0),
        quantize_axis: ctx.attrs.int_or("quantize_axis", 1),
    };
    let zp_named = ctx.node.input.get(ZERO_POINTS).is_some_and(|n| !n.is_empty());
    let data = u8_constant(ctx, DATA, "data").map_err(|e| model_err(ctx, e))?;
    let zp = constant_tensor(ctx, ZERO_POINTS)?;
    let table = match (data, ctx.constant(SCALES)) {
        (Some((shape, bytes)), Some(scales)) if !zp_named || zp.is_some() => {
            Some(params.prepare(&shape, bytes, scales, zp.as_ref()).map_err(|e| model_err(ctx, e))?)
        }
        _ => None,
    };
    Ok(Box::new(GatherBlockQuantized { params, table }))
}

impl Kernel for GatherBlockQuantized {
    fn absorbs(&self, i: usize) -> bool {
        self.table.is_some() && i != INDICES
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let indices = input(inputs, INDICES)?;
        if let Some(table) = &self.table {
            return Ok(vec![table.gather(indices)?]);
        }
        let (shape, bytes) = u8_parts(input(inputs, DATA)?, "data")?;
        let scales = input(inputs, SCALES).map_err(|_| op_err("missing scales (input #2)"))?;
        let table = self.params.prepare(&shape, bytes, scales, optional_input(inputs, ZERO_POINTS))?;
        Ok(vec![table.gather(indices)?])
    }
}

#[cfg(test)]
mod tests {
    use half::f16;

    use crate::ops::testutil::{assert_close, assert_err, node, t, NodeSpec};

    /// A 4-bit table of 3 rows of 32 values in blocks of 16.
    fn q4() -> NodeSpec {
        node("GatherBlockQuantized").domain("com.microsoft").opset(1).int("block_size", 16).int("bits", 4)
    }

    #[test]
    fn gathers_and_dequantizes_rows() {
        // Row r holds codes r + 8 (low) and 8 (high) alternately.
        let data: Vec<u8> = (0..3u8).flat_map(|r| [0x80 | (r + 8); 16]).collect();
        let data = t(&[3, 16], &data);
        let scales = t(&[3, 2], &[1.0f32, 2.0, 1.0, 2.0, 1.0, 2.0]);
        let y = q4().run1(&[&data, &t(&[2], &[2i64, -3]), &scales]).unwrap();
        let row = |r: f32| -> Vec<f32> { (0..32).map(|c| if c % 2 == 1 { 0.0 } else { r * if c < 16 { 1.0 } else { 2.0 } }).collect() };
        assert_close(&y, &[2, 32], &[row(2.0), row(0.0)].concat());
        // Zero points 9 for every block: 8 - 9 = -1 on the odd values.
        let zp = t(&[3, 1], &[0x99u8; 3]);
        let y = q4().run1(&[&data, &t(&[1], &[1i32]), &scales, &zp]).unwrap();
        let want: Vec<f32> = (0..32).map(|c| if c < 16 { 1.0 } else { 2.0 } * if c % 2 == 1 { -1.0 } else { 0.0 }).collect();
        assert_close(&y, &[1, 32], &want);
        let half_scales = t(&[3, 2], &[f16::from_f32(1.0); 6]);
        let y = q4().run1(&[&data, &t(&[1], &[0i64]), &half_scales]).unwrap();
        assert_eq!(y.dtype(), crate::tensor::DType::F16);
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let data = t(&[3, 16], &[0u8; 48]);
        let scales = t(&[3, 2], &[1.0f32; 6]);
        let ids = t(&[1], &[0i64]);
        assert_err(q4().int("bits", 3).build().map(|_| ()), "bits must be 2, 4 or 8");
        assert_err(q4().int("block_size", 8).build().map(|_| ()), "block_size");
        assert_err(q4().run1(&[&data, &t(&[1], &[3i64]), &scales]), "index 3 is out of range");
        assert_err(q4().run1(&[&data, &ids, &t(&[3, 1], &[1.0f32; 3])]), "scales are float32 [3, 1]");
        assert_err(q4().run1(&[&data, &ids, &scales, &t(&[3, 2], &[0u8; 6])]), "zero_points are uint8 [3, 2]");
        assert_err(q4().int("quantize_axis", 0).run1(&[&data, &ids, &scales]), "quantize_axis");
        assert_err(q4().run_opt(&[Some(&data), Some(&ids), None]), "missing scales");
        assert_err(q4().run1(&[&t(&[3, 16], &[0i8; 48]), &ids, &scales]), "data must be uint8");
    }
}

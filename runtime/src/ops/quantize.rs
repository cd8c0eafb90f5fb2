//! QuantizeLinear and DequantizeLinear with 8- and 16-bit, int4/uint4, int2/uint2 and
//! float8/float4 data (and int32 input): per-tensor, per-axis and blocked (opset 21) scales and
//! zero points. Float math runs in float32; float8/float4 outputs round to nearest even and
//! saturate unless `saturate` = 0.

use super::cast::{cast, cast_with, Rounding};
use super::common::{contiguous, from_shape_vec, kernel, model_err, normalize_axis};
use super::{input, optional_input, Kernel, OpContext, Registry};
use crate::error::{op_err, Result};
use crate::tensor::{DType, Tensor};

/// How a scale (and its zero point) maps onto the elements of the data.
#[derive(Clone, Copy)]
struct Layout {
    axis: i64,
    block_size: i64,
}

impl Layout {
    fn parse(ctx: &OpContext) -> Result<Self> {
        let block_size = ctx.attrs.int_or("block_size", 0);
        if block_size < 0 {
            return Err(model_err(ctx, format!("block_size must not be negative, got {block_size}")));
        }
        Ok(Self { axis: ctx.attrs.int_or("axis", 1), block_size })
    }

    /// For each element of a tensor of `shape`, the index of its scale in a scale of
    /// `scale_shape`; fails when the shapes do not fit the per-tensor, per-axis or blocked rule.
    fn scale_index(&self, shape: &[usize], scale_shape: &[usize]) -> Result<Vec<usize>> {
        let len: usize = shape.iter().product();
        let count: usize = scale_shape.iter().product();
        if count == 1 && scale_shape.len() <= 1 {
            return Ok(vec![0; len]);
        }
        let axis = normalize_axis(self.axis, shape.len())?;
        let n = shape[axis];
        let inner: usize = shape[axis + 1..].iter().product();
        let bad = || op_err(format!("scale of shape {scale_shape:?} does not fit data {shape:?} (axis {axis}, block_size {})", self.block_size));
        if self.block_size == 0 {
            if scale_shape != [n] {
                return Err(bad());
            }
            return Ok((0..len).map(|e| (e / inner) % n).collect());
        }
        let bs = self.block_size as usize;
        let blocks = n.div_ceil(bs);
        let mut want = shape.to_vec();
        want[axis] = blocks;
        if scale_shape != want.as_slice() {
            return Err(bad());
        }
        Ok((0..len)
            .map(|e| {
                let (o, rest) = (e / (n * inner), e % (n * inner));
                let (a, i) = (rest / inner, rest % inner);
                (o * blocks + a / bs) * inner + i
            })
            .collect())
    }
}

/// Reads a float tensor as float32 values in row-major order.
fn floats(t: &Tensor) -> Result<Vec<f32>> {
    match t.dtype() {
        dtype if dtype.is_float() => Ok(contiguous(cast(t, DType::F32).as_f32()?).into_owned()),
        other => Err(op_err(format!("expected a float tensor, got {other}"))),
    }
}

/// Reads quantized data (8/16/32-bit, 4-bit and 2-bit integers, float8 and float4) as f64
/// values, all exact.
fn levels(t: &Tensor) -> Result<Vec<f64>> {
    match t.dtype() {
        DType::I8 | DType::U8 | DType::I16 | DType::U16 | DType::I32 | DType::I4 | DType::U4 | DType::I2 | DType::U2 => {
            Ok(contiguous(cast(t, DType::F64).array::<f64>()?).into_owned())
        }
        dtype if dtype.is_narrow_float() => Ok(contiguous(cast(t, DType::F64).array::<f64>()?).into_owned()),
        other => Err(op_err(format!(
            "quantized data must be an 8/16/32-bit, 4-bit or 2-bit integer or a float8/float4, got {other}"
        ))),
    }
}

/// A zero point fits a scale when it has its shape (a one-element zero point fits a scalar scale).
fn fits_scale(zero_point: &Tensor, scale: &Tensor) -> bool {
    zero_point.shape() == scale.shape() || (zero_point.len() == 1 && scale.len() == 1)
}

/// The (inclusive) range of a quantized dtype; the float8/float4 types saturate to their largest
/// finite value when cast, so their range is unbounded here.
pub(super) fn quant_range(dtype: DType) -> Result<(f32, f32)> {
    match dtype {
        DType::I4 => Ok((-8.0, 7.0)),
        DType::U4 => Ok((0.0, 15.0)),
        DType::I2 => Ok((-2.0, 1.0)),
        DType::U2 => Ok((0.0, 3.0)),
        dtype if dtype.is_narrow_float() && dtype != DType::F8E8M0 => Ok((f32::NEG_INFINITY, f32::INFINITY)),
        DType::U8 => Ok((0.0, 255.0)),
        DType::I8 => Ok((-128.0, 127.0)),
        DType::U16 => Ok((0.0, 65535.0)),
        DType::I16 => Ok((-32768.0, 32767.0)),
        other => Err(op_err(format!(
            "quantizing to {other} is not supported (8/16-bit, 4-bit and 2-bit integers, float8 and float4e2m1 are)"
        ))),
    }
}

/// `saturate(round_half_even(x / scale) + zero_point)` in the range of `dtype`.
pub(super) fn quantize_value(x: f32, scale: f32, zero_point: f32, (lo, hi): (f32, f32)) -> f32 {
    ((x / scale).round_ties_even() + zero_point).clamp(lo, hi)
}

/// Packs quantized values (integers already in the range of `dtype`) as `dtype`.
pub(super) fn quantized_tensor(shape: &[usize], q: Vec<f32>, dtype: DType) -> Result<Tensor> {
    Ok(cast(&from_shape_vec(shape, q)?.into(), dtype))
}

fn quantize(x: &Tensor, scale: &Tensor, zero_point: Option<&Tensor>, layout: Layout, output: DType, saturate: bool) -> Result<Tensor> {
    let dtype = zero_point.map_or(output, Tensor::dtype);
    let range = quant_range(dtype)?;
    let index = layout.scale_index(x.shape(), scale.shape())?;
    let scales = floats(scale)?;
    let zps: Vec<f32> = match zero_point {
        Some(z) if !fits_scale(z, scale) => {
            return Err(op_err(format!("zero point shape {:?} differs from scale shape {:?}", z.shape(), scale.shape())))
        }
        Some(z) => levels(z)?.into_iter().map(|v| v as f32).collect(),
        None => vec![0.0; scales.len()],
    };
    let values = floats(x)?.into_iter().zip(index);
    if dtype.is_narrow_float() {
        // No integer rounding: the cast rounds to the nearest float8/float4 value.
        let q: Vec<f32> = values.map(|(v, s)| v / scales[s] + zps[s]).collect();
        let rounding = Rounding { saturate, ..Rounding::DEFAULT };
        return Ok(cast_with(&from_shape_vec(x.shape(), q)?.into(), dtype, rounding));
    }
    let q = values.map(|(v, s)| quantize_value(v, scales[s], zps[s], range)).collect();
    quantized_tensor(x.shape(), q, dtype)
}

fn dequantize(x: &Tensor, scale: &Tensor, zero_point: Option<&Tensor>, layout: Layout) -> Result<Tensor> {
    let index = layout.scale_index(x.shape(), scale.shape())?;
    let scales = floats(scale)?;
    let zps = match zero_point {
        Some(z) if z.dtype() != x.dtype() || !fits_scale(z, scale) => {
            return Err(op_err(format!(
                "zero point ({} {:?}) must match the data type {} and the scale shape {:?}",
                z.dtype(),
                z.shape(),
                x.dtype(),
                scale.shape()
            )))
        }
        Some(z) => levels(z)?,
        None => vec![0.0; scales.len()],
    };
    let y: Vec<f32> = levels(x)?
        .into_iter()
        .zip(index)
        .map(|(v, s)| (v - zps[s]) as f32 * scales[s])
        .collect();
    Ok(cast(&from_shape_vec(x.shape(), y)?.into(), scale.dtype()))
}

fn quantize_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let layout = Layout::parse(ctx)?;
    let output = match ctx.attrs.int_or("output_dtype", 0) {
        0 => DType::U8,
        code => DType::from_onnx(code as i32).map_err(|e| model_err(ctx, e))?,
    };
    quant_range(output).map_err(|e| model_err(ctx, e))?;
    let saturate = ctx.attrs.int_or("saturate", 1) != 0;
    kernel(move |inputs| {
        Ok(vec![quantize(input(inputs, 0)?, input(inputs, 1)?, optional_input(inputs, 2), layout, output, saturate)?])
    })
}

fn dequantize_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let layout = Layout::parse(ctx)?;
    if ctx.attrs.int_or("output_dtype", 0) != 0 {
        return Err(model_err(ctx, "output_dtype is not supported (the output takes the scale's type)"));
    }
    kernel(move |inputs| Ok(vec![dequantize(input(inputs, 0)?, input(inputs, 1)?, optional_input(inputs, 2), layout)?]))
}

/// Registers QuantizeLinear and DequantizeLinear at every opset that changed them.
pub(super) fn register(reg: &mut Registry) {
    for since in [10, 13, 19, 21, 23, 24, 25, 28] {
        reg.register("", "QuantizeLinear", since, quantize_factory);
        reg.register("", "DequantizeLinear", since, dequantize_factory);
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::testutil::{assert_close, assert_err, node, t, values};

    #[test]
    fn sixteen_bit_quantization_saturates_to_its_range() {
        let x = t(&[3], &[1.0f32, -70000.0, 40000.0]);
        let q = node("QuantizeLinear").opset(21).run1(&[&x, &t(&[], &[0.5f32]), &t(&[], &[0i16])]).unwrap();
        assert_eq!(values::<i16>(&q).1, vec![2, i16::MIN, i16::MAX]);
        let q = node("QuantizeLinear").opset(21).run1(&[&x, &t(&[], &[1.0f32]), &t(&[], &[100u16])]).unwrap();
        assert_eq!(values::<u16>(&q).1, vec![101, 0, 40100]);
        let d = node("DequantizeLinear").opset(21).run1(&[&q, &t(&[], &[2.0f32]), &t(&[], &[100u16])]).unwrap();
        assert_close(&d, &[3], &[2.0, -200.0, 80000.0]);
    }

    #[test]
    fn per_tensor_per_axis_and_blocked_round_trip() {
        let x = t(&[2, 2], &[-1.0f32, 0.5, 2.5, 300.0]);
        let y = node("QuantizeLinear").opset(21).run1(&[&x, &t(&[], &[0.5f32]), &t(&[], &[10u8])]).unwrap();
        assert_eq!(values::<u8>(&y).1, vec![8, 11, 15, 255]);
        let scale = t(&[2], &[1.0f32, 2.0]);
        let y = node("QuantizeLinear").opset(21).int("axis", 1).run1(&[&x, &scale, &t(&[2], &[0i8, -1])]).unwrap();
        assert_eq!(values::<i8>(&y).1, vec![-1, -1, 2, 127]);
        let d = node("DequantizeLinear").opset(21).int("axis", 1).run1(&[&y, &scale, &t(&[2], &[0i8, -1])]).unwrap();
        assert_close(&d, &[2, 2], &[-1.0, 0.0, 2.0, 256.0]);
        let q = t(&[1, 3], &[1i8, 2, 3]);
        let d = node("DequantizeLinear").opset(21).int("axis", 1).int("block_size", 2).run1(&[&q, &t(&[1, 2], &[1.0f32, 10.0])]).unwrap();
        assert_close(&d, &[1, 3], &[1.0, 2.0, 30.0]);
    }

    #[test]
    fn mismatched_scales_and_types_are_errors() {
        let x = t(&[2, 2], &[1.0f32; 4]);
        assert_err(node("QuantizeLinear").opset(21).run1(&[&x, &t(&[3], &[1.0f32; 3])]), "does not fit");
        assert_err(node("QuantizeLinear").opset(21).int("block_size", 1).run1(&[&x, &t(&[2, 1], &[1.0f32; 2])]), "does not fit");
        assert_err(node("QuantizeLinear").opset(21).run1(&[&x, &t(&[], &[1.0f32]), &t(&[], &[1i64])]), "not supported");
        assert_err(node("DequantizeLinear").opset(21).run1(&[&x, &t(&[], &[1.0f32])]), "quantized data must be an 8/16/32-bit, 4-bit or 2-bit integer or a float8/float4");
        let q = t(&[1], &[1u8]);
        assert_err(node("DequantizeLinear").opset(21).run1(&[&q, &t(&[], &[1.0f32]), &t(&[], &[1i8])]), "must match");
        assert!(node("QuantizeLinear").opset(21).int("block_size", -1).build().is_err());
    }
}

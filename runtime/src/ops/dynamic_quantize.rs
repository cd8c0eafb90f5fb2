//! DynamicQuantizeLinear: float32 to uint8 with a scale and zero point computed from the
//! data's range (which always includes 0).

use super::common::{contiguous, kernel};
use super::quantize::{quant_range, quantize_value, quantized_tensor};
use super::{input, Registry};
use crate::error::Result;
use crate::tensor::{DType, Tensor};

/// Returns `[y, y_scale, y_zero_point]`. An all-zero input gets scale 0 and zero point 0,
/// and quantizes to 0 (the spec's formula would divide by zero).
fn dynamic_quantize(x: &Tensor) -> Result<Vec<Tensor>> {
    let data = contiguous(x.as_f32()?);
    let (lo, hi) = data.iter().fold((0.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let range = quant_range(DType::U8)?;
    let scale = (hi - lo) / (range.1 - range.0);
    let (q, zero_point) = if scale > 0.0 {
        let zp = (range.0 - lo / scale).round_ties_even().clamp(range.0, range.1);
        (data.iter().map(|&v| quantize_value(v, scale, zp, range)).collect(), zp)
    } else {
        (vec![0.0; data.len()], 0.0)
    };
    Ok(vec![
        quantized_tensor(x.shape(), q, DType::U8)?,
        Tensor::scalar(scale),
        Tensor::scalar(zero_point as u8),
    ])
}

/// Registers DynamicQuantizeLinear.
pub(super) fn register(reg: &mut Registry) {
    reg.register("", "DynamicQuantizeLinear", 11, |_| kernel(|inputs| dynamic_quantize(input(inputs, 0)?)));
}

#[cfg(test)]
mod tests {
    use crate::ops::testutil::{assert_err, node, t, values};

    #[test]
    fn range_includes_zero_and_all_zero_input() {
        let out = node("DynamicQuantizeLinear").outputs(3).opset(11).run(&[&t(&[3], &[1.0f32, 2.0, 5.1])]).unwrap();
        assert_eq!(values::<u8>(&out[0]).1, vec![50, 100, 255]);
        assert!((values::<f32>(&out[1]).1[0] - 0.02).abs() < 1e-6);
        assert_eq!(values::<u8>(&out[2]).1, vec![0]);
        let out = node("DynamicQuantizeLinear").outputs(3).opset(11).run(&[&t(&[2], &[-1.0f32, 1.0])]).unwrap();
        // In float32, 1 / (2/255) is just under 127.5, so the zero point rounds to 127.
        assert_eq!(values::<u8>(&out[0]).1, vec![0, 254]);
        assert_eq!(values::<u8>(&out[2]).1, vec![127]);
        let out = node("DynamicQuantizeLinear").outputs(3).opset(11).run(&[&t(&[2], &[0.0f32, 0.0])]).unwrap();
        assert_eq!(values::<u8>(&out[0]).1, vec![0, 0]);
        assert_err(node("DynamicQuantizeLinear").outputs(3).opset(11).run(&[&t(&[1], &[1i64])]), "float32");
    }
}

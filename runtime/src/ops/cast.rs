//! Cast and CastLike: conversion between any two dtypes with C semantics (floats truncate
//! toward zero into integers, integers wrap, anything nonzero is true). Floats round to the
//! nearest half-precision value, ties to even; NaN and infinities stay NaN and infinities.

use half::{bf16, f16};

use super::common::{kernel, model_err};
use super::{input, Kernel, OpContext, Registry};
use crate::error::Result;
use crate::tensor::{Array, DType, Element, Tensor};
use crate::with_array;

/// A value widened without loss: integers and bools to i128, floats to f64.
#[derive(Clone, Copy)]
enum Wide {
    Int(i128),
    Float(f64),
}

/// A dtype that can be cast from.
trait Source: Element {
    fn widen(self) -> Wide;
}

/// A dtype that can be cast to.
trait Target: Element {
    fn from_int(v: i128) -> Self;
    fn from_float(v: f64) -> Self;
}

macro_rules! int_like {
    ($($t:ty),*) => {$(
        impl Source for $t {
            fn widen(self) -> Wide { Wide::Int(self as i128) }
        }
        impl Target for $t {
            fn from_int(v: i128) -> Self { v as $t }
            fn from_float(v: f64) -> Self { v as $t }
        }
    )*};
}
int_like!(i64, i32, i16, i8, u64, u32, u16, u8);

macro_rules! float_like {
    ($($t:ty),*) => {$(
        impl Source for $t {
            fn widen(self) -> Wide { Wide::Float(self as f64) }
        }
        impl Target for $t {
            fn from_int(v: i128) -> Self { v as $t }
            fn from_float(v: f64) -> Self { v as $t }
        }
    )*};
}
float_like!(f32, f64);

/// The 16-bit floats, each with its rounding from float64.
macro_rules! half_like {
    ($($t:ty => $round:expr),*) => {$(
        impl Source for $t {
            fn widen(self) -> Wide { Wide::Float(self.to_f64()) }
        }
        impl Target for $t {
            fn from_int(v: i128) -> Self { Self::from_float(v as f64) }
            fn from_float(v: f64) -> Self { $round(v) }
        }
    )*};
}
// bfloat16 rounds from float32 (half's float64 path truncates instead of rounding), so a
// float32 source rounds once, to nearest even, as the spec asks.
half_like!(f16 => f16::from_f64, bf16 => |v: f64| bf16::from_f32(v as f32));

impl Source for bool {
    fn widen(self) -> Wide {
        Wide::Int(self as i128)
    }
}

impl Target for bool {
    fn from_int(v: i128) -> Self {
        v != 0
    }
    fn from_float(v: f64) -> Self {
        v != 0.0
    }
}

fn convert<S: Source, D: Target>(v: S) -> D {
    match v.widen() {
        Wide::Int(i) => D::from_int(i),
        Wide::Float(f) => D::from_float(f),
    }
}

fn cast_array<S: Source>(a: &Array<S>, to: DType) -> Tensor {
    match to {
        DType::F32 => a.mapv(convert::<S, f32>).into(),
        DType::F16 => a.mapv(convert::<S, f16>).into(),
        DType::F64 => a.mapv(convert::<S, f64>).into(),
        DType::I64 => a.mapv(convert::<S, i64>).into(),
        DType::I32 => a.mapv(convert::<S, i32>).into(),
        DType::I8 => a.mapv(convert::<S, i8>).into(),
        DType::U8 => a.mapv(convert::<S, u8>).into(),
        DType::BF16 => a.mapv(convert::<S, bf16>).into(),
        DType::I16 => a.mapv(convert::<S, i16>).into(),
        DType::U16 => a.mapv(convert::<S, u16>).into(),
        DType::U32 => a.mapv(convert::<S, u32>).into(),
        DType::U64 => a.mapv(convert::<S, u64>).into(),
        DType::Bool => a.mapv(convert::<S, bool>).into(),
    }
}

/// `t` converted to `to`; shares the buffer when it already has that dtype.
pub(crate) fn cast(t: &Tensor, to: DType) -> Tensor {
    if t.dtype() == to {
        return t.clone();
    }
    with_array!(t, a => cast_array(a, to))
}

fn cast_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let code = ctx.attrs.require_int("to")?;
    let to = i32::try_from(code)
        .map_err(|_| model_err(ctx, format!("'to' = {code} is not a data type")))
        .and_then(|c| DType::from_onnx(c).map_err(|e| model_err(ctx, e)))?;
    kernel(move |inputs| Ok(vec![cast(input(inputs, 0)?, to)]))
}

fn cast_like_factory(_: &OpContext) -> Result<Box<dyn Kernel>> {
    kernel(|inputs| Ok(vec![cast(input(inputs, 0)?, input(inputs, 1)?.dtype())]))
}

/// Registers Cast and CastLike.
pub(super) fn register(reg: &mut Registry) {
    reg.register("", "Cast", 6, cast_factory);
    reg.register("", "CastLike", 15, cast_like_factory);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::{assert_err, node, t, values};

    #[test]
    fn float_to_int_truncates_toward_zero() {
        let x = t(&[4], &[2.7f32, -2.7, 0.5, -0.0]);
        let y = node("Cast").int("to", 7).run1(&[&x]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![4], vec![2, -2, 0, 0]));
    }

    #[test]
    fn int_narrowing_wraps_and_bool_is_nonzero() {
        let x = t(&[3], &[300i64, -1, 0]);
        assert_eq!(values::<u8>(&cast(&x, DType::U8)).1, vec![44, 255, 0]);
        assert_eq!(values::<bool>(&cast(&x, DType::Bool)).1, vec![true, true, false]);
        let b = t(&[2], &[true, false]);
        assert_eq!(values::<f32>(&cast(&b, DType::F32)).1, vec![1.0, 0.0]);
    }

    #[test]
    fn float16_round_trips_and_large_ints_stay_exact() {
        let x = t(&[3], &[1.5f32, -0.25, 65504.0]);
        let h = node("Cast").int("to", 10).run1(&[&x]).unwrap();
        assert_eq!(h.dtype(), DType::F16);
        assert_eq!(values::<f32>(&cast(&h, DType::F32)).1, vec![1.5, -0.25, 65504.0]);
        let big = t(&[1], &[(1i64 << 53) + 1]);
        assert_eq!(values::<i64>(&cast(&cast(&big, DType::I32), DType::I64)).1, vec![1]);
        assert_eq!(values::<i64>(&cast(&big, DType::I64)).1, vec![(1i64 << 53) + 1]);
    }

    #[test]
    fn bfloat16_rounds_to_nearest_even_and_keeps_nan_and_infinities() {
        let bits = [0x3f80_8000u32, 0x3f81_8000, 0x3f80_8001, 0x7f7f_ffff, 0xff80_0000];
        let x = t(&[5], &bits.map(f32::from_bits));
        let y = node("Cast").int("to", 16).run1(&[&x]).unwrap();
        let got: Vec<u16> = values::<bf16>(&y).1.iter().map(|v| v.to_bits()).collect();
        // Ties go to the even mantissa, above-half rounds up, f32::MAX overflows to +inf.
        assert_eq!(got, vec![0x3f80, 0x3f82, 0x3f81, 0x7f80, 0xff80]);
        assert!(values::<bf16>(&cast(&t(&[1], &[f64::NAN]), DType::BF16)).1[0].is_nan());
        let wide = t(&[1], &[f32::from_bits(0x3f80_8000) as f64]);
        assert_eq!(values::<bf16>(&cast(&wide, DType::BF16)).1[0].to_bits(), 0x3f80);
        let back = cast(&t(&[2], &[bf16::from_f32(-2.75), bf16::from_f32(300.0)]), DType::I16);
        assert_eq!(values::<i16>(&back).1, vec![-2, 300]);
    }

    #[test]
    fn unsigned_wide_integers_cast_without_going_through_i64() {
        let x = t(&[2], &[u64::MAX, 1 << 63]);
        assert_eq!(values::<i64>(&cast(&x, DType::I64)).1, vec![-1, i64::MIN]);
        assert_eq!(values::<f64>(&cast(&x, DType::F64)).1, vec![u64::MAX as f64, 2f64.powi(63)]);
        assert_eq!(values::<u32>(&cast(&x, DType::U32)).1, vec![u32::MAX, 0]);
        let y = t(&[2], &[-1i64, 70000]);
        assert_eq!(values::<u64>(&cast(&y, DType::U64)).1, vec![u64::MAX, 70000]);
        assert_eq!(values::<u16>(&cast(&y, DType::U16)).1, vec![u16::MAX, 4464]);
        assert_eq!(values::<bool>(&cast(&t(&[2], &[0u32, 4]), DType::Bool)).1, vec![false, true]);
    }

    #[test]
    fn cast_like_takes_the_second_input_dtype() {
        let x = t(&[2], &[1i32, 2]);
        let like = t(&[1], &[0.0f64]);
        let y = node("CastLike").run1(&[&x, &like]).unwrap();
        assert_eq!(values::<f64>(&y).1, vec![1.0, 2.0]);
    }

    #[test]
    fn bad_or_missing_target_type_fails_at_build() {
        let x = t(&[1], &[1.0f32]);
        assert_err(node("Cast").int("to", 8).run1(&[&x]), "unsupported tensor data type 8");
        assert_err(node("Cast").run1(&[&x]), "'to' is required");
    }
}

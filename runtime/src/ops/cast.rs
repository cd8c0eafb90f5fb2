//! Cast and CastLike: conversion between any two dtypes with C semantics (floats truncate
//! toward zero into integers, integers wrap, anything nonzero is true). Floats round to the
//! nearest half-precision value, ties to even; NaN and infinities stay NaN and infinities.
//! The float8 types follow the `saturate` attribute and float8e8m0 its `round_mode`; int4 and
//! int2 wrap like the other integers (see [`crate::narrow`]).

use half::{bf16, f16};

use super::common::{kernel, model_err};
use super::{input, Kernel, OpContext, Registry};
use crate::error::Result;
use crate::narrow::{
    E8M0Rounding, Float4E2M1, Float8E4M3FN, Float8E4M3FNUZ, Float8E5M2, Float8E5M2FNUZ, Float8E8M0, Int2, Int4,
    NarrowElement, UInt2, UInt4,
};
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

/// How out-of-range values land in the narrow float types (Cast's `saturate` and `round_mode`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rounding {
    /// Out-of-range values clamp to the largest finite value (else become inf or NaN).
    pub(crate) saturate: bool,
    /// How float8e8m0 rounds.
    pub(crate) e8m0: E8M0Rounding,
}

impl Rounding {
    /// Cast's defaults: saturate, float8e8m0 rounds up.
    pub(crate) const DEFAULT: Rounding = Rounding { saturate: true, e8m0: E8M0Rounding::Up };
}

/// A dtype that can be cast to.
trait Target: Element {
    fn from_int(v: i128) -> Self;
    fn from_float(v: f64) -> Self;
    /// `from_float` under explicit rounding rules (only the narrow floats look at them).
    fn from_float_with(v: f64, _: Rounding) -> Self {
        Self::from_float(v)
    }
}

macro_rules! narrow_like {
    ($($t:ty),*) => {$(
        impl Source for $t {
            fn widen(self) -> Wide {
                if <$t>::DTYPE.is_narrow_float() { Wide::Float(self.to_f64()) } else { Wide::Int(self.to_f64() as i128) }
            }
        }
        impl Target for $t {
            fn from_int(v: i128) -> Self { NarrowElement::from_int(v) }
            fn from_float(v: f64) -> Self { <Self as Target>::from_float_with(v, Rounding::DEFAULT) }
            fn from_float_with(v: f64, r: Rounding) -> Self { NarrowElement::from_float(v, r.saturate) }
        }
    )*};
}
narrow_like!(Float8E4M3FN, Float8E4M3FNUZ, Float8E5M2, Float8E5M2FNUZ, Float4E2M1, Int4, UInt4, Int2, UInt2);

impl Source for Float8E8M0 {
    fn widen(self) -> Wide {
        Wide::Float(self.to_f64())
    }
}

impl Target for Float8E8M0 {
    fn from_int(v: i128) -> Self {
        <Self as Target>::from_float(v as f64)
    }
    fn from_float(v: f64) -> Self {
        <Self as Target>::from_float_with(v, Rounding::DEFAULT)
    }
    fn from_float_with(v: f64, r: Rounding) -> Self {
        Float8E8M0::round(v, r.saturate, r.e8m0)
    }
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

fn convert<S: Source, D: Target>(v: S, rounding: Rounding) -> D {
    match v.widen() {
        Wide::Int(i) => D::from_int(i),
        Wide::Float(f) => D::from_float_with(f, rounding),
    }
}

fn cast_array<S: Source>(a: &Array<S>, to: DType, r: Rounding) -> Tensor {
    fn to_type<S: Source, D: Target>(a: &Array<S>, r: Rounding) -> Tensor {
        a.mapv(|v| convert::<S, D>(v, r)).into()
    }
    match to {
        DType::F32 => to_type::<S, f32>(a, r),
        DType::F16 => to_type::<S, f16>(a, r),
        DType::F64 => to_type::<S, f64>(a, r),
        DType::I64 => to_type::<S, i64>(a, r),
        DType::I32 => to_type::<S, i32>(a, r),
        DType::I8 => to_type::<S, i8>(a, r),
        DType::U8 => to_type::<S, u8>(a, r),
        DType::BF16 => to_type::<S, bf16>(a, r),
        DType::I16 => to_type::<S, i16>(a, r),
        DType::U16 => to_type::<S, u16>(a, r),
        DType::U32 => to_type::<S, u32>(a, r),
        DType::U64 => to_type::<S, u64>(a, r),
        DType::Bool => to_type::<S, bool>(a, r),
        DType::F8E4M3FN => to_type::<S, Float8E4M3FN>(a, r),
        DType::F8E4M3FNUZ => to_type::<S, Float8E4M3FNUZ>(a, r),
        DType::F8E5M2 => to_type::<S, Float8E5M2>(a, r),
        DType::F8E5M2FNUZ => to_type::<S, Float8E5M2FNUZ>(a, r),
        DType::F8E8M0 => to_type::<S, Float8E8M0>(a, r),
        DType::F4E2M1 => to_type::<S, Float4E2M1>(a, r),
        DType::I4 => to_type::<S, Int4>(a, r),
        DType::U4 => to_type::<S, UInt4>(a, r),
        DType::I2 => to_type::<S, Int2>(a, r),
        DType::U2 => to_type::<S, UInt2>(a, r),
    }
}

/// `t` converted to `to`; shares the buffer when it already has that dtype.
pub(crate) fn cast(t: &Tensor, to: DType) -> Tensor {
    cast_with(t, to, Rounding::DEFAULT)
}

/// `t` converted to `to` under `rounding`.
pub(crate) fn cast_with(t: &Tensor, to: DType, rounding: Rounding) -> Tensor {
    if t.dtype() == to {
        return t.clone();
    }
    with_array!(t, a => cast_array(a, to, rounding))
}

/// Cast's and CastLike's `saturate` and `round_mode` attributes.
fn rounding(ctx: &OpContext) -> Result<Rounding> {
    let mode = ctx.attrs.string("round_mode")?.unwrap_or_else(|| "up".to_string());
    let e8m0 = E8M0Rounding::parse(&mode)
        .ok_or_else(|| model_err(ctx, format!("round_mode must be up, down or nearest, got '{mode}'")))?;
    Ok(Rounding { saturate: ctx.attrs.int_or("saturate", 1) != 0, e8m0 })
}

fn cast_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let code = ctx.attrs.require_int("to")?;
    let to = i32::try_from(code)
        .map_err(|_| model_err(ctx, format!("'to' = {code} is not a data type")))
        .and_then(|c| DType::from_onnx(c).map_err(|e| model_err(ctx, e)))?;
    let r = rounding(ctx)?;
    kernel(move |inputs| Ok(vec![cast_with(input(inputs, 0)?, to, r)]))
}

fn cast_like_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let r = rounding(ctx)?;
    kernel(move |inputs| Ok(vec![cast_with(input(inputs, 0)?, input(inputs, 1)?.dtype(), r)]))
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

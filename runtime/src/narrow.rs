//! The sub-byte and 8-bit element types (float8 in its four flavours, float8e8m0, float4e2m1,
//! int4/uint4, int2/uint2). Every value is exact in a wider type, so each element holds its
//! value widened (f32 for the float formats, i8 for the integer ones) and only the element type
//! (its [`DType`]) says which format it is: conversion from and to the stored bits, with the
//! ONNX rounding (round to nearest, ties to even) and saturation rules, lives here.

use crate::error::{op_err, Result};
use crate::tensor::{Array, DType, Element, Tensor};

/// How a small float format spends its top exponent and its NaN codes.
#[derive(Clone, Copy, PartialEq)]
enum Specials {
    /// IEEE-like (float8e5m2): the top exponent holds infinities and NaNs.
    Ieee,
    /// "fn" (float8e4m3fn): no infinities, only S.1111.111 is NaN.
    Finite,
    /// "fnuz" (float8e4m3fnuz, float8e5m2fnuz): no infinities, no negative zero, 0x80 is NaN.
    UnsignedZero,
    /// float4e2m1: every code is a finite number.
    AllFinite,
}

/// The bit layout of a small sign-exponent-mantissa float.
#[derive(Clone, Copy)]
struct Format {
    exp_bits: u32,
    man_bits: u32,
    bias: i32,
    specials: Specials,
}

const E4M3FN: Format = Format { exp_bits: 4, man_bits: 3, bias: 7, specials: Specials::Finite };
const E4M3FNUZ: Format = Format { exp_bits: 4, man_bits: 3, bias: 8, specials: Specials::UnsignedZero };
const E5M2: Format = Format { exp_bits: 5, man_bits: 2, bias: 15, specials: Specials::Ieee };
const E5M2FNUZ: Format = Format { exp_bits: 5, man_bits: 2, bias: 16, specials: Specials::UnsignedZero };
const E2M1: Format = Format { exp_bits: 2, man_bits: 1, bias: 1, specials: Specials::AllFinite };

impl Format {
    fn sign_bit(self) -> u32 {
        1 << (self.exp_bits + self.man_bits)
    }

    /// The largest finite magnitude code.
    fn max_code(self) -> u32 {
        let all = self.sign_bit() - 1;
        match self.specials {
            Specials::Ieee => ((1 << self.exp_bits) - 1) << self.man_bits,
            Specials::Finite => all,
            Specials::UnsignedZero | Specials::AllFinite => all + 1,
        }
        .saturating_sub(1)
    }

    fn nan_code(self, negative: bool) -> u32 {
        let sign = if negative { self.sign_bit() } else { 0 };
        match self.specials {
            Specials::Ieee => sign | (((1 << self.exp_bits) - 1) << self.man_bits) | (1 << (self.man_bits - 1)),
            Specials::Finite => sign | (self.sign_bit() - 1),
            Specials::UnsignedZero => self.sign_bit(),
            // No NaN: ml_dtypes (the ONNX reference) gives negative zero.
            Specials::AllFinite => self.sign_bit(),
        }
    }

    fn decode(self, bits: u32) -> f32 {
        let negative = bits & self.sign_bit() != 0;
        let magnitude = bits & (self.sign_bit() - 1);
        let exp = magnitude >> self.man_bits;
        let man = magnitude & ((1 << self.man_bits) - 1);
        let top = (1 << self.exp_bits) - 1;
        let special = match self.specials {
            Specials::UnsignedZero if bits == self.sign_bit() => Some(f32::NAN),
            Specials::Finite if magnitude == self.sign_bit() - 1 => Some(f32::NAN),
            Specials::Ieee if exp == top => Some(if man == 0 { f32::INFINITY } else { f32::NAN }),
            _ => None,
        };
        let value = special.unwrap_or_else(|| {
            let man = man as f32 / (1u32 << self.man_bits) as f32;
            if exp == 0 {
                man * 2f32.powi(1 - self.bias)
            } else {
                (1.0 + man) * 2f32.powi(exp as i32 - self.bias)
            }
        });
        if negative {
            -value
        } else {
            value
        }
    }

    /// The nearest magnitude code to `a` (finite, not negative), ties to the even code; may
    /// exceed [`Format::max_code`] when `a` overflows.
    fn round_magnitude(self, a: f32) -> u32 {
        let emin = 1 - self.bias;
        let exponent = if a == 0.0 { emin } else { ((a.to_bits() >> 23) as i32 - 127).max(emin) };
        let quantum = 2f64.powi(exponent - self.man_bits as i32);
        let steps = (a as f64 / quantum).round_ties_even();
        if steps > f64::from(1u32 << 16) {
            return u32::MAX;
        }
        ((exponent - emin) as u32) * (1 << self.man_bits) + steps as u32
    }

    /// The code of `x`: round to nearest even; out of range (and infinities) clamps to the
    /// largest finite value when `saturate`, else becomes infinity or NaN as the format has.
    fn encode(self, x: f32, saturate: bool) -> u32 {
        let negative = x.is_sign_negative();
        if x.is_nan() {
            return self.nan_code(negative);
        }
        let rounded = if x.is_infinite() { u32::MAX } else { self.round_magnitude(x.abs()) };
        let magnitude = if rounded <= self.max_code() {
            rounded
        } else if saturate || self.specials == Specials::AllFinite {
            self.max_code()
        } else if self.specials == Specials::Ieee {
            self.max_code() + 1
        } else {
            return self.nan_code(negative);
        };
        let unsigned_zero = self.specials == Specials::UnsignedZero && magnitude == 0;
        if negative && !unsigned_zero {
            magnitude | self.sign_bit()
        } else {
            magnitude
        }
    }
}

/// How Cast rounds into float8e8m0 (its `round_mode` attribute).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum E8M0Rounding {
    /// Toward +infinity (the default).
    Up,
    /// Toward zero.
    Down,
    /// To nearest.
    Nearest,
}

impl E8M0Rounding {
    /// Parses the attribute value.
    pub fn parse(mode: &str) -> Option<Self> {
        match mode {
            "up" => Some(Self::Up),
            "down" => Some(Self::Down),
            "nearest" => Some(Self::Nearest),
            _ => None,
        }
    }
}

/// The float8e8m0 code of `x` (a power of two, its sign ignored), as the ONNX reference
/// computes it from the float32 bits.
fn encode_e8m0(x: f32, saturate: bool, rounding: E8M0Rounding) -> u8 {
    let bits = x.to_bits();
    let exponent = (bits >> 23) & 0xff;
    if exponent == 0xff {
        return 0xff;
    }
    let round_up = match rounding {
        E8M0Rounding::Down => false,
        E8M0Rounding::Up => bits & 0x7f_ffff != 0,
        E8M0Rounding::Nearest => {
            let guard = bits & 0x40_0000 != 0;
            guard && (bits & 0x3f_ffff != 0 || exponent > 0)
        }
    };
    let bump = round_up && !(saturate && exponent == 0xfe);
    (exponent + bump as u32) as u8
}

fn decode_e8m0(code: u8) -> f32 {
    match code {
        0xff => f32::NAN,
        0 => f32::from_bits(0x40_0000),
        c => f32::from_bits(u32::from(c) << 23),
    }
}

/// Conversions of one narrow element type from and to its stored bits and wide values.
pub trait NarrowElement: Element {
    /// Width of one element in bits (its packing in `raw_data`).
    const BITS: usize;
    /// The element of a stored code (the low [`Self::BITS`] bits of `code`).
    fn from_bits(code: u8) -> Self;
    /// The stored code.
    fn to_bits(self) -> u8;
    /// The value, widened exactly.
    fn to_f64(self) -> f64;
    /// The element nearest a float, per Cast's rules (`saturate` only matters to float8).
    fn from_float(v: f64, saturate: bool) -> Self;
    /// The element of an integer: integer types wrap; float types round.
    fn from_int(v: i128) -> Self;
}

macro_rules! narrow_float {
    ($($name:ident, $dtype:ident, $doc:literal, $format:expr;)*) => {$(
        #[doc = $doc]
        #[derive(Copy, Clone, Debug, Default, PartialEq, PartialOrd)]
        pub struct $name(pub f32);
        impl NarrowElement for $name {
            const BITS: usize = 1 + ($format.exp_bits + $format.man_bits) as usize;
            fn from_bits(code: u8) -> Self { Self($format.decode(u32::from(code))) }
            fn to_bits(self) -> u8 { $format.encode(self.0, false) as u8 }
            fn to_f64(self) -> f64 { f64::from(self.0) }
            fn from_float(v: f64, saturate: bool) -> Self {
                Self::from_bits($format.encode(v as f32, saturate) as u8)
            }
            fn from_int(v: i128) -> Self { Self::from_float(v as f64, true) }
        }
        narrow_element!($name, $dtype);
    )*};
}

macro_rules! narrow_int {
    ($($name:ident, $dtype:ident, $doc:literal, $bits:expr, $signed:expr;)*) => {$(
        #[doc = $doc]
        #[derive(Copy, Clone, Debug, Default, PartialEq, PartialOrd)]
        pub struct $name(pub i8);
        impl NarrowElement for $name {
            const BITS: usize = $bits;
            fn from_bits(code: u8) -> Self { Self::from_int(i128::from(code)) }
            fn to_bits(self) -> u8 { (self.0 as u8) & ((1u8 << $bits) - 1) }
            fn to_f64(self) -> f64 { f64::from(self.0) }
            /// Truncates toward zero; out of range (and NaN) gives 0, as the ONNX reference does.
            fn from_float(v: f64, _: bool) -> Self {
                let t = v.trunc();
                let lo = if $signed { -f64::from(1u8 << ($bits - 1)) } else { 0.0 };
                let hi = if $signed { f64::from((1u8 << ($bits - 1)) - 1) } else { f64::from((1u8 << $bits) - 1) };
                Self(if t >= lo && t <= hi { t as i8 } else { 0 })
            }
            fn from_int(v: i128) -> Self {
                let low = (v as i64 as u8) & ((1u8 << $bits) - 1);
                let negative = $signed && low >> ($bits - 1) != 0;
                Self(if negative { (low | !((1u8 << $bits) - 1)) as i8 } else { low as i8 })
            }
        }
        narrow_element!($name, $dtype);
    )*};
}

macro_rules! narrow_element {
    ($name:ident, $dtype:ident) => {
        impl Element for $name {
            const DTYPE: DType = DType::$dtype;
            fn wrap(array: Array<Self>) -> Tensor {
                Tensor::Narrow(NarrowTensor::$dtype(array))
            }
            fn unwrap(tensor: &Tensor) -> Option<&Array<Self>> {
                match tensor {
                    Tensor::Narrow(NarrowTensor::$dtype(a)) => Some(a),
                    _ => None,
                }
            }
        }
    };
}

narrow_float! {
    Float8E4M3FN, F8E4M3FN, "A float8e4m3fn value.", E4M3FN;
    Float8E4M3FNUZ, F8E4M3FNUZ, "A float8e4m3fnuz value.", E4M3FNUZ;
    Float8E5M2, F8E5M2, "A float8e5m2 value.", E5M2;
    Float8E5M2FNUZ, F8E5M2FNUZ, "A float8e5m2fnuz value.", E5M2FNUZ;
    Float4E2M1, F4E2M1, "A float4e2m1 value.", E2M1;
}

narrow_int! {
    Int4, I4, "An int4 value.", 4, true;
    UInt4, U4, "A uint4 value.", 4, false;
    Int2, I2, "An int2 value.", 2, true;
    UInt2, U2, "A uint2 value.", 2, false;
}

/// A float8e8m0 value: a power of two (or NaN).
#[derive(Copy, Clone, Debug, Default, PartialEq, PartialOrd)]
pub struct Float8E8M0(pub f32);

impl Float8E8M0 {
    /// The value nearest `v` by Cast's `round_mode`.
    pub fn round(v: f64, saturate: bool, rounding: E8M0Rounding) -> Self {
        Self(decode_e8m0(encode_e8m0(v as f32, saturate, rounding)))
    }
}

impl NarrowElement for Float8E8M0 {
    const BITS: usize = 8;
    fn from_bits(code: u8) -> Self {
        Self(decode_e8m0(code))
    }
    fn to_bits(self) -> u8 {
        encode_e8m0(self.0, false, E8M0Rounding::Down)
    }
    fn to_f64(self) -> f64 {
        f64::from(self.0)
    }
    fn from_float(v: f64, saturate: bool) -> Self {
        Self::round(v, saturate, E8M0Rounding::Up)
    }
    fn from_int(v: i128) -> Self {
        Self::from_float(v as f64, true)
    }
}
narrow_element!(Float8E8M0, F8E8M0);

/// A tensor of one of the narrow element types.
#[derive(Clone, Debug, PartialEq)]
pub enum NarrowTensor {
    /// float8e4m3fn data.
    F8E4M3FN(Array<Float8E4M3FN>),
    /// float8e4m3fnuz data.
    F8E4M3FNUZ(Array<Float8E4M3FNUZ>),
    /// float8e5m2 data.
    F8E5M2(Array<Float8E5M2>),
    /// float8e5m2fnuz data.
    F8E5M2FNUZ(Array<Float8E5M2FNUZ>),
    /// float8e8m0 data.
    F8E8M0(Array<Float8E8M0>),
    /// float4e2m1 data.
    F4E2M1(Array<Float4E2M1>),
    /// int4 data.
    I4(Array<Int4>),
    /// uint4 data.
    U4(Array<UInt4>),
    /// int2 data.
    I2(Array<Int2>),
    /// uint2 data.
    U2(Array<UInt2>),
}

/// Runs `$body` with `$arr` bound to the inner array of a [`NarrowTensor`], whatever its type.
#[macro_export]
macro_rules! with_narrow_array {
    ($tensor:expr, $arr:ident => $body:expr) => {
        match $tensor {
            $crate::narrow::NarrowTensor::F8E4M3FN($arr) => $body,
            $crate::narrow::NarrowTensor::F8E4M3FNUZ($arr) => $body,
            $crate::narrow::NarrowTensor::F8E5M2($arr) => $body,
            $crate::narrow::NarrowTensor::F8E5M2FNUZ($arr) => $body,
            $crate::narrow::NarrowTensor::F8E8M0($arr) => $body,
            $crate::narrow::NarrowTensor::F4E2M1($arr) => $body,
            $crate::narrow::NarrowTensor::I4($arr) => $body,
            $crate::narrow::NarrowTensor::U4($arr) => $body,
            $crate::narrow::NarrowTensor::I2($arr) => $body,
            $crate::narrow::NarrowTensor::U2($arr) => $body,
        }
    };
}

impl NarrowTensor {
    /// The element type.
    pub fn dtype(&self) -> DType {
        fn of<T: Element>(_: &Array<T>) -> DType {
            T::DTYPE
        }
        with_narrow_array!(self, a => of(a))
    }

    /// Every value widened to f64 (exact), in logical order.
    pub fn to_f64(&self) -> ndarray::ArrayD<f64> {
        with_narrow_array!(self, a => a.mapv(NarrowElement::to_f64))
    }

    /// The stored codes packed as in ONNX `raw_data`: sub-byte elements low bits first.
    pub fn to_raw(&self) -> Vec<u8> {
        fn pack<T: NarrowElement>(a: &Array<T>) -> Vec<u8> {
            let per_byte = 8 / T::BITS;
            let codes: Vec<u8> = a.iter().map(|v| v.to_bits()).collect();
            codes
                .chunks(per_byte)
                .map(|c| c.iter().enumerate().fold(0u8, |b, (i, &v)| b | (v << (i * T::BITS))))
                .collect()
        }
        with_narrow_array!(self, a => pack(a))
    }
}

/// Bytes that `count` packed elements of `bits` bits take.
pub fn packed_len(bits: usize, count: usize) -> usize {
    (count * bits).div_ceil(8)
}

/// Unpacks `count` codes of `T::BITS` bits each from packed bytes (low bits first).
pub fn unpack<T: NarrowElement>(raw: &[u8], count: usize) -> Vec<T> {
    let per_byte = 8 / T::BITS;
    let mask = ((1u16 << T::BITS) - 1) as u8;
    (0..count).map(|i| T::from_bits((raw[i / per_byte] >> ((i % per_byte) * T::BITS)) & mask)).collect()
}

impl NarrowTensor {
    /// Decodes packed codes (raw_data, or int32_data read one byte per entry) into a tensor of
    /// `dtype`; `None` when `dtype` is not a narrow type.
    pub fn unpack(dtype: DType, shape: &[usize], raw: &[u8]) -> Option<Result<Tensor>> {
        fn build<T: NarrowElement>(shape: &[usize], raw: &[u8]) -> Result<Tensor> {
            let count: usize = shape.iter().product();
            if raw.len() != packed_len(T::BITS, count) {
                return Err(op_err(format!(
                    "shape {shape:?} of {} needs {} packed bytes, got {}",
                    T::DTYPE,
                    packed_len(T::BITS, count),
                    raw.len()
                )));
            }
            Tensor::from_vec(shape, unpack::<T>(raw, count))
        }
        Some(match dtype {
            DType::F8E4M3FN => build::<Float8E4M3FN>(shape, raw),
            DType::F8E4M3FNUZ => build::<Float8E4M3FNUZ>(shape, raw),
            DType::F8E5M2 => build::<Float8E5M2>(shape, raw),
            DType::F8E5M2FNUZ => build::<Float8E5M2FNUZ>(shape, raw),
            DType::F8E8M0 => build::<Float8E8M0>(shape, raw),
            DType::F4E2M1 => build::<Float4E2M1>(shape, raw),
            DType::I4 => build::<Int4>(shape, raw),
            DType::U4 => build::<UInt4>(shape, raw),
            DType::I2 => build::<Int2>(shape, raw),
            DType::U2 => build::<UInt2>(shape, raw),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs of the tables below, whose codes ml_dtypes (the ONNX reference) gives for
    /// a non-saturating cast from float32.
    const INPUTS: [f32; 21] = [
        f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 1e9, -1e9, 7.0, 6.5, 5.0, -5.0, 0.25, 0.2, 1e-30,
        -1e-30, 464.0, 465.0, 61440.0, 17.7, -9.5, -3.5, 2.5,
    ];

    fn codes(format: Format) -> Vec<u32> {
        INPUTS.iter().map(|&x| format.encode(x, false)).collect()
    }

    #[test]
    fn float8_and_float4_encode_like_the_reference() {
        let e4m3fn = [127, 127, 255, 128, 127, 255, 78, 77, 74, 202, 40, 37, 0, 128, 126, 127, 127, 89, 210, 198, 66];
        let e4m3fnuz = [128, 128, 128, 0, 128, 128, 86, 85, 82, 210, 48, 45, 0, 0, 128, 128, 128, 97, 218, 206, 74];
        let e5m2 = [126, 124, 252, 128, 124, 252, 71, 70, 69, 197, 52, 50, 0, 128, 95, 95, 124, 76, 201, 195, 65];
        let e5m2fnuz = [128, 128, 128, 0, 128, 128, 75, 74, 73, 201, 56, 54, 0, 0, 99, 99, 128, 80, 205, 199, 69];
        let e2m1 = [8, 7, 15, 8, 7, 15, 7, 7, 6, 14, 0, 0, 0, 8, 7, 7, 7, 7, 15, 14, 4];
        assert_eq!(codes(E4M3FN), e4m3fn);
        assert_eq!(codes(E4M3FNUZ), e4m3fnuz);
        assert_eq!(codes(E5M2), e5m2);
        assert_eq!(codes(E5M2FNUZ), e5m2fnuz);
        assert_eq!(codes(E2M1), e2m1);
    }

    #[test]
    fn saturation_clamps_overflow_and_infinities_but_keeps_nan() {
        assert_eq!(E4M3FN.decode(E4M3FN.encode(1e9, true)), 448.0);
        assert_eq!(E5M2.decode(E5M2.encode(f32::NEG_INFINITY, true)), -57344.0);
        assert_eq!(E4M3FNUZ.decode(E4M3FNUZ.encode(f32::INFINITY, true)), 240.0);
        assert!(E5M2FNUZ.decode(E5M2FNUZ.encode(f32::NAN, true)).is_nan());
    }

    #[test]
    fn every_float8_code_decodes_and_encodes_back() {
        for format in [E4M3FN, E4M3FNUZ, E5M2, E5M2FNUZ] {
            for code in 0..256u32 {
                let value = format.decode(code);
                if value.is_nan() {
                    assert!(format.decode(format.encode(value, false)).is_nan());
                } else {
                    assert_eq!(format.encode(value, false), code, "{value}");
                }
            }
        }
    }

    #[test]
    fn e8m0_follows_round_mode_and_saturate() {
        let r = |x, mode| Float8E8M0::round(x, true, mode).0;
        assert_eq!(r(3.0, E8M0Rounding::Up), 4.0);
        assert_eq!(r(3.0, E8M0Rounding::Down), 2.0);
        assert_eq!(r(3.0, E8M0Rounding::Nearest), 4.0);
        assert_eq!(r(2.5, E8M0Rounding::Nearest), 2.0);
        assert_eq!(r(f64::from(f32::MAX), E8M0Rounding::Up), 2f32.powi(127));
        assert!(Float8E8M0::round(f64::from(f32::MAX), false, E8M0Rounding::Up).0.is_nan());
        assert_eq!(Float8E8M0::from_bits(0).0, 2f32.powi(-127));
    }

    #[test]
    fn sub_byte_types_pack_low_bits_first() {
        let t = NarrowTensor::unpack(DType::I4, &[3], &[0x9f, 0x07]).unwrap().unwrap();
        let Tensor::Narrow(n) = &t else { panic!("not narrow: {t:?}") };
        assert_eq!(n.to_f64().into_raw_vec_and_offset().0, vec![-1.0, -7.0, 7.0]);
        assert_eq!(n.to_raw(), vec![0x9f, 0x07]);
        let t = NarrowTensor::unpack(DType::U2, &[5], &[0b1110_0100, 0b11]).unwrap().unwrap();
        let Tensor::Narrow(n) = &t else { panic!("not narrow: {t:?}") };
        assert_eq!(n.to_f64().into_raw_vec_and_offset().0, vec![0.0, 1.0, 2.0, 3.0, 3.0]);
        assert!(NarrowTensor::unpack(DType::U4, &[3], &[0]).unwrap().is_err());
        assert!(NarrowTensor::unpack(DType::F32, &[1], &[0]).is_none());
    }

    #[test]
    fn floats_out_of_an_int_range_become_zero() {
        assert_eq!(Int4::from_float(-8.9, true), Int4(-8));
        assert_eq!(Int4::from_float(8.0, true), Int4(0));
        assert_eq!(UInt2::from_float(-1.0, true), UInt2(0));
        assert_eq!(Int2::from_int(3), Int2(-1));
    }
}

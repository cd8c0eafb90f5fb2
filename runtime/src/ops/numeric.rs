//! Numeric element traits and the dtype dispatch shared by the arithmetic op families.
//!
//! [`Num`] covers every numeric dtype (float16 and bfloat16 compute through float32, integers
//! wrap like C); [`Float`] covers float32 and float64, and [`on_float`] runs a float
//! computation on any float tensor, the 16-bit floats going through float32.

use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

use half::{bf16, f16};
use ndarray::{ArrayD, ArrayViewD};

use crate::error::{op_err, Result};
use crate::tensor::{Element, Tensor};

/// Arithmetic on a numeric element type. Integer arithmetic wraps; integer division by zero
/// must be ruled out by the caller.
pub(crate) trait Num: Element {
    /// True for integer types.
    const INTEGER: bool;
    /// `self + rhs`.
    fn add(self, rhs: Self) -> Self;
    /// `self - rhs`.
    fn sub(self, rhs: Self) -> Self;
    /// `self * rhs`.
    fn mul(self, rhs: Self) -> Self;
    /// `self / rhs`, truncating toward zero for integers.
    fn div(self, rhs: Self) -> Self;
    /// `-self`.
    fn neg(self) -> Self;
    /// `|self|`.
    fn abs(self) -> Self;
    /// The larger value; NaN if either is NaN.
    fn max(self, rhs: Self) -> Self;
    /// The smaller value; NaN if either is NaN.
    fn min(self, rhs: Self) -> Self;
    /// The smallest value of the type (-inf for floats): the identity of `max`.
    fn lowest() -> Self;
    /// The largest value of the type (+inf for floats): the identity of `min`.
    fn highest() -> Self;
    /// `n` converted to the type.
    fn from_usize(n: usize) -> Self;
    /// True for zero.
    fn is_zero(self) -> bool {
        self == Self::default()
    }
}

macro_rules! impl_int {
    ($($t:ty),*) => {$(
        impl Num for $t {
            const INTEGER: bool = true;
            fn add(self, rhs: Self) -> Self { self.wrapping_add(rhs) }
            fn sub(self, rhs: Self) -> Self { self.wrapping_sub(rhs) }
            fn mul(self, rhs: Self) -> Self { self.wrapping_mul(rhs) }
            fn div(self, rhs: Self) -> Self { if rhs == 0 { 0 } else { self.wrapping_div(rhs) } }
            fn neg(self) -> Self { self.wrapping_neg() }
            fn abs(self) -> Self { if self < Self::default() { self.wrapping_neg() } else { self } }
            fn max(self, rhs: Self) -> Self { Ord::max(self, rhs) }
            fn min(self, rhs: Self) -> Self { Ord::min(self, rhs) }
            fn lowest() -> Self { <$t>::MIN }
            fn highest() -> Self { <$t>::MAX }
            fn from_usize(n: usize) -> Self { n as $t }
        }
    )*};
}

impl_int!(i64, i32, i16, i8, u64, u32, u16, u8);

macro_rules! impl_float_num {
    ($($t:ty),*) => {$(
        impl Num for $t {
            const INTEGER: bool = false;
            fn add(self, rhs: Self) -> Self { self + rhs }
            fn sub(self, rhs: Self) -> Self { self - rhs }
            fn mul(self, rhs: Self) -> Self { self * rhs }
            fn div(self, rhs: Self) -> Self { self / rhs }
            fn neg(self) -> Self { -self }
            fn abs(self) -> Self { <$t>::abs(self) }
            fn max(self, rhs: Self) -> Self { if self.is_nan() || self > rhs { self } else { rhs } }
            fn min(self, rhs: Self) -> Self { if self.is_nan() || self < rhs { self } else { rhs } }
            fn lowest() -> Self { <$t>::NEG_INFINITY }
            fn highest() -> Self { <$t>::INFINITY }
            fn from_usize(n: usize) -> Self { n as $t }
        }
    )*};
}

impl_float_num!(f32, f64);

/// The 16-bit floats: arithmetic rounds each float32 result once.
macro_rules! impl_half_num {
    ($($t:ty),*) => {$(
        impl Num for $t {
            const INTEGER: bool = false;
            fn add(self, rhs: Self) -> Self { <$t>::from_f32(self.to_f32() + rhs.to_f32()) }
            fn sub(self, rhs: Self) -> Self { <$t>::from_f32(self.to_f32() - rhs.to_f32()) }
            fn mul(self, rhs: Self) -> Self { <$t>::from_f32(self.to_f32() * rhs.to_f32()) }
            fn div(self, rhs: Self) -> Self { <$t>::from_f32(self.to_f32() / rhs.to_f32()) }
            fn neg(self) -> Self { -self }
            fn abs(self) -> Self { <$t>::from_bits(self.to_bits() & 0x7fff) }
            fn max(self, rhs: Self) -> Self { <$t>::from_f32(Num::max(self.to_f32(), rhs.to_f32())) }
            fn min(self, rhs: Self) -> Self { <$t>::from_f32(Num::min(self.to_f32(), rhs.to_f32())) }
            fn lowest() -> Self { <$t>::NEG_INFINITY }
            fn highest() -> Self { <$t>::INFINITY }
            fn from_usize(n: usize) -> Self { <$t>::from_f32(n as f32) }
        }
    )*};
}

impl_half_num!(f16, bf16);

/// float32 and float64: the types float kernels are written for.
pub(crate) trait Float:
    Num
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
{
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// Converts from f64 (rounding).
    fn from_f64(v: f64) -> Self;
    /// `e^self`.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// Sine.
    fn sin(self) -> Self;
    /// Cosine.
    fn cos(self) -> Self;
    /// Largest integer not above.
    fn floor(self) -> Self;
    /// Smallest integer not below.
    fn ceil(self) -> Self;
    /// The nearest integer, ties to even.
    fn round_even(self) -> Self;
    /// True for +inf or -inf.
    fn is_infinite(self) -> bool;
    /// The error function.
    fn erf(self) -> Self;
    /// `self^e`.
    fn powf(self, e: Self) -> Self;
}

macro_rules! impl_float {
    ($t:ty, $exp:path, $tanh:path) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            fn from_f64(v: f64) -> Self { v as $t }
            fn exp(self) -> Self { $exp(self) }
            fn ln(self) -> Self { <$t>::ln(self) }
            fn sqrt(self) -> Self { <$t>::sqrt(self) }
            fn tanh(self) -> Self { $tanh(self) }
            fn sin(self) -> Self { <$t>::sin(self) }
            fn cos(self) -> Self { <$t>::cos(self) }
            fn floor(self) -> Self { <$t>::floor(self) }
            fn ceil(self) -> Self { <$t>::ceil(self) }
            fn round_even(self) -> Self { <$t>::round_ties_even(self) }
            fn is_infinite(self) -> bool { <$t>::is_infinite(self) }
            fn erf(self) -> Self { crate::kernels::erf::erf(self as f64) as $t }
            fn powf(self, e: Self) -> Self { <$t>::powf(self, e) }
        }
    };
}

// float32 takes the vectorizable kernels (a few ulp); float64 keeps libm.
impl_float!(f32, crate::kernels::activation::exp, crate::kernels::activation::tanh);
impl_float!(f64, f64::exp, f64::tanh);

/// A computation written once for any [`Float`]; run it on a tensor with [`on_float`].
pub(crate) trait FloatFn {
    /// Computes the result for one float type.
    fn call<F: Float>(&self, x: ArrayViewD<'_, F>) -> Result<ArrayD<F>>;
}

/// Runs `f` on a float32 or float64 tensor, or on a float16 or bfloat16 one through float32.
pub(crate) fn on_float<K: FloatFn>(t: &Tensor, f: &K) -> Result<Tensor> {
    match t {
        Tensor::F32(a) => Ok(f.call(a.view())?.into()),
        Tensor::F64(a) => Ok(f.call(a.view())?.into()),
        Tensor::F16(a) => Ok(f.call(a.mapv(f16::to_f32).view())?.mapv(f16::from_f32).into()),
        Tensor::BF16(a) => Ok(f.call(a.mapv(bf16::to_f32).view())?.mapv(bf16::from_f32).into()),
        other => Err(not_float(other)),
    }
}

/// The error for a tensor that should have been float.
pub(crate) fn not_float(t: &Tensor) -> crate::Error {
    op_err(format!("expected a float tensor (float32, float16, bfloat16 or float64), got {}", t.dtype()))
}

/// Matches a tensor of any numeric dtype, binding its array to `$a` in `$body`; any other
/// dtype (bool) is an error.
macro_rules! numeric {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            $crate::Tensor::F32($a) => $body,
            $crate::Tensor::F16($a) => $body,
            $crate::Tensor::F64($a) => $body,
            $crate::Tensor::I64($a) => $body,
            $crate::Tensor::I32($a) => $body,
            $crate::Tensor::I8($a) => $body,
            $crate::Tensor::U8($a) => $body,
            $crate::Tensor::BF16($a) => $body,
            $crate::Tensor::I16($a) => $body,
            $crate::Tensor::U16($a) => $body,
            $crate::Tensor::U32($a) => $body,
            $crate::Tensor::U64($a) => $body,
            other => Err($crate::error::op_err(format!(
                "expected a numeric tensor, got {}",
                other.dtype()
            ))),
        }
    };
}
pub(crate) use numeric;

/// Matches two tensors of one numeric dtype, binding their arrays to `$a` and `$b`; mixed or
/// non-numeric dtypes are an error.
macro_rules! numeric_pair {
    ($x:expr, $y:expr, $a:ident, $b:ident => $body:expr) => {
        match ($x, $y) {
            ($crate::Tensor::F32($a), $crate::Tensor::F32($b)) => $body,
            ($crate::Tensor::F16($a), $crate::Tensor::F16($b)) => $body,
            ($crate::Tensor::F64($a), $crate::Tensor::F64($b)) => $body,
            ($crate::Tensor::I64($a), $crate::Tensor::I64($b)) => $body,
            ($crate::Tensor::I32($a), $crate::Tensor::I32($b)) => $body,
            ($crate::Tensor::I8($a), $crate::Tensor::I8($b)) => $body,
            ($crate::Tensor::U8($a), $crate::Tensor::U8($b)) => $body,
            ($crate::Tensor::BF16($a), $crate::Tensor::BF16($b)) => $body,
            ($crate::Tensor::I16($a), $crate::Tensor::I16($b)) => $body,
            ($crate::Tensor::U16($a), $crate::Tensor::U16($b)) => $body,
            ($crate::Tensor::U32($a), $crate::Tensor::U32($b)) => $body,
            ($crate::Tensor::U64($a), $crate::Tensor::U64($b)) => $body,
            (x, y) => Err($crate::ops::numeric::pair_err("numeric", x, y)),
        }
    };
}
pub(crate) use numeric_pair;

/// Matches two tensors of one dtype, whatever it is, binding their arrays to `$a` and `$b`.
macro_rules! same_pair {
    ($x:expr, $y:expr, $a:ident, $b:ident => $body:expr) => {
        match ($x, $y) {
            ($crate::Tensor::F32($a), $crate::Tensor::F32($b)) => $body,
            ($crate::Tensor::F16($a), $crate::Tensor::F16($b)) => $body,
            ($crate::Tensor::F64($a), $crate::Tensor::F64($b)) => $body,
            ($crate::Tensor::I64($a), $crate::Tensor::I64($b)) => $body,
            ($crate::Tensor::I32($a), $crate::Tensor::I32($b)) => $body,
            ($crate::Tensor::I8($a), $crate::Tensor::I8($b)) => $body,
            ($crate::Tensor::U8($a), $crate::Tensor::U8($b)) => $body,
            ($crate::Tensor::BF16($a), $crate::Tensor::BF16($b)) => $body,
            ($crate::Tensor::I16($a), $crate::Tensor::I16($b)) => $body,
            ($crate::Tensor::U16($a), $crate::Tensor::U16($b)) => $body,
            ($crate::Tensor::U32($a), $crate::Tensor::U32($b)) => $body,
            ($crate::Tensor::U64($a), $crate::Tensor::U64($b)) => $body,
            ($crate::Tensor::Bool($a), $crate::Tensor::Bool($b)) => $body,
            (x, y) => Err($crate::ops::numeric::pair_err("same-dtype", x, y)),
        }
    };
}
pub(crate) use same_pair;

/// The error for two inputs whose dtypes do not fit a binary op.
pub(crate) fn pair_err(what: &str, a: &Tensor, b: &Tensor) -> crate::Error {
    op_err(format!("expected two {what} tensors of one dtype, got {} and {}", a.dtype(), b.dtype()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_arithmetic_wraps_and_truncates() {
        assert_eq!(Num::add(i8::MAX, 1), i8::MIN);
        assert_eq!(Num::div(-7i64, 2), -3);
        assert_eq!(Num::div(7i32, -2), -3);
        assert_eq!(Num::div(i64::MIN, -1), i64::MIN);
        assert_eq!(Num::abs(i32::MIN), i32::MIN);
        assert_eq!(Num::abs(-5i8), 5);
        assert_eq!(Num::abs(200u8), 200);
    }

    #[test]
    fn unsigned_and_bfloat16_arithmetic() {
        assert_eq!(Num::add(u64::MAX, 2), 1);
        assert_eq!(Num::sub(0u32, 1), u32::MAX);
        assert_eq!(Num::div(7u16, 2), 3);
        assert_eq!(Num::neg(1u16), u16::MAX);
        assert_eq!(Num::mul(i16::MAX, 2), -2);
        // 1 + 2^-8 is a tie between 1 and 1 + 2^-7 in bfloat16: rounds to even (1).
        assert_eq!(Num::add(bf16::ONE, bf16::from_f32(2f32.powi(-8))), bf16::ONE);
        assert_eq!(Num::abs(bf16::from_f32(-1.5)), bf16::from_f32(1.5));
        assert!(Num::max(bf16::NAN, bf16::ONE).is_nan());
        assert_eq!(<bf16 as Num>::lowest(), bf16::NEG_INFINITY);
    }

    #[test]
    fn float_max_min_propagate_nan() {
        assert!(Num::max(f32::NAN, 1.0).is_nan());
        assert!(Num::max(1.0f32, f32::NAN).is_nan());
        assert!(Num::min(2.0f64, f64::NAN).is_nan());
        assert_eq!(Num::max(f16::from_f32(1.5), f16::from_f32(-2.0)), f16::from_f32(1.5));
    }

    #[test]
    fn on_float_rejects_integers() {
        struct Twice;
        impl FloatFn for Twice {
            fn call<F: Float>(&self, x: ArrayViewD<'_, F>) -> Result<ArrayD<F>> {
                Ok(x.mapv(|v| v + v))
            }
        }
        let half = Tensor::from_vec(&[2], vec![f16::from_f32(1.5), f16::from_f32(-3.0)]).unwrap();
        let out = on_float(&half, &Twice).unwrap();
        assert_eq!(out, Tensor::from_vec(&[2], vec![f16::from_f32(3.0), f16::from_f32(-6.0)]).unwrap());
        assert!(on_float(&Tensor::scalar(3i64), &Twice).is_err());
    }
}

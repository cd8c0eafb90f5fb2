//! Mod: the remainder with the sign of the divisor (`fmod = 0`, integers) or of the dividend
//! (`fmod = 1`, C's `fmod`), broadcasting.

use half::{bf16, f16};

use super::broadcast::zip_broadcast;
use super::common::kernel;
use super::numeric::numeric_pair;
use super::{input, Kernel, OpContext, Registry};
use crate::error::{op_err, Result};
use crate::tensor::{Array, Tensor};

/// A remainder on one element type.
trait Remainder: crate::tensor::Element {
    /// True for integer types (division by zero is an error there).
    const INTEGER: bool;
    /// The truncated remainder (sign of `self`).
    fn trunc_rem(self, rhs: Self) -> Self;
    /// The floored remainder (sign of `rhs`).
    fn floor_rem(self, rhs: Self) -> Self;
}

macro_rules! impl_int_rem {
    ($($t:ty),*) => {$(
        impl Remainder for $t {
            const INTEGER: bool = true;
            fn trunc_rem(self, rhs: Self) -> Self { self.wrapping_rem(rhs) }
            fn floor_rem(self, rhs: Self) -> Self {
                let r = self.wrapping_rem(rhs);
                #[allow(unused_comparisons)]
                if r != 0 && ((r < 0) != (rhs < 0)) { r.wrapping_add(rhs) } else { r }
            }
        }
    )*};
}
impl_int_rem!(i64, i32, i16, i8, u64, u32, u16, u8);

macro_rules! impl_float_rem {
    ($($t:ty),*) => {$(
        impl Remainder for $t {
            const INTEGER: bool = false;
            fn trunc_rem(self, rhs: Self) -> Self { self % rhs }
            fn floor_rem(self, rhs: Self) -> Self {
                let r = self % rhs;
                if r != 0.0 && ((r < 0.0) != (rhs < 0.0)) { r + rhs } else { r }
            }
        }
    )*};
}
impl_float_rem!(f32, f64);

/// The 16-bit floats take the remainder in float32 and round it once.
macro_rules! impl_half_rem {
    ($($t:ty),*) => {$(
        impl Remainder for $t {
            const INTEGER: bool = false;
            fn trunc_rem(self, rhs: Self) -> Self { <$t>::from_f32(self.to_f32().trunc_rem(rhs.to_f32())) }
            fn floor_rem(self, rhs: Self) -> Self { <$t>::from_f32(self.to_f32().floor_rem(rhs.to_f32())) }
        }
    )*};
}
impl_half_rem!(f16, bf16);

fn modulo<T: Remainder>(a: &Array<T>, b: &Array<T>, fmod: bool) -> Result<Tensor> {
    if T::INTEGER && b.iter().any(|v| *v == T::default()) {
        return Err(op_err("Mod: integer division by zero"));
    }
    let out = if fmod { zip_broadcast(a, b, T::trunc_rem)? } else { zip_broadcast(a, b, T::floor_rem)? };
    Ok(out.into())
}

fn mod_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let fmod = ctx.attrs.int_or("fmod", 0) != 0;
    kernel(move |inputs| {
        let (a, b) = (input(inputs, 0)?, input(inputs, 1)?);
        Ok(vec![numeric_pair!(a, b, x, y => modulo(x, y, fmod))?])
    })
}

/// Registers Mod.
pub(super) fn register(reg: &mut Registry) {
    reg.register("", "Mod", 10, mod_factory);
}

#[cfg(test)]
mod tests {
    use crate::ops::testutil::{assert_close, assert_err, node, t, values};

    #[test]
    fn integer_mod_takes_the_divisor_sign_and_fmod_the_dividend_sign() {
        let (a, b) = (t(&[4], &[7i64, -7, 7, -7]), t(&[4], &[3i64, 3, -3, -3]));
        assert_eq!(values::<i64>(&node("Mod").run1(&[&a, &b]).unwrap()).1, vec![1, 2, -2, -1]);
        let y = node("Mod").int("fmod", 1).run1(&[&a, &b]).unwrap();
        assert_eq!(values::<i64>(&y).1, vec![1, -1, 1, -1]);
        assert_err(node("Mod").run1(&[&a, &t(&[1], &[0i64])]), "division by zero");
    }

    #[test]
    fn float_fmod_broadcasts() {
        let a = t(&[3], &[5.5f32, -5.5, 4.0]);
        let y = node("Mod").int("fmod", 1).run1(&[&a, &t(&[1], &[2.0f32])]).unwrap();
        assert_close(&y, &[3], &[1.5, -1.5, 0.0]);
    }
}

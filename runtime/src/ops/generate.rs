//! Ops that create tensors from attributes or scalars: Constant, ConstantOfShape, Range.

use ndarray::{Array1, ArrayD, IxDyn};

use super::common::{checked_len, dims_to_shape, input_ints, kernel, model_err};
use super::cast::cast;
use super::numeric::{numeric, Num};
use super::{input, Kernel, OpContext, Registry};
use crate::error::{op_err, Result};
use crate::tensor::{Array, DType, Tensor};
use crate::with_array;

fn constant_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let a = &ctx.attrs;
    let value = if let Some(t) = a.tensor("value")? {
        t
    } else if a.has("value_float") {
        Tensor::scalar(a.float_or("value_float", 0.0))
    } else if let Some(v) = a.floats("value_floats") {
        Array1::from(v).into_dyn().into()
    } else if let Some(v) = a.int("value_int") {
        Tensor::scalar(v)
    } else if let Some(v) = a.ints("value_ints") {
        Array1::from(v).into_dyn().into()
    } else {
        return Err(model_err(
            ctx,
            "needs one of the attributes value, value_float(s), value_int(s) (sparse and string constants are unsupported)",
        ));
    };
    kernel(move |_| Ok(vec![value.clone()]))
}

fn constant_of_shape_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let value = ctx.attrs.tensor("value")?.unwrap_or_else(|| Tensor::scalar(0.0f32));
    if value.len() != 1 {
        return Err(model_err(ctx, format!("'value' must hold one element, has {}", value.len())));
    }
    kernel(move |inputs| {
        let shape = dims_to_shape(&input_ints(inputs, 0)?)?;
        with_array!(&value, v => {
            let fill = v.first().copied().ok_or_else(|| op_err("empty fill value"))?;
            Ok(vec![ArrayD::from_elem(IxDyn(&shape), fill).into()])
        })
    })
}

/// `ceil((limit - start) / delta)`, at least 0, exactly for integers.
fn range_len(start: &Tensor, limit: &Tensor, delta: &Tensor) -> Result<usize> {
    let int = |t: &Tensor| match cast(t, DType::I64).to_i64_vec()?.as_slice() {
        [v] => Ok(*v as i128),
        _ => Err(op_err(format!("Range inputs must be scalars, got shape {:?}", t.shape()))),
    };
    let count = match start.dtype() {
        DType::I64 | DType::I32 | DType::I16 => {
            let (s, l, d) = (int(start)?, int(limit)?, int(delta)?);
            if d == 0 {
                return Err(op_err("Range delta cannot be 0"));
            }
            // Ceiling division of (l - s) by d, for either sign of d.
            let (num, den) = if d > 0 { (l - s, d) } else { (s - l, -d) };
            (num + den - 1).div_euclid(den).max(0)
        }
        dtype if dtype.is_float() => {
            let (s, l, d) = (start.scalar_f64()?, limit.scalar_f64()?, delta.scalar_f64()?);
            let count = ((l - s) / d).ceil();
            if !count.is_finite() {
                return Err(op_err(format!("Range({s}, {l}, {d}) has no finite length")));
            }
            count.max(0.0) as i128
        }
        other => return Err(op_err(format!("Range does not support {other}"))),
    };
    let n = usize::try_from(count).map_err(|_| op_err(format!("Range of {count} elements is too long")))?;
    checked_len(&[n])
}

fn arange<T: Num>(start: &Array<T>, delta: &Tensor, n: usize) -> Result<Tensor> {
    let empty = || op_err("empty Range input");
    let s = start.first().copied().ok_or_else(empty)?;
    let d = delta.array::<T>()?.first().copied().ok_or_else(empty)?;
    Ok(Array1::from_iter((0..n).map(|i| s.add(T::from_usize(i).mul(d)))).into_dyn().into())
}

fn range(start: &Tensor, limit: &Tensor, delta: &Tensor) -> Result<Tensor> {
    if limit.dtype() != start.dtype() || delta.dtype() != start.dtype() {
        return Err(op_err(format!(
            "Range inputs differ in dtype: {}, {}, {}",
            start.dtype(),
            limit.dtype(),
            delta.dtype()
        )));
    }
    let n = range_len(start, limit, delta)?;
    numeric!(start, a => arange(a, delta, n))
}

/// Registers Constant, ConstantOfShape and Range.
pub(super) fn register(reg: &mut Registry) {
    reg.register("", "Constant", 1, constant_factory);
    reg.register("", "ConstantOfShape", 9, constant_of_shape_factory);
    reg.register("", "Range", 11, |_| {
        kernel(|inputs| Ok(vec![range(input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?)?]))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::{assert_err, node, t, values};

    #[test]
    fn constant_forms() {
        let v = t(&[2], &[1.5f32, 2.5]);
        assert_eq!(node("Constant").tensor("value", &v).run1(&[]).unwrap(), v);
        let y = node("Constant").float("value_float", 0.5).run1(&[]).unwrap();
        assert_eq!(values::<f32>(&y), (vec![], vec![0.5]));
        let y = node("Constant").floats("value_floats", &[1.0, 2.0]).run1(&[]).unwrap();
        assert_eq!(values::<f32>(&y), (vec![2], vec![1.0, 2.0]));
        let y = node("Constant").int("value_int", -3).run1(&[]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![], vec![-3]));
        let y = node("Constant").ints("value_ints", &[4, 5]).run1(&[]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![2], vec![4, 5]));
        assert_err(node("Constant").string("value_string", "x").run1(&[]), "needs one of");
    }

    #[test]
    fn constant_of_shape_fills() {
        let shape = t(&[2], &[2i64, 3]);
        let y = node("ConstantOfShape").run1(&[&shape]).unwrap();
        assert_eq!(values::<f32>(&y), (vec![2, 3], vec![0.0; 6]));
        let y = node("ConstantOfShape").tensor("value", &t(&[1], &[7i64])).run1(&[&shape]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![2, 3], vec![7; 6]));
        let y = node("ConstantOfShape").run1(&[&t::<i64>(&[0], &[])]).unwrap();
        assert_eq!(values::<f32>(&y), (vec![], vec![0.0]));
        assert_err(node("ConstantOfShape").run1(&[&t(&[1], &[-2i64])]), "negative dimension");
        assert_err(node("ConstantOfShape").tensor("value", &t(&[2], &[1i64, 2])).run1(&[&shape]), "one element");
    }

    #[test]
    fn range_ints_and_floats() {
        let r = |s: i64, l: i64, d: i64| {
            values::<i64>(&node("Range").run1(&[&Tensor::scalar(s), &Tensor::scalar(l), &Tensor::scalar(d)]).unwrap()).1
        };
        assert_eq!(r(0, 5, 2), vec![0, 2, 4]);
        assert_eq!(r(10, 4, -3), vec![10, 7]);
        assert_eq!(r(3, 3, 1), Vec::<i64>::new());
        assert_eq!(r(5, 0, 1), Vec::<i64>::new());
        let y = node("Range")
            .run1(&[&Tensor::scalar(1.0f32), &Tensor::scalar(2.0f32), &Tensor::scalar(0.25f32)])
            .unwrap();
        assert_eq!(values::<f32>(&y).1, vec![1.0, 1.25, 1.5, 1.75]);
        let h = |v: f32| Tensor::scalar(half::f16::from_f32(v));
        let y = node("Range").run1(&[&h(1.0), &h(5.0), &h(2.0)]).unwrap();
        assert_eq!(values::<half::f16>(&y).1, vec![half::f16::from_f32(1.0), half::f16::from_f32(3.0)]);
    }

    #[test]
    fn range_of_int16_and_bfloat16() {
        let s = |v: i16| Tensor::scalar(v);
        let y = node("Range").run1(&[&s(5), &s(-1), &s(-2)]).unwrap();
        assert_eq!(values::<i16>(&y).1, vec![5, 3, 1]);
        let b = |v: f32| Tensor::scalar(half::bf16::from_f32(v));
        let y = node("Range").run1(&[&b(0.5), &b(2.0), &b(0.5)]).unwrap();
        assert_eq!(values::<half::bf16>(&y).1, [0.5f32, 1.0, 1.5].map(half::bf16::from_f32).to_vec());
        assert_err(node("Range").run1(&[&Tensor::scalar(0u8), &Tensor::scalar(2u8), &Tensor::scalar(1u8)]), "does not support uint8");
    }

    #[test]
    fn range_errors() {
        let (z, one) = (Tensor::scalar(0i64), Tensor::scalar(1i64));
        assert_err(node("Range").run1(&[&z, &one, &z]), "delta cannot be 0");
        assert_err(node("Range").run1(&[&z, &Tensor::scalar(1.0f32), &one]), "differ in dtype");
        assert_err(node("Range").run1(&[&z, &Tensor::scalar(i64::MAX), &one]), "too many elements");
        let (zf, inf) = (Tensor::scalar(0.0f32), Tensor::scalar(f32::INFINITY));
        assert_err(node("Range").run1(&[&zf, &inf, &Tensor::scalar(1.0f32)]), "no finite length");
    }
}

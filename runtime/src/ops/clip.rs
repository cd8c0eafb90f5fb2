//! Clip: bounds from attributes (before opset 11) or optional scalar inputs (from 11 on).

use super::cast::cast;
use super::common::kernel;
use super::numeric::{numeric, Num};
use super::{input, optional_input, Kernel, OpContext, Registry};
use crate::error::{op_err, Result};
use crate::tensor::{Array, Tensor};

/// Where the bounds come from.
enum Bounds {
    /// Opset 6: float attributes (absent means unbounded).
    Attrs(Option<f32>, Option<f32>),
    /// Opset 11+: optional inputs #1 (min) and #2 (max).
    Inputs,
}

/// A bound as the element type of `x`, or `None` when unbounded.
fn bound<T: Num>(value: Option<&Tensor>, x: &Tensor) -> Result<Option<T>> {
    let Some(value) = value else { return Ok(None) };
    if value.len() != 1 {
        return Err(op_err(format!("Clip bounds must be scalars, got shape {:?}", value.shape())));
    }
    let value = cast(value, x.dtype());
    Ok(value.array::<T>()?.iter().next().copied())
}

fn clip_typed<T: Num>(a: &Array<T>, x: &Tensor, lo: Option<&Tensor>, hi: Option<&Tensor>) -> Result<Tensor> {
    let (lo, hi) = (bound::<T>(lo, x)?, bound::<T>(hi, x)?);
    // Lower bound first, then upper: with min > max every value becomes max, as the spec says.
    Ok(a.mapv(|v| {
        let v = match lo {
            Some(l) if v < l => l,
            _ => v,
        };
        match hi {
            Some(h) if v > h => h,
            _ => v,
        }
    })
    .into())
}

fn clip_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let bounds = if ctx.opset < 11 {
        let get = |name| ctx.attrs.has(name).then(|| ctx.attrs.float_or(name, 0.0));
        Bounds::Attrs(get("min"), get("max"))
    } else {
        Bounds::Inputs
    };
    kernel(move |inputs| {
        let x = input(inputs, 0)?;
        let (lo, hi) = match &bounds {
            Bounds::Attrs(lo, hi) => (lo.map(Tensor::scalar), hi.map(Tensor::scalar)),
            Bounds::Inputs => (optional_input(inputs, 1).cloned(), optional_input(inputs, 2).cloned()),
        };
        Ok(vec![numeric!(x, a => clip_typed(a, x, lo.as_ref(), hi.as_ref()))?])
    })
}

/// Registers Clip.
pub(super) fn register(reg: &mut Registry) {
    reg.register("", "Clip", 6, clip_factory);
}

#[cfg(test)]
mod tests {
    use crate::ops::testutil::{assert_close, assert_err, node, t, values};
    use crate::Tensor;

    #[test]
    fn clip_with_inputs_attributes_and_ints() {
        let x = t(&[4], &[-2.0f32, 0.5, 3.0, f32::NAN]);
        let y = node("Clip").run_opt(&[Some(&x), Some(&Tensor::scalar(0.0f32)), Some(&Tensor::scalar(1.0f32))]);
        assert_close(&y.unwrap()[0], &[4], &[0.0, 0.5, 1.0, f32::NAN]);
        let y = node("Clip").run_opt(&[Some(&x), None, Some(&Tensor::scalar(1.0f32))]).unwrap();
        assert_close(&y[0], &[4], &[-2.0, 0.5, 1.0, f32::NAN]);
        let y = node("Clip").opset(6).float("min", -1.0).run1(&[&x]).unwrap();
        assert_close(&y, &[4], &[-1.0, 0.5, 3.0, f32::NAN]);
        let i = t(&[3], &[-5i64, 2, 9]);
        let y = node("Clip").run1(&[&i, &Tensor::scalar(0i64), &Tensor::scalar(4i64)]).unwrap();
        assert_eq!(values::<i64>(&y).1, vec![0, 2, 4]);
        let y = node("Clip").run1(&[&i, &Tensor::scalar(3i64), &Tensor::scalar(1i64)]).unwrap();
        assert_eq!(values::<i64>(&y).1, vec![1, 1, 1]);
        assert_err(node("Clip").run1(&[&x, &t(&[2], &[0.0f32, 1.0])]), "must be scalars");
    }
}

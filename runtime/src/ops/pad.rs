//! Pad: grows (or, with negative pads, crops) each axis, filling with a constant, the mirror
//! image (`reflect`), the border value (`edge`) or the opposite side (`wrap`).

use super::cast::cast;
use super::common::{checked_len, contiguous, from_shape_vec, kernel, model_err, normalize_axes};
use super::{input, optional_input, Kernel, OpContext, Registry};
use crate::error::{op_err, Result};
use crate::tensor::{Array, Element, Tensor};
use crate::with_array;

/// How positions outside the input are filled.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

impl Mode {
    fn parse(ctx: &OpContext) -> Result<Self> {
        match ctx.attrs.string("mode")?.as_deref().unwrap_or("constant") {
            "constant" => Ok(Mode::Constant),
            "reflect" => Ok(Mode::Reflect),
            "edge" => Ok(Mode::Edge),
            "wrap" if ctx.opset >= 19 => Ok(Mode::Wrap),
            other => Err(model_err(ctx, format!("unsupported mode '{other}' at opset {}", ctx.opset))),
        }
    }

    /// The input position output position `o` of an axis of length `n` reads, `None` for the
    /// constant.
    fn source(self, o: i64, n: i64) -> Option<usize> {
        if (0..n).contains(&o) {
            return Some(o as usize);
        }
        let i = match self {
            Mode::Constant => return None,
            Mode::Edge => o.clamp(0, n - 1),
            Mode::Wrap => o.rem_euclid(n),
            Mode::Reflect if n == 1 => 0,
            Mode::Reflect => {
                let period = 2 * (n - 1);
                let m = o.rem_euclid(period);
                if m < n {
                    m
                } else {
                    period - m
                }
            }
        };
        Some(i as usize)
    }
}

/// Pads `x` by `begin`/`end` per axis (already one entry per axis of `x`).
fn pad_typed<T: Element>(x: &Array<T>, begin: &[i64], end: &[i64], mode: Mode, value: T) -> Result<Tensor> {
    let shape = x.shape();
    let mut out_shape = Vec::with_capacity(shape.len());
    // Per axis, the input index each output index reads.
    let mut maps: Vec<Vec<Option<usize>>> = Vec::with_capacity(shape.len());
    for (d, &n) in shape.iter().enumerate() {
        let out = n as i64 + begin[d] + end[d];
        if out < 0 {
            return Err(op_err(format!("Pad: pads {}/{} crop axis {d} of length {n} below zero", begin[d], end[d])));
        }
        let grows = begin[d] > 0 || end[d] > 0;
        if mode != Mode::Constant && n == 0 && grows {
            return Err(op_err(format!("Pad: mode {mode:?} cannot pad the empty axis {d}")));
        }
        out_shape.push(out as usize);
        checked_len(&out_shape)?;
        maps.push((0..out).map(|o| mode.source(o - begin[d], n as i64)).collect());
    }
    let len = checked_len(&out_shape)?;
    let data = contiguous(x);
    let mut strides = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    let mut out = Vec::with_capacity(len);
    let mut index = vec![0usize; shape.len()];
    for _ in 0..len {
        let offset = index
            .iter()
            .enumerate()
            .try_fold(0usize, |acc, (d, &o)| maps[d][o].map(|i| acc + i * strides[d]));
        out.push(offset.map_or(value, |at| data[at]));
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < out_shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(from_shape_vec(&out_shape, out)?.into())
}

/// Expands `pads` (`[begin..., end...]` over `axes`, or over every axis) to per-axis lists.
fn per_axis(pads: &[i64], axes: Option<&[i64]>, rank: usize) -> Result<(Vec<i64>, Vec<i64>)> {
    let axes = match axes {
        Some(a) => normalize_axes(a, rank)?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(op_err(format!("Pad: {} pads for {} axes, want {}", pads.len(), axes.len(), 2 * axes.len())));
    }
    let (mut begin, mut end) = (vec![0i64; rank], vec![0i64; rank]);
    for (j, &a) in axes.iter().enumerate() {
        begin[a] = pads[j];
        end[a] = pads[j + axes.len()];
    }
    Ok((begin, end))
}

/// Where the pads and the fill value come from: attributes before opset 11, inputs since.
enum Source {
    Attrs { pads: Vec<i64>, value: f32 },
    Inputs,
}

fn pad(x: &Tensor, source: &Source, mode: Mode, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let (pads, axes, value) = match source {
        Source::Attrs { pads, value } => (pads.clone(), None, cast(&Tensor::scalar(*value), x.dtype())),
        Source::Inputs => {
            let pads = input(inputs, 1)?.to_i64_vec()?;
            let value = match optional_input(inputs, 2) {
                Some(v) if v.len() == 1 => v.clone(),
                Some(v) => return Err(op_err(format!("Pad: constant_value must be a scalar, got shape {:?}", v.shape()))),
                None => cast(&Tensor::scalar(0.0f32), x.dtype()),
            };
            let axes = optional_input(inputs, 3).map(Tensor::to_i64_vec).transpose()?;
            (pads, axes, value)
        }
    };
    let (begin, end) = per_axis(&pads, axes.as_deref(), x.rank())?;
    with_array!(x, a => {
        let fill = contiguous(value.array()?)[0];
        pad_typed(a, &begin, &end, mode, fill)
    })
}

fn pad_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let mode = Mode::parse(ctx)?;
    let source = if ctx.opset < 11 {
        let pads = ctx.attrs.ints("pads").ok_or_else(|| model_err(ctx, "attribute 'pads' is required"))?;
        Source::Attrs { pads, value: ctx.attrs.float_or("value", 0.0) }
    } else {
        Source::Inputs
    };
    kernel(move |inputs| Ok(vec![pad(input(inputs, 0)?, &source, mode, inputs)?]))
}

/// Registers Pad at each opset that changed it (inputs at 11, axes at 18, wrap at 19; the
/// later versions only add types).
pub(super) fn register(reg: &mut Registry) {
    for since in [2, 11, 13, 18, 19, 21, 23, 24, 25] {
        reg.register("", "Pad", since, pad_factory);
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::testutil::{assert_err, node, t, values};

    fn run(mode: &str, pads: &[i64]) -> Vec<i64> {
        let x = t(&[3], &[1i64, 2, 3]);
        let y = node("Pad").opset(19).string("mode", mode).run1(&[&x, &t(&[2], pads)]).unwrap();
        values::<i64>(&y).1
    }

    #[test]
    fn every_mode_and_negative_pads() {
        assert_eq!(run("constant", &[2, 1]), vec![0, 0, 1, 2, 3, 0]);
        assert_eq!(run("reflect", &[2, 3]), vec![3, 2, 1, 2, 3, 2, 1, 2]);
        assert_eq!(run("edge", &[2, 1]), vec![1, 1, 1, 2, 3, 3]);
        assert_eq!(run("wrap", &[2, 1]), vec![2, 3, 1, 2, 3, 1]);
        assert_eq!(run("constant", &[-1, 0]), vec![2, 3]);
    }

    #[test]
    fn axes_value_attribute_opset_and_errors() {
        let x = t(&[2, 2], &[1.0f32, 2.0, 3.0, 4.0]);
        let y = node("Pad").opset(18).run1(&[&x, &t(&[2], &[1i64, 0]), &t(&[], &[9.0f32]), &t(&[1], &[-1i64])]).unwrap();
        assert_eq!(values::<f32>(&y), (vec![2, 3], vec![9.0, 1.0, 2.0, 9.0, 3.0, 4.0]));
        let y = node("Pad").opset(2).ints("pads", &[1, 0, 0, 0]).float("value", 5.0).run1(&[&x]).unwrap();
        assert_eq!(values::<f32>(&y), (vec![3, 2], vec![5.0, 5.0, 1.0, 2.0, 3.0, 4.0]));
        assert_err(node("Pad").opset(18).run1(&[&x, &t(&[3], &[1i64, 0, 0])]), "pads for");
        assert_err(node("Pad").opset(18).run1(&[&x, &t(&[4], &[-3i64, 0, 0, 0])]), "below zero");
        assert_err(node("Pad").opset(18).run1(&[&x, &t(&[2], &[1i64, 0]), &t(&[], &[0.0f32]), &t(&[1], &[2i64])]), "out of range");
        assert_err(node("Pad").opset(18).run1(&[&x, &t(&[4], &[1i64 << 40, 0, 1 << 40, 0])]), "too many");
        assert!(node("Pad").opset(18).string("mode", "wrap").build().is_err(), "wrap arrived in opset 19");
        let empty = t(&[0], &[] as &[f32]);
        assert_err(node("Pad").opset(19).string("mode", "edge").run1(&[&empty, &t(&[2], &[1i64, 1])]), "empty axis");
    }
}

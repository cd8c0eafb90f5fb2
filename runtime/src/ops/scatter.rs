//! ScatterElements, and the `reduction` attribute it shares with ScatterND.

use super::common::{contiguous, from_shape_vec, kernel, model_err, normalize_axis};
use super::numeric::{numeric, Num};
use super::{input, Kernel, OpContext, Registry};
use crate::error::{op_err, Result};
use crate::tensor::{Array, Element, Tensor};
use crate::with_array;

/// How a scattered update combines with the value already there.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum ScatterReduce {
    /// The update replaces it.
    None,
    Add,
    Mul,
    Max,
    Min,
}

impl ScatterReduce {
    /// Parses the node's `reduction` attribute at load.
    pub(super) fn from_attrs(ctx: &OpContext) -> Result<Self> {
        Ok(match ctx.attrs.string("reduction")?.as_deref() {
            None | Some("none") => ScatterReduce::None,
            Some("add") => ScatterReduce::Add,
            Some("mul") => ScatterReduce::Mul,
            Some("max") => ScatterReduce::Max,
            Some("min") => ScatterReduce::Min,
            Some(other) => return Err(model_err(ctx, format!("unknown reduction '{other}'"))),
        })
    }

    fn combine<T: Num>(self, old: T, new: T) -> T {
        match self {
            ScatterReduce::None => new,
            ScatterReduce::Add => old.add(new),
            ScatterReduce::Mul => old.mul(new),
            ScatterReduce::Max => old.max(new),
            ScatterReduce::Min => old.min(new),
        }
    }

    /// Runs `scatter` on `data` with the combining function of this reduction: any dtype
    /// without one, numeric dtypes with one.
    pub(super) fn dispatch(
        self,
        data: &Tensor,
        scatter: impl ScatterFn,
    ) -> Result<Tensor> {
        if self == ScatterReduce::None {
            return with_array!(data, a => scatter.run(a, |_, new| new));
        }
        numeric!(data, a => scatter.run(a, move |old, new| self.combine(old, new)))
    }
}

/// A scatter written once for every element type and combining function.
pub(super) trait ScatterFn {
    /// Scatters into a copy of `data`, combining with `f(old, new)`.
    fn run<T: Element>(&self, data: &Array<T>, f: impl Fn(T, T) -> T) -> Result<Tensor>;
}

/// ScatterElements along one axis.
struct Elements<'a> {
    axis: usize,
    indices: &'a [i64],
    index_shape: &'a [usize],
    updates: &'a Tensor,
}

impl ScatterFn for Elements<'_> {
    fn run<T: Element>(&self, data: &Array<T>, f: impl Fn(T, T) -> T) -> Result<Tensor> {
        let shape = data.shape();
        let updates = self.updates.array::<T>()?;
        if updates.shape() != self.index_shape || self.index_shape.len() != shape.len() {
            return Err(op_err(format!(
                "updates {:?} and indices {:?} must have one shape, of the rank of data {shape:?}",
                updates.shape(),
                self.index_shape
            )));
        }
        if self.index_shape.iter().zip(shape).enumerate().any(|(d, (&i, &s))| d != self.axis && i > s) {
            return Err(op_err(format!("indices {:?} exceed data {shape:?}", self.index_shape)));
        }
        let mut strides = vec![1usize; shape.len()];
        for d in (0..shape.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * shape[d + 1];
        }
        let dim = shape[self.axis] as i64;
        let mut out = contiguous(data).into_owned();
        let updates = contiguous(updates);
        let mut pos = vec![0usize; shape.len()];
        for (&index, &update) in self.indices.iter().zip(updates.iter()) {
            let i = if index < 0 { index + dim } else { index };
            if !(0..dim).contains(&i) {
                return Err(op_err(format!("index {index} is out of range for axis of size {dim}")));
            }
            let offset: usize = pos
                .iter()
                .enumerate()
                .map(|(d, &p)| if d == self.axis { i as usize } else { p } * strides[d])
                .sum();
            out[offset] = f(out[offset], update);
            // Next position in the index tensor, row-major.
            for d in (0..pos.len()).rev() {
                pos[d] += 1;
                if pos[d] < self.index_shape[d] {
                    break;
                }
                pos[d] = 0;
            }
        }
        Ok(from_shape_vec(shape, out)?.into())
    }
}

fn scatter_elements_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let reduce = ScatterReduce::from_attrs(ctx)?;
    let axis = ctx.attrs.int_or("axis", 0);
    kernel(move |inputs| {
        let (data, indices, updates) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?);
        let axis = normalize_axis(axis, data.rank())?;
        let scatter = Elements { axis, indices: &indices.to_i64_vec()?, index_shape: indices.shape(), updates };
        Ok(vec![reduce.dispatch(data, scatter)?])
    })
}

/// Registers ScatterElements.
pub(super) fn register(reg: &mut Registry) {
    reg.register("", "ScatterElements", 11, scatter_elements_factory);
}

#[cfg(test)]
mod tests {
    use crate::ops::testutil::{assert_err, node, t, values};

    #[test]
    fn scatter_elements_along_an_axis_with_reductions() {
        let data = t(&[2, 3], &[0i64; 6]);
        let idx = t(&[1, 2], &[2i64, -3]);
        let upd = t(&[1, 2], &[5i64, 7]);
        let y = node("ScatterElements").int("axis", 1).run1(&[&data, &idx, &upd]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![2, 3], vec![7, 0, 5, 0, 0, 0]));
        let ones = t(&[2, 2], &[1i64; 4]);
        let idx = t(&[2, 2], &[0i64, 0, 1, 1]);
        let upd = t(&[2, 2], &[2i64, 3, 4, 5]);
        let y = node("ScatterElements").opset(18).string("reduction", "add").run1(&[&ones, &idx, &upd]).unwrap();
        assert_eq!(values::<i64>(&y).1, vec![3, 4, 5, 6]);
        let y = node("ScatterElements").int("axis", 1).string("reduction", "mul").run1(&[&ones, &idx, &upd]).unwrap();
        assert_eq!(values::<i64>(&y).1, vec![6, 1, 1, 20]);
        let bad = t(&[1, 2], &[3i64, 0]);
        assert_err(node("ScatterElements").int("axis", 1).run1(&[&data, &bad, &t(&[1, 2], &[1i64, 1])]), "out of range");
    }
}

//! Indexing ops: Gather, GatherElements, GatherND, and ScatterND. Every index is checked
//! (negative ones count from the end); a bad one is an error naming it and the dim.

use super::common::{checked_len, contiguous, from_shape_vec, kernel, model_err, normalize_axis};
use super::scatter::{ScatterFn, ScatterReduce};
use super::{input, Kernel, OpContext, Registry};
use crate::error::{op_err, Result};
use crate::tensor::{Array, Element, Tensor};
use crate::with_array;

/// Resolves index `i` into a dim of size `dim` (the `axis`-th of the data).
fn resolve_index(i: i64, dim: usize, axis: usize) -> Result<usize> {
    let j = if i < 0 { i + dim as i64 } else { i };
    if (0..dim as i64).contains(&j) {
        Ok(j as usize)
    } else {
        Err(op_err(format!("index {i} is out of range for axis {axis} of size {dim}")))
    }
}

fn gather_typed<T: Element>(data: &Array<T>, indices: &Tensor, axis: usize) -> Result<Tensor> {
    let shape = data.shape();
    let dim = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let positions = indices
        .to_i64_vec()?
        .into_iter()
        .map(|i| resolve_index(i, dim, axis))
        .collect::<Result<Vec<_>>>()?;
    let out_shape = [&shape[..axis], indices.shape(), &shape[axis + 1..]].concat();
    let src = contiguous(data);
    let mut out = Vec::with_capacity(checked_len(&out_shape)?);
    if inner > 0 && dim > 0 {
        for block in src.chunks_exact(dim * inner) {
            for &p in &positions {
                out.extend_from_slice(&block[p * inner..(p + 1) * inner]);
            }
        }
    }
    Ok(from_shape_vec(&out_shape, out)?.into())
}

fn gather_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let axis = ctx.attrs.int_or("axis", 0);
    kernel(move |inputs| {
        let (data, indices) = (input(inputs, 0)?, input(inputs, 1)?);
        let axis = normalize_axis(axis, data.rank())?;
        Ok(vec![with_array!(data, a => gather_typed(a, indices, axis))?])
    })
}

fn gather_elements_typed<T: Element>(data: &Array<T>, indices: &Tensor, axis: usize) -> Result<Tensor> {
    let (shape, index_shape) = (data.shape(), indices.shape());
    let fits = index_shape.len() == shape.len()
        && index_shape.iter().zip(shape).enumerate().all(|(d, (&i, &s))| d == axis || i <= s);
    if !fits {
        return Err(op_err(format!(
            "indices of shape {index_shape:?} do not fit data of shape {shape:?} outside axis {axis}"
        )));
    }
    let strides: Vec<usize> = (0..shape.len()).map(|d| shape[d + 1..].iter().product()).collect();
    let src = contiguous(data);
    // `pos` walks the index shape; its axis coordinate is replaced by the index read there.
    let mut pos = vec![0usize; shape.len()];
    let mut out = Vec::with_capacity(indices.len());
    for i in indices.to_i64_vec()? {
        let target = resolve_index(i, shape[axis], axis)?;
        let offset: usize = (0..pos.len()).map(|d| if d == axis { target } else { pos[d] } * strides[d]).sum();
        out.push(src[offset]);
        for d in (0..pos.len()).rev() {
            pos[d] += 1;
            if pos[d] < index_shape[d] {
                break;
            }
            pos[d] = 0;
        }
    }
    Ok(from_shape_vec(index_shape, out)?.into())
}

fn gather_elements_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let axis = ctx.attrs.int_or("axis", 0);
    kernel(move |inputs| {
        let (data, indices) = (input(inputs, 0)?, input(inputs, 1)?);
        let axis = normalize_axis(axis, data.rank())?;
        Ok(vec![with_array!(data, a => gather_elements_typed(a, indices, axis))?])
    })
}

/// The shared geometry of GatherND and ScatterND: batch dims shared by data and indices,
/// then index tuples of length `k` addressing slabs of the data.
struct NdLayout {
    /// Index tuple length (the last dim of `indices`).
    k: usize,
    /// Number of index tuples per batch.
    tuples_per_batch: usize,
    /// Elements in one addressed slab: the product of `data.shape[b + k..]`.
    slab: usize,
}

impl NdLayout {
    fn new(data: &[usize], indices: &[usize], batch: usize) -> Result<Self> {
        let bad = |why: &str| op_err(format!("indices {indices:?} for data {data:?} (batch_dims {batch}): {why}"));
        let (&k, outer) = indices.split_last().ok_or_else(|| bad("indices must have rank >= 1"))?;
        if batch >= indices.len() || batch >= data.len() || data[..batch] != indices[..batch] {
            return Err(bad("batch dims disagree"));
        }
        if k == 0 || batch + k > data.len() {
            return Err(bad("the last indices dim must be between 1 and the data rank minus batch_dims"));
        }
        Ok(Self {
            k,
            tuples_per_batch: outer[batch..].iter().product(),
            slab: data[batch + k..].iter().product(),
        })
    }

    /// Offsets into the row-major data of the slabs addressed by `tuples` (the indices,
    /// flattened). Each component is checked against its dim.
    fn offsets(&self, data: &[usize], tuples: &[i64], batch_dims: usize) -> Result<Vec<usize>> {
        let dims = &data[batch_dims..batch_dims + self.k];
        let per_batch: usize = data[batch_dims..].iter().product();
        let per_tuple = tuples.chunks_exact(self.k).enumerate().map(|(t, tuple)| {
            let flat = tuple.iter().zip(dims).enumerate().try_fold(0usize, |acc, (j, (&i, &d))| {
                Ok(acc * d + resolve_index(i, d, batch_dims + j)?)
            })?;
            Ok(flat * self.slab + t / self.tuples_per_batch.max(1) * per_batch)
        });
        per_tuple.collect()
    }
}

fn gather_nd_typed<T: Element>(data: &Array<T>, indices: &Tensor, batch_dims: usize) -> Result<Tensor> {
    let layout = NdLayout::new(data.shape(), indices.shape(), batch_dims)?;
    let index_shape = indices.shape();
    let out_shape = [&index_shape[..index_shape.len() - 1], &data.shape()[batch_dims + layout.k..]].concat();
    let mut out = Vec::with_capacity(checked_len(&out_shape)?);
    let src = contiguous(data);
    for o in layout.offsets(data.shape(), &indices.to_i64_vec()?, batch_dims)? {
        out.extend_from_slice(&src[o..o + layout.slab]);
    }
    Ok(from_shape_vec(&out_shape, out)?.into())
}

fn gather_nd_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let batch_dims = ctx.attrs.int_or("batch_dims", 0);
    let batch_dims = usize::try_from(batch_dims).map_err(|_| model_err(ctx, "batch_dims must be >= 0"))?;
    kernel(move |inputs| {
        let (data, indices) = (input(inputs, 0)?, input(inputs, 1)?);
        Ok(vec![with_array!(data, a => gather_nd_typed(a, indices, batch_dims))?])
    })
}

/// ScatterND: slabs of `updates` at the positions `indices` names.
struct ScatterNd<'a> {
    indices: &'a Tensor,
    updates: &'a Tensor,
}

impl ScatterFn for ScatterNd<'_> {
    fn run<T: Element>(&self, data: &Array<T>, f: impl Fn(T, T) -> T) -> Result<Tensor> {
        let shape = data.shape();
        let index_shape = self.indices.shape();
        let layout = NdLayout::new(shape, index_shape, 0)?;
        let want = [&index_shape[..index_shape.len() - 1], &shape[layout.k..]].concat();
        let updates = self.updates.array::<T>()?;
        if updates.shape() != want.as_slice() {
            return Err(op_err(format!(
                "updates have shape {:?}, expected {want:?} for indices {index_shape:?} into {shape:?}",
                updates.shape()
            )));
        }
        let offsets = layout.offsets(shape, &self.indices.to_i64_vec()?, 0)?;
        let mut out = contiguous(data).into_owned();
        let updates = contiguous(updates);
        for (o, slab) in offsets.into_iter().zip(updates.chunks_exact(layout.slab.max(1))) {
            for (dst, &new) in out[o..o + layout.slab].iter_mut().zip(slab) {
                *dst = f(*dst, new);
            }
        }
        Ok(from_shape_vec(shape, out)?.into())
    }
}

fn scatter_nd_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let reduce = ScatterReduce::from_attrs(ctx)?;
    kernel(move |inputs| {
        let (data, indices, updates) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?);
        Ok(vec![reduce.dispatch(data, ScatterNd { indices, updates })?])
    })
}

/// Registers the indexing ops.
pub(super) fn register(reg: &mut Registry) {
    reg.register("", "Gather", 1, gather_factory);
    reg.register("", "GatherElements", 11, gather_elements_factory);
    reg.register("", "GatherND", 11, gather_nd_factory);
    reg.register("", "ScatterND", 11, scatter_nd_factory);
}

#[cfg(test)]
mod tests {
    use crate::ops::testutil::{assert_err, node, t, values};
    use crate::Tensor;

    fn iota(shape: &[usize]) -> Tensor {
        t(shape, &(0..shape.iter().product::<usize>() as i64).collect::<Vec<_>>())
    }

    #[test]
    fn gather_rows_like_an_embedding() {
        let table = t(&[3, 2], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let ids = t(&[1, 3], &[2i64, 0, -1]);
        let y = node("Gather").run1(&[&table, &ids]).unwrap();
        assert_eq!(values::<f32>(&y), (vec![1, 3, 2], vec![5.0, 6.0, 1.0, 2.0, 5.0, 6.0]));
    }

    #[test]
    fn gather_inner_axis_scalar_index_and_int32() {
        let x = iota(&[2, 3, 2]);
        let y = node("Gather").int("axis", -2).run1(&[&x, &t(&[2], &[2i32, 0])]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![2, 2, 2], vec![4, 5, 0, 1, 10, 11, 6, 7]));
        let shape = t(&[3], &[1i64, 128, 768]);
        let y = node("Gather").run1(&[&shape, &Tensor::scalar(1i64)]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![], vec![128]));
    }

    #[test]
    fn gather_from_an_empty_axis_with_no_indices() {
        let empty = t::<f32>(&[0, 3], &[]);
        let y = node("Gather").run1(&[&empty, &t::<i64>(&[0], &[])]).unwrap();
        assert_eq!(values::<f32>(&y).0, vec![0, 3]);
        assert_err(node("Gather").run1(&[&empty, &t(&[1], &[0i64])]), "index 0 is out of range for axis 0 of size 0");
    }

    #[test]
    fn gather_errors_name_index_and_dim() {
        let table = iota(&[4, 2]);
        assert_err(node("Gather").run1(&[&table, &t(&[1], &[4i64])]), "index 4 is out of range for axis 0 of size 4");
        assert_err(node("Gather").run1(&[&table, &t(&[1], &[-5i64])]), "index -5 is out of range");
        assert_err(node("Gather").int("axis", 2).run1(&[&table, &t(&[1], &[0i64])]), "axis 2 is out of range");
        assert_err(node("Gather").run1(&[&table, &t(&[1], &[0.0f32])]), "int64 or int32");
    }

    #[test]
    fn gather_elements_along_each_axis() {
        let x = t(&[2, 2], &[1i64, 2, 3, 4]);
        let idx = t(&[2, 2], &[0i64, 0, 1, 0]);
        let y = node("GatherElements").int("axis", 1).run1(&[&x, &idx]).unwrap();
        assert_eq!(values::<i64>(&y).1, vec![1, 1, 4, 3]);
        let x = iota(&[3, 3]);
        let idx = t(&[2, 3], &[1i64, 2, 0, 2, 0, -3]);
        let y = node("GatherElements").run1(&[&x, &idx]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![2, 3], vec![3, 7, 2, 6, 1, 2]));
        assert_err(node("GatherElements").run1(&[&x, &t(&[1, 3], &[3i64, 0, 0])]), "index 3 is out of range for axis 0");
        assert_err(node("GatherElements").run1(&[&x, &t(&[1, 4], &[0i64; 4])]), "do not fit");
    }

    #[test]
    fn gather_nd_with_and_without_batch_dims() {
        let x = t(&[2, 2], &[0i64, 1, 2, 3]);
        let y = node("GatherND").run1(&[&x, &t(&[2, 2], &[0i64, 0, 1, 1])]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![2], vec![0, 3]));
        let y = node("GatherND").run1(&[&x, &t(&[2, 1], &[1i64, 0])]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![2, 2], vec![2, 3, 0, 1]));
        let x = iota(&[2, 2, 2]);
        let y = node("GatherND").int("batch_dims", 1).run1(&[&x, &t(&[2, 1], &[1i64, 0])]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![2, 2], vec![2, 3, 4, 5]));
        let y = node("GatherND").int("batch_dims", 1).run1(&[&x, &t(&[2, 2], &[0i64, 1, 1, -1])]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![2], vec![1, 7]));
    }

    #[test]
    fn gather_nd_errors() {
        let x = iota(&[2, 2]);
        assert_err(node("GatherND").run1(&[&x, &t(&[1, 3], &[0i64, 0, 0])]), "last indices dim");
        assert_err(node("GatherND").run1(&[&x, &t(&[1, 2], &[0i64, 2])]), "index 2 is out of range for axis 1 of size 2");
        assert_err(node("GatherND").int("batch_dims", 1).run1(&[&x, &t(&[3, 1], &[0i64, 0, 0])]), "batch dims disagree");
    }

    #[test]
    fn scatter_nd_replaces_slabs() {
        let data = iota(&[4]);
        let y = node("ScatterND").run1(&[&data, &t(&[2, 1], &[1i64, -1]), &t(&[2], &[10i64, 20])]).unwrap();
        assert_eq!(values::<i64>(&y).1, vec![0, 10, 2, 20]);
        let data = iota(&[2, 2]);
        let y = node("ScatterND").run1(&[&data, &t(&[1, 1], &[1i64]), &t(&[1, 2], &[8i64, 9])]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![2, 2], vec![0, 1, 8, 9]));
        let y = node("ScatterND").string("reduction", "add");
        let y = y.run1(&[&data, &t(&[2, 1], &[1i64, 1]), &t(&[2, 2], &[8i64, 9, 1, 1])]).unwrap();
        assert_eq!(values::<i64>(&y).1, vec![0, 1, 11, 13]);
    }

    #[test]
    fn scatter_nd_errors() {
        let data = iota(&[4]);
        let idx = t(&[1, 1], &[4i64]);
        assert_err(node("ScatterND").run1(&[&data, &idx, &t(&[1], &[1i64])]), "index 4 is out of range");
        assert_err(node("ScatterND").run1(&[&data, &t(&[1, 1], &[0i64]), &t(&[2], &[1i64, 2])]), "updates have shape [2]");
        assert_err(node("ScatterND").run1(&[&data, &t(&[1, 1], &[0i64]), &t(&[1], &[1.0f32])]), "expected a int64 tensor");
        assert_err(node("ScatterND").string("reduction", "avg").run1(&[&data, &idx, &idx]), "unknown reduction 'avg'");
    }
}

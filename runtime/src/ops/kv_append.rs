//! `RbeKvAppend` (domain `ai.rbe`): a KV cache's `Concat(past, new)`, `past` a graph input and
//! the result a graph output, as the fusion pass writes it. A generation loop feeds each
//! result back as the next step's `past`. When the graph can hand `past` over (this node is
//! its last reader and nothing else holds it), the new positions go into room left after the
//! old ones, and a step writes only its own keys instead of copying the whole cache. A caller
//! that keeps its `past` gets a plain Concat.
//!
//! The room: the result's allocation holds `capacity` positions along the axis for every index
//! of the dims before it, and the tensor is a strided view of the first `len` of them.

use ndarray::{ArrayD, IxDyn, ShapeBuilder};

use super::common::contiguous;
use super::movement::{concat, concat_axis};
use super::rbe::DOMAIN;
use super::{input, Kernel, OpContext, Registry};
use crate::error::{op_err, Result};
use crate::tensor::{Array, Tensor};

/// Room (positions along the axis) a cache gets at least when it is (re)allocated; it also
/// gets half its length, so reallocations get rarer as it grows.
const MIN_ROOM: usize = 16;

/// The capacity a cache of `len` positions is allocated with.
fn with_room(len: usize) -> usize {
    len + (len / 2).max(MIN_ROOM)
}

/// Row-major strides of `shape` with `capacity` positions along `axis`.
fn room_strides(shape: &[usize], axis: usize, capacity: usize) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut step = 1;
    for d in (0..shape.len()).rev() {
        strides[d] = step;
        step *= if d == axis { capacity } else { shape[d] };
    }
    strides
}

/// An f32 allocation laid out as a cache along `axis`: `capacity` positions per index of the
/// dims before it (a slab each), the first `shape[axis]` in use.
struct Cache {
    data: Vec<f32>,
    shape: Vec<usize>,
    axis: usize,
    capacity: usize,
}

/// Elements before and after `axis`.
fn outer_inner(shape: &[usize], axis: usize) -> (usize, usize) {
    (shape[..axis].iter().product(), shape[axis + 1..].iter().product())
}

impl Cache {
    /// Takes over `past`'s allocation when nothing else holds it and it is laid out as a cache
    /// along `axis` (any standard-layout tensor is one, without room); else gives it back.
    fn adopt(past: Array<f32>, axis: usize) -> std::result::Result<Cache, Array<f32>> {
        let shape = past.shape().to_vec();
        let (outer, inner) = outer_inner(&shape, axis);
        if !past.is_unique() || outer == 0 || inner == 0 {
            return Err(past);
        }
        // Positions per slab, as the strides say (the allocation says it for axis 0).
        let capacity = match axis {
            0 => shape[0],
            _ => usize::try_from(past.strides()[axis - 1]).unwrap_or(0) / inner,
        };
        let expected = room_strides(&shape, axis, capacity);
        let laid_out = capacity > 0
            && capacity >= shape[axis]
            && past.strides().iter().zip(&expected).all(|(&s, &e)| usize::try_from(s) == Ok(e));
        if !laid_out {
            return Err(past);
        }
        let (mut data, offset) = past.try_into_owned_nocopy()?.into_raw_vec_and_offset();
        data.drain(..offset.unwrap_or(0).min(data.len()));
        let capacity = if axis == 0 { data.len() / inner } else { capacity };
        // A view's allocation may end right after its last element; the cache owns whole slabs.
        data.resize(outer * capacity * inner, 0.0);
        Ok(Cache { data, shape, axis, capacity })
    }

    /// A new cache of `capacity` positions per slab holding `slabs` (each slab's `shape[axis]`
    /// positions, row-major); the room is zeros.
    fn from_slabs<'a>(slabs: impl Iterator<Item = &'a [f32]>, shape: Vec<usize>, axis: usize, capacity: usize) -> Cache {
        let (outer, inner) = outer_inner(&shape, axis);
        let room = (capacity - shape[axis]) * inner;
        let mut data = Vec::with_capacity(outer * capacity * inner);
        for slab in slabs {
            data.extend_from_slice(slab);
            data.resize(data.len() + room, 0.0);
        }
        Cache { data, shape, axis, capacity }
    }

    /// The positions in use, slab by slab.
    fn slabs(&self) -> impl Iterator<Item = &[f32]> {
        let (_, inner) = outer_inner(&self.shape, self.axis);
        let used = self.shape[self.axis] * inner;
        self.data.chunks(self.capacity * inner).map(move |slab| &slab[..used])
    }

    /// Writes `new` (row-major, `n` positions per slab) after the positions in use; the caller
    /// has checked the room.
    fn append(&mut self, new: &[f32], n: usize) {
        let (_, inner) = outer_inner(&self.shape, self.axis);
        let (used, added) = (self.shape[self.axis] * inner, n * inner);
        for (slab, part) in self.data.chunks_mut(self.capacity * inner).zip(new.chunks(added)) {
            slab[used..used + added].copy_from_slice(part);
        }
        self.shape[self.axis] += n;
    }

    /// The positions in use as a tensor sharing the allocation, room included.
    fn into_tensor(self) -> Result<Tensor> {
        let strides = room_strides(&self.shape, self.axis, self.capacity);
        let array = ArrayD::from_shape_vec(IxDyn(&self.shape).strides(IxDyn(&strides)), self.data)
            .map_err(|e| op_err(format!("KV cache: {e}")))?;
        Ok(Tensor::from(array))
    }
}

/// `past ⧺ new` along `axis`, written into `past`'s room when it has some, else into a new
/// allocation with room; a plain Concat when something else holds `past`.
fn append(past: Array<f32>, new: &Array<f32>, axis: usize) -> Result<Tensor> {
    let (n, shape) = (new.shape()[axis], past.shape().to_vec());
    let (outer, inner) = outer_inner(&shape, axis);
    if n == 0 || outer == 0 || inner == 0 {
        // Nothing to append, or no slabs to hold it: the plain Concat handles every empty shape.
        return concat(&[&Tensor::from(past), &Tensor::from(new.clone())], axis as i64);
    }
    let len = shape[axis] + n;
    let mut cache = match Cache::adopt(past, axis) {
        Ok(cache) if cache.capacity >= len => cache,
        Ok(cache) => Cache::from_slabs(cache.slabs(), shape, axis, with_room(len)),
        Err(past) if !past.is_unique() => return concat(&[&Tensor::from(past), &Tensor::from(new.clone())], axis as i64),
        Err(past) => {
            let rows = contiguous(&past);
            let slab = shape[axis] * inner;
            Cache::from_slabs((0..outer).map(|o| &rows[o * slab..(o + 1) * slab]), shape, axis, with_room(len))
        }
    };
    cache.append(&contiguous(new), n);
    cache.into_tensor()
}

/// The kernel: a plain Concat, or an append when the graph hands `past` over.
struct KvAppend {
    axis: i64,
}

impl Kernel for KvAppend {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        Ok(vec![concat(&[input(inputs, 0)?, input(inputs, 1)?], self.axis)?])
    }

    fn takes_first_input(&self) -> bool {
        true
    }

    fn run_taking_first(&self, first: Tensor, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let new = input(inputs, 1)?;
        let axis = concat_axis(&[&first, new], self.axis)?;
        match (first, new) {
            (Tensor::F32(past), Tensor::F32(new)) => Ok(vec![append(past, new, axis)?]),
            (first, new) => Ok(vec![concat(&[&first, new], self.axis)?]),
        }
    }
}

fn kv_append_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(KvAppend { axis: ctx.attrs.require_int("axis")? }))
}

/// Registers `RbeKvAppend`.
pub(super) fn register(reg: &mut Registry) {
    reg.register(DOMAIN, "RbeKvAppend", 1, kv_append_factory);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::{assert_err, node, t, values};

    fn filled(shape: &[usize], from: f32) -> Tensor {
        let n: usize = shape.iter().product();
        t(shape, &(0..n).map(|i| from + i as f32).collect::<Vec<_>>())
    }

    fn kernel(axis: i64) -> KvAppend {
        KvAppend { axis }
    }

    fn ptr(t: &Tensor) -> *const f32 {
        t.as_f32().unwrap().as_ptr()
    }

    #[test]
    fn appends_in_place_while_there_is_room_and_matches_concat() {
        let k = kernel(2);
        let mut past = filled(&[1, 3, 0, 4], 0.0);
        let mut want = past.clone();
        let mut first_buffer = None;
        for step in 0..80 {
            let new = filled(&[1, 3, 1, 4], 100.0 * step as f32);
            want = concat(&[&want, &new], 2).unwrap();
            let before = (step > 0).then(|| ptr(&past));
            let out = k.run_taking_first(past, &[None, Some(&new)]).unwrap().remove(0);
            assert_eq!(values::<f32>(&out), values::<f32>(&want), "step {step}");
            // The first step allocates room for MIN_ROOM positions; every step that fits
            // writes into the same allocation.
            if step > 0 && step < MIN_ROOM {
                assert_eq!(Some(ptr(&out)), before, "step {step} reallocated");
            }
            first_buffer.get_or_insert(ptr(&out));
            past = out;
        }
        assert_ne!(Some(ptr(&past)), first_buffer, "80 positions outgrow the first allocation");
    }

    #[test]
    fn a_shared_past_is_copied_and_left_intact() {
        let past = filled(&[2, 3, 2], 0.0);
        let kept = past.clone();
        let new = filled(&[2, 1, 2], 50.0);
        let out = kernel(1).run_taking_first(past, &[None, Some(&new)]).unwrap().remove(0);
        assert_eq!(values::<f32>(&out), values::<f32>(&concat(&[&kept, &new], 1).unwrap()));
        assert_eq!(values::<f32>(&kept), values::<f32>(&filled(&[2, 3, 2], 0.0)));
        assert_ne!(ptr(&out), ptr(&kept));
    }

    #[test]
    fn every_axis_and_a_strided_past() {
        for axis in 0..3 {
            let mut shape = [2, 3, 4];
            let past = filled(&shape, 1.0);
            shape[axis] = 2;
            let new = filled(&shape, -7.0);
            let want = concat(&[&past, &new], axis as i64).unwrap();
            let once = kernel(axis as i64).run_taking_first(past, &[None, Some(&new)]).unwrap().remove(0);
            assert_eq!(values::<f32>(&once), values::<f32>(&want), "axis {axis}");
            let twice = kernel(axis as i64).run_taking_first(once, &[None, Some(&new)]).unwrap().remove(0);
            let want = concat(&[&want, &new], axis as i64).unwrap();
            assert_eq!(values::<f32>(&twice), values::<f32>(&want), "axis {axis}, in place");
        }
        // A transposed past is not laid out as a cache: copied.
        let past = Tensor::from(filled(&[3, 2], 0.0).as_f32().unwrap().clone().reversed_axes());
        let new = filled(&[1, 3], 9.0);
        let want = concat(&[&past, &new], 0).unwrap();
        let out = kernel(0).run_taking_first(past, &[None, Some(&new)]).unwrap().remove(0);
        assert_eq!(values::<f32>(&out), values::<f32>(&want));
    }

    #[test]
    fn empty_parts_and_empty_dims_join_like_concat() {
        for (past_shape, new_shape, axis) in [([1, 2, 3], [1, 2, 0], 2), ([1, 3, 2], [1, 0, 2], 1), ([1, 2, 0], [1, 1, 0], 1), ([0, 2, 4], [0, 1, 4], 1)] {
            let (past, new) = (filled(&past_shape, 0.0), filled(&new_shape, 9.0));
            let want = concat(&[&past, &new], axis).unwrap();
            let got = kernel(axis).run_taking_first(past, &[None, Some(&new)]).unwrap().remove(0);
            assert_eq!(values::<f32>(&got), values::<f32>(&want), "{past_shape:?} + {new_shape:?} on {axis}");
        }
    }

    #[test]
    fn other_dtypes_concat_and_bad_shapes_are_errors() {
        let past = t(&[1, 2], &[1i64, 2]);
        let out = kernel(1).run_taking_first(past, &[None, Some(&t(&[1, 1], &[3i64]))]).unwrap().remove(0);
        assert_eq!(values::<i64>(&out), (vec![1, 3], vec![1, 2, 3]));
        let err = kernel(1).run_taking_first(filled(&[1, 2], 0.0), &[None, Some(&filled(&[2, 1], 0.0))]).unwrap_err();
        assert!(err.to_string().contains("does not match input #0"), "{err}");
        assert_err(node("RbeKvAppend").domain(DOMAIN).int("axis", 0).run1(&[&filled(&[1], 0.0)]), "missing required input #1");
        let y = node("RbeKvAppend").domain(DOMAIN).int("axis", 0).run1(&[&filled(&[1], 0.0), &filled(&[2], 5.0)]).unwrap();
        assert_eq!(values::<f32>(&y), (vec![3], vec![0.0, 5.0, 6.0]));
    }
}

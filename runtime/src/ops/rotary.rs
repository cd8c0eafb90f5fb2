//! RotaryEmbedding (opset 23): rotates the first `rotary_embedding_dim` features of every
//! head by position-dependent angles (`cos_cache`, `sin_cache`, looked up by `position_ids`
//! when given), in halves or interleaved pairs; computed in float32, returned in the input's
//! type.

use super::cast::cast;
use super::common::{contiguous, from_shape_vec, kernel, model_err};
use super::{input, optional_input, Kernel, OpContext, Registry};
use crate::error::{op_err, Result};
use crate::tensor::{DType, Tensor};

/// The attributes, checked at load (shared with the contrib RotaryEmbedding and
/// GroupQueryAttention).
#[derive(Clone, Copy)]
pub(super) struct Rotary {
    /// Rotate interleaved pairs `(2i, 2i+1)` instead of halves `(i, i + dim/2)`.
    pub interleaved: bool,
    /// How many leading features of a head rotate; 0: the whole head.
    pub dim: usize,
    /// The head count of a 3-D `[B, S, heads·D]` input.
    pub num_heads: Option<usize>,
}

/// Where the cos/sin rows come from.
enum Angles {
    /// `cache[position_ids[b, s]]`, cache `[positions, half]`, ids `[B, S]`.
    Positions { ids: Vec<i64>, rows: usize, ids_dims: [usize; 2] },
    /// `cache[b, s]`, cache `[B or 1, S or 1, half]`.
    Direct { dims: [usize; 2] },
}

impl Angles {
    /// The cache row of token `(b, s)`.
    fn row(&self, b: usize, s: usize) -> Result<usize> {
        let at = |dim: usize, i: usize| if dim == 1 { 0 } else { i };
        match self {
            Angles::Positions { ids, rows, ids_dims } => {
                let id = ids[at(ids_dims[0], b) * ids_dims[1] + at(ids_dims[1], s)];
                usize::try_from(id)
                    .ok()
                    .filter(|&r| r < *rows)
                    .ok_or_else(|| op_err(format!("position id {id} is outside the cache of {rows} positions")))
            }
            Angles::Direct { dims } => Ok(at(dims[0], b) * dims[1] + at(dims[1], s)),
        }
    }
}

/// `x` (`[B, H, S, D]`, or `[B, S, H·D]` with `num_heads`) with its heads rotated by the
/// cache rows of `ids` (`[B or 1, S or 1]`), or of the token itself without ids.
pub(super) fn rotary(r: Rotary, x: &Tensor, cos: &Tensor, sin: &Tensor, ids: Option<&Tensor>) -> Result<Tensor> {
    if !x.dtype().is_float() {
        return Err(op_err(format!("RotaryEmbedding needs a float input, got {}", x.dtype())));
    }
    // (B, H, S, D) and whether the data is laid out [B, S, H, D] (3-D input).
    let ([b, h, s, d], tokens_major) = match (x.shape(), r.num_heads) {
        (&[b, h, s, d], _) => ([b, h, s, d], false),
        (&[b, s, hidden], Some(n)) if hidden % n == 0 => ([b, n, s, hidden / n], true),
        (&[_, _, hidden], Some(n)) => {
            return Err(op_err(format!("hidden size {hidden} is not a multiple of num_heads {n}")))
        }
        ([_, _, _], None) => return Err(op_err("a 3-D input needs the num_heads attribute")),
        (shape, _) => return Err(op_err(format!("the input must be 3-D or 4-D, got shape {shape:?}"))),
    };
    let dim = if r.dim == 0 { d } else { r.dim };
    if dim > d || dim % 2 != 0 {
        return Err(op_err(format!("rotary_embedding_dim {dim} must be even and at most the head size {d}")));
    }
    let half = dim / 2;
    if cos.shape() != sin.shape() || cos.shape().last() != Some(&half) {
        return Err(op_err(format!(
            "cos_cache {:?} and sin_cache {:?} must agree and end in rotary_embedding_dim / 2 = {half}",
            cos.shape(),
            sin.shape()
        )));
    }
    let fits = |dim: usize, full: usize| dim == 1 || dim == full;
    let angles = match (ids, cos.shape()) {
        (Some(ids), &[rows, _]) => match *ids.shape() {
            [ib, is] if fits(ib, b) && fits(is, s) => Angles::Positions { ids: ids.to_i64_vec()?, rows, ids_dims: [ib, is] },
            _ => return Err(op_err(format!("position_ids of shape {:?}, expected [{b}, {s}]", ids.shape()))),
        },
        (None, &[cb, cs, _]) if fits(cb, b) && fits(cs, s) => Angles::Direct { dims: [cb, cs] },
        (Some(_), shape) => return Err(op_err(format!("with position_ids the caches must be 2-D, got {shape:?}"))),
        (None, shape) => return Err(op_err(format!("without position_ids the caches must be [{b}, {s}, {half}], got {shape:?}"))),
    };
    let up = |t: &Tensor| cast(t, DType::F32);
    let (xf, cf, sf) = (up(x), up(cos), up(sin));
    let (cos, sin) = (contiguous(cf.as_f32()?), contiguous(sf.as_f32()?));
    let mut y = contiguous(xf.as_f32()?).into_owned();
    for bi in 0..b {
        for si in 0..s {
            let row = angles.row(bi, si)? * half;
            let (cos, sin) = (&cos[row..row + half], &sin[row..row + half]);
            for hi in 0..h {
                let start = if tokens_major { ((bi * s + si) * h + hi) * d } else { ((bi * h + hi) * s + si) * d };
                let head = &mut y[start..start + dim];
                for i in 0..half {
                    let (i1, i2) = if r.interleaved { (2 * i, 2 * i + 1) } else { (i, i + half) };
                    let (x1, x2) = (head[i1], head[i2]);
                    head[i1] = cos[i] * x1 - sin[i] * x2;
                    head[i2] = sin[i] * x1 + cos[i] * x2;
                }
            }
        }
    }
    Ok(cast(&from_shape_vec(x.shape(), y)?.into(), x.dtype()))
}

fn rotary_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let count = |name: &str| -> Result<Option<usize>> {
        match ctx.attrs.int(name) {
            None | Some(0) => Ok(None),
            Some(n) => usize::try_from(n).map(Some).map_err(|_| model_err(ctx, format!("{name} must be nonnegative, got {n}"))),
        }
    };
    let r = Rotary {
        interleaved: ctx.attrs.int_or("interleaved", 0) != 0,
        dim: count("rotary_embedding_dim")?.unwrap_or(0),
        num_heads: count("num_heads")?,
    };
    kernel(move |inputs| {
        let (x, cos, sin) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?);
        Ok(vec![rotary(r, x, cos, sin, optional_input(inputs, 3))?])
    })
}

/// Registers RotaryEmbedding.
pub(super) fn register(reg: &mut Registry) {
    reg.register("", "RotaryEmbedding", 23, rotary_factory);
}

#[cfg(test)]
mod tests {
    use crate::ops::testutil::{assert_close, assert_err, node, t};

    #[test]
    fn rotates_halves_or_pairs_of_the_rotary_dims() {
        // One head of 6 features, 4 of them rotated, at positions 1 and 0 of a 2-row cache.
        let x = t(&[1, 1, 2, 6], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let (c, s) = (0.6f32, 0.8f32);
        let cos = t(&[2, 2], &[1.0f32, 1.0, c, 0.0]);
        let sin = t(&[2, 2], &[0.0f32, 0.0, s, 1.0]);
        let ids = t(&[1, 2], &[1i64, 0]);
        let spec = node("RotaryEmbedding").opset(23).int("rotary_embedding_dim", 4);
        let y = spec.run1(&[&x, &cos, &sin, &ids]).unwrap();
        // Halves: pairs (x0, x2) by (c, s) and (x1, x3) by (0, 1).
        let first = [c * 1.0 - s * 3.0, -4.0, s * 1.0 + c * 3.0, 2.0, 5.0, 6.0];
        assert_close(&y, &[1, 1, 2, 6], &[&first[..], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]].concat());
        let y = spec.int("interleaved", 1).run1(&[&x, &cos, &sin, &ids]).unwrap();
        // Pairs: (x0, x1) by (c, s) and (x2, x3) by (0, 1).
        let first = [c * 1.0 - s * 2.0, s * 1.0 + c * 2.0, -4.0, 3.0, 5.0, 6.0];
        assert_close(&y, &[1, 1, 2, 6], &[&first[..], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]].concat());
        // 3-D input with num_heads and per-token caches, same result as 4-D.
        let x3 = x.reshape(&[1, 2, 6]).unwrap();
        let cos3 = t(&[1, 2, 2], &[c, 0.0, 1.0, 1.0]);
        let sin3 = t(&[1, 2, 2], &[s, 1.0, 0.0, 0.0]);
        let y = node("RotaryEmbedding").opset(23).int("num_heads", 1).int("rotary_embedding_dim", 4).run1(&[&x3, &cos3, &sin3]).unwrap();
        let first = [c * 1.0 - s * 3.0, -4.0, s * 1.0 + c * 3.0, 2.0, 5.0, 6.0];
        assert_close(&y, &[1, 2, 6], &[&first[..], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]].concat());
    }

    #[test]
    fn bad_inputs_are_errors() {
        let x = t(&[1, 1, 2, 4], &[1.0f32; 8]);
        let cache = t(&[2, 2], &[1.0f32; 4]);
        let ids = t(&[1, 2], &[0i64, 1]);
        let rope = || node("RotaryEmbedding").opset(23);
        assert_err(rope().run1(&[&t(&[2, 4], &[1.0f32; 8]), &cache, &cache, &ids]), "3-D or 4-D");
        assert_err(rope().run1(&[&t(&[1, 2, 4], &[1.0f32; 8]), &cache, &cache, &ids]), "num_heads");
        assert_err(rope().int("num_heads", 3).run1(&[&t(&[1, 2, 4], &[1.0f32; 8]), &cache, &cache, &ids]), "multiple");
        assert_err(rope().int("rotary_embedding_dim", 3).run1(&[&x, &cache, &cache, &ids]), "even");
        assert_err(rope().int("rotary_embedding_dim", 6).run1(&[&x, &cache, &cache, &ids]), "at most");
        assert_err(rope().run1(&[&x, &t(&[2, 3], &[1.0f32; 6]), &t(&[2, 3], &[1.0f32; 6]), &ids]), "rotary_embedding_dim / 2");
        assert_err(rope().run1(&[&x, &cache, &t(&[1, 2], &[1.0f32; 2]), &ids]), "must agree");
        assert_err(rope().run1(&[&x, &cache, &cache, &t(&[1, 2], &[0i64, 2])]), "outside the cache");
        assert_err(rope().run1(&[&x, &cache, &cache, &t(&[1, 2], &[-1i64, 0])]), "outside the cache");
        assert_err(rope().run1(&[&x, &cache, &cache, &t(&[1, 3], &[0i64; 3])]), "position_ids of shape");
        assert_err(rope().run1(&[&x, &cache, &cache]), "without position_ids");
        assert_err(rope().run1(&[&t(&[1, 1, 1, 2], &[1i64, 2]), &cache, &cache, &ids]), "float");
        assert_err(rope().int("num_heads", -1).build().map(|_| ()), "nonnegative");
    }
}

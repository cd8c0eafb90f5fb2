//! onnxruntime's `RotaryEmbedding`: the standard op's rotation ([`crate::ops::rotary`]) with
//! onnxruntime's inputs: `input` `[B, S, hidden]` or `[B, heads, S, head]`, `position_ids`
//! `[B, S]` or a scalar `[1]` start (token `s` at `start + s`), caches `[positions, dim / 2]`.
//! Without `num_heads` a 3-D input's head size is twice the cache width. The `scale`
//! attribute is ignored, as onnxruntime's CPU kernel does; packed batching is refused.

use super::DOMAIN;
use crate::error::{op_err, Result};
use crate::ops::common::{kernel, model_err};
use crate::ops::rotary::{rotary, Rotary};
use crate::ops::{input, Kernel, OpContext, Registry};
use crate::tensor::Tensor;

pub(super) fn register(reg: &mut Registry) {
    reg.register(DOMAIN, "RotaryEmbedding", 1, factory);
}

fn factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let count = |name: &str| -> Result<usize> {
        let n = ctx.attrs.int_or(name, 0);
        usize::try_from(n).map_err(|_| model_err(ctx, format!("{name} must be nonnegative, got {n}")))
    };
    let (dim, heads) = (count("rotary_embedding_dim")?, count("num_heads")?);
    if dim > 0 && heads == 0 {
        return Err(model_err(ctx, "rotary_embedding_dim needs num_heads"));
    }
    if ctx.attrs.int_or("is_packed_batching", 0) != 0 {
        return Err(model_err(ctx, "is_packed_batching = 1 is not supported"));
    }
    let interleaved = ctx.attrs.int_or("interleaved", 0) != 0;
    kernel(move |inputs| {
        let (x, ids, cos, sin) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?, input(inputs, 3)?);
        let &[_, width] = cos.shape() else {
            return Err(op_err(format!("cos_cache must be [positions, rotary_embedding_dim / 2], got {:?}", cos.shape())));
        };
        let num_heads = match (heads, x.shape()) {
            (0, &[_, _, hidden]) if hidden >= 2 * width && width > 0 => Some(hidden / (2 * width)),
            (0, &[_, _, hidden]) => {
                return Err(op_err(format!("hidden size {hidden} holds no head of twice the cache width {width}")))
            }
            (0, _) => None,
            (n, _) => Some(n),
        };
        let s = match x.shape() {
            &[_, _, s, _] | &[_, s, _] => s,
            shape => return Err(op_err(format!("the input must be 3-D or 4-D, got shape {shape:?}"))),
        };
        let ids = match ids.shape() {
            [1] => start_positions(ids.to_i64_vec()?[0], s)?,
            _ => ids.clone(),
        };
        Ok(vec![rotary(Rotary { interleaved, dim, num_heads }, x, cos, sin, Some(&ids))?])
    })
}

/// The position ids `[1, s]` of tokens counted from `start`.
pub(super) fn start_positions(start: i64, s: usize) -> Result<Tensor> {
    Tensor::from_vec(&[1, s], (0..s as i64).map(|i| start.saturating_add(i)).collect())
}

#[cfg(test)]
mod tests {
    use crate::ops::testutil::{assert_err, node, t, values};

    #[test]
    fn a_start_offset_is_the_ids_it_stands_for_and_bad_shapes_are_errors() {
        let x = t(&[1, 3, 4], &(0..12).map(|i| i as f32 / 3.0).collect::<Vec<_>>());
        let cache: Vec<f32> = (0..10).map(|i| (i as f32 * 0.3).cos()).collect();
        let (cos, sin) = (t(&[5, 2], &cache), t(&[5, 2], &cache.iter().map(|c| (1.0 - c * c).sqrt()).collect::<Vec<_>>()));
        let rope = || node("RotaryEmbedding").domain("com.microsoft").opset(1);
        let by_start = rope().run1(&[&x, &t(&[1], &[2i64]), &cos, &sin]).unwrap();
        let by_ids = rope().run1(&[&x, &t(&[1, 3], &[2i64, 3, 4]), &cos, &sin]).unwrap();
        assert_eq!(values::<f32>(&by_start), values::<f32>(&by_ids));
        assert_err(rope().run1(&[&x, &t(&[1], &[3i64]), &cos, &sin]), "outside the cache");
        assert_err(rope().run1(&[&x, &t(&[1], &[0i64]), &t(&[1, 5, 2], &cache), &sin]), "cos_cache must be");
        assert_err(rope().run1(&[&t(&[12], &[1.0f32; 12]), &t(&[1], &[0i64]), &cos, &sin]), "3-D or 4-D");
        assert_err(rope().run1(&[&t(&[1, 3, 2], &[1.0f32; 6]), &t(&[1], &[0i64]), &cos, &sin]), "holds no head");
        assert_err(rope().int("num_heads", 3).run1(&[&x, &t(&[1], &[0i64]), &cos, &sin]), "multiple");
        assert_err(rope().int("rotary_embedding_dim", 2).build().map(|_| ()), "needs num_heads");
        assert_err(rope().int("is_packed_batching", 1).build().map(|_| ()), "packed");
    }
}

//! onnxruntime's `MultiHeadAttention`: `query` `[B, S, D]`; `key` and `value` `[B, L, D]` and
//! `[B, L, Dv]` (joined to `past_key` / `past_value` `[B, N, P, H]`), or already split into
//! heads `[B, N, L, H]` (a cross-attention cache, used as it is); `bias` `[D + D + Dv]` added to
//! the three projections; `key_padding_mask`, `attention_bias`, `unidirectional`, `scale` and
//! `mask_filter_value` as [`super::attention_core`] reads them. Outputs `[B, S, Dv]` and the
//! caches. Packed QKV/KV, `past_sequence_length`, `cache_indirection` and the `qk` output are
//! refused.

use super::attention_core::{attend, cache_f32, Masking};
use super::{f32_values, DOMAIN};
use crate::error::{op_err, Result};
use crate::ops::attention::split_heads;
use crate::ops::cast::cast;
use crate::ops::common::{kernel, model_err};
use crate::ops::{input, optional_input, Kernel, OpContext, Registry};
use crate::tensor::Tensor;

pub(super) fn register(reg: &mut Registry) {
    reg.register(DOMAIN, "MultiHeadAttention", 1, factory);
}

fn factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let heads = num_heads(ctx)?;
    if ctx.node.output.iter().skip(3).any(|o| !o.is_empty()) {
        return Err(model_err(ctx, "the qk output is not supported"));
    }
    let causal = ctx.attrs.int_or("unidirectional", 0) != 0;
    let mask_filter_value = ctx.attrs.float_or("mask_filter_value", -10000.0);
    let scale = ctx.attrs.float_or("scale", 0.0);
    let declared = ctx.num_outputs().min(3);
    kernel(move |inputs| {
        if inputs.iter().skip(8).any(Option::is_some) {
            return Err(op_err("past_sequence_length and cache_indirection are not supported"));
        }
        let (query, key, value) = (input(inputs, 0)?, optional_input(inputs, 1), optional_input(inputs, 2));
        let (Some(key), Some(value)) = (key, value) else {
            return Err(op_err("key and value are required (packed QKV is not supported)"));
        };
        let &[_, _, d] = query.shape() else {
            return Err(op_err(format!("query must be 3-D [batch, sequence, hidden], got shape {:?}", query.shape())));
        };
        let bias = optional_input(inputs, 3).map(|b| f32_values(b, "bias")).transpose()?;
        let q = split_heads(&biased(query, bias.as_deref().map(|b| &b[..d.min(b.len())]), "query")?, Some(heads), "query")?;
        let past = match (optional_input(inputs, 6), optional_input(inputs, 7)) {
            (Some(pk), Some(pv)) => Some((cache_f32(pk, "past_key")?, cache_f32(pv, "past_value")?)),
            (None, None) => None,
            _ => return Err(op_err("past_key and past_value must be given together")),
        };
        let (k, v) = if key.rank() == 4 {
            if bias.is_some() || past.is_some() {
                return Err(op_err("4-D key and value cannot take a bias or a past"));
            }
            (cache_f32(key, "key")?, cache_f32(value, "value")?)
        } else {
            let dk = key.shape().last().copied().unwrap_or(0);
            if let Some(b) = &bias {
                let dv = value.shape().last().copied().unwrap_or(0);
                if b.len() != d + dk + dv || dk != d {
                    return Err(op_err(format!("bias of {} values, expected query + key + value hidden sizes {d} + {dk} + {dv}", b.len())));
                }
            }
            let part = |from: usize, to: usize| bias.as_deref().map(|b| &b[from..to]);
            let k = biased(key, part(d, d + dk), "key")?;
            let v = biased(value, part(d + dk, bias.as_ref().map_or(0, Vec::len)), "value")?;
            (split_heads(&k, Some(heads), "key")?, split_heads(&v, Some(heads), "value")?)
        };
        let masking = Masking {
            mask_index: optional_input(inputs, 4),
            attention_bias: optional_input(inputs, 5),
            causal,
            mask_filter_value,
            scale,
        };
        let out = attend(&q, &k, &v, past.as_ref().map(|(k, v)| (k, v)), &masking)?;
        let dtype = query.dtype();
        let outputs = [out.y, out.present_key, out.present_value];
        Ok(outputs.iter().take(declared).map(|t| cast(t, dtype)).collect())
    })
}

/// The `num_heads` attribute, required and positive.
pub(super) fn num_heads(ctx: &OpContext) -> Result<usize> {
    let n = ctx.attrs.int_or("num_heads", 0);
    usize::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| model_err(ctx, format!("num_heads must be positive, got {n}")))
}

/// A 3-D float tensor as float32, plus `bias` over its last axis when given.
fn biased(x: &Tensor, bias: Option<&[f32]>, what: &str) -> Result<Tensor> {
    if x.rank() != 3 {
        return Err(op_err(format!("{what} must be 3-D [batch, sequence, hidden], got shape {:?}", x.shape())));
    }
    let mut values = f32_values(x, what)?;
    if let Some(bias) = bias {
        if Some(&bias.len()) != x.shape().last() {
            return Err(op_err(format!("the bias of {what} has {} values, expected {:?}", bias.len(), x.shape().last())));
        }
        for (v, b) in values.iter_mut().zip(bias.iter().cycle()) {
            *v += b;
        }
    }
    Tensor::from_vec(x.shape(), values)
}

#[cfg(test)]
mod tests {
    use super::super::filled;
    use crate::ops::testutil::{assert_err, node, t};

    #[test]
    fn wrong_shapes_are_errors() {
        let mha = || node("MultiHeadAttention").domain("com.microsoft").opset(1).int("num_heads", 2).outputs(3);
        let (q, kv) = (filled(&[1, 2, 8]), filled(&[1, 3, 8]));
        assert!(mha().run(&[&q, &kv, &kv]).is_ok());
        assert_err(mha().run(&[&filled(&[2, 8]), &kv, &kv]), "query must be 3-D");
        assert_err(mha().run_opt(&[Some(&q), None, None]), "packed QKV");
        assert_err(mha().run(&[&q, &kv, &filled(&[1, 4, 8])]), "disagree");
        assert_err(mha().run(&[&q, &kv, &kv, &filled(&[20])]), "bias of 20 values");
        assert_err(mha().run(&[&q, &filled(&[1, 3, 5]), &kv]), "not a multiple");
        assert_err(mha().run(&[&q, &kv, &kv, &filled(&[24]), &t(&[1, 4], &[1i32; 4])]), "mask_index of shape");
        assert_err(mha().run(&[&q, &kv, &kv, &filled(&[24]), &t(&[1, 3], &[1i64; 3])]), "int32");
        let bias = Some(filled(&[1, 2, 2, 4]));
        assert_err(mha().run_opt(&[Some(&q), Some(&kv), Some(&kv), None, None, bias.as_ref()]), "attention_bias of shape");
        assert_err(mha().run_opt(&[Some(&q), Some(&kv), Some(&kv), None, None, None, Some(&filled(&[1, 2, 1, 4]))]), "together");
        assert_err(mha().run_opt(&[Some(&q), Some(&kv), Some(&kv), None, None, None, Some(&filled(&[1, 2, 1])), Some(&filled(&[1, 2, 1]))]), "4-D");
        assert_err(mha().int("num_heads", 0).build().map(|_| ()), "num_heads must be positive");
    }
}

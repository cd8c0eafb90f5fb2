//! onnxruntime's `GroupQueryAttention` (CPU semantics): `query` `[B, S, N·H]` with `key` and
//! `value` `[B, S, Nkv·H]`, or all three packed in `query` `[B, S, (N + 2·Nkv)·H]`; the caches
//! `past_key` / `past_value` `[B, Nkv, P, H]`; `seqlens_k` (int32 `[B]`, each sequence's total
//! length minus 1) and `total_sequence_length` (int32 scalar). A step is the first prompt when
//! `S` equals the total length (positions from 0), else it continues each sequence after its
//! `seqlens_k + 1 - S` cached tokens. With `do_rotary` the queries and keys are rotated first
//! ([`crate::ops::rotary`], `cos_cache` / `sin_cache` `[positions, rotary dim / 2]`,
//! `rotary_interleaved`). Query `s` sees the keys up to its own position; with a
//! `local_window_size` only the last that many (its own included, as onnxruntime 1.32 does).
//! `scale` (0: `1/sqrt(H)`) and `softcap` apply before the softmax. Outputs: `[B, S, N·H]` and
//! the caches `[B, Nkv, max(T, P), H]` (rows past a sequence's length are 0). `position_ids`,
//! `attention_bias`, `head_sink`, `smooth_softmax` and `qk_output` are refused.

use super::mha::num_heads;
use super::{f32_values, DOMAIN};
use crate::error::{op_err, Result};
use crate::kernels::sdpa::{sdpa, Capture, Sdpa};
use crate::ops::attention::{merge_heads, rank4, split_heads};
use crate::ops::cast::cast;
use crate::ops::common::{checked_len, from_shape_vec, kernel, model_err};
use crate::ops::rotary::{rotary, Rotary};
use crate::ops::{input, optional_input, Kernel, OpContext, Registry};
use crate::tensor::{DType, Tensor};

pub(super) fn register(reg: &mut Registry) {
    reg.register(DOMAIN, "GroupQueryAttention", 1, factory);
}

/// The attributes, checked at load.
#[derive(Clone, Copy)]
struct Config {
    heads: usize,
    kv_heads: usize,
    scale: f32,
    softcap: f32,
    /// How many keys, its own included, a query sees (`local_window_size`).
    window: Option<usize>,
    /// `Some(interleaved)` with `do_rotary`.
    rotary: Option<bool>,
    outputs: usize,
}

fn factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let heads = num_heads(ctx)?;
    let kv_heads = ctx.attrs.int_or("kv_num_heads", 0);
    let kv_heads = usize::try_from(kv_heads)
        .ok()
        .filter(|&n| n > 0 && heads % n == 0)
        .ok_or_else(|| model_err(ctx, format!("kv_num_heads {kv_heads} must be positive and divide num_heads {heads}")))?;
    let window = match ctx.attrs.int_or("local_window_size", -1) {
        -1 => None,
        w => Some(usize::try_from(w).ok().filter(|&w| w > 0).ok_or_else(|| model_err(ctx, format!("local_window_size must be -1 or positive, got {w}")))?),
    };
    let softcap = ctx.attrs.float_or("softcap", 0.0);
    if softcap.is_nan() || softcap < 0.0 {
        return Err(model_err(ctx, format!("softcap {softcap} must be at least 0")));
    }
    for refused in ["smooth_softmax", "qk_output"] {
        if ctx.attrs.int_or(refused, 0) != 0 {
            return Err(model_err(ctx, format!("{refused} is not supported")));
        }
    }
    let config = Config {
        heads,
        kv_heads,
        scale: ctx.attrs.float_or("scale", 0.0),
        softcap,
        window,
        rotary: (ctx.attrs.int_or("do_rotary", 0) != 0).then(|| ctx.attrs.int_or("rotary_interleaved", 0) != 0),
        outputs: ctx.num_outputs().min(3),
    };
    kernel(move |inputs| group_query_attention(config, inputs))
}

fn group_query_attention(c: Config, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
    if inputs.iter().skip(9).any(Option::is_some) {
        return Err(op_err("position_ids, attention_bias and head_sink are not supported"));
    }
    let query = input(inputs, 0)?;
    let &[b, s, width] = query.shape() else {
        return Err(op_err(format!("query must be 3-D [batch, sequence, hidden], got shape {:?}", query.shape())));
    };
    let (q, k, v, h) = split_qkv(c, query, optional_input(inputs, 1), optional_input(inputs, 2), [b, s, width])?;
    let lengths = step_lengths(c, inputs, [b, s])?;
    let (q, k) = match c.rotary {
        Some(interleaved) => {
            let (cos, sin) = (input(inputs, 7)?, input(inputs, 8)?);
            let dim = 2 * cos.shape().get(1).copied().unwrap_or(0);
            let ids: Vec<i64> = lengths.past.iter().flat_map(|&p| (0..s).map(move |i| (p + i) as i64)).collect();
            let ids = Tensor::from_vec(&[b, s], ids)?;
            let turn = |x: &Tensor, n: usize| rotary(Rotary { interleaved, dim, num_heads: Some(n) }, x, cos, sin, Some(&ids));
            (turn(&q, c.heads)?, turn(&k, c.kv_heads)?)
        }
        None => (q, k),
    };
    let [present_key, present_value] = [(&k, 3, "past_key"), (&v, 4, "past_value")]
        .map(|(new, i, what)| present(optional_input(inputs, i), new, &lengths, [c.kv_heads, h], what));
    let (present_key, present_value) = (present_key?, present_value?);
    let span = lengths.present;
    let mut bias = vec![0f32; checked_len(&[b, s, span])?];
    for (i, x) in bias.iter_mut().enumerate() {
        let (bi, row, j) = (i / (s * span), i / span % s, i % span);
        let seen = lengths.past[bi] + row + 1;
        if j >= seen || c.window.is_some_and(|w| j + w < seen) {
            *x = f32::NEG_INFINITY;
        }
    }
    let bias = ndarray::ArrayView4::from_shape((b, 1, s, span), &bias[..]).map_err(|e| op_err(e.to_string()))?;
    let q = split_heads(&q, Some(c.heads), "query")?;
    let out = sdpa(&Sdpa {
        q: rank4(&q)?,
        k: rank4(&present_key)?,
        v: rank4(&present_value)?,
        bias: Some(bias.broadcast((b, c.heads, s, span)).ok_or_else(|| op_err("the causal mask does not broadcast"))?),
        scale: if c.scale == 0.0 { 1.0 / (h as f32).sqrt() } else { c.scale },
        softcap: c.softcap,
        capture: Capture::Nothing,
    })?;
    let y = merge_heads(&Tensor::from(from_shape_vec(&[b, c.heads, s, h], out.y)?))?;
    let dtype = query.dtype();
    Ok([y, present_key, present_value].iter().take(c.outputs).map(|t| cast(t, dtype)).collect())
}

/// Float32 queries `[B, S, N·H]`, keys and values `[B, S, Nkv·H]`, and the head size `H`.
fn split_qkv(c: Config, query: &Tensor, key: Option<&Tensor>, value: Option<&Tensor>, [b, s, width]: [usize; 3]) -> Result<(Tensor, Tensor, Tensor, usize)> {
    let values = f32_values(query, "query")?;
    let (n, nkv) = (c.heads, c.kv_heads);
    match (key, value) {
        (None, None) => {
            let packed = n + 2 * nkv;
            if width % packed != 0 {
                return Err(op_err(format!("packed query width {width} is not (num_heads + 2 kv_num_heads) = {packed} heads")));
            }
            let h = width / packed;
            let part = |from: usize, heads: usize| {
                let rows = values.chunks_exact(width.max(1)).flat_map(|row| &row[from * h..(from + heads) * h]);
                Tensor::from_vec(&[b, s, heads * h], rows.copied().collect())
            };
            Ok((part(0, n)?, part(n, nkv)?, part(n + nkv, nkv)?, h))
        }
        (Some(key), Some(value)) => {
            let h = width / n;
            let kv_shape = [b, s, nkv * h];
            if width % n != 0 || key.shape() != kv_shape || value.shape() != kv_shape || key.dtype() != query.dtype() || value.dtype() != query.dtype() {
                return Err(op_err(format!(
                    "query {:?} ({} heads), key {:?} and value {:?} disagree: expected key and value {kv_shape:?} of {}",
                    query.shape(),
                    n,
                    key.shape(),
                    value.shape(),
                    query.dtype()
                )));
            }
            let up = |t: &Tensor, what: &str| Tensor::from_vec(t.shape(), f32_values(t, what)?);
            Ok((Tensor::from_vec(query.shape(), values)?, up(key, "key")?, up(value, "value")?, h))
        }
        _ => Err(op_err("key and value must be given together")),
    }
}

/// Where each sequence of the step stands.
struct Lengths {
    /// Tokens cached before this step, per sequence.
    past: Vec<usize>,
    /// The length of the present caches, `max(total, past buffer)`.
    present: usize,
}

/// The cached lengths of the step from `seqlens_k`, `total_sequence_length` and the past
/// buffer, checked against each other.
fn step_lengths(c: Config, inputs: &[Option<&Tensor>], [b, s]: [usize; 2]) -> Result<Lengths> {
    let (seqlens, total) = (input(inputs, 5)?, input(inputs, 6)?);
    if seqlens.dtype() != DType::I32 || seqlens.shape() != [b] || total.dtype() != DType::I32 || total.len() != 1 {
        return Err(op_err(format!(
            "seqlens_k must be int32 [{b}] and total_sequence_length an int32 scalar, got {} {:?} and {} {:?}",
            seqlens.dtype(),
            seqlens.shape(),
            total.dtype(),
            total.shape()
        )));
    }
    let total = usize::try_from(total.to_i64_vec()?[0]).map_err(|_| op_err("total_sequence_length must be nonnegative"))?;
    let buffer = match optional_input(inputs, 3) {
        Some(p) => p.shape().get(2).copied().unwrap_or(0),
        None => 0,
    };
    let first_prompt = s == total;
    let mut past = Vec::with_capacity(b);
    for n in seqlens.to_i64_vec()? {
        let len = usize::try_from(n + 1).ok().filter(|&l| l <= total);
        let cached = match len {
            Some(l) if first_prompt => Some(0).filter(|_| l <= s),
            Some(l) => l.checked_sub(s).filter(|&p| p <= buffer),
            None => None,
        };
        past.push(cached.ok_or_else(|| {
            op_err(format!("seqlens_k {n} does not fit a step of {s} tokens, total length {total} and a past of {buffer} (kv heads {})", c.kv_heads))
        })?);
    }
    Ok(Lengths { past, present: total.max(buffer) })
}

/// The cache `[B, Nkv, present, H]` (float32) after the step: each sequence's cached rows of
/// `past`, then its `S` new rows from `new` `[B, S, Nkv·H]`, then zeros.
fn present(past: Option<&Tensor>, new: &Tensor, lengths: &Lengths, [nkv, h]: [usize; 2], what: &str) -> Result<Tensor> {
    let (b, s) = (new.shape()[0], new.shape()[1]);
    let span = lengths.present;
    let past = match past {
        Some(p) if p.rank() == 4 && p.shape()[..2] == [b, nkv] && p.shape()[3] == h => Some((f32_values(p, what)?, p.shape()[2])),
        // An empty cache holds nothing to read, whatever head size it declares (a caller
        // cannot know it when the graph leaves it symbolic, as the model builder does).
        Some(p) if p.rank() == 4 && p.shape()[..2] == [b, nkv] && p.shape()[2] == 0 => None,
        Some(p) => return Err(op_err(format!("{what} of shape {:?}, expected [{b}, {nkv}, past, {h}]", p.shape()))),
        None => None,
    };
    let new = new.as_f32()?;
    let new = new.as_slice().ok_or_else(|| op_err("the new cache rows are not contiguous"))?;
    let mut out = vec![0f32; checked_len(&[b, nkv, span, h])?];
    for bi in 0..b {
        let cached = lengths.past[bi];
        if cached + s > span {
            return Err(op_err(format!("{cached} cached and {s} new tokens do not fit a cache of {span}")));
        }
        for hi in 0..nkv {
            let head = &mut out[(bi * nkv + hi) * span * h..][..span * h];
            if let Some((values, rows)) = &past {
                if cached > *rows {
                    return Err(op_err(format!("{what} holds {rows} tokens, sequence {bi} has {cached} cached")));
                }
                let from = (bi * nkv + hi) * rows * h;
                head[..cached * h].copy_from_slice(&values[from..from + cached * h]);
            }
            for si in 0..s {
                let from = ((bi * s + si) * nkv + hi) * h;
                head[(cached + si) * h..][..h].copy_from_slice(&new[from..from + h]);
            }
        }
    }
    Tensor::from_vec(&[b, nkv, span, h], out)
}

#[cfg(test)]
mod tests {
    use super::super::filled;
    use crate::tensor::Tensor;
    use crate::ops::testutil::{assert_err, node, t};

    #[test]
    fn wrong_shapes_are_errors() {
        let gqa = || node("GroupQueryAttention").domain("com.microsoft").opset(1).int("num_heads", 4).int("kv_num_heads", 2).outputs(3);
        let (q, kv) = (filled(&[1, 2, 16]), filled(&[1, 2, 8]));
        let (lens, total) = (t(&[1], &[1i32]), t(&[], &[2i32]));
        let past = filled(&[1, 2, 3, 4]);
        let run = |spec: crate::ops::testutil::NodeSpec, ins: &[Option<&Tensor>]| spec.run_opt(ins);
        assert!(run(gqa(), &[Some(&q), Some(&kv), Some(&kv), None, None, Some(&lens), Some(&total)]).is_ok());
        assert_err(run(gqa(), &[Some(&filled(&[2, 16])), Some(&kv), Some(&kv), None, None, Some(&lens), Some(&total)]), "3-D");
        assert_err(run(gqa(), &[Some(&q), Some(&filled(&[1, 2, 6])), Some(&kv), None, None, Some(&lens), Some(&total)]), "disagree");
        assert_err(run(gqa(), &[Some(&filled(&[1, 2, 15])), None, None, None, None, Some(&lens), Some(&total)]), "packed query width");
        assert_err(run(gqa(), &[Some(&q), Some(&kv), Some(&kv), None, None, Some(&t(&[1], &[1i64])), Some(&total)]), "int32");
        assert_err(run(gqa(), &[Some(&q), Some(&kv), Some(&kv), None, None, Some(&t(&[1], &[4i32])), Some(&total)]), "does not fit");
        // A token step whose sequence claims more cached tokens than the past holds.
        let step = [Some(&filled(&[1, 1, 16])), Some(&filled(&[1, 1, 8])), Some(&filled(&[1, 1, 8]))];
        let (lens, total) = (t(&[1], &[4i32]), t(&[1], &[5i32]));
        assert_err(run(gqa(), &[step[0], step[1], step[2], Some(&past), Some(&past), Some(&lens), Some(&total)]), "past of 3");
        let short = filled(&[1, 2, 2, 4]);
        assert_err(run(gqa(), &[step[0], step[1], step[2], Some(&filled(&[1, 2, 4, 4])), Some(&short), Some(&lens), Some(&total)]), "past_value holds 2");
        let bad_past = filled(&[1, 2, 4, 2]);
        assert_err(run(gqa(), &[step[0], step[1], step[2], Some(&bad_past), Some(&bad_past), Some(&lens), Some(&total)]), "past_key of shape");
        let rope = gqa().int("do_rotary", 1);
        let (cos, lens) = (filled(&[3, 2]), t(&[1], &[3i32]));
        let total = t(&[1], &[4i32]);
        assert_err(run(rope, &[step[0], step[1], step[2], Some(&past), Some(&past), Some(&lens), Some(&total), Some(&cos), Some(&cos)]), "outside the cache");
        assert_err(gqa().int("kv_num_heads", 3).build().map(|_| ()), "divide");
        assert_err(gqa().int("local_window_size", 0).build().map(|_| ()), "local_window_size");
    }

    /// An empty past of any declared head size is no cache at all (the model builder leaves
    /// the head size symbolic, so a first step cannot know it).
    #[test]
    fn an_empty_past_of_any_head_size_is_no_cache() {
        let gqa = node("GroupQueryAttention").domain("com.microsoft").opset(1).int("num_heads", 4).int("kv_num_heads", 2).outputs(3);
        let (q, kv) = (filled(&[1, 2, 16]), filled(&[1, 2, 8]));
        let (lens, total) = (t(&[1], &[1i32]), t(&[], &[2i32]));
        let empty = Tensor::from_vec(&[1, 2, 0, 0], Vec::<f32>::new()).unwrap();
        let without = gqa.run_opt(&[Some(&q), Some(&kv), Some(&kv), None, None, Some(&lens), Some(&total)]).unwrap();
        let with = gqa.run_opt(&[Some(&q), Some(&kv), Some(&kv), Some(&empty), Some(&empty), Some(&lens), Some(&total)]).unwrap();
        for (a, b) in without.iter().zip(&with) {
            assert_eq!(a.shape(), b.shape());
            assert_eq!(a.as_f32().unwrap(), b.as_f32().unwrap());
        }
    }
}

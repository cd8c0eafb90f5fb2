//! The attention step onnxruntime's `MultiHeadAttention` and `Attention` share (its
//! `AttentionCPUBase`): the cache joined to the new keys and values, then
//! [`crate::kernels::sdpa`] with one additive bias made of `mask_index` and `attention_bias`.
//! The mask is read as onnxruntime's `PrepareMask` does: a masked key gets `mask_filter_value`
//! (not -inf), a future key of the causal mask the lowest float, and the last query row is
//! exempt from the causal mask. `mask_index` (int32) is `[B]` key counts, `[2B]` end and start
//! positions, `[B, T]` 0/1 keys or `[B, S, T]` 0/1 scores, `T` the past plus the new keys.

use crate::error::{op_err, Result};
use crate::kernels::sdpa::{sdpa, Capture, Sdpa};
use crate::ops::attention::{append, merge_heads, rank4};
use crate::ops::common::{checked_len, from_shape_vec};
use crate::tensor::{DType, Tensor};

use super::f32_values;

/// How the scores are scaled and masked.
pub(super) struct Masking<'a> {
    /// onnxruntime's `mask_index` / `key_padding_mask` (see the module doc).
    pub mask_index: Option<&'a Tensor>,
    /// An additive float bias `[B or 1, N or 1, S, T]`.
    pub attention_bias: Option<&'a Tensor>,
    /// Query `s` sees keys up to the past length plus `s` (`unidirectional`).
    pub causal: bool,
    /// The bias of a key the mask hides.
    pub mask_filter_value: f32,
    /// The factor of `Q·Kᵀ`; 0 for `1 / sqrt(head size)`.
    pub scale: f32,
}

/// What [`attend`] returns, all float32.
pub(super) struct Attended {
    /// `[B, S, N·Hv]`.
    pub y: Tensor,
    /// `[B, N, T, H]`.
    pub present_key: Tensor,
    /// `[B, N, T, Hv]`.
    pub present_value: Tensor,
}

/// Attention of float32 `q` `[B, N, S, H]` over the past (`[B, N, P, H]` each, float32)
/// joined to `k` `[B, N, L, H]` and `v` `[B, N, L, Hv]`.
pub(super) fn attend(q: &Tensor, k: &Tensor, v: &Tensor, past: Option<(&Tensor, &Tensor)>, m: &Masking) -> Result<Attended> {
    let present_key = append(past.map(|p| p.0), k, "past_key")?;
    let present_value = append(past.map(|p| p.1), v, "past_value")?;
    let (qv, kv, vv) = (rank4(q)?, rank4(&present_key)?, rank4(&present_value)?);
    let (b, n, s, h) = qv.dim();
    let t = kv.dim().2;
    let past_len = t - k.shape()[2];
    let bias = score_bias(m, [b, n, s, t], past_len)?;
    let bias = match &bias {
        Some((values, heads)) => Some(ndarray::ArrayView4::from_shape((b, *heads, s, t), &values[..]).map_err(|e| op_err(e.to_string()))?),
        None => None,
    };
    let bias = match &bias {
        Some(view) => Some(view.broadcast((b, n, s, t)).ok_or_else(|| op_err("the attention bias does not broadcast"))?),
        None => None,
    };
    let scale = if m.scale == 0.0 { 1.0 / (h as f32).sqrt() } else { m.scale };
    let out = sdpa(&Sdpa { q: qv, k: kv, v: vv, bias, scale, softcap: 0.0, capture: Capture::Nothing })?;
    let y = Tensor::from(from_shape_vec(&[b, n, s, vv.dim().3], out.y)?);
    Ok(Attended { y: merge_heads(&y)?, present_key, present_value })
}

/// The additive bias `[B, heads, S, T]` (`heads` 1 or N) of the mask, the causal frontier and
/// `attention_bias`, or `None` when there is none of them.
fn score_bias(m: &Masking, [b, n, s, t]: [usize; 4], past: usize) -> Result<Option<(Vec<f32>, usize)>> {
    let mask = mask_bias(m, [b, s, t], past)?;
    let Some(extra) = m.attention_bias else { return Ok(mask.map(|v| (v, 1))) };
    let shape = extra.shape();
    let fits = |dim: usize, full: usize| dim == 1 || dim == full;
    if shape.len() != 4 || !fits(shape[0], b) || !fits(shape[1], n) || shape[2..] != [s, t] {
        return Err(op_err(format!("attention_bias of shape {shape:?}, expected [{b} or 1, {n} or 1, {s}, {t}]")));
    }
    let values = f32_values(extra, "attention_bias")?;
    let mut bias = vec![0f32; checked_len(&[b, n, s, t])?];
    for (i, x) in bias.iter_mut().enumerate() {
        let (bi, hi, row) = (i / (n * s * t), i / (s * t) % n, i % (s * t));
        let at = (if shape[0] == 1 { 0 } else { bi } * shape[1] + if shape[1] == 1 { 0 } else { hi }) * s * t + row;
        *x = values[at] + mask.as_ref().map_or(0.0, |mask| mask[bi * s * t + row]);
    }
    Ok(Some((bias, n)))
}

/// The bias `[B, S, T]` of `mask_index` and the causal mask (see the module doc).
fn mask_bias(m: &Masking, [b, s, t]: [usize; 3], past: usize) -> Result<Option<Vec<f32>>> {
    if m.mask_index.is_none() && !m.causal {
        return Ok(None);
    }
    let mut bias = vec![0f32; checked_len(&[b, s, t])?];
    if let Some(mask) = m.mask_index {
        if mask.dtype() != DType::I32 {
            return Err(op_err(format!("mask_index must be int32, got {}", mask.dtype())));
        }
        let values = mask.to_i64_vec()?;
        let filter = m.mask_filter_value;
        let hide = |keep: bool| if keep { 0.0 } else { filter };
        match *mask.shape() {
            [len] if len == b || len == 2 * b => {
                for (bi, rows) in bias.chunks_mut((s * t).max(1)).enumerate().take(b) {
                    let end = values[bi];
                    let start = if len == 2 * b { values[b + bi] } else { 0 };
                    for (i, x) in rows.iter_mut().enumerate() {
                        let j = (i % t) as i64;
                        *x = hide(j < end && j >= start);
                    }
                }
            }
            [mb, mt] if (mb, mt) == (b, t) => {
                for (i, x) in bias.iter_mut().enumerate() {
                    *x = hide(values[i / (s * t) * t + i % t] > 0);
                }
            }
            [mb, ms, mt] if (mb, ms, mt) == (b, s, t) => {
                for (x, &v) in bias.iter_mut().zip(&values) {
                    *x = hide(v > 0);
                }
            }
            ref shape => {
                return Err(op_err(format!("mask_index of shape {shape:?}, expected [{b}], [{}], [{b}, {t}] or [{b}, {s}, {t}]", 2 * b)))
            }
        }
    }
    if m.causal {
        for (i, x) in bias.iter_mut().enumerate() {
            let (row, j) = (i / t % s, i % t);
            if row + 1 < s && j > past + row {
                *x = f32::MIN;
            }
        }
    }
    Ok(Some(bias))
}

/// A float tensor as float32 `[B, N, S, H]` (the layout of a cache).
pub(super) fn cache_f32(t: &Tensor, what: &str) -> Result<Tensor> {
    if t.rank() != 4 {
        return Err(op_err(format!("{what} must be 4-D [batch, heads, sequence, head size], got shape {:?}", t.shape())));
    }
    Tensor::from_vec(t.shape(), f32_values(t, what)?)
}

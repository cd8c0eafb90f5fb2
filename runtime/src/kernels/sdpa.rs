//! Scaled dot-product attention as the standard ONNX `Attention` op defines it, per
//! (batch, head) on rayon's threads: grouped key/value heads, a softcap between the scaling
//! and the bias, a fully-masked-row guard, and an optional copy of the scores at one stage.
//! The softmax rows are [`super::attention`]'s.

use ndarray::{s, ArrayView4, ArrayViewMut2};
use rayon::prelude::*;

use super::attention::softmax_row;
use super::buffers::{recycle, take};
use super::gemm::gemm_serial;
use super::isa::Isa;
use crate::error::{op_err, Result};

/// Work (multiply-adds) below which the heads run on the calling thread.
const PARALLEL_MIN_WORK: usize = 1 << 14;

/// Which scores [`sdpa`] copies out, `[B, H, T, S]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capture {
    /// None.
    Nothing,
    /// `scale·Q·Kᵀ`, softcapped when a softcap is set.
    Scores,
    /// The scores plus the bias.
    Biased,
    /// The probabilities (fully-masked rows are 0).
    Probs,
}

/// The operands of [`sdpa`]. Views keep their strides (transposed or broadcast operands are
/// read in place).
pub struct Sdpa<'a> {
    /// Queries, `[B, H, T, D]`.
    pub q: ArrayView4<'a, f32>,
    /// Keys, `[B, Hkv, S, D]`: query head `h` reads key head `h / (H / Hkv)`.
    pub k: ArrayView4<'a, f32>,
    /// Values, `[B, Hkv, S, Dv]`.
    pub v: ArrayView4<'a, f32>,
    /// An additive bias already broadcast to `[B, H, T, S]`. A row of it that is -inf
    /// everywhere gives probabilities (and an output row) of 0.
    pub bias: Option<ArrayView4<'a, f32>>,
    /// The factor applied to `Q·Kᵀ`.
    pub scale: f32,
    /// When positive, scores become `softcap·tanh(scores / softcap)` before the bias.
    pub softcap: f32,
    /// Which scores to copy out.
    pub capture: Capture,
}

/// What [`sdpa`] returns.
pub struct SdpaOutput {
    /// The attention output, row-major `[B, H, T, Dv]`.
    pub y: Vec<f32>,
    /// The captured scores, row-major `[B, H, T, S]`, when asked for.
    pub scores: Option<Vec<f32>>,
}

impl Sdpa<'_> {
    /// `[B, H, Hkv, T, S, D, Dv]`, after checking that the operands agree.
    fn dims(&self) -> Result<[usize; 7]> {
        let (b, h, t, d) = self.q.dim();
        let (kb, hkv, s, kd) = self.k.dim();
        let (vb, vh, vs, dv) = self.v.dim();
        if (kb, kd) != (b, d) || (vb, vh, vs) != (b, hkv, s) || hkv == 0 || h % hkv != 0 {
            return Err(op_err(format!(
                "attention operands disagree: Q {:?}, K {:?}, V {:?} (expected [B,H,T,D], [B,Hkv,S,D], [B,Hkv,S,Dv] with Hkv dividing H)",
                self.q.shape(),
                self.k.shape(),
                self.v.shape()
            )));
        }
        if let Some(m) = &self.bias {
            if m.dim() != (b, h, t, s) {
                return Err(op_err(format!("attention bias of shape {:?}, expected {:?}", m.shape(), [b, h, t, s])));
            }
        }
        Ok([b, h, hkv, t, s, d, dv])
    }
}

/// `softmax(softcap(scale·Q·Kᵀ) + bias)·V` per head, the softmax rows at [`Isa::current`].
pub fn sdpa(a: &Sdpa) -> Result<SdpaOutput> {
    sdpa_for(Isa::current(), a)
}

/// [`sdpa`] with the softmax rows compiled for `isa`.
fn sdpa_for(isa: Isa, a: &Sdpa) -> Result<SdpaOutput> {
    let [b, h, hkv, t, s, d, dv] = a.dims()?;
    let group = h / hkv;
    let mut y = take(b * h * t * dv);
    let mut captured = (a.capture != Capture::Nothing).then(|| take(b * h * t * s));
    if y.is_empty() && captured.as_ref().is_none_or(|c| c.is_empty()) {
        return Ok(SdpaOutput { y, scores: captured });
    }
    let head = |index: usize, out: &mut [f32], capture: Option<&mut [f32]>| -> Result<()> {
        let (bi, hi) = (index / h, index % h);
        let kv = hi / group;
        let mut scores = take(t * s);
        let view = ArrayViewMut2::from_shape((t, s), &mut scores[..]).map_err(|e| op_err(e.to_string()))?;
        gemm_serial(a.q.slice(s![bi, hi, .., ..]), a.k.slice(s![bi, kv, .., ..]).t(), view)?;
        let mut capture = capture;
        for (ti, row) in scores.chunks_exact_mut(s.max(1)).enumerate().take(t) {
            let bias = a.bias.as_ref().map(|m| m.slice(s![bi, hi, ti, ..]));
            let row = &mut row[..s];
            for x in row.iter_mut() {
                *x *= a.scale;
                if a.softcap > 0.0 {
                    *x = a.softcap * (*x / a.softcap).tanh();
                }
            }
            let mut keep = |stage: Capture, row: &[f32]| {
                if let Some(c) = capture.as_deref_mut().filter(|_| a.capture == stage) {
                    c[ti * s..(ti + 1) * s].copy_from_slice(row);
                }
            };
            keep(Capture::Scores, row);
            if let Some(m) = &bias {
                for (x, m) in row.iter_mut().zip(m) {
                    *x += m;
                }
            }
            keep(Capture::Biased, row);
            let masked = bias.as_ref().is_some_and(|m| m.iter().all(|&v| v == f32::NEG_INFINITY));
            if masked || row.iter().all(|&x| x == f32::NEG_INFINITY) {
                // No key to attend: probabilities 0, as the reference softmax and its guard.
                row.fill(0.0);
            } else {
                softmax_row(isa, row, 1.0, None, false);
            }
            keep(Capture::Probs, row);
        }
        let probs = ndarray::ArrayView2::from_shape((t, s), &scores[..]).map_err(|e| op_err(e.to_string()))?;
        let out = ArrayViewMut2::from_shape((t, dv), out).map_err(|e| op_err(e.to_string()))?;
        let done = gemm_serial(probs, a.v.slice(s![bi, kv, .., ..]), out);
        recycle(scores);
        done
    };
    let chunk = (t * s).max(1);
    let mut captures: Vec<Option<&mut [f32]>> = match captured.as_mut() {
        Some(c) => c.chunks_mut(chunk).map(Some).collect(),
        None => Vec::new(),
    };
    captures.resize_with(b * h, || None);
    let tasks: Vec<(usize, &mut [f32], Option<&mut [f32]>)> = y
        .chunks_mut((t * dv).max(1))
        .chain(std::iter::repeat_with(|| &mut [][..]))
        .zip(captures)
        .enumerate()
        .map(|(i, (out, cap))| (i, out, cap))
        .collect();
    let work = b * h * t * s * (d + dv);
    if b * h > 1 && work >= PARALLEL_MIN_WORK {
        tasks.into_par_iter().try_for_each(|(i, out, cap)| head(i, out, cap))?;
    } else {
        tasks.into_iter().try_for_each(|(i, out, cap)| head(i, out, cap))?;
    }
    Ok(SdpaOutput { y, scores: captured })
}

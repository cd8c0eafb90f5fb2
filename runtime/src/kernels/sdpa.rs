//! Scaled dot-product attention as the standard ONNX `Attention` op defines it, per
//! (batch, head) on rayon's threads: grouped key/value heads, a softcap between the scaling
//! and the bias, a fully-masked-row guard, and an optional copy of the scores at one stage.
//! The softmax rows are [`super::attention`]'s; the products are [`super::head_products`]'s.

use ndarray::{s, ArrayView4};
use rayon::prelude::*;

use super::attention::softmax_row;
use super::buffers::take;
use super::head_products::{product, tile_products, Panels, Rows, TILE_ROWS};
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
        let keys_t = Panels::pack(a.k.slice(s![bi, kv, .., ..]).t());
        let values = Panels::pack(a.v.slice(s![bi, kv, .., ..]));
        let mut scores = product(isa, a.q.slice(s![bi, hi, .., ..]), &keys_t, s)?;
        let mut capture = capture;
        for ti in 0..t {
            let bias = a.bias.as_ref().map(|m| m.slice(s![bi, hi, ti, ..]));
            let row = scores.row_mut(ti);
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
        let tiles = t.div_ceil(TILE_ROWS);
        let mut mixed = Rows::new(t, dv);
        tile_products(isa, &scores.rows(), &vec![s; tiles], &vec![dv; tiles], &values, &mut mixed)?;
        for (out, row) in out.chunks_exact_mut(dv.max(1)).zip(mixed.rows()) {
            out.copy_from_slice(row);
        }
        Ok(())
    };
    // One task per head: its rows of the output and of the captured scores (none when empty).
    let mut captures: Vec<_> = match captured.as_mut() {
        Some(c) => c.chunks_mut((t * s).max(1)).map(Some).collect(),
        None => Vec::new(),
    };
    captures.resize_with(b * h, || None);
    let tasks: Vec<_> = y
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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;

    fn filled(shape: (usize, usize, usize, usize), seed: usize) -> Array4<f32> {
        Array4::from_shape_fn(shape, |(a, b, c, d)| ((a * 131 + b * 71 + c * 17 + d * 7 + seed * 13) % 29) as f32 / 9.0 - 1.5)
    }

    /// The reference's steps in f64 for one (b, h, t): the captured row and the output row.
    fn reference_row(a: &Sdpa, bi: usize, hi: usize, ti: usize) -> (Vec<f64>, Vec<f64>) {
        let kv = hi / (a.q.dim().1 / a.k.dim().1);
        let (s, d, dv) = (a.k.dim().2, a.q.dim().3, a.v.dim().3);
        let bias = |j: usize| a.bias.as_ref().map_or(0.0, |m| m[[bi, hi, ti, j]] as f64);
        let mut scores: Vec<f64> = (0..s)
            .map(|j| (0..d).map(|x| a.q[[bi, hi, ti, x]] as f64 * a.k[[bi, kv, j, x]] as f64).sum::<f64>() * a.scale as f64)
            .map(|x| if a.softcap > 0.0 { a.softcap as f64 * (x / a.softcap as f64).tanh() } else { x })
            .collect();
        let raw = scores.clone();
        for (j, x) in scores.iter_mut().enumerate() {
            *x += bias(j);
        }
        let biased = scores.clone();
        let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let masked = a.bias.is_some() && (0..s).all(|j| bias(j) == f64::NEG_INFINITY);
        let e: Vec<f64> = scores.iter().map(|x| if masked { 0.0 } else { (x - max).exp() }).collect();
        let sum: f64 = e.iter().sum::<f64>().max(f64::MIN_POSITIVE);
        let probs: Vec<f64> = e.iter().map(|x| x / sum).collect();
        let out = (0..dv).map(|c| (0..s).map(|j| probs[j] * a.v[[bi, kv, j, c]] as f64).sum()).collect();
        let kept = match a.capture {
            Capture::Scores => raw,
            Capture::Biased => biased,
            _ => probs,
        };
        (kept, out)
    }

    fn assert_close(got: &[f32], want: &[f64], what: &str) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let ok = (*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()) || (w.is_infinite() && *g as f64 == *w);
            assert!(ok, "{what} element {i}: {g} vs {w}");
        }
    }

    #[test]
    fn grouped_heads_softcap_bias_and_every_capture_match_the_plain_steps() {
        // 2 batches, 4 query heads over 2 key/value heads, 3 queries, 5 keys; the bias masks
        // key 4 everywhere, and query row 1 of batch 1 entirely.
        let (b, h, hkv, t, s, d, dv) = (2, 4, 2, 3, 5, 4, 3);
        let (q, k, v) = (filled((b, h, t, d), 1), filled((b, hkv, s, d), 2), filled((b, hkv, s, dv), 3));
        let bias = Array4::from_shape_fn((b, 1, t, s), |(bi, _, ti, j)| match (bi, ti, j) {
            (1, 1, _) | (_, _, 4) => f32::NEG_INFINITY,
            _ => 0.1 * j as f32,
        });
        let levels = Isa::ALL.into_iter().filter(|&isa| isa <= Isa::detected());
        for (isa, capture) in levels.flat_map(|isa| [Capture::Scores, Capture::Biased, Capture::Probs].map(|c| (isa, c))) {
            for softcap in [0.0, 1.5] {
                let a = Sdpa {
                    q: q.view(),
                    k: k.view(),
                    v: v.view(),
                    bias: Some(bias.broadcast((b, h, t, s)).unwrap()),
                    scale: 0.7,
                    softcap,
                    capture,
                };
                let got = sdpa_for(isa, &a).unwrap();
                let scores = got.scores.expect("captured scores");
                for (bi, hi, ti) in (0..b).flat_map(|bi| (0..h).flat_map(move |hi| (0..t).map(move |ti| (bi, hi, ti)))) {
                    let (kept, out) = reference_row(&a, bi, hi, ti);
                    let row = ((bi * h + hi) * t + ti) * s;
                    assert_close(&scores[row..row + s], &kept, &format!("{isa} {capture:?} scores"));
                    let row = ((bi * h + hi) * t + ti) * dv;
                    assert_close(&got.y[row..row + dv], &out, &format!("{isa} {capture:?} output"));
                }
                // The fully-masked row is 0, not NaN.
                let row = ((h + 2) * t + 1) * dv;
                assert!(got.y[row..row + dv].iter().all(|&x| x == 0.0));
            }
        }
    }

    #[test]
    fn disagreeing_shapes_are_errors() {
        let q = filled((1, 3, 2, 4), 1);
        let (k, v) = (filled((1, 2, 5, 4), 2), filled((1, 2, 5, 4), 3));
        let a = Sdpa { q: q.view(), k: k.view(), v: v.view(), bias: None, scale: 1.0, softcap: 0.0, capture: Capture::Nothing };
        assert!(sdpa(&a).err().expect("an error").to_string().contains("dividing"));
        let q = filled((1, 2, 2, 4), 1);
        let bias = filled((1, 2, 2, 4), 4);
        let a = Sdpa { q: q.view(), k: k.view(), v: v.view(), bias: Some(bias.view()), scale: 1.0, softcap: 0.0, capture: Capture::Nothing };
        assert!(sdpa(&a).err().expect("an error").to_string().contains("bias"));
        let empty = filled((1, 2, 0, 4), 1);
        let a = Sdpa { q: empty.view(), k: k.view(), v: v.view(), bias: None, scale: 1.0, softcap: 0.0, capture: Capture::Probs };
        let out = sdpa(&a).unwrap();
        assert!(out.y.is_empty() && out.scores.is_some_and(|s| s.is_empty()));
    }
}

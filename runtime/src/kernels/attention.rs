//! The core of scaled dot-product attention, fused: per (batch, head), on rayon's threads,
//! `softmax(scale·Q·Kᵀ + mask)·V` with the scores held only in per-task scratch, the products
//! by [`super::head_products`].

use ndarray::{s, ArrayView1, ArrayView4, ArrayViewMut2, ShapeBuilder};
use rayon::prelude::*;

use super::activation::exp;
use super::attention_rows::head_rows;
use super::isa::{multiversion, Isa};
use super::lanes::lanes_fold;
use super::head_products::{tile_products, with_rows, Panels, Rows, TILE_ROWS};
use crate::error::{op_err, Result};

/// Work (multiply-adds) below which the heads run on the calling thread.
const PARALLEL_MIN_WORK: usize = 1 << 14;

/// The operands of [`attention`]. Views keep their strides: transposed or broadcast operands
/// are read in place.
pub struct Attention<'a> {
    /// Queries, `[B, H, T, D]`.
    pub q: ArrayView4<'a, f32>,
    /// Keys, `[B, H, S, D]`.
    pub k: ArrayView4<'a, f32>,
    /// Values, `[B, H, S, Dv]`.
    pub v: ArrayView4<'a, f32>,
    /// An additive mask already broadcast to `[B, H, T, S]`.
    pub mask: Option<ArrayView4<'a, f32>>,
    /// The factor applied to `Q·Kᵀ` before the mask.
    pub scale: f32,
    /// Replace NaN probabilities (rows masked out entirely) by 0, as exports that follow
    /// Softmax with `Where(IsNaN(p), 0, p)` do.
    pub zero_nan: bool,
}

impl Attention<'_> {
    /// `[B, H, T, S, D, Dv]`, after checking that the operands agree.
    fn dims(&self) -> Result<[usize; 6]> {
        let (b, h, t, d) = self.q.dim();
        let (kb, kh, s, kd) = self.k.dim();
        let (vb, vh, vs, dv) = self.v.dim();
        if (kb, kh, kd) != (b, h, d) || (vb, vh, vs) != (b, h, s) {
            return Err(op_err(format!(
                "attention operands disagree: Q {:?}, K {:?}, V {:?} (expected [B,H,T,D], [B,H,S,D], [B,H,S,Dv])",
                self.q.shape(),
                self.k.shape(),
                self.v.shape()
            )));
        }
        if let Some(m) = &self.mask {
            if m.dim() != (b, h, t, s) {
                return Err(op_err(format!("attention mask of shape {:?}, expected {:?}", m.shape(), [b, h, t, s])));
            }
        }
        Ok([b, h, t, s, d, dv])
    }
}

/// The output pointer, shared by the heads: each writes its own `Dv` columns of every row.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: tasks write disjoint elements (one head's columns each).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The pointer (a method, so closures capture the whole `Send` wrapper).
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// `softmax(scale·Q·Kᵀ + mask)·V`, row-major `[B, T, H, Dv]`: the heads already merged, as
/// the exports' `Transpose(0, 2, 1, 3)` + `Reshape` after attention want them, so that
/// Reshape needs no copy. The products and softmax rows run at [`Isa::current`].
///
/// Causal skipping: query rows go in tiles of [`TILE_ROWS`]; a tile multiplies only the keys
/// up to the last one any of its rows can see ([`visible_keys`]), since the softmax weight of
/// the keys after it is exactly 0. Fewer query rows than a tile (a generation step) read the
/// keys and values in place instead ([`super::attention_rows`]).
pub fn attention(a: &Attention) -> Result<Vec<f32>> {
    attention_for(Isa::current(), a)
}

/// [`attention`] with the products and softmax rows compiled for `isa`.
fn attention_for(isa: Isa, a: &Attention) -> Result<Vec<f32>> {
    let [b, h, t, s, d, dv] = a.dims()?;
    let mut out = crate::kernels::buffers::take(b * h * t * dv);
    if out.is_empty() {
        return Ok(out);
    }
    let base = Out(out.as_mut_ptr());
    let head = |index: usize| -> Result<()> {
        let (bi, hi) = (index / h, index % h);
        let head_mask = a.mask.as_ref().map(|m| m.slice(s![bi, hi, .., ..]));
        // SAFETY: rows `bi·T ..` (T of them) of the [B·T, H·Dv] output, columns `hi·Dv ..
        // (hi + 1)·Dv`: inside the buffer, and written by this head only.
        let mut out = unsafe {
            let first = base.ptr().add(bi * t * h * dv + hi * dv);
            ArrayViewMut2::from_shape_ptr((t, dv).strides((h * dv, 1)), first)
        };
        if t < TILE_ROWS {
            let (q, k, v) = (a.q.slice(s![bi, hi, .., ..]), a.k.slice(s![bi, hi, .., ..]), a.v.slice(s![bi, hi, .., ..]));
            head_rows(isa, q, k, v, head_mask, a.scale, a.zero_nan, out);
            return Ok(());
        }
        let mask_row = |ti: usize| head_mask.as_ref().map(|m| m.row(ti));
        // Each tile of query rows multiplies the keys up to the last one its rows see.
        let tiles = t.div_ceil(TILE_ROWS);
        let keys: Vec<usize> = (0..tiles)
            .map(|i| (i * TILE_ROWS..((i + 1) * TILE_ROWS).min(t)).map(|ti| visible_keys(mask_row(ti), s)).max().unwrap_or(s))
            .collect();
        let seen = keys.iter().copied().max().unwrap_or(0);
        let keys_t = Panels::pack(a.k.slice(s![bi, hi, ..seen, ..]).t());
        let values = Panels::pack(a.v.slice(s![bi, hi, ..seen, ..]));
        // A tile at a time, so that its scores stay in the first-level cache.
        let (mut scores, mut mixed) = (Rows::new(TILE_ROWS, seen), Rows::new(TILE_ROWS, dv));
        with_rows(a.q.slice(s![bi, hi, .., ..]), |q| {
            for ((i, q), &seen) in q.chunks(TILE_ROWS).enumerate().zip(&keys) {
                tile_products(isa, q, &[d], &[seen], &keys_t, &mut scores)?;
                for r in 0..q.len() {
                    let mask = mask_row(i * TILE_ROWS + r).map(|m| m.slice_move(s![..seen]));
                    softmax_row(isa, &mut scores.row_mut(r)[..seen], a.scale, mask, a.zero_nan);
                }
                let probs: [&[f32]; TILE_ROWS] = std::array::from_fn(|r| scores.row(r));
                tile_products(isa, &probs[..q.len()], &[seen], &[dv], &values, &mut mixed)?;
                for (r, mut out) in out.slice_mut(s![i * TILE_ROWS..i * TILE_ROWS + q.len(), ..]).rows_mut().into_iter().enumerate() {
                    out.assign(&ArrayView1::from(mixed.row(r)));
                }
            }
            Ok(())
        })
    };
    let work = b * h * t * s * (d + dv);
    if b * h > 1 && work >= PARALLEL_MIN_WORK {
        (0..b * h).into_par_iter().try_for_each(head)?;
    } else {
        (0..b * h).try_for_each(head)?;
    }
    Ok(out)
}

/// A mask value at or below this drops its key (exports write -inf or `f32::MIN`)...
const MASKED: f32 = -1e30;
/// ...when the row also has a key whose mask is above this: next to that key a dropped key's
/// softmax weight is exactly 0 (its exponent is below -1e29, far under `exp`'s cut-off).
const OPEN: f32 = -1e29;

/// How many of the `keys` leading keys a row with `mask` must look at: one past the last key not dropped
/// (see [`MASKED`], [`OPEN`]); every key when there is no mask or no open key (a row masked
/// out entirely keeps its full softmax, NaN or uniform, like the Softmax op). A NaN mask
/// value keeps its key.
pub(super) fn visible_keys(mask: Option<ArrayView1<f32>>, keys: usize) -> usize {
    let Some(mask) = mask else { return keys };
    let kept = |v: &f32| v.is_nan() || *v > MASKED;
    let last = match mask.as_slice() {
        Some(m) if !m.iter().any(|&v| v > OPEN) => return keys,
        Some(m) => m.iter().rposition(kept),
        None if !mask.iter().any(|&v| v > OPEN) => return keys,
        None => (0..keys).rev().find(|&j| kept(&mask[j])),
    };
    last.map_or(keys, |j| j + 1)
}

multiversion! {
    /// One row of scores to probabilities: scale, add the mask, softmax like the Softmax op
    /// (a row of -inf gives NaN), then NaN to 0 if asked; compiled for `isa`.
    pub(super) fn softmax_row(row: &mut [f32], scale: f32, mask: Option<ArrayView1<f32>>, zero_nan: bool) => softmax_row_body
}

/// The body of [`softmax_row`], in plain loops (an outlined iterator fold would lose the
/// caller's target features).
#[inline(always)]
pub(super) fn softmax_row_body(row: &mut [f32], scale: f32, mask: Option<ArrayView1<f32>>, zero_nan: bool) {
    match (mask.as_ref().and_then(|m| m.as_slice()), &mask) {
        (Some(m), _) => {
            for (x, m) in row.iter_mut().zip(m) {
                *x = *x * scale + m;
            }
        }
        (None, Some(m)) => {
            for (x, m) in row.iter_mut().zip(m) {
                *x = *x * scale + m;
            }
        }
        (None, None) => {
            for x in row.iter_mut() {
                *x *= scale;
            }
        }
    }
    let max = lanes_fold(row, f32::MIN, f32::max, f32::max);
    for x in row.iter_mut() {
        *x = exp(*x - max);
    }
    let inv = 1.0 / lanes_fold(row, 0.0, |a, v| a + v, |a, b| a + b);
    for x in row.iter_mut() {
        let p = *x * inv;
        *x = if zero_nan && p.is_nan() { 0.0 } else { p };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;

    fn filled(shape: (usize, usize, usize, usize), seed: usize) -> Array4<f32> {
        Array4::from_shape_fn(shape, |(a, b, c, d)| {
            let v = (a * 131 + b * 71 + c * 17 + d * 7 + seed * 13) % 29;
            v as f32 / 9.0 - 1.5
        })
    }

    /// The plain steps, in f64: scores, scale, mask, softmax, times V; `[B, T, H, Dv]` order.
    fn reference(q: &Array4<f32>, k: &Array4<f32>, v: &Array4<f32>, mask: Option<&Array4<f32>>, scale: f64) -> Vec<f64> {
        let (b, h, t, d) = q.dim();
        let (s, dv) = (k.dim().2, v.dim().3);
        let mut out = Vec::new();
        for bi in 0..b {
            for ti in 0..t {
                for hi in 0..h {
                    let scores: Vec<f64> = (0..s)
                        .map(|j| {
                            let dot: f64 = (0..d).map(|x| q[[bi, hi, ti, x]] as f64 * k[[bi, hi, j, x]] as f64).sum();
                            dot * scale + mask.map_or(0.0, |m| m[[bi, hi, ti, j]] as f64)
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for c in 0..dv {
                        out.push((0..s).map(|j| e[j] / sum * v[[bi, hi, j, c]] as f64).sum());
                    }
                }
            }
        }
        out
    }

    /// Every level this CPU runs, lowest first.
    fn levels() -> impl Iterator<Item = Isa> {
        Isa::ALL.into_iter().filter(|&isa| isa <= Isa::detected())
    }

    #[test]
    fn softmax_rows_of_every_length_match_at_every_level() {
        // Lengths around the 8- and 16-lane vectors, with and without a (strided) mask.
        for len in [1usize, 7, 8, 9, 16, 17, 40, 129] {
            let scores: Vec<f32> = (0..len).map(|i| (i * 13 % 11) as f32 / 3.0 - 1.5).collect();
            let mask_data: Vec<f32> = (0..2 * len).map(|i| if i % 6 == 4 { -1e9 } else { (i % 3) as f32 * 0.1 }).collect();
            let mask = ndarray::ArrayView1::from(&mask_data).slice_move(s![..;2]);
            for (isa, masked) in levels().flat_map(|isa| [false, true].map(|m| (isa, m))) {
                let mut row = scores.clone();
                softmax_row(isa, &mut row, 0.7, masked.then_some(mask), false);
                let logits: Vec<f64> = (0..len).map(|i| scores[i] as f64 * 0.7 + if masked { mask[i] as f64 } else { 0.0 }).collect();
                let max = logits.iter().cloned().fold(f64::MIN, f64::max);
                let sum: f64 = logits.iter().map(|x| (x - max).exp()).sum();
                for (g, x) in row.iter().zip(&logits) {
                    let want = (x - max).exp() / sum;
                    assert!((*g as f64 - want).abs() <= 1e-6 * want.max(1e-30) + 1e-12, "{isa} len {len}: {g} vs {want}");
                }
            }
        }
    }

    fn assert_close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        let scale = want.iter().fold(0f64, |m, w| m.max(w.abs()));
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() <= 1e-5 * scale, "{g} vs {w}");
        }
    }

    #[test]
    fn matches_the_plain_steps_causal_padded_batched_with_past() {
        // batch 2, 3 heads, 4 new positions after 5 past ones, a padding mask on batch 1.
        let (b, h, t, past, d) = (2, 3, 4, 5, 8);
        let s = past + t;
        let q = filled((b, h, t, d), 1);
        let k = filled((b, h, s, d), 2);
        let v = filled((b, h, s, 6), 3);
        let mask = Array4::from_shape_fn((b, 1, t, s), |(bi, _, ti, j)| {
            let causal = j <= past + ti;
            let padded = bi == 1 && j < 2;
            if causal && !padded { 0.0 } else { f32::NEG_INFINITY }
        });
        let full = mask.broadcast((b, h, t, s)).unwrap().to_owned();
        for (isa, (scale, masked)) in levels().flat_map(|isa| [(0.25, true), (1.0, false)].map(|c| (isa, c))) {
            let m = masked.then(|| mask.broadcast((b, h, t, s)).unwrap());
            let got = attention_for(isa, &Attention { q: q.view(), k: k.view(), v: v.view(), mask: m, scale, zero_nan: false }).unwrap();
            assert_close(&got, &reference(&q, &k, &v, masked.then_some(&full), scale as f64));
        }
    }

    #[test]
    fn strided_keys_single_query_and_fully_masked_rows() {
        // Keys stored [B, S, H, D] and viewed as [B, H, S, D]; one query (a decode step).
        let k_stored = filled((1, 7, 2, 4), 5);
        let k = k_stored.view().permuted_axes([0, 2, 1, 3]);
        let q = filled((1, 2, 1, 4), 6);
        let v = filled((1, 2, 7, 4), 7);
        let mask = Array4::from_elem((1, 2, 1, 7), f32::NEG_INFINITY);
        for isa in levels() {
            let got = attention_for(isa, &Attention { q: q.view(), k, v: v.view(), mask: None, scale: 0.5, zero_nan: false }).unwrap();
            assert_close(&got, &reference(&q, &k.to_owned(), &v, None, 0.5));
            // A row masked out entirely: NaN like Softmax, or 0 when asked.
            for zero_nan in [false, true] {
                let a = Attention { q: q.view(), k, v: v.view(), mask: Some(mask.view()), scale: 0.5, zero_nan };
                let got = attention_for(isa, &a).unwrap();
                assert!(got.iter().all(|x| if zero_nan { *x == 0.0 } else { x.is_nan() }));
            }
        }
    }

    #[test]
    fn fewer_rows_than_a_tile_read_keys_and_values_in_place() {
        // 1 to 3 new positions after 6 past ones (generation steps) in a cache of 2 more slots
        // that no row sees (poisoned with NaN: read, they would turn the outputs NaN), causal +
        // padding mask; keys stored [B, S, H, D] (strided rows) or [B, H, D, S] and values
        // stored [B, H, Dv, S] (rows not contiguous: the plain loops), or both row-major.
        for (t, transposed) in (1..TILE_ROWS).flat_map(|t| [(t, false), (t, true)]) {
            let (b, h, past, d) = (2, 3, 6, 20);
            let s = past + t + 2;
            let q = filled((b, h, t, d), 1);
            let (mut k, mut v) = if transposed {
                let k = filled((b, h, d, s), 2).permuted_axes([0, 1, 3, 2]);
                (k, filled((b, h, 9, s), 3).permuted_axes([0, 1, 3, 2]))
            } else {
                (filled((b, s, h, d), 2).permuted_axes([0, 2, 1, 3]), filled((b, h, s, 9), 3))
            };
            let mask = Array4::from_shape_fn((b, 1, t, s), |(bi, _, ti, j)| {
                if j <= past + ti && !(bi == 1 && j < 2) { 0.0 } else { f32::NEG_INFINITY }
            });
            let full = mask.broadcast((b, h, t, s)).unwrap().to_owned();
            let want = reference(&q, &k.to_owned(), &v.to_owned(), Some(&full), 0.3);
            k.slice_mut(s![.., .., past + t.., ..]).fill(f32::NAN);
            v.slice_mut(s![.., .., past + t.., ..]).fill(f32::NAN);
            for isa in levels() {
                let a = Attention { q: q.view(), k: k.view(), v: v.view(), mask: Some(full.view()), scale: 0.3, zero_nan: false };
                assert_close(&attention_for(isa, &a).unwrap(), &want);
            }
        }
    }

    #[test]
    fn keys_no_row_of_a_block_can_see_are_never_read() {
        // 40 queries (two row blocks) that see keys 0..=ti/4 (-inf and f32::MIN both drop),
        // keys 10.. poisoned with NaN: read, they would turn every output NaN.
        let (t, s, d) = (40, 48, 8);
        let q = filled((1, 2, t, d), 1);
        let (mut k, mut v) = (filled((1, 2, s, d), 2), filled((1, 2, s, 5), 3));
        let mask = Array4::from_shape_fn((1, 2, t, s), |(_, hi, ti, j)| match (j <= ti / 4, hi) {
            (true, _) => 0.0,
            (false, 0) => f32::NEG_INFINITY,
            (false, _) => f32::MIN,
        });
        let want = reference(&q, &k, &v, Some(&mask), 0.5);
        k.slice_mut(s![.., .., 10.., ..]).fill(f32::NAN);
        v.slice_mut(s![.., .., 10.., ..]).fill(f32::NAN);
        for isa in levels() {
            let a = Attention { q: q.view(), k: k.view(), v: v.view(), mask: Some(mask.view()), scale: 0.5, zero_nan: false };
            assert_close(&attention_for(isa, &a).unwrap(), &want);
        }
    }

    #[test]
    fn visible_keys_stop_after_the_last_open_one() {
        let row = |v: &[f32]| visible_keys(Some(ArrayView1::from(v)), v.len());
        assert_eq!(row(&[0.0, -1.0, f32::NEG_INFINITY, f32::MIN]), 2);
        assert_eq!(row(&[f32::MIN, 0.0, f32::MIN, f32::NAN, f32::MIN]), 4);
        // No open key: every key stays, the softmax decides (uniform or NaN).
        assert_eq!(row(&[f32::MIN, f32::MIN, f32::NEG_INFINITY]), 3);
        assert_eq!(row(&[-5e29, f32::MIN]), 2);
        assert_eq!(visible_keys(None, 7), 7);
    }

    #[test]
    fn disagreeing_shapes_are_errors() {
        let q = filled((1, 2, 3, 4), 1);
        let k = filled((1, 2, 5, 4), 2);
        let v = filled((1, 2, 6, 4), 3);
        let a = Attention { q: q.view(), k: k.view(), v: v.view(), mask: None, scale: 1.0, zero_nan: false };
        assert!(attention(&a).is_err());
        let v = filled((1, 2, 5, 4), 3);
        let mask = filled((1, 2, 3, 4), 4);
        let a = Attention { q: q.view(), k: k.view(), v: v.view(), mask: Some(mask.view()), scale: 1.0, zero_nan: false };
        assert!(attention(&a).unwrap_err().to_string().contains("mask"));
        let empty = filled((1, 2, 0, 4), 1);
        let a = Attention { q: empty.view(), k: k.view(), v: v.view(), mask: None, scale: 1.0, zero_nan: false };
        assert!(attention(&a).unwrap().is_empty());
    }
}

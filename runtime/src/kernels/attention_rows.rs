//! Attention for a few query rows (a generation step's new token): each row's scores are dot
//! products with the key rows read in place, and its output the value rows, read in place,
//! summed with the row's probabilities. A head's keys and values are read once, where the
//! prompt's 4-row tiles ([`super::attention`]) first pack them for their products: for one row,
//! that packing cost as much as the products.

use ndarray::{ArrayView1, ArrayView2};

use super::attention::{softmax_row_body, visible_keys};
use super::isa::{multiversion, Isa};
use super::lanes::dot;

/// One head's `softmax(scale·Q·Kᵀ + mask)·V` into `out` (`[T, Dv]`, any row stride), query row
/// by query row; each row looks at the keys up to the last one its mask leaves open
/// ([`visible_keys`]). The rows' arithmetic runs compiled for `isa`.
#[allow(clippy::too_many_arguments)]
pub(super) fn head_rows(
    isa: Isa,
    q: ArrayView2<f32>,
    k: ArrayView2<f32>,
    v: ArrayView2<f32>,
    mask: Option<ArrayView2<f32>>,
    scale: f32,
    zero_nan: bool,
    mut out: ndarray::ArrayViewMut2<f32>,
) {
    let mut scores = vec![0.0; k.nrows()];
    let mut mixed = vec![0.0; v.ncols()];
    for (ti, (q, mut out)) in q.outer_iter().zip(out.outer_iter_mut()).enumerate() {
        let mask = mask.as_ref().map(|m| m.row(ti));
        let seen = visible_keys(mask, k.nrows());
        let mask = mask.map(|m| m.slice_move(ndarray::s![..seen]));
        let copied;
        let q = match q.as_slice() {
            Some(q) => q,
            None => {
                copied = q.to_vec();
                &copied
            }
        };
        row(isa, q, k, v, mask, scale, zero_nan, &mut scores[..seen], &mut mixed);
        out.assign(&ArrayView1::from(&mixed));
    }
}

multiversion! {
    /// One query row: `out = softmax(scale·K·q + mask)·V` over the first `scores.len()` keys
    /// (`scores`: scratch), compiled for `isa`.
    #[allow(clippy::too_many_arguments)]
    fn row(q: &[f32], k: ArrayView2<f32>, v: ArrayView2<f32>, mask: Option<ArrayView1<f32>>, scale: f32, zero_nan: bool, scores: &mut [f32], out: &mut [f32]) => row_body
}

/// The body of [`row`], in plain loops the compiler vectorizes for the caller's features.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn row_body(q: &[f32], k: ArrayView2<f32>, v: ArrayView2<f32>, mask: Option<ArrayView1<f32>>, scale: f32, zero_nan: bool, scores: &mut [f32], out: &mut [f32]) {
    for (score, key) in scores.iter_mut().zip(k.outer_iter()) {
        *score = match key.as_slice() {
            Some(key) => dot(q, key),
            None => q.iter().zip(key).map(|(a, b)| a * b).sum(),
        };
    }
    softmax_row_body(scores, scale, mask, zero_nan);
    out.fill(0.0);
    for (&p, value) in scores.iter().zip(v.outer_iter()) {
        match value.as_slice() {
            Some(value) => add_scaled(p, value, out),
            None => out.iter_mut().zip(value).for_each(|(o, x)| *o += p * x),
        }
    }
}

/// `out += p · x` (a slice, so that the loop vectorizes).
#[inline(always)]
fn add_scaled(p: f32, x: &[f32], out: &mut [f32]) {
    out.iter_mut().zip(x).for_each(|(o, x)| *o += p * x);
}

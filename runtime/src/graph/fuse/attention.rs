//! The core of attention -> `RbeAttention`: from `MatMul(Q·s, Kᵀ·s)` (each scale optional,
//! the transpose of K absorbed; or one scale after the product, as transformers' eager
//! attention writes it), `+ mask` (optional), `Softmax(axis=-1)`, the optional
//! `Where(IsNaN(p), 0, p)` of SDPA exports or `Cast`s to float of eager ones, to `MatMul(p, V)`.
//! Head split and merge stay, as does the repetition of grouped K/V heads.

use super::index::{is_cast_to_float, is_op, GraphIndex, GRAPH_OUTPUT};
use super::Rewrite;
use crate::onnx::attributes::{int_attr, ints_attr};
use crate::onnx::proto::NodeProto;
use crate::ops::Attrs;

/// Ops that compute a scale factor at run time (from the head size in dynamic exports).
const SCALE_OPS: [&str; 5] = ["Sqrt", "Div", "Cast", "Reciprocal", "Constant"];

/// `value = Mul(x, s)` read only by `reader`, with `s` a one-element constant or computed by
/// [`SCALE_OPS`] (`RbeAttention` multiplies like the Mul if it is not one value after all):
/// returns `x`, `s` and the Mul.
fn unscale<'g>(ix: &GraphIndex<'g>, value: &'g str, reader: usize) -> (&'g str, &'g str, Option<usize>) {
    let unscaled = (value, "", None);
    let Some(mul) = ix.producer_of_type(value, "Mul").filter(|_| ix.sole_consumer(value) == Some(reader)) else {
        return unscaled;
    };
    let [a, b] = ix.node(mul).input.as_slice() else { return unscaled };
    let constant = |v: &str| ix.constant(v).is_some_and(|t| t.len() == 1);
    let computed = |v: &str| ix.producer(v).is_some_and(|p| SCALE_OPS.iter().any(|op| is_op(ix.node(p), op)));
    for (x, s) in [(a, b), (b, a)] {
        if constant(s) || (computed(s) && !computed(x) && !constant(x)) {
            return (x, s, Some(mul));
        }
    }
    unscaled
}

/// `scores = Mul(MatMul(..), s)` with `s` one constant value, read only once: the product and
/// `s` (a scale of the scores is one of Q), and the Mul. Else `scores` unscaled.
fn scaled_product<'g>(ix: &GraphIndex<'g>, scores: &'g str) -> (&'g str, &'g str, Option<usize>) {
    let unscaled = (scores, "", None);
    let Some(mul) = ix.producer_of_type(scores, "Mul").filter(|_| ix.consumers(scores).len() == 1) else {
        return unscaled;
    };
    let [a, b] = ix.node(mul).input.as_slice() else { return unscaled };
    for (product, s) in [(a, b), (b, a)] {
        let matmul = ix.producer_of_type(product, "MatMul").is_some() && ix.sole_consumer(product) == Some(mul);
        if matmul && ix.constant(s).is_some_and(|t| t.len() == 1) {
            return (product, s, Some(mul));
        }
    }
    unscaled
}

/// `Kᵀ` as a tensor and the permutation that turns it into `[B, H, S, D]`, absorbing a
/// 4-axis Transpose read only by `reader`.
fn key<'g>(ix: &GraphIndex<'g>, kt: &'g str, reader: usize) -> (&'g str, Vec<i64>, Option<usize>) {
    let transpose = ix.producer_of_type(kt, "Transpose").filter(|_| ix.sole_consumer(kt) == Some(reader));
    if let Some(t) = transpose {
        let perm = Attrs::new(ix.node(t)).ints("perm");
        if let (Some([p0, p1, p2, p3]), Some(k)) = (perm.as_deref(), ix.node(t).input.first()) {
            return (k, vec![*p0, *p1, *p3, *p2], Some(t));
        }
    }
    (kt, vec![0, 1, 3, 2], None)
}

/// The MatMul reading the probabilities `p` as its left operand: directly, through `Cast`s to
/// float, or through `Where(IsNaN(p), 0, p)`. Returns it, the nodes in between, and whether
/// NaN becomes 0.
fn probabilities_reader<'g>(ix: &GraphIndex<'g>, mut p: &'g str) -> Option<(usize, Vec<usize>, bool)> {
    let left_of_matmul = |v: &str| {
        ix.sole_consumer(v).filter(|&m| is_op(ix.node(m), "MatMul") && ix.node(m).input.first().is_some_and(|a| a == v))
    };
    let mut casts = Vec::new();
    while let Some(cast) = ix.sole_consumer(p).filter(|&c| is_cast_to_float(ix.node(c))) {
        casts.push(cast);
        p = ix.output(cast);
    }
    if let Some(m) = left_of_matmul(p) {
        return Some((m, casts, false));
    }
    if !casts.is_empty() {
        return None;
    }
    let readers = ix.consumers(p);
    let isnan = *readers.iter().find(|&&r| r != GRAPH_OUTPUT && is_op(ix.node(r), "IsNaN"))?;
    let select = ix.sole_consumer(ix.output(isnan)).filter(|&w| is_op(ix.node(w), "Where"))?;
    let [cond, fill, other] = ix.node(select).input.as_slice() else { return None };
    if cond != ix.output(isnan) || other != p || ix.scalar(fill) != Some(0.0) || readers.len() != 2 {
        return None;
    }
    Some((left_of_matmul(ix.output(select))?, vec![isnan, select], true))
}

/// Matches the attention core from its Softmax.
pub fn plan_attention<'g>(ix: &GraphIndex<'g>, softmax: usize) -> Option<Rewrite> {
    let node = ix.node(softmax);
    if !is_op(node, "Softmax") || Attrs::new(node).int("axis") != Some(-1) {
        return None;
    }
    let logits = node.input.first()?;
    let mut removed = vec![softmax];
    let (scores, mask) = match ix.producer(logits) {
        Some(add) if is_op(ix.node(add), "Add") && ix.sole_consumer(logits) == Some(softmax) => {
            let [a, b] = ix.node(add).input.as_slice() else { return None };
            let product = |v: &'g str| ix.producer_of_type(scaled_product(ix, v).0, "MatMul").is_some();
            let (scores, mask) = if product(a) { (a, b) } else { (b, a) };
            removed.push(add);
            (scores.as_str(), mask.as_str())
        }
        _ => (logits.as_str(), ""),
    };
    let (scores, post_scale, post_mul) = scaled_product(ix, scores);
    let qk = ix.producer_of_type(scores, "MatMul")?;
    let [qs, kts] = ix.node(qk).input.as_slice() else { return None };
    let (q, q_scale, q_mul) = match unscale(ix, qs, qk) {
        (q, "", None) => (q, post_scale, post_mul),
        _ if post_mul.is_some() => return None,
        scaled => scaled,
    };
    let (kt, k_scale, k_mul) = unscale(ix, kts, qk);
    let (k, key_perm, k_transpose) = key(ix, kt, k_mul.unwrap_or(qk));
    let (pv, between, zero_nan) = probabilities_reader(ix, ix.output(softmax))?;
    let v = ix.node(pv).input.get(1)?;
    removed.extend([qk, pv]);
    removed.extend(between);
    removed.extend([q_mul, k_mul, k_transpose].into_iter().flatten());
    let fused = NodeProto {
        name: format!("{}/RbeAttention", node.name),
        op_type: "RbeAttention".into(),
        domain: "ai.rbe".into(),
        input: [q, k, v, mask, q_scale, k_scale].map(str::to_string).to_vec(),
        output: vec![ix.output(pv).to_string()],
        attribute: vec![ints_attr("key_perm", &key_perm), int_attr("zero_nan", zero_nan as i64)],
        ..Default::default()
    };
    Some(Rewrite { removed, added: vec![fused] })
}

//! MatMul / Gemm with a constant weight (and an optional bias) -> `RbeMatMul`.

use std::borrow::Cow;

use rbe_runtime::tensor::Array;
use rbe_runtime::Tensor;

use super::index::GraphIndex;
use super::plan::{node_int, PlannedInput, Rewrite, Weight};

/// A constant 2-D float matrix, row-major, with its shape.
fn matrix(t: &Tensor) -> Option<(usize, usize, Cow<'_, [f32]>)> {
    match (t, t.shape()) {
        (Tensor::F32(a), &[r, c]) => Some((r, c, stored_values(a))),
        _ => None,
    }
}

/// The values of an f32 array in row-major order, borrowed when it is laid out that way.
pub fn stored_values(a: &Array<f32>) -> Cow<'_, [f32]> {
    a.as_slice().map_or_else(|| Cow::Owned(a.iter().copied().collect()), Cow::Borrowed)
}

/// A bias of `n` values from a constant of shape `[n]`, `[1, n]` or a scalar.
fn bias_vector(t: &Tensor, n: usize) -> Option<Vec<f32>> {
    let a = t.as_f32().ok()?;
    let shape = t.shape();
    let leading_ones = shape.iter().rev().skip(1).all(|&d| d == 1);
    match shape.last() {
        Some(&last) if last == n && leading_ones => Some(a.iter().copied().collect()),
        _ if t.len() == 1 => Some(vec![a.iter().copied().next()?; n]),
        _ => None,
    }
}

/// The bias input of an `RbeMatMul`: the initializer itself when it already is a `[n]`
/// vector, else a new `[n]` initializer (broadcast from `[1, n]` or a scalar, times `scale`).
fn bias_input(name: &str, t: &Tensor, n: usize, scale: f32) -> Option<PlannedInput> {
    if t.rank() == 1 && t.len() == n && scale == 1.0 && t.as_f32().is_ok() {
        return Some(PlannedInput::Value(name.to_string()));
    }
    let values: Vec<f32> = bias_vector(t, n)?.iter().map(|v| v * scale).collect();
    let tensor = Tensor::from_vec(&[n], values).ok()?;
    Some(PlannedInput::Raw(format!("{name}.bias"), tensor))
}

/// Plans `MatMul(x, W)`, `MatMul(x, Transpose(W))`, each optionally followed by `Add(bias)`.
pub fn plan_matmul(ix: &GraphIndex, i: usize) -> Option<Rewrite> {
    let node = ix.node(i);
    let [x, w] = node.input.as_slice() else { return None };
    let mut removed = vec![i];
    let weight = if let Some(t) = ix.initializer(w) {
        let (k, n, stored) = matrix(&t)?;
        Weight::new(w, &stored, [n, k], true, 1.0, Some(x.clone()))
    } else {
        let t = ix.producer_of_type(w, "Transpose")?;
        let tnode = ix.node(t);
        let perm = rbe_runtime::ops::Attrs::new(tnode).ints("perm").unwrap_or(vec![1, 0]);
        let table = ix.initializer(tnode.input.first()?)?;
        let (n, k, stored) = matrix(&table)?;
        if perm != [1, 0] {
            return None;
        }
        if ix.sole_consumer(w) == Some(i) {
            removed.push(t);
        }
        Weight::new(&tnode.input[0], &stored, [n, k], false, 1.0, Some(x.clone()))
    };
    let rows = weight.rows;
    let mut output = node.output.first()?.clone();
    let mut inputs = vec![PlannedInput::Value(x.clone())];
    inputs.push(PlannedInput::Encoded(weight));
    if let Some(add) = ix.sole_consumer(&output).filter(|&a| ix.node(a).op_type == "Add") {
        let anode = ix.node(add);
        let other = anode.input.iter().find(|n| **n != output);
        let bias = other.and_then(|o| Some((o, ix.initializer(o)?)));
        if let Some((name, t)) = bias.filter(|(_, t)| bias_vector(t, rows).is_some()) {
            inputs.push(bias_input(name, &t, rows, 1.0)?);
            removed.push(add);
            output = anode.output.first()?.clone();
        }
    }
    Some(Rewrite {
        removed,
        op_type: "RbeMatMul",
        name: node.name.clone(),
        inputs,
        output,
        attributes: Vec::new(),
    })
}

/// Plans `Gemm(A, B, C)` with constant `B` (any transB, alpha, beta) and `transA = 0`.
/// alpha is folded into the weight, beta into the bias.
pub fn plan_gemm(ix: &GraphIndex, i: usize) -> Option<Rewrite> {
    let node = ix.node(i);
    if node_int(node, "transA", 0) != 0 {
        return None;
    }
    let attrs = rbe_runtime::ops::Attrs::new(node);
    let (alpha, beta) = (attrs.float_or("alpha", 1.0), attrs.float_or("beta", 1.0));
    let a = node.input.first()?;
    let b = node.input.get(1)?;
    let t = ix.initializer(b)?;
    let (r, c, stored) = matrix(&t)?;
    let weight = if node_int(node, "transB", 0) != 0 {
        Weight::new(b, &stored, [r, c], false, alpha, Some(a.clone()))
    } else {
        Weight::new(b, &stored, [c, r], true, alpha, Some(a.clone()))
    };
    let rows = weight.rows;
    let mut inputs = vec![PlannedInput::Value(a.clone()), PlannedInput::Encoded(weight)];
    if let Some(cname) = node.input.get(2).filter(|n| !n.is_empty()) {
        inputs.push(bias_input(cname, &ix.initializer(cname)?, rows, beta)?);
    }
    Some(Rewrite {
        removed: vec![i],
        op_type: "RbeMatMul",
        name: node.name.clone(),
        inputs,
        output: node.output.first()?.clone(),
        attributes: Vec::new(),
    })
}

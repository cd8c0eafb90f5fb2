//! Linear layers: MatMul or Gemm with a constant float weight (float32, or float16 in fp16
//! graphs) and their bias, and a GELU after any linear layer -> `RbeLinear`, or `RbeMatMul`
//! with an `activation`; a residual `Add` after any linear layer -> its residual input.

use super::gelu::match_gelu;
use super::index::{is_op, GraphIndex};
use super::Rewrite;
use crate::onnx::attributes::{int_attr, string_attr};
use crate::onnx::proto::NodeProto;
use crate::ops::Attrs;
use crate::tensor::Tensor;

/// The custom-op domain of fused nodes.
const DOMAIN: &str = "ai.rbe";

/// A linear layer found in the graph, as the fused node that replaces it.
struct Linear {
    node: NodeProto,
    removed: Vec<usize>,
}

/// A constant 2-D float32 or float16 weight: its number of output columns (after `trans_b`).
fn weight_columns(ix: &GraphIndex, name: &str, trans_b: bool) -> Option<usize> {
    match ix.initializer(name)? {
        t @ (Tensor::F32(_) | Tensor::F16(_)) if t.rank() == 2 => Some(t.shape()[if trans_b { 0 } else { 1 }]),
        _ => None,
    }
}

/// A constant bias of `n` values shaped `[n]` or `[1, n]`, of the weight's type.
fn is_bias(ix: &GraphIndex, name: &str, weight: &str, n: usize) -> bool {
    let dtype = ix.initializer(weight).map(|w| w.dtype());
    ix.initializer(name).is_some_and(|t| {
        Some(t.dtype()) == dtype && t.len() == n && t.shape().iter().rev().skip(1).all(|&d| d == 1)
    })
}

fn rbe_linear(name: &str, inputs: Vec<String>, output: &str, trans_b: bool) -> NodeProto {
    NodeProto {
        name: name.to_string(),
        op_type: "RbeLinear".into(),
        domain: DOMAIN.into(),
        input: inputs,
        output: vec![output.to_string()],
        attribute: vec![int_attr("trans_b", trans_b as i64)],
        ..Default::default()
    }
}

/// `MatMul(x, W) + bias` with constant `W` and bias, from the Add.
fn biased_matmul(ix: &GraphIndex, add: usize) -> Option<Linear> {
    let node = ix.node(add);
    if !is_op(node, "Add") {
        return None;
    }
    let [a, b] = node.input.as_slice() else { return None };
    for (product, bias) in [(a, b), (b, a)] {
        let Some(mm) = ix.producer_of_type(product, "MatMul") else { continue };
        let [x, w] = ix.node(mm).input.as_slice() else { continue };
        if weight_columns(ix, w, false).is_some_and(|n| is_bias(ix, bias, w, n)) && ix.sole_consumer(product) == Some(add) {
            let fused = rbe_linear(&ix.node(mm).name, vec![x.clone(), w.clone(), bias.clone()], ix.output(add), false);
            return Some(Linear { node: fused, removed: vec![mm, add] });
        }
    }
    None
}

/// The linear layer producing `value`: Gemm (plain, constant weight), MatMul + bias, MatMul
/// with a constant weight (or its Transpose), or an `ai.rbe` linear op without an activation yet.
fn linear_producing(ix: &GraphIndex, value: &str) -> Option<Linear> {
    let p = ix.producer(value)?;
    let node = ix.node(p);
    let attrs = Attrs::new(node);
    if node.domain == DOMAIN && matches!(node.op_type.as_str(), "RbeMatMul" | "RbeLinear") {
        let plain = !attrs.has("activation") && node.input.len() <= 3;
        return plain.then(|| Linear { node: node.clone(), removed: vec![p] });
    }
    if is_op(node, "Gemm") {
        let trans_b = attrs.int_or("transB", 0) != 0;
        let plain = attrs.int_or("transA", 0) == 0 && attrs.float_or("alpha", 1.0) == 1.0 && attrs.float_or("beta", 1.0) == 1.0;
        let w = node.input.get(1)?;
        let n = weight_columns(ix, w, trans_b)?;
        let bias_ok = node.input.get(2).is_none_or(|c| c.is_empty() || is_bias(ix, c, w, n));
        return (plain && bias_ok).then(|| Linear { node: rbe_linear(&node.name, node.input.clone(), value, trans_b), removed: vec![p] });
    }
    if is_op(node, "MatMul") {
        let [x, w] = node.input.as_slice() else { return None };
        if weight_columns(ix, w, false).is_some() {
            return Some(Linear { node: rbe_linear(&node.name, node.input.clone(), value, false), removed: vec![p] });
        }
        // A tied head multiplies by Transpose(embedding): the weight read transposed.
        let t = ix.producer_of_type(w, "Transpose")?;
        let source = ix.node(t).input.first()?;
        let swaps = Attrs::new(ix.node(t)).ints("perm").is_none_or(|perm| perm == [1, 0]);
        if !swaps || weight_columns(ix, source, true).is_none() || ix.sole_consumer(w) != Some(p) {
            return None;
        }
        let fused = rbe_linear(&node.name, vec![x.clone(), source.clone()], value, true);
        return Some(Linear { node: fused, removed: vec![t, p] });
    }
    biased_matmul(ix, p)
}

/// A GELU after a linear layer, possibly through a Reshape (an elementwise activation
/// commutes with it): the activation moves into the linear node.
pub fn plan_gelu_linear(ix: &GraphIndex, i: usize) -> Option<Rewrite> {
    let gelu = match_gelu(ix, i)?;
    let before = ix.producer(gelu.x)?;
    let reshape = is_op(ix.node(before), "Reshape").then_some(before);
    let linear_value = match reshape {
        Some(r) => ix.node(r).input.first()?.as_str(),
        None => gelu.x,
    };
    // The linear output changes meaning, so nothing else may read it.
    if reshape.is_some() && ix.sole_consumer(linear_value) != reshape {
        return None;
    }
    let mut linear = linear_producing(ix, linear_value)?;
    linear.node.attribute.push(string_attr("activation", gelu.activation.name()));
    let mut removed = gelu.nodes;
    removed.extend(linear.removed);
    let added = match reshape {
        Some(r) => {
            removed.push(r);
            let mut moved = ix.node(r).clone();
            moved.output = vec![gelu.output.to_string()];
            vec![linear.node, moved]
        }
        None => {
            linear.node.output = vec![gelu.output.to_string()];
            vec![linear.node]
        }
    };
    Some(Rewrite { removed, added })
}

/// `Add(linear, residual)`, the linear layer's output possibly through a Reshape, with a
/// residual that is no constant (a constant is a bias): the Add (and the Reshape) move into
/// the linear node as inputs 3 (the residual) and 4 (the Reshape's shape), after a bias slot.
pub fn plan_residual_linear(ix: &GraphIndex, i: usize) -> Option<Rewrite> {
    let add = ix.node(i);
    let [a, b] = add.input.as_slice() else { return None };
    if !is_op(add, "Add") {
        return None;
    }
    for (value, residual) in [(a, b), (b, a)] {
        if ix.constant(residual).is_some() || ix.sole_consumer(value) != Some(i) {
            continue;
        }
        let reshape = ix.producer_of_type(value, "Reshape").filter(|&r| Attrs::new(ix.node(r)).int_or("allowzero", 0) == 0);
        let (linear_value, shape) = match reshape {
            Some(r) => match ix.node(r).input.as_slice() {
                [x, shape] => (x.as_str(), shape.as_str()),
                _ => continue,
            },
            None => (value.as_str(), ""),
        };
        if reshape.is_some() && ix.sole_consumer(linear_value) != reshape {
            continue;
        }
        let Some(mut linear) = linear_producing(ix, linear_value) else { continue };
        linear.node.input.resize(3, String::new());
        linear.node.input.extend([residual.clone(), shape.to_string()]);
        linear.node.output = vec![ix.output(i).to_string()];
        linear.removed.extend(reshape.into_iter().chain([i]));
        return Some(Rewrite { removed: linear.removed, added: vec![linear.node] });
    }
    None
}

/// `MatMul(x, W) + bias` with constants, without an activation.
pub fn plan_biased_matmul(ix: &GraphIndex, i: usize) -> Option<Rewrite> {
    let linear = biased_matmul(ix, i)?;
    Some(Rewrite { removed: linear.removed, added: vec![linear.node] })
}

/// A plain Gemm, or a MatMul by a constant weight, on its own: `RbeLinear`, whose kernel
/// packs the weight once.
pub fn plan_constant_linear(ix: &GraphIndex, i: usize) -> Option<Rewrite> {
    let node = ix.node(i);
    if !(is_op(node, "Gemm") || is_op(node, "MatMul")) {
        return None;
    }
    let linear = linear_producing(ix, node.output.first()?)?;
    Some(Rewrite { removed: linear.removed, added: vec![linear.node] })
}

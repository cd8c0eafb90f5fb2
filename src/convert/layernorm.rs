//! LayerNormalization, and its decomposed form in opset < 17 exports -> `RbeLayerNorm`.

use rbe_runtime::Tensor;

use super::index::GraphIndex;
use super::plan::{float_attr, int_attr, PlannedInput, Rewrite, Weight};

/// Parameters with fewer elements than this are stored raw, as the design guide says.
pub const RAW_PARAM_LIMIT: usize = 1024;

/// Raw when small, encoded as one row otherwise.
fn param(ix: &GraphIndex, name: &str) -> Option<PlannedInput> {
    let Tensor::F32(a) = ix.initializer(name)? else { return None };
    if a.len() < RAW_PARAM_LIMIT {
        return Some(PlannedInput::Value(name.to_string()));
    }
    let data: Vec<f32> = a.iter().copied().collect();
    Some(PlannedInput::Encoded(Weight { source: name.to_string(), rows: 1, cols: data.len(), data }))
}

/// A matched LayerNorm, whichever form it had in the graph.
struct Matched<'a> {
    name: &'a str,
    removed: Vec<usize>,
    x: &'a str,
    gamma: &'a str,
    beta: Option<&'a str>,
    output: &'a str,
    axis: i64,
    epsilon: f32,
}

fn rewrite(m: Matched, ix: &GraphIndex) -> Option<Rewrite> {
    let mut inputs = vec![PlannedInput::Value(m.x.to_string()), param(ix, m.gamma)?];
    if let Some(b) = m.beta {
        inputs.push(param(ix, b)?);
    }
    Some(Rewrite {
        removed: m.removed,
        op_type: "RbeLayerNorm",
        name: m.name.to_string(),
        inputs,
        output: m.output.to_string(),
        attributes: vec![int_attr("axis", m.axis), float_attr("epsilon", m.epsilon)],
    })
}

/// Plans `LayerNormalization(x, scale, bias)` with constant scale and bias.
pub fn plan_layernorm(ix: &GraphIndex, i: usize) -> Option<Rewrite> {
    let node = ix.node(i);
    // Mean and InvStdDev outputs, when used, keep the original op.
    if node.output.iter().skip(1).any(|o| !o.is_empty() && !ix.consumers(o).is_empty()) {
        return None;
    }
    let attrs = rbe_runtime::ops::Attrs::new(node);
    let beta = node.input.get(2).filter(|n| !n.is_empty()).map(String::as_str);
    let matched = Matched {
        name: &node.name,
        removed: vec![i],
        x: node.input.first()?,
        gamma: node.input.get(1)?,
        beta,
        output: node.output.first()?,
        axis: attrs.int_or("axis", -1),
        epsilon: attrs.float_or("epsilon", 1e-5),
    };
    rewrite(matched, ix)
}

/// The other input of a two-input node, given one of them.
fn other_input<'a>(ix: &'a GraphIndex, node: usize, known: &str) -> Option<&'a str> {
    let n = ix.node(node);
    match n.input.as_slice() {
        [a, b] if a == known => Some(b),
        [a, b] if b == known => Some(a),
        _ => None,
    }
}

/// True when `node` is a ReduceMean over the last axis only, with kept dims.
fn is_last_axis_mean(ix: &GraphIndex, node: usize) -> bool {
    let n = ix.node(node);
    let attrs = rbe_runtime::ops::Attrs::new(n);
    let axes = attrs.ints("axes").or_else(|| ix.constant(n.input.get(1)?)?.to_i64_vec().ok());
    n.op_type == "ReduceMean" && axes.as_deref() == Some(&[-1]) && attrs.int_or("keepdims", 1) == 1
}

/// Plans the decomposed pattern, matched from its `Div`:
/// `d = x - ReduceMean(x)`; `y = d / Sqrt(ReduceMean(Pow(d, 2)) + eps) * gamma + beta`.
pub fn plan_decomposed(ix: &GraphIndex, div: usize) -> Option<Rewrite> {
    let dnode = ix.node(div);
    let [d, s] = dnode.input.as_slice() else { return None };
    let sub = ix.producer_of_type(d, "Sub")?;
    let [x, m] = ix.node(sub).input.as_slice() else { return None };
    let mean1 = ix.producer(m).filter(|&p| is_last_axis_mean(ix, p))?;
    if ix.node(mean1).input.first()? != x {
        return None;
    }
    let sqrt = ix.producer_of_type(s, "Sqrt")?;
    let add_eps = ix.producer_of_type(ix.node(sqrt).input.first()?, "Add")?;
    let var = ix.node(add_eps).input.iter().find(|n| ix.producer(n).is_some_and(|p| is_last_axis_mean(ix, p)))?;
    let eps = ix.scalar(other_input(ix, add_eps, var)?)?;
    let mean2 = ix.producer(var)?;
    let pow = ix.producer_of_type(ix.node(mean2).input.first()?, "Pow")?;
    let [pbase, pexp] = ix.node(pow).input.as_slice() else { return None };
    if pbase != d || ix.scalar(pexp)? != 2.0 {
        return None;
    }
    let n_out = dnode.output.first()?;
    let mul = ix.sole_consumer(n_out).filter(|&c| ix.node(c).op_type == "Mul")?;
    let gamma = other_input(ix, mul, n_out)?;
    let m_out = ix.node(mul).output.first()?;
    let add = ix.sole_consumer(m_out).filter(|&c| ix.node(c).op_type == "Add")?;
    let beta = other_input(ix, add, m_out)?;
    // Every intermediate must be private to the pattern.
    let private = [(m.as_str(), 1), (d.as_str(), 2), (ix.node(pow).output.first()?.as_str(), 1),
        (var.as_str(), 1), (ix.node(add_eps).output.first()?.as_str(), 1), (s.as_str(), 1)];
    if private.iter().any(|(v, n)| ix.consumers(v).len() != *n || ix.consumers(v).contains(&usize::MAX)) {
        return None;
    }
    let removed = vec![mean1, sub, pow, mean2, add_eps, sqrt, div, mul, add];
    let matched = Matched {
        name: &dnode.name,
        removed,
        x,
        gamma,
        beta: Some(beta),
        output: ix.node(add).output.first()?,
        axis: -1,
        epsilon: eps as f32,
    };
    rewrite(matched, ix)
}

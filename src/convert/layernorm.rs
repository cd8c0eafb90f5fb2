//! LayerNormalization, and its decomposed form in opset < 17 exports -> `RbeLayerNorm`.

use rbe_runtime::Tensor;

use super::index::GraphIndex;
use super::matmul::stored_values;
use super::plan::{float_attr, int_attr, PlannedInput, Rewrite, Weight};

/// Parameters with fewer elements than this are stored raw, as the design guide says.
pub const RAW_PARAM_LIMIT: usize = 1024;

/// Raw when small, encoded as one row otherwise.
fn param(ix: &GraphIndex, name: &str) -> Option<PlannedInput> {
    let Tensor::F32(a) = ix.initializer(name)? else { return None };
    if a.len() < RAW_PARAM_LIMIT {
        return Some(PlannedInput::Value(name.to_string()));
    }
    Some(PlannedInput::Encoded(Weight::new(name, &stored_values(&a), [1, a.len()], false, 1.0, None)))
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

/// Plans the decomposed pattern (opset < 17 exports), matched from its `Div` by the
/// runtime's fusion matcher.
pub fn plan_decomposed(ix: &GraphIndex, div: usize) -> Option<Rewrite> {
    let m = rbe_runtime::graph::fuse::layernorm::match_decomposed(ix, div)?;
    let matched = Matched {
        name: &ix.node(div).name,
        removed: m.nodes,
        x: m.x,
        gamma: m.gamma,
        beta: Some(m.beta),
        output: m.output,
        axis: -1,
        epsilon: m.epsilon,
    };
    rewrite(matched, ix)
}

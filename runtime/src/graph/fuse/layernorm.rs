//! The decomposed LayerNorm of opset < 17 exports -> `RbeLayerNorm`:
//! `d = x - ReduceMean(x)`; `y = d / Sqrt(ReduceMean(Pow(d, 2)) + eps) * gamma + beta`.
//! The converter uses the same matcher (to encode gamma and beta).

use super::index::{is_op, GraphIndex, GRAPH_OUTPUT};
use super::Rewrite;
use crate::onnx::attributes::{float_attr, int_attr};
use crate::onnx::proto::NodeProto;
use crate::ops::Attrs;

/// A matched decomposed LayerNorm over the last axis.
pub struct DecomposedLayerNorm<'g> {
    /// The input.
    pub x: &'g str,
    /// The scale.
    pub gamma: &'g str,
    /// The shift.
    pub beta: &'g str,
    /// The output.
    pub output: &'g str,
    /// The epsilon added to the variance.
    pub epsilon: f32,
    /// The nodes it is spelled with.
    pub nodes: Vec<usize>,
}

/// The other input of a two-input node, given one of them.
pub(super) fn other_input<'g>(ix: &GraphIndex<'g>, node: usize, known: &str) -> Option<&'g str> {
    match ix.node(node).input.as_slice() {
        [a, b] if a == known => Some(b),
        [a, b] if b == known => Some(a),
        _ => None,
    }
}

/// True when `node` is a ReduceMean over the last axis only, with kept dims.
fn is_last_axis_mean(ix: &GraphIndex, node: usize) -> bool {
    let n = ix.node(node);
    let attrs = Attrs::new(n);
    let axes = attrs.ints("axes").or_else(|| ix.constant(n.input.get(1)?)?.to_i64_vec().ok());
    is_op(n, "ReduceMean") && axes.as_deref() == Some(&[-1]) && attrs.int_or("keepdims", 1) == 1
}

/// `Sqrt(ReduceMean(Pow(base, 2)) + eps)` (mean over the last axis) from its `Sqrt` node: the
/// base, `eps`, and the `Add`, `ReduceMean` and `Pow` nodes.
pub(super) fn root_mean_square<'g>(ix: &GraphIndex<'g>, sqrt: usize) -> Option<(&'g str, f64, [usize; 3])> {
    let add = ix.producer_of_type(ix.node(sqrt).input.first()?, "Add")?;
    let var = ix.node(add).input.iter().find(|n| ix.producer(n).is_some_and(|p| is_last_axis_mean(ix, p)))?;
    let eps = ix.scalar(other_input(ix, add, var)?)?;
    let mean = ix.producer(var)?;
    let pow = ix.producer_of_type(ix.node(mean).input.first()?, "Pow")?;
    let [base, exponent] = ix.node(pow).input.as_slice() else { return None };
    (ix.scalar(exponent)? == 2.0).then_some((base.as_str(), eps, [add, mean, pow]))
}

/// Matches the pattern from its `Div`; every intermediate must be private to it.
pub fn match_decomposed<'g>(ix: &GraphIndex<'g>, div: usize) -> Option<DecomposedLayerNorm<'g>> {
    let dnode = ix.node(div);
    if !is_op(dnode, "Div") {
        return None;
    }
    let [d, s] = dnode.input.as_slice() else { return None };
    let sub = ix.producer_of_type(d, "Sub")?;
    let [x, m] = ix.node(sub).input.as_slice() else { return None };
    let mean1 = ix.producer(m).filter(|&p| is_last_axis_mean(ix, p))?;
    if ix.node(mean1).input.first()? != x {
        return None;
    }
    let sqrt = ix.producer_of_type(s, "Sqrt")?;
    let (base, eps, [add_eps, mean2, pow]) = root_mean_square(ix, sqrt)?;
    if base != d.as_str() {
        return None;
    }
    let var = ix.output(mean2);
    let n_out = ix.output(div);
    let mul = ix.sole_consumer(n_out).filter(|&c| is_op(ix.node(c), "Mul"))?;
    let gamma = other_input(ix, mul, n_out)?;
    let m_out = ix.output(mul);
    let add = ix.sole_consumer(m_out).filter(|&c| is_op(ix.node(c), "Add"))?;
    let beta = other_input(ix, add, m_out)?;
    let private = [(m.as_str(), 1), (d.as_str(), 2), (ix.output(pow), 1), (var, 1), (ix.output(add_eps), 1), (s.as_str(), 1)];
    if private.iter().any(|(v, n)| ix.consumers(v).len() != *n || ix.consumers(v).contains(&GRAPH_OUTPUT)) {
        return None;
    }
    Some(DecomposedLayerNorm {
        x,
        gamma,
        beta,
        output: ix.output(add),
        epsilon: eps as f32,
        nodes: vec![mean1, sub, pow, mean2, add_eps, sqrt, div, mul, add],
    })
}

/// Rewrites a decomposed LayerNorm with constant gamma and beta as one `RbeLayerNorm`.
pub fn plan_layernorm(ix: &GraphIndex, div: usize) -> Option<Rewrite> {
    let m = match_decomposed(ix, div)?;
    ix.initializer(m.gamma)?;
    ix.initializer(m.beta)?;
    let node = NodeProto {
        name: format!("{}/RbeLayerNorm", ix.node(div).name),
        op_type: "RbeLayerNorm".into(),
        domain: "ai.rbe".into(),
        input: vec![m.x.to_string(), m.gamma.to_string(), m.beta.to_string()],
        output: vec![m.output.to_string()],
        attribute: vec![int_attr("axis", -1), float_attr("epsilon", m.epsilon)],
        ..Default::default()
    };
    Some(Rewrite { removed: m.nodes, added: vec![node] })
}

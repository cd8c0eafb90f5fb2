//! The decomposed RMSNorm of Llama-style exports -> one `SimplifiedLayerNormalization`
//! (onnxruntime's, in the default domain since version 1; computed in f32 whatever the input
//! type, so an fp16 graph's `x²` cannot overflow): `y = x / Sqrt(ReduceMean(Pow(x, 2)) + eps) * gamma`, the division also spelled
//! `x * Reciprocal(Sqrt(...))`.

use super::index::{is_op, GraphIndex};
use super::layernorm::{other_input, root_mean_square};
use super::Rewrite;
use crate::onnx::attributes::{float_attr, int_attr};
use crate::onnx::proto::NodeProto;

/// `x` and the `Sqrt` node of the pattern whose normalising node (`Div`, or `Mul` by a
/// `Reciprocal`) is `node`.
fn normalised(ix: &GraphIndex, node: usize) -> Option<(String, usize, Vec<usize>)> {
    let n = ix.node(node);
    if is_op(n, "Div") {
        let [x, s] = n.input.as_slice() else { return None };
        return Some((x.clone(), ix.producer_of_type(s, "Sqrt")?, vec![node]));
    }
    if !is_op(n, "Mul") {
        return None;
    }
    n.input.iter().enumerate().find_map(|(k, r)| {
        let rec = ix.producer_of_type(r, "Reciprocal")?;
        let x = n.input.get(1 - k)?;
        Some((x.clone(), ix.producer_of_type(ix.node(rec).input.first()?, "Sqrt")?, vec![rec, node]))
    })
}

/// Rewrites a decomposed RMSNorm over the last axis, from its normalising node.
pub fn plan_rms_norm(ix: &GraphIndex, node: usize) -> Option<Rewrite> {
    let (x, sqrt, mut nodes) = normalised(ix, node)?;
    let (base, eps, [add, mean, pow]) = root_mean_square(ix, sqrt)?;
    if base != x {
        return None;
    }
    let normed = ix.output(node);
    let mul = ix.sole_consumer(normed).filter(|&c| is_op(ix.node(c), "Mul"))?;
    let gamma = other_input(ix, mul, normed)?;
    ix.initializer(gamma).filter(|g| g.shape().len() == 1)?;
    nodes.extend([pow, mean, add, sqrt, mul]);
    let fused = NodeProto {
        name: format!("{}/SimplifiedLayerNormalization", ix.node(node).name),
        op_type: "SimplifiedLayerNormalization".into(),
        domain: String::new(),
        input: vec![x, gamma.to_string()],
        output: vec![ix.output(mul).to_string()],
        attribute: vec![int_attr("axis", -1), float_attr("epsilon", eps as f32)],
        ..Default::default()
    };
    Some(Rewrite { removed: nodes, added: vec![fused] })
}

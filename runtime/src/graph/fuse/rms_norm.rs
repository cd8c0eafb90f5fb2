//! The decomposed RMSNorm of Llama-style exports -> one `SimplifiedLayerNormalization`
//! (onnxruntime's, in the default domain since version 1; computed in f32 whatever the input
//! type, so an fp16 graph's `x²` cannot overflow): `y = x / Sqrt(ReduceMean(Pow(x, 2)) + eps) * gamma`, the division also spelled
//! `x * Reciprocal(Sqrt(...))` or `x * (1 / Sqrt(...))` (torch's legacy export of `rsqrt`), with
//! the no-op `Cast` to float that transformers' Llama norms put before the scale kept out.

use super::index::{is_cast_to_float, is_op, GraphIndex};
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
    if !is_op(n, "Mul") || n.input.len() != 2 {
        return None;
    }
    n.input.iter().enumerate().find_map(|(k, r)| {
        let x = n.input.get(1 - k)?;
        let rec = ix.producer_of_type(r, "Reciprocal").map(|rec| (rec, ix.node(rec).input.first()));
        let rec = rec.or_else(|| {
            let div = ix.producer_of_type(r, "Div")?;
            let [one, s] = ix.node(div).input.as_slice() else { return None };
            (ix.scalar(one) == Some(1.0)).then_some((div, Some(s)))
        });
        let (rec, s) = rec?;
        Some((x.clone(), ix.producer_of_type(s?, "Sqrt")?, vec![rec, node]))
    })
}


/// Rewrites a decomposed RMSNorm over the last axis, from its normalising node.
pub fn plan_rms_norm(ix: &GraphIndex, node: usize) -> Option<Rewrite> {
    let (x, sqrt, mut nodes) = normalised(ix, node)?;
    let (base, eps, [add, mean, pow]) = root_mean_square(ix, sqrt)?;
    if base != x {
        return None;
    }
    let mut normed = ix.output(node);
    let mut next = ix.sole_consumer(normed)?;
    // `normed.to(float)` before an f32 scale is a no-op when `x` itself was cast to float.
    let x_is_float = ix.producer(&x).is_some_and(|p| is_cast_to_float(ix.node(p)));
    if x_is_float && is_cast_to_float(ix.node(next)) {
        nodes.push(next);
        normed = ix.output(next);
        next = ix.sole_consumer(normed)?;
    }
    let mul = Some(next).filter(|&c| is_op(ix.node(c), "Mul"))?;
    let gamma = other_input(ix, mul, normed)?;
    ix.initializer(gamma).filter(|g| g.shape().len() == 1 && (!x_is_float || g.as_f32().is_ok()))?;
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

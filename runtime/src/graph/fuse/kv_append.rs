//! A KV cache's `Concat(past, new)` -> `RbeKvAppend`: the Concat of a graph input (the past
//! keys or values) with the new ones into a graph output (the present), which the generation
//! loop feeds back as the next past. The op appends in place when the loop hands it over.

use super::index::{is_op, GraphIndex, GRAPH_OUTPUT};
use super::Rewrite;
use crate::onnx::proto::NodeProto;

/// Matches at a two-input `Concat` whose first input no node computes and no constant holds,
/// and whose result is a graph output.
pub fn plan_kv_append(ix: &GraphIndex, i: usize) -> Option<Rewrite> {
    let node = ix.node(i);
    let [past, _new] = node.input.as_slice() else { return None };
    let [present] = node.output.as_slice() else { return None };
    let is_graph_input = ix.producer(past).is_none() && ix.constant(past).is_none();
    if !is_op(node, "Concat") || !is_graph_input || !ix.consumers(present).contains(&GRAPH_OUTPUT) {
        return None;
    }
    let fused = NodeProto {
        name: format!("{}/RbeKvAppend", node.name),
        op_type: "RbeKvAppend".into(),
        domain: "ai.rbe".into(),
        input: node.input.clone(),
        output: node.output.clone(),
        attribute: node.attribute.clone(),
        ..Default::default()
    };
    Some(Rewrite { removed: vec![i], added: vec![fused] })
}

//! Gather on axis 0 of a constant 2-D table (embeddings) -> `RbeGather`.

use rbe_runtime::Tensor;

use super::index::GraphIndex;
use super::matmul::stored_values;
use super::plan::{node_int, PlannedInput, Rewrite, Weight};

/// Plans `Gather(table, indices)` with a constant float `[V, D]` table and `axis = 0`.
pub fn plan_gather(ix: &GraphIndex, i: usize) -> Option<Rewrite> {
    let node = ix.node(i);
    let [table, indices] = node.input.as_slice() else { return None };
    if node_int(node, "axis", 0) != 0 {
        return None;
    }
    let Tensor::F32(a) = ix.initializer(table)? else { return None };
    let &[rows, cols] = a.shape() else { return None };
    let weight = Weight::new(table, &stored_values(&a), [rows, cols], false, 1.0, None).gathered();
    Some(Rewrite {
        removed: vec![i],
        op_type: "RbeGather",
        name: node.name.clone(),
        inputs: vec![PlannedInput::Encoded(weight), PlannedInput::Value(indices.clone())],
        output: node.output.first()?.clone(),
        attributes: Vec::new(),
    })
}

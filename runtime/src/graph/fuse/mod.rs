//! Fusion: rewrites recognised op patterns into fused `ai.rbe` ops before planning
//! (attention cores, linear layers with their bias, GELU and residual Add, any product by a constant
//! weight, decomposed LayerNorms and RMSNorms, KV cache Concats). Patterns are matched on the
//! producer/consumer index of the node list; a rewrite only fires when every value it stops
//! producing is read by nothing but its own nodes (and is no graph output). Whatever is not
//! recognised runs through the plain ops.

mod attention;
mod gelu;
pub mod index;
mod kv_append;
pub mod layernorm;
mod linear;
mod rms_norm;

use std::collections::HashSet;

use crate::onnx::proto::NodeProto;
use crate::tensor::Tensor;
use index::{GraphIndex, GRAPH_OUTPUT};

/// Nodes to remove and the nodes that replace them.
pub struct Rewrite {
    /// Indices of the replaced nodes.
    pub removed: Vec<usize>,
    /// The new nodes (any order: the planner sorts the graph).
    pub added: Vec<NodeProto>,
}

/// A pattern: tried at every node, returns a rewrite when it matches there.
type Pattern = fn(&GraphIndex, usize) -> Option<Rewrite>;

/// The patterns, most specific first; each node is claimed by one rewrite at most.
const PATTERNS: [Pattern; 8] = [
    attention::plan_attention,
    linear::plan_gelu_linear,
    linear::plan_residual_linear,
    linear::plan_biased_matmul,
    linear::plan_constant_linear,
    layernorm::plan_layernorm,
    rms_norm::plan_rms_norm,
    kv_append::plan_kv_append,
];

/// True when every value the rewrite stops producing is read only by removed nodes.
fn is_private(ix: &GraphIndex, r: &Rewrite) -> bool {
    let removed: HashSet<usize> = r.removed.iter().copied().collect();
    let still_produced: HashSet<&str> = r.added.iter().flat_map(|n| n.output.iter().map(String::as_str)).collect();
    r.removed.iter().flat_map(|&i| ix.node(i).output.iter()).filter(|o| !o.is_empty() && !still_produced.contains(o.as_str())).all(
        |o| ix.consumers(o).iter().all(|c| *c != GRAPH_OUTPUT && removed.contains(c)),
    )
}

/// The node list with every recognised pattern fused. `outputs` are the graph's outputs,
/// `initializer` looks up initializer values by name.
pub fn fuse<'g>(
    nodes: &'g [NodeProto],
    outputs: impl IntoIterator<Item = &'g str>,
    initializer: &'g dyn Fn(&str) -> Option<Tensor>,
) -> Vec<NodeProto> {
    let ix = GraphIndex::new(nodes, outputs, initializer);
    let mut claimed = vec![false; nodes.len()];
    let mut added: Vec<Vec<NodeProto>> = vec![Vec::new(); nodes.len()];
    for pattern in PATTERNS {
        for i in 0..nodes.len() {
            if claimed[i] {
                continue;
            }
            let Some(r) = pattern(&ix, i) else { continue };
            if r.removed.iter().any(|&n| claimed[n]) || !is_private(&ix, &r) {
                continue;
            }
            r.removed.iter().for_each(|&n| claimed[n] = true);
            // New nodes stand where the last replaced node stood.
            let at = r.removed.iter().copied().max().unwrap_or(i);
            added[at].extend(r.added);
        }
    }
    nodes
        .iter()
        .zip(claimed)
        .zip(added)
        .flat_map(|((node, gone), new)| (!gone).then(|| node.clone()).into_iter().chain(new))
        .collect()
}

#[cfg(test)]
mod tests;

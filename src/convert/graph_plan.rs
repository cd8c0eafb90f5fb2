//! The rewrites of a whole model: those of its main graph and, node by node, those of the
//! graphs nested in its nodes (the branches of an `If`, as in optimum's merged decoders, whose
//! weights live in the outer graph and are read inside both branches).

use std::collections::HashSet;

use rbe_runtime::graph::{nested_graphs, with_implicit_inputs};
use rbe_runtime::onnx::proto::{GraphProto, NodeProto, TensorProto};
use rbe_runtime::onnx::tensor_to_proto;
use rbe_runtime::Tensor;

use super::index::GraphIndex;
use super::plan::{PlannedInput, Rewrite, Weight, RBE_DOMAIN};
use super::{gather, layernorm, matmul};

/// The rewrites planned in one graph, and the plans of the graphs nested in its nodes.
pub struct GraphPlan {
    rewrites: Vec<Rewrite>,
    /// By node index, the plans of that node's nested graphs, in [`nested_graphs`] order.
    nested: Vec<(usize, Vec<GraphPlan>)>,
}

impl GraphPlan {
    /// Plans `graph` and every graph nested in it. `lookup` gives the value of an initializer
    /// of an enclosing graph; a nested graph's own initializers are decoded with `local`.
    pub fn new(
        graph: &GraphProto,
        lookup: &dyn Fn(&str) -> Option<Tensor>,
        local: &dyn Fn(&TensorProto) -> Option<Tensor>,
    ) -> Self {
        // Values read only inside a nested graph count as read by its node, so a pattern
        // never removes a value a branch still needs.
        let indexed = with_implicit_inputs(graph);
        let ix = GraphIndex::new(&indexed.node, graph.output.iter().map(|o| o.name.as_str()), lookup);
        let rewrites = plan_rewrites(&ix);
        let nested = graph
            .node
            .iter()
            .enumerate()
            .filter_map(|(i, node)| {
                let plans: Vec<GraphPlan> = nested_graphs(node)
                    .map(|g| {
                        let inner = |name: &str| {
                            g.initializer.iter().find(|t| t.name == name).map_or_else(|| lookup(name), local)
                        };
                        GraphPlan::new(g, &inner, local)
                    })
                    .collect();
                (!plans.is_empty()).then_some((i, plans))
            })
            .collect();
        Self { rewrites, nested }
    }

    /// Every planned weight, in the order [`GraphPlan::rewrite`] hands out their names: this
    /// graph's first, then those of the nested graphs node by node.
    pub fn weights(&self) -> Vec<&Weight> {
        let own = self.rewrites.iter().flat_map(|r| r.inputs.iter()).filter_map(encoded);
        own.chain(self.nested.iter().flat_map(|(_, plans)| plans.iter().flat_map(GraphPlan::weights))).collect()
    }

    /// [`GraphPlan::weights`], taken out of the plan (same order).
    pub fn into_weights(self) -> Vec<Weight> {
        let own = self.rewrites.into_iter().flat_map(|r| r.inputs).filter_map(|i| match i {
            PlannedInput::Encoded(w) => Some(w),
            _ => None,
        });
        own.chain(self.nested.into_iter().flat_map(|(_, plans)| plans.into_iter().flat_map(GraphPlan::into_weights))).collect()
    }

    /// The node list of `graph` rewritten: replaced nodes dropped, each `ai.rbe` node placed
    /// where the node that produced its output stood (so the list stays topologically sorted),
    /// nested graphs rewritten the same way. Each encoded weight is read by the name `names`
    /// gives it; new lossless initializers go to `initializers` under names not yet `taken`.
    pub fn rewrite(&self, graph: &GraphProto, names: &mut dyn Iterator<Item = String>, out: &mut NewInitializers) -> Result<Vec<NodeProto>, String> {
        let count = graph.node.len();
        let mut replacement: Vec<Option<NodeProto>> = vec![None; count];
        let mut removed = vec![false; count];
        for r in &self.rewrites {
            let mut inputs = Vec::new();
            for input in &r.inputs {
                inputs.push(match input {
                    PlannedInput::Value(name) => name.clone(),
                    PlannedInput::Encoded(_) => names.next().ok_or("internal: weight count mismatch")?,
                    PlannedInput::Raw(name, tensor) => out.add(name, tensor),
                });
            }
            let anchor = *r
                .removed
                .iter()
                .find(|&&n| graph.node[n].output.first() == Some(&r.output))
                .ok_or("internal: rewrite without an anchor")?;
            r.removed.iter().for_each(|&n| removed[n] = true);
            replacement[anchor] = Some(NodeProto {
                name: r.name.clone(),
                op_type: r.op_type.to_string(),
                domain: RBE_DOMAIN.to_string(),
                input: inputs,
                output: vec![r.output.clone()],
                attribute: r.attributes.clone(),
                ..Default::default()
            });
        }
        let mut nested = self.nested.iter().peekable();
        let mut nodes = Vec::with_capacity(count);
        for (i, (node, new)) in graph.node.iter().zip(replacement).enumerate() {
            if let Some(new) = new {
                nodes.push(new);
                continue;
            }
            if removed[i] {
                continue;
            }
            let mut node = node.clone();
            if let Some((_, plans)) = nested.next_if(|(n, _)| *n == i) {
                let graphs = node.attribute.iter_mut().flat_map(|a| a.g.iter_mut().chain(a.graphs.iter_mut()));
                for (g, plan) in graphs.zip(plans) {
                    g.node = plan.rewrite(g, names, out)?;
                }
            }
            nodes.push(node);
        }
        Ok(nodes)
    }
}

/// Lossless initializers the rewrites add, named uniquely across every graph of the model
/// (nodes of two branches may share a name).
pub struct NewInitializers {
    taken: HashSet<String>,
    /// The initializers added so far.
    pub tensors: Vec<TensorProto>,
}

impl NewInitializers {
    /// Starts with the names the model already uses in `graph` and the graphs nested in it.
    pub fn new(graph: &GraphProto) -> Self {
        let mut taken = HashSet::new();
        collect_names(graph, &mut taken);
        Self { taken, tensors: Vec::new() }
    }

    /// Adds `tensor` under `name`, or under `name.1`, `name.2`, ... when it is taken; returns
    /// the name used.
    fn add(&mut self, name: &str, tensor: &Tensor) -> String {
        let mut unique = name.to_string();
        let mut k = 0;
        while !self.taken.insert(unique.clone()) {
            k += 1;
            unique = format!("{name}.{k}");
        }
        self.tensors.push(tensor_to_proto(&unique, tensor));
        unique
    }
}

/// Every value name defined in `graph` and its nested graphs.
fn collect_names(graph: &GraphProto, taken: &mut HashSet<String>) {
    taken.extend(graph.initializer.iter().map(|t| t.name.clone()));
    taken.extend(graph.input.iter().map(|i| i.name.clone()));
    for node in &graph.node {
        taken.extend(node.output.iter().cloned());
        nested_graphs(node).for_each(|g| collect_names(g, taken));
    }
}

fn encoded(input: &PlannedInput) -> Option<&Weight> {
    match input {
        PlannedInput::Encoded(w) => Some(w),
        _ => None,
    }
}

/// Finds every rewrite of one graph, claiming each node at most once.
fn plan_rewrites(ix: &GraphIndex) -> Vec<Rewrite> {
    let mut claimed = HashSet::new();
    let mut rewrites = Vec::new();
    for (i, node) in ix.nodes().iter().enumerate() {
        let planned = match (node.domain.as_str(), node.op_type.as_str()) {
            ("" | "ai.onnx", "MatMul") => matmul::plan_matmul(ix, i),
            ("" | "ai.onnx", "Gemm") => matmul::plan_gemm(ix, i),
            ("" | "ai.onnx", "Gather") => gather::plan_gather(ix, i),
            ("" | "ai.onnx", "LayerNormalization") => layernorm::plan_layernorm(ix, i),
            ("" | "ai.onnx", "Div") => layernorm::plan_decomposed(ix, i),
            _ => None,
        };
        if let Some(r) = planned.filter(|r| r.removed.iter().all(|n| !claimed.contains(n))) {
            claimed.extend(r.removed.iter().copied());
            rewrites.push(r);
        }
    }
    rewrites
}

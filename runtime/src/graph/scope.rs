//! Nested graphs (the branches of `If`): what a graph reads from the scopes around it, and the
//! model-wide context a kernel needs to build a graph of its own.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use crate::onnx::proto::{GraphProto, NodeProto};
use crate::onnx::{ExternalData, FileMap};
use crate::ops::Registry;
use crate::options::SessionOptions;

/// What every graph of a model is built with: the model's opset imports, the op registry, the
/// session options and where external data comes from.
pub struct Scope<'a> {
    /// Opset version per (normalised) domain.
    pub opsets: HashMap<&'a str, i64>,
    /// The ops the graphs may use.
    pub registry: &'a Registry,
    /// The session's options.
    pub options: &'a SessionOptions,
    /// Where initializers with external data are read from.
    pub data: ExternalData<'a>,
    /// The mapped model file inline initializers borrow from, if any: the pages of each one
    /// decoded into a tensor of its own are given back at once.
    pub pages: Option<&'a FileMap>,
    /// The model holds half-precision values, computed in f32 ([`super::half`]): its
    /// initializers are widened as they are decoded.
    pub widen_half: bool,
}

/// The names `graph` reads but does not define (neither an initializer, an input nor a node
/// output of its own), including those its own nested graphs read: the values it takes from
/// the enclosing scopes. In order of first use.
pub fn outer_names(graph: &GraphProto) -> Vec<String> {
    let defined: HashSet<&str> = graph
        .initializer
        .iter()
        .map(|t| t.name.as_str())
        .chain(graph.sparse_initializer.iter().filter_map(|s| s.values.as_ref().map(|v| v.name.as_str())))
        .chain(graph.input.iter().map(|i| i.name.as_str()))
        .chain(graph.node.iter().flat_map(|n| n.output.iter().map(String::as_str)))
        .collect();
    let mut seen = HashSet::new();
    let mut names = Vec::new();
    for node in &graph.node {
        let nested = nested_graphs(node).flat_map(outer_names);
        for name in node.input.iter().cloned().chain(nested) {
            if !name.is_empty() && !defined.contains(name.as_str()) && seen.insert(name.clone()) {
                names.push(name);
            }
        }
    }
    names
}

/// Every value `node` reads: its inputs and what its nested graphs take from the enclosing
/// scopes (a value read only inside an `If` branch is still read by the `If`).
pub fn node_reads(node: &NodeProto) -> impl Iterator<Item = String> + '_ {
    let nested = nested_graphs(node).flat_map(outer_names);
    node.input.iter().filter(|n| !n.is_empty()).cloned().chain(nested)
}

/// The graphs held in `node`'s attributes (the branches of `If`, the bodies of `Loop`/`Scan`).
pub fn nested_graphs(node: &NodeProto) -> impl Iterator<Item = &GraphProto> {
    node.attribute.iter().flat_map(|a| a.g.iter().chain(&a.graphs))
}

/// `graph` with each node that holds nested graphs also reading, as extra trailing inputs, the
/// values those graphs take from `graph` (or from further out), so that ordering, liveness and
/// fusion see every reader. The node's kernel finds them after its declared inputs. A copy
/// leaves the initializers out (a merged decoder's outer graph holds every weight): read them
/// from the original.
pub fn with_implicit_inputs(graph: &GraphProto) -> Cow<'_, GraphProto> {
    if !graph.node.iter().any(|n| nested_graphs(n).next().is_some()) {
        return Cow::Borrowed(graph);
    }
    let mut graph = GraphProto {
        name: graph.name.clone(),
        node: graph.node.clone(),
        input: graph.input.clone(),
        output: graph.output.clone(),
        value_info: graph.value_info.clone(),
        ..Default::default()
    };
    for node in &mut graph.node {
        let implicit: Vec<String> = nested_graphs(node).flat_map(outer_names).collect();
        let mut seen = HashSet::new();
        node.input.extend(implicit.into_iter().filter(|n| seen.insert(n.clone())));
    }
    Cow::Owned(graph)
}

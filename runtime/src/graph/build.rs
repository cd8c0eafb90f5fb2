//! Turning a `ModelProto` into a planned [`Graph`]: name resolution, topological order,
//! kernel construction, constant folding, and liveness.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::graph::scope::{with_implicit_inputs, Scope};
use crate::graph::{Graph, InputSpec, Node, ValueId};
use crate::onnx::proto::{GraphProto, ModelProto, NodeProto};
use crate::onnx::{shared_u8, tensor_from_proto, ExternalData, FileMap, SharedBytes};
use crate::ops::{normalize_domain, Attrs, OpContext, Registry};
use crate::options::SessionOptions;
use crate::tensor::Tensor;

/// Builds the execution plan of `model`'s main graph; `pages` is the mapped file its inline
/// data borrows from, if any.
pub fn build(model: &ModelProto, data: ExternalData, pages: Option<&FileMap>, registry: &Registry, options: &SessionOptions) -> Result<Graph> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| Error::Model("the model has no graph".into()))?;
    let mut opsets: HashMap<&str, i64> = model
        .opset_import
        .iter()
        .map(|o| (normalize_domain(&o.domain), o.version))
        .collect();
    if options.fuse {
        // Fused nodes are `ai.rbe` ops, version 1.
        opsets.entry(crate::ops::RBE_DOMAIN).or_insert(1);
    }
    let widen_half = super::half::has_half(graph);
    let graph = super::half::widened(graph)?;
    let scope = Scope { opsets, registry, options, data, pages, widen_half };
    let mut plan = build_graph(&graph, &scope, Vec::new())?;
    if widen_half {
        plan.round_half_outputs(&graph.output)?;
    }
    Ok(plan)
}

/// A value a nested graph reads from the graph around it.
pub enum OuterValue {
    /// A constant of the enclosing graph (an initializer or a folded value).
    Constant(Tensor),
    /// A `uint8` initializer of the enclosing graph kept as shared bytes.
    Shared(SharedBytes),
    /// A value computed at run time: the nested graph takes it as an input of any type.
    Runtime,
}

/// Builds the plan of a nested graph (an `If` branch) that reads the named `outer` values of
/// the enclosing graph; its constants fold and its products fuse like the main graph's.
pub fn build_nested(graph: &GraphProto, scope: &Scope, outer: Vec<(String, OuterValue)>) -> Result<Graph> {
    build_graph(graph, scope, outer)
}

fn build_graph(graph: &GraphProto, scope: &Scope, outer: Vec<(String, OuterValue)>) -> Result<Graph> {
    let mut b = Builder::default();
    b.add_outer(outer);
    b.add_initializers(graph, scope)?;
    let graph = with_implicit_inputs(graph);
    let fused;
    let graph = if scope.options.fuse {
        fused = b.fused(&graph);
        &fused
    } else {
        &*graph
    };
    b.add_inputs(graph)?;
    let order = b.order_nodes(graph)?;
    b.count_readers(graph);
    for index in order {
        b.add_node(&graph.node[index], index, scope)?;
    }
    b.finish(graph)
}

#[derive(Default)]
struct Builder {
    ids: HashMap<String, ValueId>,
    names: Vec<String>,
    constants: Vec<Option<Tensor>>,
    inputs: Vec<InputSpec>,
    input_ids: Vec<ValueId>,
    nodes: Vec<Node>,
    /// Per value, the nodes that will still read it (to free absorbed constants early).
    readers_left: Vec<usize>,
    /// `uint8` initializers kept as shared bytes until a node needs them as a tensor, so that
    /// kernels absorbing encoded weights keep them without a copy.
    shared: HashMap<ValueId, SharedBytes>,
}

impl Builder {
    fn value(&mut self, name: &str) -> ValueId {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len();
        self.ids.insert(name.to_string(), id);
        self.names.push(name.to_string());
        self.constants.push(None);
        id
    }

    fn add_outer(&mut self, outer: Vec<(String, OuterValue)>) {
        for (name, value) in outer {
            let id = self.value(&name);
            match value {
                OuterValue::Constant(t) => self.constants[id] = Some(t),
                OuterValue::Shared(bytes) => {
                    self.shared.insert(id, bytes);
                }
                OuterValue::Runtime => {
                    self.inputs.push(InputSpec { name, dtype: None, dims: None });
                    self.input_ids.push(id);
                }
            }
        }
    }

    fn add_initializers(&mut self, graph: &GraphProto, scope: &Scope) -> Result<()> {
        let data = scope.data;
        for init in &graph.initializer {
            if self.ids.contains_key(&init.name) {
                return Err(Error::Model(format!("initializer '{}' is defined twice", init.name)));
            }
            if let Some(bytes) = shared_u8(init, data)? {
                let id = self.value(&init.name);
                self.shared.insert(id, bytes);
                continue;
            }
            let mut tensor = tensor_from_proto(init, data)?;
            if scope.widen_half {
                tensor = super::half::widen(tensor);
            }
            if let Some(pages) = scope.pages {
                pages.release(&init.raw_data);
            }
            let id = self.value(&init.name);
            self.constants[id] = Some(tensor);
        }
        if !graph.sparse_initializer.is_empty() {
            return Err(Error::Model("sparse initializers are not supported".into()));
        }
        Ok(())
    }

    /// The graph's inputs, outputs and nodes, with the nodes fused (initializers are
    /// already decoded in `self`).
    fn fused(&self, graph: &GraphProto) -> GraphProto {
        let initializer = |name: &str| self.ids.get(name).and_then(|&id| self.constants[id].clone());
        let outputs = graph.output.iter().map(|o| o.name.as_str());
        GraphProto {
            node: super::fuse::fuse(&graph.node, outputs, &initializer),
            input: graph.input.clone(),
            output: graph.output.clone(),
            ..Default::default()
        }
    }

    fn add_inputs(&mut self, graph: &GraphProto) -> Result<()> {
        for info in &graph.input {
            // Older IR versions also list initializers as inputs; those stay constants.
            if self.ids.contains_key(&info.name) {
                continue;
            }
            let id = self.value(&info.name);
            self.inputs.push(InputSpec::from_value_info(info)?);
            self.input_ids.push(id);
        }
        Ok(())
    }

    /// Counts, per value (node outputs included), the nodes and graph outputs reading it.
    fn count_readers(&mut self, graph: &GraphProto) {
        let read: Vec<&str> = graph
            .node
            .iter()
            .flat_map(|n| n.input.iter())
            .chain(graph.output.iter().map(|o| &o.name))
            .filter(|n| !n.is_empty())
            .map(String::as_str)
            .collect();
        let ids: Vec<ValueId> = read.into_iter().map(|name| self.value(name)).collect();
        self.readers_left = vec![0; self.names.len()];
        for id in ids {
            self.readers_left[id] += 1;
        }
    }

    /// Kahn's algorithm over producer/consumer edges; keeps the file's order among ready nodes.
    fn order_nodes(&mut self, graph: &GraphProto) -> Result<Vec<usize>> {
        let mut producer: HashMap<&str, usize> = HashMap::new();
        for (i, node) in graph.node.iter().enumerate() {
            for out in node.output.iter().filter(|o| !o.is_empty()) {
                if self.ids.contains_key(out.as_str()) || producer.insert(out, i).is_some() {
                    return Err(Error::Model(format!(
                        "value '{out}' is produced twice (node '{}')",
                        node.name
                    )));
                }
            }
        }
        let mut waiting = vec![0usize; graph.node.len()];
        let mut readers: Vec<Vec<usize>> = vec![Vec::new(); graph.node.len()];
        for (i, node) in graph.node.iter().enumerate() {
            for name in node.input.iter().filter(|n| !n.is_empty()) {
                if let Some(&p) = producer.get(name.as_str()) {
                    waiting[i] += 1;
                    readers[p].push(i);
                } else if !self.ids.contains_key(name.as_str()) {
                    return Err(Error::Model(format!(
                        "node '{}' ({}) reads '{name}', which is neither a graph input, an initializer nor a node output",
                        node.name, node.op_type
                    )));
                }
            }
        }
        let mut ready: std::collections::BTreeSet<usize> =
            (0..graph.node.len()).filter(|&i| waiting[i] == 0).collect();
        let mut order = Vec::with_capacity(graph.node.len());
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &r in &readers[i] {
                waiting[r] -= 1;
                if waiting[r] == 0 {
                    ready.insert(r);
                }
            }
        }
        if order.len() != graph.node.len() {
            return Err(Error::Model("the graph has a cycle".into()));
        }
        Ok(order)
    }

    fn add_node(
        &mut self,
        proto: &NodeProto,
        index: usize,
        scope: &Scope,
    ) -> Result<()> {
        let name = if proto.name.is_empty() {
            format!("{}_{index}", proto.op_type)
        } else {
            proto.name.clone()
        };
        let domain = normalize_domain(&proto.domain);
        let opset = scope.opsets.get(domain).copied().unwrap_or(0);
        let unknown = || Error::UnknownOp {
            domain: proto.domain.clone(),
            op_type: proto.op_type.clone(),
            opset,
            node: name.clone(),
        };
        let factory = scope
            .registry
            .resolve(domain, &proto.op_type, opset)
            .ok_or_else(unknown)?;
        let inputs: Vec<Option<ValueId>> = proto
            .input
            .iter()
            .map(|n| (!n.is_empty()).then(|| self.value(n)))
            .collect();
        let outputs: Vec<Option<ValueId>> = proto
            .output
            .iter()
            .map(|n| (!n.is_empty()).then(|| self.value(n)))
            .collect();
        let wrap = |e: Error| match e {
            Error::Op(message) => Error::Node {
                node: name.clone(),
                op_type: proto.op_type.clone(),
                message,
            },
            other => other,
        };
        let all_constant = inputs
            .iter()
            .flatten()
            .all(|id| self.constants[*id].is_some() || self.shared.contains_key(id));
        if all_constant {
            inputs.iter().flatten().try_for_each(|id| self.materialize(*id))?;
        }
        let constants: Vec<Option<&Tensor>> = inputs
            .iter()
            .map(|id| id.and_then(|id| self.constants[id].as_ref()))
            .collect();
        let foldable = constants.iter().zip(&inputs).all(|(c, id)| c.is_some() || id.is_none());
        let shared = inputs.iter().map(|id| id.and_then(|id| self.shared.get(&id))).collect();
        let ctx = OpContext {
            node: proto,
            opset,
            attrs: Attrs::new(proto),
            constants,
            shared,
            options: scope.options,
            scope: Some(scope),
        };
        let kernel = factory(&ctx).map_err(wrap)?;
        if foldable {
            let values = kernel.run(&ctx.constants).map_err(wrap)?;
            drop(ctx);
            self.store_folded(&name, &outputs, values)?;
            return Ok(());
        }
        drop(ctx);
        for (i, id) in inputs.iter().enumerate() {
            if let (Some(id), false) = (id, kernel.absorbs(i)) {
                self.materialize(*id)?;
            }
        }
        let inputs = inputs
            .into_iter()
            .enumerate()
            .map(|(i, id)| id.filter(|_| !kernel.absorbs(i)))
            .collect();
        self.release_absorbed(proto, kernel.as_ref());
        self.nodes.push(Node {
            name,
            op_type: proto.op_type.clone(),
            domain: domain.to_string(),
            kernel,
            inputs,
            outputs,
        });
        Ok(())
    }

    /// Frees constants this node's kernel absorbed once no other node will read them.
    fn release_absorbed(&mut self, proto: &NodeProto, kernel: &dyn crate::ops::Kernel) {
        for (_, name) in proto.input.iter().enumerate().filter(|(i, _)| kernel.absorbs(*i)) {
            if let Some(&id) = self.ids.get(name.as_str()) {
                self.readers_left[id] = self.readers_left[id].saturating_sub(1);
                if self.readers_left[id] == 0 {
                    self.constants[id] = None;
                    self.shared.remove(&id);
                }
            }
        }
    }

    /// Turns a constant kept as shared bytes into a tensor (a node reads it as a value).
    fn materialize(&mut self, id: ValueId) -> Result<()> {
        if let Some(s) = self.shared.remove(&id) {
            self.constants[id] = Some(s.to_tensor()?);
        }
        Ok(())
    }

    fn store_folded(&mut self, node: &str, outputs: &[Option<ValueId>], values: Vec<Tensor>) -> Result<()> {
        if values.len() < outputs.iter().flatten().count() {
            return Err(Error::Model(format!("node '{node}' produced too few outputs")));
        }
        for (id, value) in outputs.iter().zip(values) {
            if let Some(id) = id {
                self.constants[*id] = Some(value.into_standard_layout()?);
            }
        }
        Ok(())
    }

    /// Drops constants that no remaining node reads (absorbed by kernels, or only read by
    /// folded nodes) and that are not graph outputs.
    fn drop_unread_constants(&mut self, outputs: &[(String, ValueId)]) {
        let mut read = vec![false; self.names.len()];
        for id in self.nodes.iter().flat_map(|n| n.inputs.iter().flatten()) {
            read[*id] = true;
        }
        for (_, id) in outputs {
            read[*id] = true;
        }
        for (constant, read) in self.constants.iter_mut().zip(read) {
            if !read {
                *constant = None;
            }
        }
    }

    /// True when value `id` is a constant, a graph input or a node's output.
    fn is_defined(&self, id: ValueId) -> bool {
        self.constants[id].is_some()
            || self.shared.contains_key(&id)
            || self.input_ids.contains(&id)
            || self.nodes.iter().any(|n| n.outputs.contains(&Some(id)))
    }

    fn finish(mut self, graph: &GraphProto) -> Result<Graph> {
        let mut outputs = Vec::with_capacity(graph.output.len());
        for out in &graph.output {
            let id = self.ids.get(&out.name).copied().filter(|id| self.is_defined(*id));
            let id = id.ok_or_else(|| Error::Model(format!("graph output '{}' is never produced", out.name)))?;
            self.materialize(id)?;
            outputs.push((out.name.clone(), id));
        }
        self.drop_unread_constants(&outputs);
        let mut last_reader: Vec<Option<usize>> = vec![None; self.names.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for id in node.inputs.iter().flatten() {
                last_reader[*id] = Some(i);
            }
        }
        for (_, id) in &outputs {
            last_reader[*id] = None;
        }
        let mut frees = vec![Vec::new(); self.nodes.len()];
        for (id, reader) in last_reader.iter().enumerate() {
            if let (Some(i), None) = (reader, &self.constants[id]) {
                frees[*i].push(id);
            }
        }
        let shape_memo = super::shape_memo::ShapeMemo::plan(&self.nodes, |id| self.constants[id].is_some());
        Ok(Graph {
            shape_memo,
            names: self.names,
            constants: self.constants,
            inputs: self.inputs,
            input_ids: self.input_ids,
            outputs,
            nodes: self.nodes,
            frees,
            half_outputs: None,
        })
    }
}

//! A read-only index of a node list for pattern matching: who produces and who reads each
//! value, and the value of constants (initializers and `Constant` nodes).

use std::collections::HashMap;

use crate::onnx::proto::NodeProto;
use crate::ops::Attrs;
use crate::tensor::Tensor;

/// Stands for "a graph output" among a value's readers.
pub const GRAPH_OUTPUT: usize = usize::MAX;

/// Producers, consumers and constants of one graph's nodes.
pub struct GraphIndex<'g> {
    nodes: &'g [NodeProto],
    producer: HashMap<&'g str, usize>,
    consumers: HashMap<&'g str, Vec<usize>>,
    initializer: &'g dyn Fn(&str) -> Option<Tensor>,
}

impl<'g> GraphIndex<'g> {
    /// Indexes `nodes`; `outputs` are the graph's output names, `initializer` looks up the
    /// value of an initializer by name.
    pub fn new(
        nodes: &'g [NodeProto],
        outputs: impl IntoIterator<Item = &'g str>,
        initializer: &'g dyn Fn(&str) -> Option<Tensor>,
    ) -> Self {
        let mut producer = HashMap::new();
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, node) in nodes.iter().enumerate() {
            for out in node.output.iter().filter(|o| !o.is_empty()) {
                producer.insert(out.as_str(), i);
            }
            for inp in node.input.iter().filter(|n| !n.is_empty()) {
                consumers.entry(inp.as_str()).or_default().push(i);
            }
        }
        for out in outputs {
            consumers.entry(out).or_default().push(GRAPH_OUTPUT);
        }
        Self { nodes, producer, consumers, initializer }
    }

    /// All nodes, in file order.
    pub fn nodes(&self) -> &'g [NodeProto] {
        self.nodes
    }

    /// The node at `index`.
    pub fn node(&self, index: usize) -> &'g NodeProto {
        &self.nodes[index]
    }

    /// The index of the node producing `value`.
    pub fn producer(&self, value: &str) -> Option<usize> {
        self.producer.get(value).copied()
    }

    /// The node producing `value`, if it is a default-domain `op_type`.
    pub fn producer_of_type(&self, value: &str, op_type: &str) -> Option<usize> {
        self.producer(value).filter(|&i| is_op(self.node(i), op_type))
    }

    /// Indices of the nodes reading `value` ([`GRAPH_OUTPUT`] stands for a graph output).
    pub fn consumers(&self, value: &str) -> &[usize] {
        self.consumers.get(value).map_or(&[], |v| v.as_slice())
    }

    /// The only node reading `value`, if exactly one node (and no graph output) reads it.
    pub fn sole_consumer(&self, value: &str) -> Option<usize> {
        match self.consumers(value) {
            [only] if *only != GRAPH_OUTPUT => Some(*only),
            _ => None,
        }
    }

    /// The value of an initializer.
    pub fn initializer(&self, name: &str) -> Option<Tensor> {
        (self.initializer)(name)
    }

    /// The value of an initializer or of a `Constant` node's output.
    pub fn constant(&self, name: &str) -> Option<Tensor> {
        if let Some(t) = self.initializer(name) {
            return Some(t);
        }
        let node = self.node(self.producer_of_type(name, "Constant")?);
        Attrs::new(node).tensor("value").ok().flatten()
    }

    /// A one-element constant as f64 (any numeric dtype).
    pub fn scalar(&self, name: &str) -> Option<f64> {
        self.constant(name).filter(|t| t.len() == 1).and_then(|t| t.scalar_f64().ok())
    }

    /// For a two-input node with a one-element constant input equal to `value` (within
    /// 1e-4 relative), the other input.
    pub fn input_besides_scalar(&self, node: usize, value: f64) -> Option<&'g str> {
        let close = |name: &str| self.scalar(name).is_some_and(|s| (s - value).abs() <= 1e-4 * value.abs().max(1e-30));
        match self.node(node).input.as_slice() {
            [a, b] if close(b) => Some(a),
            [a, b] if close(a) => Some(b),
            _ => None,
        }
    }

    /// The first output of node `index` ("" if it has none).
    pub fn output(&self, index: usize) -> &'g str {
        self.node(index).output.first().map_or("", String::as_str)
    }
}

/// True when `node` is the default-domain operator `op_type`.
pub fn is_op(node: &NodeProto, op_type: &str) -> bool {
    node.op_type == op_type && matches!(node.domain.as_str(), "" | "ai.onnx")
}

/// True when `node` is a `Cast` to float (a no-op in an f32 graph; transformers' Llama code
/// writes them around its norms and softmax).
pub fn is_cast_to_float(node: &NodeProto) -> bool {
    /// `TensorProto.DataType.FLOAT`.
    const FLOAT: i64 = 1;
    is_op(node, "Cast") && crate::ops::Attrs::new(node).int_or("to", 0) == FLOAT
}

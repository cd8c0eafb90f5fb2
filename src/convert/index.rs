//! A read-only index of a graph for pattern matching: who produces and who reads each value,
//! and the constant value of initializers.

use std::collections::HashMap;

use rbe_runtime::onnx::proto::{GraphProto, NodeProto};
use rbe_runtime::onnx::{tensor_from_proto, ExternalData};
use rbe_runtime::Tensor;

/// Producers, consumers and initializer values of one graph.
pub struct GraphIndex<'g> {
    /// The graph being indexed.
    pub graph: &'g GraphProto,
    producer: HashMap<&'g str, usize>,
    consumers: HashMap<&'g str, Vec<usize>>,
    initializers: HashMap<&'g str, Tensor>,
}

impl<'g> GraphIndex<'g> {
    /// Indexes `graph`, decoding every initializer.
    pub fn new(graph: &'g GraphProto, data: ExternalData) -> Result<Self, String> {
        let mut producer = HashMap::new();
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, node) in graph.node.iter().enumerate() {
            for out in &node.output {
                producer.insert(out.as_str(), i);
            }
            for inp in node.input.iter().filter(|n| !n.is_empty()) {
                consumers.entry(inp.as_str()).or_default().push(i);
            }
        }
        for out in &graph.output {
            // Graph outputs count as a reader that is not a node.
            consumers.entry(out.name.as_str()).or_default().push(usize::MAX);
        }
        let mut initializers = HashMap::new();
        for init in &graph.initializer {
            let t = tensor_from_proto(init, data).map_err(|e| e.to_string())?;
            initializers.insert(init.name.as_str(), t);
        }
        Ok(Self { graph, producer, consumers, initializers })
    }

    /// The node at `index`.
    pub fn node(&self, index: usize) -> &'g NodeProto {
        &self.graph.node[index]
    }

    /// The index of the node producing `value`.
    pub fn producer(&self, value: &str) -> Option<usize> {
        self.producer.get(value).copied()
    }

    /// The node producing `value`, if it has type `op_type`.
    pub fn producer_of_type(&self, value: &str, op_type: &str) -> Option<usize> {
        self.producer(value).filter(|&i| self.node(i).op_type == op_type)
    }

    /// Indices of the nodes reading `value` (`usize::MAX` stands for a graph output).
    pub fn consumers(&self, value: &str) -> &[usize] {
        self.consumers.get(value).map_or(&[], |v| v.as_slice())
    }

    /// The only node reading `value`, if exactly one node (and no graph output) reads it.
    pub fn sole_consumer(&self, value: &str) -> Option<usize> {
        match self.consumers(value) {
            [only] if *only != usize::MAX => Some(*only),
            _ => None,
        }
    }

    /// The value of an initializer.
    pub fn initializer(&self, name: &str) -> Option<&Tensor> {
        self.initializers.get(name)
    }

    /// The value of an initializer or of a `Constant` node's output.
    pub fn constant(&self, name: &str) -> Option<Tensor> {
        if let Some(t) = self.initializer(name) {
            return Some(t.clone());
        }
        let node = self.node(self.producer_of_type(name, "Constant")?);
        rbe_runtime::ops::Attrs::new(node).tensor("value").ok().flatten()
    }

    /// A scalar float constant (any float/int dtype, one element).
    pub fn scalar(&self, name: &str) -> Option<f64> {
        self.constant(name).and_then(|t| t.scalar_f64().ok())
    }
}

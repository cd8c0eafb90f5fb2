//! Collects the nodes and initializers that replace one `ai.rbe` node.

use std::collections::HashSet;

use rbe_runtime::onnx::proto::{AttributeProto, NodeProto, TensorProto};
use rbe_runtime::onnx::tensor_to_proto;
use rbe_runtime::Tensor;

/// onnxruntime's contrib-op domain.
pub const MS_DOMAIN: &str = "com.microsoft";

/// New nodes and initializers, named after a prefix so they cannot collide.
pub struct Builder<'a> {
    prefix: String,
    /// Names of the initializers emitted so far (shared weights are written once).
    known: &'a mut HashSet<String>,
    /// Opset of the default domain (decides how a few ops take their arguments).
    pub opset: i64,
    /// The nodes, in execution order.
    pub nodes: Vec<NodeProto>,
    /// The initializers they read.
    pub initializers: Vec<TensorProto>,
}

impl<'a> Builder<'a> {
    /// A builder whose new names start with `prefix`; `known` holds the initializers that
    /// exist already.
    pub fn new(prefix: &str, opset: i64, known: &'a mut HashSet<String>) -> Self {
        Builder { prefix: prefix.to_string(), known, opset, nodes: Vec::new(), initializers: Vec::new() }
    }

    /// A fresh value name.
    pub fn name(&self, what: &str) -> String {
        format!("{}/{what}", self.prefix)
    }

    /// Adds an initializer named `{prefix}/{what}` and returns its name.
    pub fn constant(&mut self, what: &str, value: Result<Tensor, rbe_runtime::Error>) -> Result<String, String> {
        let name = self.name(what);
        self.shared(&name, || value)?;
        Ok(name)
    }

    /// Adds the initializer `name` unless it exists already (a weight two nodes share);
    /// returns whether it was added.
    pub fn shared(&mut self, name: &str, value: impl FnOnce() -> Result<Tensor, rbe_runtime::Error>) -> Result<bool, String> {
        if self.known.contains(name) {
            return Ok(false);
        }
        let value = value().map_err(|e| format!("{name}: {e}"))?;
        self.initializers.push(tensor_to_proto(name, &value));
        self.known.insert(name.to_string());
        Ok(true)
    }

    /// Adds a node writing `output` and returns `output`.
    pub fn node(&mut self, op_type: &str, domain: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> String {
        self.nodes.push(NodeProto {
            op_type: op_type.to_string(),
            domain: domain.to_string(),
            name: format!("{}/{op_type}{}", self.prefix, self.nodes.len()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            attribute,
            ..Default::default()
        });
        output.to_string()
    }

    /// Adds a standard node writing a fresh value `{prefix}/{what}` and returns its name.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], what: &str, attribute: Vec<AttributeProto>) -> String {
        let out = self.name(what);
        self.node(op_type, "", inputs, &out, attribute)
    }

    /// An int64 vector constant.
    pub fn ints(&mut self, what: &str, values: &[i64]) -> Result<String, String> {
        self.constant(what, Tensor::from_vec(&[values.len()], values.to_vec()))
    }

    /// `ReduceMean(x)` over `axis`, keeping it (axes as an attribute before opset 18, as an
    /// input since).
    pub fn mean_keep(&mut self, x: &str, axis: i64, what: &str) -> Result<String, String> {
        let keep = rbe_runtime::onnx::attributes::int_attr("keepdims", 1);
        if self.opset >= 18 {
            let axes = self.ints(&format!("{what}_axes"), &[axis])?;
            Ok(self.op("ReduceMean", &[x, &axes], what, vec![keep]))
        } else {
            let axes = rbe_runtime::onnx::attributes::ints_attr("axes", &[axis]);
            Ok(self.op("ReduceMean", &[x], what, vec![axes, keep]))
        }
    }

    /// `ReduceSum(x)` over the last axis, without keeping it (axes as an attribute before
    /// opset 13, as an input since).
    pub fn sum_last_axis(&mut self, x: &str, what: &str) -> Result<String, String> {
        let keep = rbe_runtime::onnx::attributes::int_attr("keepdims", 0);
        if self.opset >= 13 {
            let axes = self.ints(&format!("{what}_axes"), &[-1])?;
            Ok(self.op("ReduceSum", &[x, &axes], what, vec![keep]))
        } else {
            let axes = rbe_runtime::onnx::attributes::ints_attr("axes", &[-1]);
            Ok(self.op("ReduceSum", &[x], what, vec![axes, keep]))
        }
    }
}

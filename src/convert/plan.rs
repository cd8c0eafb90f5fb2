//! What a rewrite is: nodes to remove, the `ai.rbe` node that replaces them, and the
//! weights it needs encoded.

pub use rbe_runtime::onnx::attributes::{float_attr, int_attr};
use rbe_runtime::onnx::proto::{AttributeProto, NodeProto};

/// The custom-op domain of RBE nodes.
pub const RBE_DOMAIN: &str = "ai.rbe";

/// A weight in the codec's output-row layout: `rows` rows of `cols` values.
#[derive(Clone)]
pub struct Weight {
    /// The initializer it came from (for names and the report).
    pub source: String,
    /// Number of output rows.
    pub rows: usize,
    /// Length of each row (the reduction axis of a MatMul, the width of an embedding).
    pub cols: usize,
    /// `rows * cols` values, row-major.
    pub data: Vec<f32>,
    /// The value this weight multiplies (the layer's input), whose calibration statistics
    /// steer its encoding; `None` for embeddings and norms.
    pub activation: Option<String>,
}

/// One input of a planned node.
pub enum PlannedInput {
    /// An existing value, by name (an activation, or an initializer kept as it is).
    Value(String),
    /// A weight to encode; the node reads the encoded tensor.
    Encoded(Weight),
    /// A new initializer stored losslessly (e.g. a bias reshaped or scaled while folding).
    Raw(String, rbe_runtime::Tensor),
}

/// A planned replacement of one or more nodes by one `ai.rbe` node.
pub struct Rewrite {
    /// Indices of the nodes it replaces.
    pub removed: Vec<usize>,
    /// The new node's op type (`RbeMatMul`, `RbeGather`, `RbeLayerNorm`).
    pub op_type: &'static str,
    /// The new node's name.
    pub name: String,
    /// The new node's inputs.
    pub inputs: Vec<PlannedInput>,
    /// The value the new node produces (the last replaced node's output).
    pub output: String,
    /// Attributes of the new node.
    pub attributes: Vec<AttributeProto>,
}

/// Reads an INT attribute of a node, or `default`.
pub fn node_int(node: &NodeProto, name: &str, default: i64) -> i64 {
    rbe_runtime::ops::Attrs::new(node).int_or(name, default)
}

/// Row-major transpose of a `rows x cols` matrix.
pub fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

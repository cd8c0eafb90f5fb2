//! What a rewrite is: nodes to remove, the `ai.rbe` node that replaces them, and the
//! weights it needs encoded.

use std::hash::{Hash, Hasher};

pub use rbe_runtime::onnx::attributes::{float_attr, int_attr};
use rbe_runtime::onnx::proto::{AttributeProto, NodeProto};

/// The custom-op domain of RBE nodes.
pub const RBE_DOMAIN: &str = "ai.rbe";

/// A weight in the codec's output-row layout: `rows` rows of `cols` values. The plan keeps
/// where the values lie and a fingerprint of them; they are read when the weight is encoded,
/// so a conversion holds only the weights being encoded, not every planned one.
#[derive(Clone)]
pub struct Weight {
    /// The initializer it is read from (for names and the report).
    pub source: String,
    /// Number of output rows.
    pub rows: usize,
    /// Length of each row (the reduction axis of a MatMul, the width of an embedding).
    pub cols: usize,
    /// The initializer holds the transpose, `cols x rows` (a MatMul's `[K, N]` weight).
    pub transposed: bool,
    /// A factor folded into the values (Gemm's `alpha`).
    pub scale: f32,
    /// A hash of the values in this layout (equal weights share one encoding).
    pub fingerprint: u64,
    /// The value this weight multiplies (the layer's input), whose calibration statistics
    /// steer its encoding; `None` for embeddings and norms.
    pub activation: Option<String>,
}

impl Weight {
    /// The weight read from `source`, whose values as stored are `stored`.
    pub fn new(source: &str, stored: &[f32], [rows, cols]: [usize; 2], transposed: bool, scale: f32, activation: Option<String>) -> Self {
        let mut w = Weight { source: source.to_string(), rows, cols, transposed, scale, fingerprint: 0, activation };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (rows, cols).hash(&mut h);
        w.for_each_value(stored, |v| v.to_bits().hash(&mut h));
        w.fingerprint = h.finish();
        w
    }

    /// The values in this layout (row-major, scaled) from the initializer's stored values, or
    /// `None` when `stored` does not have the planned fingerprint.
    pub fn values(&self, stored: Vec<f32>) -> Option<Vec<f32>> {
        if stored.len() != self.rows * self.cols {
            return None;
        }
        let mut values = if self.transposed { transpose(&stored, self.cols, self.rows) } else { stored };
        if self.scale != 1.0 {
            values.iter_mut().for_each(|v| *v *= self.scale);
        }
        let same = Weight::new(&self.source, &values, [self.rows, self.cols], false, 1.0, None).fingerprint == self.fingerprint;
        same.then_some(values)
    }

    /// Calls `f` on each value in this layout, row by row, without building it.
    fn for_each_value(&self, stored: &[f32], mut f: impl FnMut(f32)) {
        if !self.transposed {
            stored.iter().for_each(|&v| f(v * self.scale));
            return;
        }
        for r in 0..self.rows {
            (0..self.cols).for_each(|c| f(stored[c * self.rows + r] * self.scale));
        }
    }
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

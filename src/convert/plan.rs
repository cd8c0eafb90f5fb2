//! What a rewrite is: nodes to remove, the `ai.rbe` node that replaces them, and the
//! weights it needs encoded.

use rayon::prelude::*;

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
    /// An embedding table a Gather reads.
    pub gathered: bool,
}

impl Weight {
    /// The weight read from `source`, whose values as stored are `stored`.
    pub fn new(source: &str, stored: &[f32], [rows, cols]: [usize; 2], transposed: bool, scale: f32, activation: Option<String>) -> Self {
        let mut w = Weight { source: source.to_string(), rows, cols, transposed, scale, fingerprint: 0, activation, gathered: false };
        w.fingerprint = w.fingerprint_of(stored);
        w
    }

    /// The same weight, marked as an embedding table a Gather reads.
    pub fn gathered(self) -> Self {
        Weight { gathered: true, ..self }
    }

    /// The values in this layout (row-major, scaled) from the initializer's stored values, or
    /// `None` when `stored` does not have the planned fingerprint.
    pub fn values(&self, stored: Vec<f32>) -> Option<Vec<f32>> {
        if stored.len() != self.rows * self.cols || self.fingerprint_of(&stored) != self.fingerprint {
            return None;
        }
        let mut values = if self.transposed { transpose(&stored, self.cols, self.rows) } else { stored };
        if self.scale != 1.0 {
            values.par_iter_mut().for_each(|v| *v *= self.scale);
        }
        Some(values)
    }

    /// A hash of `stored` read in this layout: a sum over the values of a mix of each one's
    /// position in the layout and its (scaled) bits. The sum does not depend on the order the
    /// values are visited in, so a weight and its stored transpose hash alike, in parallel.
    fn fingerprint_of(&self, stored: &[f32]) -> u64 {
        let (rows, cols, transposed) = (self.rows, self.cols, self.transposed);
        // A run of stored values is a layout row, or a layout column when stored transposed.
        let run = if transposed { rows } else { cols };
        let values = stored
            .par_chunks(run.max(1))
            .enumerate()
            .map(|(j, chunk)| {
                chunk.iter().enumerate().fold(0u64, |h, (i, &v)| {
                    let at = if transposed { i * cols + j } else { j * cols + i };
                    h.wrapping_add(mix(at as u64, (v * self.scale).to_bits()))
                })
            })
            .reduce(|| 0, u64::wrapping_add);
        mix(values, 0) ^ mix(rows as u64, cols as u64 as u32) ^ stored.len() as u64
    }
}

/// A 64-bit mix of a position and a value's bits (splitmix64's finalizer).
fn mix(at: u64, bits: u32) -> u64 {
    let mut z = at.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(bits);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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

/// Row-major transpose of a `rows x cols` matrix (in tiles, bands of output rows in parallel).
pub fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 32;
    let mut out = vec![0.0; data.len()];
    if data.is_empty() {
        return out;
    }
    out.par_chunks_mut(rows * TILE).enumerate().for_each(|(band, out)| {
        let c0 = band * TILE;
        let width = out.len() / rows;
        for r0 in (0..rows).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                let row = &data[r * cols + c0..][..width];
                for (c, &v) in row.iter().enumerate() {
                    out[c * rows + r] = v;
                }
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `rows x cols` matrix of distinct values.
    fn matrix(rows: usize, cols: usize) -> Vec<f32> {
        (0..rows * cols).map(|i| (i as f32 * 0.37).sin()).collect()
    }

    #[test]
    fn transpose_moves_every_value_across_tile_edges() {
        for (rows, cols) in [(1, 1), (3, 70), (33, 31), (64, 65)] {
            let a = matrix(rows, cols);
            let t = transpose(&a, rows, cols);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(t[c * rows + r], a[r * cols + c], "{rows}x{cols} at ({r}, {c})");
                }
            }
        }
    }

    #[test]
    fn a_weight_and_its_stored_transpose_share_a_fingerprint() {
        let (rows, cols) = (40, 35);
        let a = matrix(rows, cols);
        let plain = Weight::new("a", &a, [rows, cols], false, 1.0, None);
        let stored_t = Weight::new("b", &transpose(&a, rows, cols), [rows, cols], true, 1.0, None);
        assert_eq!(plain.fingerprint, stored_t.fingerprint);
        assert_eq!(stored_t.values(transpose(&a, rows, cols)), Some(a.clone()));
        // Scaled, swapped or reshaped values are other weights.
        let mut changed = a.clone();
        changed.swap(0, 1);
        assert_ne!(Weight::new("c", &changed, [rows, cols], false, 1.0, None).fingerprint, plain.fingerprint);
        assert_ne!(Weight::new("d", &a, [rows, cols], false, 2.0, None).fingerprint, plain.fingerprint);
        assert_ne!(Weight::new("e", &a, [cols, rows], false, 1.0, None).fingerprint, plain.fingerprint);
    }

    #[test]
    fn values_refuse_data_that_is_not_the_planned_weight() {
        let a = matrix(6, 5);
        let w = Weight::new("a", &a, [6, 5], false, 0.5, None);
        let mut other = a.clone();
        other[29] += 1.0;
        assert_eq!(w.values(other), None);
        assert_eq!(w.values(a[..29].to_vec()), None);
        let halved: Vec<f32> = a.iter().map(|v| v * 0.5).collect();
        assert_eq!(w.values(a), Some(halved));
    }
}

//! The rate of a conversion for rate–distortion plots: the converted model's bytes (every
//! byte, external data included) per floating-point weight of the original.

use std::path::Path;

use serde::{Deserialize, Serialize};

use rbe_runtime::graph::nested_graphs;
use rbe_runtime::onnx::proto::tensor_proto::DataType;
use rbe_runtime::onnx::proto::GraphProto;

/// A converted model's size against the original's weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// The converted model's bytes: its file, and the external data files an `.onnx` names.
    pub bytes: u64,
    /// Floating-point values in the original's initializers (nested graphs included).
    pub weights: u64,
    /// `8 * bytes / weights`.
    pub bits_per_weight: f64,
}

/// The rate of `converted` against `original`; `None` when the original is not an `.onnx`
/// with floating-point initializers or a file cannot be read.
pub fn measure(original: &Path, converted: &Path) -> Option<Rate> {
    let (model, _pages) = rbe_runtime::onnx::read_model_mapped(original).ok()?;
    let weights = float_values(model.graph.as_ref()?)?;
    let bytes = if rbe_runtime::container::is_container(converted).ok()? {
        std::fs::metadata(converted).ok()?.len()
    } else {
        let (model, _pages) = rbe_runtime::onnx::read_model_mapped(converted).ok()?;
        crate::convert::model_size(converted, &model)
    };
    (weights > 0).then(|| Rate { bytes, weights, bits_per_weight: bytes as f64 * 8.0 / weights as f64 })
}

/// Number of floating-point values in the initializers of `graph` and the graphs nested in
/// it; `None` when a shape overflows.
fn float_values(graph: &GraphProto) -> Option<u64> {
    const FLOATS: [DataType; 4] = [DataType::Float, DataType::Float16, DataType::Bfloat16, DataType::Double];
    let mut total = 0u64;
    for t in &graph.initializer {
        if FLOATS.iter().any(|&d| d as i32 == t.data_type) {
            let n = t.dims.iter().try_fold(1u64, |n, &d| n.checked_mul(u64::try_from(d).ok()?))?;
            total = total.checked_add(n)?;
        }
    }
    for node in &graph.node {
        for g in nested_graphs(node) {
            total = total.checked_add(float_values(g)?)?;
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_conversion_is_sized_against_the_original_weights() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let original = dir.join("gpt2_legacy_op17.onnx");
        let rate = measure(&original, &original).expect("an .onnx has a rate against itself");
        // fp32 weights against themselves: 32 bits each, and the graph on top.
        assert!(rate.bits_per_weight > 32.0, "{rate:?}");
        assert!(rate.weights > 10_000, "{rate:?}");
        assert_eq!(rate.bytes, std::fs::metadata(&original).unwrap().len());
        assert!(measure(&dir.join("missing.onnx"), &original).is_none());
    }
}

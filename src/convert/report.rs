//! The conversion report: one row per stored tensor, and totals.

use serde::Serialize;

use rbe_runtime::onnx::proto::TensorProto;
use rbe_runtime::DType;

use super::encode::EncodedWeight;

/// How one tensor is stored in the container.
#[derive(Clone, Debug, Serialize)]
pub struct TensorReport {
    /// Initializer name (for a shared tensor, every name it stands for, joined by " = ").
    pub name: String,
    /// `[rows, cols]` in the codec's output-row layout, or the raw tensor's shape.
    pub shape: Vec<usize>,
    /// `dense`, `dense+basis`, `sparse`, or `raw` (stored losslessly).
    pub mode: String,
    /// Bits per weight: every stored byte x 8 / number of weights.
    pub bits_per_weight: f64,
    /// RMSE / standard deviation of the original (0 for raw tensors).
    pub rel_rmse: f64,
    /// Stored bytes (before the container's zstd pass).
    pub bytes: usize,
    /// Number of weights.
    pub weights: usize,
    /// The tensor's type in the file it was imported from (GGUF imports: `Q4_K`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_type: Option<String>,
}

/// The whole conversion's figures.
#[derive(Clone, Debug, Serialize)]
pub struct ConvertReport {
    /// The preset or knobs used.
    pub preset: String,
    /// Per-tensor rows.
    pub tensors: Vec<TensorReport>,
    /// f32 bytes of the encoded weights (4 bytes per weight, counted once when shared).
    pub encoded_weights_f32_bytes: usize,
    /// Stored bytes of the encoded weights.
    pub encoded_weights_bytes: usize,
    /// `encoded_weights_f32_bytes / encoded_weights_bytes`.
    pub weights_ratio_vs_f32: f64,
    /// Size of the input `.onnx` (with its external data).
    pub input_file_bytes: u64,
    /// Size of the written `.rbeonnx`.
    pub output_file_bytes: u64,
    /// `input_file_bytes / output_file_bytes`.
    pub file_ratio: f64,
    /// What an accuracy-targeted allocation chose and measured, when one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocation: Option<crate::allocate::AllocationReport>,
}

/// Rows for the encoded tensors, then the raw initializers that remain.
pub fn tensor_reports(encoded: &[EncodedWeight], initializers: &[TensorProto]) -> Vec<TensorReport> {
    let mut rows: Vec<TensorReport> = encoded
        .iter()
        .map(|e| {
            let t = &e.encoded.tensor;
            TensorReport {
                name: e.sources.join(" = "),
                shape: vec![t.rows(), t.cols()],
                mode: e.encoded.stats.mode.clone(),
                bits_per_weight: e.encoded.stats.bits_per_weight,
                rel_rmse: e.encoded.stats.rel_rmse,
                bytes: e.encoded.stats.bytes,
                weights: t.rows() * t.cols(),
                source_type: None,
            }
        })
        .collect();
    for t in initializers.iter().filter(|t| !encoded.iter().any(|e| e.name == t.name)) {
        let weights: usize = t.dims.iter().map(|&d| d.max(0) as usize).product();
        let size = DType::from_onnx(t.data_type).map_or(0, |d| d.size());
        rows.push(TensorReport {
            name: t.name.clone(),
            shape: t.dims.iter().map(|&d| d.max(0) as usize).collect(),
            mode: "raw".into(),
            bits_per_weight: (size * 8) as f64,
            rel_rmse: 0.0,
            bytes: weights * size,
            weights,
            source_type: None,
        });
    }
    rows
}

impl ConvertReport {
    /// Builds the totals from the rows and the file sizes.
    pub fn new(preset: String, tensors: Vec<TensorReport>, input_file_bytes: u64, output_file_bytes: u64) -> Self {
        let encoded = tensors.iter().filter(|t| t.mode != "raw");
        let (f32_bytes, bytes) = encoded.fold((0, 0), |(a, b), t| (a + t.weights * 4, b + t.bytes));
        Self {
            preset,
            weights_ratio_vs_f32: f32_bytes as f64 / bytes.max(1) as f64,
            encoded_weights_f32_bytes: f32_bytes,
            encoded_weights_bytes: bytes,
            file_ratio: input_file_bytes as f64 / output_file_bytes.max(1) as f64,
            input_file_bytes,
            output_file_bytes,
            tensors,
            allocation: None,
        }
    }

    /// The human table printed at the end of a conversion.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<44} {:>14} {:>12} {:>7} {:>9} {:>10}\n",
            "tensor", "shape", "mode", "bpw", "rel_rmse", "bytes"
        );
        for t in &self.tensors {
            let shape: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
            let chars: Vec<char> = t.name.chars().collect();
            let name: String = if chars.len() > 44 {
                std::iter::once('…').chain(chars[chars.len() - 43..].iter().copied()).collect()
            } else {
                t.name.clone()
            };
            out += &format!(
                "{:<44} {:>14} {:>12} {:>7.3} {:>9.5} {:>10}\n",
                name,
                shape.join("x"),
                t.mode,
                t.bits_per_weight,
                t.rel_rmse,
                t.bytes
            );
        }
        out += &format!(
            "preset {}: encoded weights {} -> {} bytes ({:.2}x vs f32); file {} -> {} bytes ({:.2}x vs the input file)\n",
            self.preset,
            self.encoded_weights_f32_bytes,
            self.encoded_weights_bytes,
            self.weights_ratio_vs_f32,
            self.input_file_bytes,
            self.output_file_bytes,
            self.file_ratio
        );
        if let Some(a) = &self.allocation {
            out += &a.summary();
        }
        out
    }
}

/// The model file's size plus every external data file it references.
pub fn model_size(path: &std::path::Path, model: &rbe_runtime::onnx::proto::ModelProto) -> u64 {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let mut files: Vec<&str> = model
        .graph
        .iter()
        .flat_map(|g| g.initializer.iter())
        .flat_map(|t| t.external_data.iter())
        .filter(|e| e.key == "location")
        .map(|e| e.value.as_str())
        .collect();
    files.sort_unstable();
    files.dedup();
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    size(path) + files.iter().map(|f| size(&dir.join(f))).sum::<u64>()
}

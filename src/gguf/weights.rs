//! Takes tensors out of a GGUF file by name as f32, checking their shapes, and remembers each
//! one's source type for the report.

use rbe_runtime::Tensor;

use super::error::GgufError;
use super::reader::GgufFile;

/// One imported tensor: its GGUF name, ggml type and shape (outermost first).
#[derive(Clone, Debug, serde::Serialize)]
pub struct SourceTensor {
    /// The GGUF tensor name.
    pub name: String,
    /// Its ggml type (`Q4_K`...).
    pub source_type: &'static str,
    /// Its shape, outermost first.
    pub shape: Vec<usize>,
}

/// Dequantizing access to a file's tensors.
pub struct Weights<'f> {
    file: &'f GgufFile,
    /// Every tensor taken so far.
    pub taken: Vec<SourceTensor>,
}

impl<'f> Weights<'f> {
    /// Wraps an opened file.
    pub fn new(file: &'f GgufFile) -> Self {
        Self { file, taken: Vec::new() }
    }

    /// Whether the file has tensor `name`.
    pub fn has(&self, name: &str) -> bool {
        self.file.tensor(name).is_some()
    }

    /// Tensor `name` as f32 with `shape` (outermost first), or an error naming what differs.
    pub fn get(&mut self, name: &str, shape: &[usize]) -> Result<Tensor, GgufError> {
        let info = self.file.tensor(name).ok_or_else(|| GgufError::Model(format!("tensor '{name}' is missing")))?;
        if info.shape() != shape {
            return Err(GgufError::Model(format!("tensor '{name}' has shape {:?}, expected {shape:?}", info.shape())));
        }
        let values = super::dequant::dequantize(info.ggml_type, self.file.data(info))?;
        self.taken.push(SourceTensor { name: name.to_string(), source_type: info.ggml_type.name(), shape: shape.to_vec() });
        Tensor::from_vec(shape, values).map_err(|e| GgufError::Model(format!("tensor '{name}': {e}")))
    }

    /// Tensor `name` if present (see [`get`](Self::get)).
    pub fn optional(&mut self, name: &str, shape: &[usize]) -> Result<Option<Tensor>, GgufError> {
        if self.has(name) {
            self.get(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Undoes llama.cpp's interleaving of rotary pairs in Q/K projection rows (`[heads·dim, in]`
/// or a `[heads·dim]` bias): GGUF row `h·dim + 2i + t` is Hugging Face row `h·dim + t·dim/2 + i`.
pub fn deinterleave_rows(t: &Tensor, heads: usize) -> Result<Tensor, GgufError> {
    let a = t.as_f32().map_err(|e| GgufError::Model(e.to_string()))?;
    let rows = t.shape()[0];
    let cols = t.len() / rows.max(1);
    let dim = rows / heads;
    let src: Vec<f32> = a.iter().copied().collect();
    let mut out = vec![0f32; src.len()];
    for h in 0..heads {
        for i in 0..dim / 2 {
            for two in 0..2 {
                let from = (h * dim + 2 * i + two) * cols;
                let to = (h * dim + two * dim / 2 + i) * cols;
                out[to..to + cols].copy_from_slice(&src[from..from + cols]);
            }
        }
    }
    Tensor::from_vec(t.shape(), out).map_err(|e| GgufError::Model(e.to_string()))
}

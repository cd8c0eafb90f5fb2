//! The typed error of every GGUF input path.

/// What can be wrong with a GGUF file or the model it describes.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened or mapped.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file (magic {0:02x?}, expected \"GGUF\")")]
    Magic([u8; 4]),
    /// A GGUF version this reader does not handle.
    #[error("GGUF version {0} is not supported (2 and 3 are)")]
    Version(u32),
    /// The file ends before a structure it announces.
    #[error("truncated GGUF: {what} needs {need} bytes at offset {at}, the file has {len}")]
    Truncated {
        /// What was being read.
        what: String,
        /// Its offset.
        at: u64,
        /// Bytes it needs.
        need: u64,
        /// The file length.
        len: u64,
    },
    /// A count, length or size beyond what the file or a sane model can hold.
    #[error("GGUF {what}: {value} is beyond the limit {limit}")]
    Limit {
        /// What was counted.
        what: String,
        /// The value found.
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// Structurally wrong content (bad type code, bad UTF-8, misaligned offset...).
    #[error("malformed GGUF: {0}")]
    Malformed(String),
    /// A tensor type this importer does not dequantize.
    #[error("tensor '{name}': ggml type {code} ({label}) is not supported")]
    TensorType {
        /// The tensor.
        name: String,
        /// Its ggml type code.
        code: u32,
        /// The type's name, when known.
        label: &'static str,
    },
    /// Metadata missing or inconsistent for the model family.
    #[error("model: {0}")]
    Model(String),
}

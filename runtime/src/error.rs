//! The runtime's typed error: every path fed by a file, a graph or a user input returns one.

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file's path as given.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The bytes are not a decodable ONNX protobuf.
    #[error("not a valid ONNX model: {0}")]
    Decode(String),
    /// The model decodes but is not a graph we can build (dangling names, bad tensors, cycles...).
    #[error("invalid model: {0}")]
    Model(String),
    /// No kernel is registered for this operator at this opset.
    #[error("unsupported operator '{op_type}' (domain '{domain}', opset {opset}) at node '{node}'")]
    UnknownOp {
        /// Operator domain ("" is the default ONNX domain).
        domain: String,
        /// Operator type, e.g. `MatMul`.
        op_type: String,
        /// The opset version the model imports for this domain.
        opset: i64,
        /// The node's name.
        node: String,
    },
    /// A caller-supplied input is missing, misnamed, of the wrong dtype or rank, or out of range.
    #[error("bad input: {0}")]
    Input(String),
    /// A kernel failed; raised inside kernels, wrapped with the node's name by the executor.
    #[error("{0}")]
    Op(String),
    /// A node failed while running, with the node it happened at.
    #[error("node '{node}' ({op_type}): {message}")]
    Node {
        /// The node's name.
        node: String,
        /// The node's operator type.
        op_type: String,
        /// What went wrong.
        message: String,
    },
    /// A `.rbeonnx` container is corrupt, truncated, or of an unknown version.
    #[error("bad container: {0}")]
    Container(String),
}

/// The runtime's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for a kernel error: `return Err(op_err(format!(...)))`.
pub fn op_err(message: impl Into<String>) -> Error {
    Error::Op(message.into())
}

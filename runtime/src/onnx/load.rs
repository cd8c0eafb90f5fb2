//! Reading a `ModelProto` from a file without copying its bytes twice.

use std::path::Path;

use bytes::Bytes;
use prost::Message;

use crate::error::{Error, Result};
use crate::onnx::proto::ModelProto;

/// Reads and decodes an `.onnx` file. The file is memory-mapped and tensor `raw_data` fields
/// borrow from the mapping rather than being copied.
pub fn read_model(path: &Path) -> Result<ModelProto> {
    let io = |source| Error::Io { path: path.display().to_string(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: the mapping is read-only; a file truncated underneath us is the same hazard every
    // mmap-based model loader accepts, and we never hand out the mapping itself.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    read_model_bytes(Bytes::from_owner(map))
}

/// Decodes a `ModelProto` from bytes; `raw_data` fields share the buffer.
pub fn read_model_bytes(bytes: Bytes) -> Result<ModelProto> {
    if bytes.is_empty() {
        return Err(Error::Decode("the file is empty".into()));
    }
    let model = ModelProto::decode(bytes).map_err(|e| Error::Decode(e.to_string()))?;
    if model.graph.is_none() {
        return Err(Error::Decode("the model has no graph".into()));
    }
    Ok(model)
}

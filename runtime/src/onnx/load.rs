//! Reading a `ModelProto` from a file without copying its bytes twice.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{Mmap, UncheckedAdvice};
use prost::Message;

use crate::error::{Error, Result};
use crate::onnx::proto::ModelProto;

/// Reads and decodes an `.onnx` file. The file is memory-mapped and tensor `raw_data` fields
/// borrow from the mapping rather than being copied.
pub fn read_model(path: &Path) -> Result<ModelProto> {
    read_model_mapped(path).map(|(model, _)| model)
}

/// [`read_model`], also handing back the mapping the model's `raw_data` borrow from, so a
/// reader can give back the pages of each weight once it has read it ([`FileMap::release`]).
pub fn read_model_mapped(path: &Path) -> Result<(ModelProto, FileMap)> {
    let map = FileMap::open(path)?;
    Ok((read_model_bytes(Bytes::from_owner(map.clone()))?, map))
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

/// A read-only mapping of a model file, shared with the `raw_data` of the model decoded from it.
#[derive(Clone)]
pub struct FileMap(Arc<Mmap>);

impl AsRef<[u8]> for FileMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl FileMap {
    /// Maps the file at `path`, read-only.
    pub fn open(path: &Path) -> Result<FileMap> {
        let io = |source| Error::Io { path: path.display().to_string(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the mapping is read-only; a file truncated underneath us is the same hazard
        // every mmap-based model loader accepts, and we never hand out the mapping itself.
        Ok(FileMap(Arc::new(unsafe { Mmap::map(&file) }.map_err(io)?)))
    }

    /// Drops the pages under `bytes` from this process's resident memory when `bytes` lie in
    /// this mapping (anything else is left alone); a later read faults them in from the file
    /// again, unchanged. A reader that touches each weight once then keeps the weights it is
    /// working on resident, not the whole file.
    pub fn release(&self, bytes: &[u8]) {
        let base = self.0.as_ptr() as usize;
        let start = bytes.as_ptr() as usize;
        let Some(offset) = start.checked_sub(base) else { return };
        if bytes.is_empty() || offset + bytes.len() > self.0.len() {
            return;
        }
        // SAFETY: the mapping is private, read-only and file-backed, so MADV_DONTNEED only
        // evicts pages that the kernel reads back from the file on the next access: every
        // slice into the mapping keeps seeing the same bytes. A failure leaves the pages
        // resident, which is harmless.
        let _ = unsafe { self.0.unchecked_advise_range(UncheckedAdvice::DontNeed, offset, bytes.len()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_pages_read_back_the_same_bytes() {
        let path = std::env::temp_dir().join(format!("rbe-filemap-{}.bin", std::process::id()));
        let data: Vec<u8> = (0..3 * 4096 + 17).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let map = FileMap(Arc::new(unsafe { Mmap::map(&std::fs::File::open(&path).unwrap()) }.unwrap()));
        let bytes = Bytes::from_owner(map.clone());
        map.release(&bytes[100..9000]);
        map.release(&data[..]); // not in the mapping: ignored
        assert_eq!(&bytes[..], &data[..]);
        std::fs::remove_file(&path).unwrap();
    }
}

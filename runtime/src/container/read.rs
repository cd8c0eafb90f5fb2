//! Opening a container: verify, unpack all sections in parallel, decode the graph.

use std::path::Path;

use bytes::Bytes;
use rayon::prelude::*;

use crate::container::header::{Header, MAGIC};
use crate::error::{Error, Result};
use crate::onnx::{self, proto::ModelProto};

/// An unpacked container: the model and its data sections.
pub struct Container {
    /// The ONNX model of section 0.
    pub model: ModelProto,
    /// Unpacked sections, indexed as in the file (index 0 is the graph's bytes).
    pub sections: Vec<Bytes>,
}

/// True when the file starts with the container magic.
pub fn is_container(path: &Path) -> Result<bool> {
    use std::io::Read;
    let io = |source| Error::Io { path: path.display().to_string(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut magic = [0u8; 8];
    let n = file.read(&mut magic).map_err(io)?;
    Ok(n == 8 && &magic == MAGIC)
}

/// Reads, verifies (header and per-section checksums) and unpacks a container file.
pub fn read_container(path: &Path) -> Result<Container> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    unpack(&bytes)
}

/// Verifies and unpacks a container held in memory.
pub fn unpack(bytes: &[u8]) -> Result<Container> {
    let header = Header::parse(bytes)?;
    let sections: Vec<Bytes> = header
        .sections
        .par_iter()
        .enumerate()
        .map(|(i, s)| {
            // Header::parse checked that the payload lies inside the file.
            let stored = &bytes[s.offset as usize..(s.offset + s.stored_len) as usize];
            if crc32fast::hash(stored) != s.stored_crc {
                return Err(Error::Container(format!("section {i} checksum mismatch (the file is corrupt)")));
            }
            let raw = zstd::bulk::decompress(stored, s.raw_len as usize)
                .map_err(|e| Error::Container(format!("section {i} does not unpack: {e}")))?;
            if raw.len() as u64 != s.raw_len || crc32fast::hash(&raw) != s.raw_crc {
                return Err(Error::Container(format!("section {i} unpacked to the wrong bytes")));
            }
            Ok(Bytes::from(raw))
        })
        .collect::<Result<_>>()?;
    let model = onnx::read_model_bytes(sections[0].clone())
        .map_err(|e| Error::Container(format!("graph section: {e}")))?;
    Ok(Container { model, sections })
}

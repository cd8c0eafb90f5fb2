//! Opening a container: map it, verify, unpack the packed sections in parallel, decode the
//! graph.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use bytes::Bytes;
use rayon::prelude::*;

use crate::container::header::{Header, Packing, SectionEntry, MAGIC};
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
    let io = |source| Error::Io { path: path.display().to_string(), source };
    let mut file = File::open(path).map_err(io)?;
    let mut magic = [0u8; 8];
    let n = file.read(&mut magic).map_err(io)?;
    Ok(n == 8 && &magic == MAGIC)
}

/// Reads and verifies (header and per-section checksums) a container file. The file is
/// memory-mapped: stored sections are used where they lie, zstd sections unpack from the
/// mapping in parallel.
pub fn read_container(path: &Path) -> Result<Container> {
    let io = |source| Error::Io { path: path.display().to_string(), source };
    let file = File::open(path).map_err(io)?;
    // SAFETY: the mapping is read-only; a file truncated underneath us is the same hazard every
    // mmap-based model loader accepts.
    let map = Bytes::from_owner(unsafe { memmap2::Mmap::map(&file) }.map_err(io)?);
    let header = Header::parse(&map)?;
    let sections = header
        .sections
        .par_iter()
        .enumerate()
        .map(|(i, s)| {
            let range = s.offset as usize..(s.offset + s.stored_len) as usize;
            open_section(i, s, &map[range.clone()], || map.slice(range))
        })
        .collect::<Result<_>>()?;
    with_model(sections)
}

/// Verifies and unpacks a container held in memory.
pub fn unpack(bytes: &[u8]) -> Result<Container> {
    let header = Header::parse(bytes)?;
    let sections = header
        .sections
        .par_iter()
        .enumerate()
        .map(|(i, s)| {
            // Header::parse checked that the payload lies inside the file.
            let stored = &bytes[s.offset as usize..(s.offset + s.stored_len) as usize];
            open_section(i, s, stored, || Bytes::copy_from_slice(stored))
        })
        .collect::<Result<_>>()?;
    with_model(sections)
}

/// Checks section `i` from its stored bytes and returns its contents: `in_place` (the stored
/// bytes themselves) for a stored section, the unpacked bytes for a zstd one.
fn open_section(i: usize, s: &SectionEntry, stored: &[u8], in_place: impl FnOnce() -> Bytes) -> Result<Bytes> {
    if crc32fast::hash(stored) != s.stored_crc {
        return Err(Error::Container(format!("section {i} checksum mismatch (the file is corrupt)")));
    }
    if s.packing == Packing::Stored {
        return Ok(in_place());
    }
    let raw = zstd::bulk::decompress(stored, s.raw_len as usize)
        .map_err(|e| Error::Container(format!("section {i} does not unpack: {e}")))?;
    if raw.len() as u64 != s.raw_len || crc32fast::hash(&raw) != s.raw_crc {
        return Err(Error::Container(format!("section {i} unpacked to the wrong bytes")));
    }
    Ok(Bytes::from(raw))
}

/// Decodes the graph of section 0.
fn with_model(sections: Vec<Bytes>) -> Result<Container> {
    let model = onnx::read_model_bytes(sections[0].clone())
        .map_err(|e| Error::Container(format!("graph section: {e}")))?;
    Ok(Container { model, sections })
}

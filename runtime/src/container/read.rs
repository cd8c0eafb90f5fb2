//! Opening a container: verify, unpack the sections in parallel, decode the graph.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use bytes::Bytes;
use rayon::prelude::*;

use crate::container::header::{Header, SectionEntry, MAGIC, MAX_HEADER_LEN};
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

/// Reads, verifies (header and per-section checksums) and unpacks a container file. Sections
/// are read and unpacked one at a time per thread, so the packed file is never held whole.
pub fn read_container(path: &Path) -> Result<Container> {
    let io = |source| Error::Io { path: path.display().to_string(), source };
    let mut file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut prefix = Vec::with_capacity(MAX_HEADER_LEN.min(file_len as usize));
    (&mut file).take(MAX_HEADER_LEN as u64).read_to_end(&mut prefix).map_err(io)?;
    let header = Header::parse_prefix(&prefix, file_len)?;
    drop(prefix);
    // One contiguous run of sections per thread, read through one reused buffer: the packed
    // bytes never pile up, and no large buffer is freed between the long-lived unpacked ones
    // (which would leave the allocator holding holes). Freeing the buffers at the end also
    // raises glibc's mmap threshold past KV-cache-sized buffers, which steps then recycle
    // instead of mapping fresh pages (see BENCHMARKS.md, "Memory").
    let per_thread = header.sections.len().div_ceil(rayon::current_num_threads().max(1));
    let indexed: Vec<(usize, &SectionEntry)> = header.sections.iter().enumerate().collect();
    let runs = indexed
        .par_chunks(per_thread)
        .map(|run| {
            let mut file = File::open(path).map_err(io)?;
            let mut stored = Vec::new();
            run.iter()
                .map(|&(i, s)| {
                    stored.resize(s.stored_len as usize, 0);
                    file.seek(SeekFrom::Start(s.offset)).map_err(io)?;
                    file.read_exact(&mut stored).map_err(io)?;
                    unpack_section(i, s, &stored)
                })
                .collect::<Result<Vec<Bytes>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    let sections = runs.into_iter().flatten().collect();
    with_model(sections)
}

/// Verifies and unpacks a container held in memory.
pub fn unpack(bytes: &[u8]) -> Result<Container> {
    let header = Header::parse(bytes)?;
    let sections = header
        .sections
        .par_iter()
        .enumerate()
        // Header::parse checked that the payload lies inside the file.
        .map(|(i, s)| unpack_section(i, s, &bytes[s.offset as usize..(s.offset + s.stored_len) as usize]))
        .collect::<Result<_>>()?;
    with_model(sections)
}

/// Checks and unpacks section `i` from its packed bytes.
fn unpack_section(i: usize, s: &SectionEntry, stored: &[u8]) -> Result<Bytes> {
    if crc32fast::hash(stored) != s.stored_crc {
        return Err(Error::Container(format!("section {i} checksum mismatch (the file is corrupt)")));
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

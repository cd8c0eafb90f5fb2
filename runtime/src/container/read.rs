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

/// Reads, verifies (header and per-section checksums) and unpacks a container file. Each
/// section is streamed from the file through the decoder straight into its unpacked buffer,
/// so the packed bytes are never held in memory.
pub fn read_container(path: &Path) -> Result<Container> {
    let io = |source| Error::Io { path: path.display().to_string(), source };
    let mut file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut prefix = Vec::with_capacity(MAX_HEADER_LEN.min(file_len as usize));
    (&mut file).take(MAX_HEADER_LEN as u64).read_to_end(&mut prefix).map_err(io)?;
    let header = Header::parse_prefix(&prefix, file_len)?;
    drop(prefix);
    let sections = header
        .sections
        .par_iter()
        .enumerate()
        .map(|(i, s)| {
            let mut file = File::open(path).map_err(io)?;
            file.seek(SeekFrom::Start(s.offset)).map_err(io)?;
            stream_section(i, s, file.take(s.stored_len))
        })
        .collect::<Result<_>>()?;
    with_model(sections)
}

/// A reader that hashes every byte read through it.
struct Hashing<R> {
    inner: R,
    crc: crc32fast::Hasher,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

/// Unpacks section `i` from its packed bytes, read from `stored` (exactly `stored_len` bytes),
/// checking both checksums.
fn stream_section(i: usize, s: &SectionEntry, stored: impl Read) -> Result<Bytes> {
    let mut stored = Hashing { inner: stored, crc: crc32fast::Hasher::new() };
    let mut raw = vec![0u8; s.raw_len as usize];
    let unpacked = zstd::stream::read::Decoder::new(&mut stored).and_then(|mut d| {
        d.read_exact(&mut raw)?;
        Ok(d.read(&mut [0u8])? == 0)
    });
    // Hash what the decoder left unread, so a corrupt payload reports as such.
    let drained = std::io::copy(&mut stored, &mut std::io::sink());
    if drained.is_err() || stored.crc.finalize() != s.stored_crc {
        return Err(Error::Container(format!("section {i} checksum mismatch (the file is corrupt)")));
    }
    match unpacked {
        Err(e) => Err(Error::Container(format!("section {i} does not unpack: {e}"))),
        Ok(ends) if !ends || crc32fast::hash(&raw) != s.raw_crc => {
            Err(Error::Container(format!("section {i} unpacked to the wrong bytes")))
        }
        Ok(_) => Ok(Bytes::from(raw)),
    }
}

/// Verifies and unpacks a container held in memory.
pub fn unpack(bytes: &[u8]) -> Result<Container> {
    let header = Header::parse(bytes)?;
    let sections = header
        .sections
        .par_iter()
        .enumerate()
        // Header::parse checked that the payload lies inside the file.
        .map(|(i, s)| stream_section(i, s, &bytes[s.offset as usize..(s.offset + s.stored_len) as usize]))
        .collect::<Result<_>>()?;
    with_model(sections)
}

/// Decodes the graph of section 0.
fn with_model(sections: Vec<Bytes>) -> Result<Container> {
    let model = onnx::read_model_bytes(sections[0].clone())
        .map_err(|e| Error::Container(format!("graph section: {e}")))?;
    Ok(Container { model, sections })
}

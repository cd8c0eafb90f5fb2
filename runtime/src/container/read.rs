//! Opening a container: map it, verify, unpack the packed sections in parallel, decode the
//! graph.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use bytes::Bytes;
use rayon::prelude::*;

use crate::container::header::{Header, Packing, SectionEntry, MAGIC};
use crate::error::{Error, Result};
use crate::onnx::{self, proto::ModelProto, FileMap};

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

/// Stored sections of at least this many bytes (encoded weights) are copied out of the file
/// mapping into memory that may use transparent huge pages ([`huge_copy`]).
const HUGE_COPY_MIN: usize = 2 << 20;

/// Reads and verifies (header and per-section checksums) a container file. The file is
/// memory-mapped: small stored sections are used where they lie, large ones copied into huge
/// pages when the kernel has them enabled (their file pages then leave the resident set), zstd
/// sections unpack from the mapping in parallel.
pub fn read_container(path: &Path) -> Result<Container> {
    let pages = FileMap::open(path)?;
    let map = Bytes::from_owner(pages.clone());
    let copy_min = if huge_pages_enabled() { HUGE_COPY_MIN } else { usize::MAX };
    let header = Header::parse(&map)?;
    let sections = header
        .sections
        .par_iter()
        .enumerate()
        .map(|(i, s)| {
            let range = s.offset as usize..(s.offset + s.stored_len) as usize;
            let stored = &map[range.clone()];
            open_section(i, s, stored, || match (stored.len() >= copy_min).then(|| huge_copy(stored)).flatten() {
                Some(copy) => {
                    pages.release(stored);
                    copy
                }
                None => map.slice(range),
            })
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

/// Whether the kernel may give an advised mapping transparent huge pages (THP not `never`;
/// Linux only).
fn huge_pages_enabled() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").is_ok_and(|s| !s.contains("[never]"))
}

/// `bytes` copied into an anonymous mapping advised to use transparent huge pages (Linux
/// `MADV_HUGEPAGE`, honoured in THP's default `madvise` mode): the kernels stream weights
/// through one TLB entry per 2 MiB instead of per 4 KiB page of the file's page cache. `None`
/// if the mapping cannot be made (the caller keeps the file's bytes).
fn huge_copy(bytes: &[u8]) -> Option<Bytes> {
    let mut map = memmap2::MmapMut::map_anon(bytes.len()).ok()?;
    // Advice only: without it the copy still works, on small pages.
    #[cfg(target_os = "linux")]
    let _ = map.advise(memmap2::Advice::HugePage);
    map.copy_from_slice(bytes);
    Some(Bytes::from_owner(map.make_read_only().ok()?))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_page_copy_holds_the_same_bytes() {
        let bytes: Vec<u8> = (0..(HUGE_COPY_MIN + 12345) as u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
        let copy = huge_copy(&bytes).expect("an anonymous mapping");
        assert_eq!(copy.len(), bytes.len());
        assert!(copy[..] == bytes[..], "the copy differs");
        assert_ne!(copy.as_ptr(), bytes.as_ptr());
    }
}

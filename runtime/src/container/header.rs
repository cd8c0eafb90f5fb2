//! The container header: magic, version, section table, and its checksum.

use crate::error::{Error, Result};

/// The first eight bytes of every `.rbeonnx` file.
pub const MAGIC: &[u8; 8] = b"RBEONNX\0";
/// The container format version this runtime writes (it reads 1 and 2; version 2 added
/// sections stored as they are, see [`Packing`]).
pub const FORMAT_VERSION: u32 = 2;
/// Upper bound on the number of sections (guards the header allocation).
pub const MAX_SECTIONS: usize = 4096;
const ENTRY_LEN: usize = 40;
/// Largest unpacked section accepted (64 GiB).
const MAX_RAW_LEN: u64 = 1 << 36;

/// What a section holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionKind {
    /// The ONNX `ModelProto`.
    Graph,
    /// Raw tensor bytes referenced by the graph's initializers.
    Data,
}

/// How a section's bytes are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packing {
    /// A zstd frame, unpacked at load.
    Zstd,
    /// The bytes as they are, at an offset aligned to [`STORED_ALIGN`]: a reader maps the file
    /// and uses them where they lie (version 2).
    Stored,
}

/// File offset alignment of [`Packing::Stored`] sections (a page).
pub const STORED_ALIGN: u64 = 4096;

/// One entry of the section table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionEntry {
    /// What the section holds.
    pub kind: SectionKind,
    /// How its bytes are stored.
    pub packing: Packing,
    /// Byte offset of the packed payload from the start of the file.
    pub offset: u64,
    /// Packed (zstd) length.
    pub stored_len: u64,
    /// Unpacked length.
    pub raw_len: u64,
    /// CRC-32 of the packed payload.
    pub stored_crc: u32,
    /// CRC-32 of the unpacked bytes.
    pub raw_crc: u32,
}

/// The parsed header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The section table, section 0 first.
    pub sections: Vec<SectionEntry>,
}

impl Header {
    /// Size of the encoded header for `n` sections.
    pub fn encoded_len(n: usize) -> usize {
        16 + ENTRY_LEN * n + 4
    }

    /// Encodes the header, including its checksum.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::encoded_len(self.sections.len()));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.sections.len() as u32).to_le_bytes());
        for s in &self.sections {
            let kind: u32 = match s.kind {
                SectionKind::Graph => 0,
                SectionKind::Data => 1,
            };
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&s.stored_crc.to_le_bytes());
            out.extend_from_slice(&s.offset.to_le_bytes());
            out.extend_from_slice(&s.stored_len.to_le_bytes());
            out.extend_from_slice(&s.raw_len.to_le_bytes());
            out.extend_from_slice(&s.raw_crc.to_le_bytes());
            let packing: u32 = match s.packing {
                Packing::Zstd => 0,
                Packing::Stored => 1,
            };
            out.extend_from_slice(&packing.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses and validates the header of the file `bytes`: magic, version, checksum, every
    /// section lying inside the file after the previous one, and the padding between them
    /// all zero (it is covered by no checksum).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let file_len = bytes.len() as u64;
        let bad = |m: String| Error::Container(m);
        if bytes.len() < 20 || &bytes[..8] != MAGIC {
            return Err(bad("not an .rbeonnx file (bad magic or too short)".into()));
        }
        let version = u32_at(bytes, 8);
        if !(1..=FORMAT_VERSION).contains(&version) {
            return Err(bad(format!(
                "format version {version} is not supported (this build reads versions 1 to {FORMAT_VERSION})"
            )));
        }
        let n = u32_at(bytes, 12) as usize;
        if n == 0 || n > MAX_SECTIONS {
            return Err(bad(format!("implausible section count {n}")));
        }
        let header_len = Self::encoded_len(n);
        if bytes.len() < header_len {
            return Err(bad(format!("truncated header: file has {file_len} bytes")));
        }
        let stored = u32_at(bytes, header_len - 4);
        if crc32fast::hash(&bytes[..header_len - 4]) != stored {
            return Err(bad("header checksum mismatch (the file is corrupt)".into()));
        }
        let mut sections = Vec::with_capacity(n);
        for i in 0..n {
            let at = 16 + ENTRY_LEN * i;
            let kind = match u32_at(bytes, at) {
                0 => SectionKind::Graph,
                1 => SectionKind::Data,
                k => return Err(bad(format!("section {i} has unknown kind {k}"))),
            };
            let packing = match (version, u32_at(bytes, at + 36)) {
                (_, 0) => Packing::Zstd,
                (2.., 1) => Packing::Stored,
                (_, p) => return Err(bad(format!("section {i} has unknown packing {p}"))),
            };
            let entry = SectionEntry {
                kind,
                packing,
                stored_crc: u32_at(bytes, at + 4),
                offset: u64_at(bytes, at + 8),
                stored_len: u64_at(bytes, at + 16),
                raw_len: u64_at(bytes, at + 24),
                raw_crc: u32_at(bytes, at + 32),
            };
            let end = entry.offset.checked_add(entry.stored_len);
            if entry.offset < header_len as u64 || end.is_none_or(|e| e > file_len) {
                return Err(bad(format!(
                    "section {i} [{}, +{}) lies outside the file ({} bytes): truncated?",
                    entry.offset,
                    entry.stored_len,
                    file_len
                )));
            }
            if entry.raw_len > MAX_RAW_LEN || entry.raw_len > entry.stored_len.saturating_mul(4096) + 4096 {
                return Err(bad(format!("section {i} claims an implausible size {}", entry.raw_len)));
            }
            let stored_as_is = entry.raw_len == entry.stored_len && entry.raw_crc == entry.stored_crc;
            if packing == Packing::Stored && (!stored_as_is || !entry.offset.is_multiple_of(STORED_ALIGN)) {
                return Err(bad(format!("section {i} is stored as is but its sizes, checksums or alignment disagree")));
            }
            sections.push(entry);
        }
        if sections[0].kind != SectionKind::Graph || sections[1..].iter().any(|s| s.kind != SectionKind::Data) {
            return Err(bad("section 0 must be the graph and the others data".into()));
        }
        let mut end = header_len as u64;
        for (i, s) in sections.iter().enumerate() {
            let gap = bytes.get(end as usize..s.offset as usize);
            if !gap.is_some_and(|g| g.iter().all(|&b| b == 0)) {
                return Err(bad(format!("section {i} overlaps the one before or follows non-zero padding (the file is corrupt)")));
            }
            end = s.offset + s.stored_len;
        }
        Ok(Self { sections })
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

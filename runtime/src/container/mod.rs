//! The `.rbeonnx` container: a versioned, checksummed file of sections, each zstd-packed or
//! (version 2) stored as it is at a page-aligned offset, to be used in place from a mapping.
//!
//! ```text
//! offset  size      field
//! 0       8         magic "RBEONNX\0"
//! 8       4         format version (u32 LE): 2 (1 is still read: no stored sections)
//! 12      4         section count n (u32 LE), 1..=MAX_SECTIONS
//! 16      40 * n    section entries (see `SectionEntry`)
//! 16+40n  4         CRC-32 of bytes [0, 16+40n)
//! ...               section payloads (zstd frames, or bytes as they are), at the offsets the
//!                   entries give
//! ```
//! Section 0 holds an ONNX `ModelProto` (graph, custom `ai.rbe` nodes, opset imports). Its
//! initializers keep their bytes in the data sections through ONNX's own external-data
//! fields, with `location = "@rbe/<section>"`, `offset` and `length` inside that section's
//! unpacked bytes. Unpacking section 0 with `zstd -d` (after cutting it out) or
//! `rbe-convert --unpack-graph` gives a model any ONNX tool opens.

mod header;
mod read;

pub use header::{Header, Packing, SectionEntry, SectionKind, FORMAT_VERSION, MAGIC, MAX_SECTIONS, STORED_ALIGN};
pub use read::{is_container, read_container, unpack, Container};

/// The external-data location prefix that points into a container section.
pub const SECTION_LOCATION_PREFIX: &str = "@rbe/";

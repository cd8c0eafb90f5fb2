//! External tensor data (`data_location = EXTERNAL`): safe path resolution and bounded reads.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::onnx::proto::TensorProto;

/// The external-data fields of a tensor: location, offset, length.
struct Reference {
    location: String,
    offset: u64,
    length: Option<u64>,
}

fn reference(t: &TensorProto) -> Result<Reference> {
    let what = format!("tensor '{}'", t.name);
    let mut location = None;
    let mut offset: u64 = 0;
    let mut length: Option<u64> = None;
    for entry in &t.external_data {
        let parse = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| Error::Model(format!("{what}: bad external {} '{v}'", entry.key)))
        };
        match entry.key.as_str() {
            "location" => location = Some(entry.value.clone()),
            "offset" => offset = parse(&entry.value)?,
            "length" => length = Some(parse(&entry.value)?),
            _ => {}
        }
    }
    let location = location
        .ok_or_else(|| Error::Model(format!("{what}: external data without a location")))?;
    Ok(Reference { location, offset, length })
}

/// The `expected_len` bytes of `t` inside a container section (`location = "@rbe/<n>"`),
/// sharing the section's buffer.
pub fn slice(t: &TensorProto, sections: &[Bytes], expected_len: usize) -> Result<Bytes> {
    let what = format!("tensor '{}'", t.name);
    let r = reference(t)?;
    let section = r
        .location
        .strip_prefix(crate::container::SECTION_LOCATION_PREFIX)
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .and_then(|n| sections.get(n))
        .ok_or_else(|| Error::Container(format!("{what}: bad section reference '{}'", r.location)))?;
    let end = r.offset.checked_add(expected_len as u64);
    if r.length.is_some_and(|l| l != expected_len as u64) || end.is_none_or(|e| e > section.len() as u64) {
        return Err(Error::Container(format!(
            "{what}: data [{}, +{expected_len}) does not fit its section of {} bytes",
            r.offset,
            section.len()
        )));
    }
    Ok(section.slice(r.offset as usize..r.offset as usize + expected_len))
}

/// Reads `expected_len` bytes of external data for `t`, relative to the model's folder.
/// Absolute paths and paths with `..` are refused.
pub fn read(t: &TensorProto, base_dir: &Path, expected_len: usize) -> Result<Vec<u8>> {
    let what = format!("tensor '{}'", t.name);
    let Reference { location, offset, length } = reference(t)?;
    let rel = Path::new(&location);
    if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(Error::Model(format!(
            "{what}: external data path '{location}' must be relative and stay inside the model's folder"
        )));
    }
    if let Some(len) = length {
        if len != expected_len as u64 {
            return Err(Error::Model(format!(
                "{what}: external length {len} does not match its shape ({expected_len} bytes)"
            )));
        }
    }
    let path = base_dir.join(rel);
    let io = |source| Error::Io { path: path.display().to_string(), source };
    let mut file = File::open(&path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    if offset.checked_add(expected_len as u64).is_none_or(|end| end > file_len) {
        return Err(Error::Model(format!(
            "{what}: external data [{offset}, +{expected_len}) runs past the end of '{location}' ({file_len} bytes)"
        )));
    }
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut buf = vec![0u8; expected_len];
    file.read_exact(&mut buf).map_err(io)?;
    Ok(buf)
}

//! Reads a GGUF file (v2/v3, little-endian): header, metadata, tensor infos, and the aligned
//! tensor data, memory-mapped. Every count, length, offset and size is checked against the
//! file and against sane limits before anything is allocated.

use std::path::Path;

use super::error::GgufError;
use super::ggml_type::GgmlType;
use super::value::{Metadata, Value};

/// Most tensors a file may declare.
const MAX_TENSORS: u64 = 1 << 16;
/// Most metadata keys a file may declare.
const MAX_KEYS: u64 = 1 << 16;
/// Longest string (key, value or array element), in bytes.
const MAX_STRING: u64 = 1 << 24;
/// Most elements in one metadata array (vocabularies are ~50k..250k).
const MAX_ARRAY: u64 = 1 << 24;
/// Deepest array nesting.
const MAX_DEPTH: usize = 2;
/// Most dimensions of a tensor (ggml's GGML_MAX_DIMS).
const MAX_DIMS: u64 = 4;
/// Largest tensor, in elements.
const MAX_ELEMENTS: u64 = 1 << 34;

/// One tensor's description.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// Its name (`blk.0.attn_q.weight`...).
    pub name: String,
    /// ggml dims, innermost first (`ne[0]` is the row length).
    pub dims: Vec<u64>,
    /// Its element type.
    pub ggml_type: GgmlType,
    /// Absolute offset of its data in the file.
    pub offset: usize,
    /// Bytes of data.
    pub size: usize,
}

impl TensorInfo {
    /// Number of elements.
    pub fn elements(&self) -> usize {
        self.dims.iter().product::<u64>() as usize
    }

    /// The shape in row-major order (outermost first), as ONNX and PyTorch write it.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// An opened GGUF file.
pub struct GgufFile {
    /// The format version (2 or 3).
    pub version: u32,
    /// The metadata map.
    pub metadata: Metadata,
    /// Tensor descriptions in file order.
    pub tensors: Vec<TensorInfo>,
    map: memmap2::Mmap,
}

impl GgufFile {
    /// Opens and validates `path` (the file is mapped, not read).
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let io = |source| GgufError::Io { path: path.display().to_string(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and private to this process; like every mmap reader we
        // rely on nobody truncating the file while it is open.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let (version, metadata, tensors) = parse(&map)?;
        Ok(Self { version, metadata, tensors, map })
    }

    /// The data bytes of `tensor` (checked in `open` to lie within the file).
    pub fn data(&self, tensor: &TensorInfo) -> &[u8] {
        &self.map[tensor.offset..tensor.offset + tensor.size]
    }

    /// The tensor named `name`, if any.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Parses the header of a GGUF image: version, metadata and tensor infos (data ranges checked).
pub fn parse(bytes: &[u8]) -> Result<(u32, Metadata, Vec<TensorInfo>), GgufError> {
    let mut r = Cursor { bytes, at: 0 };
    let magic: [u8; 4] = r.take(4, "magic")?.try_into().map_err(|_| GgufError::Malformed("magic".into()))?;
    if &magic != b"GGUF" {
        return Err(GgufError::Magic(magic));
    }
    let version = r.u32("version")?;
    if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
        return Err(GgufError::Malformed("big-endian GGUF files are not supported".into()));
    }
    if version != 2 && version != 3 {
        return Err(GgufError::Version(version));
    }
    let tensor_count = r.count("tensor count", MAX_TENSORS, 8 + 4 + 8 + 4 + 8)?;
    let key_count = r.count("metadata key count", MAX_KEYS, 8 + 4 + 1)?;
    let mut metadata = Metadata::default();
    for _ in 0..key_count {
        let key = r.string("metadata key")?;
        let kind = r.u32("metadata value type")?;
        let value = r.value(kind, &key, 0)?;
        if metadata.0.insert(key.clone(), value).is_some() {
            return Err(GgufError::Malformed(format!("metadata key '{key}' appears twice")));
        }
    }
    let mut infos = Vec::with_capacity(tensor_count);
    for _ in 0..tensor_count {
        infos.push(r.tensor_info()?);
    }
    let alignment = match metadata.uint("general.alignment")? {
        None => 32,
        Some(a) if a.is_power_of_two() && a <= 1 << 16 => a,
        Some(a) => return Err(GgufError::Malformed(format!("general.alignment {a} is not a power of two up to 65536"))),
    };
    let data_start = (r.at as u64).div_ceil(alignment) * alignment;
    let len = bytes.len() as u64;
    let mut tensors = Vec::with_capacity(infos.len());
    for (name, dims, ggml_type, relative) in infos {
        if relative % alignment != 0 {
            return Err(GgufError::Malformed(format!("tensor '{name}': offset {relative} is not a multiple of {alignment}")));
        }
        let elements: u64 = dims.iter().product();
        let size = ggml_type.bytes_for(elements).ok_or_else(|| {
            GgufError::Malformed(format!(
                "tensor '{name}': {elements} values do not fill whole {} blocks of {}",
                ggml_type.name(),
                ggml_type.block_len()
            ))
        })?;
        let offset = data_start.checked_add(relative).filter(|&o| o <= len);
        let end = offset.and_then(|o| o.checked_add(size)).filter(|&e| e <= len);
        let (Some(offset), Some(_)) = (offset, end) else {
            return Err(GgufError::Truncated { what: format!("tensor '{name}' data"), at: data_start.saturating_add(relative), need: size, len });
        };
        tensors.push(TensorInfo { name, dims, ggml_type, offset: offset as usize, size: size as usize });
    }
    Ok((version, metadata, tensors))
}

/// A bounds-checked little-endian reader over the file's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], GgufError> {
        let len = self.bytes.len() as u64;
        let end = (self.at as u64).checked_add(n).filter(|&e| e <= len);
        let Some(end) = end else {
            return Err(GgufError::Truncated { what: what.to_string(), at: self.at as u64, need: n, len });
        };
        let slice = &self.bytes[self.at..end as usize];
        self.at = end as usize;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.at) as u64
    }

    /// A u64 count, at most `limit` and at most what the rest of the file can hold when each
    /// item takes at least `min_item_bytes`.
    fn count(&mut self, what: &str, limit: u64, min_item_bytes: u64) -> Result<usize, GgufError> {
        let n = self.u64(what)?;
        let fits = self.remaining() / min_item_bytes.max(1);
        if n > limit || n > fits {
            return Err(GgufError::Limit { what: what.to_string(), value: n, limit: limit.min(fits) });
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let n = self.count(&format!("{what} length"), MAX_STRING, 1)?;
        let raw = self.take(n as u64, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| GgufError::Malformed(format!("{what} is not UTF-8")))
    }

    fn value(&mut self, kind: u32, key: &str, depth: usize) -> Result<Value, GgufError> {
        let what = format!("value of '{key}'");
        Ok(match kind {
            0 => Value::UInt(self.array::<1>(&what)?[0] as u64),
            1 => Value::Int(self.array::<1>(&what)?[0] as i8 as i64),
            2 => Value::UInt(u16::from_le_bytes(self.array(&what)?) as u64),
            3 => Value::Int(i16::from_le_bytes(self.array(&what)?) as i64),
            4 => Value::UInt(self.u32(&what)? as u64),
            5 => Value::Int(i32::from_le_bytes(self.array(&what)?) as i64),
            6 => Value::Float(f32::from_le_bytes(self.array(&what)?) as f64),
            7 => match self.array::<1>(&what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(GgufError::Malformed(format!("{what}: bool byte {b}"))),
            },
            8 => Value::Str(self.string(&what)?),
            9 if depth < MAX_DEPTH => {
                let item = self.u32(&what)?;
                let min = match item {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    _ => return Err(GgufError::Malformed(format!("{what}: array of unknown type {item}"))),
                };
                let n = self.count(&format!("{what} array length"), MAX_ARRAY, min)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(item, key, depth + 1)?);
                }
                Value::Array(items)
            }
            9 => return Err(GgufError::Malformed(format!("{what}: arrays nested deeper than {MAX_DEPTH}"))),
            10 => Value::UInt(self.u64(&what)?),
            11 => Value::Int(i64::from_le_bytes(self.array(&what)?)),
            12 => Value::Float(f64::from_le_bytes(self.array(&what)?)),
            _ => return Err(GgufError::Malformed(format!("{what}: unknown value type {kind}"))),
        })
    }

    fn tensor_info(&mut self) -> Result<(String, Vec<u64>, GgmlType, u64), GgufError> {
        let name = self.string("tensor name")?;
        let n_dims = self.u32("tensor dimension count")? as u64;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(GgufError::Limit { what: format!("tensor '{name}' dimension count"), value: n_dims, limit: MAX_DIMS });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        let mut elements: u64 = 1;
        for _ in 0..n_dims {
            let d = self.u64("tensor dimension")?;
            elements = elements.checked_mul(d).filter(|&e| e <= MAX_ELEMENTS).ok_or_else(|| GgufError::Limit {
                what: format!("tensor '{name}' element count"),
                value: elements.saturating_mul(d),
                limit: MAX_ELEMENTS,
            })?;
            dims.push(d);
        }
        let code = self.u32("tensor type")?;
        let ggml_type = GgmlType::from_code(code, &name)?;
        let offset = self.u64("tensor offset")?;
        Ok((name, dims, ggml_type, offset))
    }
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;

//! Helpers shared by the fuzz targets in `src/bin/` (see `README.md`).

use bytes::Bytes;
use rbe_runtime::container::MAGIC;
use rbe_runtime::graph::{Dim, InputSpec};
use rbe_runtime::onnx::proto::TensorProto;
use rbe_runtime::onnx::{tensor_from_proto, ExternalData};
use rbe_runtime::{DType, Session, Tensor};

/// Largest input tensor the graph targets feed (elements), and the most inputs they feed.
const MAX_FEED_ELEMENTS: usize = 1 << 12;
const MAX_FEEDS: usize = 16;

/// A copy of a would-be container with its checksums made right (the header's, and each
/// section's stored and, where it is stored as is or unpacks, unpacked CRC), so that mutations reach the code
/// behind the checksums instead of stopping at the first mismatch. `None` if the bytes are
/// too broken to find the checksums in.
pub fn with_fixed_checksums(data: &[u8]) -> Option<Vec<u8>> {
    const ENTRY: usize = 40;
    if data.len() < 20 || &data[..8] != MAGIC {
        return None;
    }
    let n = u32_at(data, 12) as usize;
    let header_len = (n <= 4096).then(|| 16 + ENTRY * n + 4).filter(|&l| l <= data.len())?;
    let mut out = data.to_vec();
    for i in 0..n {
        let at = 16 + ENTRY * i;
        let offset = u64_at(data, at + 8);
        let stored_len = u64_at(data, at + 16);
        let raw_len = u64_at(data, at + 24);
        let Some(end) = offset.checked_add(stored_len).filter(|&e| e <= data.len() as u64) else { continue };
        let stored = &data[offset as usize..end as usize];
        out[at + 4..at + 8].copy_from_slice(&crc32fast::hash(stored).to_le_bytes());
        if u32_at(data, at + 36) == 1 {
            // A section stored as it is (format version 2): its bytes are its contents.
            out[at + 32..at + 36].copy_from_slice(&crc32fast::hash(stored).to_le_bytes());
        } else if let Ok(raw) = zstd::bulk::decompress(stored, raw_len.min(1 << 24) as usize) {
            // Bounded here so that the harness itself never allocates what a header claims.
            out[at + 32..at + 36].copy_from_slice(&crc32fast::hash(&raw).to_le_bytes());
        }
    }
    let crc = crc32fast::hash(&out[..header_len - 4]);
    out[header_len - 4..header_len].copy_from_slice(&crc.to_le_bytes());
    Some(out)
}

/// Builds a session from `model`'s bytes; if that works and its inputs are small, runs it
/// once on zero-filled inputs. Errors are expected; panics and aborts are what the fuzzer finds.
pub fn build_and_run(model: &rbe_runtime::onnx::proto::ModelProto, data: ExternalData) {
    let Ok(session) = Session::from_model(model, data) else { return };
    if let Some(feeds) = zero_feeds(session.inputs()) {
        let _ = session.run(feeds);
    }
}

/// Zero-filled feeds for `inputs` (symbolic sizes 1, undeclared dtypes float32), or `None`
/// when they would be large.
pub fn zero_feeds(inputs: &[InputSpec]) -> Option<Vec<(String, Tensor)>> {
    if inputs.len() > MAX_FEEDS {
        return None;
    }
    inputs
        .iter()
        .map(|spec| {
            let dtype = spec.dtype.unwrap_or(DType::F32);
            let dims: Vec<i64> = match &spec.dims {
                Some(dims) => dims
                    .iter()
                    .map(|d| match d {
                        Dim::Fixed(n) => *n as i64,
                        Dim::Symbolic(_) | Dim::Unknown => 1,
                    })
                    .collect(),
                None => vec![1],
            };
            let count = dims.iter().try_fold(1usize, |c, &d| c.checked_mul(d as usize))?;
            if count > MAX_FEED_ELEMENTS {
                return None;
            }
            let proto = TensorProto {
                dims,
                data_type: dtype.to_onnx(),
                raw_data: Bytes::from(vec![0u8; dtype.raw_len(count)]),
                ..Default::default()
            };
            Some((spec.name.clone(), tensor_from_proto(&proto, ExternalData::Refused).ok()?))
        })
        .collect()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

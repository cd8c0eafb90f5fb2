//! Reading and writing tensors as NumPy `.npy` files, whatever their dtype.

use std::path::Path;

use ndarray::ArrayD;
use ndarray_npy::npy::header::Header;
use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};
use rbe_runtime::Tensor;

/// Reads an `.npy` file into a tensor of the dtype it was saved with
/// (float32, float64, int64, int32, int8, uint8 or bool).
pub fn read(path: &Path) -> Result<Tensor, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    read_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// [`read`] for the bytes of an `.npy` file held in memory.
pub fn read_bytes(bytes: &[u8]) -> Result<Tensor, String> {
    check_header(bytes)?;
    let fail = |e: ReadNpyError| format!("not a readable .npy file: {e}");
    macro_rules! attempt {
        ($t:ty) => {
            match ArrayD::<$t>::read_npy(bytes) {
                Ok(a) => return Ok(Tensor::from(a)),
                Err(ReadNpyError::WrongDescriptor(_)) => {}
                Err(e) => return Err(fail(e)),
            }
        };
    }
    attempt!(f32);
    attempt!(i64);
    attempt!(i32);
    attempt!(f64);
    attempt!(bool);
    attempt!(u8);
    attempt!(i8);
    Err("unsupported .npy dtype (use float32, float64, int64, int32, int8, uint8 or bool)".into())
}

/// Longest header accepted, in bytes (NumPy's own default `max_header_size`).
const MAX_HEADER_LEN: usize = 10_000;

/// Checks an `.npy` header before ndarray-npy reads the file, which would otherwise take
/// minutes over a short header of nested brackets (its Python-literal parser backtracks) and
/// size its buffer from the header's shape alone. The header of every dtype read here is a
/// dict holding one tuple, so deeper nesting is refused, and so is a shape of more elements
/// than there are bytes after the header (each element takes at least one).
fn check_header(bytes: &[u8]) -> Result<(), String> {
    let bad = |why: String| format!("not a readable .npy file: {why}");
    // Magic, version, header length (u16 in version 1, u32 after); anything else is left to
    // ndarray-npy, which refuses it before parsing the header.
    let (len, start) = match bytes.get(..12) {
        Some([0x93, b'N', b'U', b'M', b'P', b'Y', 1, _, a, b, ..]) => (u16::from_le_bytes([*a, *b]) as usize, 10),
        Some([0x93, b'N', b'U', b'M', b'P', b'Y', 2 | 3, _, a, b, c, d]) => (u32::from_le_bytes([*a, *b, *c, *d]) as usize, 12),
        _ => return Ok(()),
    };
    if len > MAX_HEADER_LEN {
        return Err(bad(format!("a header of {len} bytes is too long")));
    }
    let text = bytes.get(start..start + len).unwrap_or_default();
    let mut depth = 0usize;
    for &c in text {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > 2 {
            return Err(bad("the header nests brackets more than two deep".into()));
        }
    }
    let mut data = bytes;
    let header = Header::from_reader(&mut data).map_err(|e| bad(e.to_string()))?;
    let count = header.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if count.is_none_or(|n| n > data.len()) {
        return Err(bad(format!("shape {:?} holds more elements than the file's {} bytes of data", header.shape, data.len())));
    }
    Ok(())
}

/// Writes a tensor as an `.npy` file (float16, bfloat16 and the narrow types are widened to float32).
pub fn write(path: &Path, tensor: &Tensor) -> Result<(), String> {
    let mut buf = Vec::new();
    let result = match tensor {
        Tensor::F16(a) => a.mapv(|v| v.to_f32()).write_npy(&mut buf),
        Tensor::F32(a) => a.write_npy(&mut buf),
        Tensor::F64(a) => a.write_npy(&mut buf),
        Tensor::I64(a) => a.write_npy(&mut buf),
        Tensor::I32(a) => a.write_npy(&mut buf),
        Tensor::I8(a) => a.write_npy(&mut buf),
        Tensor::U8(a) => a.write_npy(&mut buf),
        Tensor::BF16(a) => a.mapv(|v| v.to_f32()).write_npy(&mut buf),
        Tensor::I16(a) => a.write_npy(&mut buf),
        Tensor::U16(a) => a.write_npy(&mut buf),
        Tensor::U32(a) => a.write_npy(&mut buf),
        Tensor::U64(a) => a.write_npy(&mut buf),
        Tensor::Bool(a) => a.write_npy(&mut buf),
        Tensor::Narrow(n) => n.to_f64().mapv(|v| v as f32).write_npy(&mut buf),
    };
    result.map_err(|e| format!("cannot encode {}: {e}", path.display()))?;
    crate::atomic::write(path, &buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 1.0 `.npy` file of header `dict` (padded as NumPy pads it) and `data`.
    fn npy(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut text = dict.to_string();
        while !(10 + text.len() + 1).is_multiple_of(64) {
            text.push(' ');
        }
        text.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(text.len() as u16).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn valid_files_still_read() {
        let t = Tensor::from_vec(&[2, 3], vec![1f32, 2., 3., 4., 5., 6.]).unwrap();
        let mut buf = Vec::new();
        t.as_f32().unwrap().write_npy(&mut buf).unwrap();
        assert_eq!(read_bytes(&buf).unwrap(), t);
        let scalar = npy("{'descr': '<i8', 'fortran_order': False, 'shape': (), }", &7i64.to_le_bytes());
        assert_eq!(read_bytes(&scalar).unwrap(), Tensor::scalar(7i64));
        let empty = npy("{'descr': '|u1', 'fortran_order': False, 'shape': (0, 3), }", &[]);
        assert_eq!(read_bytes(&empty).unwrap().shape(), &[0, 3]);
    }

    /// Found by fuzzing (fuzz/, target `npy`): this header kept the reader busy for 3 minutes.
    #[test]
    fn deeply_nested_header_is_refused_at_once() {
        let bad = npy("{'descr': '|b1', [[[[[[[[[[[[[[[[[[[[['fortran_order': False, 'shape': (2, 2)}", &[1; 4]);
        let err = read_bytes(&bad).unwrap_err();
        assert!(err.contains("nests brackets"), "{err}");
    }

    /// A header claiming 2^40 float32 elements over 4 bytes of data is refused before anything
    /// of that size is allocated.
    #[test]
    fn shape_larger_than_the_data_is_refused_before_allocating() {
        let bad = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1048576, 1048576), }", &[0; 4]);
        let err = read_bytes(&bad).unwrap_err();
        assert!(err.contains("more elements"), "{err}");
        let overflow = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }", &[]);
        assert!(read_bytes(&overflow).is_err());
    }
}

//! Reading and writing tensors as NumPy `.npy` files, whatever their dtype.

use std::path::Path;

use ndarray::ArrayD;
use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};
use rbe_runtime::Tensor;

/// Reads an `.npy` file into a tensor of the dtype it was saved with
/// (float32, float64, int64, int32, int8, uint8 or bool).
pub fn read(path: &Path) -> Result<Tensor, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let fail = |e: ReadNpyError| format!("{} is not a readable .npy file: {e}", path.display());
    macro_rules! attempt {
        ($t:ty) => {
            match ArrayD::<$t>::read_npy(bytes.as_slice()) {
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
    Err(format!(
        "{}: unsupported .npy dtype (use float32, float64, int64, int32, int8, uint8 or bool)",
        path.display()
    ))
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

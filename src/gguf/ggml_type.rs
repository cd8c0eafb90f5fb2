//! The ggml tensor types the importer reads: their codes, names and block geometry.

use super::error::GgufError;

/// A ggml element type with a dequantizer here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
    /// 32 values: f16 scale, 4-bit codes minus 8.
    Q4_0,
    /// 32 values: f16 scale and min, 4-bit codes.
    Q4_1,
    /// 32 values: f16 scale, 5-bit codes minus 16.
    Q5_0,
    /// 32 values: f16 scale and min, 5-bit codes.
    Q5_1,
    /// 32 values: f16 scale, int8 codes.
    Q8_0,
    /// 256 values: f16 super-scale and super-min, 6-bit sub-block scales/mins, 4-bit codes.
    Q4K,
    /// 256 values: like Q4_K with a fifth code bit.
    Q5K,
    /// 256 values: f16 super-scale, int8 sub-block scales, 6-bit codes minus 32.
    Q6K,
}

impl GgmlType {
    /// The type for a ggml type code, or an error naming the tensor and the type.
    pub fn from_code(code: u32, tensor: &str) -> Result<Self, GgufError> {
        Ok(match code {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            30 => Self::Bf16,
            _ => return Err(GgufError::TensorType { name: tensor.to_string(), code, label: unsupported_label(code) }),
        })
    }

    /// llama.cpp's name for the type.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::Bf16 => "BF16",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q8_0 => "Q8_0",
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
        }
    }

    /// Values per block.
    pub fn block_len(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::Bf16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 | Self::Q8_0 => 32,
            Self::Q4K | Self::Q5K | Self::Q6K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::Bf16 => 2,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q8_0 => 34,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
        }
    }

    /// Bytes that `elements` values take, or `None` when they do not fill whole blocks
    /// (or overflow).
    pub fn bytes_for(self, elements: u64) -> Option<u64> {
        let len = self.block_len() as u64;
        elements.is_multiple_of(len).then(|| (elements / len).checked_mul(self.block_bytes() as u64)).flatten()
    }
}

/// Names of the known ggml types without a dequantizer here, for error messages.
fn unsupported_label(code: u32) -> &'static str {
    match code {
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        15 => "Q8_K",
        16..=23 | 29 => "an IQ type",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        34 | 35 => "a TQ type",
        _ => "unknown",
    }
}

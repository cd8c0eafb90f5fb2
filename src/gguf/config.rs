//! The Llama-family hyperparameters, read from GGUF metadata (`{arch}.*` keys).

use super::error::GgufError;
use super::value::Metadata;

/// Sane upper bounds for the model's sizes.
const MAX_LAYERS: u64 = 1 << 10;
const MAX_WIDTH: u64 = 1 << 17;

/// How the file lays out Q/K rows for rotary embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeLayout {
    /// `llama`: llama.cpp's converter interleaved the rotary pairs of Q/K rows (the graph
    /// restores Hugging Face's half-split order).
    Interleaved,
    /// `qwen2`: rows as Hugging Face stores them (rotate-half pairs).
    Halves,
}

/// Everything the graph builder needs to know about the model.
#[derive(Clone, Debug)]
pub struct LlamaConfig {
    /// `general.architecture`.
    pub arch: String,
    /// Transformer blocks.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Feed-forward inner size.
    pub ffn: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (GQA when fewer than `heads`).
    pub kv_heads: usize,
    /// Size of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// Linear RoPE scaling factor (positions divided by it), 1 when absent.
    pub rope_linear_factor: f64,
    /// The Q/K row order.
    pub rope_layout: RopeLayout,
}

impl LlamaConfig {
    /// Reads and checks the hyperparameters.
    pub fn from_metadata(meta: &Metadata) -> Result<Self, GgufError> {
        let arch = Metadata::required("general.architecture", meta.str("general.architecture"))?.to_string();
        let rope_layout = match arch.as_str() {
            "llama" => RopeLayout::Interleaved,
            "qwen2" => RopeLayout::Halves,
            other => return Err(GgufError::Model(format!("architecture '{other}' is not supported (llama, qwen2 are)"))),
        };
        let key = |k: &str| format!("{arch}.{k}");
        let size = |k: &str, limit: u64| -> Result<usize, GgufError> {
            let name = key(k);
            let v = Metadata::required(&name, meta.uint(&name))?;
            if v == 0 || v > limit {
                return Err(GgufError::Limit { what: format!("metadata {name}"), value: v, limit });
            }
            Ok(v as usize)
        };
        let layers = size("block_count", MAX_LAYERS)?;
        let hidden = size("embedding_length", MAX_WIDTH)?;
        let ffn = size("feed_forward_length", MAX_WIDTH * 8)?;
        let heads = size("attention.head_count", MAX_WIDTH)?;
        let kv_heads = match meta.uint(&key("attention.head_count_kv"))? {
            None => heads,
            Some(_) => size("attention.head_count_kv", heads as u64)?,
        };
        if hidden % heads != 0 || heads % kv_heads != 0 {
            return Err(GgufError::Model(format!("{heads} heads / {kv_heads} kv heads do not divide hidden size {hidden}")));
        }
        let head_dim = hidden / heads;
        if head_dim % 2 != 0 {
            return Err(GgufError::Model(format!("head size {head_dim} is odd")));
        }
        if let Some(rot) = meta.uint(&key("rope.dimension_count"))? {
            if rot != head_dim as u64 {
                return Err(GgufError::Model(format!("partial rotary ({rot} of {head_dim} dims) is not supported")));
            }
        }
        let rms_eps = Metadata::required(&key("attention.layer_norm_rms_epsilon"), meta.float(&key("attention.layer_norm_rms_epsilon")))? as f32;
        let rope_theta = meta.float(&key("rope.freq_base"))?.unwrap_or(10000.0);
        let rope_linear_factor = match meta.str(&key("rope.scaling.type"))? {
            None | Some("none") => 1.0,
            Some("linear") => meta.float(&key("rope.scaling.factor"))?.unwrap_or(1.0),
            Some(other) => return Err(GgufError::Model(format!("rope scaling '{other}' is not supported (linear is)"))),
        };
        if !(rope_theta.is_finite() && rope_theta > 1.0 && rope_linear_factor.is_finite() && rope_linear_factor > 0.0) {
            return Err(GgufError::Model(format!("rope base {rope_theta} / scale {rope_linear_factor} out of range")));
        }
        Ok(Self { arch, layers, hidden, ffn, heads, kv_heads, head_dim, rms_eps, rope_theta, rope_linear_factor, rope_layout })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::value::Value;

    fn meta(pairs: &[(&str, Value)]) -> Metadata {
        Metadata(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    fn llama(extra: &[(&str, Value)]) -> Metadata {
        let mut m = meta(&[
            ("general.architecture", Value::Str("llama".into())),
            ("llama.block_count", Value::UInt(2)),
            ("llama.embedding_length", Value::UInt(64)),
            ("llama.feed_forward_length", Value::UInt(128)),
            ("llama.attention.head_count", Value::UInt(4)),
            ("llama.attention.head_count_kv", Value::UInt(2)),
            ("llama.attention.layer_norm_rms_epsilon", Value::Float(1e-5)),
        ]);
        m.0.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        m
    }

    #[test]
    fn reads_gqa_and_rope_defaults() {
        let c = LlamaConfig::from_metadata(&llama(&[("llama.rope.scaling.type", Value::Str("linear".into())), ("llama.rope.scaling.factor", Value::Float(4.0))])).unwrap();
        assert_eq!((c.heads, c.kv_heads, c.head_dim), (4, 2, 16));
        assert_eq!((c.rope_theta, c.rope_linear_factor), (10000.0, 4.0));
        assert_eq!(c.rope_layout, RopeLayout::Interleaved);
    }

    #[test]
    fn inconsistent_or_missing_metadata_is_an_error() {
        let e = |m: Metadata| LlamaConfig::from_metadata(&m).unwrap_err().to_string();
        assert!(e(meta(&[])).contains("general.architecture"));
        assert!(e(meta(&[("general.architecture", Value::Str("gpt2".into()))])).contains("not supported"));
        assert!(e(llama(&[("llama.attention.head_count_kv", Value::UInt(3))])).contains("divide"));
        assert!(e(llama(&[("llama.block_count", Value::UInt(1 << 40))])).contains("limit"));
        assert!(e(llama(&[("llama.block_count", Value::Str("2".into()))])).contains("integer"));
        assert!(e(llama(&[("llama.rope.scaling.type", Value::Str("yarn".into()))])).contains("yarn"));
    }
}

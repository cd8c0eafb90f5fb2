//! Building a model's inputs from what a user typed: `--input NAME=@file.npy`, or a plain
//! list of token ids from which the usual companions (attention mask, positions, empty past)
//! are derived.

use std::path::{Path, PathBuf};

use rbe_runtime::graph::{Dim, InputSpec};
use rbe_runtime::{DType, Tensor};

/// Parses one `NAME=@file.npy` argument.
pub fn parse_input_arg(arg: &str) -> Result<(String, PathBuf), String> {
    match arg.split_once("=@") {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_string(), PathBuf::from(path)))
        }
        _ => Err(format!("--input '{arg}' must look like NAME=@file.npy")),
    }
}

/// Reads every `NAME=@file.npy` argument.
pub fn read_input_args(args: &[String]) -> Result<Vec<(String, Tensor)>, String> {
    args.iter()
        .map(|arg| {
            let (name, path) = parse_input_arg(arg)?;
            Ok((name, crate::npy::read(Path::new(&path))?))
        })
        .collect()
}

/// Parses `464,2068,7586` into token ids.
pub fn parse_token_ids(text: &str) -> Result<Vec<i64>, String> {
    let ids: Result<Vec<i64>, _> = text.split(',').map(|t| t.trim().parse::<i64>()).collect();
    match ids {
        Ok(ids) if !ids.is_empty() => Ok(ids),
        _ => Err(format!("--input-ids '{text}' must be a comma-separated list of integers")),
    }
}

/// Feeds for one sequence of token ids (batch 1, no past): `input_ids`, and, when the model
/// takes them, an all-ones `attention_mask`, `position_ids` 0..n, zero `token_type_ids`, and
/// empty `past_key_values.*`, and `use_cache_branch` (false) of optimum's merged decoders.
/// `extra` tensors (from `--input`) override or complete these.
pub fn token_feeds(
    inputs: &[InputSpec],
    ids: &[i64],
    extra: Vec<(String, Tensor)>,
) -> Result<Vec<(String, Tensor)>, String> {
    token_feeds_after(inputs, ids, 0, extra)
}

/// [`token_feeds`] for tokens that follow `past_len` cached positions: the attention mask
/// covers `past_len + n` positions and position ids start at `past_len`. The cached
/// `past_key_values.*` must then come in `extra`.
pub fn token_feeds_after(
    inputs: &[InputSpec],
    ids: &[i64],
    past_len: usize,
    extra: Vec<(String, Tensor)>,
) -> Result<Vec<(String, Tensor)>, String> {
    let n = ids.len();
    let total = past_len + n;
    let mut feeds = Vec::new();
    for spec in inputs {
        if let Some(pos) = extra.iter().position(|(name, _)| *name == spec.name) {
            feeds.push(extra[pos].clone());
            continue;
        }
        let name = spec.name.as_str();
        let tensor = if name == "input_ids" {
            Tensor::from_vec(&[1, n], ids.to_vec())
        } else if name == "attention_mask" {
            Tensor::from_vec(&[1, total], vec![1i64; total])
        } else if name == "position_ids" {
            Tensor::from_vec(&[1, n], (past_len as i64..total as i64).collect())
        } else if name == "token_type_ids" {
            Tensor::from_vec(&[1, n], vec![0i64; n])
        } else if name == "use_cache_branch" {
            // optimum's merged decoders: the branch that reads the cache once there is one.
            Tensor::from_vec(&[1], vec![past_len > 0])
        } else if past_len == 0 && (name.starts_with("past_key_values") || name.starts_with("past.")) {
            let shape = empty_past_shape(spec)?;
            Tensor::from_vec(&shape, Vec::<f32>::new())
        } else {
            return Err(format!(
                "cannot derive input {} from token ids; pass it with --input {name}=@file.npy",
                spec.describe()
            ));
        }
        .map_err(|e| e.to_string())?;
        feeds.push((spec.name.clone(), convert(tensor, spec.dtype)?));
    }
    for (name, _) in &extra {
        if !inputs.iter().any(|s| &s.name == name) {
            let list: Vec<String> = inputs.iter().map(|s| s.describe()).collect();
            return Err(format!("unknown input '{name}'; the model takes: {}", list.join(", ")));
        }
    }
    Ok(feeds)
}

/// `[batch, heads, past, head_dim]` with batch 1, past 0 and the declared fixed sizes; a
/// symbolic head size (onnxruntime's model builder writes one) is 0: an empty cache has
/// nothing to read, and its consumers (GroupQueryAttention) take it as no cache.
fn empty_past_shape(spec: &InputSpec) -> Result<Vec<usize>, String> {
    let dims = spec.dims.as_ref().filter(|d| d.len() == 4).ok_or_else(|| {
        format!("input {} must declare 4 dims to build an empty past", spec.describe())
    })?;
    let Dim::Fixed(heads) = dims[1] else {
        return Err(format!("input {}: the number of heads must be a fixed dim", spec.describe()));
    };
    let head_size = match dims[3] {
        Dim::Fixed(n) => n,
        _ => 0,
    };
    Ok(vec![1, heads, 0, head_size])
}

/// Converts the derived int64/f32 tensors to the dtype the graph declares.
fn convert(tensor: Tensor, dtype: Option<DType>) -> Result<Tensor, String> {
    let Some(dtype) = dtype else { return Ok(tensor) };
    if tensor.dtype() == dtype {
        return Ok(tensor);
    }
    Ok(match (&tensor, dtype) {
        (Tensor::I64(a), DType::I32) => a.mapv(|v| v as i32).into(),
        (Tensor::I64(a), DType::F32) => a.mapv(|v| v as f32).into(),
        (Tensor::I64(a), DType::Bool) => a.mapv(|v| v != 0).into(),
        (Tensor::F32(a), DType::F16) => a.mapv(half::f16::from_f32).into(),
        _ => return Err(format!("cannot build a {dtype} tensor for this input; pass it with --input")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn past(dims: Vec<Dim>) -> InputSpec {
        InputSpec { name: "past_key_values.0.key".into(), dtype: Some(DType::F32), dims: Some(dims) }
    }

    #[test]
    fn an_empty_past_takes_fixed_dims_and_zero_for_a_symbolic_head_size() {
        let batch = Dim::Symbolic("batch".into());
        let fixed = past(vec![batch.clone(), Dim::Fixed(3), Dim::Symbolic("past".into()), Dim::Fixed(64)]);
        assert_eq!(empty_past_shape(&fixed).unwrap(), [1, 3, 0, 64]);
        let symbolic = past(vec![batch.clone(), Dim::Fixed(3), Dim::Unknown, Dim::Symbolic("kv_cache_dim".into())]);
        assert_eq!(empty_past_shape(&symbolic).unwrap(), [1, 3, 0, 0]);
        let no_heads = past(vec![batch, Dim::Unknown, Dim::Unknown, Dim::Fixed(64)]);
        assert!(empty_past_shape(&no_heads).unwrap_err().contains("number of heads"));
    }
}

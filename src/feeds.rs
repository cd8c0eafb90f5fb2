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

/// `[batch, heads, past, head_dim]` with batch 1, past 0 and the declared fixed sizes.
fn empty_past_shape(spec: &InputSpec) -> Result<Vec<usize>, String> {
    let dims = spec.dims.as_ref().filter(|d| d.len() == 4).ok_or_else(|| {
        format!("input {} must declare 4 dims to build an empty past", spec.describe())
    })?;
    let fixed = |d: &Dim| match d {
        Dim::Fixed(n) => Ok(*n),
        _ => Err(format!("input {}: heads and head size must be fixed dims", spec.describe())),
    };
    Ok(vec![1, fixed(&dims[1])?, 0, fixed(&dims[3])?])
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

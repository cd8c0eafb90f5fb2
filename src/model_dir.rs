//! A Hugging Face style model directory, as `optimum-cli export onnx`, `save_pretrained` and
//! `rbe-convert DIR` write it: the model file beside `tokenizer.json` and the generation
//! settings of `generation_config.json`, `config.json` and `tokenizer_config.json`
//! (end-of-sequence tokens, chat template).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::chat::ChatTemplate;

/// The files besides the model that travel with it (copied by `rbe-convert DIR`).
pub const SIDE_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "config.json",
    "generation_config.json",
    "chat_template.jinja",
    "chat_template.json",
];

/// Model file names looked for by `rbe-run DIR`, best first.
pub const RUN_MODELS: &[&str] = &["model.rbeonnx", "model.onnx", "onnx/model.rbeonnx", "onnx/model.onnx"];

/// Model file names looked for by `rbe-convert DIR`, best first.
pub const CONVERT_MODELS: &[&str] = &["model.onnx", "onnx/model.onnx"];

/// What a model directory holds.
#[derive(Debug)]
pub struct ModelDir {
    /// The directory.
    pub dir: PathBuf,
    /// The model file in it.
    pub model: PathBuf,
    /// Its `tokenizer.json`, when present.
    pub tokenizer: Option<PathBuf>,
    /// End-of-sequence token ids (generation_config.json, else config.json).
    pub eos_token_ids: Vec<u32>,
    /// The end-of-sequence token's text (tokenizer_config.json), when it names one.
    pub eos_token: Option<String>,
    /// The chat template, when the directory has one.
    pub chat_template: Option<ChatTemplate>,
}

fn read_json(path: &Path) -> Result<Option<Value>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("{}: not valid JSON: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// `eos_token_id` as an id or a list of ids.
fn token_ids(value: Option<&Value>) -> Vec<u32> {
    let ids: Vec<&Value> = match value {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v) => vec![v],
        None => Vec::new(),
    };
    ids.into_iter().filter_map(Value::as_u64).filter_map(|i| u32::try_from(i).ok()).collect()
}

/// A special token as `tokenizer_config.json` writes it: a string or `{"content": ...}`.
pub fn token_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// The model file of `dir`: the first of `names` present, else its only .onnx/.rbeonnx file.
fn find_model(dir: &Path, names: &[&str]) -> Result<PathBuf, String> {
    if let Some(found) = names.iter().map(|n| dir.join(n)).find(|p| p.is_file()) {
        return Ok(found);
    }
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut models: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "onnx" || x == "rbeonnx"))
        .collect();
    models.sort();
    match models.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!("{} has no model file (looked for {})", dir.display(), names.join(", "))),
        many => Err(format!(
            "{} has several models and none named {}: {}; pass the file",
            dir.display(),
            names.join(" or "),
            many.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy()).collect::<Vec<_>>().join(", ")
        )),
    }
}

impl ModelDir {
    /// Reads the directory `dir`, taking the first of `names` (or its only model file) as the
    /// model.
    pub fn open(dir: &Path, names: &[&str]) -> Result<Self, String> {
        let model = find_model(dir, names)?;
        let tokenizer = Some(dir.join("tokenizer.json")).filter(|p| p.is_file());
        let generation = read_json(&dir.join("generation_config.json"))?;
        let config = read_json(&dir.join("config.json"))?;
        let tokenizer_config = read_json(&dir.join("tokenizer_config.json"))?;
        let mut eos_token_ids = token_ids(generation.as_ref().and_then(|g| g.get("eos_token_id")));
        if eos_token_ids.is_empty() {
            eos_token_ids = token_ids(config.as_ref().and_then(|c| c.get("eos_token_id")));
        }
        let eos_token = token_text(tokenizer_config.as_ref().and_then(|t| t.get("eos_token")));
        let chat_template = ChatTemplate::from_dir(dir, tokenizer_config.as_ref())?;
        Ok(ModelDir { dir: dir.to_path_buf(), model, tokenizer, eos_token_ids, eos_token, chat_template })
    }
}

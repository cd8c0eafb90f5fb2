//! A Hugging Face `tokenizer.json` built from a GGUF's `tokenizer.ggml.*` metadata: the
//! GPT-2 style byte-level BPE (`tokenizer.ggml.model = "gpt2"`, as SmolLM2 and Qwen2 use).

use serde_json::{json, Map, Value as Json};

use super::error::GgufError;
use super::value::{Metadata, Value};

/// ggml token types (llama.cpp's `llama_token_type`) that are added tokens.
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// The tokenizer.json text for the file's vocabulary, checked by loading it with the
/// `tokenizers` crate. `Ok(None)` when the file has no tokenizer.
pub fn tokenizer_json(meta: &Metadata) -> Result<Option<String>, GgufError> {
    let Some(model) = meta.str("tokenizer.ggml.model")? else { return Ok(None) };
    if model != "gpt2" {
        return Err(GgufError::Model(format!("tokenizer model '{model}' is not supported (gpt2 byte-level BPE is)")));
    }
    let tokens = strings(meta, "tokenizer.ggml.tokens")?;
    let merges = strings(meta, "tokenizer.ggml.merges")?;
    let types = match meta.array("tokenizer.ggml.token_type")? {
        Some(t) if t.len() == tokens.len() => t.iter().map(int).collect::<Result<Vec<_>, _>>()?,
        Some(t) => return Err(GgufError::Model(format!("{} token types for {} tokens", t.len(), tokens.len()))),
        None => vec![1; tokens.len()],
    };
    let mut vocab = Map::new();
    let mut added = Vec::new();
    for (id, (token, &kind)) in tokens.iter().zip(&types).enumerate() {
        if vocab.insert(token.to_string(), json!(id)).is_some() {
            return Err(GgufError::Model(format!("token {token:?} appears twice in the vocabulary")));
        }
        if kind == CONTROL || kind == USER_DEFINED {
            added.push(json!({"id": id, "content": token, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": kind == CONTROL}));
        }
    }
    let merges: Vec<Json> = merges
        .iter()
        .map(|m| match m.split_once(' ') {
            Some((a, b)) => Ok(json!([a, b])),
            None => Err(GgufError::Model(format!("merge {m:?} is not two tokens"))),
        })
        .collect::<Result<_, _>>()?;
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let pre_tokenizer = match meta.str("tokenizer.ggml.pre")? {
        // llama.cpp's smollm pre-tokenizer splits every digit apart before the GPT-2 regex.
        Some("smollm") => json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level]}),
        _ => byte_level.clone(),
    };
    let doc = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges},
    });
    let text = serde_json::to_string(&doc).map_err(|e| GgufError::Model(e.to_string()))?;
    text.parse::<tokenizers::Tokenizer>().map_err(|e| GgufError::Model(format!("the built tokenizer does not load: {e}")))?;
    Ok(Some(text))
}

/// A `tokenizer_config.json` text with the file's chat template (`tokenizer.chat_template`) and
/// its BOS/EOS tokens by text, as transformers writes them; `Ok(None)` when the file has none
/// of them.
pub fn tokenizer_config_json(meta: &Metadata) -> Result<Option<String>, GgufError> {
    let mut config = Map::new();
    if let Some(template) = meta.str("tokenizer.chat_template")? {
        config.insert("chat_template".into(), json!(template));
    }
    if meta.get("tokenizer.ggml.tokens").is_some() {
        let tokens = strings(meta, "tokenizer.ggml.tokens")?;
        for (key, field) in [("tokenizer.ggml.bos_token_id", "bos_token"), ("tokenizer.ggml.eos_token_id", "eos_token")] {
            if let Some(id) = meta.uint(key)? {
                let token = usize::try_from(id).ok().and_then(|i| tokens.get(i)).ok_or_else(|| {
                    GgufError::Model(format!("{key} = {id} is beyond the vocabulary ({} tokens)", tokens.len()))
                })?;
                config.insert(field.into(), json!(token));
            }
        }
    }
    if config.is_empty() {
        return Ok(None);
    }
    serde_json::to_string_pretty(&Json::Object(config)).map(Some).map_err(|e| GgufError::Model(e.to_string()))
}

fn strings<'m>(meta: &'m Metadata, key: &str) -> Result<Vec<&'m str>, GgufError> {
    let items = Metadata::required(key, meta.array(key))?;
    items
        .iter()
        .map(|v| match v {
            Value::Str(s) => Ok(s.as_str()),
            _ => Err(GgufError::Model(format!("metadata '{key}' must hold strings"))),
        })
        .collect()
}

fn int(v: &Value) -> Result<i64, GgufError> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::UInt(u) => Ok(*u as i64),
        _ => Err(GgufError::Model("tokenizer.ggml.token_type must hold integers".into())),
    }
}

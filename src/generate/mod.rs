//! Token-by-token generation: a prompt is tokenized, run once, then one token at a time, feeding
//! the graph's own `present.*` outputs back as `past_key_values.*` when the export has them
//! (else the whole sequence is recomputed each step).

mod chat;
mod sample;
mod step;

pub use chat::Conversation;
pub use sample::{Sampler, SamplingOptions};
pub use step::{Stepper, StepMode};

use std::path::Path;
use std::time::Instant;

use rbe_runtime::Session;
use tokenizers::Tokenizer;

/// Token strings that end generation when produced.
const END_TOKENS: &[&str] = &["<|endoftext|>", "<|im_end|>", "</s>", "<|end_of_text|>", "<|eot_id|>"];

/// Loads a Hugging Face `tokenizer.json`.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer, String> {
    Tokenizer::from_file(path).map_err(|e| format!("cannot load tokenizer {}: {e}", path.display()))
}

/// What a generation run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GenerationStats {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub new_tokens: usize,
    /// Prompt processing time (the first run), ms.
    pub prompt_ms: f64,
    /// Time for the generated tokens after the first, ms.
    pub generate_ms: f64,
    /// Whether the KV cache (past_key_values) was used.
    pub kv_cache: bool,
}

impl GenerationStats {
    /// Prompt tokens per second.
    pub fn prompt_tokens_per_s(&self) -> f64 {
        self.prompt_tokens as f64 / (self.prompt_ms / 1e3).max(1e-9)
    }

    /// Generated tokens per second, over the steps after the prompt run.
    pub fn generate_tokens_per_s(&self) -> f64 {
        self.new_tokens.saturating_sub(1) as f64 / (self.generate_ms / 1e3).max(1e-9)
    }
}

/// What to generate after a prompt.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// Tokens to generate at most.
    pub max_new_tokens: usize,
    /// How each one is picked.
    pub sampling: SamplingOptions,
    /// Token ids that end generation, besides the usual end tokens of the vocabulary
    /// (`<|endoftext|>`, `<|im_end|>`, `</s>`, ...): the model's `eos_token_id`.
    pub stop_ids: Vec<u32>,
}

impl GenerateOptions {
    /// Greedy decoding of up to `max_new_tokens`, stopping at the vocabulary's end tokens.
    pub fn greedy(max_new_tokens: usize) -> Self {
        GenerateOptions { max_new_tokens, sampling: SamplingOptions { temperature: 0.0, top_k: 0, seed: 0 }, stop_ids: Vec::new() }
    }
}

/// Generates after `prompt` (special tokens in its text are recognised), calling `emit` with
/// each new piece of text as soon as it is decoded.
pub fn generate(
    session: &Session,
    tokenizer: &Tokenizer,
    prompt: &str,
    options: &GenerateOptions,
    emit: &mut dyn FnMut(&str),
) -> Result<(Vec<u32>, GenerationStats), String> {
    let max_new_tokens = options.max_new_tokens;
    let encoding = tokenizer.encode(prompt, false).map_err(|e| format!("cannot tokenize the prompt: {e}"))?;
    let prompt_ids: Vec<i64> = encoding.get_ids().iter().map(|&i| i as i64).collect();
    if prompt_ids.is_empty() {
        return Err("the prompt is empty after tokenization".into());
    }
    let end_ids: Vec<u32> =
        END_TOKENS.iter().filter_map(|t| tokenizer.token_to_id(t)).chain(options.stop_ids.iter().copied()).collect();
    let mut stepper = Stepper::new(session)?;
    let mut sampler = Sampler::new(options.sampling.clone());
    let mut generated: Vec<u32> = Vec::new();
    let mut shown = String::new();
    let start = Instant::now();
    let mut logits = stepper.prefill(&prompt_ids)?;
    let prompt_ms = start.elapsed().as_secs_f64() * 1e3;
    let gen_start = Instant::now();
    while generated.len() < max_new_tokens {
        let next = sampler.pick(&logits)?;
        if end_ids.contains(&next) {
            break;
        }
        generated.push(next);
        let text = tokenizer.decode(&generated, true).map_err(|e| format!("cannot decode: {e}"))?;
        // Byte-level tokens may end inside a UTF-8 character: show only whole characters.
        if let Some(new) = text.strip_prefix(shown.as_str()).filter(|t| !t.ends_with('\u{fffd}')) {
            emit(new);
            shown = text;
        }
        if generated.len() < max_new_tokens {
            logits = stepper.step(next as i64)?;
        }
    }
    let stats = GenerationStats {
        prompt_tokens: prompt_ids.len(),
        new_tokens: generated.len(),
        prompt_ms,
        generate_ms: gen_start.elapsed().as_secs_f64() * 1e3,
        kv_cache: stepper.mode() == StepMode::KvCache,
    };
    Ok((generated, stats))
}

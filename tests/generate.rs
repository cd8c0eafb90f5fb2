//! Generation: the KV-cache path gives the same tokens as recomputing the whole sequence.

mod common;

use common::{fixture, numbered_word_tokenizer};
use rbe::generate::{generate, load_tokenizer, GenerateOptions, SamplingOptions};
use rbe_runtime::Session;

fn greedy(model: &std::path::Path, n: usize) -> (Vec<u32>, bool) {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = load_tokenizer(&numbered_word_tokenizer(dir.path(), 1000)).unwrap();
    let session = Session::load(model).unwrap();
    let mut text = String::new();
    let (ids, stats) =
        generate(&session, &tokenizer, "t464 t268 t758 t318", &GenerateOptions::greedy(n), &mut |p| text.push_str(p)).unwrap();
    assert_eq!(stats.new_tokens, ids.len());
    assert!(!text.is_empty() || ids.is_empty(), "nothing was streamed");
    (ids, stats.kv_cache)
}

#[test]
fn kv_cache_generation_equals_recomputation() {
    // 40 tokens: the cache is appended in place and outgrows its room more than once.
    let (cached, used_cache) = greedy(&fixture("gpt2_optimum_past"), 40);
    let (recomputed, used_cache_2) = greedy(&fixture("gpt2_legacy_op17"), 40);
    assert!(used_cache && !used_cache_2);
    assert_eq!(cached.len(), 40);
    assert_eq!(cached, recomputed, "same weights, same greedy tokens");
    // optimum's merged decoder: the first step and the cached steps run different If branches.
    let (merged, used_cache_3) = greedy(&fixture("gpt2_optimum_merged"), 40);
    assert!(used_cache_3);
    assert_eq!(merged, recomputed, "merged decoder, same greedy tokens");
}

#[test]
fn llama_kv_cache_generation_equals_recomputation() {
    let (cached, used_cache) = greedy(&fixture("llama_optimum_past"), 40);
    let (recomputed, _) = greedy(&fixture("llama_legacy_op17_mask"), 40);
    assert!(used_cache);
    assert_eq!(cached.len(), 40);
    assert_eq!(cached, recomputed, "same weights, same greedy tokens");
}

#[test]
fn sampling_is_reproducible_with_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = load_tokenizer(&numbered_word_tokenizer(dir.path(), 1000)).unwrap();
    let session = Session::load(&fixture("gpt2_optimum_past")).unwrap();
    let run = |seed| {
        let options = GenerateOptions { sampling: SamplingOptions { temperature: 1.0, top_k: 50, seed }, ..GenerateOptions::greedy(12) };
        generate(&session, &tokenizer, "t1 t2 t3", &options, &mut |_| {}).unwrap().0
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6), "different seeds should differ on flat logits");
}

#[test]
fn prompt_without_tokenizer_is_a_clean_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rbe-run"))
        .args([fixture("gpt2_optimum_past").to_str().unwrap(), "--prompt", "hello"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a tokenizer: --tokenizer"));
}

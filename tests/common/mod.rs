//! Helpers shared by the integration tests: fixtures, golden reference cases, comparisons.
#![allow(dead_code)]

pub mod suite;

use std::path::{Path, PathBuf};

use rbe_runtime::Tensor;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every committed GPT-2 fixture, by name.
pub const FIXTURES: &[&str] = &[
    "gpt2_legacy_op14",
    "gpt2_legacy_op14_mask",
    "gpt2_legacy_op17",
    "gpt2_legacy_op17_mask",
    "gpt2_dynamo_op18",
    "gpt2_dynamo_op18_mask",
    "gpt2_optimum_past",
    "gpt2_optimum_merged",
];

/// The committed tiny Llama-style fixtures (RMSNorm, RoPE, grouped-query attention, SwiGLU,
/// tied embeddings; tools/export_llama_fixtures.py): torch legacy and dynamo, optimum with past.
pub const LLAMA_FIXTURES: &[&str] = &["llama_legacy_op17_mask", "llama_dynamo_op18_mask", "llama_optimum_past"];

/// Path of a committed fixture.
pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(format!("{name}.onnx"))
}

/// One saved onnxruntime case: named inputs and expected outputs.
pub struct Case {
    pub name: String,
    pub inputs: Vec<(String, Tensor)>,
    pub outputs: Vec<(String, Tensor)>,
}

fn read_dir_npy(dir: &Path) -> Vec<(String, Tensor)> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "npy"))
        .collect();
    entries.sort();
    entries
        .into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            (name, rbe::npy::read(&p).unwrap())
        })
        .collect()
}

/// Every reference case saved for a fixture under `golden/refs/<fixture>/`.
pub fn cases(fixture: &str) -> Vec<Case> {
    cases_in(&root().join("golden/refs").join(fixture))
}

/// Every case directory (with `inputs/` and `outputs/`) under `dir`.
pub fn cases_in(dir: &Path) -> Vec<Case> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("inputs").is_dir())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|d| Case {
            name: d.file_name().unwrap().to_string_lossy().to_string(),
            inputs: read_dir_npy(&d.join("inputs")),
            outputs: read_dir_npy(&d.join("outputs")),
        })
        .collect()
}

/// Max |a - b| over two float tensors of the same shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape(), "shape mismatch");
    let (a, b) = (a.as_f32().unwrap(), b.as_f32().unwrap());
    a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// RMSE(a - b) / std(a).
pub fn rel_rmse(reference: &Tensor, candidate: &Tensor) -> f64 {
    let (a, b) = (reference.as_f32().unwrap(), candidate.as_f32().unwrap());
    let n = a.len() as f64;
    let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let mse = a.iter().zip(b.iter()).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum::<f64>() / n;
    (mse / var).sqrt()
}

/// Writes a word-level `tokenizer.json` whose words `t0`..`t{n-1}` are token ids 0..n, for
/// driving the tiny fixtures (vocab 1000) with text.
pub fn numbered_word_tokenizer(dir: &Path, n: usize) -> PathBuf {
    let vocab: Vec<String> = (0..n).map(|i| format!("\"t{i}\": {i}")).collect();
    let json = format!(
        r#"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
          "normalizer": null, "pre_tokenizer": {{"type": "Whitespace"}}, "post_processor": null,
          "decoder": null, "model": {{"type": "WordLevel", "vocab": {{{}}}, "unk_token": "t0"}}}}"#,
        vocab.join(", ")
    );
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, json).unwrap();
    path
}

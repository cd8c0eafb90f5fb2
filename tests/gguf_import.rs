//! GGUF import: the committed tiny random llama and qwen2 GGUFs (tools/gguf_fixture.py) convert to graphs
//! whose logits match PyTorch's (transformers loading the same GGUF) within 1e-3 relative, its
//! KV cache steps agree with the full pass, its tokenizer.json gives transformers' token ids,
//! and bad GGUF files are one-line errors.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use rbe::generate::Stepper;
use rbe_runtime::Session;

/// The fixtures: llama (interleaved Q/K rows, tied head), qwen2 (Q/K/V biases, untied head).
const MODELS: [&str; 2] = ["llama_tiny", "qwen2_tiny"];

fn gguf_of(model: &str) -> PathBuf {
    common::root().join(format!("tests/fixtures/{model}.gguf"))
}

fn refs_of(model: &str) -> PathBuf {
    common::root().join("golden/gguf").join(model)
}

fn gguf() -> PathBuf {
    gguf_of(MODELS[0])
}

fn convert(input: &Path, output: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rbe-convert")).arg(input).arg("-o").arg(output).args(extra).output().unwrap()
}

fn prompt(model: &str) -> (String, Vec<i64>) {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(refs_of(model).join("prompt.json")).unwrap()).unwrap();
    let ids = meta["input_ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    (meta["prompt"].as_str().unwrap().to_string(), ids)
}

/// `[seq, vocab]` rows of the reference logits.
fn reference_rows(model: &str) -> Vec<Vec<f32>> {
    let t = rbe::npy::read(&refs_of(model).join("logits.npy")).unwrap();
    let a = t.as_f32().unwrap();
    let vocab = a.shape()[2];
    a.iter().copied().collect::<Vec<f32>>().chunks(vocab).map(<[f32]>::to_vec).collect()
}

/// max |a − b| / max |b|.
fn relative(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    diff / b.iter().map(|y| y.abs()).fold(0f32, f32::max)
}

fn logits_rows(session: &Session, ids: &[i64]) -> Vec<Vec<f32>> {
    let feeds = rbe::feeds::token_feeds(session.inputs(), ids, Vec::new()).unwrap();
    let outputs = session.run(feeds).unwrap();
    let (_, logits) = outputs.into_iter().find(|(n, _)| n == "logits").unwrap();
    let a = logits.as_f32().unwrap();
    assert_eq!(a.shape()[..2], [1, ids.len()]);
    let vocab = a.shape()[2];
    a.iter().copied().collect::<Vec<f32>>().chunks(vocab).map(<[f32]>::to_vec).collect()
}

#[test]
fn plain_graph_matches_pytorch_and_its_tokenizer_matches_transformers() {
    for model in MODELS {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tiny.onnx");
        let run = convert(&gguf_of(model), &out, &[]);
        assert!(run.status.success(), "{model}: {}", String::from_utf8_lossy(&run.stderr));
        let table = String::from_utf8_lossy(&run.stdout);
        for t in ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K", "F16", "BF16", "F32"] {
            assert!(table.contains(&format!(" {t} ")), "{model}: the report names no {t} tensor:\n{table}");
        }
        let (text, ids) = prompt(model);
        let tokenizer = rbe::generate::load_tokenizer(&dir.path().join("tokenizer.json")).unwrap();
        let encoded = tokenizer.encode(text.as_str(), false).unwrap();
        let ours: Vec<i64> = encoded.get_ids().iter().map(|&i| i as i64).collect();
        assert_eq!(ours, ids, "{model}: tokenizer.json must tokenize like transformers' GGUF tokenizer");
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("tokenizer_config.json")).unwrap()).unwrap();
        let eos = config["eos_token"].as_str().unwrap_or_else(|| panic!("{model}: no eos_token in {config}"));
        assert_eq!(eos, "<|endoftext|>", "{model}: the fixture's tokenizer.ggml.eos_token_id names <|endoftext|>");
        let session = Session::load(&out).unwrap();
        let rows = logits_rows(&session, &ids);
        let rel = relative(&rows.concat(), &reference_rows(model).concat());
        assert!(rel < 1e-3, "{model}: logits differ from PyTorch by {rel} relative");
    }
}

#[test]
fn kv_cache_steps_match_the_full_pass() {
    for model in MODELS {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tiny.onnx");
        assert!(convert(&gguf_of(model), &out, &[]).status.success());
        let session = Session::load(&out).unwrap();
        let (_, ids) = prompt(model);
        let reference = reference_rows(model);
        let mut stepper = Stepper::new(&session).unwrap();
        assert_eq!(stepper.mode(), rbe::generate::StepMode::KvCache);
        let split = ids.len() - 8;
        let last = stepper.prefill(&ids[..split]).unwrap();
        assert!(relative(&last, &reference[split - 1]) < 1e-3);
        for (pos, &id) in ids.iter().enumerate().skip(split) {
            let row = stepper.step(id).unwrap();
            let rel = relative(&row, &reference[pos]);
            assert!(rel < 1e-3, "{model}: step at position {pos}: {rel} relative");
        }
    }
}

#[test]
fn encoded_container_reports_source_types_and_stays_close() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny.rbeonnx");
    let report = dir.path().join("report.json");
    let run = convert(&gguf(), &out, &["--preset", "q8", "--report", report.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let rows = json["tensors"].as_array().unwrap();
    let typed = |name: &str| rows.iter().find(|r| r["name"].as_str().unwrap().contains(name)).unwrap()["source_type"].clone();
    assert_eq!(typed("blk.0.ffn_down.weight"), "Q4_K");
    assert_eq!(typed("blk.2.ffn_down.weight"), "Q6_K");
    assert_eq!(typed("token_embd.weight"), "Q8_0");
    let session = Session::load(&out).unwrap();
    let (_, ids) = prompt(MODELS[0]);
    let rows = logits_rows(&session, &ids);
    let reference = reference_rows(MODELS[0]);
    let top1 = |r: &[f32]| r.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    let agree = rows.iter().zip(&reference).filter(|(a, b)| top1(a) == top1(b)).count();
    assert!(agree * 10 >= ids.len() * 9, "q8 top-1 agrees on {agree} of {} positions", ids.len());
    let (ours, theirs) = (rows.concat(), reference.concat());
    let mse = ours.iter().zip(&theirs).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / ours.len() as f64;
    let mean = theirs.iter().map(|&b| b as f64).sum::<f64>() / theirs.len() as f64;
    let var = theirs.iter().map(|&b| (b as f64 - mean).powi(2)).sum::<f64>() / theirs.len() as f64;
    let rel_rmse = (mse / var).sqrt();
    assert!(rel_rmse < 0.05, "q8 logits: relative RMSE {rel_rmse}");
}

#[test]
fn refuses_to_replace_a_tokenizer_json_without_force() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
    let out = dir.path().join("tiny.onnx");
    let run = convert(&gguf(), &out, &[]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("--force"));
    assert!(!out.exists());
    assert_eq!(std::fs::read_to_string(dir.path().join("tokenizer.json")).unwrap(), "{}");
}

#[test]
fn bad_gguf_files_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(gguf()).unwrap();
    let mut wrong_magic = good.clone();
    wrong_magic[..4].copy_from_slice(b"GGUL");
    let mut absurd_count = good.clone();
    absurd_count[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("truncated", good[..good.len() / 2].to_vec(), "truncated"),
        ("magic", wrong_magic, "not a GGUF"),
        ("count", absurd_count, "beyond the limit"),
        ("empty", Vec::new(), "truncated"),
    ];
    for (name, bytes, message) in cases {
        let input = dir.path().join(format!("{name}.gguf"));
        std::fs::write(&input, bytes).unwrap();
        let run = convert(&input, &dir.path().join(format!("{name}.onnx")), &[]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(message) && stderr.trim().lines().count() == 1, "{name}: {stderr}");
    }
}

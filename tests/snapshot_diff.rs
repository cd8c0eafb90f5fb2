//! snapshot-diff from the command line: tables and verdicts on every fixture vs its q4
//! conversion, saved inputs against onnxruntime, text perplexity, golden checks, the HTML
//! report, interruption, and bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{fixture, root, FIXTURES};
use rbe::codec::EncodeParams;
use rbe::convert::{convert_file, Progress};
use serde_json::Value;

fn snapshot_diff(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snapshot-diff")).args(args).output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Converts a fixture with a preset into `dir/<fixture>.<preset>.rbeonnx`; also writes the
/// converter's report as `dir/<fixture>.<preset>.json`.
fn convert(dir: &Path, name: &str, preset: &str) -> PathBuf {
    let params = EncodeParams::preset(preset).unwrap();
    let (bytes, report) = convert_file(&fixture(name), &params, preset, 3, &Progress::none()).unwrap();
    let path = dir.join(format!("{name}.{preset}.rbeonnx"));
    std::fs::write(&path, bytes).unwrap();
    std::fs::write(dir.join(format!("{name}.{preset}.json")), serde_json::to_vec(&report).unwrap()).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

#[test]
fn every_fixture_and_preset_passes_loose_limits_and_fails_impossible_ones() {
    let dir = tempfile::tempdir().unwrap();
    for (name, preset) in FIXTURES.iter().flat_map(|n| ["q8", "q4", "q3"].map(|p| (n, p))) {
        let original = fixture(name);
        let converted = convert(dir.path(), name, preset);
        let loose = ["--min-top1", "50%", "--max-kl", "0.5", "--max-rel-rmse", "1"];
        let out = snapshot_diff(&[&[s(&original), s(&converted)][..], &loose[..]].concat());
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{name}/{preset}: {text}{}", stderr(&out));
        for needle in ["converted vs original", "max|diff|", "rel_rmse", "cosine", "top-1", "KL nats", "result: PASS"] {
            assert!(text.contains(needle), "{name}: '{needle}' not in\n{text}");
        }
        assert!(text.contains("\nlogits "), "{name}: no logits row\n{text}");
        assert!(text.contains("4 random sequences of 64 tokens (seed 0, vocab 1000)"), "{text}");

        let out = snapshot_diff(&[s(&original), s(&converted), "--max-kl", "0", "--min-top1", "1.01"]);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(1), "{name}/{preset}: {text}{}", stderr(&out));
        assert!(text.contains("FAIL top-1 of logits") && text.contains("FAIL KL of logits"), "{text}");
        assert!(text.contains("result: FAIL (top-1 of logits; KL of logits"), "{text}");
    }
}

#[test]
fn a_model_against_itself_is_perfect() {
    let model = fixture("gpt2_legacy_op17");
    let out = snapshot_diff(&[s(&model), s(&model), "--json", "--min-top1", "1", "--max-kl", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    let logits = &v["comparisons"][0]["outputs"][0];
    assert_eq!(logits["name"], "logits");
    assert_eq!(logits["max_abs_diff"], 0.0);
    assert_eq!(logits["top1"], 1.0);
    assert_eq!(logits["kl"], 0.0);
    assert_eq!(logits["positions"], 4 * 64);
    assert_eq!(v["passed"], true);
}

/// `--int8-activations` runs the converted side's compressed matmuls (prompt GEMMs included)
/// on int8 activations: a q4 model against itself then differs, by that rounding only.
#[test]
fn int8_activations_apply_to_the_converted_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = convert(dir.path(), "gpt2_legacy_op17", "q4");
    let run = |extra: &[&str]| {
        let out = snapshot_diff(&[&[s(&model), s(&model), "--json"], extra].concat());
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        json(&out)["comparisons"][0]["outputs"][0].clone()
    };
    let (exact, int8) = (run(&[]), run(&["--int8-activations"]));
    assert_eq!(exact["max_abs_diff"], 0.0);
    let diff = int8["max_abs_diff"].as_f64().unwrap();
    assert!(diff > 0.0, "int8 activations changed nothing");
    assert!(int8["cosine"].as_f64().unwrap() > 0.999, "{int8}");
}

#[test]
fn saved_inputs_are_compared_with_onnxruntime_too() {
    let dir = tempfile::tempdir().unwrap();
    // A padded batch (the padded positions are not compared) and a generation step with a past.
    for (name, case, positions) in
        [("gpt2_legacy_op17_mask", "b2_s16_leftpad", 2 * 16 - 5), ("gpt2_optimum_past", "step_b1_past7", 1)]
    {
        let converted = convert(dir.path(), name, "q8");
        let case_dir = root().join("golden/refs").join(name).join(case);
        let out = snapshot_diff(&[
            s(&fixture(name)),
            s(&converted),
            "--inputs",
            s(&case_dir.join("inputs")),
            "--reference",
            s(&case_dir.join("outputs")),
            "--json",
        ]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        let v = json(&out);
        assert_eq!(v["inputs"]["source"], format!("saved inputs {name}/{case}/inputs"));
        let comparisons = v["comparisons"].as_array().unwrap();
        let names: Vec<&str> = comparisons.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["converted vs original", "original vs onnxruntime", "converted vs onnxruntime"]);
        for output in comparisons[1]["outputs"].as_array().unwrap() {
            let diff = output["max_abs_diff"].as_f64().unwrap();
            assert!(diff <= 1e-4, "{name}: {} differs from onnxruntime by {diff}", output["name"]);
        }
        let logits = &comparisons[0]["outputs"][0];
        assert_eq!(logits["positions"], positions, "{name}");
        if name == "gpt2_optimum_past" {
            let outputs: Vec<&str> =
                comparisons[0]["outputs"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
            assert!(outputs.contains(&"present.1.value"), "{outputs:?}");
        }
    }
}

/// A word-level tokenizer.json whose ids fit the fixtures' vocabulary of 1000.
fn word_tokenizer(dir: &Path) -> PathBuf {
    let words: Vec<String> = (0..200).map(|i| format!("\"w{i}\": {}", i * 5)).collect();
    let json = format!(
        r#"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
          "normalizer": null, "pre_tokenizer": {{"type": "Whitespace"}}, "post_processor": null,
          "decoder": null, "model": {{"type": "WordLevel", "vocab": {{{}, "[UNK]": 999}}, "unk_token": "[UNK]"}}}}"#,
        words.join(", ")
    );
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, json).unwrap();
    path
}

#[test]
fn a_text_gives_perplexity_over_windows() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = word_tokenizer(dir.path());
    let text = dir.path().join("eval.txt");
    // 100 words: windows of 32 tokens give 32 + 32 + 32 + 4 tokens, 31 * 3 + 3 = 96 predictions.
    let words: Vec<String> = (0..100).map(|i| format!("w{}", (i * 37) % 201)).collect();
    std::fs::write(&text, words.join(" ")).unwrap();
    let name = "gpt2_dynamo_op18";
    let converted = convert(dir.path(), name, "q3");
    let original = fixture(name);
    let args = [s(&original), s(&converted), "--text", s(&text), "--tokenizer", s(&tokenizer), "--window", "32"];
    let out = snapshot_diff(&[&args[..], &["--json", "--max-ppl-increase", "50%"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    let p = &v["perplexity"];
    assert_eq!((p["windows"].as_u64(), p["predicted_tokens"].as_u64()), (Some(4), Some(96)));
    assert_eq!(v["inputs"]["tokens"], 100);
    let (a, b) = (p["original"].as_f64().unwrap(), p["converted"].as_f64().unwrap());
    // Random weights: nearly uniform over 1000 tokens.
    assert!(a > 500.0 && a < 2000.0 && b > 500.0 && b < 2000.0, "{p}");
    assert!((p["increase"].as_f64().unwrap() - (b / a - 1.0)).abs() < 1e-12);
    assert!(v["inputs"]["source"].as_str().unwrap().starts_with("text eval.txt bytes 0.."));

    let out = snapshot_diff(&[&args[..], &["--max-ppl-increase=-100%"]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text_out = stdout(&out);
    assert!(text_out.contains("perplexity: original") && text_out.contains("FAIL perplexity increase"), "{text_out}");
}

#[test]
fn golden_check_passes_on_the_same_conversion_and_fails_on_a_worse_one() {
    let dir = tempfile::tempdir().unwrap();
    let name = "gpt2_legacy_op14";
    let original = fixture(name);
    let q8 = convert(dir.path(), name, "q8");
    let q3 = convert(dir.path(), name, "q3");
    let golden = dir.path().join("golden.json");
    let out = snapshot_diff(&[s(&original), s(&q8), "--save", s(&golden)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let saved: Value = serde_json::from_slice(&std::fs::read(&golden).unwrap()).unwrap();
    assert_eq!(saved["label"], format!("{name}.q8"));

    let out = snapshot_diff(&[s(&original), s(&q8), "--check", s(&golden)]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains("ok   kl of logits (converted vs original) vs snapshot"), "{text}");

    let out = snapshot_diff(&[s(&original), s(&q3), "--check", s(&golden)]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(text.contains("FAIL kl of logits (converted vs original) vs snapshot"), "{text}");

    // Other inputs than the snapshot's are bad input, not a verdict.
    let out = snapshot_diff(&[s(&original), s(&q8), "--check", s(&golden), "--seed", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("the snapshot was measured on"), "{}", stderr(&out));
}

#[test]
fn html_reports_are_self_contained() {
    let dir = tempfile::tempdir().unwrap();
    let name = "gpt2_legacy_op17";
    let mut runs = Vec::new();
    for preset in ["q8", "q4"] {
        let converted = convert(dir.path(), name, preset);
        let run = dir.path().join(format!("{preset}.json"));
        let html = dir.path().join(format!("{preset}.html"));
        let report = dir.path().join(format!("{name}.{preset}.json"));
        // One run saved as a snapshot, the other as --json output: `report` reads both.
        let save = if preset == "q8" { vec!["--save", s(&run)] } else { vec!["--json"] };
        let original = fixture(name);
        let args = [s(&original), s(&converted), "--html", s(&html), "--convert-report", s(&report)];
        let out = snapshot_diff(&[&args[..], &save[..]].concat());
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        if preset != "q8" {
            std::fs::write(&run, &out.stdout).unwrap();
        }
        let page = std::fs::read_to_string(&html).unwrap();
        assert!(page.contains("<svg") && page.contains("model.transformer.h.0"), "no tensor chart");
        runs.push(run);
    }
    let page = dir.path().join("all.html");
    let out = snapshot_diff(&["report", s(&runs[0]), s(&runs[1]), "-o", s(&page)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let page = std::fs::read_to_string(&page).unwrap();
    assert!(page.contains(&format!("{name}.q8")) && page.contains(&format!("{name}.q4")));
    assert!(page.contains("Top-1 agreement") && page.contains("Mean KL"));
    assert!(!page.contains("Perplexity increase"), "no text, no perplexity chart");
    assert!(!page.contains("<script") && !page.contains("<link") && !page.contains("src="));
}

#[test]
fn ctrl_c_stops_after_the_current_window_with_a_partial_report() {
    let model = fixture("gpt2_legacy_op17");
    let child = Command::new(env!("CARGO_BIN_EXE_snapshot-diff"))
        .args([s(&model), s(&model), "--sequences", "100000", "--window", "16", "--min-top1", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(130), "{text}{}", stderr(&out));
    assert!(text.contains("result: PARTIAL"), "{text}");
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    let runs: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("measured: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no run count in {text}"));
    assert!(runs > 0 && runs < 100_000, "{runs} runs");
}

#[test]
fn bad_input_is_a_one_line_error_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("gpt2_legacy_op17");
    let m = s(&model);
    let garbage = dir.path().join("garbage.rbeonnx");
    std::fs::write(&garbage, b"RBE\0 not really a container").unwrap();
    let not_json = dir.path().join("snap.json");
    std::fs::write(&not_json, "not json").unwrap();
    let missing = dir.path().join("missing.onnx");
    let inputs = root().join("golden/refs/gpt2_legacy_op17/b1_s7/inputs");
    let tokenizer = word_tokenizer(dir.path());
    let (nope, html) = (dir.path().join("nope"), dir.path().join("r.html"));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![m], "usage"),
        (vec![s(&missing), m], "cannot load"),
        (vec![m, s(&garbage)], "cannot load"),
        (vec![m, m, "--inputs", s(dir.path())], "no .npy files"),
        (vec![m, m, "--inputs", s(&nope)], "cannot read folder"),
        (vec![m, m, "--reference", s(&inputs)], "--reference needs --inputs"),
        (vec![m, m, "--inputs", s(&inputs), "--reference", s(&inputs)], "no output input_ids"),
        (vec![m, m, "--text", s(&missing), "--tokenizer", s(&tokenizer)], "cannot read text"),
        (vec![m, m, "--text", s(&tokenizer)], "--text and --tokenizer go together"),
        (vec![m, m, "--text", s(&not_json), "--tokenizer", s(&not_json)], "cannot load tokenizer"),
        (vec![m, m, "--window", "500"], "pass a smaller --window"),
        (vec![m, m, "--max-ppl-increase", "2%"], "--max-ppl-increase needs --text"),
        (vec![m, m, "--min-top1", "high"], "not a number or a percentage"),
        (vec![m, m, "--check", s(&not_json)], "not a snapshot-diff report"),
        (vec![m, m, "--window", "x"], "invalid value 'x'"),
        (vec![m, m, "--vocab", "5000"], "the original model failed on run 1"),
        (vec!["report", "-o", s(&html)], "at least one run"),
    ];
    for (args, needle) in cases {
        let out = snapshot_diff(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}{}", stdout(&out));
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: not one line: {err}");
        assert!(err.contains(needle), "{args:?}: '{needle}' not in {err}");
    }
}

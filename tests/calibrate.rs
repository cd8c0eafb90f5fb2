//! Calibrated conversion (`--calibrate`): linear layers encoded with error feedback under
//! their inputs' statistics fit the model's outputs on the calibration windows better than
//! round-to-nearest at the same bytes; the rest of the pipeline is unchanged.

mod common;

use std::process::Command;

use common::{fixture, numbered_word_tokenizer, rel_rmse};
use rbe::calibrate::Calibration;
use rbe::codec::{EncodeParams, DEFAULT_DAMP};
use rbe::convert::{convert_file_with, ConvertReport, Progress};
use rbe::diff::inputs::random_sequences;
use rbe::feeds::token_feeds;
use rbe_runtime::Session;

/// Converts `name` at `preset`, calibrated on `calibration` or not; the loaded session and report.
fn converted(name: &str, preset: &str, calibration: Option<&Calibration>) -> (Session, ConvertReport) {
    let params = EncodeParams::preset(preset).unwrap();
    let (bytes, report) = convert_file_with(&fixture(name), &params, preset, 3, &Progress::none(), calibration).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.rbeonnx");
    std::fs::write(&path, bytes).unwrap();
    (Session::load(&path).unwrap(), report)
}

/// Mean relative RMSE of the logits of `candidate` against `original` over `windows`.
fn logits_error(original: &Session, candidate: &Session, windows: &[Vec<i64>]) -> f64 {
    let logits = |s: &Session, ids: &[i64]| {
        let out = s.run(token_feeds(s.inputs(), ids, Vec::new()).unwrap()).unwrap();
        out.into_iter().find(|(n, _)| n == "logits").unwrap().1
    };
    let total: f64 = windows.iter().map(|w| rel_rmse(&logits(original, w), &logits(candidate, w))).sum();
    total / windows.len() as f64
}

#[test]
fn calibrated_q3_fits_the_calibration_windows_better_at_the_same_size() {
    let name = "gpt2_legacy_op17";
    let windows = random_sequences(8, 64, 1000, 7);
    let calibration = Calibration { windows: windows.clone(), tick: &|| {}, damp: DEFAULT_DAMP, act_order: false, goal: None };
    let (plain, plain_report) = converted(name, "q3", None);
    let (fed, fed_report) = converted(name, "q3", Some(&calibration));
    let linears: Vec<_> = fed_report.tensors.iter().filter(|t| t.mode.ends_with("+gptq")).collect();
    // 4 per layer (2 layers) and the LM head.
    assert!(linears.len() >= 9, "{} calibrated tensors", linears.len());
    assert!(fed_report.encoded_weights_bytes <= plain_report.encoded_weights_bytes);
    let original = Session::load(&fixture(name)).unwrap();
    let (e_plain, e_fed) = (logits_error(&original, &plain, &windows), logits_error(&original, &fed, &windows));
    assert!(e_fed < 0.9 * e_plain, "logits rel RMSE: calibrated {e_fed:.4} vs round-to-nearest {e_plain:.4}");
}

#[test]
fn calibrate_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = numbered_word_tokenizer(dir.path(), 1000);
    let text = dir.path().join("calib.txt");
    let words: Vec<String> = (0..300).map(|i| format!("t{}", (i * 37) % 1000)).collect();
    std::fs::write(&text, words.join(" ")).unwrap();
    let out_path = dir.path().join("m.rbeonnx");
    let run = |extra: &[&str]| {
        let mut args = vec![fixture("gpt2_optimum_past").to_string_lossy().to_string(), "-o".into()];
        args.push(out_path.to_string_lossy().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        Command::new(env!("CARGO_BIN_EXE_rbe-convert")).args(&args).output().unwrap()
    };
    let ok = run(&["--calibrate", text.to_str().unwrap(), "--tokenizer", tokenizer.to_str().unwrap(), "--calib-window", "64"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("dense+gptq"));
    let session = Session::load(&out_path).unwrap();
    session.run(token_feeds(session.inputs(), &[1, 2, 3], Vec::new()).unwrap()).unwrap();
    for (args, needle) in [
        (vec!["--force", "--calibrate", text.to_str().unwrap()], "--calibrate needs --tokenizer"),
        (vec!["--force", "--tokenizer", tokenizer.to_str().unwrap()], "--tokenizer is used with --calibrate"),
        (vec!["--force", "--calibrate", "/nonexistent.txt", "--tokenizer", tokenizer.to_str().unwrap()], "cannot read text"),
    ] {
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(needle), "'{needle}' not in {stderr}");
    }
}

#[test]
fn windows_come_from_each_text_in_turn_within_the_budget_and_every_fourth_is_held_out() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = numbered_word_tokenizer(dir.path(), 1000);
    let text = |name: &str, words: usize, start: usize| {
        let path = dir.path().join(name);
        let words: Vec<String> = (start..start + words).map(|i| format!("t{}", i % 1000)).collect();
        std::fs::write(&path, words.join(" ")).unwrap();
        path
    };
    let texts = [text("a.txt", 25, 0), text("b.txt", 50, 500)];
    let c = Calibration::from_texts(&texts, &tokenizer, Some(10), 4096, &|| {}).unwrap();
    let lengths: Vec<usize> = c.windows.iter().map(Vec::len).collect();
    // A window never spans two texts: the first text's last window is short.
    assert_eq!(lengths, [10, 10, 5, 10, 10, 10, 10, 10]);
    assert!(c.windows[3].iter().all(|&id| id >= 500), "{:?}", c.windows[3]);
    let (fit, held) = c.held_out().unwrap();
    assert_eq!(held, [c.windows[3].clone(), c.windows[7].clone()]);
    assert_eq!(fit.len(), 6);
    assert!(!fit.contains(&c.windows[3]) && fit.contains(&c.windows[6]));
    let capped = Calibration::from_texts(&texts, &tokenizer, Some(10), 32, &|| {}).unwrap();
    assert_eq!(capped.tokens(), 32);
    assert_eq!(capped.windows.len(), 4);
    let two = Calibration { windows: c.windows[..2].to_vec(), ..capped };
    assert_eq!(two.held_out().unwrap().1, [c.windows[1].clone()], "fewer than 4 windows: the last is held out");
}

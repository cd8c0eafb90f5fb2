//! Accuracy-targeted bit allocation (`--target-kl`, `--min-top1`, `--avg-bpw`): the converted
//! model meets its target on windows the allocation never saw, in fewer bytes than encoding
//! every weight at the widest width, and a byte budget is kept.

mod common;

use std::process::Command;

use common::{fixture, numbered_word_tokenizer};
use rbe::allocate::{AllocationReport, Goal, Target};
use rbe::calibrate::Calibration;
use rbe::codec::{EncodeParams, DEFAULT_DAMP};
use rbe::convert::{convert_file_with, ConvertReport, Progress};
use rbe::diff::inputs::random_sequences;
use rbe::diff::metrics::{argmax, kl_divergence};
use rbe::feeds::token_feeds;
use rbe_runtime::Session;

const FIXTURE: &str = "gpt2_legacy_op17";

/// Converts the fixture for `target`, calibrated on `windows` (every fourth held out).
fn allocated(windows: &[Vec<i64>], target: Target) -> (Session, ConvertReport, AllocationReport) {
    allocated_in(windows, target, vec![2, 3, 4, 6, 8], vec![32])
}

/// [`allocated`], choosing from `widths` and `groups`.
fn allocated_in(windows: &[Vec<i64>], target: Target, widths: Vec<u8>, groups: Vec<usize>) -> (Session, ConvertReport, AllocationReport) {
    let goal = Goal { target, widths, groups, on_step: &|_| {} };
    let calibration = Calibration { windows: windows.to_vec(), tick: &|| {}, damp: DEFAULT_DAMP, act_order: false, goal: Some(goal) };
    let params = EncodeParams::preset("q4").unwrap();
    let (bytes, report) = convert_file_with(&fixture(FIXTURE), &params, "q4", 3, &Progress::none(), Some(&calibration)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.rbeonnx");
    std::fs::write(&path, bytes).unwrap();
    let allocation = report.allocation.clone().expect("an allocation report");
    (Session::load(&path).unwrap(), report, allocation)
}

/// The windows an allocation holds out of its statistics and search.
fn held_out(windows: &[Vec<i64>]) -> Vec<Vec<i64>> {
    let calibration = Calibration { windows: windows.to_vec(), tick: &|| {}, damp: DEFAULT_DAMP, act_order: false, goal: None };
    calibration.held_out().unwrap().1
}

/// Mean KL to the original and top-1 agreement over every position of `windows`, measured here.
fn kl_and_top1(original: &Session, candidate: &Session, windows: &[Vec<i64>]) -> (f64, f64) {
    let logits = |s: &Session, ids: &[i64]| -> Vec<f32> {
        let out = s.run(token_feeds(s.inputs(), ids, Vec::new()).unwrap()).unwrap();
        out.into_iter().find(|(n, _)| n == "logits").unwrap().1.as_f32().unwrap().iter().copied().collect()
    };
    let (mut kl, mut agree, mut rows) = (0.0, 0, 0);
    for w in windows {
        let (p, q) = (logits(original, w), logits(candidate, w));
        let vocab = p.len() / w.len();
        for (a, b) in p.chunks(vocab).zip(q.chunks(vocab)) {
            kl += kl_divergence(a, b);
            agree += usize::from(argmax(a) == argmax(b));
            rows += 1;
        }
    }
    (kl / rows as f64, agree as f64 / rows as f64)
}

#[test]
fn a_kl_target_holds_on_held_out_windows_in_fewer_bytes_than_the_widest_width() {
    let windows = random_sequences(8, 48, 1000, 11);
    let held_out = &held_out(&windows);
    let original = Session::load(&fixture(FIXTURE)).unwrap();
    let (widest, _, widest_report) = allocated(&windows, Target::Bpw(100.0));
    assert!(widest_report.chosen.iter().all(|c| c.bits == 8), "an unlimited budget takes the widest width");
    let (kl_widest, _) = kl_and_top1(&original, &widest, held_out);
    let target = kl_widest * 20.0;
    let (session, report, allocation) = allocated(&windows, Target::Kl(target));
    assert!(allocation.met, "{}", allocation.summary());
    assert_eq!(allocation.check_tokens, 2 * 48);
    let (kl, _) = kl_and_top1(&original, &session, held_out);
    assert!((kl - allocation.measured.kl).abs() <= 1e-3 * kl.max(1e-6) + 1e-9, "report {} vs measured {kl}", allocation.measured.kl);
    assert!(kl <= target, "held-out KL {kl} over the target {target}");
    assert!(allocation.bits_per_weight < widest_report.bits_per_weight - 1.0, "{}", allocation.summary());
    let stored: usize = report.tensors.iter().filter(|t| t.mode != "raw").map(|t| t.bytes).sum();
    assert_eq!(stored, report.encoded_weights_bytes);
    // Every model run is in the trace: the probes (one per kind and the baseline), the search, the check.
    assert!(allocation.trace.iter().any(|s| s.stage == "check"));
    assert_eq!(allocation.trace.iter().filter(|s| s.stage == "probe").count(), allocation.sensitivity.len() + 1);
}

#[test]
fn a_top1_target_holds_on_held_out_windows() {
    let windows = random_sequences(8, 48, 1000, 12);
    let original = Session::load(&fixture(FIXTURE)).unwrap();
    let (session, _, allocation) = allocated(&windows, Target::Top1(0.9));
    assert!(allocation.met, "{}", allocation.summary());
    let (_, top1) = kl_and_top1(&original, &session, &held_out(&windows));
    assert!(top1 >= 0.9, "held-out top-1 {top1}");
    assert!(allocation.bits_per_weight < 8.0, "{:#?}", allocation.trace);
}

#[test]
fn group_lengths_are_chosen_too_and_mixed_groups_decode() {
    let windows = random_sequences(8, 48, 1000, 14);
    let original = Session::load(&fixture(FIXTURE)).unwrap();
    let (all_short, short_report, _) = allocated_in(&windows, Target::Bpw(100.0), vec![4], vec![32, 64]);
    let weights: usize = short_report.tensors.iter().filter(|t| t.mode != "raw").map(|t| t.weights).sum();
    let short_bpw = short_report.encoded_weights_bytes as f64 * 8.0 / weights as f64;
    // Just below every weight in groups of 32: some weights must take groups of 64.
    let budget = short_bpw - 0.05;
    let (mixed, report, allocation) = allocated_in(&windows, Target::Bpw(budget), vec![4], vec![32, 64]);
    assert!(report.encoded_weights_bytes as f64 * 8.0 <= budget * weights as f64, "{}", allocation.summary());
    assert!(allocation.chosen.iter().any(|c| c.group == 64), "{}", allocation.summary());
    assert!(allocation.chosen.iter().any(|c| c.group == 32), "{}", allocation.summary());
    assert!(allocation.summary().contains("in groups of 64"), "{}", allocation.summary());
    let (kl_short, _) = kl_and_top1(&original, &all_short, &held_out(&windows));
    let (kl_mixed, _) = kl_and_top1(&original, &mixed, &held_out(&windows));
    assert!(kl_mixed.is_finite() && kl_mixed < 10.0 * kl_short.max(1e-4), "mixed {kl_mixed} vs groups of 32 {kl_short}");
}

#[test]
fn a_byte_budget_is_kept_and_a_larger_one_buys_accuracy() {
    let windows = random_sequences(8, 48, 1000, 13);
    let original = Session::load(&fixture(FIXTURE)).unwrap();
    let (small, small_report, small_alloc) = allocated(&windows, Target::Bpw(3.5));
    let (large, _, large_alloc) = allocated(&windows, Target::Bpw(6.0));
    let weights: usize = small_report.tensors.iter().filter(|t| t.mode != "raw").map(|t| t.weights).sum();
    assert!(small_report.encoded_weights_bytes as f64 * 8.0 <= 3.5 * weights as f64, "{}", small_alloc.summary());
    assert!(small_alloc.met);
    assert!(large_alloc.bits_per_weight <= 6.0 && large_alloc.bits_per_weight > small_alloc.bits_per_weight);
    let (kl_small, _) = kl_and_top1(&original, &small, &held_out(&windows));
    let (kl_large, _) = kl_and_top1(&original, &large, &held_out(&windows));
    assert!(kl_large < kl_small, "KL at 6 bpw {kl_large} vs at 3.5 bpw {kl_small}");
}

#[test]
fn allocation_flags_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = numbered_word_tokenizer(dir.path(), 1000);
    let text = dir.path().join("calib.txt");
    let words: Vec<String> = (0..200).map(|i| format!("t{}", (i * 37) % 1000)).collect();
    std::fs::write(&text, words.join(" ")).unwrap();
    let out_path = dir.path().join("m.rbeonnx");
    let report_path = dir.path().join("r.json");
    let run = |extra: &[&str]| {
        let mut args = vec![fixture(FIXTURE).to_string_lossy().to_string(), "-o".into(), out_path.to_string_lossy().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Command::new(env!("CARGO_BIN_EXE_rbe-convert")).args(&args).output().unwrap()
    };
    let (t, k) = (text.to_str().unwrap(), tokenizer.to_str().unwrap());
    let report = report_path.to_str().unwrap();
    let ok = run(&["--calibrate", t, "--tokenizer", k, "--calib-window", "50", "--avg-bpw", "4", "--widths", "3,4,5", "--report", report]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("allocation for average bits per weight <= 4"));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert!(json["allocation"]["chosen"].as_array().is_some_and(|c| !c.is_empty()));
    // snapshot-diff's HTML report plots every model run of the allocation.
    let html = dir.path().join("r.html");
    let diff = Command::new(env!("CARGO_BIN_EXE_snapshot-diff"))
        .args([fixture(FIXTURE).to_str().unwrap(), out_path.to_str().unwrap(), "--html", html.to_str().unwrap(), "--convert-report", report])
        .output()
        .unwrap();
    assert!(diff.status.success(), "{}", String::from_utf8_lossy(&diff.stderr));
    let page = std::fs::read_to_string(&html).unwrap();
    let runs = json["allocation"]["trace"].as_array().map_or(0, Vec::len);
    assert!(page.contains(&format!("Allocation ({runs} model runs)")), "no allocation plot");
    assert!(page.contains("held-out check"));
    for (args, needle) in [
        (vec!["--force", "--target-kl", "0.1"], "measure the model on --calibrate"),
        (vec!["--force", "--calibrate", t, "--tokenizer", k, "--target-kl=-1"], "out of range"),
        (vec!["--force", "--calibrate", t, "--tokenizer", k, "--min-top1", "0.9", "--widths", "3,9"], "widths must be in 2..=8"),
        (vec!["--force", "--calibrate", t, "--tokenizer", k, "--min-top1", "0.9", "--groups", "32,12"], "groups must be multiples of 8"),
        (vec!["--force", "--groups", "32,64"], "--groups is for an allocation"),
        (vec!["--force", "--calibrate", t, "--tokenizer", k, "--calib-window", "512", "--target-kl", "0.1"], "at least 2 calibration windows"),
    ] {
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(needle), "'{needle}' not in {stderr}");
    }
}

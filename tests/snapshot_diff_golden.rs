//! Golden accuracy snapshots: every fixture x preset (q8, q4, q3), converted and compared
//! with its original on 4 seeded random sequences of 64 tokens; the metrics must lie within
//! 1% (of their distance from the ideal value) of `golden/snapshots/<fixture>.<preset>.json`,
//! in either direction, and name the same outputs and metrics. The tolerance absorbs the
//! float rounding that differs between kernels (AVX-512, AVX2, portable); a codec change
//! moves the metrics by far more.
//!
//! Update after an intended change: `RBE_UPDATE_GOLDEN=1 cargo test --release --test
//! snapshot_diff_golden`, then review the diff of the .json files and commit them (the same
//! files `snapshot-diff --save` writes and `--check` reads).

mod common;

use std::sync::atomic::AtomicBool;

use common::{fixture, root};
use indicatif::ProgressBar;
use rbe::codec::EncodeParams;
use rbe::convert::{convert_file, Progress};
use rbe::diff::golden::{self, Tolerance};
use rbe_runtime::kernels::qmm::Activations;
use rbe::diff::{Job, Source};

/// How far a metric may move from its snapshot: 1% of its gap to the ideal, at least 1e-6.
const TOLERANCE: Tolerance = Tolerance { relative: 0.01, absolute: 1e-6 };

fn golden_metrics(name: &str, preset: &str) {
    let dir = tempfile::tempdir().unwrap();
    let params = EncodeParams::preset(preset).unwrap();
    let (bytes, _) = convert_file(&fixture(name), &params, preset, 3, &Progress::none()).unwrap();
    let converted = dir.path().join(format!("{name}.{preset}.rbeonnx"));
    std::fs::write(&converted, bytes).unwrap();
    let job = Job {
        original: fixture(name),
        converted,
        source: Source::Random { sequences: 4, len: 64, seed: 0, vocab: None },
        reference: None,
        label: None,
        activations: Activations::Exact,
        series: None,
    };
    let report = rbe::diff::run(&job, &AtomicBool::new(false), &ProgressBar::hidden()).unwrap();
    let path = root().join("golden/snapshots").join(format!("{name}.{preset}.json"));
    if std::env::var_os("RBE_UPDATE_GOLDEN").is_some() {
        golden::save(&path, &report).unwrap();
        return;
    }
    let snapshot = golden::load(&path).unwrap();
    assert_eq!(
        (&snapshot.label, &snapshot.original, &snapshot.converted),
        (&report.label, &report.original, &report.converted),
        "{}",
        path.display()
    );
    let checks = golden::within(&snapshot, &report, TOLERANCE).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let failed: Vec<String> = checks.iter().filter(|c| !c.ok).map(|c| c.describe()).collect();
    assert!(failed.is_empty(), "{} moved:\n{}", path.display(), failed.join("\n"));
}

macro_rules! golden_tests {
    ($($test:ident: $name:literal, $preset:literal;)*) => {
        $(
            #[test]
            fn $test() {
                golden_metrics($name, $preset);
            }
        )*
        /// Every fixture of tests/common appears above with all three presets.
        #[test]
        fn every_fixture_and_preset_has_a_golden_test() {
            let listed = [$(($name, $preset)),*];
            for name in common::FIXTURES {
                for preset in ["q8", "q4", "q3"] {
                    assert!(listed.contains(&(*name, preset)), "no golden test for {name} {preset}");
                }
            }
        }
    };
}

golden_tests! {
    legacy_op14_q8: "gpt2_legacy_op14", "q8";
    legacy_op14_q4: "gpt2_legacy_op14", "q4";
    legacy_op14_q3: "gpt2_legacy_op14", "q3";
    legacy_op14_mask_q8: "gpt2_legacy_op14_mask", "q8";
    legacy_op14_mask_q4: "gpt2_legacy_op14_mask", "q4";
    legacy_op14_mask_q3: "gpt2_legacy_op14_mask", "q3";
    legacy_op17_q8: "gpt2_legacy_op17", "q8";
    legacy_op17_q4: "gpt2_legacy_op17", "q4";
    legacy_op17_q3: "gpt2_legacy_op17", "q3";
    legacy_op17_mask_q8: "gpt2_legacy_op17_mask", "q8";
    legacy_op17_mask_q4: "gpt2_legacy_op17_mask", "q4";
    legacy_op17_mask_q3: "gpt2_legacy_op17_mask", "q3";
    dynamo_op18_q8: "gpt2_dynamo_op18", "q8";
    dynamo_op18_q4: "gpt2_dynamo_op18", "q4";
    dynamo_op18_q3: "gpt2_dynamo_op18", "q3";
    dynamo_op18_mask_q8: "gpt2_dynamo_op18_mask", "q8";
    dynamo_op18_mask_q4: "gpt2_dynamo_op18_mask", "q4";
    dynamo_op18_mask_q3: "gpt2_dynamo_op18_mask", "q3";
    optimum_past_q8: "gpt2_optimum_past", "q8";
    optimum_past_q4: "gpt2_optimum_past", "q4";
    optimum_past_q3: "gpt2_optimum_past", "q3";
    optimum_merged_q8: "gpt2_optimum_merged", "q8";
    optimum_merged_q4: "gpt2_optimum_merged", "q4";
    optimum_merged_q3: "gpt2_optimum_merged", "q3";
}

//! Golden accuracy snapshots: every fixture x preset (q8, q4, q3), converted and compared
//! with its original on 4 seeded random sequences of 64 tokens; the rounded metrics JSON
//! must match `golden/snapshots/<fixture>.<preset>.snap`, so any change of codec accuracy
//! shows up as a snapshot diff.
//!
//! Update after an intended change: `INSTA_UPDATE=always cargo test --release --test
//! snapshot_diff_golden` (or `cargo insta review`), then review and commit the .snap files.
//! With `CI=true` insta never writes snapshots and fails on any mismatch.

mod common;

use std::sync::atomic::AtomicBool;

use common::fixture;
use indicatif::ProgressBar;
use rbe::codec::EncodeParams;
use rbe::convert::{convert_file, Progress};
use rbe::diff::{golden, Job, Source};

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
    };
    let report = rbe::diff::run(&job, &AtomicBool::new(false), &ProgressBar::hidden()).unwrap();
    insta::with_settings!({
        snapshot_path => "../golden/snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_json_snapshot!(format!("{name}.{preset}"), golden::rounded(&report));
    });
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
}

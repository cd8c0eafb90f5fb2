//! rbe-convert's promises at the command line: never touch the input, never silently replace
//! an output, write a report, and unpack the graph for standard ONNX tools.

mod common;

use std::process::{Command, Output};

use common::fixture;

fn rbe_convert(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbe-convert")).args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn refuses_to_overwrite_the_input_or_an_existing_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.onnx");
    std::fs::copy(fixture("gpt2_legacy_op17"), &input).unwrap();
    let before = std::fs::read(&input).unwrap();
    let out = rbe_convert(&[input.to_str().unwrap(), "-o", input.to_str().unwrap(), "--force"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("would overwrite the input"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&input).unwrap(), before, "the input changed");

    let output = dir.path().join("m.rbeonnx");
    std::fs::write(&output, b"keep me").unwrap();
    let out = rbe_convert(&[input.to_str().unwrap(), "-o", output.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&output).unwrap(), b"keep me");
}

#[test]
fn converts_with_a_report_and_unpacks_a_standard_onnx_graph() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("m.rbeonnx");
    let report = dir.path().join("r.json");
    let out = rbe_convert(&[
        fixture("gpt2_legacy_op14").to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--preset",
        "q8",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("bpw") && table.contains("rel_rmse") && table.contains("vs the input file"), "{table}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["preset"], "q8");
    assert!(json["tensors"].as_array().unwrap().iter().any(|t| t["mode"] == "dense"));

    let unpacked = dir.path().join("graph.onnx");
    let out = rbe_convert(&["--unpack-graph", output.to_str().unwrap(), "-o", unpacked.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let model = rbe_runtime::onnx::read_model(&unpacked).unwrap();
    assert!(model.opset_import.iter().any(|o| o.domain == "ai.rbe" && o.version == 1));
    let graph = model.graph.as_ref().unwrap();
    let rbe_ops: Vec<&str> = graph.node.iter().filter(|n| n.domain == "ai.rbe").map(|n| n.op_type.as_str()).collect();
    for op in ["RbeMatMul", "RbeGather", "RbeLayerNorm"] {
        assert!(rbe_ops.contains(&op), "{op} missing from {rbe_ops:?}");
    }
    assert!(graph.initializer.iter().all(|t| t.external_data.is_empty()), "data must be inlined");
    // The unpacked graph is itself a runnable model.
    rbe_runtime::Session::load(&unpacked).unwrap();
}

#[test]
fn bad_knobs_and_bad_models_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("x.rbeonnx");
    let model = fixture("gpt2_legacy_op17");
    for (args, needle) in [
        (vec!["--preset", "q5"], "unknown preset"),
        (vec!["--bits", "9"], "bits"),
        (vec!["--group", "20"], "group"),
    ] {
        let mut all = vec![model.to_str().unwrap(), "-o", output.to_str().unwrap()];
        all.extend(args);
        let out = rbe_convert(&all);
        assert_eq!(out.status.code(), Some(2), "{all:?}");
        let err = stderr(&out);
        assert!(err.contains(needle) && err.trim_end().lines().count() == 1, "{all:?}: {err}");
    }
    let junk = dir.path().join("junk.onnx");
    std::fs::write(&junk, b"definitely not protobuf \xff\xff\xff").unwrap();
    let out = rbe_convert(&[junk.to_str().unwrap(), "-o", output.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!output.exists(), "no output may be left after a failure");
}

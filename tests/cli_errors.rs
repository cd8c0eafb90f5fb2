//! Bad input gives a one-line error and exit code 2, never a panic.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::fixture;
use prost::Message;
use rbe_runtime::onnx::proto::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto, ValueInfoProto};

fn rbe_run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbe-run")).args(args).output().unwrap()
}

/// Exit code 2, exactly one line on stderr that mentions `needle`, no panic.
fn assert_clean_failure(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "not one line: {stderr}");
    assert!(stderr.contains(needle), "'{needle}' not in: {stderr}");
}

fn write_model(dir: &Path, name: &str, model: &ModelProto) -> String {
    let path = dir.join(name);
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path.to_string_lossy().to_string()
}

fn one_node_model(op_type: &str) -> ModelProto {
    let node = NodeProto {
        name: "weird".into(),
        op_type: op_type.into(),
        input: vec!["x".into()],
        output: vec!["y".into()],
        ..Default::default()
    };
    let graph = GraphProto {
        node: vec![node],
        input: vec![ValueInfoProto { name: "x".into(), ..Default::default() }],
        output: vec![ValueInfoProto { name: "y".into(), ..Default::default() }],
        ..Default::default()
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(graph),
        ..Default::default()
    }
}

#[test]
fn unknown_op_names_op_domain_opset_and_node() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_model(dir.path(), "m.onnx", &one_node_model("FrobnicateV9"));
    let out = rbe_run(&[&path]);
    assert_clean_failure(&out, "FrobnicateV9");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("opset 17") && stderr.contains("weird"), "{stderr}");
}

#[test]
fn wrong_input_name_lists_expected_inputs() {
    let model = fixture("gpt2_legacy_op17");
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("ids.npy");
    rbe::npy::write(&npy, &rbe_runtime::Tensor::from_vec(&[1, 3], vec![1i64, 2, 3]).unwrap()).unwrap();
    let arg = format!("token_ids=@{}", npy.display());
    let out = rbe_run(&[model.to_str().unwrap(), "--input", &arg]);
    assert_clean_failure(&out, "unknown input 'token_ids'");
    assert!(String::from_utf8_lossy(&out.stderr).contains("input_ids int64"));
}

#[test]
fn wrong_dtype_and_wrong_rank_are_named() {
    let model = fixture("gpt2_legacy_op17");
    let dir = tempfile::tempdir().unwrap();
    let floats = dir.path().join("f.npy");
    rbe::npy::write(&floats, &rbe_runtime::Tensor::from_vec(&[1, 3], vec![1f32, 2., 3.]).unwrap()).unwrap();
    let out = rbe_run(&[model.to_str().unwrap(), "--input", &format!("input_ids=@{}", floats.display())]);
    assert_clean_failure(&out, "must be int64, got float32");
    let flat = dir.path().join("r.npy");
    rbe::npy::write(&flat, &rbe_runtime::Tensor::from_vec(&[3], vec![1i64, 2, 3]).unwrap()).unwrap();
    let out = rbe_run(&[model.to_str().unwrap(), "--input", &format!("input_ids=@{}", flat.display())]);
    assert_clean_failure(&out, "has shape [3], expected input_ids int64");
}

#[test]
fn out_of_range_token_id_is_an_error() {
    let model = fixture("gpt2_legacy_op17");
    let out = rbe_run(&[model.to_str().unwrap(), "--input-ids", "1,2,5000"]);
    assert_clean_failure(&out, "5000");
}

#[test]
fn truncated_and_random_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("gpt2_legacy_op17")).unwrap();
    for (i, len) in [0, 1, 10, 1000, bytes.len() / 2, bytes.len() - 1].into_iter().enumerate() {
        let path = dir.path().join(format!("t{i}.onnx"));
        std::fs::write(&path, &bytes[..len]).unwrap();
        let out = rbe_run(&[path.to_str().unwrap(), "--input-ids", "1,2"]);
        assert_eq!(out.status.code(), Some(2), "truncated to {len}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
    let mut state = 0x1234_5678_u64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect();
    let path = dir.path().join("random.onnx");
    std::fs::write(&path, random).unwrap();
    assert_clean_failure(&rbe_run(&[path.to_str().unwrap()]), "not a valid ONNX model");
    assert_clean_failure(&rbe_run(&[dir.path().join("missing.onnx").to_str().unwrap()]), "cannot read");
}

#[test]
fn bundled_default_prints_top5_next_tokens() {
    let model = fixture("gpt2_legacy_op17");
    let out = rbe_run(&[model.to_str().unwrap(), "--input-ids", "464,268,758", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let next = v["next_tokens"][0].as_array().unwrap();
    assert_eq!(next.len(), 5);
    let probs: Vec<f64> = next.iter().map(|c| c["prob"].as_f64().unwrap()).collect();
    assert!(probs.windows(2).all(|w| w[0] >= w[1]), "not sorted: {probs:?}");
    assert_eq!(v["outputs"][0]["shape"], serde_json::json!([1, 3, 1000]));
}

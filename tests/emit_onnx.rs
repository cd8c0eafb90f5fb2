//! `rbe-convert --emit onnx` against onnxruntime's outputs on the emitted files
//! (`golden/emit/<case>/`, written by tools/emit_refs.py): each case converts its fixture with
//! the case's flags and emits it again; the emitted file must be the one the references came
//! from (same size and CRC-32: conversion is deterministic on every ISA), and our runtime, on
//! the `.rbeonnx` and on the emitted file, must give onnxruntime's outputs on the emitted file
//! within 1e-4 of the output's largest magnitude.

mod common;

use std::path::Path;
use std::process::Command;

use common::{cases_in, fixture, max_abs_diff, root};
use rbe_runtime::Session;
use serde_json::Value;

fn rbe_convert(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_rbe-convert")).args(args).output().unwrap();
    assert!(out.status.success(), "rbe-convert {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn emit_case(name: &str) {
    let case_dir = root().join("golden/emit").join(name);
    let meta: Value = serde_json::from_slice(&std::fs::read(case_dir.join("emitted.json")).unwrap()).unwrap();
    let flags: Vec<&str> = meta["flags"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    let dir = tempfile::tempdir().unwrap();
    let (ours, emitted, report) = (dir.path().join("m.rbeonnx"), dir.path().join("m.onnx"), dir.path().join("emit.json"));
    let source = fixture(meta["fixture"].as_str().unwrap());
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let mut convert = vec![path(&source), "-o".into(), path(&ours)];
    convert.extend(flags.iter().map(|f| f.to_string()));
    rbe_convert(&convert.iter().map(String::as_str).collect::<Vec<_>>());
    rbe_convert(&["--emit", "onnx", &path(&ours), "-o", &path(&emitted), "--report", &path(&report)]);

    let bytes = std::fs::read(&emitted).unwrap();
    assert_eq!(bytes.len() as u64, meta["bytes"].as_u64().unwrap(), "{name}: emitted size");
    assert_eq!(u64::from(crc32fast::hash(&bytes)), meta["crc32"].as_u64().unwrap(), "{name}: emitted CRC-32");

    let rows: Vec<Value> = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(!rows.is_empty(), "{name}: empty report");
    for row in &rows {
        let form = row["form"].as_str().unwrap();
        let exact = row["note"].is_null();
        assert_eq!(exact, !form.contains("f32"), "{name}: {row}: a weight out of block form must say why");
    }

    // Our runtime on the container, and on the emitted file too (its com.microsoft ops).
    for model in [&ours, &emitted] {
        let session = Session::load(model).unwrap_or_else(|e| panic!("{name}: {}: {e}", model.display()));
        for case in cases_in(&root().join("golden/emit")).into_iter().filter(|c| c.name == name) {
            let got = session.run(case.inputs.clone()).unwrap();
            for (out_name, expected) in &case.outputs {
                let (_, actual) = got.iter().find(|(n, _)| n == out_name).unwrap_or_else(|| panic!("{name}: no output {out_name}"));
                let scale = expected.as_f32().unwrap().iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
                let diff = max_abs_diff(expected, actual);
                assert!(diff <= 1e-4 * scale, "{name}/{out_name} ({}): max |diff| {diff} > 1e-4 x {scale}", model.display());
            }
        }
    }
}

/// The op types (`domain:op`) the emitted file of a case uses.
fn emitted_ops(name: &str) -> Vec<String> {
    let meta: Value = serde_json::from_slice(&std::fs::read(root().join("golden/emit").join(name).join("emitted.json")).unwrap()).unwrap();
    meta["ops"].as_array().unwrap().iter().map(|o| o.as_str().unwrap().to_string()).collect()
}

#[test]
fn q4_is_matmulnbits_and_gatherblockquantized() {
    let ops = emitted_ops("legacy_op17_q4");
    assert!(ops.contains(&"com.microsoft:MatMulNBits".to_string()) && ops.contains(&"com.microsoft:GatherBlockQuantized".to_string()));
    emit_case("legacy_op17_q4");
}

#[test]
fn asymmetric_4_bits_adds_the_offsets() {
    assert!(emitted_ops("legacy_op17_asym4").contains(&":ReduceSum".to_string()));
    emit_case("legacy_op17_asym4");
}

#[test]
fn three_bits_in_groups_of_16_at_opset_14() {
    emit_case("legacy_op14_q3_g16");
}

#[test]
fn asymmetric_3_bits_with_past() {
    emit_case("optimum_past_asym3");
}

#[test]
fn groups_of_48_fall_back_to_f32() {
    let ops = emitted_ops("dynamo_op18_g48_f32");
    assert!(!ops.iter().any(|o| o.starts_with("com.microsoft")), "{ops:?}");
    emit_case("dynamo_op18_g48_f32");
}

//! rbe-convert on every fixture and preset: the converted graph runs, its accuracy is at least
//! as good as plain round-to-nearest at the same bits, sizes meet the targets, and the
//! container round-trips exactly.

mod common;
#[path = "common/rtn.rs"]
mod rtn;

use common::{cases, fixture, rel_rmse, FIXTURES};
use rbe::codec::EncodeParams;
use rbe::convert::{convert_file, ConvertReport, Progress};
use rbe_runtime::onnx::{read_model, ExternalData};
use rbe_runtime::{Session, Tensor};

fn convert(name: &str, preset: &str) -> (Vec<u8>, ConvertReport) {
    let params = EncodeParams::preset(preset).unwrap();
    convert_file(&fixture(name), &params, preset, 3, &Progress::none()).unwrap()
}

fn load_bytes(bytes: &[u8]) -> Session {
    let c = rbe_runtime::container::unpack(bytes).unwrap();
    Session::from_model(&c.model, ExternalData::Sections(&c.sections)).unwrap()
}

fn logits(session: &Session, inputs: &[(String, Tensor)]) -> Tensor {
    let out = session.run(inputs.to_vec()).unwrap();
    out.into_iter().find(|(n, _)| n == "logits").unwrap().1
}

/// The largest-sequence reference case of a fixture (the most logits to compare).
fn probe_inputs(name: &str) -> Vec<(String, Tensor)> {
    let mut all = cases(name);
    all.sort_by_key(|c| c.inputs.iter().map(|(_, t)| t.len()).sum::<usize>());
    all.pop().unwrap().inputs
}

fn rtn_logits_rel_rmse(name: &str, bits: u8, reference: &Tensor, inputs: &[(String, Tensor)]) -> f64 {
    let model = read_model(&fixture(name)).unwrap();
    let q = rtn::rtn_model(&model, bits, 32);
    let session = Session::from_model(&q, ExternalData::Refused).unwrap();
    rel_rmse(reference, &logits(&session, inputs))
}

#[test]
fn every_fixture_and_preset_converts_runs_and_beats_rtn() {
    for name in FIXTURES {
        let original = Session::load(&fixture(name)).unwrap();
        let inputs = probe_inputs(name);
        let reference = logits(&original, &inputs);
        for (preset, bits, max_bpw, rtn_factor, min_file_ratio) in
            [("q8", 8, 8.5, 1.1, 3.4), ("q4", 4, 4.5, 1.0, 6.0), ("q3", 3, 4.0, f64::INFINITY, 0.0)]
        {
            let (bytes, report) = convert(name, preset);
            let converted = load_bytes(&bytes);
            let err = rel_rmse(&reference, &logits(&converted, &inputs));
            let encoded: Vec<_> = report.tensors.iter().filter(|t| t.mode != "raw").collect();
            assert!(!encoded.is_empty(), "{name}/{preset}: nothing was encoded");
            for t in &encoded {
                assert!(t.bits_per_weight <= max_bpw, "{name}/{preset}/{}: {} bpw", t.name, t.bits_per_weight);
            }
            if rtn_factor.is_finite() {
                let rtn = rtn_logits_rel_rmse(name, bits, &reference, &inputs);
                assert!(
                    err <= rtn * rtn_factor,
                    "{name}/{preset}: logits rel RMSE {err:.5} vs RTN-int{bits} {rtn:.5}"
                );
            }
            assert!(
                report.file_ratio >= min_file_ratio,
                "{name}/{preset}: file ratio {:.2} < {min_file_ratio}",
                report.file_ratio
            );
        }
    }
}

#[test]
fn legacy_lm_head_is_stored_once() {
    let (_, report) = convert("gpt2_legacy_op17", "q4");
    let shared: Vec<_> = report.tensors.iter().filter(|t| t.shape == [1000, 64]).collect();
    assert_eq!(shared.len(), 1, "the embedding and the LM head must share one tensor: {shared:?}");
    assert!(shared[0].name.contains(" = "), "not shared: {}", shared[0].name);
    // The same model without the LM head's copy stores about as many weight bytes.
    let (_, dynamo) = convert("gpt2_dynamo_op18", "q4");
    let ratio = report.encoded_weights_bytes as f64 / dynamo.encoded_weights_bytes as f64;
    assert!((0.95..1.05).contains(&ratio), "legacy/dynamo encoded bytes ratio {ratio}");
}

#[test]
fn container_round_trip_reproduces_the_encoders_reconstruction() {
    let model = read_model(&fixture("gpt2_legacy_op14")).unwrap();
    let graph = model.graph.as_ref().unwrap();
    let wte = graph.initializer.iter().find(|t| t.dims == [1000, 64]).unwrap();
    let data: Vec<f32> = rbe_runtime::onnx::tensor_from_proto(wte, ExternalData::Refused)
        .unwrap()
        .as_f32()
        .unwrap()
        .iter()
        .copied()
        .collect();
    let params = EncodeParams::preset("q4").unwrap();
    let encoded = rbe::codec::encode(&data, 1000, 64, &params).unwrap();
    let expected = encoded.tensor.decode();
    let (bytes, _) = convert("gpt2_legacy_op14", "q4");
    let c = rbe_runtime::container::unpack(&bytes).unwrap();
    let stored = c.model.graph.as_ref().unwrap().initializer.iter().find(|t| t.name.ends_with(".rbe") && t.name.contains(&wte.name)).unwrap();
    let raw = rbe_runtime::onnx::tensor_from_proto(stored, ExternalData::Sections(&c.sections)).unwrap();
    let raw: Vec<u8> = raw.array::<u8>().unwrap().iter().copied().collect();
    let back = rbe_runtime::rbe::RbeTensor::from_bytes(&raw).unwrap().decode();
    assert_eq!(back, expected, "decoded weights differ from the encoder's reconstruction");
}

#[test]
fn rbe_run_rejects_corrupt_containers_with_exit_2() {
    let (bytes, _) = convert("gpt2_legacy_op17", "q4");
    let dir = tempfile::tempdir().unwrap();
    let step = (bytes.len() / 40).max(1);
    for (i, pos) in (0..bytes.len()).step_by(step).enumerate() {
        let mut bad = bytes.clone();
        bad[pos] ^= 0x01;
        let flipped = dir.path().join(format!("f{i}.rbeonnx"));
        std::fs::write(&flipped, &bad).unwrap();
        let truncated = dir.path().join(format!("t{i}.rbeonnx"));
        std::fs::write(&truncated, &bytes[..pos.max(9)]).unwrap();
        for path in [flipped, truncated] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_rbe-run"))
                .args([path.to_str().unwrap(), "--input-ids", "1,2"])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "pos {pos}: {stderr}");
            assert!(stderr.contains("container") && !stderr.contains("panicked"), "pos {pos}: {stderr}");
        }
    }
}

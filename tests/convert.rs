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
            let rtn = rtn_logits_rel_rmse(name, bits, &reference, &inputs);
            let max_bpw_seen = encoded.iter().map(|t| t.bits_per_weight).fold(0.0, f64::max);
            println!(
                "{name:24} {preset}: logits rel RMSE {err:.5} (RTN-int{bits} g32 {rtn:.5}), max bpw {max_bpw_seen:.3}, file ratio {:.2}",
                report.file_ratio
            );
            if rtn_factor.is_finite() {
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
fn embedding_bits_apply_to_tables_only_gathered() {
    let name = "gpt2_legacy_op17";
    let params = EncodeParams { table_bits: Some(8), ..EncodeParams::preset("q4").unwrap() };
    let (bytes, report) = convert_file(&fixture(name), &params, "q4", 3, &Progress::none()).unwrap();
    let (plain_bytes, plain) = convert(name, "q4");
    for (t, p) in report.tensors.iter().zip(&plain.tensors).filter(|(t, _)| t.mode != "raw") {
        assert_eq!(t.name, p.name);
        // The position table is only gathered; the token table is the LM head too.
        let want = if t.name.contains("wpe") { 8.0..9.5 } else { 0.0..4.5 };
        assert!(want.contains(&t.bits_per_weight), "{}: {} bpw", t.name, t.bits_per_weight);
        if !t.name.contains("wpe") {
            assert_eq!((t.bytes, t.rel_rmse), (p.bytes, p.rel_rmse), "{}", t.name);
        }
    }
    assert!(report.tensors.iter().any(|t| t.name.contains("wpe")), "no position table in {name}");
    // The wider table makes the model closer to the original.
    let (original, inputs) = (Session::load(&fixture(name)).unwrap(), probe_inputs(name));
    let reference = logits(&original, &inputs);
    let wide = rel_rmse(&reference, &logits(&load_bytes(&bytes), &inputs));
    let narrow = rel_rmse(&reference, &logits(&load_bytes(&plain_bytes), &inputs));
    assert!(wide < narrow, "logits relative RMSE: wide table {wide} vs q4 {narrow}");
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

/// Weights read inside `If` branches (as in optimum's merged decoders, whose weights sit in the
/// outer graph and are read by both branches) are encoded once and multiplied by `RbeMatMul`
/// in every branch; a value a branch reads is never fused away in the outer graph.
#[test]
fn weights_read_inside_if_branches_are_encoded() {
    use prost::Message;
    use rbe_runtime::onnx::proto::attribute_proto::AttributeType;
    use rbe_runtime::onnx::proto::{AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, ValueInfoProto};
    use rbe_runtime::onnx::tensor_to_proto;

    let info = |name: &str| ValueInfoProto { name: name.into(), ..Default::default() };
    let node = |op: &str, inputs: &[&str], output: &str| NodeProto {
        name: format!("{op}_node"),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    };
    let branch = |nodes: Vec<NodeProto>| GraphProto {
        output: vec![info(&nodes.last().unwrap().output[0])],
        node: nodes,
        ..Default::default()
    };
    let attr = |name: &str, g: GraphProto| AttributeProto {
        name: name.into(),
        r#type: AttributeType::Graph as i32,
        g: Some(g),
        ..Default::default()
    };
    let w = Tensor::from_vec(&[64, 64], (0..64 * 64).map(|i| ((i * 37 % 101) as f32 - 50.0) / 500.0).collect()).unwrap();
    let bias = Tensor::from_vec(&[1, 64], (0..64).map(|i| i as f32 / 100.0).collect()).unwrap();
    // Outer: h = x·w, g = h + bias. Then: h·w + bias + g (h is read in the branch, so the outer
    // MatMul+Add must not fuse h away). Else: -(g·w) + bias.
    let then_branch = vec![node("MatMul", &["h", "w"], "t1"), node("Add", &["t1", "bias"], "t2"), node("Add", &["t2", "g"], "yt")];
    let else_branch = vec![node("MatMul", &["g", "w"], "e1"), node("Add", &["e1", "bias"], "e2"), node("Neg", &["e2"], "ye")];
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(GraphProto {
            node: vec![
                node("MatMul", &["x", "w"], "h"),
                node("Add", &["h", "bias"], "g"),
                NodeProto {
                    attribute: vec![attr("then_branch", branch(then_branch)), attr("else_branch", branch(else_branch))],
                    ..node("If", &["flag"], "y")
                },
            ],
            input: vec![info("x"), info("flag")],
            output: vec![info("y")],
            initializer: vec![tensor_to_proto("w", &w), tensor_to_proto("bias", &bias)],
            ..Default::default()
        }),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("if.onnx");
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    let params = EncodeParams::preset("q4").unwrap();
    let (bytes, report) = convert_file(&path, &params, "q4", 3, &Progress::none()).unwrap();
    assert_eq!(report.tensors.iter().filter(|t| t.name.starts_with("w")).count(), 1, "w is encoded once");

    let converted = rbe_runtime::container::unpack(&bytes).unwrap().model;
    let graph = converted.graph.as_ref().unwrap();
    assert!(graph.initializer.iter().all(|t| t.name != "w"), "the f32 weight is gone");
    let ops = |nodes: &[NodeProto]| nodes.iter().map(|n| n.op_type.clone()).collect::<Vec<_>>();
    assert_eq!(ops(&graph.node), ["RbeMatMul", "Add", "If"].map(String::from), "h is read by a branch: the bias Add stays");
    assert_eq!(graph.node[0].input[1], "w.rbe");
    let branches: Vec<&GraphProto> = graph.node[2].attribute.iter().filter_map(|a| a.g.as_ref()).collect();
    for b in &branches {
        assert_eq!(ops(&b.node)[0], "RbeMatMul", "the branch's MatMul+Add is fused: {:?}", ops(&b.node));
        assert_eq!(b.node[0].input[1], "w.rbe");
    }
    let biases: Vec<&str> = branches.iter().map(|b| b.node[0].input[2].as_str()).collect();
    assert_ne!(biases[0], biases[1], "each branch's new bias initializer has a name of its own");

    let x = Tensor::from_vec(&[2, 64], (0..128).map(|i| i as f32 / 64.0 - 1.0).collect()).unwrap();
    for flag in [true, false] {
        let feeds = vec![("x".to_string(), x.clone()), ("flag".to_string(), Tensor::from_vec(&[], vec![flag]).unwrap())];
        let run = |s: &Session| s.run(feeds.clone()).unwrap().remove(0).1;
        let (want, got) = (run(&Session::load(&path).unwrap()), run(&load_bytes(&bytes)));
        assert_eq!(want.shape(), got.shape());
        let err = rel_rmse(&want, &got);
        assert!(err > 0.0 && err < 0.05, "flag {flag}: relative error {err}");
    }
}

/// A float16 model (weights and bias fp16, the activations cast to fp16 and back, as
/// onnxruntime's float16 converter writes them) converts like an f32 one: its weight is
/// encoded, the product and its bias fuse into `RbeMatMul`, and the result stays within q8's
/// error of the unconverted file.
#[test]
fn float16_weights_are_encoded_and_fused() {
    use half::f16;
    use prost::Message;
    use rbe_runtime::onnx::proto::attribute_proto::AttributeType;
    use rbe_runtime::onnx::proto::tensor_proto::DataType;
    use rbe_runtime::onnx::proto::{AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, ValueInfoProto};
    use rbe_runtime::onnx::tensor_to_proto;

    let info = |name: &str| ValueInfoProto { name: name.into(), ..Default::default() };
    let node = |op: &str, inputs: &[&str], output: &str, to: Option<DataType>| NodeProto {
        name: format!("{op}_{output}"),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute: to
            .map(|t| AttributeProto { name: "to".into(), r#type: AttributeType::Int as i32, i: t as i64, ..Default::default() })
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let half = |shape: &[usize], f: &dyn Fn(usize) -> f32| {
        let n = shape.iter().product::<usize>();
        let a = ndarray::ArrayD::from_shape_vec(shape.to_vec(), (0..n).map(|i| f16::from_f32(f(i))).collect()).unwrap();
        Tensor::F16(a.into_shared())
    };
    let w = half(&[64, 64], &|i| ((i * 37 % 101) as f32 - 50.0) / 500.0);
    let bias = half(&[64], &|i| i as f32 / 100.0);
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(GraphProto {
            node: vec![
                node("Cast", &["x"], "xh", Some(DataType::Float16)),
                node("MatMul", &["xh", "w"], "h", None),
                node("Add", &["h", "bias"], "g", None),
                node("Cast", &["g"], "y", Some(DataType::Float)),
            ],
            input: vec![info("x")],
            output: vec![info("y")],
            initializer: vec![tensor_to_proto("w", &w), tensor_to_proto("bias", &bias)],
            ..Default::default()
        }),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("half.onnx");
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    let params = EncodeParams::preset("q8").unwrap();
    let (bytes, report) = convert_file(&path, &params, "q8", 3, &Progress::none()).unwrap();
    let w_report = report.tensors.iter().find(|t| t.name.starts_with('w')).expect("w is in the report");
    assert!(w_report.bytes < 64 * 64 * 2, "w is encoded below its fp16 bytes: {} bytes", w_report.bytes);

    let graph = rbe_runtime::container::unpack(&bytes).unwrap().model.graph.unwrap();
    assert!(graph.initializer.iter().all(|t| t.name != "w"), "the fp16 weight is gone");
    let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["Cast", "RbeMatMul", "Cast"], "MatMul and its bias fuse");

    let x = Tensor::from_vec(&[3, 64], (0..192).map(|i| (i % 29) as f32 / 14.0 - 1.0).collect()).unwrap();
    let run = |s: &Session| s.run(vec![("x".to_string(), x.clone())]).unwrap().remove(0).1;
    let (want, got) = (run(&Session::load(&path).unwrap()), run(&load_bytes(&bytes)));
    assert_eq!(want.shape(), got.shape());
    let err = rel_rmse(&want, &got);
    assert!(err > 0.0 && err < 0.01, "relative error {err}");
}

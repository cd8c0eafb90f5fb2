//! Writes the seed corpora of the fuzz targets, `gen_seeds <repo> <out>`: `<out>/<target>/`
//! for `onnx_load`, `graph`, `container` and `npy`. Seeds are small models built here (plain,
//! encoded with `ai.rbe` ops, and packed as containers), a spread of the committed conformance
//! and contrib cases, the first nodes of `.onnx` fixtures of `tests/fixtures` with their
//! initializers cut to a few bytes, and small committed `.npy` files plus one of each dtype
//! `rbe::npy::write` produces. Not a fuzz target: run it directly.

use std::path::PathBuf;

use prost::Message;
use rbe::codec::EncodeParams;
use rbe::container::ContainerBuilder;
use rbe::convert::Progress;
use rbe_runtime::onnx::proto::{
    attribute_proto::AttributeType, tensor_shape_proto::{dimension, Dimension}, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use rbe_runtime::onnx::{tensor_to_proto, ExternalData};
use rbe_runtime::Tensor;

/// Initializers of the cut fixtures keep at most this many bytes.
const FIXTURE_RAW_CAP: usize = 16;
/// The cut fixtures keep this many nodes and initializers.
const FIXTURE_NODES: usize = 48;

fn main() -> Result<(), String> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [repo, out] = args.as_slice() else { return Err("usage: gen_seeds <repo> <out>".into()) };
    let write = |target: &str, name: &str, bytes: &[u8]| -> Result<(), String> {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::write(dir.join(name), bytes).map_err(|e| format!("{name}: {e}"))
    };

    let models = [("mlp", mlp()), ("embed", embed()), ("shapes", shapes()), ("attention", attention())];
    for (name, m) in &models {
        let bytes = m.encode_to_vec();
        if !builds(&bytes) {
            return Err(format!("seed model '{name}' does not build"));
        }
        write("onnx_load", &format!("{name}.onnx"), &bytes)?;
        write("graph", &format!("{name}.onnx"), &bytes)?;
        let mut packed = m.clone();
        let mut builder = ContainerBuilder::new(3);
        if let Some(g) = packed.graph.as_mut() {
            g.initializer.iter_mut().for_each(|t| builder.externalize(t));
        }
        write("container", &format!("{name}.rbeonnx"), &builder.finish(&packed)?)?;
    }
    // The same models with their weights encoded (RbeMatMul, RbeGather, ...), packed by
    // `rbe-convert`'s own path and, for the graph target, unpacked back to a plain `.onnx`.
    let tmp = out.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    for (name, m) in models.iter().take(2) {
        let (onnx, container) = (tmp.join("m.onnx"), tmp.join("m.rbeonnx"));
        std::fs::write(&onnx, m.encode_to_vec()).map_err(|e| e.to_string())?;
        let params = EncodeParams::default();
        let (bytes, _) = rbe::convert::convert_file(&onnx, &params, "q4", 3, &Progress::none())?;
        std::fs::write(&container, &bytes).map_err(|e| e.to_string())?;
        write("container", &format!("{name}_q4.rbeonnx"), &bytes)?;
        let encoded = rbe::container::unpack_to_onnx(&container)?;
        write("graph", &format!("{name}_q4.onnx"), &encoded.encode_to_vec())?;
    }

    // A spread of the committed ONNX node conformance cases and onnxruntime contrib cases
    // (graphs of one op, declared inputs; the harness feeds zeros), those the builder takes.
    for (dir, every) in [("tests/conformance/node", 40), ("tests/contrib/node", 8)] {
        let mut cases: Vec<PathBuf> = std::fs::read_dir(repo.join(dir))
            .map_err(|e| format!("{dir}: {e}"))?
            .filter_map(|e| Some(e.ok()?.path()))
            .collect();
        cases.sort();
        for case in cases.iter().step_by(every) {
            let bytes = std::fs::read(case.join("model.onnx")).map_err(|e| format!("{}: {e}", case.display()))?;
            let name = case.file_name().and_then(|n| n.to_str()).unwrap_or("case");
            if builds(&bytes) {
                write("graph", &format!("{name}.onnx"), &bytes)?;
            }
        }
    }

    // The fixtures' graphs, every initializer cut to a few bytes (the decoder does not care).
    for name in ["gpt2_legacy_op17_mask.onnx", "gpt2_dynamo_op18.onnx", "llama_optimum_past.onnx"] {
        let path = repo.join("tests/fixtures").join(name);
        let mut m = rbe_runtime::onnx::read_model(&path).map_err(|e| e.to_string())?;
        if let Some(g) = m.graph.as_mut() {
            // A prefix of the graph keeps the seed small (the decoder does not check the rest).
            g.node.truncate(FIXTURE_NODES);
            g.initializer.truncate(FIXTURE_NODES);
            for t in &mut g.initializer {
                t.raw_data = t.raw_data.slice(..t.raw_data.len().min(FIXTURE_RAW_CAP));
            }
        }
        write("onnx_load", name, &m.encode_to_vec())?;
    }

    // .npy: one of each dtype the reader takes, and the small committed ones.
    let npys: [(&str, Tensor); 7] = [
        ("f32", Tensor::from_vec(&[2, 3], vec![0.5f32, -1., 2., 3., 4., 5.]).map_err(|e| e.to_string())?),
        ("i64", Tensor::from_vec(&[1, 3], vec![464i64, 2068, 7586]).map_err(|e| e.to_string())?),
        ("i32", Tensor::from_vec(&[4], vec![1i32, 2, 3, 4]).map_err(|e| e.to_string())?),
        ("f64", Tensor::from_vec(&[], vec![1.5f64]).map_err(|e| e.to_string())?),
        ("bool", Tensor::from_vec(&[2, 2], vec![true, false, true, true]).map_err(|e| e.to_string())?),
        ("u8", Tensor::from_vec(&[5], vec![1u8, 2, 3, 4, 5]).map_err(|e| e.to_string())?),
        ("i8", Tensor::from_vec(&[3, 0], Vec::<i8>::new()).map_err(|e| e.to_string())?),
    ];
    for (name, t) in &npys {
        let path = tmp.join("t.npy");
        rbe::npy::write(&path, t)?;
        let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
        write("npy", &format!("{name}.npy"), &bytes)?;
    }
    for rel in ["golden/gguf/llama_tiny/input_ids.npy", "golden/emit/legacy_op17_q4/inputs/input_ids.npy"] {
        let bytes = std::fs::read(repo.join(rel)).map_err(|e| format!("{rel}: {e}"))?;
        write("npy", &rel.replace('/', "_"), &bytes)?;
    }
    std::fs::remove_dir_all(&tmp).map_err(|e| e.to_string())
}

/// True when the graph builder takes the model (the harness then runs it too).
fn builds(bytes: &[u8]) -> bool {
    let model = rbe_runtime::onnx::read_model_bytes(bytes.to_vec().into());
    model.is_ok_and(|m| rbe_runtime::Session::from_model(&m, ExternalData::Refused).is_ok())
}

fn model(graph: GraphProto) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(graph),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        name: format!("{op}_{}", outputs[0]),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute,
        ..Default::default()
    }
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i, ..Default::default() }
}

fn ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: ints.to_vec(), ..Default::default() }
}

/// A value declaration: `elem_type` (ONNX code) and dims, numbers fixed and names symbolic.
fn value(name: &str, elem_type: i32, dims: &[&str]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| {
            let v = match d.parse::<i64>() {
                Ok(n) => dimension::Value::DimValue(n),
                Err(_) => dimension::Value::DimParam(d.to_string()),
            };
            Dimension { value: Some(v), ..Default::default() }
        })
        .collect();
    let tensor = type_proto::Tensor { elem_type, shape: Some(TensorShapeProto { dim }) };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
}

/// A float32 initializer of `shape` filled with a smooth, non-constant pattern.
fn weights(name: &str, shape: &[usize]) -> TensorProto {
    let n = shape.iter().product::<usize>();
    let data = (0..n).map(|i| ((i as f32) * 0.37).sin() * 0.1).collect();
    tensor_to_proto(name, &Tensor::from_vec(shape, data).expect("shape matches"))
}

fn int64s(name: &str, values: &[i64]) -> TensorProto {
    tensor_to_proto(name, &Tensor::from_vec(&[values.len()], values.to_vec()).expect("1-D"))
}

/// x[batch, seq, 32] -> MatMul+Add -> Relu -> MatMul -> Softmax.
fn mlp() -> ModelProto {
    model(GraphProto {
        name: "mlp".into(),
        node: vec![
            node("MatMul", &["x", "w1"], &["h"], vec![]),
            node("Add", &["h", "b1"], &["hb"], vec![]),
            node("Relu", &["hb"], &["r"], vec![]),
            node("MatMul", &["r", "w2"], &["o"], vec![]),
            node("Softmax", &["o"], &["y"], vec![int("axis", -1)]),
        ],
        initializer: vec![weights("w1", &[32, 32]), weights("b1", &[32]), weights("w2", &[32, 32])],
        input: vec![value("x", 1, &["batch", "seq", "32"])],
        output: vec![value("y", 1, &["batch", "seq", "32"])],
        ..Default::default()
    })
}

/// input_ids[1, seq] -> Gather -> LayerNormalization -> MatMul by the tied table.
fn embed() -> ModelProto {
    model(GraphProto {
        name: "embed".into(),
        node: vec![
            node("Gather", &["table", "input_ids"], &["e"], vec![int("axis", 0)]),
            node("LayerNormalization", &["e", "gamma", "beta"], &["n"], vec![int("axis", -1)]),
            node("Transpose", &["table"], &["tt"], vec![ints("perm", &[1, 0])]),
            node("MatMul", &["n", "tt"], &["logits"], vec![]),
        ],
        initializer: vec![weights("table", &[32, 32]), weights("gamma", &[32]), weights("beta", &[32])],
        input: vec![value("input_ids", 7, &["1", "seq"])],
        output: vec![value("logits", 1, &["1", "seq", "32"])],
        ..Default::default()
    })
}

/// Shape arithmetic: x[1, seq, 8] -> Shape/Gather/Unsqueeze/Concat -> Reshape -> Transpose.
fn shapes() -> ModelProto {
    model(GraphProto {
        name: "shapes".into(),
        node: vec![
            node("Shape", &["x"], &["s"], vec![]),
            node("Gather", &["s", "one"], &["seq"], vec![int("axis", 0)]),
            node("Unsqueeze", &["seq", "zero_axes"], &["seq1"], vec![]),
            node("Concat", &["lead", "seq1", "tail"], &["target"], vec![int("axis", 0)]),
            node("Reshape", &["x", "target"], &["r"], vec![]),
            node("Transpose", &["r"], &["t"], vec![ints("perm", &[0, 2, 1, 3])]),
            node("Cast", &["t"], &["y"], vec![int("to", 10)]),
        ],
        initializer: vec![
            tensor_to_proto("one", &Tensor::scalar(1i64)),
            int64s("zero_axes", &[0]),
            int64s("lead", &[1]),
            int64s("tail", &[2, 4]),
        ],
        input: vec![value("x", 1, &["1", "seq", "8"])],
        output: vec![value("y", 10, &[])],
        ..Default::default()
    })
}

/// One attention head: q, k, v from x[1, seq, 16]; softmax(q k^T / 4) v with a causal mask.
fn attention() -> ModelProto {
    model(GraphProto {
        name: "attention".into(),
        node: vec![
            node("MatMul", &["x", "wq"], &["q"], vec![]),
            node("MatMul", &["x", "wk"], &["k"], vec![]),
            node("MatMul", &["x", "wv"], &["v"], vec![]),
            node("Transpose", &["k"], &["kt"], vec![ints("perm", &[0, 2, 1])]),
            node("MatMul", &["q", "kt"], &["s"], vec![]),
            node("Div", &["s", "scale"], &["ss"], vec![]),
            node("Shape", &["x"], &["xs"], vec![]),
            node("Gather", &["xs", "one"], &["n"], vec![int("axis", 0)]),
            node("Range", &["zero", "n", "one"], &["pos"], vec![]),
            node("Unsqueeze", &["pos", "last"], &["col"], vec![]),
            node("Less", &["col", "pos"], &["future"], vec![]),
            node("Where", &["future", "neg", "ss"], &["masked"], vec![]),
            node("Softmax", &["masked"], &["p"], vec![int("axis", -1)]),
            node("MatMul", &["p", "v"], &["o"], vec![]),
            node("Tanh", &["o"], &["y"], vec![]),
        ],
        initializer: vec![
            weights("wq", &[16, 16]),
            weights("wk", &[16, 16]),
            weights("wv", &[16, 16]),
            tensor_to_proto("scale", &Tensor::scalar(4f32)),
            tensor_to_proto("neg", &Tensor::scalar(-1e9f32)),
            tensor_to_proto("zero", &Tensor::scalar(0i64)),
            tensor_to_proto("one", &Tensor::scalar(1i64)),
            int64s("last", &[1]),
        ],
        input: vec![value("x", 1, &["1", "seq", "16"])],
        output: vec![value("y", 1, &["1", "seq", "16"])],
        ..Default::default()
    })
}

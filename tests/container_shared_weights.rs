//! Containers read from files section by section, and `uint8` initializers kept as shared
//! section bytes: encoded weights are parsed in place, other readers get a materialised tensor.

use prost::Message;
use rbe::codec::{encode, EncodeParams};
use rbe::container::ContainerBuilder;
use rbe_runtime::container::{read_container, unpack};
use rbe_runtime::onnx::proto::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto, ValueInfoProto};
use rbe_runtime::onnx::tensor_to_proto;
use rbe_runtime::{Session, Tensor};

const ROWS: usize = 48;
const COLS: usize = 64;

fn value(name: &str) -> ValueInfoProto {
    ValueInfoProto { name: name.into(), ..Default::default() }
}

fn node(op: &str, domain: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        domain: domain.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

/// `y = RbeMatMul(x, w)`, `both = Concat(tag, w)` (a plain op reading the encoded bytes) and
/// `w` itself as an output, with `w` externalised into a container section when `pack`.
fn model(weight: &[u8], pack: Option<&mut ContainerBuilder>) -> ModelProto {
    let w = Tensor::from_vec(&[weight.len()], weight.to_vec()).unwrap();
    let mut w = tensor_to_proto("w", &w);
    if let Some(builder) = pack {
        builder.externalize(&mut w);
    }
    let mut concat = node("Concat", "", &["tag", "w"], "both");
    concat.attribute.push(rbe_runtime::onnx::proto::AttributeProto {
        name: "axis".into(),
        i: 0,
        r#type: 2,
        ..Default::default()
    });
    let graph = GraphProto {
        node: vec![node("RbeMatMul", "ai.rbe", &["x", "w"], "y"), concat],
        initializer: vec![w],
        input: vec![value("x"), value("tag")],
        output: vec![value("y"), value("both"), value("w")],
        ..Default::default()
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![
            OperatorSetIdProto { domain: String::new(), version: 17 },
            OperatorSetIdProto { domain: "ai.rbe".into(), version: 1 },
        ],
        graph: Some(graph),
        ..Default::default()
    }
}

fn encoded_weight() -> Vec<u8> {
    let data: Vec<f32> = (0..ROWS * COLS).map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0).collect();
    encode(&data, ROWS, COLS, &EncodeParams::preset("q4").unwrap()).unwrap().tensor.to_bytes()
}

fn run(session: &Session) -> Vec<(String, Tensor)> {
    let x: Vec<f32> = (0..2 * COLS).map(|i| (i as f32 * 0.13).sin()).collect();
    let feeds = vec![
        ("x".to_string(), Tensor::from_vec(&[2, COLS], x).unwrap()),
        ("tag".to_string(), Tensor::from_vec(&[3], vec![7u8, 8, 9]).unwrap()),
    ];
    session.run(feeds).unwrap()
}

fn container_file(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>) {
    let weight = encoded_weight();
    let mut builder = ContainerBuilder::new(3);
    let model = model(&weight, Some(&mut builder));
    let bytes = builder.finish(&model).unwrap();
    let path = dir.join("m.rbeonnx");
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

#[test]
fn shared_section_weights_give_the_same_outputs_as_inline_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (packed, _) = container_file(dir.path());
    let plain = dir.path().join("m.onnx");
    std::fs::write(&plain, model(&encoded_weight(), None).encode_to_vec()).unwrap();
    let from_container = run(&Session::load(&packed).unwrap());
    let from_onnx = run(&Session::load(&plain).unwrap());
    assert_eq!(from_container, from_onnx);
    let both = from_container[1].1.array::<u8>().unwrap();
    let weight = encoded_weight();
    assert_eq!(both.len(), 3 + weight.len());
    assert_eq!(both.iter().take(3).copied().collect::<Vec<_>>(), vec![7, 8, 9]);
    assert!(both.iter().skip(3).eq(weight.iter()), "Concat must see the weight bytes");
    assert!(from_container[2].1.array::<u8>().unwrap().iter().eq(weight.iter()));
    assert_eq!(from_container[0].1.shape(), &[2, ROWS]);
}

#[test]
fn reading_a_file_matches_unpacking_it_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = container_file(dir.path());
    let from_file = read_container(&path).unwrap();
    let in_memory = unpack(&bytes).unwrap();
    assert_eq!(from_file.sections, in_memory.sections);
    assert_eq!(from_file.model, in_memory.model);
}

#[test]
fn truncated_or_corrupt_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = container_file(dir.path());
    for len in [0, 7, 19, 60, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..len]).unwrap();
        assert!(read_container(&path).is_err(), "truncation to {len} went unnoticed");
    }
    for pos in [8, 30, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[pos] ^= 0x5a;
        std::fs::write(&path, &bad).unwrap();
        assert!(read_container(&path).is_err(), "flip at {pos} went unnoticed");
    }
}

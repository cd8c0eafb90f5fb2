//! External tensor data: loaded relative to the model, never from outside its folder.

use prost::Message;
use rbe_runtime::onnx::proto::tensor_proto::DataLocation;
use rbe_runtime::onnx::proto::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, ValueInfoProto};
use rbe_runtime::onnx::tensor_to_proto;
use rbe_runtime::{Session, Tensor};

/// `y = x + w` with `w` (4 floats) stored in an external file at `location`.
fn model_with_external(location: &str) -> ModelProto {
    let mut w = tensor_to_proto("w", &Tensor::from_vec(&[4], vec![1f32, 2., 3., 4.]).unwrap());
    w.raw_data = Default::default();
    w.data_location = DataLocation::External as i32;
    let entry = |k: &str, v: &str| StringStringEntryProto { key: k.into(), value: v.into() };
    w.external_data = vec![entry("location", location), entry("offset", "16"), entry("length", "16")];
    let node = NodeProto {
        op_type: "Add".into(),
        input: vec!["x".into(), "w".into()],
        output: vec!["y".into()],
        ..Default::default()
    };
    let graph = GraphProto {
        node: vec![node],
        initializer: vec![w],
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

fn data_file() -> Vec<u8> {
    let mut bytes = vec![0u8; 16]; // the tensor starts at offset 16
    for v in [1f32, 2., 3., 4.] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes
}

#[test]
fn external_data_is_read_relative_to_the_model() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/weights.bin"), data_file()).unwrap();
    let path = dir.path().join("m.onnx");
    std::fs::write(&path, model_with_external("data/weights.bin").encode_to_vec()).unwrap();
    let session = Session::load(&path).unwrap();
    let x = Tensor::from_vec(&[4], vec![10f32, 20., 30., 40.]).unwrap();
    let y = session.run(vec![("x".into(), x)]).unwrap().remove(0).1;
    assert_eq!(y.as_f32().unwrap().iter().copied().collect::<Vec<_>>(), vec![11., 22., 33., 44.]);
}

#[test]
fn paths_leaving_the_model_folder_are_refused() {
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    let secret = outer.path().join("weights.bin");
    std::fs::write(&secret, data_file()).unwrap();
    for location in ["../weights.bin", secret.to_str().unwrap(), "sub/../../weights.bin"] {
        let path = dir.join("m.onnx");
        std::fs::write(&path, model_with_external(location).encode_to_vec()).unwrap();
        let err = Session::load(&path).err().expect("must be refused").to_string();
        assert!(err.contains("must be relative and stay inside"), "{location}: {err}");
    }
}

#[test]
fn external_data_past_the_end_of_its_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("w.bin"), &data_file()[..20]).unwrap();
    let path = dir.path().join("m.onnx");
    std::fs::write(&path, model_with_external("w.bin").encode_to_vec()).unwrap();
    let err = Session::load(&path).err().expect("must fail").to_string();
    assert!(err.contains("runs past the end"), "{err}");
}

//! The bad-input matrix: damaged, random and absurd models and feeds give an error, never a
//! panic, and never an allocation of what a header claims. In process (every case caught
//! with `catch_unwind`, so a panic fails the test naming the case), plus `rbe-run` under an
//! address-space cap (`ulimit -v`) for the absurd headers.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use common::{fixture, FIXTURES};
use prost::Message;
use rbe::feeds::token_feeds;
use rbe_runtime::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, ValueInfoProto,
};
use rbe_runtime::onnx::{read_model_bytes, ExternalData};
use rbe_runtime::{Session, Tensor};

/// Address-space cap for `rbe-run` on absurd headers, in KiB (4 GiB: the binary, its
/// thread stacks and a fixture fit; a 2^40-element tensor does not).
const ULIMIT_KIB: u64 = 4 << 20;

/// What one damaged model did: refused at decode or load, or loaded (and then ran or not).
#[derive(Debug, PartialEq)]
enum Outcome {
    Refused,
    LoadedRunFailed,
    LoadedAndRan,
}

/// Decodes `bytes`, builds a session and, if that works, runs three tokens through it.
/// Panics (the test fails) only if the runtime panicked, naming `case`.
fn try_model(case: &str, bytes: Vec<u8>) -> Outcome {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let Ok(model) = read_model_bytes(Bytes::from(bytes)) else { return Outcome::Refused };
        let Ok(session) = Session::from_model(&model, ExternalData::Refused) else { return Outcome::Refused };
        let Ok(feeds) = token_feeds(session.inputs(), &[1, 2, 3], Vec::new()) else {
            return Outcome::LoadedRunFailed;
        };
        match session.run(feeds) {
            Ok(_) => Outcome::LoadedAndRan,
            Err(_) => Outcome::LoadedRunFailed,
        }
    }));
    result.unwrap_or_else(|_| panic!("{case}: the runtime panicked"))
}

#[test]
fn truncation_at_every_64th_of_every_fixture_is_refused() {
    for name in FIXTURES {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for cut in 0..64 {
            let len = bytes.len() * cut / 64;
            let outcome = try_model(&format!("{name} cut at {len}"), bytes[..len].to_vec());
            assert_ne!(outcome, Outcome::LoadedAndRan, "{name} cut at {len} of {} ran", bytes.len());
        }
    }
}

#[test]
fn byte_flips_across_every_fixture_never_panic() {
    for name in FIXTURES {
        let bytes = std::fs::read(fixture(name)).unwrap();
        // 160 positions spread over the file, the first 96 bytes (headers) in full.
        let spread = (0..160).map(|i| i * bytes.len() / 160 + i % 7);
        for at in (0..96).chain(spread).filter(|&at| at < bytes.len()) {
            for flip in [0xFFu8, 0x80] {
                let mut damaged = bytes.clone();
                damaged[at] ^= flip;
                try_model(&format!("{name} byte {at} ^ {flip:#x}"), damaged);
            }
        }
    }
}

#[test]
fn random_bytes_are_refused() {
    let mut state = 0x9E3779B97F4A7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for case in 0..200 {
        let len = (next() % 4096) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        assert_ne!(try_model(&format!("random #{case}"), bytes), Outcome::LoadedAndRan);
    }
}

/// `y = Identity(w)` over one float initializer `w` of the given dims and raw bytes.
fn initializer_model(dims: &[i64], raw: Vec<u8>) -> ModelProto {
    let w = TensorProto { name: "w".into(), dims: dims.to_vec(), data_type: 1, raw_data: raw.into(), ..Default::default() };
    let node = NodeProto {
        op_type: "Identity".into(),
        input: vec!["w".into()],
        output: vec!["y".into()],
        ..Default::default()
    };
    model(GraphProto {
        node: vec![node],
        initializer: vec![w],
        output: vec![ValueInfoProto { name: "y".into(), ..Default::default() }],
        ..Default::default()
    })
}

fn model(graph: GraphProto) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(graph),
        ..Default::default()
    }
}

/// The absurd headers: more elements than any machine holds, negative or overflowing dims,
/// a shape that disagrees with the data.
fn absurd_models() -> Vec<(&'static str, ModelProto)> {
    vec![
        ("2^40 elements", initializer_model(&[1 << 20, 1 << 20], vec![0; 16])),
        ("negative dim", initializer_model(&[-4, 4], vec![0; 64])),
        ("overflowing product", initializer_model(&[1 << 62, 1 << 62, 16], vec![0; 64])),
        ("data shorter than the shape", initializer_model(&[1000, 1000], vec![0; 400])),
    ]
}

#[test]
fn absurd_dims_are_refused_at_load() {
    for (case, m) in absurd_models() {
        let caught = catch_unwind(AssertUnwindSafe(|| Session::from_model(&m, ExternalData::Refused).err()));
        let err = caught.unwrap_or_else(|_| panic!("{case}: panicked"));
        let err = err.unwrap_or_else(|| panic!("{case}: loaded"));
        assert!(!err.to_string().contains('\n'), "{case}: not one line: {err}");
    }
}

#[test]
fn absurd_dims_fail_cleanly_under_an_address_space_cap() {
    let dir = tempfile::tempdir().unwrap();
    for (case, m) in absurd_models() {
        let path = dir.path().join("absurd.onnx");
        std::fs::write(&path, m.encode_to_vec()).unwrap();
        let out = run_capped(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{case}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{case}: not one line: {stderr}");
    }
}

/// `rbe-run model` with its address space capped at [`ULIMIT_KIB`].
fn run_capped(model: &Path) -> std::process::Output {
    let script = format!("ulimit -v {ULIMIT_KIB} && exec \"$0\" \"$1\"");
    Command::new("sh")
        .args(["-c", &script, env!("CARGO_BIN_EXE_rbe-run"), model.to_str().unwrap()])
        .output()
        .unwrap()
}

#[test]
fn huge_counts_and_deep_nesting_are_refused_or_bounded() {
    // 200k one-value initializers nobody reads, and a node with 100k attributes.
    let mut m = initializer_model(&[1], vec![0; 4]);
    let graph = m.graph.as_mut().unwrap();
    graph.initializer.extend((0..200_000).map(|i| TensorProto {
        name: format!("unused{i}"),
        dims: vec![1],
        data_type: 1,
        raw_data: vec![0u8; 4].into(),
        ..Default::default()
    }));
    graph.node[0].attribute = (0..100_000).map(|i| AttributeProto { name: format!("a{i}"), r#type: 2, i: 1, ..Default::default() }).collect();
    try_model("huge counts", m.encode_to_vec());
    // A graph attribute nested 10 000 deep: the decoder's recursion limit refuses it.
    let mut g = GraphProto::default();
    for _ in 0..10_000 {
        let node = NodeProto {
            op_type: "If".into(),
            attribute: vec![AttributeProto { name: "then_branch".into(), r#type: 5, g: Some(g), ..Default::default() }],
            ..Default::default()
        };
        g = GraphProto { node: vec![node], ..Default::default() };
    }
    // Encode on a thread with room for the recursive encoder; decoding must need none of it.
    let bytes = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || model(g).encode_to_vec())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(try_model("deep nesting", bytes), Outcome::Refused);
}

#[test]
fn wrong_feeds_are_errors_on_every_fixture() {
    for name in FIXTURES {
        let session = Session::load(&fixture(name)).unwrap();
        let good = token_feeds(session.inputs(), &[1, 2, 3], Vec::new()).unwrap();
        let with = |input: &str, tensor: Tensor| -> Vec<(String, Tensor)> {
            good.iter().map(|(n, t)| (n.clone(), if n == input { tensor.clone() } else { t.clone() })).collect()
        };
        let cases = [
            ("token id = vocab", with("input_ids", Tensor::from_vec(&[1, 3], vec![1i64, 1000, 2]).unwrap())),
            ("token id below -vocab", with("input_ids", Tensor::from_vec(&[1, 3], vec![1i64, -1001, 2]).unwrap())),
            ("float token ids", with("input_ids", Tensor::from_vec(&[1, 3], vec![1f32, 2.0, 3.0]).unwrap())),
            ("rank-3 token ids", with("input_ids", Tensor::from_vec(&[1, 1, 3], vec![1i64, 2, 3]).unwrap())),
            ("missing input", good[1..].to_vec()),
        ];
        for (case, feeds) in cases {
            let result = catch_unwind(AssertUnwindSafe(|| session.run(feeds)));
            let result = result.unwrap_or_else(|_| panic!("{name}, {case}: panicked"));
            assert!(result.is_err(), "{name}, {case}: ran");
        }
    }
}

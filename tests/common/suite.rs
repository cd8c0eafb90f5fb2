//! Suites of node cases in the ONNX conformance layout (`<suite>/manifest.tsv`,
//! `<suite>/node/<case>/model.onnx`, `test_data_set_<k>/{input,output}_<i>.pb`): reading a
//! manifest and the data, running a case through `Session`, comparing within tolerances.
//! Used by tests/conformance.rs (the ONNX suite) and tests/contrib.rs (onnxruntime's contrib
//! ops).

use std::path::{Path, PathBuf};

use prost::Message;
use rbe_runtime::onnx::proto::TensorProto;
use rbe_runtime::onnx::{tensor_from_proto, ExternalData};
use rbe_runtime::ops::Registry;
use rbe_runtime::{Session, Tensor};

/// One line of a `manifest.tsv`.
pub struct Case {
    pub name: String,
    pub rtol: f64,
    pub atol: f64,
    /// `tensor`, or the kind of non-tensor data the case feeds (no data committed then).
    pub io: String,
    /// `(domain, op_type, opset)` of every node, subgraphs included.
    pub ops: Vec<(String, String, i64)>,
}

/// How one case ended.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Passed,
    /// A clear error from the runtime (load, data or run).
    Error(String),
    /// Ran, but an output differs from the expected one.
    Mismatch(String),
}

/// The cases listed in `<suite>/manifest.tsv`.
pub fn manifest(suite: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(suite.join("manifest.tsv")).expect("manifest.tsv");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert!(f.len() == 5, "bad manifest line: {line}");
            let ops = f[4]
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|op| {
                    let (domain, rest) = op.split_once(':').expect("domain:op@opset");
                    let (op_type, opset) = rest.split_once('@').expect("op@opset");
                    (domain.to_string(), op_type.to_string(), opset.parse().expect("opset"))
                })
                .collect();
            Case {
                name: f[0].to_string(),
                rtol: f[1].parse().expect("rtol"),
                atol: f[2].parse().expect("atol"),
                io: f[3].to_string(),
                ops,
            }
        })
        .collect()
}

fn read_tensor(path: &Path) -> Result<(String, Tensor), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let proto = TensorProto::decode(bytes.as_slice()).map_err(|e| format!("{}: {e}", path.display()))?;
    let tensor = tensor_from_proto(&proto, ExternalData::Refused).map_err(|e| e.to_string())?;
    Ok((proto.name, tensor))
}

/// The numbered `{prefix}_{i}.pb` files of one data set, in order.
pub fn read_numbered(dir: &Path, prefix: &str) -> Result<Vec<(String, Tensor)>, String> {
    (0..)
        .map(|i| dir.join(format!("{prefix}_{i}.pb")))
        .take_while(|p| p.exists())
        .map(|p| read_tensor(&p))
        .collect()
}

/// The `test_data_set_<k>` directories of a case, in order.
pub fn data_sets(case_dir: &Path) -> Vec<PathBuf> {
    (0..).map(|k| case_dir.join(format!("test_data_set_{k}"))).take_while(|p| p.is_dir()).collect()
}

/// Every element of a float tensor as f64 (empty for other dtypes, which compare exactly).
fn as_f64(t: &Tensor) -> Vec<f64> {
    match t {
        Tensor::F32(a) => a.iter().map(|&v| v as f64).collect(),
        Tensor::F16(a) => a.iter().map(|v| v.to_f64()).collect(),
        Tensor::BF16(a) => a.iter().map(|v| v.to_f64()).collect(),
        Tensor::F64(a) => a.iter().copied().collect(),
        Tensor::Narrow(n) => n.to_f64().into_iter().collect(),
        _ => Vec::new(),
    }
}

/// `None` when `got` matches `want` within the tolerances
/// (`|got - want| <= atol + rtol * |want|`, NaN equals NaN), else what differs.
pub fn compare(got: &Tensor, want: &Tensor, rtol: f64, atol: f64) -> Option<String> {
    if got.dtype() != want.dtype() {
        return Some(format!("dtype {} instead of {}", got.dtype(), want.dtype()));
    }
    if got.shape() != want.shape() {
        return Some(format!("shape {:?} instead of {:?}", got.shape(), want.shape()));
    }
    if !want.dtype().is_float() && !want.dtype().is_narrow_float() {
        return (got != want).then(|| format!("{got:?} instead of {want:?}"));
    }
    let (g, w) = (as_f64(got), as_f64(want));
    let bad = g.iter().zip(&w).position(|(&g, &w)| {
        let both_nan = g.is_nan() && w.is_nan();
        let same_inf = g.is_infinite() && g == w;
        !(both_nan || same_inf || (g - w).abs() <= atol + rtol * w.abs())
    })?;
    Some(format!("element {bad}: got {} want {}", g[bad], w[bad]))
}

/// Loads and runs one case of `suite` (every data set); the first error or mismatch ends it.
pub fn run_case(suite: &Path, case: &Case) -> Outcome {
    let dir = suite.join("node").join(&case.name);
    let session = match Session::load(&dir.join("model.onnx")) {
        Ok(s) => s,
        Err(e) => return Outcome::Error(format!("load: {e}")),
    };
    if case.io != "tensor" {
        // Its data are not tensors: running without them must be refused.
        return match session.run(Vec::new()) {
            Ok(_) => Outcome::Mismatch(format!("ran without its {} inputs", case.io)),
            Err(e) => Outcome::Error(format!("run: {e}")),
        };
    }
    for set in data_sets(&dir) {
        let (inputs, expected) = match (read_numbered(&set, "input"), read_numbered(&set, "output")) {
            (Ok(i), Ok(o)) => (i, o),
            (Err(e), _) | (_, Err(e)) => return Outcome::Error(format!("data: {e}")),
        };
        let got = match session.run(inputs) {
            Ok(got) => got,
            Err(e) => return Outcome::Error(format!("run: {e}")),
        };
        if got.len() != expected.len() {
            return Outcome::Mismatch(format!("{} outputs instead of {}", got.len(), expected.len()));
        }
        for (i, ((_, g), (_, w))) in got.iter().zip(&expected).enumerate() {
            if let Some(diff) = compare(g, w, case.rtol, case.atol) {
                return Outcome::Mismatch(format!("output {i}: {diff}"));
            }
        }
    }
    Outcome::Passed
}

/// Every op of the case resolves in `registry` and all its data are tensors of runtime dtypes.
pub fn supported(suite: &Path, case: &Case, registry: &Registry) -> bool {
    let ops = case.ops.iter().all(|(d, op, opset)| registry.resolve(d, op, *opset).is_some());
    let dir = suite.join("node").join(&case.name);
    let data = case.io == "tensor"
        && data_sets(&dir)
            .iter()
            .all(|set| read_numbered(set, "input").is_ok() && read_numbered(set, "output").is_ok());
    ops && data
}

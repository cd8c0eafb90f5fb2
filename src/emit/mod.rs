//! `rbe-convert --emit onnx`: an `.rbeonnx` as a standard ONNX file that onnxruntime runs.
//!
//! Compressed linears become onnxruntime's `MatMulNBits`, compressed embeddings its
//! `GatherBlockQuantized` (domain `com.microsoft`), with our codes, steps and zero points as
//! they are: the dequantized weights are the ones our decoder computes, bit for bit. An
//! asymmetric tensor's per-block offsets, which those ops cannot hold, are added by standard
//! ops (for a linear: the input summed per block times the offsets, an exact identity). Codes
//! of 2 or 3 bits are stored at 4, of 5 to 7 bits at 8. A weight with no block form (a basis,
//! DCT mode, groups onnxruntime does not take) is written as its decoded f32 values, and the
//! report says why. `RbeLayerNorm` becomes `LayerNormalization` (its decomposition before
//! opset 17).

mod blocks;
mod builder;
mod nodes;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rbe_runtime::onnx::proto::{ModelProto, NodeProto, OperatorSetIdProto, TensorProto};
use rbe_runtime::graph::node_reads;
use rbe_runtime::rbe::RbeTensor;
use rbe_runtime::Tensor;
use serde::Serialize;

use builder::{Builder, MS_DOMAIN};
use nodes::Form;

const RBE_DOMAIN: &str = crate::convert::RBE_DOMAIN;

/// One rewritten weight, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct EmitRow {
    /// The `ai.rbe` node it belonged to.
    pub node: String,
    /// That node's op type.
    pub op: String,
    /// The encoded initializer.
    pub tensor: String,
    /// The ops that carry it now.
    pub form: String,
    /// Bytes it takes in the `.rbeonnx`.
    pub rbe_bytes: usize,
    /// Bytes of its initializers in the ONNX file (0 when shared with an earlier node).
    pub onnx_bytes: usize,
    /// Why it is not in block form, when it is not.
    pub note: Option<String>,
}

/// The emitted model and what happened to each weight.
pub struct Emitted {
    /// The standard ONNX model.
    pub model: ModelProto,
    /// One row per encoded weight.
    pub rows: Vec<EmitRow>,
}

/// The encoded initializers and the float parameters a rewrite reads.
struct Weights {
    /// The graph's initializers, in file order.
    all: Vec<TensorProto>,
    /// Index into `all` by name.
    by_name: HashMap<String, usize>,
}

impl Weights {
    /// Takes the initializers over (no copy of the weights).
    fn new(all: Vec<TensorProto>) -> Self {
        let by_name = all.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        Weights { all, by_name }
    }

    fn get(&self, name: &str) -> Option<&TensorProto> {
        self.by_name.get(name).map(|&i| &self.all[i])
    }

    fn encoded(&self, name: &str) -> Result<RbeTensor, String> {
        let t = self.get(name).ok_or_else(|| format!("'{name}' is not an initializer"))?;
        RbeTensor::from_bytes(&t.raw_data).map_err(|e| format!("'{name}': {e}"))
    }

    /// A float parameter vector by name: itself when raw f32, its decode (a new initializer)
    /// when encoded.
    fn vector(&self, b: &mut Builder, name: &str) -> Result<String, String> {
        match self.get(name).map(|t| t.data_type) {
            Some(2) => {
                let t = self.encoded(name)?;
                let decoded = format!("{name}.f32");
                b.shared(&decoded, || Tensor::from_vec(&[t.rows() * t.cols()], t.decode()))?;
                Ok(decoded)
            }
            _ => Ok(name.to_string()),
        }
    }
}

fn input(node: &NodeProto, i: usize) -> Option<&str> {
    node.input.get(i).map(String::as_str).filter(|s| !s.is_empty())
}

fn required(node: &NodeProto, i: usize) -> Result<&str, String> {
    input(node, i).ok_or_else(|| format!("node '{}' ({}): input #{i} is missing", node.name, node.op_type))
}

/// Rewrites one `ai.rbe` node into `b`; the report row for its weight, if it has one.
fn rewrite(node: &NodeProto, w: &Weights, b: &mut Builder) -> Result<Option<EmitRow>, String> {
    let attrs = rbe_runtime::ops::Attrs::new(node);
    let row = |tensor: &str, t: &RbeTensor, f: Form| EmitRow {
        node: node.name.clone(),
        op: node.op_type.clone(),
        tensor: tensor.to_string(),
        form: f.name,
        rbe_bytes: t.stored_bytes(),
        onnx_bytes: f.bytes,
        note: f.note,
    };
    let output = node.output.first().ok_or_else(|| format!("node '{}' has no output", node.name))?;
    match node.op_type.as_str() {
        "RbeMatMul" => {
            let activation = attrs.string("activation").map_err(|e| e.to_string())?.unwrap_or_default();
            if !activation.is_empty() {
                return Err(format!("node '{}': fused activation '{activation}' has no standard form here", node.name));
            }
            let (x, tensor) = (required(node, 0)?, required(node, 1)?);
            let t = w.encoded(tensor)?;
            let bias = input(node, 2).map(|n| w.vector(b, n)).transpose()?;
            let form = nodes::matmul(b, x, tensor, &t, bias.as_deref(), output)?;
            Ok(Some(row(tensor, &t, form)))
        }
        "RbeGather" => {
            let (table, ids) = (required(node, 0)?, required(node, 1)?);
            let t = w.encoded(table)?;
            let form = nodes::gather(b, table, &t, ids, output)?;
            Ok(Some(row(table, &t, form)))
        }
        "RbeLayerNorm" => {
            let scale = w.vector(b, required(node, 1)?)?;
            let bias = input(node, 2).map(|n| w.vector(b, n)).transpose()?;
            let (axis, epsilon) = (attrs.int_or("axis", -1), attrs.float_or("epsilon", 1e-5));
            nodes::layer_norm(b, required(node, 0)?, &scale, bias.as_deref(), axis, epsilon, output)?;
            Ok(None)
        }
        other => Err(format!("node '{}': unknown op {RBE_DOMAIN}.{other}", node.name)),
    }
}

fn default_opset(model: &ModelProto) -> i64 {
    model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(1, |o| o.version)
}

/// Reads an `.rbeonnx` and returns it as standard ONNX (see the module doc).
pub fn emit_onnx(path: &Path) -> Result<Emitted, String> {
    let mut model = crate::container::unpack_to_onnx(path)?;
    let opset = default_opset(&model);
    let graph = model.graph.as_mut().ok_or("the container has no graph")?;
    let mut known: HashSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    let weights = Weights::new(std::mem::take(&mut graph.initializer));
    let mut nodes = Vec::with_capacity(graph.node.len());
    let mut added = Vec::new();
    let mut rows = Vec::new();
    for node in std::mem::take(&mut graph.node) {
        if node.domain != RBE_DOMAIN {
            nodes.push(node);
            continue;
        }
        let prefix = node.output.first().cloned().unwrap_or_else(|| node.name.clone());
        let mut b = Builder::new(&prefix, opset, &mut known);
        rows.extend(rewrite(&node, &weights, &mut b)?);
        nodes.extend(b.nodes);
        added.extend(b.initializers);
    }
    graph.node = nodes;
    let used: HashSet<String> = graph.node.iter().flat_map(node_reads).chain(graph.output.iter().map(|o| o.name.clone())).collect();
    graph.initializer = weights.all.into_iter().filter(|t| used.contains(&t.name)).chain(added).collect();
    model.opset_import.retain(|o| o.domain != RBE_DOMAIN);
    let uses_ms = model.graph.iter().flat_map(|g| &g.node).any(|n| n.domain == MS_DOMAIN);
    if uses_ms && !model.opset_import.iter().any(|o| o.domain == MS_DOMAIN) {
        model.opset_import.push(OperatorSetIdProto { domain: MS_DOMAIN.into(), version: 1 });
    }
    Ok(Emitted { model, rows })
}

/// The report as a table: one line per weight, then totals.
pub fn table(rows: &[EmitRow]) -> String {
    let mut out = format!("{:<44} {:<36} {:>10} {:>10}  note\n", "tensor", "form", "rbe bytes", "onnx bytes");
    for r in rows {
        out += &format!("{:<44} {:<36} {:>10} {:>10}  {}\n", r.tensor, r.form, r.rbe_bytes, r.onnx_bytes, r.note.as_deref().unwrap_or(""));
    }
    let (ours, theirs): (usize, usize) = rows.iter().fold((0, 0), |(a, b), r| (a + r.rbe_bytes, b + r.onnx_bytes));
    let exact = rows.iter().filter(|r| r.note.is_none()).count();
    out += &format!("{} weights ({exact} in block form, the rest f32): {ours} bytes in the container, {theirs} in the ONNX file\n", rows.len());
    out
}

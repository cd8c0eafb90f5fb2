//! `rbe-convert`'s core: find the weights of MatMul/Gemm, Gather and LayerNorm nodes, encode
//! them with the RBE codec, and rewrite those nodes as `ai.rbe` ops.

mod encode;
mod gather;
mod index;
mod layernorm;
mod matmul;
mod plan;
mod report;

pub use plan::RBE_DOMAIN;
pub use report::{ConvertReport, TensorReport};

use std::collections::HashSet;

use rbe_runtime::onnx::proto::{ModelProto, NodeProto, OperatorSetIdProto, TensorProto};
use rbe_runtime::onnx::{tensor_to_proto, ExternalData};
use rbe_runtime::Tensor;

use crate::codec::EncodeParams;
use index::{GraphIndex, Initializers};
use plan::{PlannedInput, Rewrite, Weight};

/// Progress callbacks: told the number of tensors to encode, then ticked once per tensor.
pub struct Progress<'a> {
    /// Called once with the number of weights planned for encoding.
    pub on_plan: &'a dyn Fn(usize),
    /// Called after each tensor is encoded (from worker threads).
    pub tick: &'a (dyn Fn() + Sync),
}

impl Progress<'_> {
    /// No progress reporting.
    pub fn none() -> Progress<'static> {
        Progress { on_plan: &|_| {}, tick: &|| {} }
    }
}

/// Reads `input` (an `.onnx`, with external data beside it), converts it with `params`, and
/// returns the container's bytes and the report. Nothing is written.
pub fn convert_file(
    input: &std::path::Path,
    params: &EncodeParams,
    preset: &str,
    zstd_level: i32,
    progress: &Progress,
) -> Result<(Vec<u8>, ConvertReport), String> {
    let model = rbe_runtime::onnx::read_model(input).map_err(|e| e.to_string())?;
    let dir = input.parent().unwrap_or(std::path::Path::new("."));
    let input_bytes = report::model_size(input, &model);
    convert_to_container(model, ExternalData::Folder(dir), input_bytes, params, preset, zstd_level, progress)
}

/// Converts `model` (its external data in `data`, `input_bytes` its source size for the
/// report) and packs it: the container's bytes and the report. Nothing is written.
pub fn convert_to_container(
    mut model: ModelProto,
    data: ExternalData,
    input_bytes: u64,
    params: &EncodeParams,
    preset: &str,
    zstd_level: i32,
    progress: &Progress,
) -> Result<(Vec<u8>, ConvertReport), String> {
    let tensors = convert(&mut model, data, params, progress)?;
    let mut builder = crate::container::ContainerBuilder::new(zstd_level);
    if let Some(graph) = model.graph.as_mut() {
        graph.initializer.iter_mut().for_each(|t| builder.externalize(t));
    }
    let bytes = builder.finish(&model)?;
    let report = ConvertReport::new(preset.to_string(), tensors, input_bytes, bytes.len() as u64);
    Ok((bytes, report))
}

/// Finds every rewrite, claiming each node at most once.
fn plan_rewrites(ix: &GraphIndex) -> Vec<Rewrite> {
    let mut claimed = HashSet::new();
    let mut rewrites = Vec::new();
    for (i, node) in ix.nodes().iter().enumerate() {
        let planned = match (node.domain.as_str(), node.op_type.as_str()) {
            ("" | "ai.onnx", "MatMul") => matmul::plan_matmul(ix, i),
            ("" | "ai.onnx", "Gemm") => matmul::plan_gemm(ix, i),
            ("" | "ai.onnx", "Gather") => gather::plan_gather(ix, i),
            ("" | "ai.onnx", "LayerNormalization") => layernorm::plan_layernorm(ix, i),
            ("" | "ai.onnx", "Div") => layernorm::plan_decomposed(ix, i),
            _ => None,
        };
        if let Some(r) = planned.filter(|r| r.removed.iter().all(|n| !claimed.contains(n))) {
            claimed.extend(r.removed.iter().copied());
            rewrites.push(r);
        }
    }
    rewrites
}

/// Converts `model` in place and returns one report row per stored tensor.
pub fn convert(
    model: &mut ModelProto,
    data: ExternalData,
    params: &EncodeParams,
    progress: &Progress,
) -> Result<Vec<TensorReport>, String> {
    let graph = model.graph.as_ref().ok_or("the model has no graph")?;
    let values = Initializers::decode(graph, data)?;
    let lookup = |name: &str| values.get(name);
    let ix = GraphIndex::new(&graph.node, graph.output.iter().map(|o| o.name.as_str()), &lookup);
    let rewrites = plan_rewrites(&ix);
    let weights: Vec<&Weight> = rewrites
        .iter()
        .flat_map(|r| r.inputs.iter())
        .filter_map(|i| match i {
            PlannedInput::Encoded(w) => Some(w),
            _ => None,
        })
        .collect();
    (progress.on_plan)(weights.len());
    let (encoded, assignment) = encode::encode_weights(&weights, params, progress.tick)?;
    let mut initializers: Vec<TensorProto> = graph
        .initializer
        .iter()
        .map(|t| match ix.initializer(&t.name) {
            // Typed or external data is normalised to embedded raw data.
            Some(v) => tensor_to_proto(&t.name, &v),
            None => t.clone(),
        })
        .collect();
    let nodes = rewrite_nodes(&ix, &rewrites, &encoded, &assignment, &mut initializers)?;
    for e in &encoded {
        let bytes = e.encoded.tensor.to_bytes();
        let n = bytes.len();
        initializers.push(tensor_to_proto(&e.name, &Tensor::from_vec(&[n], bytes).map_err(|e| e.to_string())?));
    }
    drop(ix);
    let graph = model.graph.as_mut().ok_or("the model has no graph")?;
    graph.node = nodes;
    let used: HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .chain(graph.output.iter().map(|o| o.name.as_str()))
        .collect();
    let dropped: HashSet<String> = initializers
        .iter()
        .filter(|t| !used.contains(t.name.as_str()))
        .map(|t| t.name.clone())
        .collect();
    initializers.retain(|t| !dropped.contains(&t.name));
    // Older IR versions list initializers among the inputs too.
    graph.input.retain(|i| !dropped.contains(&i.name));
    graph.initializer = initializers;
    if !model.opset_import.iter().any(|o| o.domain == RBE_DOMAIN) {
        model.opset_import.push(OperatorSetIdProto { domain: RBE_DOMAIN.into(), version: 1 });
    }
    Ok(report::tensor_reports(&encoded, &model.graph.as_ref().ok_or("no graph")?.initializer))
}

/// The new node list: replaced nodes dropped, each `ai.rbe` node placed where the node that
/// produced its output stood, so the list stays topologically sorted.
fn rewrite_nodes(
    ix: &GraphIndex,
    rewrites: &[Rewrite],
    encoded: &[encode::EncodedWeight],
    assignment: &[usize],
    initializers: &mut Vec<TensorProto>,
) -> Result<Vec<NodeProto>, String> {
    let mut weights = assignment.iter();
    let mut replacement: Vec<Option<NodeProto>> = vec![None; ix.nodes().len()];
    let mut removed = vec![false; ix.nodes().len()];
    for r in rewrites {
        let mut inputs = Vec::new();
        for input in &r.inputs {
            inputs.push(match input {
                PlannedInput::Value(name) => name.clone(),
                PlannedInput::Encoded(_) => {
                    let e = weights.next().ok_or("internal: weight count mismatch")?;
                    encoded[*e].name.clone()
                }
                PlannedInput::Raw(name, tensor) => {
                    initializers.push(tensor_to_proto(name, tensor));
                    name.clone()
                }
            });
        }
        let anchor = *r
            .removed
            .iter()
            .find(|&&n| ix.node(n).output.first() == Some(&r.output))
            .ok_or("internal: rewrite without an anchor")?;
        r.removed.iter().for_each(|&n| removed[n] = true);
        replacement[anchor] = Some(NodeProto {
            name: r.name.clone(),
            op_type: r.op_type.to_string(),
            domain: RBE_DOMAIN.to_string(),
            input: inputs,
            output: vec![r.output.clone()],
            attribute: r.attributes.clone(),
            ..Default::default()
        });
    }
    Ok(ix
        .nodes()
        .iter()
        .zip(replacement)
        .zip(removed)
        .filter_map(|((node, new), gone)| new.or((!gone).then(|| node.clone())))
        .collect())
}

//! `rbe-convert`'s core: find the weights of MatMul/Gemm, Gather and LayerNorm nodes, encode
//! them with the RBE codec, and rewrite those nodes as `ai.rbe` ops.

mod encode;
mod gather;
mod index;
mod layernorm;
mod matmul;
mod plan;
mod report;

pub use plan::{transpose, Weight, RBE_DOMAIN};
pub use report::{ConvertReport, TensorReport};

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use rbe_runtime::onnx::proto::{ModelProto, NodeProto, OperatorSetIdProto, TensorProto};
use rbe_runtime::graph::node_reads;
use rbe_runtime::onnx::{tensor_to_proto, ExternalData};
use rbe_runtime::Tensor;

use crate::allocate::{AllocationReport, Reference};
use crate::calibrate::Calibration;
use crate::codec::{EncodeParams, Hessian};
use index::{GraphIndex, Initializers};
use plan::{PlannedInput, Rewrite};

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
    convert_file_with(input, params, preset, zstd_level, progress, None)
}

/// [`convert_file`], with the linear layers encoded under calibration statistics when
/// `calibration` is given.
pub fn convert_file_with(
    input: &std::path::Path,
    params: &EncodeParams,
    preset: &str,
    zstd_level: i32,
    progress: &Progress,
    calibration: Option<&Calibration>,
) -> Result<(Vec<u8>, ConvertReport), String> {
    let model = rbe_runtime::onnx::read_model(input).map_err(|e| e.to_string())?;
    let dir = input.parent().unwrap_or(std::path::Path::new("."));
    let input_bytes = report::model_size(input, &model);
    let job = ContainerJob { params, preset, zstd_level, progress, calibration };
    convert_to_container(model, ExternalData::Folder(dir), input_bytes, &job)
}

/// How to encode and pack a model.
pub struct ContainerJob<'a> {
    /// Encoder knobs.
    pub params: &'a EncodeParams,
    /// Their preset name, for the report.
    pub preset: &'a str,
    /// zstd level of the container.
    pub zstd_level: i32,
    /// Progress callbacks.
    pub progress: &'a Progress<'a>,
    /// Calibration windows, if the linear layers are to be encoded under their statistics.
    pub calibration: Option<&'a Calibration<'a>>,
}

/// Converts `model` (its external data in `data`, `input_bytes` its source size for the
/// report) and packs it: the container's bytes and the report. Nothing is written.
pub fn convert_to_container(
    mut model: ModelProto,
    data: ExternalData,
    input_bytes: u64,
    job: &ContainerJob,
) -> Result<(Vec<u8>, ConvertReport), String> {
    let (tensors, allocation) = convert(&mut model, data, job.params, job.progress, job.calibration)?;
    let mut builder = crate::container::ContainerBuilder::new(job.zstd_level);
    if let Some(graph) = model.graph.as_mut() {
        graph.initializer.iter_mut().for_each(|t| builder.externalize(t));
    }
    let bytes = builder.finish(&model)?;
    let mut report = ConvertReport::new(job.preset.to_string(), tensors, input_bytes, bytes.len() as u64);
    report.allocation = allocation;
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

/// Converts `model` in place and returns one report row per stored tensor (and what an
/// allocation did). With `calibration`, the original model first runs on its windows to
/// collect the inputs' statistics of every planned linear layer; with its goal, every weight
/// is encoded at each of the goal's widths and one is chosen per weight to meet it.
pub fn convert(
    model: &mut ModelProto,
    data: ExternalData,
    params: &EncodeParams,
    progress: &Progress,
    calibration: Option<&Calibration>,
) -> Result<(Vec<TensorReport>, Option<AllocationReport>), String> {
    let graph = model.graph.as_ref().ok_or("the model has no graph")?;
    let values = Initializers::new(graph, data);
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
    let goal = calibration.and_then(|c| c.goal.as_ref());
    // With an allocation target, the last windows are held out of the statistics and the search.
    let mut references = None;
    let fitting = match calibration {
        Some(c) if goal.is_some() => {
            let (fit, held) = c.held_out()?;
            references = Some((Reference::compute(model, data, fit.to_vec())?, Reference::compute(model, data, held.to_vec())?));
            Some(Calibration { windows: fit.to_vec(), tick: c.tick, damp: c.damp, goal: None })
        }
        _ => None,
    };
    let hessians = match fitting.as_ref().or(calibration) {
        Some(c) => layer_statistics(model, data, c, &weights)?,
        None => HashMap::new(),
    };
    let sharing = encode::Sharing::of(&weights, &hessians);
    let mut added = Vec::new();
    let nodes = rewrite_nodes(&ix, &rewrites, &sharing.names(), &sharing.assignment, &mut added)?;
    // Values read inside `If` branches count too: a merged decoder's weights live outside them.
    let used: HashSet<String> = nodes
        .iter()
        .flat_map(node_reads)
        .chain(graph.output.iter().map(|o| o.name.clone()))
        .collect();
    // Only the initializers that stay are decoded again, normalised to embedded raw data.
    let mut initializers = Vec::new();
    let mut dropped = HashSet::new();
    for t in &graph.initializer {
        match values.decode(&t.name)? {
            Some(v) if used.contains(&t.name) => initializers.push(tensor_to_proto(&t.name, &v)),
            Some(_) => {
                dropped.insert(t.name.clone());
            }
            None => initializers.push(t.clone()),
        }
    }
    initializers.extend(added);
    drop(ix);
    // The planned weights leave the plan to be encoded, each dropped once encoded.
    let mut unique: Vec<Option<Weight>> = (0..sharing.first.len()).map(|_| None).collect();
    let planned = rewrites.into_iter().flat_map(|r| r.inputs).filter_map(|i| match i {
        PlannedInput::Encoded(w) => Some(w),
        _ => None,
    });
    for (i, w) in planned.enumerate() {
        let u = sharing.assignment[i];
        if sharing.first[u] == i {
            unique[u] = Some(w);
        }
    }
    let unique: Vec<Weight> = unique.into_iter().collect::<Option<_>>().ok_or("internal: a shared weight is missing")?;
    // The rewritten graph, still without its encoded weights (what an allocation measures).
    let graph = model.graph.as_mut().ok_or("the model has no graph")?;
    graph.node = nodes;
    // Older IR versions list initializers among the inputs too.
    graph.input.retain(|i| !dropped.contains(&i.name));
    graph.initializer = initializers;
    if !model.opset_import.iter().any(|o| o.domain == RBE_DOMAIN) {
        model.opset_import.push(OperatorSetIdProto { domain: RBE_DOMAIN.into(), version: 1 });
    }
    (progress.on_plan)(unique.len());
    let (encoded, allocation) = match (goal, &references) {
        (Some(goal), Some((search, check))) => {
            let job = encode::AllocationJob { template: model, data, goal, search, check };
            let (e, r) = encode::allocate_unique(unique, sharing, params, &hessians, &job, progress.tick)?;
            (e, Some(r))
        }
        _ => (encode::encode_unique(unique, sharing, params, &hessians, progress.tick)?, None),
    };
    let graph = model.graph.as_mut().ok_or("the model has no graph")?;
    for e in &encoded {
        let bytes = e.encoded.tensor.to_bytes();
        let n = bytes.len();
        graph.initializer.push(tensor_to_proto(&e.name, &Tensor::from_vec(&[n], bytes).map_err(|e| e.to_string())?));
    }
    Ok((report::tensor_reports(&encoded, &graph.initializer), allocation))
}

/// The prepared input statistics of every planned weight that multiplies an activation, by
/// the activation's name.
fn layer_statistics(
    model: &ModelProto,
    data: ExternalData,
    calibration: &Calibration,
    weights: &[&Weight],
) -> Result<HashMap<String, Hessian>, String> {
    let wanted: HashMap<String, usize> =
        weights.iter().filter_map(|w| Some((w.activation.clone()?, w.cols))).collect();
    let moments = crate::calibrate::collect(model, data, calibration, &wanted)?;
    moments
        .into_par_iter()
        .map(|(name, m)| {
            let xtx: Vec<f64> = m.xtx.iter().map(|&v| v as f64).collect();
            let h = Hessian::new(&xtx, m.cols, calibration.damp).map_err(|e| format!("statistics of '{name}': {e}"))?;
            Ok((name, h))
        })
        .collect()
}

/// The new node list: replaced nodes dropped, each `ai.rbe` node placed where the node that
/// produced its output stood, so the list stays topologically sorted.
fn rewrite_nodes(
    ix: &GraphIndex,
    rewrites: &[Rewrite],
    encoded_names: &[String],
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
                    encoded_names[*e].clone()
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

//! `rbe-convert`'s core: find the weights of MatMul/Gemm, Gather and LayerNorm nodes, encode
//! them with the RBE codec, and rewrite those nodes as `ai.rbe` ops.

mod encode;
mod gather;
mod graph_plan;
mod index;
mod layernorm;
mod matmul;
mod plan;
mod report;

pub use index::Initializers;
pub use plan::{transpose, Weight, RBE_DOMAIN};
pub use report::{model_size, ConvertReport, TensorReport};

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use rbe_runtime::onnx::proto::{ModelProto, OperatorSetIdProto, TensorProto};
use rbe_runtime::graph::node_reads;
use rbe_runtime::onnx::{tensor_from_proto, tensor_to_proto, ExternalData, FileMap};
use rbe_runtime::Tensor;

use crate::allocate::{AllocationReport, Reference};
use crate::calibrate::Calibration;
use crate::codec::{EncodeParams, Hessian};
use graph_plan::{GraphPlan, NewInitializers};

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
    let (model, pages) = rbe_runtime::onnx::read_model_mapped(input).map_err(|e| e.to_string())?;
    let dir = input.parent().unwrap_or(std::path::Path::new("."));
    let input_bytes = report::model_size(input, &model);
    let job = ContainerJob { params, preset, zstd_level, progress, calibration };
    convert_to_container(model, Source { data: ExternalData::Folder(dir), pages: Some(&pages) }, input_bytes, &job)
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

/// Where a model's tensor data lies.
#[derive(Clone, Copy)]
pub struct Source<'a> {
    /// Its external data.
    pub data: ExternalData<'a>,
    /// The mapped file its inline data borrows from, if any: each weight's pages are given
    /// back once read.
    pub pages: Option<&'a FileMap>,
}

/// Converts `model` (its data in `source`, `input_bytes` its source size for the report) and
/// packs it: the container's bytes and the report. Nothing is written.
pub fn convert_to_container(
    mut model: ModelProto,
    source: Source,
    input_bytes: u64,
    job: &ContainerJob,
) -> Result<(Vec<u8>, ConvertReport), String> {
    let (tensors, allocation) = convert(&mut model, source, job.params, job.progress, job.calibration)?;
    let mut builder = crate::container::ContainerBuilder::new(job.zstd_level);
    if let Some(graph) = model.graph.as_mut() {
        graph.initializer.iter_mut().for_each(|t| builder.externalize(t));
    }
    let bytes = builder.finish(&model)?;
    let mut report = ConvertReport::new(job.preset.to_string(), tensors, input_bytes, bytes.len() as u64);
    report.allocation = allocation;
    Ok((bytes, report))
}

/// Converts `model` in place and returns one report row per stored tensor (and what an
/// allocation did). With `calibration`, the original model first runs on its windows to
/// collect the inputs' statistics of every planned linear layer; with its goal, every weight
/// is encoded at each of the goal's widths and one is chosen per weight to meet it.
pub fn convert(
    model: &mut ModelProto,
    source: Source,
    params: &EncodeParams,
    progress: &Progress,
    calibration: Option<&Calibration>,
) -> Result<(Vec<TensorReport>, Option<AllocationReport>), String> {
    let data = source.data;
    let source_model = model.clone();
    let graph = source_model.graph.as_ref().ok_or("the model has no graph")?;
    let values = Initializers::new(graph, data, source.pages);
    let lookup = |name: &str| values.get(name);
    let local = |t: &TensorProto| tensor_from_proto(t, data).ok();
    let plan = GraphPlan::new(graph, &lookup, &local);
    let weights = plan.weights();
    let goal = calibration.and_then(|c| c.goal.as_ref());
    // With an allocation target, some windows are held out of the statistics and the search.
    let mut references = None;
    let fitting = match calibration {
        Some(c) if goal.is_some() => {
            let (fit, held) = c.held_out()?;
            references = Some((Reference::compute(model, data, fit.clone())?, Reference::compute(model, data, held)?));
            Some(Calibration { windows: fit, tick: c.tick, damp: c.damp, act_order: c.act_order, goal: None })
        }
        _ => None,
    };
    let hessians = match fitting.as_ref().or(calibration) {
        Some(c) => layer_statistics(model, data, c, &weights)?,
        None => HashMap::new(),
    };
    let sharing = encode::Sharing::of(&weights, &hessians, &values)?;
    let encoded_names = sharing.names();
    let mut names = sharing.assignment.iter().map(|&u| encoded_names[u].clone());
    let mut added = NewInitializers::new(graph);
    let nodes = plan.rewrite(graph, &mut names, &mut added)?;
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
        if !used.contains(&t.name) {
            dropped.insert(t.name.clone());
            continue;
        }
        match values.decode(&t.name)? {
            Some(v) => initializers.push(tensor_to_proto(&t.name, &v)),
            None => initializers.push(t.clone()),
        }
    }
    initializers.extend(added.tensors);
    // The planned weights leave the plan to be encoded, each dropped once encoded.
    let mut unique: Vec<Option<Weight>> = (0..sharing.first.len()).map(|_| None).collect();
    for (i, w) in plan.into_weights().into_iter().enumerate() {
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
            let (e, r) = encode::allocate_unique(unique, sharing, params, &hessians, &job, &values, progress.tick)?;
            (e, Some(r))
        }
        _ => (encode::encode_unique(unique, sharing, params, &hessians, &values, progress.tick)?, None),
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
            let h = Hessian::with_order(&xtx, m.cols, calibration.damp, calibration.act_order).map_err(|e| format!("statistics of '{name}': {e}"))?;
            Ok((name, h))
        })
        .collect()
}

//! Encoding the planned weights: identical tensors (tied embeddings, an LM head stored as a
//! transposed copy) are encoded once; the rest in parallel.

use std::collections::HashMap;

use rayon::prelude::*;

use rbe_runtime::onnx::proto::ModelProto;
use rbe_runtime::onnx::ExternalData;

use super::index::Initializers;
use super::plan::Weight;
use crate::allocate::{self, AllocationReport, Bench, Goal, Reference};
use crate::codec::{encode, encode_calibrated, EncodeParams, Encoded, Hessian};

/// One encoded tensor and every weight that shares it.
pub struct EncodedWeight {
    /// Name of the `uint8` initializer that holds the encoded bytes.
    pub name: String,
    /// The original initializers it stands for (more than one when weights were tied).
    pub sources: Vec<String>,
    /// The encoder's output.
    pub encoded: Encoded,
}

/// Whether two planned weights hold the same values: read from the same initializer the same
/// way, or with equal fingerprints and equal values when read.
fn same_values(a: &Weight, b: &Weight, store: &Initializers) -> Result<bool, String> {
    if (a.rows, a.cols, a.fingerprint) != (b.rows, b.cols, b.fingerprint) {
        return Ok(false);
    }
    if (&a.source, a.transposed, a.scale) == (&b.source, b.transposed, b.scale) {
        return Ok(true);
    }
    Ok(store.weight_values(a)? == store.weight_values(b)?)
}

/// Which planned weights are the same tensor: each weight's index into the unique ones, and per
/// unique tensor the weight it was first seen as, the initializers it stands for, and the input
/// whose calibration statistics steer its encoding (the first of its uses that has them: for
/// a tied table, the LM head's input).
pub struct Sharing {
    /// For each planned weight, the index of its unique tensor.
    pub assignment: Vec<usize>,
    /// For each unique tensor, the index of the planned weight it was first seen as.
    pub first: Vec<usize>,
    /// For each unique tensor, the original initializers it stands for.
    pub sources: Vec<Vec<String>>,
    /// For each unique tensor, the input whose statistics (in the `hessians` given) steer it.
    pub steering: Vec<Option<String>>,
    /// For each unique tensor, whether it is an embedding table only: Gather nodes read it,
    /// and no linear layer.
    pub tables: Vec<bool>,
}

impl Sharing {
    /// Finds the identical weights among `weights` (read from `store` when only their
    /// fingerprints tell them apart).
    pub fn of(weights: &[&Weight], hessians: &HashMap<String, Hessian>, store: &Initializers) -> Result<Self, String> {
        let mut sharing = Sharing { assignment: Vec::new(), first: Vec::new(), sources: Vec::new(), steering: Vec::new(), tables: Vec::new() };
        let mut by_print: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, w) in weights.iter().enumerate() {
            let candidates = by_print.entry(w.fingerprint).or_default();
            let mut same = None;
            for &u in candidates.iter() {
                if same_values(weights[sharing.first[u]], w, store)? {
                    same = Some(u);
                    break;
                }
            }
            let index = same.unwrap_or_else(|| {
                sharing.first.push(i);
                sharing.sources.push(Vec::new());
                sharing.steering.push(None);
                sharing.tables.push(true);
                candidates.push(sharing.first.len() - 1);
                sharing.first.len() - 1
            });
            let steer = w.activation.as_ref().filter(|a| hessians.get(*a).is_some_and(|h| h.cols() == w.cols));
            if sharing.steering[index].is_none() {
                sharing.steering[index] = steer.cloned();
            }
            sharing.tables[index] &= w.gathered;
            if !sharing.sources[index].contains(&w.source) {
                sharing.sources[index].push(w.source.clone());
            }
            sharing.assignment.push(index);
        }
        Ok(sharing)
    }

    /// The name of each unique tensor's encoded initializer.
    pub fn names(&self) -> Vec<String> {
        self.sources.iter().map(|s| format!("{}.rbe", s[0])).collect()
    }
}

/// Encodes the unique tensors (`unique[u]` is unique tensor `u`), each with error feedback
/// when `sharing` names statistics for it, embedding tables with their own knobs
/// ([`EncodeParams::for_table`]); each weight's values are read from `store` when
/// its turn comes and dropped as soon as it is encoded. `tick` is called once per tensor.
pub fn encode_unique(
    unique: Vec<Weight>,
    sharing: Sharing,
    params: &EncodeParams,
    hessians: &HashMap<String, Hessian>,
    store: &Initializers,
    tick: &(dyn Fn() + Sync),
) -> Result<Vec<EncodedWeight>, String> {
    let names = sharing.names();
    let table_params = params.for_table();
    let encoded: Vec<Encoded> = unique
        .into_par_iter()
        .zip(sharing.steering)
        .zip(sharing.tables)
        .map(|((w, steering), table)| {
            let data = store.weight_values(&w)?;
            let e = match steering.and_then(|a| hessians.get(&a)) {
                Some(h) => encode_calibrated(&data, w.rows, w.cols, params, h).map(|(e, _)| e),
                None => encode(&data, w.rows, w.cols, if table { &table_params } else { params }),
            }
            .map_err(|e| format!("cannot encode '{}': {e}", w.source));
            tick();
            e
        })
        .collect::<Result<_, _>>()?;
    Ok(encoded
        .into_iter()
        .zip(sharing.sources)
        .zip(names)
        .map(|((encoded, sources), name)| EncodedWeight { name, sources, encoded })
        .collect())
}

/// What an allocation measures its choices on.
pub struct AllocationJob<'a> {
    /// The rewritten model without its encoded weights.
    pub template: &'a ModelProto,
    /// Its external data.
    pub data: ExternalData<'a>,
    /// The target and the formats.
    pub goal: &'a Goal<'a>,
    /// The original's logits on the search windows.
    pub search: &'a Reference,
    /// The original's logits on the held-out windows.
    pub check: &'a Reference,
}

/// Encodes the unique tensors in every format of the job's goal ([`encode_unique`]'s
/// statistics steer them the same way) and keeps, per tensor, the width the allocation picks.
pub fn allocate_unique(
    unique: Vec<Weight>,
    sharing: Sharing,
    params: &EncodeParams,
    hessians: &HashMap<String, Hessian>,
    job: &AllocationJob,
    store: &Initializers,
    tick: &(dyn Fn() + Sync),
) -> Result<(Vec<EncodedWeight>, AllocationReport), String> {
    let names = sharing.names();
    let steered = unique.into_iter().zip(&sharing.steering).map(|(w, s)| (w, s.as_ref().and_then(|a| hessians.get(a)))).collect();
    let choices = allocate::encode_all(steered, &job.goal.formats(), params, store, tick)?;
    let bench = Bench { template: job.template, data: job.data, names: &names, search: job.search, check: job.check };
    let (picked, report) = allocate::allocate(&choices, &bench, job.goal)?;
    let encoded = choices
        .into_iter()
        .zip(picked)
        .map(|(c, i)| c.options.into_iter().nth(i).map(|o| o.encoded).ok_or("internal: a chosen width is missing"))
        .collect::<Result<Vec<_>, _>>()?;
    let rows = encoded
        .into_iter()
        .zip(sharing.sources)
        .zip(names)
        .map(|((encoded, sources), name)| EncodedWeight { name, sources, encoded })
        .collect();
    Ok((rows, report))
}

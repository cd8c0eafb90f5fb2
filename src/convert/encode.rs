//! Encoding the planned weights: identical tensors (tied embeddings, an LM head stored as a
//! transposed copy) are encoded once; the rest in parallel.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use rayon::prelude::*;

use super::plan::Weight;
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

fn fingerprint(w: &Weight) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (w.rows, w.cols).hash(&mut h);
    w.data.iter().for_each(|v| v.to_bits().hash(&mut h));
    h.finish()
}

/// Encodes `weights`, sharing identical ones. Returns the encoded tensors and, for each input
/// weight, the index of the encoded tensor it uses. A weight whose input has statistics in
/// `hessians` (by value name) is encoded with error feedback; a shared tensor takes the
/// statistics of the first of its uses that has them (a tied table: the LM head's input).
/// `tick` is called once per encoded tensor.
pub fn encode_weights(
    weights: &[&Weight],
    params: &EncodeParams,
    hessians: &HashMap<String, Hessian>,
    tick: &(dyn Fn() + Sync),
) -> Result<(Vec<EncodedWeight>, Vec<usize>), String> {
    let mut unique: Vec<&Weight> = Vec::new();
    let mut sources: Vec<Vec<String>> = Vec::new();
    let mut steering: Vec<Option<&Hessian>> = Vec::new();
    let mut by_print: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut assignment = Vec::with_capacity(weights.len());
    for w in weights {
        let candidates = by_print.entry(fingerprint(w)).or_default();
        let same = candidates.iter().copied().find(|&u| {
            let o = unique[u];
            (o.rows, o.cols) == (w.rows, w.cols) && o.data == w.data
        });
        let index = match same {
            Some(u) => u,
            None => {
                unique.push(w);
                sources.push(Vec::new());
                steering.push(None);
                candidates.push(unique.len() - 1);
                unique.len() - 1
            }
        };
        let statistics = w.activation.as_ref().and_then(|a| hessians.get(a)).filter(|h| h.cols() == w.cols);
        steering[index] = steering[index].or(statistics);
        if !sources[index].contains(&w.source) {
            sources[index].push(w.source.clone());
        }
        assignment.push(index);
    }
    let encoded: Vec<Encoded> = unique
        .par_iter()
        .zip(&steering)
        .map(|(w, hessian)| {
            let e = match hessian {
                Some(h) => encode_calibrated(&w.data, w.rows, w.cols, params, h).map(|(e, _)| e),
                None => encode(&w.data, w.rows, w.cols, params),
            }
            .map_err(|e| format!("cannot encode '{}': {e}", w.source));
            tick();
            e
        })
        .collect::<Result<_, _>>()?;
    let out = encoded
        .into_iter()
        .zip(sources)
        .map(|(encoded, sources)| EncodedWeight { name: format!("{}.rbe", sources[0]), sources, encoded })
        .collect();
    Ok((out, assignment))
}

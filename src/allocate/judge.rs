//! Model-level measurements: the original model's logits on a set of windows, and how far a
//! converted model (the rewritten graph with one encoding chosen per weight) is from them.

use rayon::prelude::*;
use rbe_runtime::onnx::proto::ModelProto;
use rbe_runtime::onnx::{tensor_to_proto, ExternalData};
use rbe_runtime::{Session, SessionOptions, Tensor};
use serde::Serialize;

use crate::codec::Encoded;
use crate::diff::compare::is_logits;
use crate::diff::metrics::{argmax, log_softmax};
use crate::feeds::token_feeds;

/// Mean KL to the original and top-1 agreement over every predicted position.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Measured {
    /// Mean KL(original || converted) in nats.
    pub kl: f64,
    /// Share of positions whose most likely token is the original's.
    pub top1: f64,
}

/// The original model's predictions on some windows.
pub struct Reference {
    windows: Vec<Vec<i64>>,
    /// Per window, `[seq, vocab]` row-major log-probabilities.
    log_probs: Vec<Vec<f32>>,
    /// Per window, each position's most likely token.
    top: Vec<Vec<usize>>,
    vocab: usize,
}

/// One row's log-probabilities (the log-softmax of its logits).
fn log_probs(logits: &[f32]) -> Vec<f32> {
    log_softmax(logits).into_iter().map(|v| v as f32).collect()
}

/// KL(p || q) of a reference row's log-probabilities `lp` and a candidate row's logits.
fn kl_to(lp: &[f32], q_logits: &[f32]) -> f64 {
    let lq = log_softmax(q_logits);
    let term = |a: f64, b: f64| if a == f64::NEG_INFINITY { 0.0 } else { a.exp() * (a - b) };
    lp.iter().zip(&lq).map(|(&a, &b)| term(a as f64, b)).sum()
}

/// The logits output of one run on `ids`, as `[seq, vocab]` rows.
fn run_logits(session: &Session, ids: &[i64]) -> Result<(Vec<f32>, usize), String> {
    let feeds = token_feeds(session.inputs(), ids, Vec::new())?;
    let outputs = session.run(feeds).map_err(|e| e.to_string())?;
    let (_, logits) = outputs
        .into_iter()
        .find(|(name, t)| is_logits(name, t.shape()))
        .ok_or("the model has no logits output ([batch, seq, vocab] named *logits*) to allocate bits by")?;
    let vocab = *logits.shape().last().ok_or("scalar logits")?;
    let a = logits.as_f32().map_err(|e| e.to_string())?;
    let rows: Vec<f32> = a.as_standard_layout().iter().copied().collect();
    if vocab == 0 || rows.len() != ids.len() * vocab {
        return Err(format!("logits of shape {:?} for {} tokens", logits.shape(), ids.len()));
    }
    Ok((rows, vocab))
}

impl Reference {
    /// Runs `model` (its weights as they are) on every window.
    pub fn compute(model: &ModelProto, data: ExternalData, windows: Vec<Vec<i64>>) -> Result<Self, String> {
        let session = Session::from_model_with(model, data, &SessionOptions::default()).map_err(|e| e.to_string())?;
        let (mut all, mut top, mut vocab) = (Vec::with_capacity(windows.len()), Vec::new(), 0);
        for ids in &windows {
            let (rows, v) = run_logits(&session, ids)?;
            vocab = v;
            top.push(rows.par_chunks(v).map(argmax).collect());
            all.push(rows.par_chunks(v).flat_map_iter(log_probs).collect());
        }
        Ok(Reference { windows, log_probs: all, top, vocab })
    }

    /// Tokens over all windows.
    pub fn tokens(&self) -> usize {
        self.windows.iter().map(Vec::len).sum()
    }

    /// Runs `template` (the rewritten graph, without its encoded weights) with `chosen[u]`
    /// stored under `names[u]`, and compares its logits with the original's.
    pub fn measure(&self, template: &ModelProto, data: ExternalData, names: &[String], chosen: &[&Encoded]) -> Result<Measured, String> {
        let mut model = template.clone();
        let graph = model.graph.as_mut().ok_or("the model has no graph")?;
        for (name, e) in names.iter().zip(chosen) {
            let bytes = e.tensor.to_bytes();
            let n = bytes.len();
            graph.initializer.push(tensor_to_proto(name, &Tensor::from_vec(&[n], bytes).map_err(|e| e.to_string())?));
        }
        let session = Session::from_model_with(&model, data, &SessionOptions::default()).map_err(|e| e.to_string())?;
        drop(model);
        let (mut kl, mut agree, mut rows) = (0.0, 0usize, 0usize);
        for ((ids, want), top) in self.windows.iter().zip(&self.log_probs).zip(&self.top) {
            let (got, vocab) = run_logits(&session, ids)?;
            if vocab != self.vocab {
                return Err(format!("the converted model predicts {vocab} tokens, the original {}", self.vocab));
            }
            let (k, a) = want
                .par_chunks(vocab)
                .zip(got.par_chunks(vocab))
                .zip(top.par_iter())
                .map(|((lp, q), &t)| (kl_to(lp, q), usize::from(argmax(q) == t)))
                .reduce(|| (0.0, 0), |x, y| (x.0 + y.0, x.1 + y.1));
            kl += k;
            agree += a;
            rows += top.len();
        }
        let rows = rows.max(1) as f64;
        Ok(Measured { kl: kl / rows, top1: agree as f64 / rows })
    }
}

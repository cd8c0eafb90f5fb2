//! Running a causal LM one step at a time, with its KV cache when the export has one.

use rbe_runtime::{Session, Tensor};

use crate::feeds::{token_feeds, token_feeds_after};

/// How each step is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepMode {
    /// The graph takes `past_key_values.*` and returns `present.*`: one token per step.
    KvCache,
    /// No past inputs: every step recomputes the whole sequence.
    Recompute,
}

/// Feeds a model token by token and returns the last position's logits.
pub struct Stepper<'a> {
    session: &'a Session,
    mode: StepMode,
    /// (past input name, present output name) pairs.
    cache_names: Vec<(String, String)>,
    ids: Vec<i64>,
    past: Vec<(String, Tensor)>,
}

/// The `present.*` output that feeds a `past_key_values.*` input.
fn present_name(past: &str) -> Option<String> {
    past.strip_prefix("past_key_values").map(|rest| format!("present{rest}"))
}

impl<'a> Stepper<'a> {
    /// Inspects the model's inputs and outputs to choose the mode.
    pub fn new(session: &'a Session) -> Result<Self, String> {
        let outputs = session.output_names();
        let mut cache_names = Vec::new();
        for spec in session.inputs().iter().filter(|s| s.name.starts_with("past_key_values")) {
            let present = present_name(&spec.name)
                .filter(|p| outputs.contains(p))
                .ok_or_else(|| format!("input '{}' has no matching present.* output", spec.name))?;
            cache_names.push((spec.name.clone(), present));
        }
        if !outputs.iter().any(|o| o == "logits") {
            return Err("the model has no 'logits' output".into());
        }
        let mode = if cache_names.is_empty() { StepMode::Recompute } else { StepMode::KvCache };
        Ok(Self { session, mode, cache_names, ids: Vec::new(), past: Vec::new() })
    }

    /// The mode chosen for this model.
    pub fn mode(&self) -> StepMode {
        self.mode
    }

    /// Runs the prompt; returns the logits of its last position.
    pub fn prefill(&mut self, ids: &[i64]) -> Result<Vec<f32>, String> {
        self.ids = ids.to_vec();
        let feeds = token_feeds(self.session.inputs(), ids, Vec::new())?;
        self.run(feeds)
    }

    /// Appends one token; returns the logits of the new last position.
    pub fn step(&mut self, id: i64) -> Result<Vec<f32>, String> {
        self.ids.push(id);
        let feeds = match self.mode {
            StepMode::Recompute => token_feeds(self.session.inputs(), &self.ids, Vec::new())?,
            StepMode::KvCache => {
                let past_len = self.ids.len() - 1;
                let past = std::mem::take(&mut self.past);
                token_feeds_after(self.session.inputs(), &[id], past_len, past)?
            }
        };
        self.run(feeds)
    }

    fn run(&mut self, feeds: Vec<(String, Tensor)>) -> Result<Vec<f32>, String> {
        let mut outputs = self.session.run(feeds).map_err(|e| e.to_string())?;
        for (past, present) in &self.cache_names {
            let pos = outputs
                .iter()
                .position(|(n, _)| n == present)
                .ok_or_else(|| format!("the model did not return '{present}'"))?;
            let (_, tensor) = outputs.swap_remove(pos);
            self.past.push((past.clone(), tensor));
        }
        let (_, logits) = outputs
            .into_iter()
            .find(|(n, _)| n == "logits")
            .ok_or("the model returned no logits")?;
        last_row(&logits)
    }
}

/// The last position's row of `[1, seq, vocab]` logits.
fn last_row(logits: &Tensor) -> Result<Vec<f32>, String> {
    let a = logits.as_f32().map_err(|e| e.to_string())?;
    let &[1, seq, _vocab] = a.shape() else {
        return Err(format!("logits must be [1, seq, vocab], got {:?}", a.shape()));
    };
    if seq == 0 {
        return Err("the model returned no positions".into());
    }
    Ok(a.index_axis(ndarray::Axis(1), seq - 1).iter().copied().collect())
}

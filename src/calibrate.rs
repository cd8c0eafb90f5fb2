//! Calibration statistics: the original model runs in our runtime on windows of a text, and the
//! input of every linear layer with a constant weight is summed into its second moments
//! `XᵀX` (one `K x K` matrix per distinct input, shared by the layers that read it: Q/K/V, or
//! gate/up), for error-feedback encoding ([`crate::codec::Hessian`]).
//!
//! Memory is bounded by the statistics themselves (`K²` floats per distinct input) plus one
//! run of the model; windows are run one at a time.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use ndarray::{ArrayView2, ArrayViewMut2};
use rbe_runtime::graph::{Node, Observer};
use rbe_runtime::kernels::gemm::gemm;
use rbe_runtime::onnx::proto::ModelProto;
use rbe_runtime::onnx::ExternalData;
use rbe_runtime::{Session, SessionOptions, Tensor};
use tokenizers::PostProcessor;


/// Tokens per window when neither the caller nor the tokenizer says.
pub const DEFAULT_WINDOW: usize = 512;

/// An allocation holds out one calibration window in this many.
pub const HELD_OUT_EVERY: usize = 4;

/// One window's token ids.
pub type Window = Vec<i64>;

/// What to calibrate on: token windows of a text, each run from position 0.
pub struct Calibration<'a> {
    /// The windows' token ids.
    pub windows: Vec<Vec<i64>>,
    /// Called after each window ran.
    pub tick: &'a (dyn Fn() + Sync),
    /// Damping of the statistics, as a share of their mean diagonal (see [`crate::codec::Hessian`]).
    pub damp: f64,
    /// Quantize each layer's inputs in decreasing order of their second moment, with static
    /// group scales (GPTQ's act-order; see [`crate::codec::Hessian::with_order`]).
    pub act_order: bool,
    /// An accuracy target to allocate bit widths for (the last windows are then held out of
    /// the statistics and the search, to check the result on).
    pub goal: Option<crate::allocate::Goal<'a>>,
}

impl<'a> Calibration<'a> {
    /// Tokenizes each text of `texts`, in order, with `tokenizer` into non-overlapping windows
    /// of at most `window` tokens (default: the tokenizer's truncation length, else
    /// [`DEFAULT_WINDOW`]), up to `max_tokens` tokens in all (a window never spans two texts).
    /// Each window is encoded as the model sees an input in use: with the special tokens the
    /// tokenizer's post-processor adds (a BERT encoder's `[CLS] … [SEP]`, a BOS where the
    /// tokenizer asks for one).
    pub fn from_texts(
        texts: &[PathBuf],
        tokenizer: &Path,
        window: Option<usize>,
        max_tokens: usize,
        tick: &'a (dyn Fn() + Sync),
    ) -> Result<Self, String> {
        let mut tok = tokenizers::Tokenizer::from_file(tokenizer)
            .map_err(|e| format!("cannot load tokenizer {}: {e}", tokenizer.display()))?;
        let window = window.or(tok.get_truncation().map(|t| t.max_length)).unwrap_or(DEFAULT_WINDOW);
        if window < 4 || max_tokens < 4 {
            return Err("the calibration window and token budget must be at least 4 tokens".into());
        }
        tok.with_truncation(None).map_err(|e| e.to_string())?;
        tok.with_padding(None);
        let body = window.saturating_sub(tok.get_post_processor().map_or(0, |p| p.added_tokens(false))).max(2);
        let mut windows = Vec::new();
        let mut total = 0;
        for text_path in texts {
            let content = std::fs::read_to_string(text_path)
                .map_err(|e| format!("cannot read text {}: {e}", text_path.display()))?;
            let encode = |text: &str, special: bool| {
                tok.encode(text, special).map_err(|e| format!("cannot tokenize {}: {e}", text_path.display()))
            };
            let whole = encode(&content, false)?;
            for span in whole.get_offsets().chunks(body) {
                if total + 2 > max_tokens {
                    break;
                }
                let (Some(first), Some(last)) = (span.first(), span.last()) else { continue };
                let text = content.get(first.0..last.1).ok_or("calibration text: token offsets outside the text")?;
                let mut ids: Vec<i64> = encode(text, true)?.get_ids().iter().map(|&id| id as i64).collect();
                ids.truncate(window.min(max_tokens - total));
                if ids.len() < 2 {
                    break;
                }
                total += ids.len();
                windows.push(ids);
            }
        }
        if windows.is_empty() {
            let names: Vec<String> = texts.iter().map(|t| t.display().to_string()).collect();
            return Err(format!("the calibration text ({}) has fewer than 2 tokens", names.join(", ")));
        }
        Ok(Calibration { windows, tick, damp: crate::codec::DEFAULT_DAMP, act_order: false, goal: None })
    }

    /// Tokens over all windows.
    pub fn tokens(&self) -> usize {
        self.windows.iter().map(Vec::len).sum()
    }

    /// The windows split into those the statistics and an allocation's search use, and the
    /// held-out ones to check the allocation on: every fourth window (the 4th, 8th, ...; the
    /// last when there are fewer than 4), so the check samples the whole text, not its tail.
    pub fn held_out(&self) -> Result<(Vec<Window>, Vec<Window>), String> {
        let n = self.windows.len();
        if n < 2 {
            return Err(format!(
                "an allocation target needs at least 2 calibration windows to hold one out, got {n} (shorten --calib-window or give more text)"
            ));
        }
        let held = |i: usize| if n < HELD_OUT_EVERY { i == n - 1 } else { i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 };
        let (mut fit, mut check) = (Vec::new(), Vec::new());
        for (i, w) in self.windows.iter().enumerate() {
            if held(i) { check.push(w.clone()) } else { fit.push(w.clone()) }
        }
        Ok((fit, check))
    }
}

/// The summed second moments of one layer input.
#[derive(Clone, Debug)]
pub struct InputMoments {
    /// Width of the input (the weights' reduction axis).
    pub cols: usize,
    /// Rows (token positions) summed.
    pub rows: u64,
    /// `cols x cols`, row-major: the sum of `x xᵀ` over the rows.
    pub xtx: Vec<f32>,
}

/// Runs `model` (unfused, so every MatMul/Gemm is seen as the file spells it) on every window
/// and returns the second moments of each input in `wanted` (value name -> width).
pub fn collect(
    model: &ModelProto,
    data: ExternalData,
    calibration: &Calibration,
    wanted: &HashMap<String, usize>,
) -> Result<HashMap<String, InputMoments>, String> {
    let options = SessionOptions { fuse: false, ..SessionOptions::default() };
    let session = Session::from_model_with(model, data, &options).map_err(|e| format!("calibration: {e}"))?;
    let graph = session.graph();
    let mut by_node = HashMap::new();
    for (i, node) in graph.nodes().iter().enumerate() {
        let linear = node.domain.is_empty() && matches!(node.op_type.as_str(), "MatMul" | "Gemm");
        if let Some(name) = graph.input_name(node, 0).filter(|n| linear && wanted.contains_key(*n)) {
            by_node.insert(i, name.to_string());
        }
    }
    let mut collector = Collector { by_node, wanted, moments: HashMap::new(), seen: HashSet::new(), error: None };
    for ids in &calibration.windows {
        let feeds = crate::feeds::token_feeds(session.inputs(), ids, Vec::new())?;
        collector.seen.clear();
        session.run_observed(feeds, &mut collector).map_err(|e| format!("calibration run: {e}"))?;
        if let Some(e) = collector.error.take() {
            return Err(e);
        }
        (calibration.tick)();
    }
    Ok(collector.moments)
}

/// Sums the inputs of the watched nodes.
struct Collector<'a> {
    /// Watched node index -> the input value it reads.
    by_node: HashMap<usize, String>,
    wanted: &'a HashMap<String, usize>,
    moments: HashMap<String, InputMoments>,
    /// Inputs already summed in this run (read by several layers).
    seen: HashSet<String>,
    error: Option<String>,
}

impl Observer for Collector<'_> {
    fn inputs(&mut self, i: usize, _node: &Node, args: &[Option<&Tensor>]) {
        let Some(name) = self.by_node.get(&i).cloned() else { return };
        if self.error.is_some() || !self.seen.insert(name.clone()) {
            return;
        }
        let cols = self.wanted[&name];
        if let Err(e) = self.add(&name, cols, args.first().copied().flatten()) {
            self.error = Some(format!("calibration statistics of '{name}': {e}"));
        }
    }
}

impl Collector<'_> {
    fn add(&mut self, name: &str, cols: usize, x: Option<&Tensor>) -> Result<(), String> {
        let x = x.ok_or("the input is missing")?;
        let Ok(a) = x.as_f32() else { return Ok(()) };
        if x.shape().last() != Some(&cols) {
            // Another reading of the value (transposed, reshaped): not this layer's rows.
            return Ok(());
        }
        let standard = a.as_standard_layout();
        let flat = standard.as_slice().ok_or("non-contiguous input")?;
        let rows = flat.len() / cols;
        let m = self
            .moments
            .entry(name.to_string())
            .or_insert_with(|| InputMoments { cols, rows: 0, xtx: vec![0.0; cols * cols] });
        let xv = ArrayView2::from_shape((rows, cols), flat).map_err(|e| e.to_string())?;
        let acc = ArrayViewMut2::from_shape((cols, cols), &mut m.xtx).map_err(|e| e.to_string())?;
        gemm(1.0f32, xv.t(), xv, 1.0, acc).map_err(|e| e.to_string())?;
        m.rows += rows as u64;
        Ok(())
    }
}

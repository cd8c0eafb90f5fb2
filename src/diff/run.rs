//! One snapshot-diff run from files: load both models, build the inputs, measure, report.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use indicatif::ProgressBar;
use rbe_runtime::kernels::qmm::Activations;
use rbe_runtime::{Session, SessionOptions};

use super::compare::{self, Labels, Options};
use super::inputs::{self, Batch};
use super::report::Report;
use super::text;

/// Where the inputs come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// Saved tensors `DIR/<input name>.npy` (one run).
    Dir(PathBuf),
    /// A text tokenized with a `tokenizer.json`, cut into windows of `window` tokens, each fed
    /// from position 0; adds perplexity.
    Text {
        /// The UTF-8 text file.
        text: PathBuf,
        /// The model's `tokenizer.json`.
        tokenizer: PathBuf,
        /// Tokens per window.
        window: usize,
    },
    /// Seeded random token sequences.
    Random {
        /// Number of sequences.
        sequences: usize,
        /// Tokens per sequence.
        len: usize,
        /// The seed.
        seed: u64,
        /// Token ids are drawn from `[0, vocab)`; probed from the model's logits if `None`.
        vocab: Option<usize>,
    },
}

/// What to compare, on what.
#[derive(Clone, Debug)]
pub struct Job {
    /// The original `.onnx`.
    pub original: PathBuf,
    /// The converted `.rbeonnx` (or any model the runtime loads).
    pub converted: PathBuf,
    /// The inputs.
    pub source: Source,
    /// onnxruntime outputs for `Source::Dir`'s inputs: `DIR/<output name>.npy`.
    pub reference: Option<PathBuf>,
    /// The run's name in reports; defaults to the converted model's file stem.
    pub label: Option<String>,
    /// How the converted model's compressed matmuls treat activations (`--int8-activations`).
    pub activations: Activations,
    /// The run's series in rate–distortion plots.
    pub series: Option<String>,
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().to_string())
}

/// The last `n` components of a path, so reports do not depend on where the repo lives.
fn tail(path: &Path, n: usize) -> String {
    let parts: Vec<String> = path.components().map(|c| c.as_os_str().to_string_lossy().to_string()).collect();
    parts[parts.len().saturating_sub(n)..].join("/")
}

fn load(path: &Path, activations: Activations) -> Result<Session, String> {
    let options = SessionOptions { activations, ..SessionOptions::DEFAULT };
    Session::load_with(path, &options).map_err(|e| format!("cannot load {}: {e}", path.display()))
}

/// Runs the job. `progress` gets the number of runs as its length and ticks after each;
/// raising `stop` ends the run after the current window with a partial report.
pub fn run(job: &Job, stop: &AtomicBool, progress: &ProgressBar) -> Result<Report, String> {
    if job.reference.is_some() && !matches!(job.source, Source::Dir(_)) {
        return Err("--reference needs --inputs: the saved outputs must come from the same inputs".into());
    }
    let original = load(&job.original, Activations::Exact)?;
    let converted = load(&job.converted, job.activations)?;
    let specs = original.inputs();
    // Perplexity is measured on a text, for a model with logits.
    let (batches, source, hint, perplexity) = match &job.source {
        Source::Dir(dir) => {
            (vec![Batch::from_dir(specs, dir)?], format!("saved inputs {}", tail(dir, 3)), String::new(), false)
        }
        Source::Text { text, tokenizer, window } => {
            let t = text::tokenize(text, tokenizer)?;
            // Without logits (an encoder) there is no vocabulary to check the ids against:
            // the model's own Gather refuses an id out of its table.
            let logits = compare::probe_vocab(&original, specs)?;
            let vocab = logits.unwrap_or(usize::MAX);
            if let Some(&bad) = t.ids.iter().find(|&&id| id < 0 || id as usize >= vocab) {
                return Err(format!(
                    "{} gives token id {bad}, but the model's vocabulary has {vocab} entries (wrong tokenizer?)",
                    tokenizer.display()
                ));
            }
            let batches = text::windows(&t.ids, *window)
                .into_iter()
                .map(|w| Batch::from_tokens(specs, w))
                .collect::<Result<Vec<_>, _>>()?;
            if batches.is_empty() {
                return Err(format!("{} has fewer than 2 tokens", text.display()));
            }
            let source = format!("text {} bytes 0..{}, windows of {window} tokens", file_name(text), t.bytes);
            (batches, source, window_hint(*window), logits.is_some())
        }
        Source::Random { sequences, len, seed, vocab } => {
            if *sequences == 0 || *len == 0 {
                return Err("--sequences and --window must be at least 1".into());
            }
            let vocab = match vocab {
                Some(v) => *v,
                None => compare::probe_vocab(&original, specs)?
                    .ok_or("the model has no logits output to read the vocabulary size from; pass --vocab")?,
            };
            let batches = inputs::random_sequences(*sequences, *len, vocab, *seed)
                .iter()
                .map(|ids| Batch::from_tokens(specs, ids))
                .collect::<Result<Vec<_>, _>>()?;
            let source = format!("{sequences} random sequences of {len} tokens (seed {seed}, vocab {vocab})");
            (batches, source, window_hint(*len), false)
        }
    };
    let reference = job.reference.as_deref().map(inputs::read_npy_dir).transpose()?;
    let options = Options {
        reference: reference.as_deref(),
        perplexity,
    };
    progress.set_length(batches.len() as u64);
    let measured = compare::measure(&original, &converted, &batches, &options, stop, &|| progress.inc(1))
        .map_err(|e| e + &hint)?;
    let mut report = measured.into_report(Labels {
        label: job.label.clone().unwrap_or_else(|| {
            job.converted.file_stem().map_or_else(String::new, |s| s.to_string_lossy().to_string())
        }),
        original: file_name(&job.original),
        converted: file_name(&job.converted),
        source,
    });
    report.rate = super::rate::measure(&job.original, &job.converted);
    report.series = job.series.clone();
    Ok(report)
}

fn window_hint(window: usize) -> String {
    format!(" (windows of {window} tokens: pass a smaller --window if that exceeds the model's context)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_shortened_for_reports() {
        assert_eq!(tail(Path::new("/a/b/golden/refs/x/b1/inputs"), 3), "x/b1/inputs");
        assert_eq!(tail(Path::new("inputs"), 3), "inputs");
        assert_eq!(file_name(Path::new("/tmp/m.q4.rbeonnx")), "m.q4.rbeonnx");
    }

    #[test]
    fn a_reference_without_saved_inputs_is_refused() {
        let job = Job {
            original: "a.onnx".into(),
            converted: "b.rbeonnx".into(),
            source: Source::Random { sequences: 1, len: 4, seed: 0, vocab: Some(10) },
            reference: Some("refs".into()),
            label: None,
            activations: Activations::Exact,
            series: None,
        };
        let err = run(&job, &AtomicBool::new(false), &ProgressBar::hidden()).unwrap_err();
        assert!(err.contains("--reference needs --inputs"), "{err}");
        let job = Job { reference: None, ..job };
        let err = run(&job, &AtomicBool::new(false), &ProgressBar::hidden()).unwrap_err();
        assert!(err.starts_with("cannot load a.onnx"), "{err}");
    }
}

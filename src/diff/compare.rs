//! Running both models on the same batches and accumulating the metrics of every output:
//! converted vs original, and each model against saved onnxruntime outputs when given.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use rbe_runtime::graph::InputSpec;
use rbe_runtime::{Session, Tensor};

use super::inputs::Batch;
use super::metrics::{Accumulator, NllSum};
use super::report::{Comparison, InputsInfo, Perplexity, Report};

/// Something that maps named inputs to named outputs: a [`Session`], or a stand-in in tests.
pub trait Model {
    /// Runs the model once.
    fn run(&self, feeds: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>, String>;
}

impl Model for Session {
    fn run(&self, feeds: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>, String> {
        Session::run(self, feeds).map_err(|e| e.to_string())
    }
}

/// An output holds logits when it is `[batch, seq, vocab]` and its name contains `logits`.
pub fn is_logits(name: &str, shape: &[usize]) -> bool {
    shape.len() == 3 && name.contains("logits")
}

/// The vocabulary size: the last dim of the logits the model gives for one token (id 0);
/// `None` when the model has no logits output (an encoder).
pub fn probe_vocab(model: &dyn Model, specs: &[InputSpec]) -> Result<Option<usize>, String> {
    let batch = Batch::from_tokens(specs, &[0])?;
    let outputs = model.run(batch.feeds).map_err(|e| format!("the original model failed: {e}"))?;
    Ok(outputs.iter().find(|(n, t)| is_logits(n, t.shape())).map(|(_, t)| t.shape()[2]))
}

/// What to measure besides the outputs.
#[derive(Default)]
pub struct Options<'a> {
    /// Saved onnxruntime outputs for the (single) batch, to compare each model against.
    pub reference: Option<&'a [(String, Tensor)]>,
    /// Compute the perplexity of each model on the batches' token ids.
    pub perplexity: bool,
}

/// The accumulated figures of one measurement.
pub struct Measured {
    comparisons: Vec<(String, Vec<(String, Accumulator)>)>,
    nll: (NllSum, NllSum),
    perplexity: bool,
    runs: usize,
    tokens: u64,
    partial: bool,
}

/// Runs both models on every batch (until `stop` is raised: then it finishes the current
/// batch and marks the result partial), calling `on_run` after each.
pub fn measure(
    original: &dyn Model,
    converted: &dyn Model,
    batches: &[Batch],
    options: &Options,
    stop: &AtomicBool,
    on_run: &dyn Fn(),
) -> Result<Measured, String> {
    let mut names = vec!["converted vs original".to_string()];
    if options.reference.is_some() {
        names.push("original vs onnxruntime".into());
        names.push("converted vs onnxruntime".into());
    }
    let mut m = Measured {
        comparisons: names.into_iter().map(|n| (n, Vec::new())).collect(),
        nll: Default::default(),
        perplexity: options.perplexity,
        runs: 0,
        tokens: 0,
        partial: false,
    };
    for (i, batch) in batches.iter().enumerate() {
        if stop.load(Ordering::SeqCst) {
            m.partial = true;
            break;
        }
        let fail = |which: &str, e: String| format!("the {which} model failed on run {}: {e}", i + 1);
        let a = original.run(batch.feeds.clone()).map_err(|e| fail("original", e))?;
        let b = converted.run(batch.feeds.clone()).map_err(|e| fail("converted", e))?;
        accumulate(&mut m.comparisons[0].1, &a, &b, "converted", batch)?;
        if let Some(reference) = options.reference {
            accumulate(&mut m.comparisons[1].1, reference, &a, "original", batch)?;
            accumulate(&mut m.comparisons[2].1, reference, &b, "converted", batch)?;
        }
        if let (true, Some(ids)) = (options.perplexity, &batch.tokens) {
            add_nll(&mut m.nll.0, &a, ids)?;
            add_nll(&mut m.nll.1, &b, ids)?;
        }
        m.runs += 1;
        m.tokens += batch.tokens.as_ref().map_or(0, |t| t.len() as u64);
        on_run();
    }
    Ok(m)
}

/// Adds one run's outputs: every output of `reference` against the same-named one of
/// `candidate` (called `who` in errors).
fn accumulate(
    accs: &mut Vec<(String, Accumulator)>,
    reference: &[(String, Tensor)],
    candidate: &[(String, Tensor)],
    who: &str,
    batch: &Batch,
) -> Result<(), String> {
    for (name, r) in reference {
        let (_, c) = candidate
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| format!("the {who} model has no output {name}"))?;
        if r.shape() != c.shape() {
            return Err(format!(
                "output {name}: shape {:?} vs {:?} from the {who} model",
                r.shape(),
                c.shape()
            ));
        }
        let pos = match accs.iter().position(|(n, _)| n == name) {
            Some(p) => p,
            None => {
                accs.push((name.clone(), Accumulator::default()));
                accs.len() - 1
            }
        };
        let acc = &mut accs[pos].1;
        let (rv, cv) = (floats(r), floats(c));
        let shape = r.shape();
        if is_logits(name, shape) && shape[2] > 0 {
            let vocab = shape[2];
            let mask = batch.position_mask(shape[0], shape[1]);
            for (i, (rr, cr)) in rv.chunks(vocab).zip(cv.chunks(vocab)).enumerate() {
                if mask.as_ref().is_none_or(|m| m[i]) {
                    acc.add_logits_row(rr, cr);
                }
            }
        } else {
            acc.add_elements(&rv, &cv);
        }
    }
    Ok(())
}

/// Adds the next-token NLL of tokens 1..n of `ids` under the logits of positions 0..n-1.
fn add_nll(sum: &mut NllSum, outputs: &[(String, Tensor)], ids: &[i64]) -> Result<(), String> {
    let (_, logits) = outputs
        .iter()
        .find(|(n, t)| is_logits(n, t.shape()))
        .ok_or("perplexity needs a logits output ([batch, seq, vocab] named *logits*)")?;
    let vocab = logits.shape()[2];
    if logits.shape()[..2] != [1, ids.len()] {
        return Err(format!("logits have shape {:?} for {} tokens", logits.shape(), ids.len()));
    }
    let values = floats(logits);
    for (t, &next) in ids.iter().enumerate().skip(1) {
        let target = usize::try_from(next).ok().filter(|&id| id < vocab).ok_or_else(|| {
            format!("token id {next} is outside the model's vocabulary of {vocab}")
        })?;
        sum.add(&values[(t - 1) * vocab..t * vocab], target);
    }
    Ok(())
}

/// A tensor's values as f32, borrowed when it already is contiguous f32.
fn floats(t: &Tensor) -> Cow<'_, [f32]> {
    fn owned<T: Copy>(a: &rbe_runtime::Array<T>, f: impl Fn(T) -> f32) -> Cow<'static, [f32]> {
        Cow::Owned(a.iter().map(|&v| f(v)).collect())
    }
    match t {
        Tensor::F32(a) => a.as_slice().map_or_else(|| owned(a, |v| v), Cow::Borrowed),
        Tensor::F16(a) => owned(a, |v| v.to_f32()),
        Tensor::F64(a) => owned(a, |v| v as f32),
        Tensor::I64(a) => owned(a, |v| v as f32),
        Tensor::I32(a) => owned(a, |v| v as f32),
        Tensor::I8(a) => owned(a, f32::from),
        Tensor::U8(a) => owned(a, f32::from),
        Tensor::BF16(a) => owned(a, |v| v.to_f32()),
        Tensor::I16(a) => owned(a, f32::from),
        Tensor::U16(a) => owned(a, f32::from),
        Tensor::U32(a) => owned(a, |v| v as f32),
        Tensor::U64(a) => owned(a, |v| v as f32),
        Tensor::Bool(a) => owned(a, |v| v as u8 as f32),
        Tensor::Narrow(n) => Cow::Owned(n.to_f64().iter().map(|&v| v as f32).collect()),
    }
}

/// Names of the models and of the inputs, for the report.
pub struct Labels {
    /// A short name for the run.
    pub label: String,
    /// The original model's file name.
    pub original: String,
    /// The converted model's file name.
    pub converted: String,
    /// What the models ran on.
    pub source: String,
}

impl Measured {
    /// The report of everything measured.
    pub fn into_report(self, labels: Labels) -> Report {
        let perplexity = self.perplexity.then(|| {
            let (a, b) = (self.nll.0.perplexity(), self.nll.1.perplexity());
            Perplexity {
                original: a,
                converted: b,
                increase: b / a - 1.0,
                windows: self.runs,
                predicted_tokens: self.nll.0.tokens,
            }
        });
        Report {
            label: labels.label,
            original: labels.original,
            converted: labels.converted,
            inputs: InputsInfo {
                source: labels.source,
                runs: self.runs,
                tokens: (self.tokens > 0).then_some(self.tokens),
            },
            partial: self.partial,
            comparisons: self
                .comparisons
                .into_iter()
                .map(|(name, accs)| Comparison {
                    name,
                    outputs: accs.iter().map(|(n, acc)| acc.finish(n)).collect(),
                })
                .collect(),
            perplexity,
            rate: None,
            series: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in LM: logits[t] = table[ids[t]] + bias, vocab 3; also a `hidden` output.
    struct Fake {
        bias: f32,
    }

    impl Model for Fake {
        fn run(&self, feeds: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>, String> {
            let ids = feeds[0].1.to_i64_vec().map_err(|e| e.to_string())?;
            let table = [[2.0f32, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]];
            let mut logits = Vec::new();
            for &id in &ids {
                let row = &table[id.rem_euclid(3) as usize];
                logits.extend(row.iter().enumerate().map(|(j, v)| v + if j == 0 { self.bias } else { 0.0 }));
            }
            let n = ids.len();
            Ok(vec![
                ("logits".into(), Tensor::from_vec(&[1, n, 3], logits).map_err(|e| e.to_string())?),
                ("hidden".into(), Tensor::from_vec(&[n], vec![1.0f32; n]).map_err(|e| e.to_string())?),
            ])
        }
    }

    fn batch(ids: &[i64]) -> Batch {
        let t = Tensor::from_vec(&[1, ids.len()], ids.to_vec()).unwrap();
        Batch { feeds: vec![("input_ids".into(), t)], tokens: Some(ids.to_vec()) }
    }

    fn labels() -> Labels {
        Labels { label: "t".into(), original: "a".into(), converted: "b".into(), source: "s".into() }
    }

    #[test]
    fn identical_models_agree_and_perplexity_follows_the_protocol() {
        let batches = [batch(&[0, 1, 2]), batch(&[2, 2])];
        let opts = Options { perplexity: true, ..Default::default() };
        let m = measure(&Fake { bias: 0.0 }, &Fake { bias: 0.0 }, &batches, &opts, &AtomicBool::new(false), &|| {})
            .unwrap();
        let r = m.into_report(labels());
        assert_eq!((r.inputs.runs, r.inputs.tokens, r.partial), (2, Some(5), false));
        let logits = &r.comparisons[0].outputs[0];
        assert_eq!((logits.top1, logits.kl, logits.positions), (Some(1.0), Some(0.0), Some(5)));
        assert_eq!(r.comparisons[0].outputs[1].top1, None, "hidden is not logits");
        // Predictions 0->1, 1->2 and 2->2: p(next) = e^0/(e^2+2), e^0/(e^2+2), e^2/(e^2+2).
        let z = 2f64.exp() + 2.0;
        let nll = (2.0 * z.ln() + (z.ln() - 2.0)) / 3.0;
        let p = r.perplexity.unwrap();
        assert_eq!((p.windows, p.predicted_tokens), (2, 3));
        assert!((p.original - nll.exp()).abs() < 1e-6 && p.increase.abs() < 1e-12);
    }

    #[test]
    fn a_biased_model_disagrees_where_expected() {
        // bias 3 on token 0 flips the argmax of rows for ids 1 and 2 (2 < 3).
        let batches = [batch(&[0, 1, 2, 0])];
        let opts = Options { perplexity: true, ..Default::default() };
        let m = measure(&Fake { bias: 0.0 }, &Fake { bias: 3.0 }, &batches, &opts, &AtomicBool::new(false), &|| {})
            .unwrap();
        let r = m.into_report(labels());
        let logits = &r.comparisons[0].outputs[0];
        assert_eq!(logits.top1, Some(0.5));
        assert_eq!(logits.max_abs_diff, 3.0);
        assert!(logits.kl.unwrap() > 0.1);
        assert!(r.perplexity.unwrap().increase > 0.0);
    }

    #[test]
    fn a_raised_stop_flag_gives_a_partial_result() {
        let batches = [batch(&[0, 1]), batch(&[1, 2])];
        let stop = AtomicBool::new(false);
        let m = measure(&Fake { bias: 0.0 }, &Fake { bias: 0.0 }, &batches, &Options::default(), &stop, &|| {
            stop.store(true, Ordering::SeqCst)
        })
        .unwrap();
        let r = m.into_report(labels());
        assert!(r.partial);
        assert_eq!(r.inputs.runs, 1);
        assert!(r.perplexity.is_none());
    }

    #[test]
    fn reference_outputs_give_two_more_comparisons_and_masks_skip_padding() {
        let ids = [0i64, 1, 2];
        let mut b = batch(&ids);
        let mask = Tensor::from_vec(&[1, 3], vec![0i64, 1, 1]).unwrap();
        b.feeds.push(("attention_mask".into(), mask));
        let reference = Fake { bias: 0.0 }.run(b.feeds.clone()).unwrap();
        let opts = Options { reference: Some(&reference), perplexity: false };
        let m = measure(&Fake { bias: 0.0 }, &Fake { bias: 3.0 }, &[b], &opts, &AtomicBool::new(false), &|| {})
            .unwrap();
        let r = m.into_report(labels());
        let names: Vec<_> = r.comparisons.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["converted vs original", "original vs onnxruntime", "converted vs onnxruntime"]);
        assert_eq!(r.comparisons[1].outputs[0].top1, Some(1.0));
        // The padded first position is skipped: 2 positions, both flipped by the bias.
        let conv = &r.comparisons[2].outputs[0];
        assert_eq!((conv.positions, conv.top1), (Some(2), Some(0.0)));
    }

    struct Broken;

    impl Model for Broken {
        fn run(&self, _: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>, String> {
            Err("no kernel for op Foo".into())
        }
    }

    #[test]
    fn model_failures_and_bad_token_ids_are_errors() {
        let stop = AtomicBool::new(false);
        let opts = Options { perplexity: true, ..Default::default() };
        let fake = Fake { bias: 0.0 };
        let err = measure(&fake, &Broken, &[batch(&[0, 1])], &opts, &stop, &|| {}).err().unwrap();
        assert_eq!(err, "the converted model failed on run 1: no kernel for op Foo");
        let err = measure(&fake, &fake, &[batch(&[0, 7])], &opts, &stop, &|| {}).err().unwrap();
        assert_eq!(err, "token id 7 is outside the model's vocabulary of 3");
    }

    #[test]
    fn the_vocabulary_is_probed_from_the_logits() {
        let specs = [InputSpec { name: "input_ids".into(), dtype: Some(rbe_runtime::DType::I64), dims: None }];
        assert_eq!(probe_vocab(&Fake { bias: 0.0 }, &specs).unwrap(), Some(3));
        assert!(probe_vocab(&Broken, &specs).unwrap_err().contains("no kernel"));
    }
}

//! The accuracy metrics of MEASURING.md, accumulated over any number of runs: max |diff|,
//! RMSE, relative RMSE, cosine similarity, and for logits top-1 agreement and
//! KL(reference || candidate). All sums are kept in f64.

use serde::{Deserialize, Deserializer, Serialize};

/// Running sums comparing one output of a reference and a candidate model.
#[derive(Clone, Debug, Default)]
pub struct Accumulator {
    elements: u64,
    ref_mean: f64,
    ref_m2: f64,
    sum_sq_diff: f64,
    max_abs: f64,
    dot: f64,
    ref_norm_sq: f64,
    cand_norm_sq: f64,
    positions: u64,
    top1_agree: u64,
    kl_sum: f64,
}

impl Accumulator {
    /// Adds element pairs (reference, candidate) to the elementwise metrics.
    pub fn add_elements(&mut self, reference: &[f32], candidate: &[f32]) {
        for (&r, &c) in reference.iter().zip(candidate) {
            let (r, c) = (r as f64, c as f64);
            let d = (r - c).abs();
            // A NaN difference sticks instead of being skipped by `max`.
            self.max_abs = if d.is_nan() || self.max_abs.is_nan() { f64::NAN } else { self.max_abs.max(d) };
            self.sum_sq_diff += d * d;
            self.dot += r * c;
            self.ref_norm_sq += r * r;
            self.cand_norm_sq += c * c;
            // Welford's update for the reference's variance.
            self.elements += 1;
            let delta = r - self.ref_mean;
            self.ref_mean += delta / self.elements as f64;
            self.ref_m2 += delta * (r - self.ref_mean);
        }
    }

    /// Adds one logits row (one position, `vocab` values per model) to the elementwise metrics
    /// and to top-1 agreement and KL(reference || candidate).
    pub fn add_logits_row(&mut self, reference: &[f32], candidate: &[f32]) {
        self.add_elements(reference, candidate);
        self.positions += 1;
        if argmax(reference) == argmax(candidate) {
            self.top1_agree += 1;
        }
        self.kl_sum += kl_divergence(reference, candidate);
    }

    /// The metrics of everything added so far, for the output called `name`.
    pub fn finish(&self, name: &str) -> OutputMetrics {
        let n = self.elements.max(1) as f64;
        let rmse = (self.sum_sq_diff / n).sqrt();
        let std = (self.ref_m2 / n).sqrt();
        let rel_rmse = if rmse == 0.0 { 0.0 } else { rmse / std };
        let norms = (self.ref_norm_sq * self.cand_norm_sq).sqrt();
        let cosine = match (self.ref_norm_sq == 0.0, self.cand_norm_sq == 0.0) {
            (true, true) => 1.0,
            (false, false) => self.dot / norms,
            _ => 0.0,
        };
        let logits = self.positions > 0;
        let p = self.positions as f64;
        OutputMetrics {
            name: name.to_string(),
            elements: self.elements,
            max_abs_diff: self.max_abs,
            rmse,
            rel_rmse,
            cosine,
            positions: logits.then_some(self.positions),
            top1: logits.then(|| self.top1_agree as f64 / p),
            kl: logits.then(|| self.kl_sum / p),
        }
    }
}

/// The metrics of one output tensor, reference vs candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputMetrics {
    /// The output's name.
    pub name: String,
    /// Number of compared elements.
    pub elements: u64,
    /// Largest absolute difference.
    #[serde(deserialize_with = "null_as_nan")]
    pub max_abs_diff: f64,
    /// Root mean square of the difference.
    #[serde(deserialize_with = "null_as_nan")]
    pub rmse: f64,
    /// RMSE / standard deviation of the reference.
    #[serde(deserialize_with = "null_as_nan")]
    pub rel_rmse: f64,
    /// Cosine similarity of the two tensors seen as vectors.
    #[serde(deserialize_with = "null_as_nan")]
    pub cosine: f64,
    /// Logits only: number of compared positions (rows of `vocab` values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positions: Option<u64>,
    /// Logits only: share of positions whose argmax agrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top1: Option<f64>,
    /// Logits only: mean KL(reference || candidate) of the softmax distributions, in nats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl: Option<f64>,
}

/// How a metric is judged: its value's distance from the ideal, where larger is worse.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Direction {
    /// An error: 0 is ideal, larger is worse.
    Error,
    /// A similarity: 1 is ideal, smaller is worse.
    Similarity,
}

impl Direction {
    /// How far `value` is from the ideal (larger is worse; may be negative for errors that
    /// can improve past zero, such as a perplexity increase).
    pub fn badness(self, value: f64) -> f64 {
        match self {
            Direction::Error => value,
            Direction::Similarity => 1.0 - value,
        }
    }
}

impl OutputMetrics {
    /// Every metric with its name and direction, in display order.
    pub fn values(&self) -> Vec<(&'static str, f64, Direction)> {
        let mut v = vec![
            ("max_abs_diff", self.max_abs_diff, Direction::Error),
            ("rmse", self.rmse, Direction::Error),
            ("rel_rmse", self.rel_rmse, Direction::Error),
            ("cosine", self.cosine, Direction::Similarity),
        ];
        if let Some(t) = self.top1 {
            v.push(("top1", t, Direction::Similarity));
        }
        if let Some(k) = self.kl {
            v.push(("kl", k, Direction::Error));
        }
        v
    }

    /// Applies `f(value, direction)` to every metric.
    pub fn map_values(&self, f: impl Fn(f64, Direction) -> f64) -> Self {
        Self {
            max_abs_diff: f(self.max_abs_diff, Direction::Error),
            rmse: f(self.rmse, Direction::Error),
            rel_rmse: f(self.rel_rmse, Direction::Error),
            cosine: f(self.cosine, Direction::Similarity),
            top1: self.top1.map(|v| f(v, Direction::Similarity)),
            kl: self.kl.map(|v| f(v, Direction::Error)),
            ..self.clone()
        }
    }
}

/// Reads a JSON `null` (how serde_json writes NaN and infinities) back as NaN.
pub fn null_as_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Index of the largest value (the first one on ties); NaN never wins.
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] || row[best].is_nan() {
            best = i;
        }
    }
    best
}

/// `max` and `log(sum(exp(x - max)))` of a row, in f64: the pieces of a stable log-softmax.
fn log_sum_exp(row: &[f32]) -> (f64, f64) {
    let max = row.iter().map(|&v| v as f64).fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    (max, sum.ln())
}

/// Stable log-softmax of one row, in f64.
pub fn log_softmax(row: &[f32]) -> Vec<f64> {
    let (max, lse) = log_sum_exp(row);
    row.iter().map(|&v| v as f64 - max - lse).collect()
}

/// KL(p || q) in nats, where p and q are the softmax distributions of two logits rows.
pub fn kl_divergence(p_logits: &[f32], q_logits: &[f32]) -> f64 {
    let (lp, lq) = (log_softmax(p_logits), log_softmax(q_logits));
    lp.iter()
        .zip(&lq)
        .map(|(&a, &b)| {
            let p = a.exp();
            if p == 0.0 {
                0.0
            } else {
                p * (a - b)
            }
        })
        .sum()
}

/// Negative log-likelihood (nats) of token `target` under the softmax of a logits row.
pub fn nll(row: &[f32], target: usize) -> f64 {
    let (max, lse) = log_sum_exp(row);
    -(row[target] as f64 - max - lse)
}

/// Running sum of next-token NLL for perplexity.
#[derive(Clone, Debug, Default)]
pub struct NllSum {
    /// Sum of negative log-likelihoods, in nats.
    pub total: f64,
    /// Number of predicted tokens.
    pub tokens: u64,
}

impl NllSum {
    /// Adds the NLL of `target` under `row`.
    pub fn add(&mut self, row: &[f32], target: usize) {
        self.total += nll(row, target);
        self.tokens += 1;
    }

    /// exp(mean NLL); NaN when nothing was added.
    pub fn perplexity(&self) -> f64 {
        if self.tokens == 0 {
            return f64::NAN;
        }
        (self.total / self.tokens as f64).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn kl_of_identical_rows_is_zero() {
        let row = [0.3f32, -1.0, 2.5, 0.0];
        assert!(kl_divergence(&row, &row).abs() < 1e-15);
        // Shifting logits by a constant does not change the distribution.
        let shifted: Vec<f32> = row.iter().map(|v| v + 100.0).collect();
        assert!(kl_divergence(&row, &shifted).abs() < 1e-12);
    }

    #[test]
    fn kl_of_known_distributions() {
        // p = (1/2, 1/2), q = (1/4, 3/4): KL = 0.5 ln 2 + 0.5 ln(2/3) = 0.5 ln(4/3).
        let p = [0.0f32, 0.0];
        let q = [0.0f32, (3.0f32).ln()];
        assert!(close(kl_divergence(&p, &q), 0.5 * (4.0f64 / 3.0).ln(), 1e-7));
        // KL is not symmetric: KL(q || p) = 1/4 ln(1/2) + 3/4 ln(3/2).
        let expected = 0.25 * 0.5f64.ln() + 0.75 * 1.5f64.ln();
        assert!(close(kl_divergence(&q, &p), expected, 1e-7));
    }

    #[test]
    fn kl_is_stable_for_huge_logits() {
        let p = [1000.0f32, 0.0];
        let q = [0.0f32, 1000.0];
        let kl = kl_divergence(&p, &q);
        assert!(kl.is_finite() && close(kl, 1000.0, 1e-6), "{kl}");
    }

    #[test]
    fn top1_agreement_counts_matching_argmax() {
        let mut acc = Accumulator::default();
        acc.add_logits_row(&[0.1, 0.9, 0.0], &[0.2, 0.8, 0.0]); // agree (1)
        acc.add_logits_row(&[0.9, 0.1, 0.0], &[0.1, 0.9, 0.0]); // disagree
        acc.add_logits_row(&[0.0, 0.0, 1.0], &[0.0, 0.0, 2.0]); // agree (2)
        acc.add_logits_row(&[1.0, 0.0, 0.0], &[0.0, 0.5, 0.0]); // disagree
        let m = acc.finish("logits");
        assert_eq!(m.positions, Some(4));
        assert_eq!(m.top1, Some(0.5));
        assert_eq!(m.elements, 12);
    }

    #[test]
    fn argmax_takes_first_of_ties_and_ignores_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5, 2.0]), 2);
    }

    #[test]
    fn elementwise_metrics_on_hand_computed_values() {
        let mut acc = Accumulator::default();
        // reference (1, 2, 3, 4): mean 2.5, population variance 1.25.
        acc.add_elements(&[1.0, 2.0], &[1.0, 2.5]);
        acc.add_elements(&[3.0, 4.0], &[2.0, 4.0]);
        let m = acc.finish("y");
        assert_eq!(m.max_abs_diff, 1.0);
        let rmse = (1.25f64 / 4.0).sqrt(); // diffs 0, 0.5, 1, 0
        assert!(close(m.rmse, rmse, 1e-12));
        assert!(close(m.rel_rmse, rmse / 1.25f64.sqrt(), 1e-12));
        let cos = (1.0 + 5.0 + 6.0 + 16.0) / (30.0f64.sqrt() * (1.0 + 6.25 + 4.0 + 16.0f64).sqrt());
        assert!(close(m.cosine, cos, 1e-12));
        assert_eq!((m.top1, m.kl, m.positions), (None, None, None));
    }

    #[test]
    fn identical_tensors_are_perfect() {
        let mut acc = Accumulator::default();
        acc.add_logits_row(&[0.5, -2.0, 3.0], &[0.5, -2.0, 3.0]);
        let m = acc.finish("logits");
        assert_eq!((m.max_abs_diff, m.rmse, m.rel_rmse), (0.0, 0.0, 0.0));
        assert!(close(m.cosine, 1.0, 1e-15));
        assert_eq!(m.top1, Some(1.0));
        assert!(m.kl.is_some_and(|k| k.abs() < 1e-15));
    }

    #[test]
    fn cosine_of_opposite_and_orthogonal_vectors() {
        let mut acc = Accumulator::default();
        acc.add_elements(&[1.0, -2.0], &[-1.0, 2.0]);
        assert!(close(acc.finish("y").cosine, -1.0, 1e-15));
        let mut acc = Accumulator::default();
        acc.add_elements(&[1.0, 0.0], &[0.0, 3.0]);
        assert!(close(acc.finish("y").cosine, 0.0, 1e-15));
    }

    #[test]
    fn nan_differences_are_not_hidden() {
        let mut acc = Accumulator::default();
        acc.add_elements(&[1.0, 2.0], &[f32::NAN, 2.0]);
        let m = acc.finish("y");
        assert!(m.max_abs_diff.is_nan() && m.rmse.is_nan());
    }

    #[test]
    fn perplexity_of_a_uniform_model_is_the_vocab_size() {
        let vocab = 1000;
        let row = vec![0.25f32; vocab];
        let mut sum = NllSum::default();
        for target in [0, 17, 999, 500] {
            sum.add(&row, target);
        }
        assert!(close(sum.perplexity(), vocab as f64, 1e-9));
    }

    #[test]
    fn perplexity_of_known_probabilities() {
        // p(target) = 1/2 then 1/8: ppl = exp((ln 2 + ln 8) / 2) = 4.
        let mut sum = NllSum::default();
        sum.add(&[0.0, 0.0], 1);
        sum.add(&[(7.0f32).ln(), 0.0], 1);
        assert!(close(sum.perplexity(), 4.0, 1e-6));
        assert!(NllSum::default().perplexity().is_nan());
    }

    #[test]
    fn null_in_json_reads_back_as_nan() {
        let m = OutputMetrics {
            name: "y".into(),
            elements: 1,
            max_abs_diff: f64::NAN,
            rmse: 0.0,
            rel_rmse: 0.0,
            cosine: 1.0,
            positions: None,
            top1: None,
            kl: None,
        };
        let json = serde_json::to_string(&m).unwrap();
        let back: OutputMetrics = serde_json::from_str(&json).unwrap();
        assert!(back.max_abs_diff.is_nan());
    }
}

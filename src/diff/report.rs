//! What one snapshot-diff run measured, as JSON (`--json`, `--save`) and as a human table.

use serde::{Deserialize, Serialize};

use super::metrics::{null_as_nan, OutputMetrics};
use super::rate::Rate;
use super::thresholds::Check;

/// Everything one run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// A short name for the run (by default the converted model's file name).
    pub label: String,
    /// The original model's file name.
    pub original: String,
    /// The converted model's file name.
    pub converted: String,
    /// What the models ran on.
    pub inputs: InputsInfo,
    /// True when the run was interrupted: the figures cover only the runs listed in `inputs`.
    #[serde(default)]
    pub partial: bool,
    /// `converted vs original` first, then each model against onnxruntime if given.
    pub comparisons: Vec<Comparison>,
    /// Perplexity of both models, for a text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<Perplexity>,
    /// The converted model's bytes per weight of the original, for rate–distortion plots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    /// The series the run belongs to in rate–distortion plots (`--series`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
}

/// What the models ran on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputsInfo {
    /// A human description: the folder, the text and byte range, or the random sequences.
    pub source: String,
    /// Number of model calls (windows, sequences) measured.
    pub runs: usize,
    /// Number of tokens fed, for token sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
}

/// One model's outputs against another's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// `converted vs original`, `original vs onnxruntime`, `converted vs onnxruntime`.
    pub name: String,
    /// Per-output metrics, in the model's output order.
    pub outputs: Vec<OutputMetrics>,
}

/// Perplexity of both models on a text, by the protocol of MEASURING.md.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Perplexity {
    /// The original model's perplexity.
    #[serde(deserialize_with = "null_as_nan")]
    pub original: f64,
    /// The converted model's perplexity.
    #[serde(deserialize_with = "null_as_nan")]
    pub converted: f64,
    /// `converted / original - 1` (0.02 is 2% worse).
    #[serde(deserialize_with = "null_as_nan")]
    pub increase: f64,
    /// Number of windows.
    pub windows: usize,
    /// Number of predicted tokens (tokens 1..n of every window).
    pub predicted_tokens: u64,
}

/// Formats a metric for the table: fixed-point for moderate values, scientific otherwise.
pub fn fmt_value(v: f64) -> String {
    if v == 0.0 || (v.abs() >= 1e-3 && v.abs() < 1e5) {
        format!("{v:.4}")
    } else {
        format!("{v:.3e}")
    }
}

impl Report {
    /// The main comparison (converted vs original).
    pub fn main(&self) -> Option<&Comparison> {
        self.comparisons.first()
    }

    /// The human-readable table, followed by the checks and a one-line verdict.
    pub fn table(&self, checks: &[Check]) -> String {
        let mut out = format!("snapshot-diff: {} vs {}\n", self.converted, self.original);
        let tokens = self.inputs.tokens.map_or(String::new(), |t| format!(", {t} tokens"));
        let runs = if self.inputs.runs == 1 { "run" } else { "runs" };
        out += &format!("inputs: {}\nmeasured: {} {runs}{tokens}\n", self.inputs.source, self.inputs.runs);
        for c in &self.comparisons {
            out += &format!(
                "\n{}\n{:<24} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>10}\n",
                c.name, "output", "elements", "max|diff|", "rmse", "rel_rmse", "cosine", "top-1", "KL nats"
            );
            for m in &c.outputs {
                let opt = |v: Option<f64>| v.map_or("-".to_string(), fmt_value);
                out += &format!(
                    "{:<24} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>10}\n",
                    truncate(&m.name, 24),
                    m.elements,
                    fmt_value(m.max_abs_diff),
                    fmt_value(m.rmse),
                    fmt_value(m.rel_rmse),
                    format!("{:.6}", m.cosine),
                    opt(m.top1),
                    opt(m.kl),
                );
            }
        }
        if let Some(p) = &self.perplexity {
            out += &format!(
                "\nperplexity: original {:.4}, converted {:.4} ({:+.3}%) over {} windows, {} predicted tokens\n",
                p.original,
                p.converted,
                p.increase * 100.0,
                p.windows,
                p.predicted_tokens
            );
        }
        if !checks.is_empty() {
            out += "\nchecks:\n";
            for c in checks {
                out += &format!("  {} {}\n", if c.ok { "ok  " } else { "FAIL" }, c.describe());
            }
        }
        let failed: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.what.as_str()).collect();
        out += &if self.partial {
            "\nresult: PARTIAL (interrupted; figures cover the runs above)\n".to_string()
        } else if failed.is_empty() {
            "\nresult: PASS\n".to_string()
        } else {
            format!("\nresult: FAIL ({})\n", failed.join("; "))
        };
        out
    }
}

/// Shortens `s` to at most `n` characters, keeping its end.
pub fn truncate(s: &str, n: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= n {
        return s.to_string();
    }
    std::iter::once('…').chain(chars[chars.len() - (n - 1)..].iter().copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_formatted_readably() {
        assert_eq!(fmt_value(0.0), "0.0000");
        assert_eq!(fmt_value(0.98765), "0.9877");
        assert_eq!(fmt_value(1.5e-5), "1.500e-5");
        assert_eq!(fmt_value(f64::NAN), "NaN");
    }

    #[test]
    fn long_names_keep_their_end() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("present.11.value", 8), "…1.value");
    }
}

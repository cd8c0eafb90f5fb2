//! Pass/fail limits on the converted model (`--min-top1`, `--max-kl`, `--max-rel-rmse`,
//! `--max-ppl-increase`), and the checks they produce.

use serde::{Deserialize, Serialize};

use super::report::{fmt_value, Report};

/// One verdict: a measured value against a limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked, e.g. `top-1 of logits` or `golden kl of logits`.
    pub what: String,
    /// The measured value.
    pub value: f64,
    /// The limit it was held to.
    pub limit: f64,
    /// `>=` when the value must reach the limit, `<=` when it must stay under it.
    pub relation: String,
    /// Whether it held (NaN never holds).
    pub ok: bool,
}

impl Check {
    /// `value` must be at most `limit`.
    pub fn at_most(what: String, value: f64, limit: f64) -> Self {
        Self { what, value, limit, relation: "<=".into(), ok: value <= limit }
    }

    /// `value` must be at least `limit`.
    pub fn at_least(what: String, value: f64, limit: f64) -> Self {
        Self { what, value, limit, relation: ">=".into(), ok: value >= limit }
    }

    /// `value` must lie within `allowance` of `expected`, either way.
    pub fn close_to(what: String, value: f64, expected: f64, allowance: f64) -> Self {
        let ok = (value - expected).abs() <= allowance;
        Self { what: format!("{what} (±{})", fmt_value(allowance)), value, limit: expected, relation: "~".into(), ok }
    }

    /// `top-1 of logits: 0.9961 >= 0.9900`.
    pub fn describe(&self) -> String {
        format!("{}: {} {} {}", self.what, fmt_value(self.value), self.relation, fmt_value(self.limit))
    }
}

/// Parses a fraction written as `0.02` or `2%`.
pub fn parse_fraction(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (number, scale) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), 0.01),
        None => (t, 1.0),
    };
    match number.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v * scale),
        _ => Err(format!("'{text}' is not a number or a percentage (e.g. 0.02 or 2%)")),
    }
}

/// The limits the converted model must meet against the original.
#[derive(Clone, Debug, Default)]
pub struct Thresholds {
    /// Lowest acceptable top-1 agreement of every logits output.
    pub min_top1: Option<f64>,
    /// Highest acceptable mean KL (nats) of every logits output.
    pub max_kl: Option<f64>,
    /// Highest acceptable relative RMSE of every output.
    pub max_rel_rmse: Option<f64>,
    /// Highest acceptable perplexity increase (0.02 is 2%).
    pub max_ppl_increase: Option<f64>,
}

impl Thresholds {
    /// Checks the main comparison of `report`. Fails (bad input) when a limit cannot apply:
    /// top-1 or KL without a logits output, perplexity without a text.
    pub fn evaluate(&self, report: &Report) -> Result<Vec<Check>, String> {
        let mut checks = Vec::new();
        let outputs = report.main().map_or(&[][..], |c| &c.outputs[..]);
        let logits: Vec<_> = outputs.iter().filter(|m| m.top1.is_some()).collect();
        if (self.min_top1.is_some() || self.max_kl.is_some()) && logits.is_empty() {
            return Err("--min-top1/--max-kl need a logits output ([batch, seq, vocab] named *logits*)".into());
        }
        for m in &logits {
            if let (Some(limit), Some(v)) = (self.min_top1, m.top1) {
                checks.push(Check::at_least(format!("top-1 of {}", m.name), v, limit));
            }
            if let (Some(limit), Some(v)) = (self.max_kl, m.kl) {
                checks.push(Check::at_most(format!("KL of {}", m.name), v, limit));
            }
        }
        if let Some(limit) = self.max_rel_rmse {
            for m in outputs {
                checks.push(Check::at_most(format!("rel_rmse of {}", m.name), m.rel_rmse, limit));
            }
        }
        if let Some(limit) = self.max_ppl_increase {
            let p = report.perplexity.as_ref().ok_or("--max-ppl-increase needs --text and --tokenizer")?;
            checks.push(Check::at_most("perplexity increase".into(), p.increase, limit));
        }
        Ok(checks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::metrics::OutputMetrics;
    use crate::diff::report::{Comparison, InputsInfo, Perplexity};

    fn report(top1: Option<f64>, kl: Option<f64>, ppl: Option<f64>) -> Report {
        let logits = OutputMetrics {
            name: "logits".into(),
            elements: 10,
            max_abs_diff: 0.1,
            rmse: 0.01,
            rel_rmse: 0.05,
            cosine: 0.999,
            positions: top1.map(|_| 2),
            top1,
            kl,
        };
        Report {
            label: "x".into(),
            original: "a.onnx".into(),
            converted: "b.rbeonnx".into(),
            inputs: InputsInfo { source: "test".into(), runs: 1, tokens: None },
            partial: false,
            comparisons: vec![Comparison { name: "converted vs original".into(), outputs: vec![logits] }],
            perplexity: ppl.map(|increase| Perplexity {
                original: 10.0,
                converted: 10.0 * (1.0 + increase),
                increase,
                windows: 1,
                predicted_tokens: 9,
            }),
            rate: None,
            series: None,
        }
    }

    #[test]
    fn fractions_accept_percent_and_plain_numbers() {
        assert_eq!(parse_fraction("0.02").unwrap(), 0.02);
        assert!((parse_fraction("2%").unwrap() - 0.02).abs() < 1e-15);
        assert!((parse_fraction(" 99.5 % ").unwrap() - 0.995).abs() < 1e-15);
        for bad in ["", "%", "two", "inf", "NaN%"] {
            assert!(parse_fraction(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_pass_and_fail() {
        let r = report(Some(0.995), Some(0.002), Some(0.01));
        let loose = Thresholds {
            min_top1: Some(0.99),
            max_kl: Some(0.01),
            max_rel_rmse: Some(0.1),
            max_ppl_increase: Some(0.02),
        };
        let checks = loose.evaluate(&r).unwrap();
        assert_eq!(checks.len(), 4);
        assert!(checks.iter().all(|c| c.ok), "{checks:?}");
        let strict = Thresholds {
            min_top1: Some(1.01),
            max_kl: Some(0.0),
            max_rel_rmse: Some(0.01),
            max_ppl_increase: Some(0.005),
        };
        let checks = strict.evaluate(&r).unwrap();
        assert!(checks.iter().all(|c| !c.ok), "{checks:?}");
        assert_eq!(checks[0].describe(), "top-1 of logits: 0.9950 >= 1.0100");
    }

    #[test]
    fn nan_never_passes() {
        let r = report(Some(f64::NAN), Some(f64::NAN), None);
        let t = Thresholds { min_top1: Some(0.0), max_kl: Some(1e9), ..Default::default() };
        assert!(t.evaluate(&r).unwrap().iter().all(|c| !c.ok));
    }

    #[test]
    fn limits_that_cannot_apply_are_errors() {
        let t = Thresholds { min_top1: Some(0.9), ..Default::default() };
        assert!(t.evaluate(&report(None, None, None)).unwrap_err().contains("logits"));
        let t = Thresholds { max_ppl_increase: Some(0.02), ..Default::default() };
        assert!(t.evaluate(&report(Some(1.0), Some(0.0), None)).unwrap_err().contains("--text"));
    }
}

//! Golden snapshots: a report rounded so float noise does not churn it (`--save`), and the
//! check that no metric got worse than its snapshot by more than a tolerance (`--check`).
//!
//! "Worse" is direction-aware: errors, KL and perplexity are worse when higher; cosine and
//! top-1 are worse when lower. Both rounding and tolerance act on a metric's distance from
//! its ideal (0 for errors, 1 for similarities), so a cosine of 0.99998765 keeps four
//! significant digits of its 1.235e-5 gap instead of rounding to 1.

use std::path::Path;

use super::metrics::Direction;
use super::report::{Comparison, Report};
use super::thresholds::Check;

/// Significant digits kept in snapshots.
pub const DIGITS: i32 = 4;

/// How much worse than its snapshot a metric may get: `max(relative x |gap|, absolute)`,
/// where the gap is the snapshot's distance from the ideal value.
#[derive(Copy, Clone, Debug)]
pub struct Tolerance {
    /// Relative allowance (0.05 is 5%).
    pub relative: f64,
    /// Absolute floor, for metrics whose snapshot is at or near the ideal.
    pub absolute: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Self { relative: 0.05, absolute: 1e-6 }
    }
}

/// Rounds `value` to [`DIGITS`] significant digits of its distance from the ideal.
pub fn round(value: f64, direction: Direction) -> f64 {
    let gap = direction.badness(value);
    if !gap.is_finite() || gap == 0.0 {
        return value;
    }
    let decimals = DIGITS - 1 - gap.abs().log10().floor() as i32;
    if decimals >= 0 {
        format!("{value:.0$}", decimals as usize).parse().unwrap_or(value)
    } else {
        let scale = 10f64.powi(-decimals);
        (value / scale).round() * scale
    }
}

/// The report with every metric rounded for a snapshot.
pub fn rounded(report: &Report) -> Report {
    let mut r = report.clone();
    for c in &mut r.comparisons {
        c.outputs = c.outputs.iter().map(|m| m.map_values(round)).collect();
    }
    if let Some(p) = &mut r.perplexity {
        p.original = round(p.original, Direction::Error);
        p.converted = round(p.converted, Direction::Error);
        p.increase = round(p.increase, Direction::Error);
    }
    r
}

/// Writes the rounded report to `path` (atomically). A partial run is refused.
pub fn save(path: &Path, report: &Report) -> Result<(), String> {
    if report.partial {
        return Err("not saving a partial (interrupted) run as a snapshot".into());
    }
    let json = serde_json::to_string_pretty(&rounded(report)).map_err(|e| e.to_string())?;
    crate::atomic::write(path, format!("{json}\n").as_bytes())
}

/// Reads a report saved by `--save` or printed by `--json`.
pub fn load(path: &Path) -> Result<Report, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a snapshot-diff report: {e}", path.display()))
}

/// One check per snapshot metric: the current value may not be worse than the snapshot's
/// by more than the tolerance. Fails (bad input) when the run does not match the snapshot:
/// other inputs, or a comparison, output or metric the run did not measure.
pub fn check(snapshot: &Report, current: &Report, tol: Tolerance) -> Result<Vec<Check>, String> {
    Ok(paired(snapshot, current)?
        .into_iter()
        .map(|p| no_worse(format!("{} vs snapshot", p.what), p.now, p.then, p.direction, tol))
        .collect())
}

/// One check per metric for a regression test: the current value must lie within the
/// tolerance of the snapshot's in either direction (an unexplained improvement is a change
/// too), so float rounding that differs between kernels passes and a codec change does not.
/// Top-1 agreement moves in steps of one position, and one step is always allowed. Fails
/// (bad input) unless the run and the snapshot measured the same outputs and metrics.
pub fn within(snapshot: &Report, current: &Report, tol: Tolerance) -> Result<Vec<Check>, String> {
    let extra = paired(current, snapshot)?;
    let pairs = paired(snapshot, current)?;
    debug_assert_eq!(extra.len(), pairs.len());
    Ok(pairs
        .into_iter()
        .map(|p| {
            let step = p.positions.map_or(0.0, |n| 1.0 / n.max(1) as f64);
            let allowance = (tol.relative * p.direction.badness(p.then).abs()).max(tol.absolute).max(step);
            Check::close_to(format!("{} vs snapshot", p.what), p.now, p.then, allowance)
        })
        .collect())
}

/// A snapshot metric and the current run's value of it.
struct Pair {
    what: String,
    now: f64,
    then: f64,
    direction: Direction,
    /// Positions behind a top-1 agreement, for its step.
    positions: Option<u64>,
}

/// Every metric of `snapshot` with its value in `current`; an error when `current` lacks one
/// or was measured on other inputs.
fn paired(snapshot: &Report, current: &Report) -> Result<Vec<Pair>, String> {
    let (s, c) = (&snapshot.inputs, &current.inputs);
    if (&s.source, s.runs, s.tokens) != (&c.source, c.runs, c.tokens) {
        return Err(format!(
            "the snapshot was measured on {} ({} runs), this run on {} ({} runs)",
            s.source, s.runs, c.source, c.runs
        ));
    }
    let mut pairs = Vec::new();
    for snap in &snapshot.comparisons {
        let cur = find_comparison(current, &snap.name)?;
        for sm in &snap.outputs {
            let cm = cur.outputs.iter().find(|m| m.name == sm.name).ok_or_else(|| {
                format!("the snapshot has output {} in {}, this run has not", sm.name, snap.name)
            })?;
            let current_values = cm.values();
            for (metric, value, direction) in sm.values() {
                let now = current_values.iter().find(|(n, _, _)| *n == metric).ok_or_else(|| {
                    format!("the snapshot has {metric} of {}, this run has not", sm.name)
                })?;
                pairs.push(Pair {
                    what: format!("{metric} of {} ({})", sm.name, snap.name),
                    now: now.1,
                    then: value,
                    direction,
                    positions: if metric == "top1" { sm.positions } else { None },
                });
            }
        }
    }
    if let Some(sp) = &snapshot.perplexity {
        let cp = current.perplexity.as_ref().ok_or("the snapshot has perplexity, this run has not")?;
        for (name, now, then) in [
            ("perplexity of original", cp.original, sp.original),
            ("perplexity of converted", cp.converted, sp.converted),
            ("perplexity increase", cp.increase, sp.increase),
        ] {
            pairs.push(Pair { what: name.into(), now, then, direction: Direction::Error, positions: None });
        }
    }
    Ok(pairs)
}

fn find_comparison<'a>(report: &'a Report, name: &str) -> Result<&'a Comparison, String> {
    report
        .comparisons
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| format!("the snapshot has the comparison '{name}', this run has not"))
}

/// `now` against the snapshot value `then`, allowing the tolerance in the worse direction.
fn no_worse(what: String, now: f64, then: f64, direction: Direction, tol: Tolerance) -> Check {
    let allowance = (tol.relative * direction.badness(then).abs()).max(tol.absolute);
    match direction {
        Direction::Error => Check::at_most(what, now, then + allowance),
        Direction::Similarity => Check::at_least(what, now, then - allowance),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::metrics::OutputMetrics;
    use crate::diff::report::InputsInfo;

    fn metrics(rel_rmse: f64, cosine: f64, top1: f64, kl: f64) -> OutputMetrics {
        OutputMetrics {
            name: "logits".into(),
            elements: 100,
            max_abs_diff: 0.25,
            rmse: 0.02,
            rel_rmse,
            cosine,
            positions: Some(10),
            top1: Some(top1),
            kl: Some(kl),
        }
    }

    fn report(m: OutputMetrics) -> Report {
        Report {
            label: "x".into(),
            original: "a.onnx".into(),
            converted: "b.rbeonnx".into(),
            inputs: InputsInfo { source: "random".into(), runs: 2, tokens: Some(20) },
            partial: false,
            comparisons: vec![Comparison { name: "converted vs original".into(), outputs: vec![m] }],
            perplexity: None,
            rate: None,
            series: None,
        }
    }

    #[test]
    fn rounding_keeps_four_digits_of_the_gap() {
        assert_eq!(round(0.0123456, Direction::Error), 0.01235);
        assert_eq!(round(123456.0, Direction::Error), 123500.0);
        assert_eq!(round(0.0, Direction::Error), 0.0);
        assert_eq!(round(0.9999876543, Direction::Similarity), 0.99998765);
        assert_eq!(round(0.5, Direction::Similarity), 0.5);
        assert_eq!(round(1.0, Direction::Similarity), 1.0);
        assert!(round(f64::NAN, Direction::Error).is_nan());
        assert_eq!(round(-0.0123456, Direction::Error), -0.01235);
    }

    #[test]
    fn rounding_absorbs_float_noise() {
        let a = rounded(&report(metrics(0.0512345, 0.99871234, 0.9, 1.234567e-4)));
        let b = rounded(&report(metrics(0.0512346, 0.99871235, 0.9, 1.234568e-4)));
        assert_eq!(a, b);
        let m = &a.comparisons[0].outputs[0];
        assert_eq!((m.rel_rmse, m.cosine, m.kl), (0.05123, 0.998712, Some(1.235e-4)));
    }

    #[test]
    fn check_is_direction_aware() {
        let tol = Tolerance::default();
        let snap = report(metrics(0.05, 0.999, 0.9, 1e-3));
        // Equal, or better in every direction: all pass.
        let better = report(metrics(0.01, 0.9999, 1.0, 1e-4));
        for cur in [&snap, &better] {
            assert!(check(&snap, cur, tol).unwrap().iter().all(|c| c.ok));
        }
        // Within 5% of the gap: passes. rel_rmse 0.0524 (+4.8%), cosine gap 0.00104 (+4%).
        let near = report(metrics(0.0524, 0.99896, 0.896, 1.04e-3));
        assert!(check(&snap, &near, tol).unwrap().iter().all(|c| c.ok));
        // Each metric worse by more than 5%: each fails on its own.
        for (worse, name) in [
            (metrics(0.053, 0.999, 0.9, 1e-3), "rel_rmse"),
            (metrics(0.05, 0.9989, 0.9, 1e-3), "cosine"),
            (metrics(0.05, 0.999, 0.89, 1e-3), "top1"),
            (metrics(0.05, 0.999, 0.9, 1.1e-3), "kl"),
        ] {
            let checks = check(&snap, &report(worse), tol).unwrap();
            let failed: Vec<_> = checks.iter().filter(|c| !c.ok).map(|c| c.what.clone()).collect();
            assert_eq!(failed.len(), 1, "{failed:?}");
            assert!(failed[0].starts_with(name), "{failed:?}");
        }
    }

    #[test]
    fn a_perfect_snapshot_allows_only_the_absolute_floor() {
        let snap = report(metrics(0.0, 1.0, 1.0, 0.0));
        let tol = Tolerance { relative: 0.05, absolute: 1e-6 };
        let noise = report(metrics(5e-7, 1.0 - 5e-7, 1.0, 5e-7));
        assert!(check(&snap, &noise, tol).unwrap().iter().all(|c| c.ok));
        let worse = report(metrics(2e-6, 1.0, 0.99, 0.0));
        let failed = check(&snap, &worse, tol).unwrap().into_iter().filter(|c| !c.ok).count();
        assert_eq!(failed, 2);
    }

    #[test]
    fn within_is_two_sided_and_allows_one_top1_step() {
        let tol = Tolerance { relative: 0.01, absolute: 1e-6 };
        let snap = report(metrics(0.05, 0.999, 0.9, 1e-3));
        let noise = report(metrics(0.05004, 0.999001, 0.8, 1.005e-3));
        // top1 0.9 -> 0.8 is one step of the 10 positions: allowed.
        assert!(within(&snap, &noise, tol).unwrap().iter().all(|c| c.ok));
        for (moved, name) in [
            (metrics(0.0505, 0.999, 0.9, 1e-3), "rel_rmse"),
            (metrics(0.0495, 0.999, 0.9, 1e-3), "rel_rmse"),
            (metrics(0.05, 0.99902, 0.9, 1e-3), "cosine"),
            (metrics(0.05, 0.999, 0.7, 1e-3), "top1"),
            (metrics(0.05, 0.999, 0.9, 0.98e-3), "kl"),
        ] {
            let checks = within(&snap, &report(moved), tol).unwrap();
            let failed: Vec<_> = checks.iter().filter(|c| !c.ok).map(|c| c.what.clone()).collect();
            assert_eq!(failed.len(), 1, "{failed:?}");
            assert!(failed[0].starts_with(name), "{failed:?}");
        }
    }

    #[test]
    fn within_refuses_a_run_with_other_outputs() {
        let snap = report(metrics(0.05, 0.999, 0.9, 1e-3));
        let mut more = snap.clone();
        let mut extra = more.comparisons[0].outputs[0].clone();
        extra.name = "present.0.key".into();
        more.comparisons[0].outputs.push(extra);
        assert!(within(&snap, &more, Tolerance::default()).unwrap_err().contains("present.0.key"));
        assert!(within(&more, &snap, Tolerance::default()).unwrap_err().contains("present.0.key"));
    }

    #[test]
    fn mismatched_runs_are_errors() {
        let snap = report(metrics(0.05, 0.999, 0.9, 1e-3));
        let mut other = snap.clone();
        other.inputs.runs = 3;
        assert!(check(&snap, &other, Tolerance::default()).unwrap_err().contains("measured on"));
        let mut other = snap.clone();
        other.comparisons[0].outputs[0].name = "y".into();
        assert!(check(&snap, &other, Tolerance::default()).unwrap_err().contains("output logits"));
        let mut other = snap.clone();
        other.comparisons[0].name = "z".into();
        assert!(check(&snap, &other, Tolerance::default()).unwrap_err().contains("comparison"));
    }

    #[test]
    fn save_and_load_round_trip_and_refuse_partial_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.json");
        let r = report(metrics(0.0512345, 0.999, 0.9, 1e-3));
        save(&path, &r).unwrap();
        assert_eq!(load(&path).unwrap(), rounded(&r));
        let mut partial = r.clone();
        partial.partial = true;
        assert!(save(&path, &partial).unwrap_err().contains("partial"));
        std::fs::write(&path, "[1, 2]").unwrap();
        assert!(load(&path).unwrap_err().contains("not a snapshot-diff report"));
    }
}

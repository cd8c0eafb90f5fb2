//! A self-contained HTML report (inline CSS and SVG, no scripts, no network): the metrics
//! of one or more runs, top-1 and KL per run, and per-tensor relative RMSE from converter
//! reports (`rbe-convert --report`).

use std::path::Path;

use serde::Deserialize;

use super::rd_plot::{scatter, Point};
use super::report::{fmt_value, Report};

/// The part of an `rbe-convert --report` JSON file the HTML report draws.
#[derive(Clone, Debug, Deserialize)]
pub struct ConvertSummary {
    /// The preset or knobs used.
    pub preset: String,
    /// Per-tensor rows.
    pub tensors: Vec<ConvertedTensor>,
    /// Encoded weights' f32 size over their stored size, when given.
    #[serde(default)]
    pub weights_ratio_vs_f32: Option<f64>,
    /// The model runs of an accuracy-targeted allocation, when one ran.
    #[serde(default)]
    pub allocation: Option<AllocationSummary>,
}

/// The part of a report's `allocation` the HTML report draws.
#[derive(Clone, Debug, Deserialize)]
pub struct AllocationSummary {
    /// Every model run of the allocation.
    pub trace: Vec<AllocationRun>,
}

/// One model run of an allocation.
#[derive(Clone, Debug, Deserialize)]
pub struct AllocationRun {
    /// `probe`, `search` or `check`.
    pub stage: String,
    /// What was run.
    pub what: String,
    /// Average bits per weight.
    pub bits_per_weight: f64,
    /// What it measured.
    pub measured: MeasuredKl,
}

/// A run's measured mean KL.
#[derive(Clone, Debug, Deserialize)]
pub struct MeasuredKl {
    /// Mean KL (nats).
    pub kl: f64,
}

/// One tensor of a converter report.
#[derive(Clone, Debug, Deserialize)]
pub struct ConvertedTensor {
    /// Initializer name.
    pub name: String,
    /// `dense`, `sparse`, `raw`...
    pub mode: String,
    /// Bits per weight.
    pub bits_per_weight: f64,
    /// RMSE / std of the original weights.
    pub rel_rmse: f64,
}

impl ConvertSummary {
    /// Reads a converter report.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{} is not an rbe-convert report: {e}", path.display()))
    }
}

/// Escapes text for HTML and SVG.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One bar of a chart: label, value, and a note printed after the bar.
struct Bar {
    label: String,
    value: f64,
    note: String,
}

/// A horizontal bar chart, scaled to `max` (or to the largest value).
fn bar_chart(title: &str, bars: &[Bar], max: Option<f64>, color: &str) -> String {
    const LABEL_W: f64 = 330.0;
    const BAR_W: f64 = 470.0;
    const ROW_H: f64 = 22.0;
    const TOP: f64 = 30.0;
    let finite = bars.iter().map(|b| b.value).filter(|v| v.is_finite());
    let scale = max.unwrap_or_else(|| finite.fold(0.0, f64::max)).max(f64::MIN_POSITIVE);
    let height = TOP + ROW_H * bars.len() as f64 + 28.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1060\" height=\"{height}\" role=\"img\">\
         <title>{0}</title><text x=\"0\" y=\"18\" class=\"t\">{0}</text>",
        esc(title)
    );
    for (i, b) in bars.iter().enumerate() {
        let y = TOP + ROW_H * i as f64;
        let w = if b.value.is_finite() { (b.value / scale).clamp(0.0, 1.0) * BAR_W } else { 0.0 };
        svg += &format!(
            "<text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{label}</text>\
             <rect x=\"{bx}\" y=\"{ry}\" width=\"{w:.1}\" height=\"{h}\" fill=\"{color}\"/>\
             <text x=\"{nx:.1}\" y=\"{ty}\">{value} {note}</text>",
            lx = LABEL_W - 8.0,
            ty = y + 15.0,
            label = esc(&super::report::truncate(&b.label, 44)),
            bx = LABEL_W,
            ry = y + 3.0,
            h = ROW_H - 6.0,
            nx = LABEL_W + w + 6.0,
            value = fmt_value(b.value),
            note = esc(&b.note),
        );
    }
    let axis_y = TOP + ROW_H * bars.len() as f64 + 4.0;
    svg += &format!(
        "<line x1=\"{LABEL_W}\" y1=\"{axis_y}\" x2=\"{x2}\" y2=\"{axis_y}\" stroke=\"#888\"/>",
        x2 = LABEL_W + BAR_W
    );
    for k in 0..=4 {
        let x = LABEL_W + BAR_W * k as f64 / 4.0;
        svg += &format!(
            "<text x=\"{x}\" y=\"{y}\" text-anchor=\"middle\" class=\"a\">{v}</text>",
            y = axis_y + 16.0,
            v = fmt_value(scale * k as f64 / 4.0)
        );
    }
    svg + "</svg>"
}

/// The metrics tables of one run.
fn run_section(r: &Report) -> String {
    let mut html = format!(
        "<h2>{label}{partial}</h2><p><b>{conv}</b> vs <b>{orig}</b>; inputs: {src} ({runs} runs{tokens})</p>",
        label = esc(&r.label),
        partial = if r.partial { " <span class=\"bad\">(partial: interrupted)</span>" } else { "" },
        conv = esc(&r.converted),
        orig = esc(&r.original),
        src = esc(&r.inputs.source),
        runs = r.inputs.runs,
        tokens = r.inputs.tokens.map_or(String::new(), |t| format!(", {t} tokens")),
    );
    for c in &r.comparisons {
        html += &format!(
            "<table><caption>{}</caption><tr><th>output</th><th>elements</th><th>max |diff|</th>\
             <th>RMSE</th><th>rel. RMSE</th><th>cosine</th><th>top-1</th><th>KL (nats)</th></tr>",
            esc(&c.name)
        );
        for m in &c.outputs {
            let opt = |v: Option<f64>| v.map_or("–".to_string(), fmt_value);
            html += &format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.6}</td><td>{}</td><td>{}</td></tr>",
                esc(&m.name),
                m.elements,
                fmt_value(m.max_abs_diff),
                fmt_value(m.rmse),
                fmt_value(m.rel_rmse),
                m.cosine,
                opt(m.top1),
                opt(m.kl)
            );
        }
        html += "</table>";
    }
    if let Some(p) = &r.perplexity {
        html += &format!(
            "<p>Perplexity: original {:.4}, converted {:.4} (<b>{:+.3}%</b>) over {} windows, {} predicted tokens.</p>",
            p.original,
            p.converted,
            p.increase * 100.0,
            p.windows,
            p.predicted_tokens
        );
    }
    html
}

/// Top-1 and KL of each run's logits outputs (converted vs original), and the perplexity
/// increase of runs on a text: one bar per run.
fn per_run_charts(reports: &[Report]) -> String {
    let mut top1 = Vec::new();
    let mut kl = Vec::new();
    let ppl: Vec<Bar> = reports
        .iter()
        .filter_map(|r| r.perplexity.as_ref().map(|p| (r, p)))
        .map(|(r, p)| Bar {
            label: r.label.clone(),
            value: p.increase * 100.0,
            note: format!("% ({:.4} -> {:.4})", p.original, p.converted),
        })
        .collect();
    for r in reports {
        for m in r.main().iter().flat_map(|c| c.outputs.iter()) {
            let label = if r.main().is_some_and(|c| c.outputs.len() > 1) {
                format!("{} {}", r.label, m.name)
            } else {
                r.label.clone()
            };
            if let (Some(t), Some(k)) = (m.top1, m.kl) {
                top1.push(Bar { label: label.clone(), value: t, note: String::new() });
                kl.push(Bar { label, value: k, note: "nats".into() });
            }
        }
    }
    let mut html = String::new();
    if !top1.is_empty() {
        html += &bar_chart("Top-1 agreement with the original (converted vs original)", &top1, Some(1.0), "#4e79a7");
        html += &bar_chart("Mean KL(original || converted), nats", &kl, None, "#f28e2b");
    }
    if !ppl.is_empty() {
        html += &bar_chart("Perplexity increase over the original, %", &ppl, None, "#e15759");
    }
    html
}

/// Per-tensor relative RMSE of one conversion (tensors stored raw are counted, not drawn).
fn tensor_chart(c: &ConvertSummary) -> String {
    let bars: Vec<Bar> = c
        .tensors
        .iter()
        .filter(|t| t.mode != "raw")
        .map(|t| Bar {
            label: t.name.clone(),
            value: t.rel_rmse,
            note: format!("({}, {:.2} bits/weight)", t.mode, t.bits_per_weight),
        })
        .collect();
    let raw = c.tensors.len() - bars.len();
    let ratio = c.weights_ratio_vs_f32.map_or(String::new(), |r| format!(", weights {r:.2}x smaller than f32"));
    format!(
        "<h2>Conversion {preset}: per-tensor relative RMSE</h2><p>{n} encoded tensors{ratio}; \
         not drawn: {raw} stored losslessly.</p>{chart}",
        preset = esc(&c.preset),
        n = bars.len(),
        chart = bar_chart(&format!("relative RMSE per tensor (preset {})", c.preset), &bars, None, "#59a14f"),
    )
}

/// Bits per weight against measured KL for every model run of an allocation.
fn allocation_plot(c: &ConvertSummary) -> String {
    let Some(a) = &c.allocation else { return String::new() };
    let points: Vec<Point> = a
        .trace
        .iter()
        .map(|r| Point {
            label: if r.stage == "check" { r.what.clone() } else { String::new() },
            bpw: r.bits_per_weight,
            distortion: r.measured.kl,
            series: match r.stage.as_str() {
                "check" => "held-out check".to_string(),
                "search" => "search (calibration windows)".to_string(),
                other => format!("{other} (calibration windows)"),
            },
        })
        .collect();
    let plot = scatter(&format!("Allocation of {}: bits per weight vs mean KL of every model run", c.preset), "mean KL (nats)", &points);
    if plot.is_empty() {
        return plot;
    }
    format!("<h2>Allocation ({} model runs)</h2>{plot}", a.trace.len())
}

/// The rate–distortion plot of the runs that know their rate (two or more): the converted
/// file's bits per original weight against the logits' mean KL when every such run has one,
/// else against 1 − cosine of the first output; one colour per `--series`.
pub fn rate_distortion(reports: &[Report]) -> String {
    let rated: Vec<(&Report, f64)> = reports.iter().filter_map(|r| Some((r, r.rate.as_ref()?.bits_per_weight))).collect();
    if rated.len() < 2 {
        return String::new();
    }
    let kl = |r: &Report| r.main()?.outputs.iter().find_map(|m| m.kl);
    let by_kl = rated.iter().all(|(r, _)| kl(r).is_some());
    let distortion = |r: &Report| if by_kl { kl(r) } else { r.main()?.outputs.first().map(|m| 1.0 - m.cosine) };
    let points: Vec<Point> = rated
        .iter()
        .filter_map(|&(r, bpw)| {
            let series = r.series.clone().unwrap_or_else(|| "runs".into());
            Some(Point { label: r.label.clone(), bpw, distortion: distortion(r)?, series })
        })
        .collect();
    let metric = if by_kl { "mean KL (nats)" } else { "1 - cosine" };
    scatter(&format!("Rate–distortion: file bits per original weight vs {metric}"), metric, &points)
}

const STYLE: &str = "body{font:14px/1.4 sans-serif;margin:24px;color:#222;max-width:1100px}\
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:10px 0}caption{text-align:left;font-weight:bold;padding:4px 0}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}\
th{background:#f3f3f3}.bad{color:#b00}svg{display:block;margin:12px 0;font:12px sans-serif}\
svg .t{font-weight:bold;font-size:13px}svg .a{fill:#666;font-size:11px}";

/// The whole page for several runs and conversions.
pub fn render(reports: &[Report], conversions: &[ConvertSummary]) -> String {
    let mut body = String::from("<h1>snapshot-diff report</h1>");
    body += "<p>Metrics as defined in MEASURING.md: relative RMSE = RMSE / std of the reference; \
             top-1 = share of positions whose argmax agrees; KL = mean KL(reference || candidate).</p>";
    body += &per_run_charts(reports);
    body += &rate_distortion(reports);
    for r in reports {
        body += &run_section(r);
    }
    for c in conversions {
        body += &tensor_chart(c);
        body += &allocation_plot(c);
    }
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>snapshot-diff report</title>\
         <style>{STYLE}</style></head><body>{body}</body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value_and_escape_labels() {
        let bars = [
            Bar { label: "<a&b>".into(), value: 2.0, note: String::new() },
            Bar { label: "b".into(), value: 1.0, note: String::new() },
        ];
        let svg = bar_chart("t", &bars, None, "#000");
        assert!(svg.contains("&lt;a&amp;b&gt;") && !svg.contains("<a&b>"));
        assert!(svg.contains("width=\"470.0\"") && svg.contains("width=\"235.0\""), "{svg}");
    }

    #[test]
    fn converter_reports_are_read_and_raw_tensors_not_drawn() {
        let json = r#"{"preset": "q4", "weights_ratio_vs_f32": 7.1, "tensors": [
            {"name": "h.0.w", "shape": [4, 4], "mode": "dense", "bits_per_weight": 4.5, "rel_rmse": 0.08, "bytes": 9, "weights": 16},
            {"name": "h.0.b", "shape": [4], "mode": "raw", "bits_per_weight": 32, "rel_rmse": 0, "bytes": 16, "weights": 4}]}"#;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, json).unwrap();
        let c = ConvertSummary::load(&path).unwrap();
        let html = render(&[], &[c]);
        assert!(html.contains("h.0.w") && !html.contains("h.0.b"));
        assert!(html.contains("not drawn: 1 stored losslessly"));
        assert!(!html.contains("<script"));
        assert_eq!(html.matches("http").count(), html.matches("http://www.w3.org/2000/svg").count());
        std::fs::write(&path, "{}").unwrap();
        assert!(ConvertSummary::load(&path).unwrap_err().contains("not an rbe-convert report"));
    }

    /// A run of `label` in `series` at `bpw` (no rate when `None`) with a logits KL if given.
    fn run(label: &str, series: &str, bpw: Option<f64>, kl: Option<f64>, cosine: f64) -> Report {
        let kl = kl.map_or("null".to_string(), |k| k.to_string());
        let rate = bpw.map_or(String::new(), |b| format!(r#","rate":{{"bytes":1,"weights":1,"bits_per_weight":{b}}}"#));
        let json = format!(
            r#"{{"label":"{label}","original":"a.onnx","converted":"b","series":"{series}","inputs":{{"source":"t","runs":1}},
            "comparisons":[{{"name":"converted vs original","outputs":[{{"name":"logits","elements":4,"max_abs_diff":0.1,
            "rmse":0.1,"rel_rmse":0.1,"cosine":{cosine},"kl":{kl}}}]}}]{rate}}}"#
        );
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn rated_runs_make_a_rate_distortion_plot_by_kl_or_else_cosine() {
        let runs = [run("q4", "presets", Some(4.4), Some(0.08), 0.99), run("q3c", "calibrated", Some(3.4), Some(0.37), 0.98)];
        let plot = rate_distortion(&runs);
        assert!(plot.contains("q4: 4.400 bpw, mean KL (nats) 0.0800") && plot.contains(">calibrated<"), "{plot}");
        assert!(render(&runs, &[]).contains(&plot));
        // One rated run is not a curve; runs without KL are placed by 1 - cosine.
        assert!(rate_distortion(&[runs[0].clone(), run("x", "s", None, Some(0.1), 0.9)]).is_empty());
        let by_cosine = rate_distortion(&[run("a", "s", Some(4.0), None, 0.99), run("b", "s", Some(3.0), None, 0.9)]);
        assert!(by_cosine.contains("b: 3.000 bpw, 1 - cosine 0.1000"), "{by_cosine}");
    }
}

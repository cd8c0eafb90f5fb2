//! A rate–distortion scatter plot (bits per weight against mean KL, log scale) as inline SVG:
//! every model run of an allocation, or any labelled set of conversions.

/// One point: its label, bits per weight, mean KL, and its series (which colour it gets).
pub struct Point {
    /// Shown beside the point.
    pub label: String,
    /// Bits per weight.
    pub bpw: f64,
    /// Mean KL to the original (nats); points at or below 0 are not drawn.
    pub kl: f64,
    /// Series name (legend entry).
    pub series: String,
}

const W: f64 = 760.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const BOTTOM: f64 = 40.0;
const TOP: f64 = 30.0;
const COLORS: [&str; 6] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#9c755f"];

/// The plot of `points` titled `title`; an empty string when no point has a positive KL.
pub fn scatter(title: &str, points: &[Point]) -> String {
    let shown: Vec<&Point> = points.iter().filter(|p| p.kl > 0.0 && p.kl.is_finite() && p.bpw.is_finite()).collect();
    if shown.is_empty() {
        return String::new();
    }
    let (x0, x1) = bounds(shown.iter().map(|p| p.bpw), 0.25);
    let (l0, l1) = bounds(shown.iter().map(|p| p.kl.log10()), 0.2);
    let (l0, l1) = (l0.floor(), l1.ceil().max(l0.floor() + 1.0));
    let x = |v: f64| LEFT + (v - x0) / (x1 - x0) * (W - LEFT - 20.0);
    let y = |kl: f64| TOP + (l1 - kl.log10()) / (l1 - l0) * (H - TOP - BOTTOM);
    let mut series: Vec<&str> = Vec::new();
    for p in &shown {
        if !series.contains(&p.series.as_str()) {
            series.push(&p.series);
        }
    }
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" role=\"img\"><title>{t}</title>\
         <text x=\"0\" y=\"16\" class=\"t\">{t}</text>\
         <line x1=\"{LEFT}\" y1=\"{yb}\" x2=\"{xr}\" y2=\"{yb}\" stroke=\"#888\"/>\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{yb}\" stroke=\"#888\"/>\
         <text x=\"{xm}\" y=\"{H}\" text-anchor=\"middle\" class=\"a\">bits per weight</text>\
         <text x=\"12\" y=\"{ym}\" transform=\"rotate(-90 12 {ym})\" text-anchor=\"middle\" class=\"a\">mean KL (nats, log)</text>",
        t = super::html::esc(title),
        yb = H - BOTTOM,
        xr = W - 20.0,
        xm = (LEFT + W) / 2.0,
        ym = (TOP + H - BOTTOM) / 2.0,
    );
    for e in (l0 as i32)..=(l1 as i32) {
        svg += &format!("<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" class=\"a\">1e{e}</text>", LEFT - 6.0, y(10f64.powi(e)) + 4.0);
    }
    for tick in (x0.ceil() as i32)..=(x1.floor() as i32) {
        svg += &format!("<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" class=\"a\">{tick}</text>", x(tick as f64), H - BOTTOM + 16.0);
    }
    for p in &shown {
        let i = series.iter().position(|s| *s == p.series).unwrap_or(0);
        svg += &format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{}\"><title>{}: {:.3} bpw, KL {:.4}</title></circle>",
            x(p.bpw),
            y(p.kl),
            COLORS[i % COLORS.len()],
            super::html::esc(&p.label),
            p.bpw,
            p.kl
        );
        if !p.label.is_empty() {
            svg += &format!("<text x=\"{:.1}\" y=\"{:.1}\" class=\"a\">{}</text>", x(p.bpw) + 6.0, y(p.kl) - 5.0, super::html::esc(&p.label));
        }
    }
    for (i, s) in series.iter().enumerate() {
        let ly = TOP + 14.0 * i as f64;
        svg += &format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            W - 190.0,
            ly,
            COLORS[i % COLORS.len()],
            W - 180.0,
            ly + 4.0,
            super::html::esc(s)
        );
    }
    svg + "</svg>"
}

/// The range of `values` widened by `pad` of its width on each side (at least ±`pad`).
fn bounds(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let width = (hi - lo).max(1.0);
    (lo - pad * width, hi + pad * width)
}

#[cfg(test)]
mod tests {
    use super::{scatter, Point};

    fn point(label: &str, bpw: f64, kl: f64, series: &str) -> Point {
        Point { label: label.into(), bpw, kl, series: series.into() }
    }

    #[test]
    fn points_are_placed_by_rate_and_log_distortion() {
        let svg = scatter("rd", &[point("q4", 4.4, 0.03, "presets"), point("a", 3.5, 0.3, "allocation"), point("zero", 8.0, 0.0, "presets")]);
        assert_eq!(svg.matches("<circle").count(), 2 + 2, "two points and two legend entries: {svg}");
        assert!(svg.contains("q4: 4.400 bpw, KL 0.0300") && !svg.contains("zero"));
        // The log axis grows upwards: the smaller KL lies lower on the page (larger y).
        let cy = |label: &str| -> f64 {
            let at = svg.find(&format!("<title>{label}:")).unwrap();
            let head = &svg[..at];
            let c = head.rfind("cy=\"").unwrap();
            head[c + 4..].split('"').next().unwrap().parse().unwrap()
        };
        assert!(cy("q4") > cy("a"));
        assert!(scatter("empty", &[point("z", 4.0, 0.0, "s")]).is_empty());
    }
}

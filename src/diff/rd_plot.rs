//! A rate–distortion scatter plot (bits per weight against a distortion on a log scale, such as
//! mean KL) as inline SVG: every model run of an allocation, or any labelled set of conversions.

/// One point: its label, bits per weight, distortion, and its series (which colour it gets).
pub struct Point {
    /// Shown beside the point.
    pub label: String,
    /// Bits per weight.
    pub bpw: f64,
    /// Distance to the original (mean KL, 1 − cosine...); points at or below 0 are not drawn.
    pub distortion: f64,
    /// Series name (legend entry).
    pub series: String,
}

const W: f64 = 760.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const BOTTOM: f64 = 40.0;
const TOP: f64 = 30.0;
const COLORS: [&str; 6] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#9c755f"];

/// The plot of `points` titled `title`, their distortion named `metric`; an empty string when
/// no point has a positive distortion.
pub fn scatter(title: &str, metric: &str, points: &[Point]) -> String {
    let shown: Vec<&Point> =
        points.iter().filter(|p| p.distortion > 0.0 && p.distortion.is_finite() && p.bpw.is_finite()).collect();
    if shown.is_empty() {
        return String::new();
    }
    let (x0, x1) = bounds(shown.iter().map(|p| p.bpw), 0.25);
    let (l0, l1) = bounds(shown.iter().map(|p| p.distortion.log10()), 0.2);
    let (l0, l1) = (l0.floor(), l1.ceil().max(l0.floor() + 1.0));
    let x = |v: f64| LEFT + (v - x0) / (x1 - x0) * (W - LEFT - 20.0);
    let y = |d: f64| TOP + (l1 - d.log10()) / (l1 - l0) * (H - TOP - BOTTOM);
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
         <text x=\"{xm}\" y=\"{yl}\" text-anchor=\"middle\" class=\"a\">bits per weight</text>\
         <text x=\"12\" y=\"{ym}\" transform=\"rotate(-90 12 {ym})\" text-anchor=\"middle\" class=\"a\">{m} (log)</text>",
        t = super::html::esc(title),
        m = super::html::esc(metric),
        yb = H - BOTTOM,
        yl = H - 6.0,
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
    let mut labels = Vec::new();
    for p in &shown {
        let i = series.iter().position(|s| *s == p.series).unwrap_or(0);
        svg += &format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{}\" fill-opacity=\"0.75\"><title>{}: {:.3} bpw, {} {:.4}</title></circle>",
            x(p.bpw),
            y(p.distortion),
            COLORS[i % COLORS.len()],
            super::html::esc(&p.label),
            p.bpw,
            super::html::esc(metric),
            p.distortion
        );
        if !p.label.is_empty() {
            let (lx, ly, end) = free_spot(&mut labels, &p.label, x(p.bpw), y(p.distortion));
            let anchor = if end { " text-anchor=\"end\"" } else { "" };
            svg += &format!("<text x=\"{lx:.1}\" y=\"{ly:.1}\"{anchor} class=\"a\">{}</text>", super::html::esc(&p.label));
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

/// A placed label: its left and right ends and its baseline.
type LabelBox = (f64, f64, f64);

/// Where the label `text` of the point at `(x, y)` goes, as `(x, baseline, anchored at its
/// end)`: right of the point, else left of it, each above then below the point, else stacked
/// below on the right until it covers none of the `placed` labels (points of nearly equal rate
/// and distortion); then recorded.
fn free_spot(placed: &mut Vec<LabelBox>, text: &str, x: f64, y: f64) -> (f64, f64, bool) {
    const LINE: f64 = 13.0;
    let width = 6.2 * text.chars().count() as f64;
    let covers = |b: LabelBox, placed: &[LabelBox]| placed.iter().any(|p| b.0 < p.1 && p.0 < b.1 && (p.2 - b.2).abs() < LINE);
    let spot = |right: bool, baseline: f64| -> LabelBox {
        if right {
            (x + 6.0, x + 6.0 + width, baseline)
        } else {
            (x - 6.0 - width, x - 6.0, baseline)
        }
    };
    let tries = [(true, y - 5.0), (false, y - 5.0), (true, y + 14.0), (false, y + 14.0)];
    let (right, b) = tries
        .iter()
        .map(|&(right, baseline)| (right, spot(right, baseline)))
        .find(|&(_, b)| !covers(b, placed))
        .unwrap_or_else(|| {
            let mut b = spot(true, y + 14.0);
            while covers(b, placed) {
                b.2 += LINE;
            }
            (true, b)
        });
    placed.push(b);
    if right {
        (b.0, b.2, false)
    } else {
        (b.1, b.2, true)
    }
}

/// A plot of [`scatter`] as a file of its own: the page's styles moved inside the SVG.
pub fn standalone(svg: &str) -> String {
    const STYLE: &str = "<style>svg{font:12px sans-serif;background:#fff}.t{font-weight:bold;font-size:13px}.a{fill:#666;font-size:11px}</style>";
    match svg.find('>') {
        Some(end) => format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}{STYLE}{}\n", &svg[..=end], &svg[end + 1..]),
        None => String::new(),
    }
}

/// The range of `values` widened by `pad` of its width on each side (at least ±`pad`).
fn bounds(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let width = (hi - lo).max(1.0);
    (lo - pad * width, hi + pad * width)
}

#[cfg(test)]
mod tests {
    use super::{scatter, standalone, Point};

    fn point(label: &str, bpw: f64, kl: f64, series: &str) -> Point {
        Point { label: label.into(), bpw, distortion: kl, series: series.into() }
    }

    #[test]
    fn points_are_placed_by_rate_and_log_distortion() {
        let svg = scatter("rd", "KL", &[point("q4", 4.4, 0.03, "presets"), point("a", 3.5, 0.3, "allocation"), point("zero", 8.0, 0.0, "presets")]);
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
        assert!(scatter("empty", "KL", &[point("z", 4.0, 0.0, "s")]).is_empty());
        let file = standalone(&svg);
        assert!(file.starts_with("<?xml") && file.contains("role=\"img\"><style>") && file.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn labels_of_coinciding_points_do_not_cover_each_other() {
        let svg = scatter("rd", "KL", &[point("first", 3.4, 0.37, "a"), point("second", 3.4, 0.38, "b"), point("third", 3.41, 0.375, "b")]);
        // Each label's text element: (x, y, anchored at its end).
        let label = |name: &str| -> (f64, f64, bool) {
            let at = svg.find(&format!(">{name}</text>")).unwrap();
            let tag = &svg[svg[..at].rfind("<text").unwrap()..at];
            let attr = |a: &str| -> f64 { tag.split(&format!(" {a}=\"")).nth(1).unwrap().split('"').next().unwrap().parse().unwrap() };
            (attr("x"), attr("y"), tag.contains("text-anchor=\"end\""))
        };
        let all = [label("first"), label("second"), label("third")];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert!(a.2 != b.2 || (a.1 - b.1).abs() >= 13.0, "{a:?} and {b:?} overlap: {svg}");
            }
        }
    }
}

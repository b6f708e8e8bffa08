//! The SVG plots: the front, and its hypervolume over trials and over
//! wall time, drawn by a small chart helper.

use std::fmt::Write as _;

use dsnn_search::Outcome;

use super::{HypervolumePoint, Summary};
use crate::executor::DEFAULT_TRIAL_ID;
use crate::store::History;

/// An SVG chart under construction: title, axes with five ticks each and
/// their labels, and a mapping from data to pixel coordinates.
struct Chart {
    svg: String,
    x: (f64, f64),
    y: (f64, f64),
}

impl Chart {
    const W: f64 = 640.0;
    const H: f64 = 480.0;
    const M: f64 = 70.0;

    fn new(title: &str, x_label: &str, y_label: &str, x: (f64, f64), y: (f64, f64)) -> Chart {
        let (w, hgt, m) = (Self::W, Self::H, Self::M);
        let mut c = Chart {
            svg: String::new(),
            x,
            y,
        };
        let o = &mut c.svg;
        let _ = writeln!(
            o,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{hgt}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            o,
            r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
            w / 2.0,
            xml(title)
        );
        let _ = writeln!(
            o,
            r#"<line x1="{m}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{m}" y1="{}" x2="{m}" y2="{}" stroke="black"/>"#,
            hgt - m,
            w - m / 2.0,
            hgt - m,
            hgt - m,
            m / 2.0
        );
        for i in 0..=4 {
            let f = i as f64 / 4.0;
            let xv = x.0 + f * (x.1 - x.0);
            let yv = y.0 + f * (y.1 - y.0);
            let (px, py) = (c.sx(xv), c.sy(yv));
            let _ = writeln!(
                c.svg,
                r#"<text x="{px:.1}" y="{}" text-anchor="middle">{}</text><text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                hgt - m + 16.0,
                tick(xv),
                m - 6.0,
                py + 4.0,
                tick(yv)
            );
        }
        let _ = writeln!(
            c.svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>"#,
            w / 2.0,
            hgt - 24.0,
            xml(x_label),
            hgt / 2.0,
            hgt / 2.0,
            xml(y_label)
        );
        c
    }

    /// Where `v` lies in `range`, 0 to 1 (0 for an empty range).
    fn fraction(v: f64, range: (f64, f64)) -> f64 {
        let width = range.1 - range.0;
        if width > 0.0 {
            (v - range.0) / width
        } else {
            0.0
        }
    }

    /// The pixel column of data value `x`.
    fn sx(&self, x: f64) -> f64 {
        Self::M + Self::fraction(x, self.x) * (Self::W - 1.5 * Self::M)
    }

    /// The pixel row of data value `y`.
    fn sy(&self, y: f64) -> f64 {
        Self::H - Self::M - Self::fraction(y, self.y) * (Self::H - 1.5 * Self::M)
    }

    /// A staircase through `points` (sorted by x): flat, then a step.
    fn staircase(&mut self, points: &[[f64; 2]], colour: &str) {
        let mut d = String::new();
        for (i, p) in points.iter().enumerate() {
            let (px, py) = (self.sx(p[0]), self.sy(p[1]));
            if i == 0 {
                let _ = write!(d, "M{px:.1},{py:.1}");
            } else {
                let _ = write!(d, " H{px:.1} V{py:.1}");
            }
        }
        let _ = writeln!(
            self.svg,
            r#"<path d="{d}" fill="none" stroke="{colour}" stroke-width="1.5"/>"#
        );
    }

    fn finish(mut self) -> String {
        let _ = writeln!(self.svg, "</svg>");
        self.svg
    }
}

/// `(lo, hi)` of `values`, widened by 5% (and never empty).
fn padded_range(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let lo = values.clone().fold(f64::INFINITY, f64::min);
    let hi = values.fold(f64::NEG_INFINITY, f64::max);
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(hi.abs() * 1e-6).max(1e-12);
    (lo - pad, hi + pad)
}

/// A scatter plot (SVG) of the first two objectives of every successful
/// trial at the front's budget: the front in red joined by its staircase,
/// the default configuration as a blue square.
pub fn pareto_svg(s: &Summary, h: &History) -> Option<String> {
    if s.objectives.len() < 2 {
        return None;
    }
    let budget = s.budget?;
    let pts: Vec<(bool, [f64; 2])> = h
        .results
        .iter()
        .filter(|(t, _)| t.budget == budget)
        .filter_map(|(t, r)| match &r.outcome {
            Outcome::Success(f) if f.len() >= 2 => Some((t.id == DEFAULT_TRIAL_ID, [f[0], f[1]])),
            _ => None,
        })
        .collect();
    if pts.is_empty() {
        return None;
    }
    let mut c = Chart::new(
        &format!("{}: Pareto front at budget {budget}", s.name),
        &s.objectives[0],
        &s.objectives[1],
        padded_range(pts.iter().map(|p| p.1[0])),
        padded_range(pts.iter().map(|p| p.1[1])),
    );
    for (is_default, p) in &pts {
        if !is_default {
            let (x, y) = (c.sx(p[0]), c.sy(p[1]));
            let _ = writeln!(
                c.svg,
                r##"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="#999" fill-opacity="0.7"/>"##
            );
        }
    }
    let mut front: Vec<[f64; 2]> = s
        .front
        .iter()
        .map(|p| [p.objectives[0], p.objectives[1]])
        .collect();
    front.sort_by(|a, b| a[0].total_cmp(&b[0]));
    if s.objectives.len() == 2 && front.len() > 1 {
        c.staircase(&front, "#d62728");
    }
    for p in &front {
        let (x, y) = (c.sx(p[0]), c.sy(p[1]));
        let _ = writeln!(
            c.svg,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="5" fill="#d62728"/>"##
        );
    }
    for (is_default, p) in &pts {
        if *is_default {
            let (x, y) = (c.sx(p[0]) - 5.0, c.sy(p[1]) - 5.0);
            let _ = writeln!(
                c.svg,
                r##"<rect x="{x:.1}" y="{y:.1}" width="10" height="10" fill="#1f77b4"/>"##
            );
        }
    }
    let w = Chart::W;
    let _ = writeln!(
        c.svg,
        r##"<circle cx="{}" cy="44" r="5" fill="#d62728"/><text x="{}" y="48">Pareto front</text><rect x="{}" y="56" width="10" height="10" fill="#1f77b4"/><text x="{}" y="66">default</text><circle cx="{}" cy="80" r="3.5" fill="#999"/><text x="{}" y="84">other trials</text>"##,
        w - 150.0,
        w - 140.0,
        w - 155.0,
        w - 140.0,
        w - 150.0,
        w - 140.0
    );
    Some(c.finish())
}

/// What a hypervolume plot runs along.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceAxis {
    /// Finished trials.
    Trials,
    /// The run's wall-clock time (summed over sessions).
    WallTime,
}

/// A step plot (SVG) of the front's normalised hypervolume over finished
/// trials or over wall-clock time ([`hypervolume_trace`]); `None` when no
/// trial succeeded, or for wall time when the log has no times.
pub fn hypervolume_svg(s: &Summary, trace: &[HypervolumePoint], axis: TraceAxis) -> Option<String> {
    let budget = s.budget?;
    let xs: Vec<f64> = match axis {
        TraceAxis::Trials => trace.iter().map(|p| p.results as f64).collect(),
        TraceAxis::WallTime => trace.iter().map(|p| p.elapsed_s).collect::<Option<_>>()?,
    };
    if xs.is_empty() {
        return None;
    }
    let (x_label, over) = match axis {
        TraceAxis::Trials => (
            "finished trials (the default and failures included)",
            "trials",
        ),
        TraceAxis::WallTime => ("wall-clock time of the run (s)", "wall time"),
    };
    let top = trace.iter().map(|p| p.hypervolume).fold(0.0, f64::max);
    let mut c = Chart::new(
        &format!("{}: hypervolume at budget {budget} over {over}", s.name),
        x_label,
        "normalised hypervolume",
        (0.0, xs.iter().copied().fold(1.0, f64::max) * 1.02),
        (0.0, if top > 0.0 { top * 1.05 } else { 1.0 }),
    );
    let mut steps: Vec<[f64; 2]> = vec![[0.0, 0.0]];
    steps.extend(xs.iter().zip(trace).map(|(&x, p)| [x, p.hypervolume]));
    c.staircase(&steps, "#1f77b4");
    // A dot where the hypervolume grew.
    let mut last = 0.0;
    for (&x, p) in xs.iter().zip(trace) {
        if p.hypervolume > last {
            last = p.hypervolume;
            let (px, py) = (c.sx(x), c.sy(p.hypervolume));
            let _ = writeln!(
                c.svg,
                r##"<circle cx="{px:.1}" cy="{py:.1}" r="3" fill="#1f77b4"/>"##
            );
        }
    }
    Some(c.finish())
}

fn tick(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-2 || v.abs() >= 1e4) {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

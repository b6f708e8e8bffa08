//! The SVG plots: the front, and its hypervolume over trials and over
//! wall time, drawn by a small chart helper.

use std::collections::BTreeMap;
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
        let mut c = Self::frame(title, x_label, y_label, x, y);
        let quarters = |r: (f64, f64)| -> Vec<(f64, String)> {
            (0..=4)
                .map(|i| {
                    let v = r.0 + i as f64 / 4.0 * (r.1 - r.0);
                    (v, tick(v))
                })
                .collect()
        };
        c.ticks(&quarters(x), &quarters(y));
        c
    }

    /// A chart whose ranges cover `x` and `y` widened to round numbers,
    /// with ticks at round values (steps of 1, 2, 2.5 or 5 times a power
    /// of ten).
    fn nice(title: &str, x_label: &str, y_label: &str, x: (f64, f64), y: (f64, f64)) -> Chart {
        let (xr, xt) = nice_ticks(x.0, x.1);
        let (yr, yt) = nice_ticks(y.0, y.1);
        let mut c = Self::frame(title, x_label, y_label, xr, yr);
        c.ticks(&xt, &yt);
        c
    }

    /// The chart's frame: title, axes and their labels, no ticks.
    fn frame(title: &str, x_label: &str, y_label: &str, x: (f64, f64), y: (f64, f64)) -> Chart {
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

    /// Tick labels at data values: `x` under the x axis, `y` left of the
    /// y axis.
    fn ticks(&mut self, x: &[(f64, String)], y: &[(f64, String)]) {
        let (hgt, m) = (Self::H, Self::M);
        for (v, label) in x {
            let px = self.sx(*v);
            let _ = writeln!(
                self.svg,
                r#"<text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"#,
                hgt - m + 16.0,
                xml(label)
            );
        }
        for (v, label) in y {
            let py = self.sy(*v);
            let _ = writeln!(
                self.svg,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                m - 6.0,
                py + 4.0,
                xml(label)
            );
        }
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

// ---- Study plots (`dsnn study`): several runs per chart. ----

/// Colours of the series of a study plot, in order (repeating).
pub const SERIES_COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];

/// The colour of series `i`.
pub fn series_colour(i: usize) -> &'static str {
    SERIES_COLOURS[i % SERIES_COLOURS.len()]
}

/// `(lo, hi)` widened to a multiple of a round step (1, 2, 2.5 or 5 times
/// a power of ten) with 3 to 6 steps, and the ticks at every step, labelled
/// with no more digits than the step needs.
fn nice_ticks(lo: f64, hi: f64) -> ((f64, f64), Vec<(f64, String)>) {
    let (lo, hi) = if lo.is_finite() && hi.is_finite() {
        (lo, hi)
    } else {
        (0.0, 1.0)
    };
    let span = if hi > lo {
        hi - lo
    } else {
        lo.abs().max(1e-12)
    };
    let mut exp = (span / 6.0).log10().floor() as i32;
    let (step, start, n) = 'found: loop {
        for m in [1.0, 2.0, 2.5, 5.0] {
            let step = m * 10f64.powi(exp);
            let start = (lo / step + 1e-9).floor() * step;
            let n = ((hi - start) / step - 1e-9).ceil().max(1.0) as usize;
            if n <= 6 {
                break 'found (step, start, n);
            }
        }
        exp += 1;
    };
    let small = step.abs() < 1e-3 || start.abs().max((start + n as f64 * step).abs()) >= 1e5;
    let ticks = (0..=n)
        .map(|i| {
            let v = start + i as f64 * step;
            let v = if v.abs() < step * 1e-9 { 0.0 } else { v };
            let label = if v == 0.0 {
                "0".to_string()
            } else if small {
                let e = format!("{v:.3e}");
                match e.split_once('e') {
                    Some((mantissa, exp)) => format!("{}e{exp}", trim_zeros(mantissa)),
                    None => e,
                }
            } else {
                trim_zeros(&format!("{v:.6}")).to_string()
            };
            (v, label)
        })
        .collect();
    ((start, start + n as f64 * step), ticks)
}

/// `2.500` -> `2.5`, `3.000` -> `3` (numbers with a decimal point only).
fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Where a chart's legend goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegendAt {
    /// Top right of the plot area (plots of minimised objectives).
    TopRight,
    /// Bottom right (curves that rise).
    BottomRight,
    /// Bottom left: the ideal corner of a plot of two minimised
    /// objectives, which no front reaches.
    BottomLeft,
}

/// Legend entries: a coloured swatch and a label each; `dashes` adds the
/// styles of lines (label, dash pattern) in grey.
fn legend(c: &mut Chart, at: LegendAt, entries: &[(String, &str)], dashes: &[(&str, &str)]) {
    let rows = entries.len() + dashes.len();
    let x = match at {
        LegendAt::BottomLeft => Chart::M + 10.0,
        _ => Chart::W - Chart::M / 2.0 - 190.0,
    };
    let y0 = match at {
        LegendAt::TopRight => Chart::M / 2.0 + 8.0,
        LegendAt::BottomRight | LegendAt::BottomLeft => {
            Chart::H - Chart::M - 10.0 - 16.0 * rows as f64
        }
    };
    let _ = writeln!(
        c.svg,
        r##"<rect x="{:.1}" y="{:.1}" width="186" height="{:.1}" fill="white" fill-opacity="0.85" stroke="#ccc"/>"##,
        x - 4.0,
        y0 - 4.0,
        16.0 * rows as f64 + 8.0
    );
    for (i, (label, colour)) in entries.iter().enumerate() {
        let y = y0 + 16.0 * i as f64;
        let _ = writeln!(
            c.svg,
            r#"<rect x="{x:.1}" y="{:.1}" width="18" height="10" fill="{colour}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            y + 2.0,
            x + 24.0,
            y + 11.0,
            xml(label)
        );
    }
    for (j, (label, dash)) in dashes.iter().enumerate() {
        let y = y0 + 16.0 * (entries.len() + j) as f64 + 7.0;
        let _ = writeln!(
            c.svg,
            r##"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#555" stroke-width="2" stroke-dasharray="{dash}"/><text x="{:.1}" y="{:.1}">{}</text>"##,
            x + 18.0,
            x + 24.0,
            y + 4.0,
            xml(label)
        );
    }
}

/// One variant's band for [`band_svg`]: the median and the min-max range
/// of its runs at each grid point.
pub struct BandSeries<'a> {
    /// The legend's label.
    pub label: String,
    /// Grid points (increasing).
    pub x: &'a [f64],
    /// Median at each grid point.
    pub median: &'a [f64],
    /// Smallest value.
    pub min: &'a [f64],
    /// Largest value.
    pub max: &'a [f64],
}

/// A plot (SVG) of several bands: per series the median as a line and the
/// min-max range shaded in the same colour (hypervolume over trials or
/// wall time across seeds). `None` without data.
pub fn band_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[BandSeries],
    legend_at: LegendAt,
) -> Option<String> {
    let all_x = series.iter().flat_map(|s| s.x.iter().copied());
    let x_hi = all_x.fold(f64::NEG_INFINITY, f64::max);
    let y_hi = series
        .iter()
        .flat_map(|s| s.max.iter().copied())
        .fold(f64::NEG_INFINITY, f64::max);
    if !x_hi.is_finite() || series.iter().all(|s| s.x.is_empty()) {
        return None;
    }
    let mut c = Chart::nice(title, x_label, y_label, (0.0, x_hi), (0.0, y_hi.max(1e-9)));
    for (i, s) in series.iter().enumerate() {
        let colour = series_colour(i);
        let mut d = String::new();
        for (k, (&x, &y)) in s.x.iter().zip(s.max).enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1} ",
                if k == 0 { "M" } else { "L" },
                c.sx(x),
                c.sy(y)
            );
        }
        for (&x, &y) in s.x.iter().zip(s.min).rev() {
            let _ = write!(d, "L{:.1},{:.1} ", c.sx(x), c.sy(y));
        }
        let _ = writeln!(
            c.svg,
            r#"<path d="{}Z" fill="{colour}" fill-opacity="0.15" stroke="none"/>"#,
            d
        );
        let pts: Vec<[f64; 2]> = s.x.iter().zip(s.median).map(|(&x, &y)| [x, y]).collect();
        c.staircase(&pts, colour);
    }
    let entries: Vec<(String, &str)> = series
        .iter()
        .enumerate()
        .map(|(i, s)| (s.label.clone(), series_colour(i)))
        .collect();
    legend(
        &mut c,
        legend_at,
        &entries,
        &[("median; shade: min-max", "none")],
    );
    Some(c.finish())
}

/// One variant's attainment surfaces for [`attainment_svg`].
pub struct AttainmentSeries {
    /// The legend's label.
    pub label: String,
    /// Attained by at least one run (corner points, sorted by x).
    pub best: Vec<[f64; 2]>,
    /// By at least half of the runs.
    pub median: Vec<[f64; 2]>,
    /// By every run.
    pub worst: Vec<[f64; 2]>,
    /// The default configuration of each run (a square each).
    pub defaults: Vec<[f64; 2]>,
    /// Every other successful trial at the front budget, faded.
    pub others: Vec<[f64; 2]>,
}

/// The surface of a staircase through `points` extended to the right edge
/// of the chart (a front attains everything above and to its right).
fn surface(c: &mut Chart, points: &[[f64; 2]], colour: &str, dash: &str, width: f64) {
    if points.is_empty() {
        return;
    }
    let top = c.sy(c.y.1);
    // Down to each corner, then right to the next one (or the edge).
    let mut d = String::new();
    let _ = write!(d, "M{:.1},{top:.1}", c.sx(points[0][0]));
    for (i, p) in points.iter().enumerate() {
        let _ = write!(d, " V{:.1}", c.sy(p[1]));
        let next_x = points.get(i + 1).map_or(c.x.1, |q| q[0]);
        let _ = write!(d, " H{:.1}", c.sx(next_x));
    }
    let _ = writeln!(
        c.svg,
        r#"<path d="{d}" fill="none" stroke="{colour}" stroke-width="{width}" stroke-dasharray="{dash}"/>"#
    );
}

/// Empirical attainment surfaces (SVG) of several variants on one plot of
/// two objectives: best (thin dashes), median (solid), worst (dots) per
/// variant, each run's default as a square, other trials faded.
pub fn attainment_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[AttainmentSeries],
) -> Option<String> {
    let pts = series.iter().flat_map(|s| {
        s.best
            .iter()
            .chain(&s.worst)
            .chain(&s.defaults)
            .chain(&s.others)
            .copied()
    });
    let (xs, ys): (Vec<f64>, Vec<f64>) = pts.map(|p| (p[0], p[1])).unzip();
    if xs.is_empty() {
        return None;
    }
    let mut c = Chart::nice(
        title,
        x_label,
        y_label,
        padded_range(xs.iter().copied()),
        padded_range(ys.iter().copied()),
    );
    for (i, s) in series.iter().enumerate() {
        let colour = series_colour(i);
        for p in &s.others {
            let _ = writeln!(
                c.svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{colour}" fill-opacity="0.3"/>"#,
                c.sx(p[0]),
                c.sy(p[1])
            );
        }
    }
    for (i, s) in series.iter().enumerate() {
        let colour = series_colour(i);
        surface(&mut c, &s.best, colour, "6 4", 1.2);
        surface(&mut c, &s.median, colour, "none", 2.5);
        surface(&mut c, &s.worst, colour, "2 3", 1.2);
        for p in &s.defaults {
            let _ = writeln!(
                c.svg,
                r##"<rect x="{:.1}" y="{:.1}" width="9" height="9" fill="{colour}" stroke="black" stroke-width="0.8"/>"##,
                c.sx(p[0]) - 4.5,
                c.sy(p[1]) - 4.5
            );
        }
    }
    let entries: Vec<(String, &str)> = series
        .iter()
        .enumerate()
        .map(|(i, s)| (s.label.clone(), series_colour(i)))
        .collect();
    legend(
        &mut c,
        LegendAt::BottomLeft,
        &entries,
        &[
            ("best (any seed)", "6 4"),
            ("median", "none"),
            ("worst (every seed)", "2 3"),
        ],
    );
    let _ = writeln!(
        c.svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#555">squares: each seed's default; faint dots: other trials</text>"##,
        Chart::M + 4.0,
        Chart::H - 6.0
    );
    Some(c.finish())
}

/// One front member for [`settings_svg`].
pub struct SettingsPoint {
    /// Its series (variant), for the colour.
    pub series: usize,
    /// Bits per shift weight.
    pub weight_bits: f64,
    /// Converted convolutions as a fraction of the convertible ones.
    pub shift_depth_fraction: f64,
    /// `PS` (circle), `Q` (square) or anything else (triangle: float).
    pub shift_type: String,
}

/// The front members' settings (SVG): weight bits against the fraction of
/// convolutions converted, one colour per variant, the shape by shift type;
/// points of equal settings spread sideways so that every one shows.
pub fn settings_svg(title: &str, labels: &[String], points: &[SettingsPoint]) -> Option<String> {
    if points.is_empty() {
        return None;
    }
    let (b_lo, b_hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| {
            (a.0.min(p.weight_bits), a.1.max(p.weight_bits))
        });
    // Headroom above depth 1 for the legend (top right), so that it never
    // covers the row of fully converted networks.
    let legend_px = 16.0 * labels.len() as f64 + 20.0;
    let legend_share = (legend_px / (Chart::H - 1.5 * Chart::M)).min(0.6);
    let (y_lo, clear) = (-0.12, 1.12);
    let y_hi = (clear - legend_share * y_lo) / (1.0 - legend_share);
    let mut c = Chart::frame(
        title,
        "weight bits",
        "shift depth (fraction of convertible convolutions)",
        (b_lo - 0.5, b_hi + 0.5),
        (y_lo, y_hi),
    );
    let bits: Vec<(f64, String)> = (b_lo as i64..=b_hi as i64)
        .map(|b| (b as f64, b.to_string()))
        .collect();
    let depths: Vec<(f64, String)> = [0.0, 0.25, 0.5, 0.75, 1.0]
        .iter()
        .map(|&d| (d, trim_zeros(&format!("{d:.2}")).to_string()))
        .collect();
    c.ticks(&bits, &depths);
    // Points with the same settings sit in a small grid around them (at
    // most 0.8 bits wide and 0.1 deep), in the order given.
    let cell = |p: &SettingsPoint| {
        (
            p.weight_bits.round() as i64,
            (p.shift_depth_fraction * 1000.0).round() as i64,
        )
    };
    let mut per_cell: BTreeMap<(i64, i64), usize> = BTreeMap::new();
    for p in points {
        *per_cell.entry(cell(p)).or_insert(0) += 1;
    }
    let mut seen: BTreeMap<(i64, i64), usize> = BTreeMap::new();
    for p in points {
        let n = per_cell[&cell(p)];
        let i = seen.entry(cell(p)).or_insert(0);
        let cols = n.min(8);
        let rows = n.div_ceil(cols);
        let (col, row) = (*i % cols, *i / cols);
        *i += 1;
        let dx = 0.8 / 8.0;
        let dy = if rows > 1 {
            0.1 / (rows - 1) as f64
        } else {
            0.0
        };
        let x_off = (col as f64 - (cols - 1) as f64 / 2.0) * dx;
        let y_off = (row as f64 - (rows - 1) as f64 / 2.0) * dy;
        let (x, y) = (
            c.sx(p.weight_bits + x_off),
            c.sy(p.shift_depth_fraction + y_off),
        );
        let colour = series_colour(p.series);
        let _ = match p.shift_type.as_str() {
            "PS" => writeln!(
                c.svg,
                r##"<circle cx="{x:.1}" cy="{y:.1}" r="5" fill="{colour}" fill-opacity="0.8" stroke="black" stroke-width="0.5"/>"##
            ),
            "Q" => writeln!(
                c.svg,
                r##"<rect x="{:.1}" y="{:.1}" width="9" height="9" fill="{colour}" fill-opacity="0.8" stroke="black" stroke-width="0.5"/>"##,
                x - 4.5,
                y - 4.5
            ),
            _ => writeln!(
                c.svg,
                r##"<path d="M{x:.1},{:.1} L{:.1},{:.1} L{:.1},{:.1} Z" fill="{colour}" fill-opacity="0.8" stroke="black" stroke-width="0.5"/>"##,
                y - 6.0,
                x - 5.5,
                y + 4.0,
                x + 5.5,
                y + 4.0
            ),
        };
    }
    let entries: Vec<(String, &str)> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), series_colour(i)))
        .collect();
    legend(&mut c, LegendAt::TopRight, &entries, &[]);
    let _ = writeln!(
        c.svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#555">circle: PS, square: Q, triangle: float (depth 0)</text>"##,
        Chart::M + 4.0,
        Chart::H - 6.0
    );
    Some(c.finish())
}

#[cfg(test)]
mod study_plot_tests {
    use super::*;

    fn labels(t: &[(f64, String)]) -> Vec<&str> {
        t.iter().map(|(_, l)| l.as_str()).collect()
    }

    #[test]
    fn nice_ticks_are_round_and_cover_the_range() {
        let (r, t) = nice_ticks(0.03, 1.005);
        assert!(r.0 == 0.0 && (r.1 - 1.2).abs() < 1e-12, "{r:?}");
        assert_eq!(labels(&t), ["0", "0.2", "0.4", "0.6", "0.8", "1", "1.2"]);
        let (r, t) = nice_ticks(1.4e-6, 7.4e-6);
        assert!(r.0 <= 1.4e-6 && r.1 >= 7.4e-6);
        assert_eq!(labels(&t), ["0", "2e-6", "4e-6", "6e-6", "8e-6"]);
        let (_, t) = nice_ticks(0.0, 6.7);
        assert_eq!(labels(&t), ["0", "2", "4", "6", "8"]);
        let (_, t) = nice_ticks(0.0, 0.6651);
        assert_eq!(labels(&t), ["0", "0.2", "0.4", "0.6", "0.8"]);
        for (lo, hi) in [(0.0, 1.0), (-3.0, 250.0), (5.0, 5.0), (1e-9, 3e-9)] {
            let (r, t) = nice_ticks(lo, hi);
            assert!(r.0 <= lo && r.1 >= hi, "{lo} {hi} -> {r:?}");
            assert!((3..=7).contains(&t.len()) || t.len() == 2, "{t:?}");
        }
    }

    #[test]
    fn study_plots_draw_every_series() {
        let x = [0.0, 1.0, 2.0];
        let series = [
            BandSeries {
                label: "a".into(),
                x: &x,
                median: &[0.0, 0.2, 0.3],
                min: &[0.0, 0.1, 0.2],
                max: &[0.0, 0.3, 0.5],
            },
            BandSeries {
                label: "b".into(),
                x: &x,
                median: &[0.0, 0.1, 0.1],
                min: &[0.0, 0.1, 0.1],
                max: &[0.0, 0.1, 0.2],
            },
        ];
        let svg = band_svg("t", "x", "y", &series, LegendAt::BottomRight).unwrap();
        assert_eq!(svg.matches("fill-opacity=\"0.15\"").count(), 2);
        assert!(svg.contains(SERIES_COLOURS[1]) && svg.ends_with("</svg>\n"));
        assert!(band_svg("t", "x", "y", &[], LegendAt::TopRight).is_none());

        let a = AttainmentSeries {
            label: "a".into(),
            best: vec![[0.1, 5.0], [0.3, 1.0]],
            median: vec![[0.2, 5.0]],
            worst: vec![[0.4, 6.0]],
            defaults: vec![[0.9, 4.0], [0.8, 4.0]],
            others: vec![[0.5, 7.0]],
        };
        let svg = attainment_svg("t", "loss", "energy", &[a]).unwrap();
        // Three surfaces, two defaults (and the legend's swatch).
        assert_eq!(svg.matches("<path d=\"M").count(), 3);
        assert_eq!(svg.matches("width=\"9\" height=\"9\"").count(), 2);

        let pts = [
            SettingsPoint {
                series: 0,
                weight_bits: 3.0,
                shift_depth_fraction: 0.5,
                shift_type: "PS".into(),
            },
            SettingsPoint {
                series: 1,
                weight_bits: 3.0,
                shift_depth_fraction: 0.5,
                shift_type: "Q".into(),
            },
            SettingsPoint {
                series: 1,
                weight_bits: 5.0,
                shift_depth_fraction: 0.0,
                shift_type: "float".into(),
            },
        ];
        let svg = settings_svg("t", &["a".into(), "b".into()], &pts).unwrap();
        assert_eq!(svg.matches("<circle").count(), 1);
        assert_eq!(svg.matches("width=\"9\" height=\"9\"").count(), 1);
        assert_eq!(svg.matches("<path d=\"M").count(), 1);
        assert!(settings_svg("t", &[], &[]).is_none());
    }
}

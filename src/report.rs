//! What a run shows: the Pareto front (CSV and a table), a summary with the
//! improvement over the default configuration, and an SVG plot.

use std::fmt::Write as _;
use std::path::Path;

use dsnn_search::{pareto, Outcome, Trial};
use serde::{Deserialize, Serialize};

use crate::executor::TrialReport;
use crate::objective::{trial_label, DEFAULT_TRIAL_ID};
use crate::store::History;

/// A successful trial at the reported budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrontPoint {
    /// `default` or the trial number.
    pub trial: String,
    /// The budget it ran at.
    pub budget: f64,
    /// Its objectives.
    pub objectives: Vec<f64>,
    /// Its configuration, as `name=value` pairs.
    pub config: Vec<(String, String)>,
}

/// The numbers of a run, as `summary.json` stores them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Run name.
    pub name: String,
    /// Objective names, in order.
    pub objectives: Vec<String>,
    /// Finished optimizer trials (the default trial not counted).
    pub trials: usize,
    /// Of those, how many failed.
    pub failed: usize,
    /// The budget the front is taken at (the largest any trial reached).
    pub budget: Option<f64>,
    /// The Pareto front at that budget.
    pub front: Vec<FrontPoint>,
    /// The default configuration's objectives (at the full budget), if it succeeded.
    pub default: Option<Vec<f64>>,
    /// The budget the default configuration ran at.
    pub default_budget: Option<f64>,
    /// Per objective: the best value on the front and its relative
    /// improvement over the default (positive = lower than the default).
    pub improvement_over_default: Vec<Option<f64>>,
    /// Hypervolume of the front as a fraction of the reference box: the
    /// objectives normalised to the range of this run's successful trials at
    /// the budget, reference point 1.1 in each. A measure of the front's
    /// shape within one run, not comparable across runs.
    pub normalized_hypervolume: Option<f64>,
    /// Failure reasons with their counts.
    pub failures: Vec<(String, usize)>,
    /// Wall-clock seconds, summed over sessions.
    pub elapsed_s: f64,
}

fn config_pairs(t: &Trial) -> Vec<(String, String)> {
    t.config
        .iter()
        .map(|(k, v)| {
            let s = match v.as_str() {
                Some(s) => s.to_string(),
                None => v.as_f64().map(|f| format!("{f}")).unwrap_or_default(),
            };
            (k.clone(), s)
        })
        .collect()
}

/// Computes the summary of a history.
pub fn summarize(name: &str, objectives: &[String], h: &History) -> Summary {
    let ok: Vec<(&Trial, &TrialReport, &[f64])> = h
        .results
        .iter()
        .filter_map(|(t, r)| match &r.outcome {
            Outcome::Success(f) if f.len() == objectives.len() => Some((t, r, f.as_slice())),
            _ => None,
        })
        .collect();
    let budget = ok.iter().map(|(t, _, _)| t.budget).reduce(f64::max);
    let at: Vec<&(&Trial, &TrialReport, &[f64])> = ok
        .iter()
        .filter(|(t, _, _)| Some(t.budget) == budget)
        .collect();
    let points: Vec<Vec<f64>> = at.iter().map(|(_, _, f)| f.to_vec()).collect();
    let front_idx = pareto::non_dominated(&points);
    let front: Vec<FrontPoint> = front_idx
        .iter()
        .map(|&i| FrontPoint {
            trial: trial_label(at[i].0.id),
            budget: at[i].0.budget,
            objectives: at[i].2.to_vec(),
            config: config_pairs(at[i].0),
        })
        .collect();
    let default = ok
        .iter()
        .find(|(t, _, _)| t.id == DEFAULT_TRIAL_ID)
        .map(|(_, _, f)| f.to_vec());
    let default_budget = ok
        .iter()
        .find(|(t, _, _)| t.id == DEFAULT_TRIAL_ID)
        .map(|(t, _, _)| t.budget);
    // The best optimizer trial per objective at the front's budget (the
    // default itself excluded, so a search that found nothing better shows
    // a negative improvement, or none when no trial succeeded).
    let improvement_over_default = (0..objectives.len())
        .map(|k| {
            let d = default.as_ref()?[k];
            let best = at
                .iter()
                .filter(|(t, _, _)| t.id != DEFAULT_TRIAL_ID)
                .map(|(_, _, f)| f[k])
                .reduce(f64::min)?;
            (d.abs() > 0.0).then(|| (d - best) / d.abs())
        })
        .collect();
    let normalized_hypervolume = (!points.is_empty()).then(|| {
        let m = objectives.len();
        let lo: Vec<f64> = (0..m)
            .map(|k| points.iter().map(|p| p[k]).fold(f64::INFINITY, f64::min))
            .collect();
        let hi: Vec<f64> = (0..m)
            .map(|k| {
                points
                    .iter()
                    .map(|p| p[k])
                    .fold(f64::NEG_INFINITY, f64::max)
            })
            .collect();
        let norm: Vec<Vec<f64>> = points
            .iter()
            .map(|p| {
                (0..m)
                    .map(|k| {
                        let span = hi[k] - lo[k];
                        if span > 0.0 {
                            (p[k] - lo[k]) / span
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect();
        pareto::hypervolume(&norm, &vec![1.1; m]) / 1.1f64.powi(m as i32)
    });
    let mut failures: Vec<(String, usize)> = Vec::new();
    let mut trials = 0;
    let mut failed = 0;
    for (t, r) in &h.results {
        if t.id != DEFAULT_TRIAL_ID {
            trials += 1;
        }
        if let Outcome::Failure(reason) = &r.outcome {
            if t.id != DEFAULT_TRIAL_ID {
                failed += 1;
            }
            let short: String = reason.chars().take(120).collect();
            match failures.iter_mut().find(|(s, _)| *s == short) {
                Some((_, n)) => *n += 1,
                None => failures.push((short, 1)),
            }
        }
    }
    Summary {
        name: name.to_string(),
        objectives: objectives.to_vec(),
        trials,
        failed,
        budget,
        front,
        default,
        default_budget,
        improvement_over_default,
        normalized_hypervolume,
        failures,
        elapsed_s: h.elapsed_s,
    }
}

/// The front as CSV: `trial,budget,<objectives...>,<hyperparameters...>`.
pub fn front_csv(s: &Summary) -> String {
    let mut names: Vec<String> = s
        .front
        .iter()
        .flat_map(|p| p.config.iter().map(|(k, _)| k.clone()))
        .collect();
    names.sort();
    names.dedup();
    let mut out = String::new();
    let header: Vec<String> = ["trial".to_string(), "budget".to_string()]
        .into_iter()
        .chain(s.objectives.iter().cloned())
        .chain(names.iter().cloned())
        .collect();
    let _ = writeln!(out, "{}", header.join(","));
    for p in &s.front {
        let mut row = vec![p.trial.clone(), format!("{}", p.budget)];
        row.extend(p.objectives.iter().map(|v| format!("{v}")));
        for n in &names {
            row.push(
                p.config
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| csv_field(v))
                    .unwrap_or_default(),
            );
        }
        let _ = writeln!(out, "{}", row.join(","));
    }
    out
}

fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

/// The summary as Markdown, for people.
pub fn summary_markdown(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Run `{}`\n", s.name);
    let _ = writeln!(
        out,
        "{} trials ({} failed) in {:.1} s. Objectives (minimised): {}.\n",
        s.trials,
        s.failed,
        s.elapsed_s,
        s.objectives.join(", ")
    );
    match (&s.default, s.default_budget) {
        (Some(d), Some(b)) => {
            let _ = writeln!(
                out,
                "Default configuration at budget {b}: {}.\n",
                fmt_vec(d)
            );
        }
        _ => {
            let _ = writeln!(out, "The default configuration has no successful result.\n");
        }
    }
    if let Some(b) = s.budget {
        let _ = writeln!(
            out,
            "## Pareto front at budget {b} ({} points)\n",
            s.front.len()
        );
        let _ = writeln!(
            out,
            "| trial | {} | configuration |",
            s.objectives.join(" | ")
        );
        let _ = writeln!(out, "|---|{}---|", "---:|".repeat(s.objectives.len()));
        for p in &s.front {
            let cfg: Vec<String> = p.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                p.trial,
                p.objectives
                    .iter()
                    .map(|v| format!("{v:.6}"))
                    .collect::<Vec<_>>()
                    .join(" | "),
                cfg.join(" ")
            );
        }
        let _ = writeln!(out);
    }
    if s.default.is_some() {
        let _ = writeln!(
            out,
            "## Best optimizer trial per objective vs the default\n"
        );
        for (name, imp) in s.objectives.iter().zip(&s.improvement_over_default) {
            if let Some(i) = imp {
                let _ = writeln!(out, "- {name}: {:+.1}% (positive = better)", 100.0 * i);
            }
        }
        let _ = writeln!(out);
    }
    if let Some(hv) = s.normalized_hypervolume {
        let _ = writeln!(
            out,
            "Normalised hypervolume of the front: {hv:.4} (fraction of the box up to 1.1 after scaling each objective to the range of this run's successful trials; compares fronts within a run, not across runs).\n"
        );
    }
    if !s.failures.is_empty() {
        let _ = writeln!(out, "## Failures\n");
        for (reason, n) in &s.failures {
            let _ = writeln!(out, "- {n} x {reason}");
        }
    }
    out
}

fn fmt_vec(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.6}"))
        .collect::<Vec<_>>()
        .join(", ")
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
    let (w, hgt, m) = (640.0, 480.0, 70.0);
    let range = |k: usize| {
        let lo = pts.iter().map(|p| p.1[k]).fold(f64::INFINITY, f64::min);
        let hi = pts.iter().map(|p| p.1[k]).fold(f64::NEG_INFINITY, f64::max);
        let pad = ((hi - lo) * 0.05).max(hi.abs() * 1e-6).max(1e-12);
        (lo - pad, hi + pad)
    };
    let (x0, x1) = range(0);
    let (y0, y1) = range(1);
    let sx = |x: f64| m + (x - x0) / (x1 - x0) * (w - 1.5 * m);
    let sy = |y: f64| hgt - m - (y - y0) / (y1 - y0) * (hgt - 1.5 * m);
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{hgt}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}: Pareto front at budget {budget}</text>"#,
        w / 2.0,
        xml(&s.name)
    );
    // Axes with 5 ticks each.
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
        let xv = x0 + f * (x1 - x0);
        let yv = y0 + f * (y1 - y0);
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text><text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            sx(xv),
            hgt - m + 16.0,
            tick(xv),
            m - 6.0,
            sy(yv) + 4.0,
            tick(yv)
        );
    }
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>"#,
        w / 2.0,
        hgt - 24.0,
        xml(&s.objectives[0]),
        hgt / 2.0,
        hgt / 2.0,
        xml(&s.objectives[1])
    );
    for (is_default, p) in &pts {
        if !is_default {
            let _ = writeln!(
                o,
                r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="#999" fill-opacity="0.7"/>"##,
                sx(p[0]),
                sy(p[1])
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
        let mut d = String::new();
        for (i, p) in front.iter().enumerate() {
            if i == 0 {
                let _ = write!(d, "M{:.1},{:.1}", sx(p[0]), sy(p[1]));
            } else {
                let _ = write!(d, " H{:.1} V{:.1}", sx(p[0]), sy(p[1]));
            }
        }
        let _ = writeln!(
            o,
            r##"<path d="{d}" fill="none" stroke="#d62728" stroke-width="1.5"/>"##
        );
    }
    for p in &front {
        let _ = writeln!(
            o,
            r##"<circle cx="{:.1}" cy="{:.1}" r="5" fill="#d62728"/>"##,
            sx(p[0]),
            sy(p[1])
        );
    }
    for (is_default, p) in &pts {
        if *is_default {
            let _ = writeln!(
                o,
                r##"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="#1f77b4"/>"##,
                sx(p[0]) - 5.0,
                sy(p[1]) - 5.0
            );
        }
    }
    let _ = writeln!(
        o,
        r##"<circle cx="{}" cy="44" r="5" fill="#d62728"/><text x="{}" y="48">Pareto front</text><rect x="{}" y="56" width="10" height="10" fill="#1f77b4"/><text x="{}" y="66">default</text><circle cx="{}" cy="80" r="3.5" fill="#999"/><text x="{}" y="84">other trials</text>"##,
        w - 150.0,
        w - 140.0,
        w - 155.0,
        w - 140.0,
        w - 150.0,
        w - 140.0
    );
    let _ = writeln!(o, "</svg>");
    Some(o)
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

/// Writes `pareto.csv`, `summary.json`, `summary.md` and `pareto.svg` into
/// `dir`, each atomically.
pub fn write_reports(dir: &Path, s: &Summary, h: &History) -> std::io::Result<()> {
    use crate::local::write_atomically;
    write_atomically(&dir.join("pareto.csv"), front_csv(s).as_bytes())?;
    write_atomically(
        &dir.join("summary.json"),
        serde_json::to_string_pretty(s)
            .map_err(std::io::Error::other)?
            .as_bytes(),
    )?;
    write_atomically(&dir.join("summary.md"), summary_markdown(s).as_bytes())?;
    if let Some(svg) = pareto_svg(s, h) {
        write_atomically(&dir.join("pareto.svg"), svg.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsnn_search::Configuration;

    fn entry(id: u64, budget: f64, outcome: Outcome) -> (Trial, TrialReport) {
        let mut config = Configuration::new();
        config.insert("lr", 0.1 * (id % 7) as f64);
        (
            Trial { id, config, budget },
            TrialReport {
                id,
                outcome,
                metrics: Default::default(),
                duration_s: 1.0,
                worker: "thread 0".into(),
            },
        )
    }

    fn history() -> History {
        History {
            results: vec![
                entry(DEFAULT_TRIAL_ID, 9.0, Outcome::Success(vec![0.4, 10.0])),
                entry(0, 1.0, Outcome::Success(vec![0.0, 0.0])), // low budget: not on the front
                entry(1, 9.0, Outcome::Success(vec![0.3, 8.0])),
                entry(2, 9.0, Outcome::Success(vec![0.5, 2.0])),
                entry(3, 9.0, Outcome::Success(vec![0.6, 9.0])), // dominated
                entry(4, 9.0, Outcome::Failure("diverged: loss NaN".into())),
                entry(5, 3.0, Outcome::Failure("diverged: loss NaN".into())),
            ],
            elapsed_s: 12.0,
            ..History::default()
        }
    }

    #[test]
    fn the_front_is_taken_at_the_largest_budget_and_compared_with_the_default() {
        let names = vec!["loss".to_string(), "energy".to_string()];
        let s = summarize("t", &names, &history());
        assert_eq!(s.trials, 6);
        assert_eq!(s.failed, 2);
        assert_eq!(s.budget, Some(9.0));
        let on_front: Vec<&str> = s.front.iter().map(|p| p.trial.as_str()).collect();
        assert_eq!(on_front, vec!["1", "2"]);
        assert_eq!(s.default, Some(vec![0.4, 10.0]));
        // Best loss 0.3 vs 0.4: 25% better; best energy 2 vs 10: 80% better.
        let imp: Vec<f64> = s
            .improvement_over_default
            .iter()
            .map(|i| i.unwrap())
            .collect();
        assert!(
            (imp[0] - 0.25).abs() < 1e-12 && (imp[1] - 0.8).abs() < 1e-12,
            "{imp:?}"
        );
        assert_eq!(s.failures, vec![("diverged: loss NaN".to_string(), 2)]);
        // Normalised to [0.3, 0.6] x [2, 10]: the front's hypervolume w.r.t. 1.1.
        let hv = s.normalized_hypervolume.unwrap();
        let f1 = [0.0, 0.75]; // trial 1
        let f2 = [2.0 / 3.0, 0.0]; // trial 2
        let expected =
            ((1.1 - f1[0]) * (1.1 - f1[1]) + (1.1 - f2[0]) * (f1[1] - f2[1])) / (1.1 * 1.1);
        assert!((hv - expected).abs() < 1e-12, "{hv} vs {expected}");
        let csv = front_csv(&s);
        assert_eq!(csv.lines().next(), Some("trial,budget,loss,energy,lr"));
        assert_eq!(csv.lines().count(), 3);
        let md = summary_markdown(&s);
        assert!(md.contains("+25.0%") && md.contains("+80.0%"), "{md}");
        // Without optimizer trials at the budget there is nothing to compare.
        let only_default = History {
            results: vec![history().results[0].clone()],
            ..History::default()
        };
        let s1 = summarize("t", &names, &only_default);
        assert_eq!(s1.improvement_over_default, vec![None, None]);
        // A worse search shows as a negative improvement.
        let worse = History {
            results: vec![
                history().results[0].clone(),
                entry(7, 9.0, Outcome::Success(vec![0.5, 12.0])),
            ],
            ..History::default()
        };
        let s2 = summarize("t", &names, &worse);
        assert!(s2.improvement_over_default[0].unwrap() < 0.0);
        let svg = pareto_svg(&s, &history()).unwrap();
        // Three optimizer trials at budget 9 in grey (the front drawn over
        // them in red), the default as a square; plus the legend's marks.
        assert_eq!(svg.matches("fill=\"#999\"").count(), 3 + 1);
        assert_eq!(svg.matches("fill=\"#d62728\"").count(), 2 + 1);
        assert_eq!(svg.matches("<rect x=").count(), 1 + 1); // + legend
    }
}

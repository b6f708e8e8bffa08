//! What a run shows: the Pareto front (CSV and a table), a summary with the
//! improvement over the default configuration, and SVG plots (the front, and
//! its hypervolume over trials and over wall time).

mod plots;
mod tables;

use std::path::{Path, PathBuf};

use dsnn_search::{pareto, Outcome, Trial};
use serde::{Deserialize, Serialize};

use crate::executor::{trial_label, write_atomically, TrialReport, DEFAULT_TRIAL_ID};
use crate::store::History;

pub use plots::{
    attainment_svg, band_svg, hypervolume_svg, pareto_svg, series_colour, settings_svg,
    AttainmentSeries, BandSeries, LegendAt, SettingsPoint, TraceAxis, SERIES_COLOURS,
};
pub use tables::{front_csv, summary_markdown};

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
    /// Why the run was resumed with a warm start, once per warm start (its
    /// log no longer replayed on the optimizer); empty for most runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warm_starts: Vec<String>,
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
    let front_points: Vec<Vec<f64>> = front_idx.iter().map(|&i| points[i].clone()).collect();
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
    let normalized_hypervolume =
        (!points.is_empty()).then(|| Normalizer::of(&points).hypervolume(&front_points));
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
        warm_starts: h.warm_starts.clone(),
    }
}

/// Scales objective vectors to `[0, 1]` per objective by the range of a set
/// of points (a run's successful trials at the front's budget), so that
/// hypervolumes of one run are fractions of the box up to 1.1.
struct Normalizer {
    lo: Vec<f64>,
    hi: Vec<f64>,
}

impl Normalizer {
    fn of(points: &[Vec<f64>]) -> Normalizer {
        let m = points.first().map_or(0, Vec::len);
        let fold = |init: f64, f: fn(f64, f64) -> f64| -> Vec<f64> {
            (0..m)
                .map(|k| points.iter().map(|p| p[k]).fold(init, f))
                .collect()
        };
        Normalizer {
            lo: fold(f64::INFINITY, f64::min),
            hi: fold(f64::NEG_INFINITY, f64::max),
        }
    }

    fn apply(&self, p: &[f64]) -> Vec<f64> {
        p.iter()
            .zip(self.lo.iter().zip(&self.hi))
            .map(|(v, (lo, hi))| {
                let span = hi - lo;
                if span > 0.0 {
                    (v - lo) / span
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// Hypervolume of `points` after scaling, as a fraction of the box
    /// `[0, 1.1]^m`.
    fn hypervolume(&self, points: &[Vec<f64>]) -> f64 {
        let m = self.lo.len();
        let norm: Vec<Vec<f64>> = points.iter().map(|p| self.apply(p)).collect();
        pareto::hypervolume(&norm, &vec![1.1; m]) / 1.1f64.powi(m as i32)
    }
}

/// The successful results at `budget`, in log order, with their index in
/// the history.
fn successes_at(h: &History, m: usize, budget: f64) -> impl Iterator<Item = (usize, &Vec<f64>)> {
    h.results
        .iter()
        .enumerate()
        .filter_map(move |(i, (t, r))| match &r.outcome {
            Outcome::Success(f) if f.len() == m && t.budget == budget => Some((i, f)),
            _ => None,
        })
}

/// The front's hypervolume after a finished trial.
#[derive(Clone, Debug, PartialEq)]
pub struct HypervolumePoint {
    /// Trials finished so far (the default and failed trials included).
    pub results: usize,
    /// The run's wall-clock seconds then, where the log records it.
    pub elapsed_s: Option<f64>,
    /// The normalised hypervolume (as [`Summary::normalized_hypervolume`])
    /// of the successful trials at the summary's budget finished so far.
    pub hypervolume: f64,
}

/// Adds `f` to a set of mutually non-dominated points; returns whether the
/// set changed (it does not when `f` is dominated by or equal to a member).
fn add_to_front(front: &mut Vec<Vec<f64>>, f: &[f64]) -> bool {
    if front.iter().any(|q| q == f || pareto::dominates(q, f)) {
        return false;
    }
    front.retain(|q| !pareto::dominates(f, q));
    front.push(f.to_vec());
    true
}

/// At most this many points in a [`hypervolume_trace`] (each may need a
/// hypervolume, which is costly with many objectives and large fronts).
pub const TRACE_POINTS: usize = 250;

/// The hypervolume of the run's front as trials finished: the same budget
/// and normalisation as the summary, so the last point is
/// [`Summary::normalized_hypervolume`]. One point per finished trial, or
/// [`TRACE_POINTS`] evenly spaced ones (the last included) for longer runs.
/// Empty when no trial succeeded.
pub fn hypervolume_trace(s: &Summary, h: &History) -> Vec<HypervolumePoint> {
    let Some(budget) = s.budget else {
        return Vec::new();
    };
    let m = s.objectives.len();
    let all: Vec<Vec<f64>> = successes_at(h, m, budget).map(|(_, f)| f.clone()).collect();
    let norm = Normalizer::of(&all);
    let n = h.results.len();
    let every = n.div_ceil(TRACE_POINTS).max(1);
    let mut arrivals = successes_at(h, m, budget).peekable();
    let mut front: Vec<Vec<f64>> = Vec::new();
    let (mut hv, mut changed) = (0.0, false);
    let mut trace = Vec::with_capacity(n.min(TRACE_POINTS));
    for i in 0..n {
        if let Some((_, f)) = arrivals.next_if(|(j, _)| *j == i) {
            changed |= add_to_front(&mut front, f);
        }
        if (i + 1) % every == 0 || i + 1 == n {
            if changed {
                hv = norm.hypervolume(&front);
                changed = false;
            }
            trace.push(HypervolumePoint {
                results: i + 1,
                elapsed_s: h.result_elapsed_s.get(i).copied(),
                hypervolume: hv,
            });
        }
    }
    trace
}

/// The front of a run as results arrive, for a live hypervolume: the
/// successful results at the largest budget seen so far (a larger budget
/// starts afresh), normalised to their own range.
#[derive(Clone, Debug)]
pub struct LiveFront {
    budget: f64,
    lo: Vec<f64>,
    hi: Vec<f64>,
    front: Vec<Vec<f64>>,
    hypervolume: Option<f64>,
    stale: bool,
}

impl LiveFront {
    /// An empty front for `m` objectives.
    pub fn new(m: usize) -> LiveFront {
        LiveFront {
            budget: f64::NEG_INFINITY,
            lo: vec![f64::INFINITY; m],
            hi: vec![f64::NEG_INFINITY; m],
            front: Vec::new(),
            hypervolume: None,
            stale: false,
        }
    }

    /// Takes a finished trial's outcome at `budget` into account.
    pub fn add(&mut self, budget: f64, outcome: &Outcome) {
        let Outcome::Success(f) = outcome else {
            return;
        };
        if f.len() != self.lo.len() || budget < self.budget {
            return;
        }
        if budget > self.budget {
            *self = LiveFront::new(self.lo.len());
            self.budget = budget;
        }
        let mut widened = false;
        for (k, &v) in f.iter().enumerate() {
            if v < self.lo[k] || v > self.hi[k] {
                self.lo[k] = self.lo[k].min(v);
                self.hi[k] = self.hi[k].max(v);
                widened = true;
            }
        }
        self.stale |= add_to_front(&mut self.front, f) | widened;
    }

    /// The front's normalised hypervolume (as [`Summary::normalized_hypervolume`]
    /// of the results so far), recomputed only when the front or its range
    /// changed; `None` until the results at the budget differ in every
    /// objective (one point alone would fill the whole box).
    pub fn hypervolume(&mut self) -> Option<f64> {
        if self.stale {
            self.stale = false;
            let spread = self.lo.iter().zip(&self.hi).all(|(lo, hi)| hi > lo);
            self.hypervolume = spread.then(|| {
                Normalizer {
                    lo: self.lo.clone(),
                    hi: self.hi.clone(),
                }
                .hypervolume(&self.front)
            });
        }
        self.hypervolume
    }
}
/// The plots [`write_reports`] writes, by file name.
pub const PLOTS: [&str; 3] = [
    "pareto.svg",
    "hypervolume_trials.svg",
    "hypervolume_time.svg",
];

/// Writes `pareto.csv`, `summary.json`, `summary.md` and the [`PLOTS`] (the
/// ones there is data for) into `dir`, each atomically; returns the files
/// written.
pub fn write_reports(dir: &Path, s: &Summary, h: &History) -> std::io::Result<Vec<PathBuf>> {
    write_atomically(&dir.join("pareto.csv"), front_csv(s).as_bytes())?;
    write_atomically(
        &dir.join("summary.json"),
        serde_json::to_string_pretty(s)
            .map_err(std::io::Error::other)?
            .as_bytes(),
    )?;
    write_atomically(&dir.join("summary.md"), summary_markdown(s).as_bytes())?;
    let mut written: Vec<PathBuf> = ["pareto.csv", "summary.json", "summary.md"]
        .iter()
        .map(|f| dir.join(f))
        .collect();
    let trace = hypervolume_trace(s, h);
    let plots = [
        (PLOTS[0], pareto_svg(s, h)),
        (PLOTS[1], hypervolume_svg(s, &trace, TraceAxis::Trials)),
        (PLOTS[2], hypervolume_svg(s, &trace, TraceAxis::WallTime)),
    ];
    for (name, svg) in plots {
        if let Some(svg) = svg {
            write_atomically(&dir.join(name), svg.as_bytes())?;
            written.push(dir.join(name));
        }
    }
    Ok(written)
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
                setup_failure: false,
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

    #[test]
    fn the_hypervolume_trace_grows_with_the_front_and_ends_at_the_summary() {
        let names = vec!["loss".to_string(), "energy".to_string()];
        let mut h = history();
        h.result_elapsed_s = (1..=h.results.len()).map(|i| 2.0 * i as f64).collect();
        let s = summarize("t", &names, &h);
        let trace = hypervolume_trace(&s, &h);
        assert_eq!(trace.len(), h.results.len());
        let hv: Vec<f64> = trace.iter().map(|p| p.hypervolume).collect();
        // Results in log order: the default (budget 9) starts the front;
        // trial 0 ran at budget 1 (not the front's budget); trials 1 and 2
        // improve it; trial 3 is dominated; 4 and 5 failed.
        let norm = Normalizer::of(&[
            vec![0.4, 10.0],
            vec![0.3, 8.0],
            vec![0.5, 2.0],
            vec![0.6, 9.0],
        ]);
        let d = norm.hypervolume(&[vec![0.4, 10.0]]);
        let d1 = norm.hypervolume(&[vec![0.4, 10.0], vec![0.3, 8.0]]);
        assert!(d > 0.0 && d1 > d);
        assert_eq!(hv[0], d);
        assert_eq!(hv[1], d);
        assert_eq!(hv[2], d1);
        assert!(hv[3] > hv[2]);
        assert_eq!(&hv[4..], &[hv[3]; 3]);
        assert_eq!(hv[6], s.normalized_hypervolume.unwrap());
        assert_eq!(trace[6].results, 7);
        assert_eq!(trace[6].elapsed_s, Some(14.0));
        // Plots: the trace over trials and over time; a dot where it grew
        // (three times), none over time without recorded times.
        for axis in [TraceAxis::Trials, TraceAxis::WallTime] {
            let svg = hypervolume_svg(&s, &trace, axis).unwrap();
            assert_eq!(svg.matches("<circle").count(), 3, "{axis:?}");
            assert!(svg.contains("<path d=\"M") && svg.ends_with("</svg>\n"));
        }
        let untimed = hypervolume_trace(&s, &history());
        assert!(hypervolume_svg(&s, &untimed, TraceAxis::WallTime).is_none());
        assert!(hypervolume_svg(&s, &untimed, TraceAxis::Trials).is_some());
        // Nothing succeeded: no trace, no plots.
        let failed = History {
            results: vec![history().results[5].clone()],
            ..History::default()
        };
        let s0 = summarize("t", &names, &failed);
        assert!(hypervolume_trace(&s0, &failed).is_empty());
        assert!(hypervolume_svg(&s0, &[], TraceAxis::Trials).is_none());
    }

    #[test]
    fn the_live_front_waits_for_a_spread_and_follows_the_largest_budget() {
        let ok = |f: &[f64]| Outcome::Success(f.to_vec());
        let mut live = LiveFront::new(2);
        live.add(3.0, &ok(&[0.4, 10.0]));
        assert_eq!(live.hypervolume(), None, "one point fills the box");
        live.add(3.0, &ok(&[0.5, 10.0]));
        assert_eq!(
            live.hypervolume(),
            None,
            "no spread in the second objective"
        );
        live.add(3.0, &ok(&[0.3, 8.0]));
        let norm = Normalizer {
            lo: vec![0.3, 8.0],
            hi: vec![0.5, 10.0],
        };
        assert_eq!(
            live.hypervolume(),
            Some(norm.hypervolume(&[vec![0.3, 8.0]]))
        );
        // Failures, wrong lengths and smaller budgets change nothing.
        let before = live.hypervolume();
        live.add(3.0, &Outcome::Failure("diverged".into()));
        live.add(3.0, &ok(&[0.1]));
        live.add(1.0, &ok(&[0.0, 0.0]));
        assert_eq!(live.hypervolume(), before);
        // A larger budget starts afresh.
        live.add(9.0, &ok(&[0.0, 0.0]));
        assert_eq!(live.hypervolume(), None);
        live.add(9.0, &ok(&[1.0, -1.0]));
        let hv = live.hypervolume().unwrap();
        let expected = (1.1 * 0.1 + 0.1 * 1.1 - 0.1 * 0.1) / 1.21;
        assert!((hv - expected).abs() < 1e-12, "{hv} vs {expected}");
    }

    #[test]
    fn long_traces_are_sampled_and_end_at_the_summary() {
        let names = vec!["loss".to_string(), "energy".to_string()];
        let mut h = History::default();
        for i in 0..1000u64 {
            let x = (i as f64 * 0.618).fract();
            let f = vec![x, (1.0 - x).powi(2) + 0.001 * i as f64];
            h.results.push(entry(i, 1.0, Outcome::Success(f)));
            h.result_elapsed_s.push(i as f64);
        }
        let s = summarize("t", &names, &h);
        let trace = hypervolume_trace(&s, &h);
        assert_eq!(trace.len(), TRACE_POINTS);
        assert_eq!(trace.last().unwrap().results, 1000);
        assert_eq!(trace[0].results, 4);
        assert!(trace
            .windows(2)
            .all(|w| w[1].hypervolume >= w[0].hypervolume));
        let last = trace.last().unwrap().hypervolume;
        let hv = s.normalized_hypervolume.unwrap();
        assert!((last - hv).abs() < 1e-12, "{last} vs {hv}");
    }

    #[test]
    fn write_reports_writes_every_plot_it_has_data_for() {
        let names = vec!["loss".to_string(), "energy".to_string()];
        let dir = tempfile::tempdir().unwrap();
        let mut h = history();
        let s = summarize("t", &names, &h);
        let files = |w: Vec<PathBuf>| -> Vec<String> {
            w.iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        let written = write_reports(dir.path(), &s, &h).unwrap();
        assert_eq!(
            files(written),
            [
                "pareto.csv",
                "summary.json",
                "summary.md",
                "pareto.svg",
                "hypervolume_trials.svg"
            ]
        );
        h.result_elapsed_s = vec![1.0; h.results.len()];
        let written = write_reports(dir.path(), &s, &h).unwrap();
        assert_eq!(written.len(), 6);
        for p in &written {
            assert!(p.is_file(), "{}", p.display());
        }
    }
}

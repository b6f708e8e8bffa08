//! The numbers of a study report, computed from its run directories: per
//! variant over seeds, the default's objectives and the front's
//! improvement over it, hypervolume on one normalisation shared by the
//! whole study, empirical attainment surfaces, and the settings of the
//! front members.

use std::collections::BTreeMap;
use std::path::PathBuf;

use dsnn_search::{pareto, Outcome};
use serde::Serialize;

use crate::executor::DEFAULT_TRIAL_ID;
use crate::report::{summarize, Summary};
use crate::store::{read_history, History, RunStore};

use super::file::{Study, StudyRun};

/// Thresholds of the paper's claims, as fractions of the default.
pub const LOSS_CLAIM: f64 = 0.20;
/// See [`LOSS_CLAIM`]: the energy improvement at no worse loss.
pub const ENERGY_CLAIM: f64 = 0.60;

/// A run of the study read back from its directory.
pub struct LoadedRun {
    /// Its variant.
    pub variant: String,
    /// Its seed.
    pub seed: u64,
    /// Its directory.
    pub dir: PathBuf,
    /// Its summary (as `dsnn report` computes it).
    pub summary: Summary,
    /// Its trial log.
    pub history: History,
}

/// Reads the runs of `study` that have a trial log; returns them and a
/// note for each run directory that could not be read.
pub fn load_runs(study: &Study) -> (Vec<LoadedRun>, Vec<String>) {
    let mut runs = Vec::new();
    let mut notes = Vec::new();
    for r in &study.runs {
        let dir = r.experiment.run_dir();
        let log = dir.join(RunStore::LOG);
        if !log.is_file() {
            continue;
        }
        match read_history(&log) {
            Ok(history) => {
                let summary = summarize(&r.experiment.name, study.objective_names(), &history);
                runs.push(LoadedRun {
                    variant: r.variant.clone(),
                    seed: r.seed,
                    dir,
                    summary,
                    history,
                });
            }
            Err(e) => notes.push(format!("{}: {e}", dir.display())),
        }
    }
    (runs, notes)
}

/// Mean, standard deviation (sample, n - 1), min and max of some values.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Spread {
    /// How many values.
    pub n: usize,
    /// Their mean.
    pub mean: f64,
    /// Their sample standard deviation (0 for one value).
    pub sd: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Some(Spread {
            n,
            mean,
            sd: var.sqrt(),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// Which objectives the paper's two claims are about: the loss-like one
/// and the energy-like one (by name, else the first and the second).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClaimObjectives {
    /// Index of the loss-like objective.
    pub loss: usize,
    /// Index of the energy-like objective, when there are two or more.
    pub energy: Option<usize>,
}

impl ClaimObjectives {
    /// Picks them from the objective names.
    pub fn of(names: &[String]) -> ClaimObjectives {
        let find = |wanted: &[&str]| names.iter().position(|n| wanted.contains(&n.as_str()));
        let loss = find(&["loss", "cross_entropy"]).unwrap_or(0);
        let energy = find(&["energy", "emissions", "training_energy"])
            .or_else(|| (0..names.len()).find(|&k| k != loss));
        ClaimObjectives { loss, energy }
    }
}

/// The successful optimizer trials (default excluded) at the summary's
/// budget of a run.
pub fn searched_points(run: &LoadedRun) -> Vec<Vec<f64>> {
    at_budget(run)
        .into_iter()
        .filter(|&(i, _)| run.history.results[i].0.id != DEFAULT_TRIAL_ID)
        .map(|(_, f)| f.clone())
        .collect()
}

/// Whether a run has a trial at least `LOSS_CLAIM` better than the default
/// in loss, and one at least `ENERGY_CLAIM` better in energy at no worse
/// loss (`None` without a successful default).
pub fn claims_of(run: &LoadedRun, which: &ClaimObjectives) -> Option<(bool, bool)> {
    let d = run.summary.default.as_ref()?;
    let pts = searched_points(run);
    let better =
        |k: usize, p: &[f64], by: f64| d[k].abs() > 0.0 && (d[k] - p[k]) / d[k].abs() >= by;
    let loss = pts.iter().any(|p| better(which.loss, p, LOSS_CLAIM));
    let energy = which.energy.is_some_and(|e| {
        pts.iter()
            .any(|p| p[which.loss] <= d[which.loss] && better(e, p, ENERGY_CLAIM))
    });
    Some((loss, energy))
}

/// Per-objective scaling to `[0, 1]` shared by every run of a study, so
/// that hypervolumes compare across runs and variants.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SharedScale {
    /// The smallest value of each objective over every successful trial
    /// of the study at its run's front budget (defaults included).
    pub lo: Vec<f64>,
    /// The largest.
    pub hi: Vec<f64>,
}

impl SharedScale {
    /// The scale of every run's successful trials at its front budget.
    pub fn of(runs: &[LoadedRun], m: usize) -> SharedScale {
        let mut lo = vec![f64::INFINITY; m];
        let mut hi = vec![f64::NEG_INFINITY; m];
        for run in runs {
            for (_, f) in at_budget(run) {
                for k in 0..m {
                    lo[k] = lo[k].min(f[k]);
                    hi[k] = hi[k].max(f[k]);
                }
            }
        }
        SharedScale { lo, hi }
    }

    /// The hypervolume of `front` scaled, as a fraction of `[0, 1.1]^m`.
    pub fn hypervolume(&self, front: &[Vec<f64>]) -> f64 {
        let m = self.lo.len();
        if front.is_empty() {
            return 0.0;
        }
        let scaled: Vec<Vec<f64>> = front
            .iter()
            .map(|p| {
                (0..m)
                    .map(|k| {
                        let span = self.hi[k] - self.lo[k];
                        if span > 0.0 {
                            (p[k] - self.lo[k]) / span
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect();
        pareto::hypervolume(&scaled, &vec![1.1; m]) / 1.1f64.powi(m as i32)
    }
}

/// A run's successful results at its front budget, with their index in
/// the log (the default included).
fn at_budget(run: &LoadedRun) -> Vec<(usize, &Vec<f64>)> {
    let m = run.summary.objectives.len();
    let Some(budget) = run.summary.budget else {
        return Vec::new();
    };
    run.history
        .results
        .iter()
        .enumerate()
        .filter_map(|(i, (t, r))| match &r.outcome {
            Outcome::Success(f) if f.len() == m && t.budget == budget => Some((i, f)),
            _ => None,
        })
        .collect()
}

/// A run's hypervolume after one more finished trial, and what the run had
/// spent by then.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HypervolumeStep {
    /// Finished results (the default's included).
    pub trials: f64,
    /// The run's wall-clock seconds (NaN where the log has no times).
    pub elapsed_s: f64,
    /// The fidelity budget of the finished results, summed (epochs under an
    /// `epochs` fidelity; the default's included).
    pub budget: f64,
    /// The front's hypervolume on the shared scale.
    pub hypervolume: f64,
}

/// A run's hypervolume (on the shared scale) after each finished trial.
pub fn hypervolume_steps(run: &LoadedRun, scale: &SharedScale) -> Vec<HypervolumeStep> {
    let arrivals = at_budget(run);
    let mut next = arrivals.iter().peekable();
    let mut front: Vec<Vec<f64>> = Vec::new();
    let mut hv = 0.0;
    let mut steps = Vec::with_capacity(run.history.results.len());
    let mut budget = 0.0;
    for (i, (trial, _)) in run.history.results.iter().enumerate() {
        budget += trial.budget;
        if let Some((_, f)) = next.next_if(|(j, _)| *j == i) {
            if !front.iter().any(|q| q == *f || pareto::dominates(q, f)) {
                front.retain(|q| !pareto::dominates(f, q));
                front.push((*f).clone());
                hv = scale.hypervolume(&front);
            }
        }
        let t = run
            .history
            .result_elapsed_s
            .get(i)
            .copied()
            .unwrap_or(f64::NAN);
        steps.push(HypervolumeStep {
            trials: (i + 1) as f64,
            elapsed_s: t,
            budget,
            hypervolume: hv,
        });
    }
    steps
}

/// The median and the min-max band of several step functions on a grid.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Band {
    /// Grid points.
    pub x: Vec<f64>,
    /// Median over runs at each grid point.
    pub median: Vec<f64>,
    /// Smallest over runs.
    pub min: Vec<f64>,
    /// Largest over runs.
    pub max: Vec<f64>,
    /// How many runs.
    pub runs: usize,
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    }
}

/// The band of step functions `(x, y)` (x increasing; y = 0 before the
/// first step) on `points` grid points from 0 to `x_max`.
pub fn band(series: &[Vec<(f64, f64)>], x_max: f64, points: usize) -> Option<Band> {
    if series.is_empty() || x_max.is_nan() || x_max <= 0.0 {
        return None;
    }
    let x: Vec<f64> = (0..=points)
        .map(|i| x_max * i as f64 / points as f64)
        .collect();
    let (mut med, mut lo, mut hi) = (Vec::new(), Vec::new(), Vec::new());
    for &xv in &x {
        let mut ys: Vec<f64> = series
            .iter()
            .map(|s| {
                s.iter()
                    .take_while(|(sx, _)| *sx <= xv)
                    .last()
                    .map_or(0.0, |(_, y)| *y)
            })
            .collect();
        ys.sort_by(f64::total_cmp);
        med.push(median(&ys));
        lo.push(ys[0]);
        hi.push(ys[ys.len() - 1]);
    }
    Some(Band {
        x,
        median: med,
        min: lo,
        max: hi,
        runs: series.len(),
    })
}

/// The k-th empirical attainment surface of several two-objective fronts
/// (k = 1: attained by at least one run, the best; k = n: by every run,
/// the worst), as the staircase's corner points sorted by the first
/// objective.
pub fn attainment_surface(fronts: &[Vec<[f64; 2]>], k: usize) -> Vec<[f64; 2]> {
    let n = fronts.len();
    if n == 0 || k == 0 || k > n {
        return Vec::new();
    }
    let mut xs: Vec<f64> = fronts.iter().flatten().map(|p| p[0]).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let mut out: Vec<[f64; 2]> = Vec::new();
    for x in xs {
        // Per run, the best second objective among points with first <= x.
        let mut ys: Vec<f64> = fronts
            .iter()
            .map(|f| {
                f.iter()
                    .filter(|p| p[0] <= x)
                    .map(|p| p[1])
                    .fold(f64::INFINITY, f64::min)
            })
            .collect();
        ys.sort_by(f64::total_cmp);
        let y = ys[k - 1];
        if y.is_finite() && out.last().is_none_or(|l| y < l[1]) {
            out.push([x, y]);
        }
    }
    out
}

/// The first two objectives of a run's front members found by the search
/// (the default excluded).
pub fn front_2d(run: &LoadedRun) -> Vec<[f64; 2]> {
    run.summary
        .front
        .iter()
        .filter(|p| p.trial != "default" && p.objectives.len() >= 2)
        .map(|p| [p.objectives[0], p.objectives[1]])
        .collect()
}

/// The settings the paper's second claim is about, of one front member.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FrontSettings {
    /// Its variant.
    pub variant: String,
    /// Its run's seed.
    pub seed: u64,
    /// Its trial.
    pub trial: String,
    /// Its objectives.
    pub objectives: Vec<f64>,
    /// Bits per shift weight.
    pub weight_bits: Option<f64>,
    /// Convolutions converted to shift layers, as a fraction of the
    /// backbone's convertible ones.
    pub shift_depth_fraction: Option<f64>,
    /// `Q`, `PS` or `float`.
    pub shift_type: Option<String>,
    /// Integer bits of activations.
    pub activation_integer_bits: Option<f64>,
    /// Fraction bits of activations.
    pub activation_fraction_bits: Option<f64>,
    /// The training optimiser.
    pub optimizer: Option<String>,
}

/// The fixed DSNN settings of a run (what a configuration does not set)
/// and its backbone's convertible layers; `None` for other objectives.
pub struct DsnnContext {
    fixed: BTreeMap<String, String>,
    convertible: Option<usize>,
}

impl DsnnContext {
    /// From a run's experiment: `[model]` over the paper's default recipe.
    pub fn of(run: &StudyRun) -> Option<DsnnContext> {
        let exp = &run.experiment;
        if exp.objective.kind != "dsnn" {
            return None;
        }
        let mut fixed: BTreeMap<String, String> = BTreeMap::new();
        if let Ok(serde_json::Value::Object(m)) =
            serde_json::to_value(dsnn_core::recipe::Recipe::default())
        {
            for (k, v) in m {
                let s = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => continue,
                    other => other.to_string(),
                };
                fixed.insert(k, s);
            }
        }
        let model = exp.resolved.get("model").and_then(|m| m.as_table());
        if let Some(model) = model {
            for (k, v) in model {
                let s = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                fixed.insert(k.clone(), s);
            }
        }
        let backbone = model
            .and_then(|m| m.get("backbone"))
            .and_then(|b| b.as_str())
            .map(str::to_string)
            .or_else(|| {
                let ds = exp.resolved.get("data")?.get("dataset")?.as_str()?;
                exp.registry.dataset(ds).ok()?.default_backbone()
            });
        let convertible = backbone
            .and_then(|b| exp.registry.backbone(&b).ok())
            .and_then(|b| {
                let arch = dsnn_core::recipe::resolve_arch(b.as_ref(), &Default::default()).ok()?;
                Some(b.num_convertible_layers(&arch))
            });
        Some(DsnnContext { fixed, convertible })
    }

    /// The settings of a front member with configuration `config`.
    pub fn settings(
        &self,
        run: &LoadedRun,
        trial: &str,
        objectives: &[f64],
        config: &[(String, String)],
    ) -> FrontSettings {
        let get = |k: &str| -> Option<String> {
            config
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .or_else(|| self.fixed.get(k).cloned())
        };
        let num = |k: &str| get(k).and_then(|v| v.parse::<f64>().ok());
        let shift_type = get("shift_type");
        let shift_depth_fraction = match (num("shift_depth"), self.convertible) {
            _ if shift_type.as_deref() == Some("float") => Some(0.0),
            (Some(d), Some(n)) if n > 0 => Some((d / n as f64).min(1.0)),
            // No `shift_depth`: every convertible layer.
            (None, Some(_)) => Some(1.0),
            _ => None,
        };
        FrontSettings {
            variant: run.variant.clone(),
            seed: run.seed,
            trial: trial.to_string(),
            objectives: objectives.to_vec(),
            weight_bits: num("weight_bits"),
            shift_depth_fraction,
            shift_type,
            activation_integer_bits: num("activation_integer_bits"),
            activation_fraction_bits: num("activation_fraction_bits"),
            optimizer: get("optimizer"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_use_the_sample_deviation() {
        let s = Spread::of(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.n, s.mean, s.min, s.max), (3, 2.0, 1.0, 3.0));
        assert!((s.sd - 1.0).abs() < 1e-12);
        assert_eq!(Spread::of(&[4.0]).unwrap().sd, 0.0);
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn attainment_surfaces_order_best_median_worst() {
        let fronts = vec![
            vec![[1.0, 5.0], [3.0, 1.0]],
            vec![[2.0, 4.0]],
            vec![[1.5, 6.0], [4.0, 3.0]],
        ];
        // Attained by at least one run.
        assert_eq!(
            attainment_surface(&fronts, 1),
            vec![[1.0, 5.0], [2.0, 4.0], [3.0, 1.0]]
        );
        // By at least two: at x = 1.5 runs 1 and 3 (5, 6) -> 6.
        assert_eq!(
            attainment_surface(&fronts, 2),
            vec![[1.5, 6.0], [2.0, 5.0], [3.0, 4.0], [4.0, 3.0]]
        );
        // By all three: from x = 2 (run 2 starts there).
        assert_eq!(attainment_surface(&fronts, 3), vec![[2.0, 6.0], [4.0, 4.0]]);
        assert!(attainment_surface(&fronts, 4).is_empty());
    }

    #[test]
    fn bands_take_median_and_extremes_of_step_functions() {
        let s = vec![
            vec![(1.0, 0.2), (3.0, 0.5)],
            vec![(2.0, 0.4)],
            vec![(1.0, 0.1), (2.0, 0.3), (4.0, 0.9)],
        ];
        let b = band(&s, 4.0, 4).unwrap();
        assert_eq!(b.x, vec![0.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(b.median, vec![0.0, 0.1, 0.3, 0.4, 0.5]);
        assert_eq!(b.min, vec![0.0, 0.0, 0.2, 0.3, 0.4]);
        assert_eq!(b.max, vec![0.0, 0.2, 0.4, 0.5, 0.9]);
        assert!(band(&[], 1.0, 4).is_none());
    }

    #[test]
    fn claim_objectives_are_found_by_name() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            ClaimObjectives::of(&names(&["energy", "loss"])),
            ClaimObjectives {
                loss: 1,
                energy: Some(0)
            }
        );
        assert_eq!(
            ClaimObjectives::of(&names(&["f1", "f2"])),
            ClaimObjectives {
                loss: 0,
                energy: Some(1)
            }
        );
        assert_eq!(
            ClaimObjectives::of(&names(&["loss"])),
            ClaimObjectives {
                loss: 0,
                energy: None
            }
        );
    }
}

//! The study report: `study.json` (every number), `study.md` (the tables)
//! and the SVG plots, written into the study's directory from its run
//! directories.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use dsnn_energy::GridLocation;
use dsnn_search::Outcome;
use serde::Serialize;

use crate::executor::{write_atomically, DEFAULT_TRIAL_ID};
use crate::objective::EnergyContext;
use crate::report::{
    attainment_svg, band_svg, settings_svg, AttainmentSeries, BandSeries, LegendAt, SettingsPoint,
};

use super::analysis::{
    attainment_surface, band, claims_of, front_2d, hypervolume_steps, load_runs, searched_points,
    Band, ClaimObjectives, DsnnContext, FrontSettings, HypervolumeStep, LoadedRun, SharedScale,
    Spread, ENERGY_CLAIM, LOSS_CLAIM,
};
use super::file::Study;

/// How a variant's energy figures were obtained and turned into emissions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EnergyInfo {
    /// The meter as the experiment names it (`opcount`, `estimator`, ...).
    pub meter: String,
    /// What its figures are: op-count model, CodeCarbon-style estimate or
    /// hardware measurement.
    pub kind: String,
    /// The grid the emissions are computed for.
    pub grid: String,
    /// Its carbon intensity, gCO2e per kWh.
    pub g_per_kwh: f64,
    /// Where that figure comes from.
    pub intensity_source: String,
    /// Power usage effectiveness applied.
    pub pue: f64,
}

/// The empirical attainment surfaces of a variant (first two objectives).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Attainment {
    /// Attained by at least one seed.
    pub best: Vec<[f64; 2]>,
    /// By at least half of the seeds (rounded up).
    pub median: Vec<[f64; 2]>,
    /// By every seed.
    pub worst: Vec<[f64; 2]>,
    /// Each seed's default configuration.
    pub defaults: Vec<[f64; 2]>,
    /// Every searched trial at the front's budget, all seeds.
    pub trials: Vec<[f64; 2]>,
}

/// One variant over its seeds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VariantReport {
    /// Its name.
    pub name: String,
    /// What it is.
    pub description: String,
    /// Its experiment file.
    pub experiment_file: PathBuf,
    /// Optimizer, fidelity and executor, in words.
    pub setup: BTreeMap<String, String>,
    /// Seeds with a run directory.
    pub seeds_run: Vec<u64>,
    /// Finished trials per run.
    pub trials: Option<Spread>,
    /// The fidelity budget of the finished trials per run (epochs under an
    /// `epochs` fidelity; the default's trial not counted).
    pub budget_used: Option<Spread>,
    /// Failed trials, all seeds together.
    pub failed: usize,
    /// Wall-clock seconds per run.
    pub wall_time_s: Option<Spread>,
    /// The default configuration's objectives, per objective, over seeds.
    pub default: Vec<Option<Spread>>,
    /// Every metric of the default's trial (energy, emissions, accuracy ...).
    pub default_metrics: BTreeMap<String, Spread>,
    /// Improvement of the best searched trial at the front's budget over the
    /// default, per objective (fraction; positive = better), over seeds.
    pub improvement: Vec<Option<Spread>>,
    /// Seeds whose default succeeded (those the claims are counted over).
    pub seeds_with_default: usize,
    /// Seeds with a trial at least [`LOSS_CLAIM`] better in loss.
    pub loss_claim_seeds: usize,
    /// Seeds with a trial at least [`ENERGY_CLAIM`] better in energy and no
    /// worse in loss.
    pub energy_claim_seeds: usize,
    /// Final hypervolume on the study's shared scale, over seeds.
    pub hypervolume: Option<Spread>,
    /// Hypervolume over finished trials: median and min-max over seeds.
    pub hypervolume_over_trials: Option<Band>,
    /// Hypervolume over wall-clock seconds.
    pub hypervolume_over_time: Option<Band>,
    /// Hypervolume over the fidelity budget of the finished trials (epochs:
    /// the training the run had done, independent of the machine).
    pub hypervolume_over_budget: Option<Band>,
    /// Attainment surfaces (two or more objectives: the first two).
    pub attainment: Option<Attainment>,
    /// How energy and emissions were obtained.
    pub energy: EnergyInfo,
}

/// Everything `study.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StudyReport {
    /// The study's name.
    pub name: String,
    /// The study file.
    pub file: PathBuf,
    /// What it is for.
    pub description: Option<String>,
    /// The objectives (all minimised).
    pub objectives: Vec<String>,
    /// Their units.
    pub units: Vec<String>,
    /// Which objectives the paper's claims are counted on.
    pub claim_objectives: ClaimObjectives,
    /// The seeds the study file lists.
    pub seeds: Vec<u64>,
    /// The hypervolume scale shared by every run.
    pub scale: SharedScale,
    /// Per variant.
    pub variants: Vec<VariantReport>,
    /// The settings of every front member (DSNN objectives only).
    pub front_settings: Vec<FrontSettings>,
    /// Run directories that could not be read, and other remarks.
    pub notes: Vec<String>,
}

fn grid_words(g: &GridLocation) -> String {
    match g {
        GridLocation::World => "world average".into(),
        GridLocation::Country { iso3 } => format!("country {iso3}"),
        GridLocation::Cloud { provider, region } => format!("cloud {provider} {region}"),
        GridLocation::Fixed { g_per_kwh } => format!("fixed {g_per_kwh} g/kWh"),
    }
}

/// The trial report of a run's default, if it succeeded.
fn default_metrics(run: &LoadedRun) -> Option<&BTreeMap<String, f64>> {
    run.history
        .results
        .iter()
        .find(|(t, r)| t.id == DEFAULT_TRIAL_ID && matches!(r.outcome, Outcome::Success(_)))
        .map(|(_, r)| &r.metrics)
}

/// Computes the report of `study` from its run directories.
pub fn study_report(study: &Study) -> StudyReport {
    let (runs, mut notes) = load_runs(study);
    let names = study.objective_names().to_vec();
    let m = names.len();
    let first = &study.runs[0].experiment;
    let units: Vec<String> = first
        .objective
        .infos
        .iter()
        .map(|i| i.unit.clone())
        .collect();
    let claims = ClaimObjectives::of(&names);
    let scale = SharedScale::of(&runs, m);
    let mut variants = Vec::new();
    let mut front_settings = Vec::new();
    for v in &study.variants {
        let mine: Vec<&LoadedRun> = runs.iter().filter(|r| r.variant == v.name).collect();
        let spec = study
            .runs
            .iter()
            .find(|r| r.variant == v.name)
            .expect("every variant has runs");
        let exp = &spec.experiment;
        let col = |f: &dyn Fn(&LoadedRun) -> Option<f64>| -> Vec<f64> {
            mine.iter().filter_map(|r| f(r)).collect()
        };
        let default: Vec<Option<Spread>> = (0..m)
            .map(|k| Spread::of(&col(&|r| r.summary.default.as_ref().map(|d| d[k]))))
            .collect();
        let improvement: Vec<Option<Spread>> = (0..m)
            .map(|k| {
                Spread::of(&col(&|r| {
                    r.summary.improvement_over_default.get(k).copied().flatten()
                }))
            })
            .collect();
        let mut metric_values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for r in &mine {
            if let Some(ms) = default_metrics(r) {
                for (k, v) in ms {
                    metric_values.entry(k.clone()).or_default().push(*v);
                }
            }
        }
        let default_metrics = metric_values
            .into_iter()
            .filter_map(|(k, v)| Some((k, Spread::of(&v)?)))
            .collect();
        let claim_results: Vec<(bool, bool)> =
            mine.iter().filter_map(|r| claims_of(r, &claims)).collect();
        let steps: Vec<Vec<HypervolumeStep>> =
            mine.iter().map(|r| hypervolume_steps(r, &scale)).collect();
        let over = |x: fn(&HypervolumeStep) -> f64| -> Vec<Vec<(f64, f64)>> {
            steps
                .iter()
                .map(|s| {
                    s.iter()
                        .filter(|st| x(st).is_finite())
                        .map(|st| (x(st), st.hypervolume))
                        .collect()
                })
                .collect()
        };
        let by_trials = over(|s| s.trials);
        let by_time = over(|s| s.elapsed_s);
        let by_budget = over(|s| s.budget);
        let max_of = |series: &[Vec<(f64, f64)>]| {
            series.iter().flatten().map(|p| p.0).fold(0.0f64, f64::max)
        };
        let attainment = (m >= 2 && !mine.is_empty()).then(|| {
            let fronts: Vec<Vec<[f64; 2]>> = mine.iter().map(|r| front_2d(r)).collect();
            let n = fronts.len();
            Attainment {
                best: attainment_surface(&fronts, 1),
                median: attainment_surface(&fronts, n.div_ceil(2)),
                worst: attainment_surface(&fronts, n),
                defaults: mine
                    .iter()
                    .filter_map(|r| r.summary.default.as_ref().map(|d| [d[0], d[1]]))
                    .collect(),
                trials: mine
                    .iter()
                    .flat_map(|r| searched_points(r))
                    .map(|p| [p[0], p[1]])
                    .collect(),
            }
        });
        let carbon = exp.energy.carbon();
        let energy = EnergyInfo {
            meter: exp.energy.meter_name.clone(),
            kind: if exp.energy.meter_name == "auto" {
                format!(
                    "{} where readable (RAPL, NVML), CodeCarbon-style estimate otherwise",
                    exp.energy.energy_kind
                )
            } else {
                exp.energy.energy_kind.to_string()
            },
            grid: grid_words(&exp.energy.grid),
            g_per_kwh: carbon.intensity.g_per_kwh,
            intensity_source: carbon.intensity.source.clone(),
            pue: carbon.pue,
        };
        let describe = exp.describe();
        let setup: BTreeMap<String, String> = ["optimizer", "fidelity", "executor", "target"]
            .iter()
            .filter_map(|k| Some((k.to_string(), describe.get(k)?.clone())))
            .chain([("stop".to_string(), exp.stop.describe())])
            .collect();
        if let Some(ctx) = DsnnContext::of(spec) {
            for r in &mine {
                for p in &r.summary.front {
                    if p.trial != "default" {
                        front_settings.push(ctx.settings(r, &p.trial, &p.objectives, &p.config));
                    }
                }
            }
        }
        variants.push(VariantReport {
            name: v.name.clone(),
            description: v.description.clone(),
            experiment_file: v.experiment_file.clone(),
            setup,
            seeds_run: mine.iter().map(|r| r.seed).collect(),
            trials: Spread::of(&col(&|r| Some(r.summary.trials as f64))),
            budget_used: Spread::of(&col(&|r| {
                Some(
                    r.history
                        .results
                        .iter()
                        .filter(|(t, _)| t.id != DEFAULT_TRIAL_ID)
                        .map(|(t, _)| t.budget)
                        .sum(),
                )
            })),
            failed: mine.iter().map(|r| r.summary.failed).sum(),
            wall_time_s: Spread::of(&col(&|r| Some(r.summary.elapsed_s))),
            default,
            default_metrics,
            improvement,
            seeds_with_default: claim_results.len(),
            loss_claim_seeds: claim_results.iter().filter(|c| c.0).count(),
            energy_claim_seeds: claim_results.iter().filter(|c| c.1).count(),
            hypervolume: Spread::of(
                &steps
                    .iter()
                    .filter_map(|s| s.last().map(|st| st.hypervolume))
                    .collect::<Vec<_>>(),
            ),
            hypervolume_over_trials: band(&by_trials, max_of(&by_trials), 120),
            hypervolume_over_time: band(&by_time, max_of(&by_time), 120),
            hypervolume_over_budget: band(&by_budget, max_of(&by_budget), 120),
            attainment,
            energy,
        });
    }
    let missing = study.runs.len() - runs.len();
    if missing > 0 {
        notes.push(format!(
            "{missing} of {} runs have no trial log yet (not run)",
            study.runs.len()
        ));
    }
    StudyReport {
        name: study.name.clone(),
        file: study.file.clone(),
        description: study.description.clone(),
        objectives: names,
        units,
        claim_objectives: claims,
        seeds: study.seeds.clone(),
        scale,
        variants,
        front_settings,
        notes,
    }
}

/// An axis label: the objective's name and unit.
fn axis(report: &StudyReport, k: usize) -> String {
    match report.units.get(k).filter(|u| !u.is_empty()) {
        Some(u) => format!("{} ({u})", report.objectives[k]),
        None => report.objectives[k].clone(),
    }
}

fn num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() < 1e-3 || v.abs() >= 1e5 {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

fn pct(v: f64) -> String {
    format!("{:+.1}%", 100.0 * v)
}

fn spread_cells(s: &Option<Spread>, f: fn(f64) -> String) -> String {
    match s {
        Some(s) => format!(
            "{} | {} | {} | {}",
            f(s.mean),
            f(s.sd).trim_start_matches('+'),
            f(s.min),
            f(s.max)
        ),
        None => "- | - | - | -".into(),
    }
}

/// Counts `(value, n)` of the values, in order of the values.
fn counts<T: Ord + Clone>(values: impl Iterator<Item = T>) -> Vec<(T, usize)> {
    let mut m: BTreeMap<T, usize> = BTreeMap::new();
    for v in values {
        *m.entry(v).or_insert(0) += 1;
    }
    m.into_iter().collect()
}

fn count_cell<T: std::fmt::Display>(c: &[(T, usize)]) -> String {
    if c.is_empty() {
        return "-".into();
    }
    c.iter()
        .map(|(v, n)| format!("{v}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The file names of the plots [`write_study_report`] may write.
pub const STUDY_PLOTS: [&str; 5] = [
    "hypervolume_trials.svg",
    "hypervolume_time.svg",
    "hypervolume_budget.svg",
    "attainment.svg",
    "front_settings.svg",
];

/// `study.md`: every section of the report as tables, with the plots.
pub fn study_markdown(r: &StudyReport, plots: &[&str]) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Study `{}`\n", r.name);
    if let Some(d) = &r.description {
        let _ = writeln!(o, "{d}\n");
    }
    let _ = writeln!(
        o,
        "Study file: `{}`. Seeds: {:?}. Objectives (minimised): {}.\n",
        r.file.display(),
        r.seeds,
        (0..r.objectives.len())
            .map(|k| axis(r, k))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(o, "## Variants\n");
    let _ = writeln!(
        o,
        "| variant | what | optimizer | fidelity | stop | seeds run | trials per run (mean) | budget used per run (mean) | failed | wall time per run (s, mean) |\n|---|---|---|---|---|---|---:|---:|---:|---:|"
    );
    for v in &r.variants {
        let get = |k: &str| v.setup.get(k).cloned().unwrap_or_else(|| "-".into());
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} of {} | {} | {} | {} | {} |",
            v.name,
            v.description.replace('|', "\\|"),
            get("optimizer"),
            get("fidelity"),
            get("stop"),
            v.seeds_run.len(),
            r.seeds.len(),
            v.trials
                .as_ref()
                .map_or("-".into(), |s| format!("{:.1}", s.mean)),
            v.budget_used
                .as_ref()
                .map_or("-".into(), |s| format!("{:.1}", s.mean)),
            v.failed,
            v.wall_time_s
                .as_ref()
                .map_or("-".into(), |s| format!("{:.1}", s.mean)),
        );
    }
    let _ = writeln!(o, "\n## The default configuration\n");
    let _ = writeln!(
        o,
        "Each run evaluates the default configuration of its space at the full budget first. Over seeds:\n"
    );
    let _ = writeln!(
        o,
        "| variant | objective | mean | sd | min | max |\n|---|---|---:|---:|---:|---:|"
    );
    for v in &r.variants {
        for (k, s) in v.default.iter().enumerate() {
            let _ = writeln!(
                o,
                "| {} | {} | {} |",
                v.name,
                axis(r, k),
                spread_cells(s, num)
            );
        }
    }
    let _ = writeln!(o, "\n## Improvement of the search over the default\n");
    let _ = writeln!(
        o,
        "Per objective, the best searched trial at the front's budget against the default of the same seed, (default - best) / default: positive is better. Over seeds:\n"
    );
    let _ = writeln!(
        o,
        "| variant | objective | mean | sd | min | max |\n|---|---|---:|---:|---:|---:|"
    );
    for v in &r.variants {
        for (k, s) in v.improvement.iter().enumerate() {
            let _ = writeln!(
                o,
                "| {} | {} | {} |",
                v.name,
                r.objectives[k],
                spread_cells(s, pct)
            );
        }
    }
    let loss = &r.objectives[r.claim_objectives.loss];
    let energy = r
        .claim_objectives
        .energy
        .map(|e| r.objectives[e].clone())
        .unwrap_or_else(|| "-".into());
    let _ = writeln!(
        o,
        "\nThe paper's claims, counted per seed: a searched trial at least {:.0}% better in {loss} than the default, and one at least {:.0}% better in {energy} while no worse in {loss}.\n",
        100.0 * LOSS_CLAIM,
        100.0 * ENERGY_CLAIM
    );
    let _ = writeln!(
        o,
        "| variant | seeds with a default | >= {:.0}% {loss} | >= {:.0}% {energy} at no worse {loss} |\n|---|---:|---:|---:|",
        100.0 * LOSS_CLAIM,
        100.0 * ENERGY_CLAIM
    );
    for v in &r.variants {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            v.name, v.seeds_with_default, v.loss_claim_seeds, v.energy_claim_seeds
        );
    }
    let _ = writeln!(o, "\n## Hypervolume\n");
    let _ = writeln!(
        o,
        "On one scale shared by every run of the study: each objective scaled to [0, 1] by its range over all successful trials at the front's budget (lo = {}, hi = {}), reference point 1.1 in each, as a fraction of the box. Final values over seeds:\n",
        r.scale.lo.iter().map(|v| num(*v)).collect::<Vec<_>>().join(", "),
        r.scale.hi.iter().map(|v| num(*v)).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(
        o,
        "| variant | mean | sd | min | max |\n|---|---:|---:|---:|---:|"
    );
    for v in &r.variants {
        let _ = writeln!(o, "| {} | {} |", v.name, spread_cells(&v.hypervolume, num));
    }
    for (file, what) in [
        ("hypervolume_trials.svg", "over finished trials"),
        ("hypervolume_time.svg", "over wall-clock time"),
        (
            "hypervolume_budget.svg",
            "over the training budget used (epochs of the finished trials)",
        ),
    ] {
        if plots.contains(&file) {
            let _ = writeln!(
                o,
                "\nHypervolume {what} (median over seeds, shaded: min to max):\n\n![hypervolume {what}]({file})"
            );
        }
    }
    let _ = writeln!(o, "\n## Empirical attainment surfaces\n");
    if plots.contains(&"attainment.svg") {
        let _ = writeln!(
            o,
            "{} against {}: per variant, the region attained by at least one seed (best), by half of the seeds (median) and by every seed (worst); the searched trials' fronts at the full budget, the defaults as squares.\n\n![attainment surfaces](attainment.svg)",
            r.objectives[0],
            r.objectives.get(1).map_or("-", |s| s.as_str())
        );
    } else {
        let _ = writeln!(o, "Needs two objectives and a finished run.");
    }
    let _ = writeln!(o, "\n## Settings of the front members\n");
    if r.front_settings.is_empty() {
        let _ = writeln!(
            o,
            "No DSNN front members (the objective is not `dsnn`, or no run has finished a trial at the full budget)."
        );
    } else {
        let _ = writeln!(
            o,
            "Every searched front member of every seed at the full budget (settings a configuration does not set are the experiment's `[model]` values or the paper's default DSNN; shift depth as a fraction of the backbone's convertible convolutions, float = 0):\n"
        );
        let _ = writeln!(
            o,
            "| variant | members | weight_bits | shift depth (fraction) | shift_type | activation bits (integer/fraction) | optimizer |\n|---|---:|---|---|---|---|---|"
        );
        for v in &r.variants {
            let mine: Vec<&FrontSettings> = r
                .front_settings
                .iter()
                .filter(|s| s.variant == v.name)
                .collect();
            let bits = counts(mine.iter().filter_map(|s| s.weight_bits.map(|b| b as i64)));
            let depth = counts(
                mine.iter()
                    .filter_map(|s| s.shift_depth_fraction.map(|d| format!("{d:.2}"))),
            );
            let kind = counts(mine.iter().filter_map(|s| s.shift_type.clone()));
            let act = counts(mine.iter().map(|s| {
                format!(
                    "{}/{}",
                    s.activation_integer_bits
                        .map_or("-".into(), |b| b.to_string()),
                    s.activation_fraction_bits
                        .map_or("-".into(), |b| b.to_string())
                )
            }));
            let opt = counts(mine.iter().filter_map(|s| s.optimizer.clone()));
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} |",
                v.name,
                mine.len(),
                count_cell(&bits),
                count_cell(&depth),
                count_cell(&kind),
                count_cell(&act),
                count_cell(&opt)
            );
        }
        if plots.contains(&"front_settings.svg") {
            let _ = writeln!(o, "\n![front members' settings](front_settings.svg)");
        }
    }
    let _ = writeln!(o, "\n## Energy and emissions\n");
    let _ = writeln!(
        o,
        "| variant | energy meter | kind | grid | gCO2e/kWh | PUE |\n|---|---|---|---|---:|---:|"
    );
    for v in &r.variants {
        let e = &v.energy;
        let _ = writeln!(
            o,
            "| {} | `{}` | {} | {} | {:.1} | {} |",
            v.name, e.meter, e.kind, e.grid, e.g_per_kwh, e.pue
        );
    }
    let shown: Vec<&str> = [
        "energy",
        "validation_energy_j",
        "emissions",
        "training_energy",
    ]
    .into_iter()
    .filter(|k| {
        r.variants
            .iter()
            .any(|v| v.default_metrics.contains_key(*k))
    })
    .collect();
    if !shown.is_empty() {
        let _ = writeln!(
            o,
            "\nThe default's energy and emissions over seeds (mean, min to max): `energy` in J per validation image, `validation_energy_j` in J for the whole validation pass, `emissions` in g CO2e of the validation pass on the grid above, `training_energy` in J; all of the meter's kind.\n"
        );
        let _ = writeln!(
            o,
            "| variant | {} |\n|---|{}",
            shown.join(" | "),
            "---:|".repeat(shown.len())
        );
        for v in &r.variants {
            let cells: Vec<String> = shown
                .iter()
                .map(|k| {
                    v.default_metrics.get(*k).map_or("-".into(), |s| {
                        format!("{} ({} to {})", num(s.mean), num(s.min), num(s.max))
                    })
                })
                .collect();
            let _ = writeln!(o, "| {} | {} |", v.name, cells.join(" | "));
        }
    }
    if !r.notes.is_empty() {
        let _ = writeln!(o, "\n## Notes\n");
        for n in &r.notes {
            let _ = writeln!(o, "- {n}");
        }
    }
    o
}

/// The plots of a report, by file name (those there is data for).
pub fn study_plots(r: &StudyReport) -> Vec<(&'static str, String)> {
    let labels: Vec<String> = r.variants.iter().map(|v| v.name.clone()).collect();
    let mut out = Vec::new();
    for (file, pick, x_label) in [
        (
            STUDY_PLOTS[0],
            (|v: &VariantReport| v.hypervolume_over_trials.clone())
                as fn(&VariantReport) -> Option<Band>,
            "finished trials (the default included)",
        ),
        (
            STUDY_PLOTS[1],
            |v: &VariantReport| v.hypervolume_over_time.clone(),
            "wall-clock time of the run (s)",
        ),
        (
            STUDY_PLOTS[2],
            |v: &VariantReport| v.hypervolume_over_budget.clone(),
            "training budget used (fidelity units, e.g. epochs; the default included)",
        ),
    ] {
        let bands: Vec<(String, Band)> = r
            .variants
            .iter()
            .filter_map(|v| Some((v.name.clone(), pick(v)?)))
            .collect();
        let series: Vec<BandSeries> = bands
            .iter()
            .map(|(name, b)| BandSeries {
                label: format!("{name} ({} seeds)", b.runs),
                x: &b.x,
                median: &b.median,
                min: &b.min,
                max: &b.max,
            })
            .collect();
        let title = format!("{}: hypervolume (shared scale)", r.name);
        if let Some(svg) = band_svg(
            &title,
            x_label,
            "hypervolume (fraction of the box)",
            &series,
            LegendAt::BottomRight,
        ) {
            out.push((file, svg));
        }
    }
    if r.objectives.len() >= 2 {
        let series: Vec<AttainmentSeries> = r
            .variants
            .iter()
            .map(|v| {
                let a = v.attainment.clone().unwrap_or(Attainment {
                    best: Vec::new(),
                    median: Vec::new(),
                    worst: Vec::new(),
                    defaults: Vec::new(),
                    trials: Vec::new(),
                });
                AttainmentSeries {
                    label: v.name.clone(),
                    best: a.best,
                    median: a.median,
                    worst: a.worst,
                    defaults: a.defaults,
                    others: a.trials,
                }
            })
            .collect();
        if let Some(svg) = attainment_svg(
            &format!("{}: attainment surfaces at the full budget", r.name),
            &axis(r, 0),
            &axis(r, 1),
            &series,
        ) {
            out.push((STUDY_PLOTS[3], svg));
        }
    }
    let points: Vec<SettingsPoint> = r
        .front_settings
        .iter()
        .filter_map(|s| {
            Some(SettingsPoint {
                series: labels.iter().position(|l| *l == s.variant)?,
                weight_bits: s.weight_bits?,
                shift_depth_fraction: s.shift_depth_fraction?,
                shift_type: s.shift_type.clone().unwrap_or_default(),
            })
        })
        .collect();
    if let Some(svg) = settings_svg(
        &format!("{}: settings of the front members", r.name),
        &labels,
        &points,
    ) {
        out.push((STUDY_PLOTS[4], svg));
    }
    out
}

/// Writes `study.json`, `study.md` and the plots into the study's
/// directory (each atomically); returns the files written.
pub fn write_study_report(study: &Study, report: &StudyReport) -> std::io::Result<Vec<PathBuf>> {
    let dir: &Path = &study.dir;
    std::fs::create_dir_all(dir)?;
    let plots = study_plots(report);
    let names: Vec<&str> = plots.iter().map(|(n, _)| *n).collect();
    let mut written = Vec::new();
    let json = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    for (name, text) in [
        ("study.json", json),
        ("study.md", study_markdown(report, &names)),
    ] {
        write_atomically(&dir.join(name), text.as_bytes())?;
        written.push(dir.join(name));
    }
    for (name, svg) in plots {
        write_atomically(&dir.join(name), svg.as_bytes())?;
        written.push(dir.join(name));
    }
    Ok(written)
}

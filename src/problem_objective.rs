//! The test-problem objective: a ZDT or DTLZ function instead of a DSNN,
//! for trying optimizers and executors in seconds (`[problem]`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use dsnn_search::problems::{ProblemError, TestProblem};
use dsnn_search::SearchSpace;
use serde::Deserialize;

use crate::objective::{EvalError, MetricInfo, Metrics, Objective, TrialContext};
use crate::registry::{ObjectiveBuild, ObjectiveFactory, ObjectiveSetup};
use crate::settings::{ConfigError, Section};

/// `[problem]`: a known multi-objective test problem as the objective.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProblemSection {
    /// `zdt1`, `zdt2`, `zdt3`, `zdt4`, `zdt6`, `dtlz1` or `dtlz2`.
    pub name: String,
    /// Number of variables (default: the problem's usual size).
    #[serde(default)]
    pub dimensions: Option<usize>,
    /// Number of objectives (DTLZ only; default 3).
    #[serde(default)]
    pub objectives: Option<usize>,
    /// Seconds each evaluation sleeps, to simulate an expensive trial.
    #[serde(default)]
    pub delay_s: f64,
    /// Up to this many seconds more, drawn from the clock at each
    /// evaluation (not seeded): trials of varying duration, which finish in
    /// an order that changes from run to run (to try executors and
    /// `executor.tell_order`).
    #[serde(default)]
    pub delay_jitter_s: f64,
    /// Fault injection, for trying how executors and optimizers handle
    /// failing trials: trials whose first variable is below `fraction` fail
    /// the given way.
    #[serde(default)]
    pub inject_failure: Option<InjectFailure>,
}

/// A failure the test problem injects (see [`ProblemSection::inject_failure`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectFailure {
    /// How the trial fails.
    pub kind: FailureKind,
    /// Trials with `x0 < fraction` fail (0..=1).
    pub fraction: f64,
}

/// How an injected failure fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The evaluation panics.
    Panic,
    /// The objectives are NaN.
    Nan,
    /// The process aborts (only survivable with the processes executor).
    Abort,
    /// The evaluation allocates memory until it runs out (only survivable
    /// with the processes executor and a `memory_limit`).
    OutOfMemory,
}

impl ProblemSection {
    /// The problem it names (see [`TestProblem::by_name`]: ZDT1-6,
    /// DTLZ1-7, WFG1-9); errors point at the key in `section`.
    pub fn problem(&self, section: &Section) -> Result<TestProblem, ConfigError> {
        let problem =
            TestProblem::by_name(&self.name, self.dimensions, self.objectives).map_err(|e| {
                let key = match &e {
                    ProblemError::UnknownName { .. } => "name",
                    ProblemError::ObjectivesOutOfRange { .. } => "objectives",
                    _ => "dimensions",
                };
                section.error(key, format!("`problem.{key}`: {e}"))
            })?;
        if let Some(f) = &self.inject_failure {
            if !(0.0..=1.0).contains(&f.fraction) {
                return Err(section.out_of_range("inject_failure.fraction", f.fraction, "0..=1"));
            }
        }
        for (key, value) in [
            ("delay_s", self.delay_s),
            ("delay_jitter_s", self.delay_jitter_s),
        ] {
            if !(value.is_finite() && (0.0..=86_400.0).contains(&value)) {
                return Err(section.out_of_range(key, value, "0..=86400"));
            }
        }
        Ok(problem)
    }
}

/// A number in [0, 1) from the clock's nanoseconds: timing noise, not a
/// seeded draw.
fn clock_fraction() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // The low digits change fastest; mix them so consecutive calls differ.
    let mixed = (u64::from(nanos).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64;
    mixed / (1u64 << 53) as f64
}

/// A test problem as an objective.
pub struct ProblemObjective {
    /// The problem.
    pub problem: TestProblem,
    /// Its settings.
    pub settings: ProblemSection,
}

impl Objective for ProblemObjective {
    fn metrics(&self) -> Vec<MetricInfo> {
        (1..=self.problem.n_obj())
            .map(|i| MetricInfo::new(&format!("f{i}"), "", false))
            .collect()
    }

    fn default_objectives(&self) -> Vec<String> {
        (1..=self.problem.n_obj())
            .map(|i| format!("f{i}"))
            .collect()
    }

    fn own_space(&self) -> Option<Arc<dyn SearchSpace>> {
        Some(Arc::new(self.problem.space()))
    }

    fn evaluate(&self, ctx: &TrialContext) -> Result<Metrics, EvalError> {
        let p = &self.settings;
        let delay_s = p.delay_s + p.delay_jitter_s * clock_fraction();
        if delay_s > 0.0 {
            let until = Instant::now() + Duration::from_secs_f64(delay_s);
            while Instant::now() < until {
                ctx.control
                    .check()
                    .map_err(|e| EvalError::Trial(e.to_string()))?;
                std::thread::sleep(
                    until
                        .saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(20)),
                );
            }
        }
        if let Some(inject) = &p.inject_failure {
            let x0 = ctx.trial.config.get_f64("x0").unwrap_or(1.0);
            if x0 < inject.fraction {
                inject_failure(inject.kind);
                return Ok(self
                    .default_objectives()
                    .into_iter()
                    .map(|n| (n, f64::NAN))
                    .collect());
            }
        }
        let f = self.problem.evaluate_config(&ctx.trial.config);
        Ok(f.iter()
            .enumerate()
            .map(|(i, v)| (format!("f{}", i + 1), *v))
            .collect())
    }
}

/// Fails the way `kind` says (returns only for [`FailureKind::Nan`]).
fn inject_failure(kind: FailureKind) {
    match kind {
        FailureKind::Panic => panic!("injected failure (problem.inject_failure)"),
        FailureKind::Nan => {}
        FailureKind::Abort => std::process::abort(),
        FailureKind::OutOfMemory => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                // Touch every page so the memory is really used.
                hoard.push(vec![1u8; 64 << 20]);
                log::debug!("holding {} MiB", hoard.len() * 64);
            }
        }
    }
}

/// The built-in `problem` objective factory.
pub struct ProblemObjectiveFactory;

impl ObjectiveFactory for ProblemObjectiveFactory {
    fn description(&self) -> String {
        "a ZDT or DTLZ test problem (`[problem]`), for trying optimizers and executors".into()
    }

    fn create(&self, setup: &ObjectiveSetup) -> Result<ObjectiveBuild, ConfigError> {
        if let Some(k) = setup.settings.table().keys().next() {
            return Err(setup.settings.error(
                k,
                format!(
                    "`objective.{k}`: the `problem` objective takes no settings in `[objective]` \
                     (its settings are `[problem]`)"
                ),
            ));
        }
        if !setup.has("problem") {
            return Err(setup
                .source
                .error("", "the `problem` objective needs a `[problem]` table"));
        }
        for (other, what) in [("model", "`[model]`"), ("data", "`[data]`")] {
            if setup.has(other) {
                return Err(setup.source.error(
                    other,
                    format!("{what} applies to DSNN searches only, not to `[problem]`"),
                ));
            }
        }
        if let Some(unit) = setup.section("fidelity").get("unit") {
            if unit.value().as_str() != Some("epochs") {
                return Err(unit.error("", "`data_fraction` budgets apply to DSNN searches only"));
            }
        }
        let section = setup.section("problem");
        let settings: ProblemSection = section.parse()?;
        let problem = settings.problem(&section)?;
        let target = format!("test problem {}", settings.name);
        Ok(ObjectiveBuild {
            objective: Arc::new(ProblemObjective { problem, settings }),
            resolved: Vec::new(),
            target,
        })
    }
}

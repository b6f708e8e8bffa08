//! Standard multi-objective test problems as defined in pymoo 0.6.2: ZDT1-6,
//! DTLZ1-7 (2 to 10 objectives) and WFG1-9 (pymoo's parameterisation), with
//! samples of their true fronts, their ideal and nadir points and optimal
//! hypervolumes, for testing and benchmarking optimizers.
//!
//! [`TestProblem::by_name`] builds one from a name as an experiment file
//! writes it; `dsnn-search/tests/data/mo_problems_golden.json` (made by
//! `make_mo_problems_golden.py` beside it, with pymoo) checks every
//! problem's values.

mod dtlz;
mod wfg;
mod zdt;

use crate::optimizer::{Optimizer, OptimizerError, Outcome};
use crate::pareto;
use crate::space::{Configuration, ConfigurationSpace, Hyperparameter};
use std::f64::consts::PI;

/// The problem names [`TestProblem::by_name`] accepts (case-insensitive).
pub const NAMES: &[&str] = &[
    "zdt1", "zdt2", "zdt3", "zdt4", "zdt5", "zdt6", "dtlz1", "dtlz2", "dtlz3", "dtlz4", "dtlz5",
    "dtlz6", "dtlz7", "wfg1", "wfg2", "wfg3", "wfg4", "wfg5", "wfg6", "wfg7", "wfg8", "wfg9",
];

/// Most objectives a DTLZ or WFG problem may have.
pub const MAX_OBJECTIVES: usize = 10;
/// Most variables a test problem may have.
pub const MAX_VARIABLES: usize = 1000;

/// Why a test problem could not be built; each variant carries what the
/// caller needs to point at the offending setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProblemError {
    /// No problem has this name.
    #[error("unknown problem `{name}` (allowed: {})", allowed.join(", "))]
    UnknownName {
        /// The name given.
        name: String,
        /// The names allowed ([`NAMES`]).
        allowed: Vec<String>,
    },
    /// The number of objectives is outside what the problem allows.
    #[error("{problem}: {given} objectives is out of range (allowed: {min}..={max})")]
    ObjectivesOutOfRange {
        /// The problem's name.
        problem: String,
        /// The number given.
        given: usize,
        /// Fewest allowed.
        min: usize,
        /// Most allowed.
        max: usize,
    },
    /// The number of variables is outside what the problem allows.
    #[error("{problem}: {given} variables is out of range (allowed: {min}..={max})")]
    DimensionsOutOfRange {
        /// The problem's name.
        problem: String,
        /// The number given.
        given: usize,
        /// Fewest allowed (with these objectives).
        min: usize,
        /// Most allowed.
        max: usize,
    },
    /// The number of variables must be `min + step * j` (ZDT5's groups of
    /// five bits; WFG2 and WFG3 pair their distance variables).
    #[error("{problem}: {given} variables is not allowed (allowed: {min}, {min} + {step}, {min} + 2*{step}, ...)")]
    DimensionsStep {
        /// The problem's name.
        problem: String,
        /// The number given.
        given: usize,
        /// Smallest allowed.
        min: usize,
        /// Allowed numbers are `min + step * j`.
        step: usize,
    },
}

/// Which test problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// ZDT1: convex front.
    Zdt1,
    /// ZDT2: concave front.
    Zdt2,
    /// ZDT3: disconnected front.
    Zdt3,
    /// ZDT4: multimodal (21^9 local fronts).
    Zdt4,
    /// ZDT5: binary variables (integers 0/1), deceptive, discrete front;
    /// pymoo's normalised objectives.
    Zdt5,
    /// ZDT6: non-uniform, biased front.
    Zdt6,
    /// DTLZ1: linear front `sum f = 0.5`, multimodal `g`.
    Dtlz1,
    /// DTLZ2: spherical front `sum f^2 = 1`.
    Dtlz2,
    /// DTLZ3: DTLZ2's front with DTLZ1's multimodal `g`.
    Dtlz3,
    /// DTLZ4: DTLZ2 with a density bias (`alpha = 100`).
    Dtlz4,
    /// DTLZ5: degenerate (curve) front.
    Dtlz5,
    /// DTLZ6: DTLZ5 with a harder `g` (`sum x^0.1`).
    Dtlz6,
    /// DTLZ7: disconnected front (2^(M-1) regions).
    Dtlz7,
    /// WFG1: convex and mixed, flat and polynomial bias.
    Wfg1,
    /// WFG2: convex, disconnected, non-separable.
    Wfg2,
    /// WFG3: linear, degenerate, non-separable.
    Wfg3,
    /// WFG4: concave, multimodal.
    Wfg4,
    /// WFG5: concave, deceptive.
    Wfg5,
    /// WFG6: concave, non-separable.
    Wfg6,
    /// WFG7: concave, parameter-dependent bias.
    Wfg7,
    /// WFG8: concave, parameter-dependent bias on the distance variables.
    Wfg8,
    /// WFG9: concave, non-separable, deceptive, multimodal.
    Wfg9,
}

/// The families of problems, which share parameterisation rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Zdt(u8),
    Dtlz(u8),
    Wfg(u8),
}

impl ProblemKind {
    /// Every kind, in the order of [`NAMES`].
    pub const ALL: [ProblemKind; 22] = [
        ProblemKind::Zdt1,
        ProblemKind::Zdt2,
        ProblemKind::Zdt3,
        ProblemKind::Zdt4,
        ProblemKind::Zdt5,
        ProblemKind::Zdt6,
        ProblemKind::Dtlz1,
        ProblemKind::Dtlz2,
        ProblemKind::Dtlz3,
        ProblemKind::Dtlz4,
        ProblemKind::Dtlz5,
        ProblemKind::Dtlz6,
        ProblemKind::Dtlz7,
        ProblemKind::Wfg1,
        ProblemKind::Wfg2,
        ProblemKind::Wfg3,
        ProblemKind::Wfg4,
        ProblemKind::Wfg5,
        ProblemKind::Wfg6,
        ProblemKind::Wfg7,
        ProblemKind::Wfg8,
        ProblemKind::Wfg9,
    ];

    /// The lower-case name (`zdt1`, `dtlz7`, `wfg9`).
    pub fn name(self) -> &'static str {
        NAMES[ProblemKind::ALL
            .iter()
            .position(|k| *k == self)
            .expect("every kind is listed")]
    }

    fn family(self) -> Family {
        let i = ProblemKind::ALL.iter().position(|k| *k == self).unwrap() as u8;
        match i {
            0..=5 => Family::Zdt(i + 1),
            6..=12 => Family::Dtlz(i - 5),
            _ => Family::Wfg(i - 12),
        }
    }

    /// The default number of variables for `m` objectives: pymoo's (30 for
    /// ZDT1-3, 10 for ZDT4 and ZDT6, 80 bits for ZDT5; `m + k - 1` with
    /// `k` = 5, 10 or 20 for DTLZ1, DTLZ2-6, DTLZ7), and `k + 20` for WFG
    /// (Huband et al.'s `l = 20`; pymoo has no default).
    pub fn default_variables(self, m: usize) -> usize {
        match self.family() {
            Family::Zdt(1..=3) => 30,
            Family::Zdt(5) => 80,
            Family::Zdt(_) => 10,
            Family::Dtlz(1) => m + 4,
            Family::Dtlz(7) => m + 19,
            Family::Dtlz(_) => m + 9,
            Family::Wfg(_) => wfg::default_k(m) + 20,
        }
    }
}

/// A test problem: a kind, a number of variables and of objectives.
#[derive(Clone, Debug, PartialEq)]
pub struct TestProblem {
    kind: ProblemKind,
    n_var: usize,
    n_obj: usize,
}

impl TestProblem {
    /// ZDT1 with 30 variables.
    pub fn zdt1() -> Self {
        Self::new(ProblemKind::Zdt1, 30, 2)
    }
    /// ZDT2 with 30 variables.
    pub fn zdt2() -> Self {
        Self::new(ProblemKind::Zdt2, 30, 2)
    }
    /// ZDT3 with 30 variables.
    pub fn zdt3() -> Self {
        Self::new(ProblemKind::Zdt3, 30, 2)
    }
    /// ZDT4 with 10 variables.
    pub fn zdt4() -> Self {
        Self::new(ProblemKind::Zdt4, 10, 2)
    }
    /// ZDT6 with 10 variables.
    pub fn zdt6() -> Self {
        Self::new(ProblemKind::Zdt6, 10, 2)
    }
    /// DTLZ1 with `m` objectives and `m + 4` variables (k = 5).
    pub fn dtlz1(m: usize) -> Self {
        Self::new(ProblemKind::Dtlz1, m + 4, m)
    }
    /// DTLZ2 with `m` objectives and `m + 9` variables (k = 10).
    pub fn dtlz2(m: usize) -> Self {
        Self::new(ProblemKind::Dtlz2, m + 9, m)
    }

    /// A problem by name (case-insensitive, one of [`NAMES`]) with the
    /// problem's default sizes where `n_var` or `n_obj` is `None` (2
    /// objectives for ZDT, 3 for DTLZ and WFG). Every setting is checked:
    /// ZDT has exactly 2 objectives, DTLZ and WFG 2..=10; DTLZ needs at
    /// least `m` variables, WFG more than its position parameter `k` (4 for
    /// two objectives, `2 (m - 1)` otherwise), WFG2 and WFG3 an even number
    /// of distance variables, ZDT5 30 bits plus groups of five.
    pub fn by_name(
        name: &str,
        n_var: Option<usize>,
        n_obj: Option<usize>,
    ) -> Result<TestProblem, ProblemError> {
        let lower = name.to_ascii_lowercase();
        let Some(kind) = ProblemKind::ALL.into_iter().find(|k| k.name() == lower) else {
            return Err(ProblemError::UnknownName {
                name: name.to_string(),
                allowed: NAMES.iter().map(|s| s.to_string()).collect(),
            });
        };
        let problem = kind.name().to_ascii_uppercase();
        let (min_m, max_m, default_m) = match kind.family() {
            Family::Zdt(_) => (2, 2, 2),
            _ => (2, MAX_OBJECTIVES, 3),
        };
        let m = n_obj.unwrap_or(default_m);
        if !(min_m..=max_m).contains(&m) {
            return Err(ProblemError::ObjectivesOutOfRange {
                problem,
                given: m,
                min: min_m,
                max: max_m,
            });
        }
        let n = n_var.unwrap_or_else(|| kind.default_variables(m));
        let (min_n, step) = match kind.family() {
            Family::Zdt(5) => (35, 5),
            Family::Zdt(_) => (2, 1),
            Family::Dtlz(_) => (m, 1),
            Family::Wfg(2 | 3) => (wfg::default_k(m) + 2, 2),
            Family::Wfg(_) => (wfg::default_k(m) + 1, 1),
        };
        if !(min_n..=MAX_VARIABLES).contains(&n) {
            return Err(ProblemError::DimensionsOutOfRange {
                problem,
                given: n,
                min: min_n,
                max: MAX_VARIABLES,
            });
        }
        if !(n - min_n).is_multiple_of(step) {
            return Err(ProblemError::DimensionsStep {
                problem,
                given: n,
                min: min_n,
                step,
            });
        }
        Ok(TestProblem {
            kind,
            n_var: n,
            n_obj: m,
        })
    }

    /// A problem with an explicit number of variables and objectives, brought
    /// into range instead of refused (ZDT always has 2 objectives; DTLZ needs
    /// `n_var >= n_obj`; see [`TestProblem::by_name`] for the checked form).
    pub fn new(kind: ProblemKind, n_var: usize, n_obj: usize) -> Self {
        let fam = kind.family();
        let m = match fam {
            Family::Zdt(_) => 2,
            _ => n_obj.clamp(2, MAX_OBJECTIVES),
        };
        let n = match fam {
            Family::Zdt(5) => 30 + 5 * (n_var.max(35) - 30) / 5,
            Family::Zdt(_) => n_var.max(2),
            Family::Dtlz(_) => n_var.max(m),
            Family::Wfg(w) => {
                let k = wfg::default_k(m);
                let l = n_var
                    .saturating_sub(k)
                    .max(if w == 2 || w == 3 { 2 } else { 1 });
                k + if w == 2 || w == 3 { l + l % 2 } else { l }
            }
        };
        TestProblem {
            kind,
            n_var: n,
            n_obj: m,
        }
    }

    /// A short name such as `ZDT1`, `DTLZ2-M3` or `WFG4-M2`.
    pub fn name(&self) -> String {
        let upper = self.kind.name().to_ascii_uppercase();
        match self.kind.family() {
            Family::Zdt(_) => upper,
            _ => format!("{upper}-M{}", self.n_obj),
        }
    }

    /// The problem kind.
    pub fn kind(&self) -> ProblemKind {
        self.kind
    }
    /// Number of decision variables.
    pub fn n_var(&self) -> usize {
        self.n_var
    }
    /// Number of objectives.
    pub fn n_obj(&self) -> usize {
        self.n_obj
    }

    /// Lower and upper bounds of each variable.
    pub fn bounds(&self) -> (Vec<f64>, Vec<f64>) {
        let mut lo = vec![0.0; self.n_var];
        let mut hi = vec![1.0; self.n_var];
        match self.kind.family() {
            Family::Zdt(4) => {
                for i in 1..self.n_var {
                    lo[i] = -5.0;
                    hi[i] = 5.0;
                }
            }
            Family::Wfg(_) => {
                for (i, h) in hi.iter_mut().enumerate() {
                    *h = 2.0 * (i + 1) as f64;
                }
            }
            _ => {}
        }
        (lo, hi)
    }

    /// The search space: floats `x0`, `x1`, ... within the bounds (integers
    /// 0..=1 for ZDT5's bits).
    pub fn space(&self) -> ConfigurationSpace {
        let (lo, hi) = self.bounds();
        let binary = self.kind == ProblemKind::Zdt5;
        let hps = (0..self.n_var)
            .map(|i| {
                let name = format!("x{i}");
                if binary {
                    Hyperparameter::int(&name, 0, 1, false, None)
                } else {
                    Hyperparameter::float(&name, lo[i], hi[i], false, None)
                }
            })
            .collect();
        ConfigurationSpace::new(hps, vec![], vec![])
            .expect("test problem spaces are valid")
            .with_name(self.name())
    }

    /// Evaluate a configuration of [`TestProblem::space`].
    pub fn evaluate_config(&self, config: &Configuration) -> Vec<f64> {
        let x: Vec<f64> = (0..self.n_var)
            .map(|i| config.get_f64(&format!("x{i}")).unwrap_or(f64::NAN))
            .collect();
        self.evaluate(&x)
    }

    /// Evaluate the objectives (all minimised) at `x` (length [`TestProblem::n_var`]).
    pub fn evaluate(&self, x: &[f64]) -> Vec<f64> {
        match self.kind.family() {
            Family::Zdt(w) => zdt::evaluate(w, x),
            Family::Dtlz(w) => dtlz::evaluate(w, x, self.n_obj),
            Family::Wfg(w) => wfg::evaluate(w, x, self.n_obj, wfg::default_k(self.n_obj)),
        }
    }

    /// A sample of about `n` points of the true Pareto front (for IGD+),
    /// dominated points removed: uniform in f1 for ZDT (ZDT5's 31 points
    /// whatever `n`); a simplex lattice for DTLZ1 (projected onto the sphere
    /// for DTLZ2-4); uniform in the free angle for DTLZ5-6's curve; a grid
    /// of the free objectives for DTLZ7 and of the position values (after
    /// all transformations) for WFG.
    pub fn pareto_front(&self, n: usize) -> Vec<Vec<f64>> {
        let pts = self.front_sample(n);
        let filter = matches!(
            self.kind,
            ProblemKind::Zdt3 | ProblemKind::Dtlz7 | ProblemKind::Wfg1 | ProblemKind::Wfg2
        );
        if !filter {
            return pts;
        }
        pareto::non_dominated(&pts)
            .into_iter()
            .map(|i| pts[i].clone())
            .collect()
    }

    /// About `n` points on the true front, possibly with dominated parts.
    fn front_sample(&self, n: usize) -> Vec<Vec<f64>> {
        let n = n.max(2);
        let m = self.n_obj;
        let line = |a: f64, b: f64| (0..n).map(move |i| a + (b - a) * i as f64 / (n - 1) as f64);
        match self.kind.family() {
            Family::Zdt(1 | 4) => line(0.0, 1.0).map(|f| vec![f, 1.0 - f.sqrt()]).collect(),
            Family::Zdt(2) => line(0.0, 1.0).map(|f| vec![f, 1.0 - f * f]).collect(),
            Family::Zdt(3) => line(0.0, zdt::ZDT3_F1_MAX)
                .map(|f| vec![f, 1.0 - f.sqrt() - f * (10.0 * PI * f).sin()])
                .collect(),
            Family::Zdt(5) => zdt::zdt5_front(self.n_var),
            Family::Zdt(_) => line(zdt::ZDT6_F1_MIN, 1.0)
                .map(|f| vec![f, 1.0 - f * f])
                .collect(),
            Family::Dtlz(1..=4) => simplex_lattice(m, n)
                .into_iter()
                .map(|w| {
                    if self.kind == ProblemKind::Dtlz1 {
                        w.iter().map(|v| 0.5 * v).collect()
                    } else {
                        let norm = w.iter().map(|v| v * v).sum::<f64>().sqrt();
                        w.iter().map(|v| v / norm).collect()
                    }
                })
                .collect(),
            Family::Dtlz(5 | 6) => line(0.0, 1.0).map(|t| dtlz::curve_point(t, m)).collect(),
            Family::Dtlz(_) => cube_grid(m - 1, n)
                .iter()
                .map(|f| dtlz::dtlz7_point(f))
                .collect(),
            Family::Wfg(w) => cube_grid(m - 1, n)
                .iter()
                .map(|x| wfg::front_point(w, x))
                .collect(),
        }
    }

    /// Best value of each objective over the true front.
    pub fn ideal_point(&self) -> Vec<f64> {
        self.front_extremes().0
    }

    /// Worst value of each objective over the true front.
    pub fn nadir_point(&self) -> Vec<f64> {
        self.front_extremes().1
    }

    fn front_extremes(&self) -> (Vec<f64>, Vec<f64>) {
        let front = self.pareto_front(self.dense_size());
        let n = pareto::Normalizer::fit(&front).expect("fronts are not empty");
        (n.lower, n.upper)
    }

    /// Front sample size used for the ideal and nadir points and the
    /// normalised optimal hypervolume.
    fn dense_size(&self) -> usize {
        match self.n_obj {
            2 => 100_000,
            3 => 40_000,
            _ => 5_000,
        }
    }

    /// Objectives scaled so that the true front's ideal point maps to 0 and
    /// its nadir point to 1 (what [`TestProblem::normalised_optimal_hypervolume`]
    /// is measured in).
    pub fn normaliser(&self) -> pareto::Normalizer {
        let (lower, upper) = self.front_extremes();
        pareto::Normalizer { lower, upper }
    }

    /// Drive `opt` on this problem for `evaluations` trials, asking up to `batch`
    /// at a time and telling every result before the next ask (budgets are
    /// ignored: these problems have one fidelity). Returns the objective vectors
    /// in evaluation order.
    pub fn minimise(
        &self,
        opt: &mut dyn Optimizer,
        evaluations: usize,
        batch: usize,
    ) -> Result<Vec<Vec<f64>>, OptimizerError> {
        let mut out = Vec::with_capacity(evaluations);
        while out.len() < evaluations {
            let trials = opt.ask(batch.max(1).min(evaluations - out.len()))?;
            if trials.is_empty() {
                return Err(OptimizerError::Invalid(format!(
                    "{} returned no trial with none pending",
                    opt.name()
                )));
            }
            for t in trials {
                let f = self.evaluate_config(&t.config);
                opt.tell(t.id, Outcome::Success(f.clone()))?;
                out.push(f);
            }
        }
        Ok(out)
    }

    /// The exact hypervolume of the true front at reference point 1.1 in every
    /// raw objective (values of `dsnn-search/tests/data/mo_problems.md` for ZDT and
    /// DTLZ2), where known: ZDT1-6, DTLZ1-4 with any number of objectives,
    /// DTLZ5 and DTLZ6 with two (the quarter circle). WFG fronts reach
    /// beyond 1.1; see [`TestProblem::normalised_optimal_hypervolume`].
    pub fn optimal_hypervolume(&self) -> Option<f64> {
        let m = self.n_obj;
        match (self.kind.family(), m) {
            (Family::Zdt(1 | 4), _) => Some(0.1 + 2.0 / 3.0 + 0.11),
            (Family::Zdt(2), _) => Some(0.1 + 1.0 / 3.0 + 0.11),
            (Family::Zdt(3), _) => Some(1.331_762_908_7),
            (Family::Zdt(5), _) => Some(pareto::hypervolume(
                &zdt::zdt5_front(self.n_var),
                &[1.1, 1.1],
            )),
            (Family::Zdt(_), _) => {
                let a = zdt::ZDT6_F1_MIN;
                Some(0.1 * (1.0 - a) + (1.0 - a.powi(3)) / 3.0 + 0.11)
            }
            // Front: simplex sum f = 1/2; HV = 1.1^m - (volume of the simplex corner).
            (Family::Dtlz(1), m) => {
                Some(1.1f64.powi(m as i32) - 0.5f64.powi(m as i32) / factorial(m))
            }
            (Family::Dtlz(2..=4), m) | (Family::Dtlz(5 | 6), m @ 2) => Some(sphere_hv(m)),
            _ => None,
        }
    }

    /// The hypervolume of the true front after [`TestProblem::normaliser`]
    /// (ideal 0, nadir 1) at reference 1.1 in every objective: exact for
    /// DTLZ1-4 (any number of objectives), ZDT1, ZDT2 and ZDT4, and for
    /// ZDT5's discrete front; elsewhere measured on a dense front sample
    /// (100,000 points for two objectives, a 200 x 200 grid for three;
    /// slightly below the true value). `None` for more than three
    /// objectives where no formula is known (DTLZ5-7, WFG).
    pub fn normalised_optimal_hypervolume(&self) -> Option<f64> {
        let m = self.n_obj;
        match self.kind.family() {
            Family::Zdt(1 | 2 | 4) => self.optimal_hypervolume(),
            Family::Dtlz(1) => Some(1.1f64.powi(m as i32) - 1.0 / factorial(m)),
            Family::Dtlz(2..=4) => Some(sphere_hv(m)),
            _ if m > 3 => None,
            _ => Some(self.normalised_hypervolume(&self.front_sample(self.dense_size()))),
        }
    }

    /// The hypervolume of `points` (raw objective vectors) after
    /// [`TestProblem::normaliser`] at reference 1.1, as a fraction of
    /// [`TestProblem::normalised_optimal_hypervolume`]: 1 at the true front,
    /// the score the optimizer tests and the peer benchmark use. `None` where
    /// that optimum is unknown.
    pub fn hypervolume_ratio(&self, points: &[Vec<f64>]) -> Option<f64> {
        Some(self.normalised_hypervolume(points) / self.normalised_optimal_hypervolume()?)
    }

    /// The hypervolume of `points` after the normaliser at reference 1.1.
    fn normalised_hypervolume(&self, points: &[Vec<f64>]) -> f64 {
        let norm = self.normaliser();
        let scaled: Vec<Vec<f64>> = points.iter().map(|f| norm.transform(f)).collect();
        pareto::hypervolume(&scaled, &vec![1.1; self.n_obj])
    }
}

/// `1.1^m` minus the positive orthant of the unit ball (`pi^(m/2) /
/// Gamma(m/2 + 1) / 2^m`).
fn sphere_hv(m: usize) -> f64 {
    // Gamma(m/2 + 1): m/2! for even m, (m/2)(m/2 - 1)...(1/2) sqrt(pi) for odd.
    let half = m as f64 / 2.0;
    let mut gamma = if m.is_multiple_of(2) { 1.0 } else { PI.sqrt() };
    let mut v = half;
    while v > 0.6 {
        gamma *= v;
        v -= 1.0;
    }
    if m % 2 == 1 {
        gamma *= 0.5;
    }
    1.1f64.powi(m as i32) - PI.powf(half) / gamma / 2f64.powi(m as i32)
}

fn factorial(m: usize) -> f64 {
    (1..=m).map(|k| k as f64).product()
}

fn binomial(n: usize, k: usize) -> usize {
    (0..k).fold(1usize, |acc, i| acc * (n - i) / (i + 1))
}

/// The largest simplex lattice in `m` dimensions with at most about `n`
/// points (weights summing to 1).
fn simplex_lattice(m: usize, n: usize) -> Vec<Vec<f64>> {
    let mut h = 1;
    while binomial(h + 1 + m - 1, m - 1) <= n {
        h += 1;
    }
    let mut out = Vec::new();
    let mut cur = vec![0usize; m];
    lattice(m, 0, h, &mut cur, &mut out);
    out.into_iter()
        .map(|w| w.iter().map(|&k| k as f64 / h as f64).collect())
        .collect()
}

fn lattice(m: usize, dim: usize, left: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
    if dim == m - 1 {
        cur[dim] = left;
        out.push(cur.clone());
        return;
    }
    for k in 0..=left {
        cur[dim] = k;
        lattice(m, dim + 1, left - k, cur, out);
    }
}

/// A regular grid of about `n` points over `[0, 1]^d` (bounds included).
fn cube_grid(d: usize, n: usize) -> Vec<Vec<f64>> {
    let side = ((n as f64).powf(1.0 / d as f64).round() as usize).max(2);
    let total = side.pow(d as u32);
    (0..total)
        .map(|mut idx| {
            (0..d)
                .map(|_| {
                    let i = idx % side;
                    idx /= side;
                    i as f64 / (side - 1) as f64
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::SearchSpace;

    #[test]
    fn dense_fronts_reach_the_optimal_hypervolume() {
        for p in [
            TestProblem::zdt1(),
            TestProblem::zdt2(),
            TestProblem::zdt3(),
            TestProblem::zdt6(),
            TestProblem::dtlz2(2),
        ] {
            let front = p.pareto_front(20_000);
            let hv = pareto::hypervolume(&front, &[1.1, 1.1]);
            let opt = p.optimal_hypervolume().unwrap();
            assert!(
                hv <= opt + 1e-9 && hv > opt - 2e-4,
                "{}: {hv} vs {opt}",
                p.name()
            );
        }
        let p = TestProblem::dtlz2(3);
        let front = p.pareto_front(5000);
        let hv = pareto::hypervolume(&front, &[1.1; 3]);
        let opt = p.optimal_hypervolume().unwrap();
        assert!(hv <= opt && hv > opt - 0.01, "{hv} vs {opt}");
        let p = TestProblem::dtlz1(3);
        let front = p.pareto_front(5000);
        assert!(front
            .iter()
            .all(|f| (f.iter().sum::<f64>() - 0.5).abs() < 1e-12));
        let hv = pareto::hypervolume(&front, &[1.1; 3]);
        let opt = p.optimal_hypervolume().unwrap();
        assert!(hv <= opt && hv > opt - 0.01, "{hv} vs {opt}");
    }

    #[test]
    fn sphere_hypervolume_matches_known_values() {
        assert!((sphere_hv(2) - (1.21 - PI / 4.0)).abs() < 1e-15);
        assert!((sphere_hv(3) - (1.331 - PI / 6.0)).abs() < 1e-15);
        // Unit 4-ball volume pi^2 / 2; its positive orthant 1/16 of it.
        assert!((sphere_hv(4) - (1.1f64.powi(4) - PI * PI / 32.0)).abs() < 1e-15);
        // 5-ball: 8 pi^2 / 15.
        assert!((sphere_hv(5) - (1.1f64.powi(5) - 8.0 * PI * PI / 15.0 / 32.0)).abs() < 1e-15);
    }

    #[test]
    fn pareto_set_points_lie_on_the_front() {
        let p = TestProblem::dtlz1(3);
        let mut x = vec![0.5; p.n_var()];
        x[0] = 0.3;
        x[1] = 0.8;
        let f = p.evaluate(&x);
        assert!((f.iter().sum::<f64>() - 0.5).abs() < 1e-12, "{f:?}");
        let p = TestProblem::zdt4();
        let mut x = vec![0.0; 10];
        x[0] = 0.25;
        assert_eq!(p.evaluate(&x), vec![0.25, 0.5]);
        let cfg = p
            .space()
            .decode(&[0.25, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]);
        assert_eq!(p.evaluate_config(&cfg.unwrap()), vec![0.25, 0.5]);
    }

    #[test]
    fn by_name_checks_every_setting() {
        let p = TestProblem::by_name("WFG4", None, Some(2)).unwrap();
        assert_eq!((p.n_var(), p.n_obj(), p.name()), (24, 2, "WFG4-M2".into()));
        let p = TestProblem::by_name("dtlz7", None, None).unwrap();
        assert_eq!((p.n_var(), p.n_obj()), (22, 3));
        assert!(matches!(
            TestProblem::by_name("zdt7", None, None),
            Err(ProblemError::UnknownName { name, allowed }) if name == "zdt7" && allowed.len() == 22
        ));
        assert_eq!(
            TestProblem::by_name("zdt1", None, Some(3)),
            Err(ProblemError::ObjectivesOutOfRange {
                problem: "ZDT1".into(),
                given: 3,
                min: 2,
                max: 2
            })
        );
        assert!(matches!(
            TestProblem::by_name("dtlz2", None, Some(11)),
            Err(ProblemError::ObjectivesOutOfRange { max: 10, .. })
        ));
        assert_eq!(
            TestProblem::by_name("dtlz2", Some(2), Some(3)),
            Err(ProblemError::DimensionsOutOfRange {
                problem: "DTLZ2".into(),
                given: 2,
                min: 3,
                max: MAX_VARIABLES
            })
        );
        assert_eq!(
            TestProblem::by_name("wfg2", Some(25), Some(2)),
            Err(ProblemError::DimensionsStep {
                problem: "WFG2".into(),
                given: 25,
                min: 6,
                step: 2
            })
        );
        assert!(TestProblem::by_name("wfg2", Some(26), Some(2)).is_ok());
        assert!(matches!(
            TestProblem::by_name("zdt5", Some(81), None),
            Err(ProblemError::DimensionsStep {
                min: 35,
                step: 5,
                ..
            })
        ));
        for name in NAMES {
            let p = TestProblem::by_name(name, None, None).unwrap();
            let x: Vec<f64> = {
                let (lo, hi) = p.bounds();
                lo.iter().zip(&hi).map(|(l, h)| 0.5 * (l + h)).collect()
            };
            assert_eq!(p.evaluate(&x).len(), p.n_obj(), "{name}");
            assert_eq!(p.space().dim(), p.n_var());
        }
    }
}

//! Standard multi-objective test problems (ZDT1-4, ZDT6, DTLZ1, DTLZ2) as
//! defined in pymoo 0.6.2, with samples of their true fronts and their optimal
//! hypervolumes, for testing and benchmarking optimizers.

use crate::optimizer::{Optimizer, OptimizerError, Outcome};
use crate::pareto;
use crate::space::{Configuration, ConfigurationSpace, Hyperparameter};
use std::f64::consts::PI;

/// Which test problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// ZDT1: convex front.
    Zdt1,
    /// ZDT2: concave front.
    Zdt2,
    /// ZDT3: disconnected front.
    Zdt3,
    /// ZDT4: multimodal (21^9 local fronts).
    Zdt4,
    /// ZDT6: non-uniform, biased front.
    Zdt6,
    /// DTLZ1: linear front `sum f = 0.5`, multimodal `g`.
    Dtlz1,
    /// DTLZ2: spherical front `sum f^2 = 1`.
    Dtlz2,
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

    /// A problem with an explicit number of variables and objectives (ZDT
    /// problems always have 2 objectives; DTLZ needs `n_var >= n_obj`).
    pub fn new(kind: ProblemKind, n_var: usize, n_obj: usize) -> Self {
        let is_zdt = !matches!(kind, ProblemKind::Dtlz1 | ProblemKind::Dtlz2);
        let n_obj = if is_zdt { 2 } else { n_obj.max(2) };
        TestProblem {
            kind,
            n_var: n_var.max(if is_zdt { 2 } else { n_obj }),
            n_obj,
        }
    }

    /// A short name such as `ZDT1` or `DTLZ2-M3`.
    pub fn name(&self) -> String {
        match self.kind {
            ProblemKind::Zdt1 => "ZDT1".into(),
            ProblemKind::Zdt2 => "ZDT2".into(),
            ProblemKind::Zdt3 => "ZDT3".into(),
            ProblemKind::Zdt4 => "ZDT4".into(),
            ProblemKind::Zdt6 => "ZDT6".into(),
            ProblemKind::Dtlz1 => format!("DTLZ1-M{}", self.n_obj),
            ProblemKind::Dtlz2 => format!("DTLZ2-M{}", self.n_obj),
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
        if self.kind == ProblemKind::Zdt4 {
            for i in 1..self.n_var {
                lo[i] = -5.0;
                hi[i] = 5.0;
            }
        }
        (lo, hi)
    }

    /// The search space: floats `x0`, `x1`, ... within the bounds.
    pub fn space(&self) -> ConfigurationSpace {
        let (lo, hi) = self.bounds();
        let hps = (0..self.n_var)
            .map(|i| Hyperparameter::float(&format!("x{i}"), lo[i], hi[i], false, None))
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
        let n = self.n_var;
        let tail = &x[1..];
        match self.kind {
            ProblemKind::Zdt1 | ProblemKind::Zdt2 | ProblemKind::Zdt3 => {
                let f1 = x[0];
                let g = 1.0 + 9.0 / (n - 1) as f64 * tail.iter().sum::<f64>();
                let h = match self.kind {
                    ProblemKind::Zdt1 => 1.0 - (f1 / g).sqrt(),
                    ProblemKind::Zdt2 => 1.0 - (f1 / g).powi(2),
                    _ => 1.0 - (f1 / g).sqrt() - (f1 / g) * (10.0 * PI * f1).sin(),
                };
                vec![f1, g * h]
            }
            ProblemKind::Zdt4 => {
                let f1 = x[0];
                let g = 1.0
                    + 10.0 * (n - 1) as f64
                    + tail
                        .iter()
                        .map(|v| v * v - 10.0 * (4.0 * PI * v).cos())
                        .sum::<f64>();
                vec![f1, g * (1.0 - (f1 / g).sqrt())]
            }
            ProblemKind::Zdt6 => {
                let f1 = 1.0 - (-4.0 * x[0]).exp() * (6.0 * PI * x[0]).sin().powi(6);
                let g = 1.0 + 9.0 * (tail.iter().sum::<f64>() / (n - 1) as f64).powf(0.25);
                vec![f1, g * (1.0 - (f1 / g).powi(2))]
            }
            ProblemKind::Dtlz1 | ProblemKind::Dtlz2 => {
                let m = self.n_obj;
                let xm = &x[m - 1..];
                let g = if self.kind == ProblemKind::Dtlz1 {
                    100.0
                        * (xm.len() as f64
                            + xm.iter()
                                .map(|v| (v - 0.5).powi(2) - (20.0 * PI * (v - 0.5)).cos())
                                .sum::<f64>())
                } else {
                    xm.iter().map(|v| (v - 0.5).powi(2)).sum::<f64>()
                };
                (0..m)
                    .map(|i| {
                        // Objective i (0-based) uses the first m-1-i position variables
                        // fully, and the next one as the "last" factor for i > 0.
                        let mut f = if self.kind == ProblemKind::Dtlz1 {
                            0.5 * (1.0 + g)
                        } else {
                            1.0 + g
                        };
                        for &xj in &x[..m - 1 - i] {
                            f *= if self.kind == ProblemKind::Dtlz1 {
                                xj
                            } else {
                                (xj * PI / 2.0).cos()
                            };
                        }
                        if i > 0 {
                            let xj = x[m - 1 - i];
                            f *= if self.kind == ProblemKind::Dtlz1 {
                                1.0 - xj
                            } else {
                                (xj * PI / 2.0).sin()
                            };
                        }
                        f
                    })
                    .collect()
            }
        }
    }

    /// A sample of about `n` points of the true Pareto front (for IGD+): uniform in
    /// f1 for ZDT (filtered to the non-dominated part for ZDT3), and a simplex
    /// lattice (projected to the sphere for DTLZ2) for DTLZ.
    pub fn pareto_front(&self, n: usize) -> Vec<Vec<f64>> {
        let n = n.max(2);
        let line = |a: f64, b: f64| (0..n).map(move |i| a + (b - a) * i as f64 / (n - 1) as f64);
        match self.kind {
            ProblemKind::Zdt1 | ProblemKind::Zdt4 => {
                line(0.0, 1.0).map(|f| vec![f, 1.0 - f.sqrt()]).collect()
            }
            ProblemKind::Zdt2 => line(0.0, 1.0).map(|f| vec![f, 1.0 - f * f]).collect(),
            ProblemKind::Zdt6 => line(ZDT6_F1_MIN, 1.0)
                .map(|f| vec![f, 1.0 - f * f])
                .collect(),
            ProblemKind::Zdt3 => {
                let pts: Vec<Vec<f64>> = line(0.0, ZDT3_F1_MAX)
                    .map(|f| vec![f, 1.0 - f.sqrt() - f * (10.0 * PI * f).sin()])
                    .collect();
                pareto::non_dominated(&pts)
                    .into_iter()
                    .map(|i| pts[i].clone())
                    .collect()
            }
            ProblemKind::Dtlz1 | ProblemKind::Dtlz2 => {
                let m = self.n_obj;
                // Lattice with h divisions: C(h+m-1, m-1) points; pick h to reach ~n.
                let mut h = 1;
                while binomial(h + 1 + m - 1, m - 1) <= n {
                    h += 1;
                }
                let mut out = Vec::new();
                let mut cur = vec![0usize; m];
                lattice(m, 0, h, &mut cur, &mut out);
                out.into_iter()
                    .map(|w| {
                        let w: Vec<f64> = w.iter().map(|&k| k as f64 / h as f64).collect();
                        if self.kind == ProblemKind::Dtlz1 {
                            w.iter().map(|v| 0.5 * v).collect()
                        } else {
                            let norm = w.iter().map(|v| v * v).sum::<f64>().sqrt();
                            w.iter().map(|v| v / norm).collect()
                        }
                    })
                    .collect()
            }
        }
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
    /// objective (values from `shared/golden/mo_problems.md`), where known.
    pub fn optimal_hypervolume(&self) -> Option<f64> {
        match (self.kind, self.n_obj) {
            (ProblemKind::Zdt1 | ProblemKind::Zdt4, _) => Some(0.1 + 2.0 / 3.0 + 0.11),
            (ProblemKind::Zdt2, _) => Some(0.1 + 1.0 / 3.0 + 0.11),
            (ProblemKind::Zdt3, _) => Some(1.331_762_908_7),
            (ProblemKind::Zdt6, _) => {
                let a = ZDT6_F1_MIN;
                Some(0.1 * (1.0 - a) + (1.0 - a.powi(3)) / 3.0 + 0.11)
            }
            (ProblemKind::Dtlz2, 2) => Some(1.21 - PI / 4.0),
            (ProblemKind::Dtlz2, 3) => Some(1.331 - PI / 6.0),
            // Front: simplex sum f = 1/2; HV = 1.1^m - (volume of the simplex corner).
            (ProblemKind::Dtlz1, m) => {
                let fact: f64 = (1..=m).map(|k| k as f64).product();
                Some(1.1f64.powi(m as i32) - 0.5f64.powi(m as i32) / fact)
            }
            _ => None,
        }
    }
}

/// Smallest f1 reachable on ZDT6 (pymoo's constant).
const ZDT6_F1_MIN: f64 = 0.280_775_319_1;
/// Largest f1 on ZDT3's front.
const ZDT3_F1_MAX: f64 = 0.851_832_865_4;

fn binomial(n: usize, k: usize) -> usize {
    (0..k).fold(1usize, |acc, i| acc * (n - i) / (i + 1))
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
}

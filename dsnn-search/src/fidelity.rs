//! Fidelity schedules: how many configurations run at which budget.
//!
//! Budgets are plain numbers in the caller's unit (epochs, a data fraction, ...);
//! a caller training for whole epochs rounds them (SMAC does the same, so
//! Hyperband from 2 to 20 epochs with eta 3 asks for 2.22 and 6.67 epochs).

use crate::optimizer::OptimizerError;

/// One rung of a bracket: `n_configs` configurations at `budget`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rung {
    /// How many configurations run in this rung.
    pub n_configs: usize,
    /// The budget each of them gets.
    pub budget: f64,
}

/// A bracket: successive rungs, each keeping the best of the previous one.
#[derive(Clone, Debug, PartialEq)]
pub struct Bracket {
    /// The rungs, lowest budget first.
    pub rungs: Vec<Rung>,
}

/// A fidelity schedule: the brackets an optimizer cycles through.
pub trait FidelitySchedule: Send + Sync {
    /// The brackets, in the order they are run (then repeated).
    fn brackets(&self) -> Vec<Bracket>;
    /// The largest budget of the schedule (the "full" fidelity).
    fn max_budget(&self) -> f64;
}

/// Every trial at one budget: a single bracket with a single rung.
#[derive(Clone, Debug, PartialEq)]
pub struct FixedBudget {
    /// The budget.
    pub budget: f64,
}

impl FidelitySchedule for FixedBudget {
    fn brackets(&self) -> Vec<Bracket> {
        vec![Bracket {
            rungs: vec![Rung {
                n_configs: 1,
                budget: self.budget,
            }],
        }]
    }
    fn max_budget(&self) -> f64 {
        self.budget
    }
}

/// Hyperband (Li et al. 2018) with SMAC's bracket arithmetic:
/// `s_max = floor(log_eta(max/min))`; bracket `s` (from `s_max` down to 0) starts
/// `ceil(eta^s (s_max+1)/(s+1))` configurations, and rung `i` runs
/// `floor(n eta^-i)` of them at `max eta^(i-s)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Hyperband {
    /// Smallest budget.
    pub min_budget: f64,
    /// Largest budget.
    pub max_budget: f64,
    /// Reduction factor (3 in the paper).
    pub eta: f64,
}

/// Successive halving: Hyperband's most aggressive bracket (`s = s_max`) only.
#[derive(Clone, Debug, PartialEq)]
pub struct SuccessiveHalving {
    /// Smallest budget.
    pub min_budget: f64,
    /// Largest budget.
    pub max_budget: f64,
    /// Reduction factor.
    pub eta: f64,
}

fn check(min: f64, max: f64, eta: f64) -> Result<(), OptimizerError> {
    if !(min > 0.0 && max >= min && min.is_finite() && max.is_finite()) {
        return Err(OptimizerError::Invalid(format!(
            "budgets need 0 < min <= max, got min {min}, max {max}"
        )));
    }
    if !(eta > 1.0 && eta.is_finite()) {
        return Err(OptimizerError::Invalid(format!(
            "eta must be > 1, got {eta}"
        )));
    }
    // The most aggressive bracket starts eta^s_max (s_max + 1) configurations
    // at once: bounded, so that a schedule never asks for more than anyone
    // runs (1..f64::MAX at eta 2 made `s_max` loop for minutes).
    let s = ((max / min).ln() / eta.ln() + 1e-9).floor();
    if eta.powf(s) * (s + 1.0) > MAX_BRACKET_CONFIGS as f64 {
        return Err(OptimizerError::Invalid(format!(
            "min {min}, max {max} and eta {eta} give a first bracket of {:.3e} configurations \
             (allowed: at most {MAX_BRACKET_CONFIGS}; raise min or eta, or lower max)",
            eta.powf(s) * (s + 1.0)
        )));
    }
    Ok(())
}

/// The most configurations a schedule's largest bracket may start with.
pub const MAX_BRACKET_CONFIGS: usize = 100_000;

/// `floor(log_eta(max/min))`, robust to rounding at exact powers.
fn s_max(min: f64, max: f64, eta: f64) -> usize {
    let mut s = 0;
    while min * eta.powi(s as i32 + 1) <= max * (1.0 + 1e-9) {
        s += 1;
    }
    s
}

fn bracket(s: usize, s_max: usize, max: f64, eta: f64) -> Bracket {
    let n = (eta.powi(s as i32) * (s_max + 1) as f64 / (s + 1) as f64 - 1e-9).ceil() as usize;
    let rungs = (0..=s)
        .map(|i| Rung {
            n_configs: ((n as f64 * eta.powi(-(i as i32))) + 1e-9).floor().max(1.0) as usize,
            budget: max * eta.powi(i as i32 - s as i32),
        })
        .collect();
    Bracket { rungs }
}

impl Hyperband {
    /// A checked Hyperband schedule.
    pub fn new(min_budget: f64, max_budget: f64, eta: f64) -> Result<Self, OptimizerError> {
        check(min_budget, max_budget, eta)?;
        Ok(Hyperband {
            min_budget,
            max_budget,
            eta,
        })
    }
}

impl FidelitySchedule for Hyperband {
    fn brackets(&self) -> Vec<Bracket> {
        let sm = s_max(self.min_budget, self.max_budget, self.eta);
        (0..=sm)
            .rev()
            .map(|s| bracket(s, sm, self.max_budget, self.eta))
            .collect()
    }
    fn max_budget(&self) -> f64 {
        self.max_budget
    }
}

impl SuccessiveHalving {
    /// A checked successive-halving schedule.
    pub fn new(min_budget: f64, max_budget: f64, eta: f64) -> Result<Self, OptimizerError> {
        check(min_budget, max_budget, eta)?;
        Ok(SuccessiveHalving {
            min_budget,
            max_budget,
            eta,
        })
    }
}

impl FidelitySchedule for SuccessiveHalving {
    fn brackets(&self) -> Vec<Bracket> {
        let sm = s_max(self.min_budget, self.max_budget, self.eta);
        vec![bracket(sm, sm, self.max_budget, self.eta)]
    }
    fn max_budget(&self) -> f64 {
        self.max_budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(b: &[Bracket]) -> Vec<Vec<(usize, f64)>> {
        b.iter()
            .map(|b| {
                b.rungs
                    .iter()
                    .map(|r| (r.n_configs, (r.budget * 100.0).round() / 100.0))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn schedules_that_would_start_too_many_configurations_are_refused() {
        // Found by tests/fuzz_experiment.rs: max = f64::MAX hung the check.
        for (min, max, eta) in [(1.0, f64::MAX, 2.0), (1.0, 1e6, 1.01), (1.0, 1e6, 3.0)] {
            let e = Hyperband::new(min, max, eta).unwrap_err();
            assert!(e.to_string().contains("at most 100000"), "{e}");
            assert!(SuccessiveHalving::new(min, max, eta).is_err());
        }
        // The paper's and the quick start's schedules are far inside.
        assert!(Hyperband::new(2.0, 20.0, 3.0).is_ok());
        assert!(Hyperband::new(1.0, 1000.0, 3.0).is_ok());
    }

    #[test]
    fn hyperband_matches_smac_for_2_20_3() {
        let hb = Hyperband::new(2.0, 20.0, 3.0).unwrap();
        assert_eq!(
            shape(&hb.brackets()),
            vec![
                vec![(9, 2.22), (3, 6.67), (1, 20.0)],
                vec![(5, 6.67), (1, 20.0)],
                vec![(3, 20.0)],
            ]
        );
        let sh = SuccessiveHalving::new(2.0, 20.0, 3.0).unwrap();
        assert_eq!(
            shape(&sh.brackets()),
            vec![vec![(9, 2.22), (3, 6.67), (1, 20.0)]]
        );
    }

    #[test]
    fn hyperband_exact_powers_and_classic_example() {
        // max/min = 81 = 3^4 exactly: s_max must be 4, not 3.
        let hb = Hyperband::new(1.0, 81.0, 3.0).unwrap();
        let b = hb.brackets();
        assert_eq!(b.len(), 5);
        assert_eq!(
            b[0].rungs.iter().map(|r| r.n_configs).collect::<Vec<_>>(),
            vec![81, 27, 9, 3, 1]
        );
        assert_eq!(b[0].rungs[0].budget, 1.0);
        // Li et al.'s table: s=3 starts 34, s=2 15, s=1 8, s=0 5.
        let firsts: Vec<usize> = b.iter().map(|x| x.rungs[0].n_configs).collect();
        assert_eq!(firsts, vec![81, 34, 15, 8, 5]);
        assert_eq!(
            b[1].rungs.iter().map(|r| r.n_configs).collect::<Vec<_>>(),
            vec![34, 11, 3, 1]
        );
        assert!(Hyperband::new(0.0, 1.0, 3.0).is_err());
        assert!(Hyperband::new(1.0, 2.0, 1.0).is_err());
        assert_eq!(
            FixedBudget { budget: 7.0 }.brackets()[0].rungs[0].budget,
            7.0
        );
    }
}

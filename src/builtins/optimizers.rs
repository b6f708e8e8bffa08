//! The built-in optimizers and proposers: `random`, `parego`, `tpe`,
//! `evotpe`, `gpehvi` and `evogp` (proposers: MO-Hyperband under a multi-fidelity schedule, "Hyperband +
//! ParEGO" as in the paper) and `nsga2` (single budget).

use std::sync::Arc;

use dsnn_search::{
    EvoGpProposer, EvoGpSettings, EvoTpeProposer, EvoTpeSettings, GpEhviProposer, GpEhviSettings,
    Nsga2, Nsga2Settings, Optimizer, ParEgoProposer, ParEgoSettings, Proposer, RandomProposer,
    TpeProposer, TpeSettings,
};
use serde::Deserialize;

use crate::registry::{OptimizerFactory, OptimizerSetup, ProposerFactory, Registry};
use crate::settings::{ConfigError, Section};

/// Registers `random`, `parego`, `tpe`, `evotpe`, `gpehvi`, `evogp` and `nsga2`.
pub fn register(r: &mut Registry) {
    r.register_proposer("random", Arc::new(RandomFactory));
    r.register_proposer("parego", Arc::new(ParEgoFactory));
    r.register_proposer("tpe", Arc::new(TpeFactory));
    r.register_proposer("evotpe", Arc::new(EvoTpeFactory));
    r.register_proposer("gpehvi", Arc::new(GpEhviFactory));
    r.register_proposer("evogp", Arc::new(EvoGpFactory));
    r.register_optimizer("nsga2", Arc::new(Nsga2Factory));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoSettings {}

struct RandomFactory;

impl ProposerFactory for RandomFactory {
    fn description(&self) -> String {
        "uniform random configurations (MO-Hyperband under a multi-fidelity schedule)".into()
    }

    fn build(
        &self,
        settings: &Section,
        setup: &OptimizerSetup,
    ) -> Result<Box<dyn Proposer>, ConfigError> {
        settings.parse::<NoSettings>()?;
        Ok(Box::new(RandomProposer::new(setup.space.clone())))
    }
}

/// `[optimizer] kind = "parego"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParEgoToml {
    /// Random configurations before the surrogate is used.
    #[serde(default)]
    n_initial: Option<usize>,
    /// Augmentation weight rho.
    #[serde(default)]
    rho: Option<f64>,
    /// Probability of a random proposal instead of a model-based one.
    #[serde(default)]
    random_fraction: Option<f64>,
}

struct ParEgoFactory;

impl ProposerFactory for ParEgoFactory {
    fn description(&self) -> String {
        "ParEGO: random Chebyshev scalarisations and a random-forest surrogate (Hyperband + ParEGO under a multi-fidelity schedule)".into()
    }

    fn build(
        &self,
        settings: &Section,
        setup: &OptimizerSetup,
    ) -> Result<Box<dyn Proposer>, ConfigError> {
        let t: ParEgoToml = settings.parse()?;
        let mut s = ParEgoSettings::default();
        if let Some(n) = t.n_initial {
            if n > MAX_POPULATION {
                return Err(settings.out_of_range("n_initial", n, "0..=100000"));
            }
            s.n_initial = n;
        }
        if let Some(r) = t.rho {
            if !(r.is_finite() && r >= 0.0) {
                return Err(settings.out_of_range("rho", r, ">= 0"));
            }
            s.rho = r;
        }
        if let Some(r) = t.random_fraction {
            if !(0.0..=1.0).contains(&r) {
                return Err(settings.out_of_range("random_fraction", r, "0..=1"));
            }
            s.random_fraction = r;
        }
        Ok(Box::new(ParEgoProposer::new(setup.space.clone(), s)))
    }
}

struct TpeFactory;

impl ProposerFactory for TpeFactory {
    fn description(&self) -> String {
        "multi-objective TPE (Parzen estimators of good and bad trials; MO-Hyperband under a multi-fidelity schedule)".into()
    }

    fn build(
        &self,
        settings: &Section,
        setup: &OptimizerSetup,
    ) -> Result<Box<dyn Proposer>, ConfigError> {
        let s: TpeSettings = settings.parse()?;
        s.validate()
            .map_err(|e| settings.error("", format!("`optimizer`: {e}")))?;
        Ok(Box::new(TpeProposer::new(setup.space.clone(), s)))
    }
}

struct EvoTpeFactory;

impl ProposerFactory for EvoTpeFactory {
    fn description(&self) -> String {
        "multi-objective TPE with part of its proposals bred from the best trials as NSGA-II does (MO-Hyperband under a multi-fidelity schedule)".into()
    }

    fn build(
        &self,
        settings: &Section,
        setup: &OptimizerSetup,
    ) -> Result<Box<dyn Proposer>, ConfigError> {
        let s: EvoTpeSettings = settings.parse()?;
        s.validate()
            .map_err(|e| settings.error("", format!("`optimizer`: {e}")))?;
        Ok(Box::new(EvoTpeProposer::new(setup.space.clone(), s)))
    }
}

struct GpEhviFactory;

impl ProposerFactory for GpEhviFactory {
    fn description(&self) -> String {
        "Gaussian processes with expected hypervolume improvement, for small budgets (MO-Hyperband under a multi-fidelity schedule)".into()
    }

    fn build(
        &self,
        settings: &Section,
        setup: &OptimizerSetup,
    ) -> Result<Box<dyn Proposer>, ConfigError> {
        let s: GpEhviSettings = settings.parse()?;
        s.validate()
            .map_err(|e| settings.error("", format!("`optimizer`: {e}")))?;
        Ok(Box::new(GpEhviProposer::new(setup.space.clone(), s)))
    }
}

struct EvoGpFactory;

impl ProposerFactory for EvoGpFactory {
    fn description(&self) -> String {
        "GP/EHVI where leave-one-out checks show the models predict, evolutionary TPE elsewhere, for small budgets (MO-Hyperband under a multi-fidelity schedule)".into()
    }

    fn build(
        &self,
        settings: &Section,
        setup: &OptimizerSetup,
    ) -> Result<Box<dyn Proposer>, ConfigError> {
        let s: EvoGpSettings = settings.parse()?;
        s.validate()
            .map_err(|e| settings.error("", format!("`optimizer`: {e}")))?;
        Ok(Box::new(EvoGpProposer::new(setup.space.clone(), s)))
    }
}

/// `[optimizer] kind = "nsga2"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Nsga2Toml {
    /// Population size.
    #[serde(default)]
    population: Option<usize>,
    /// Offspring per generation.
    #[serde(default)]
    offspring: Option<usize>,
}

/// The largest NSGA-II population or offspring count a file may ask for.
const MAX_POPULATION: usize = 100_000;

struct Nsga2Factory;

impl OptimizerFactory for Nsga2Factory {
    fn description(&self) -> String {
        "NSGA-II (every trial at the full budget)".into()
    }

    fn multi_fidelity(&self) -> bool {
        false
    }

    fn build(
        &self,
        settings: &Section,
        setup: &OptimizerSetup,
    ) -> Result<Box<dyn Optimizer>, ConfigError> {
        let t: Nsga2Toml = settings.parse()?;
        // The population follows the run's length (`stop.trials`).
        let mut s = Nsga2Settings {
            budget: setup.budget.max,
            ..Nsga2Settings::for_budget(setup.trials)
        };
        // Bounded: NSGA-II samples its whole first population at once
        // (a population of 2^63 hung `dsnn check`).
        if let Some(p) = t.population {
            if !(2..=MAX_POPULATION).contains(&p) {
                return Err(settings.out_of_range("population", p, "2..=100000"));
            }
            s.population = p;
            s.offspring = p;
        }
        if let Some(o) = t.offspring {
            if !(1..=MAX_POPULATION).contains(&o) {
                return Err(settings.out_of_range("offspring", o, "1..=100000"));
            }
            s.offspring = o;
        }
        Nsga2::new(setup.space.clone(), s, setup.seed)
            .map(|o| Box::new(o) as Box<dyn Optimizer>)
            .map_err(|e| settings.error("", e.to_string()))
    }
}

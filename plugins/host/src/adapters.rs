//! Plugin instances behind the built-in traits: [`PluginOptimizer`]
//! implements `dsnn_search::Optimizer`, [`PluginProposer`]
//! `dsnn_search::Proposer`, [`PluginMeter`] `dsnn_energy::EnergyMeter`.

use std::collections::BTreeSet;

use dsnn_energy::{
    Component, ComponentEnergy, EnergyError, EnergyMeter, EnergyReading, Provenance, RegionTimer,
    RusageClock,
};
use dsnn_plugin_api::abi_stable::std_types::{RResult, RSlice};
use dsnn_plugin_api::{
    MeterBox, OptimizerBox, PComponent, PConfiguration, PError, PObservation, PReading, ProposerBox,
};
use dsnn_search::{
    Configuration, ConfigurationSpace, Observation, Optimizer, OptimizerError, Outcome, Proposer,
    SearchSpace, Trial, TrialId,
};

/// The optimizer error for a plugin error: protocol errors keep their kind,
/// everything else names the plugin.
fn optimizer_error(plugin: &str, e: PError) -> OptimizerError {
    match e {
        PError::UnknownTrial(id) => OptimizerError::UnknownTrial(id),
        PError::ObjectiveCount { id, expected, got } => OptimizerError::ObjectiveCount {
            id,
            expected: expected as usize,
            got: got as usize,
        },
        PError::NonFinite(id) => OptimizerError::NonFinite(id),
        PError::Invalid(m) => OptimizerError::Invalid(format!("plugin `{plugin}`: {m}")),
        PError::Panic(m) => OptimizerError::Plugin(format!("`{plugin}` {m}")),
        other => OptimizerError::Plugin(format!("`{plugin}`: {other}")),
    }
}

/// An optimizer plugin instance as a `dsnn_search::Optimizer`.
pub(crate) struct PluginOptimizer {
    plugin: String,
    name: String,
    inner: OptimizerBox,
    space: ConfigurationSpace,
    /// Trials handed out and not yet told (the host's own check, so that a
    /// plugin cannot be told about a trial it never gave).
    pending: BTreeSet<TrialId>,
    /// Set when the plugin panicked: its state is unknown from then on.
    broken: Option<String>,
}

impl PluginOptimizer {
    pub(crate) fn new(plugin: String, inner: OptimizerBox, space: ConfigurationSpace) -> Self {
        let name = inner.name().into_string();
        PluginOptimizer {
            plugin,
            name,
            inner,
            space,
            pending: BTreeSet::new(),
            broken: None,
        }
    }

    fn check_usable(&self) -> Result<(), OptimizerError> {
        match &self.broken {
            Some(why) => Err(OptimizerError::Plugin(format!(
                "`{}` is unusable after an earlier panic ({why})",
                self.plugin
            ))),
            None => Ok(()),
        }
    }

    fn fail(&mut self, e: PError) -> OptimizerError {
        if let PError::Panic(m) = &e {
            log::error!("optimizer plugin `{}` {m}", self.plugin);
            self.broken = Some(m.to_string());
        }
        optimizer_error(&self.plugin, e)
    }
}

impl Optimizer for PluginOptimizer {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Trial>, OptimizerError> {
        self.check_usable()?;
        let trials = match self.inner.ask(n as u64) {
            RResult::ROk(t) => t,
            RResult::RErr(e) => return Err(self.fail(e)),
        };
        if trials.len() > n {
            return Err(OptimizerError::Plugin(format!(
                "`{}` returned {} trials for ask({n})",
                self.plugin,
                trials.len()
            )));
        }
        let mut out = Vec::with_capacity(trials.len());
        for t in trials {
            let t = Trial::from(t);
            if let Err(e) = self.space.validate(&t.config) {
                return Err(OptimizerError::Plugin(format!(
                    "`{}` proposed an invalid configuration for trial {}: {e}",
                    self.plugin, t.id
                )));
            }
            if !t.budget.is_finite() || t.budget <= 0.0 {
                return Err(OptimizerError::Plugin(format!(
                    "`{}` gave trial {} the budget {}; budgets are positive",
                    self.plugin, t.id, t.budget
                )));
            }
            if !self.pending.insert(t.id) {
                return Err(OptimizerError::Plugin(format!(
                    "`{}` handed out trial id {} twice",
                    self.plugin, t.id
                )));
            }
            out.push(t);
        }
        Ok(out)
    }

    fn tell(&mut self, id: TrialId, outcome: Outcome) -> Result<(), OptimizerError> {
        self.check_usable()?;
        if !self.pending.contains(&id) {
            return Err(OptimizerError::UnknownTrial(id));
        }
        if let Outcome::Success(f) = &outcome {
            if f.iter().any(|v| !v.is_finite()) {
                return Err(OptimizerError::NonFinite(id));
            }
        }
        match self.inner.tell(id, (&outcome).into()) {
            RResult::ROk(()) => {
                self.pending.remove(&id);
                Ok(())
            }
            RResult::RErr(e) => Err(self.fail(e)),
        }
    }
}

/// A plugin's proposer as a `dsnn_search::Proposer`, for Hyperband.
///
/// `dsnn_search::Proposer::propose` hands over the whole history; the
/// plugin is told each observation once, in history order (which the
/// optimizer driving the proposer only ever appends to), just before the
/// next proposal.
pub(crate) struct PluginProposer {
    plugin: String,
    name: String,
    inner: ProposerBox,
    space: ConfigurationSpace,
    /// How many observations of the history the plugin has been told.
    told: usize,
    /// Set when the plugin panicked: its state is unknown from then on.
    broken: Option<String>,
}

impl PluginProposer {
    pub(crate) fn new(plugin: String, inner: ProposerBox, space: ConfigurationSpace) -> Self {
        let name = inner.name().into_string();
        PluginProposer {
            plugin,
            name,
            inner,
            space,
            told: 0,
            broken: None,
        }
    }

    fn fail(&mut self, e: PError) -> OptimizerError {
        if let PError::Panic(m) = &e {
            log::error!("proposer of optimizer plugin `{}` {m}", self.plugin);
            self.broken = Some(m.to_string());
        }
        optimizer_error(&self.plugin, e)
    }

    fn plugin_error(&self, message: String) -> OptimizerError {
        OptimizerError::Plugin(format!("`{}` {message}", self.plugin))
    }
}

impl Proposer for PluginProposer {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn propose(
        &mut self,
        n: usize,
        history: &[Observation],
        pending: &[Configuration],
        _rng: &mut dyn rand::RngCore,
    ) -> Result<Vec<Configuration>, OptimizerError> {
        if let Some(why) = &self.broken {
            return Err(self.plugin_error(format!("is unusable after an earlier panic ({why})")));
        }
        if history.len() < self.told {
            return Err(self.plugin_error(format!(
                "was told {} observations, but the history now has {}",
                self.told,
                history.len()
            )));
        }
        for observation in &history[self.told..] {
            if let RResult::RErr(e) = self.inner.tell(PObservation::from(observation)) {
                return Err(self.fail(e));
            }
            self.told += 1;
        }
        let pending: Vec<PConfiguration> = pending.iter().map(PConfiguration::from).collect();
        let configs = match self.inner.propose(n as u64, RSlice::from_slice(&pending)) {
            RResult::ROk(c) => c,
            RResult::RErr(e) => return Err(self.fail(e)),
        };
        if configs.len() > n {
            return Err(self.plugin_error(format!(
                "proposed {} configurations when asked for {n}",
                configs.len()
            )));
        }
        let mut out = Vec::with_capacity(configs.len());
        for c in configs {
            let c = Configuration::from(c);
            if let Err(e) = self.space.validate(&c) {
                return Err(
                    self.plugin_error(format!("proposed an invalid configuration ({c}): {e}"))
                );
            }
            out.push(c);
        }
        Ok(out)
    }
}

/// The energy error for a meter plugin error.
fn energy_error(plugin: &str, e: PError) -> EnergyError {
    match e {
        PError::Unavailable(reason) => EnergyError::unavailable(plugin, reason.into_string()),
        PError::NotStarted => EnergyError::NotStarted(plugin.to_string()),
        PError::AlreadyStarted => EnergyError::AlreadyStarted(plugin.to_string()),
        PError::Invalid(m) => {
            EnergyError::invalid(format!("settings of meter plugin `{plugin}`"), m.as_str())
        }
        PError::Panic(m) => EnergyError::Plugin(format!("`{plugin}` {m}")),
        other => EnergyError::Plugin(format!("`{plugin}`: {other}")),
    }
}

/// A meter plugin instance as a `dsnn_energy::EnergyMeter`. The host adds
/// the start time and the process CPU time of the region itself.
pub(crate) struct PluginMeter {
    plugin: String,
    inner: MeterBox,
    timer: Option<RegionTimer>,
    broken: Option<String>,
}

impl PluginMeter {
    pub(crate) fn new(plugin: String, inner: MeterBox) -> Self {
        PluginMeter {
            plugin,
            inner,
            timer: None,
            broken: None,
        }
    }

    fn check_usable(&self) -> Result<(), EnergyError> {
        match &self.broken {
            Some(why) => Err(EnergyError::Plugin(format!(
                "`{}` is unusable after an earlier panic ({why})",
                self.plugin
            ))),
            None => Ok(()),
        }
    }

    fn fail(&mut self, e: PError) -> EnergyError {
        if let PError::Panic(m) = &e {
            log::error!("meter plugin `{}` {m}", self.plugin);
            self.broken = Some(m.to_string());
        }
        energy_error(&self.plugin, e)
    }

    fn reading(&self, r: PReading, timer: RegionTimer) -> Result<EnergyReading, EnergyError> {
        if !(r.joules.is_finite() && r.joules >= 0.0 && r.seconds.is_finite() && r.seconds >= 0.0) {
            return Err(EnergyError::Plugin(format!(
                "`{}` returned an invalid reading ({} J over {} s)",
                self.plugin, r.joules, r.seconds
            )));
        }
        let mut span = timer.finish(&RusageClock)?;
        span.wall = std::time::Duration::from_secs_f64(r.seconds);
        let component = match r.component {
            PComponent::Cpu => Component::Cpu,
            PComponent::Gpu => Component::Gpu,
            PComponent::Ram => Component::Ram,
            PComponent::Other => Component::Other,
        };
        let provenance = if r.measured {
            Provenance::Measured
        } else {
            Provenance::Estimated
        };
        let source = r.source.into_string();
        Ok(EnergyReading::from_components(
            source.clone(),
            span,
            vec![ComponentEnergy {
                component,
                energy: dsnn_energy::Energy::from_joules(r.joules),
                source,
                provenance,
            }],
        ))
    }
}

impl EnergyMeter for PluginMeter {
    fn name(&self) -> &str {
        &self.plugin
    }

    fn start(&mut self) -> Result<(), EnergyError> {
        self.check_usable()?;
        match self.inner.start() {
            RResult::ROk(()) => {
                self.timer = Some(RegionTimer::start(&RusageClock)?);
                Ok(())
            }
            RResult::RErr(e) => Err(self.fail(e)),
        }
    }

    fn stop(&mut self) -> Result<EnergyReading, EnergyError> {
        self.check_usable()?;
        let r = match self.inner.stop() {
            RResult::ROk(r) => r,
            RResult::RErr(e) => return Err(self.fail(e)),
        };
        let timer = self
            .timer
            .take()
            .ok_or_else(|| EnergyError::NotStarted(self.plugin.clone()))?;
        self.reading(r, timer)
    }
}

//! An objective of our own: the DSNN's validation loss and its latency on
//! dsnn's integer shift-add engine (median milliseconds per image at batch
//! 1), for searching networks that are accurate and fast on a CPU without
//! floating point.
//!
//! It reuses the DSNN objective's training and metering
//! ([`DsnnObjective::train_and_measure`]) and adds one measurement, so it
//! reads the same `[data]`, `[model]` and `[energy]` sections; its own
//! settings are in `[objective]`:
//!
//! ```toml
//! [objective]
//! kind = "loss-latency"
//! latency_images = 32   # single images timed per trial (1..=10000)
//! ```

use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;
use dsnn::dsnn_objective::{dsnn_build_with, DsnnObjective};
use dsnn::objective::{EvalError, MetricInfo, Metrics, Objective, SpaceIssue, TrialContext};
use dsnn::registry::{ObjectiveBuild, ObjectiveFactory, ObjectiveSetup};
use dsnn::settings::ConfigError;
use dsnn_infer::{IntModel, TrainedSpec};
use dsnn_search::SearchSpace;
use serde::Deserialize;

/// `[objective]` of a `loss-latency` run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "default_latency_images")]
    latency_images: usize,
}

fn default_latency_images() -> usize {
    32
}

/// Validation loss and integer-engine latency of a DSNN.
pub struct LossLatency {
    inner: DsnnObjective,
    latency_images: usize,
}

impl Objective for LossLatency {
    fn metrics(&self) -> Vec<MetricInfo> {
        let mut m = vec![MetricInfo::new("latency_ms", "ms/image at batch 1", true)];
        m.extend(self.inner.metrics());
        m
    }

    fn default_objectives(&self) -> Vec<String> {
        vec!["loss".into(), "latency_ms".into()]
    }

    fn default_max_budget(&self) -> f64 {
        self.inner.default_max_budget()
    }

    fn check_space(&self, space: &dyn SearchSpace) -> Result<(), SpaceIssue> {
        self.inner.check_space(space)
    }

    fn evaluate(&self, ctx: &TrialContext) -> Result<Metrics, EvalError> {
        let trained = self.inner.train_and_measure(ctx)?;
        // The run's `[energy] inference = "integer"` already exported it;
        // otherwise export here. A network the engine cannot run (a float
        // one) is this configuration's failure.
        let model = match trained.int_model {
            Some(m) => m,
            None => {
                let spec = TrainedSpec {
                    backbone: self.inner.backbone_name.clone(),
                    model: trained.spec.clone(),
                    dataset: None,
                    input_transform: None,
                };
                let m = IntModel::from_network(trained.network.as_ref(), &spec).map_err(|e| {
                    EvalError::Trial(format!("no integer latency for this network: {e}"))
                })?;
                m.prepare();
                m
            }
        };
        let data = self.inner.trial_data().map_err(EvalError::Setup)?;
        let n = self.latency_images.min(data.validation.len());
        if n == 0 {
            return Err(EvalError::Setup("the validation split is empty".into()));
        }
        let mut times = Vec::with_capacity(n);
        for i in 0..n {
            ctx.control
                .check()
                .map_err(|e| EvalError::Trial(e.to_string()))?;
            let (x, _) = data
                .batcher
                .batch(&data.validation, &[i], None, &Device::Cpu)
                .map_err(|e| EvalError::Trial(e.to_string()))?;
            let image: Vec<f32> = x
                .flatten_all()
                .and_then(|t| t.to_vec1())
                .map_err(|e| EvalError::Trial(e.to_string()))?;
            let start = Instant::now();
            model
                .infer(&image)
                .map_err(|e| EvalError::Trial(e.to_string()))?;
            times.push(start.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let mut metrics = trained.metrics;
        metrics.insert("latency_ms".into(), 1e3 * times[n / 2]);
        Ok(metrics)
    }
}

/// The `loss-latency` objective's factory.
pub struct LossLatencyFactory;

impl ObjectiveFactory for LossLatencyFactory {
    fn description(&self) -> String {
        "validation loss and integer-engine latency of a DSNN (examples/research-crate)".into()
    }

    fn create(&self, setup: &ObjectiveSetup) -> Result<ObjectiveBuild, ConfigError> {
        let settings: Settings = setup.settings.parse()?;
        if !(1..=10_000).contains(&settings.latency_images) {
            return Err(setup.settings.out_of_range(
                "latency_images",
                settings.latency_images,
                "1..=10000",
            ));
        }
        let objective = Arc::new(LossLatency {
            inner: DsnnObjective::from_setup(setup)?,
            latency_images: settings.latency_images,
        });
        Ok(dsnn_build_with(objective.clone(), &objective.inner))
    }
}

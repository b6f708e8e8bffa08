//! One DSNN trial: train, export when asked, and measure the validation pass.

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::Device;
use dsnn_core::data::{Batcher, Dataset};
use dsnn_core::train::{evaluate_with_control, train_with_control, Evaluation, TrainControl};
use dsnn_core::{ModelSpec, Network};
use dsnn_energy::{EmissionsLog, EnergyReading, OpCountModel, RunInfo};
use dsnn_infer::{InputTransform, IntModel, TrainedSpec};

use super::{BudgetUnit, DsnnObjective, InferenceEngine};
use crate::objective::{EvalError, Metrics, TrialContext};

/// A trained and measured DSNN trial: its metrics and the network, for
/// objectives that measure more (see `examples/research-crate`).
pub struct TrainedTrial {
    /// Everything measured (see [`super::DSNN_OBJECTIVES`] and the extra
    /// metrics: accuracy, epochs, train_seconds, ...).
    pub metrics: Metrics,
    /// The trained network.
    pub network: Box<dyn Network>,
    /// What it was built from.
    pub spec: ModelSpec,
    /// Its export to the integer engine, when `[energy] inference =
    /// "integer"` and the network allows it.
    pub int_model: Option<IntModel>,
}

/// Whole epochs for a budget in epochs: rounded to nearest, at least 1
/// (Hyperband from 2 to 20 with eta 3 asks for 2.22 and 6.67 epochs).
pub fn epochs_of(budget: f64) -> usize {
    (budget.round() as usize).max(1)
}

impl DsnnObjective {
    /// Trains the trial's network for its budget and measures the metered
    /// validation pass (the DSNN objective's whole evaluation).
    pub fn train_and_measure(&self, ctx: &TrialContext) -> Result<TrainedTrial, EvalError> {
        let trial = ctx.trial;
        let label = ctx.label;
        let (recipe, arch) = self
            .apply(&trial.config)
            .map_err(|e| EvalError::Trial(e.to_string()))?;
        let data = self.trial_data().map_err(EvalError::Setup)?;
        let (train_set, epochs) = match self.unit {
            BudgetUnit::Epochs => (data.train.clone(), epochs_of(trial.budget)),
            BudgetUnit::DataFraction => {
                let n = ((trial.budget * data.train.len() as f64).ceil() as usize)
                    .clamp(1, data.train.len());
                (data.train.head(n), recipe.epochs)
            }
        };
        let spec = recipe.model_spec(train_set.shape, train_set.classes, self.seed, arch);
        let device = self.trial_device().map_err(EvalError::Setup)?;
        let trial_err = |e: dsnn_core::CoreError| EvalError::Trial(e.to_string());
        let net = self.backbone.build(&spec, &device).map_err(trial_err)?;
        let profile = self.backbone.op_profile(&spec).map_err(trial_err)?;
        let cfg = recipe.train_config(epochs, ctx.seed);
        let op_count = ctx.energy.is_op_count();
        // Training, metered (the op-count model prices inference only; training
        // is counted as three forward passes per image: forward, and the two
        // gemms of the backward pass).
        let mut train_meter = ctx.energy.meter(Some(&profile)).map_err(EvalError::Setup)?;
        train_meter
            .start()
            .map_err(|e| EvalError::Setup(e.to_string()))?;
        let train_start = Instant::now();
        // No validation after each epoch: the objectives come from the one
        // metered validation pass below, so the trainer gets an empty set
        // (its per-epoch evaluation is then free) rather than evaluating the
        // final network twice.
        let no_validation = data.validation.head(0);
        let report = train_with_control(
            net.as_ref(),
            &train_set,
            &no_validation,
            &data.batcher,
            &cfg,
            &device,
            ctx.control,
            &mut |r| {
                log::info!(
                    "trial {label}: epoch {}/{epochs} train loss {:.4}, train acc {:.2}%",
                    r.epoch,
                    r.train_loss,
                    100.0 * r.train_accuracy
                )
            },
        )
        .map_err(trial_err)?;
        let train_seconds = train_start.elapsed().as_secs_f64();
        let train_reading = train_meter
            .stop()
            .map_err(|e| EvalError::Setup(e.to_string()))?;
        let training_energy = if op_count {
            let per_image = OpCountModel::default()
                .predict(&profile)
                .per_image()
                .joules();
            3.0 * per_image * (train_set.len() * epochs) as f64
        } else {
            train_reading.joules()
        };
        // The integer engine, when asked for and possible.
        let int_model = match self.inference {
            InferenceEngine::Simulated => None,
            InferenceEngine::Integer => {
                let trained = TrainedSpec {
                    backbone: self.backbone_name.clone(),
                    model: spec.clone(),
                    dataset: None,
                    input_transform: None,
                };
                match IntModel::from_network(net.as_ref(), &trained) {
                    Ok(m) => {
                        m.prepare();
                        Some(m)
                    }
                    Err(err) => {
                        log::info!(
                            "trial {label}: the integer engine cannot run this network ({err}); its validation pass is simulated"
                        );
                        None
                    }
                }
            }
        };
        let inference_profile = int_model
            .as_ref()
            .map_or(profile.clone(), |m| m.op_profile());
        // The validation (inference) pass, metered.
        let mut meter = ctx
            .energy
            .meter(Some(&inference_profile))
            .map_err(EvalError::Setup)?;
        meter.start().map_err(|e| EvalError::Setup(e.to_string()))?;
        let eval = match &int_model {
            Some(m) => evaluate_integer(
                m,
                &data.validation,
                &data.batcher,
                cfg.test_batch_size,
                ctx.control,
            ),
            None => evaluate_with_control(
                net.as_ref(),
                &data.validation,
                &data.batcher,
                cfg.test_batch_size,
                &device,
                ctx.control,
            )
            .map_err(|e| e.to_string()),
        };
        let mut reading = meter.stop().map_err(|e| EvalError::Setup(e.to_string()))?;
        let eval = eval.map_err(EvalError::Trial)?;
        if op_count {
            let per_image = OpCountModel::default()
                .predict(&inference_profile)
                .per_image();
            reading.energy = per_image.scaled(eval.images as f64);
        }
        let images = eval.images.max(1) as f64;
        let emissions_g = ctx.energy.carbon().emissions_g(reading.energy);
        log_emissions(ctx, &reading);
        let mut metrics = BTreeMap::new();
        metrics.insert("accuracy".to_string(), eval.accuracy);
        metrics.insert("loss".to_string(), 1.0 - eval.accuracy);
        metrics.insert("cross_entropy".to_string(), eval.loss);
        metrics.insert("energy".to_string(), reading.joules() / images);
        metrics.insert("validation_energy_j".to_string(), reading.joules());
        // The metered regions' own wall time (a little longer than the
        // evaluation or training they surround).
        metrics.insert(
            "validation_metered_s".to_string(),
            reading.wall.as_secs_f64(),
        );
        metrics.insert(
            "training_metered_s".to_string(),
            train_reading.wall.as_secs_f64(),
        );
        metrics.insert("emissions".to_string(), emissions_g);
        metrics.insert("training_energy".to_string(), training_energy);
        metrics.insert(
            "model_size".to_string(),
            profile.weight_storage_bits() as f64,
        );
        metrics.insert("latency".to_string(), eval.seconds / images);
        metrics.insert("epochs".to_string(), epochs as f64);
        metrics.insert(
            "integer_inference".to_string(),
            if int_model.is_some() { 1.0 } else { 0.0 },
        );
        metrics.insert("train_images".to_string(), train_set.len() as f64);
        metrics.insert("validation_images".to_string(), eval.images as f64);
        metrics.insert("train_seconds".to_string(), train_seconds);
        metrics.insert(
            "shift_mac_fraction".to_string(),
            profile.shift_macs() as f64 / profile.total_macs().max(1) as f64,
        );
        metrics.insert(
            "convertible_layers".to_string(),
            self.backbone.num_convertible_layers(&spec.arch) as f64,
        );
        if let Some(last) = report.epochs.last() {
            metrics.insert("train_loss".to_string(), last.train_loss);
        }
        if self.save_weights {
            if let Some(run_dir) = ctx.run_dir {
                let trained = TrainedSpec {
                    backbone: self.backbone_name.clone(),
                    model: spec.clone(),
                    dataset: Some(self.data.name.clone()),
                    input_transform: Some(InputTransform {
                        normalization: data.batcher.normalization.clone(),
                        pixel_max: train_set.pixel_max,
                        data: Some(self.data_record()),
                    }),
                };
                save_weights(net.as_ref(), &trained, &run_dir.join(WEIGHTS_DIR), label)
                    .map_err(EvalError::Setup)?;
            }
        }
        Ok(TrainedTrial {
            metrics,
            network: net,
            spec,
            int_model,
        })
    }
}

/// The directory of a run that keeps trials' weights (`[model]
/// save_weights`): `<trial>.safetensors`, readable by `dsnn export`.
pub const WEIGHTS_DIR: &str = "weights";

/// Saves a trial's weights as `dir/<label>.safetensors`, written to a
/// temporary file first so that a killed trial leaves no half file.
fn save_weights(
    net: &dyn Network,
    spec: &TrainedSpec,
    dir: &std::path::Path,
    label: &str,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let path = dir.join(format!("{label}.safetensors"));
    let tmp = dir.join(format!(".{label}.{}.tmp", std::process::id()));
    dsnn_infer::save_trained(net, spec, &tmp).map_err(|e| format!("saving the weights: {e}"))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("saving {}: {e}", path.display()))
}

impl DsnnObjective {
    /// The data set, its own `[data]` settings and the split seed, recorded
    /// with saved weights so that `dsnn export` and `dsnn infer` load the
    /// same images the same way.
    fn data_record(&self) -> dsnn_infer::DataRecord {
        dsnn_infer::DataRecord {
            dataset: self.data.name.clone(),
            settings: self
                .data
                .settings
                .table()
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), serde_json::to_value(v).ok()?)))
                .collect(),
            split_seed: self.seed,
        }
    }
}

/// Appends the validation pass's CodeCarbon-style row to the run's
/// `emissions.csv` (only inside a run directory).
fn log_emissions(ctx: &TrialContext, reading: &EnergyReading) {
    let Some(dir) = ctx.run_dir else { return };
    let run = RunInfo {
        project_name: "dsnn".into(),
        run_id: ctx.label.to_string(),
        experiment_id: dir
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned()),
        os: std::env::consts::OS.into(),
        cpu_count: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        tracking_mode: "process".into(),
        ..RunInfo::default()
    };
    let result = EmissionsLog::open(dir.join("emissions.csv"))
        .and_then(|mut log| log.record(reading, ctx.energy.carbon(), &run).map(|_| ()));
    if let Err(e) = result {
        log::warn!("could not append to the emissions log: {e}");
    }
}

/// Loss and accuracy of the integer engine on `data` (normalised as in
/// training), in batches of `batch_size`.
pub fn evaluate_integer(
    model: &IntModel,
    data: &Dataset,
    batcher: &Batcher,
    batch_size: usize,
    control: &TrainControl,
) -> Result<Evaluation, String> {
    let start = Instant::now();
    let idx: Vec<usize> = (0..data.len()).collect();
    let (mut loss_sum, mut hits) = (0f64, 0usize);
    for chunk in idx.chunks(batch_size.max(1)) {
        control.check().map_err(|e| e.to_string())?;
        let (x, y) = batcher
            .batch(data, chunk, None, &Device::Cpu)
            .map_err(|e| e.to_string())?;
        let images: Vec<f32> = x
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| e.to_string())?;
        let labels: Vec<u32> = y.to_vec1::<u32>().map_err(|e| e.to_string())?;
        let logits = model.infer(&images).map_err(|e| e.to_string())?;
        let values = logits.to_f64();
        let predicted = logits.argmax();
        for (k, (row, &label)) in values
            .chunks_exact(logits.classes.max(1))
            .zip(&labels)
            .enumerate()
        {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let log_sum = row.iter().map(|v| (v - max).exp()).sum::<f64>().ln() + max;
            loss_sum += log_sum - row[label as usize];
            if predicted[k] == label as usize {
                hits += 1;
            }
        }
    }
    let n = data.len().max(1) as f64;
    Ok(Evaluation {
        loss: loss_sum / n,
        accuracy: hits as f64 / n,
        images: data.len(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

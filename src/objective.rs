//! The objective of a run: what one trial computes.
//!
//! A DSNN trial builds the backbone with the trial's configuration, trains it
//! for the trial's budget, evaluates it on the validation split, measures the
//! energy of that validation (inference) pass with the configured meter and
//! returns the objective vector. A test-problem trial evaluates a ZDT or DTLZ
//! function (optionally sleeping to simulate cost), which lets optimizers and
//! executors be tried in seconds.
//!
//! Every failure (a NaN loss, a time limit, a panic, a broken data file) is a
//! [`TrialReport`] with a failed outcome and its reason; nothing here aborts a
//! run.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use candle_core::Device;
use dsnn_core::data::{load_dataset, Augment, Batcher, Dataset, DatasetName};
use dsnn_core::optim::OptimizerSettings;
use dsnn_core::train::{
    evaluate_with_control, train_with_control, Evaluation, TrainConfig, TrainControl,
};
use dsnn_core::{backbone_by_name, FixedPoint, ModelSpec, ShiftSettings, ShiftType};
use dsnn_energy::{
    CarbonAccount, CarbonTables, EmissionsLog, EnergyMeter, EnergyReading, OpCountMeter,
    OpCountModel, OpProfile, RunInfo,
};
use dsnn_infer::{IntModel, TrainedSpec};
use dsnn_search::{Outcome, Trial, TrialId};

use crate::executor::{TrialReport, TrialTask};
use crate::experiment::{
    BudgetUnit, CheckedExperiment, FailureKind, InferenceEngine, MeterChoice, ModelSection,
    ObjectiveKind,
};

/// The identifier of the trial of the default configuration, which every run
/// evaluates first at the full budget (outside the optimizer's numbering).
pub const DEFAULT_TRIAL_ID: TrialId = u64::MAX;

/// Builds meters for a trial. The run layer supplies one that knows about
/// plugins; [`builtin_meter`] handles the meters built into dsnn.
pub type MeterFactory =
    dyn Fn(&MeterChoice, &OpProfile) -> Result<Box<dyn EnergyMeter>, String> + Send + Sync;

/// A meter built into dsnn for `choice` (plugins are refused here).
pub fn builtin_meter(
    choice: &MeterChoice,
    profile: &OpProfile,
) -> Result<Box<dyn EnergyMeter>, String> {
    match choice {
        MeterChoice::OpCount(_) => OpCountMeter::new(&OpCountModel::default(), profile)
            .map(|m| Box::new(m) as Box<dyn EnergyMeter>)
            .map_err(|e| e.to_string()),
        MeterChoice::Meter(spec) => spec.build().map(|b| b.meter).map_err(|e| e.to_string()),
        MeterChoice::Plugin(p) => Err(format!(
            "meter plugin `{}` cannot be loaded here (no plugin host)",
            p.plugin
        )),
    }
}

/// The data of a DSNN experiment, loaded once and shared by the trials of a
/// process.
struct TrialData {
    train: Dataset,
    validation: Dataset,
    batcher: Batcher,
}

/// Everything a process needs to evaluate the trials of one experiment.
pub struct Objective {
    exp: CheckedExperiment,
    run_dir: Option<PathBuf>,
    data: OnceLock<Result<Arc<TrialData>, String>>,
    device: OnceLock<Result<Device, String>>,
    meters: Box<MeterFactory>,
}

impl Objective {
    /// The objective of `exp`; `run_dir`, when given, receives the
    /// `emissions.csv` rows of the trials.
    pub fn new(exp: CheckedExperiment, run_dir: Option<PathBuf>) -> Self {
        Objective {
            exp,
            run_dir,
            data: OnceLock::new(),
            device: OnceLock::new(),
            meters: Box::new(builtin_meter),
        }
    }

    /// Use `factory` to build energy meters (for meter plugins).
    pub fn with_meter_factory(mut self, factory: Box<MeterFactory>) -> Self {
        self.meters = factory;
        self
    }

    /// The experiment.
    pub fn experiment(&self) -> &CheckedExperiment {
        &self.exp
    }

    /// Evaluates a trial. Never panics and never fails: problems are failed
    /// reports with the reason.
    pub fn evaluate(&self, task: &TrialTask, control: &TrainControl, worker: &str) -> TrialReport {
        let start = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| {
            self.evaluate_inner(&task.trial, control)
        }));
        let (outcome, metrics) = match result {
            Ok(Ok((objectives, metrics))) => {
                if objectives.iter().all(|v| v.is_finite()) {
                    (Outcome::Success(objectives), metrics)
                } else {
                    (
                        Outcome::Failure(format!(
                            "an objective is not finite: {objectives:?} (NaN or infinite result)"
                        )),
                        metrics,
                    )
                }
            }
            Ok(Err(reason)) => (Outcome::Failure(reason), BTreeMap::new()),
            Err(panic) => (
                Outcome::Failure(format!("the trial panicked: {}", panic_message(&*panic))),
                BTreeMap::new(),
            ),
        };
        TrialReport {
            id: task.trial.id,
            outcome,
            metrics,
            duration_s: start.elapsed().as_secs_f64(),
            worker: worker.to_string(),
        }
    }

    fn evaluate_inner(
        &self,
        trial: &Trial,
        control: &TrainControl,
    ) -> Result<(Vec<f64>, BTreeMap<String, f64>), String> {
        let e = &self.exp.experiment;
        if let Some(p) = &e.problem {
            let problem = p.problem()?;
            if p.delay_s > 0.0 {
                let until = Instant::now() + Duration::from_secs_f64(p.delay_s);
                while Instant::now() < until {
                    control.check().map_err(|e| e.to_string())?;
                    std::thread::sleep(
                        until
                            .saturating_duration_since(Instant::now())
                            .min(Duration::from_millis(20)),
                    );
                }
            }
            if let Some(inject) = &p.inject_failure {
                let x0 = trial.config.get_f64("x0").unwrap_or(1.0);
                if x0 < inject.fraction {
                    inject_failure(inject.kind);
                    return Ok((vec![f64::NAN; problem.n_obj()], BTreeMap::new()));
                }
            }
            let f = problem.evaluate_config(&trial.config);
            let metrics = f
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("f{}", i + 1), *v))
                .collect();
            return Ok((f, metrics));
        }
        self.evaluate_dsnn(trial, control)
    }

    /// The device of this process's trials, chosen once (all trials of a
    /// process share it, so a GPU's start-up cost is paid once per run).
    fn device(&self, setting: &str) -> Result<Device, String> {
        self.device
            .get_or_init(|| {
                let (device, why) = dsnn_core::device::select_str(setting)
                    .map_err(|e| format!("device `{setting}`: {e}"))?;
                log::info!("trials run on {why}");
                Ok(device)
            })
            .clone()
    }

    fn data(&self) -> Result<Arc<TrialData>, String> {
        self.data
            .get_or_init(|| {
                let d = self.exp.experiment.data.as_ref().ok_or("no [data] table")?;
                let dir = d.path.clone().ok_or("no data path")?;
                let splits = load_dataset(d.dataset, &dir, self.exp.experiment.seed)
                    .map_err(|e| format!("loading {}: {e}", d.dataset))?;
                let full = match d.train_limit {
                    Some(n) => splits.train.head(n),
                    None => splits.train,
                };
                let (train, validation) =
                    full.split(d.validation_fraction, self.exp.experiment.seed);
                let augment = if d.dataset == DatasetName::Cifar10 {
                    Augment::cifar()
                } else {
                    Augment::default()
                };
                let batcher = Batcher {
                    normalization: train.channel_stats(),
                    augment,
                };
                Ok(Arc::new(TrialData {
                    train,
                    validation,
                    batcher,
                }))
            })
            .clone()
    }

    fn evaluate_dsnn(
        &self,
        trial: &Trial,
        control: &TrainControl,
    ) -> Result<(Vec<f64>, BTreeMap<String, f64>), String> {
        let e = &self.exp.experiment;
        let base = e.model.clone().unwrap_or_default();
        let m = base.with_config(&trial.config)?;
        let data = self.data()?;
        let (train_set, epochs) = match e.fidelity.unit {
            BudgetUnit::Epochs => (data.train.clone(), epochs_of(trial.budget)),
            BudgetUnit::DataFraction => {
                let n = ((trial.budget * data.train.len() as f64).ceil() as usize)
                    .clamp(1, data.train.len());
                (data.train.head(n), m.epochs as usize)
            }
        };
        let backbone_name = m.backbone.clone().unwrap_or_else(|| "lenet5".into());
        let backbone = backbone_by_name(&backbone_name).map_err(|e| e.to_string())?;
        let spec = model_spec(&m, &train_set, e.seed);
        let device = self.device(&m.device)?;
        let net = backbone.build(&spec, &device).map_err(|e| e.to_string())?;
        let profile = backbone.op_profile(&spec).map_err(|e| e.to_string())?;
        let cfg = TrainConfig {
            epochs,
            batch_size: m.batch_size as usize,
            test_batch_size: m.test_batch_size as usize,
            optimizer: OptimizerSettings {
                kind: m.optimizer,
                lr: m.lr,
                momentum: m.momentum,
                weight_decay: m.weight_decay,
            },
            cosine_schedule: m.cosine_schedule,
            seed: e.seed ^ trial.id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        };
        let op_count = matches!(e.energy.meter, MeterChoice::OpCount(_));
        // Training, metered (the op-count model prices inference only; training
        // is counted as three forward passes per image: forward, and the two
        // gemms of the backward pass).
        let mut train_meter = (self.meters)(&e.energy.meter, &profile)?;
        train_meter.start().map_err(|e| e.to_string())?;
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
            control,
            &mut |r| {
                log::info!(
                    "trial {}: epoch {}/{} train loss {:.4}, train acc {:.2}%",
                    trial_label(trial.id),
                    r.epoch,
                    epochs,
                    r.train_loss,
                    100.0 * r.train_accuracy
                )
            },
        )
        .map_err(|e| e.to_string())?;
        let train_seconds = train_start.elapsed().as_secs_f64();
        let train_reading = train_meter.stop().map_err(|e| e.to_string())?;
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
        let int_model = match e.energy.inference {
            InferenceEngine::Simulated => None,
            InferenceEngine::Integer => {
                let trained = TrainedSpec {
                    backbone: backbone_name.clone(),
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
                            "trial {}: the integer engine cannot run this network ({err}); its validation pass is simulated",
                            trial_label(trial.id)
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
        let mut meter = (self.meters)(&e.energy.meter, &inference_profile)?;
        meter.start().map_err(|e| e.to_string())?;
        let eval = match &int_model {
            Some(m) => evaluate_integer(
                m,
                &data.validation,
                &data.batcher,
                cfg.test_batch_size,
                control,
            ),
            None => evaluate_with_control(
                net.as_ref(),
                &data.validation,
                &data.batcher,
                cfg.test_batch_size,
                &device,
                control,
            )
            .map_err(|e| e.to_string()),
        };
        let mut reading = meter.stop().map_err(|e| e.to_string())?;
        let eval = eval?;
        if op_count {
            let per_image = OpCountModel::default()
                .predict(&inference_profile)
                .per_image();
            reading.energy = per_image.scaled(eval.images as f64);
        }
        let images = eval.images.max(1) as f64;
        let account = self.carbon_account()?;
        let emissions_g = account.emissions_g(reading.energy);
        self.log_emissions(trial.id, &reading, &account);
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
        if let Some(last) = report.epochs.last() {
            metrics.insert("train_loss".to_string(), last.train_loss);
        }
        let objectives = e
            .objectives
            .iter()
            .map(|o| metrics[o.name()])
            .collect::<Vec<f64>>();
        Ok((objectives, metrics))
    }

    fn carbon_account(&self) -> Result<CarbonAccount, String> {
        let e = &self.exp.experiment;
        let tables = CarbonTables::embedded().map_err(|e| e.to_string())?;
        let intensity = tables
            .intensity(&e.energy.grid)
            .map_err(|e| e.to_string())?;
        CarbonAccount::new(intensity, e.energy.pue).map_err(|e| e.to_string())
    }

    fn log_emissions(&self, id: TrialId, reading: &EnergyReading, account: &CarbonAccount) {
        let Some(dir) = &self.run_dir else { return };
        let run = RunInfo {
            project_name: "dsnn".into(),
            run_id: trial_label(id),
            experiment_id: self.exp.experiment.name.clone(),
            os: std::env::consts::OS.into(),
            cpu_count: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            tracking_mode: "process".into(),
            ..RunInfo::default()
        };
        let result = EmissionsLog::open(dir.join("emissions.csv"))
            .and_then(|mut log| log.record(reading, account, &run).map(|_| ()));
        if let Err(e) = result {
            log::warn!("could not append to the emissions log: {e}");
        }
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

/// Loss and accuracy of the integer engine on `data` (normalised as in
/// training), in batches of `batch_size`.
fn evaluate_integer(
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

/// `default` for the default configuration's trial, else the number.
pub fn trial_label(id: TrialId) -> String {
    if id == DEFAULT_TRIAL_ID {
        "default".into()
    } else {
        id.to_string()
    }
}

/// Whole epochs for a budget in epochs: rounded to nearest, at least 1
/// (Hyperband from 2 to 20 with eta 3 asks for 2.22 and 6.67 epochs).
pub fn epochs_of(budget: f64) -> usize {
    (budget.round() as usize).max(1)
}

fn model_spec(m: &ModelSection, train: &Dataset, seed: u64) -> ModelSpec {
    let shift = match m.shift_type {
        ShiftType::Float => None,
        shift_type => Some(ShiftSettings {
            shift_type,
            weight_bits: m.weight_bits as u32,
            rounding: m.rounding,
            activation: FixedPoint {
                integer_bits: m.activation_integer_bits as u32,
                fraction_bits: m.activation_fraction_bits as u32,
            },
        }),
    };
    ModelSpec {
        input: train.shape,
        classes: train.classes,
        shift,
        shift_depth: m.shift_depth.map_or(usize::MAX, |d| d as usize),
        shift_end: m.shift_end,
        seed,
    }
}

/// The text of a panic payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

/// Whether `kind` is measured by the meter (and so depends on the machine).
pub fn is_measured(kind: ObjectiveKind) -> bool {
    matches!(
        kind,
        ObjectiveKind::Energy
            | ObjectiveKind::Emissions
            | ObjectiveKind::TrainingEnergy
            | ObjectiveKind::Latency
    )
}

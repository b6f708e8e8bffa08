//! The trainer: epochs of seeded mini-batch training with a cosine learning
//! rate schedule, evaluation of loss and top-1 accuracy, and a clear failure
//! when the loss stops being finite.

use crate::backbone::Network;
use crate::data::{Batcher, Dataset};
use crate::error::{CoreError, Result};
use crate::layers::Forward;
use crate::optim::{Optimizer, OptimizerSettings};
use candle_core::{Device, Tensor, D};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Stops training from outside: a deadline and a cancel flag, both checked
/// before every step and every evaluation batch. Runs use it for per-trial
/// time limits in worker threads, where a thread cannot be killed.
#[derive(Debug, Clone, Default)]
pub struct TrainControl {
    /// Stop with [`CoreError::Interrupted`] once this instant has passed.
    pub deadline: Option<Instant>,
    /// Stop with [`CoreError::Interrupted`] once this flag is set.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl TrainControl {
    /// `Err(Interrupted)` if the deadline has passed or the flag is set.
    pub fn check(&self) -> Result<()> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(CoreError::Interrupted {
                reason: "the time limit passed".into(),
            });
        }
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(CoreError::Interrupted {
                reason: "cancelled".into(),
            });
        }
        Ok(())
    }
}

/// How to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Number of passes over the training set (the budget).
    pub epochs: usize,
    /// Images per training step.
    pub batch_size: usize,
    /// Images per evaluation batch.
    pub test_batch_size: usize,
    /// Optimiser and its hyperparameters.
    pub optimizer: OptimizerSettings,
    /// Anneal the learning rate to zero along a cosine over all steps.
    pub cosine_schedule: bool,
    /// Seed of the batch order and augmentation.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 2,
            batch_size: 128,
            test_batch_size: 1000,
            optimizer: OptimizerSettings::default(),
            cosine_schedule: true,
            seed: 0,
        }
    }
}

/// Loss and top-1 accuracy over a data set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction of images whose top logit is the true class.
    pub accuracy: f64,
    /// Number of images evaluated.
    pub images: usize,
    /// Wall-clock seconds the evaluation took.
    pub seconds: f64,
}

/// What happened in one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    /// Training accuracy over the epoch (on augmented batches).
    pub train_accuracy: f64,
    /// Evaluation on the validation set after the epoch.
    pub validation: Evaluation,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Seconds spent in training steps.
    pub train_seconds: f64,
    /// Training images per second.
    pub images_per_second: f64,
}

/// The result of [`train`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// One report per epoch.
    pub epochs: Vec<EpochReport>,
}

impl TrainReport {
    /// The validation result after the last epoch.
    pub fn final_validation(&self) -> Option<Evaluation> {
        self.epochs.last().map(|e| e.validation)
    }
}

/// Learning rate at `step` of `total` for base rate `lr`.
pub fn cosine_lr(lr: f64, step: usize, total: usize, cosine: bool) -> f64 {
    if !cosine || total == 0 {
        return lr;
    }
    0.5 * lr * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos())
}

/// Counts correct top-1 predictions in `logits` for `labels`.
fn correct(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    let pred = logits.argmax(D::Minus1)?;
    Ok(pred
        .eq(labels)?
        .to_dtype(candle_core::DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()? as usize)
}

/// Evaluates `net` on all of `data` in inference mode.
pub fn evaluate(
    net: &dyn Network,
    data: &Dataset,
    batcher: &Batcher,
    batch_size: usize,
    device: &Device,
) -> Result<Evaluation> {
    evaluate_with_control(
        net,
        data,
        batcher,
        batch_size,
        device,
        &TrainControl::default(),
    )
}

/// [`evaluate`], checking `control` before every batch.
pub fn evaluate_with_control(
    net: &dyn Network,
    data: &Dataset,
    batcher: &Batcher,
    batch_size: usize,
    device: &Device,
    control: &TrainControl,
) -> Result<Evaluation> {
    let start = Instant::now();
    let (mut loss_sum, mut hits) = (0f64, 0usize);
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(batch_size.max(1)) {
        control.check()?;
        let (x, y) = batcher.batch(data, chunk, None, device)?;
        let logits = net.forward(&x, Forward::eval())?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?.to_scalar::<f32>()?;
        loss_sum += f64::from(loss) * chunk.len() as f64;
        hits += correct(&logits, &y)?;
    }
    let n = data.len().max(1) as f64;
    Ok(Evaluation {
        loss: loss_sum / n,
        accuracy: hits as f64 / n,
        images: data.len(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// One optimisation step on a batch; returns (loss, correct predictions).
pub fn train_step(
    net: &dyn Network,
    opt: &mut Optimizer,
    x: &Tensor,
    y: &Tensor,
    lr: f64,
) -> Result<(f32, usize)> {
    let logits = net.forward(x, Forward::train())?;
    let loss = candle_nn::loss::cross_entropy(&logits, y)?;
    let value = loss.to_scalar::<f32>()?;
    if !value.is_finite() {
        return Ok((value, 0));
    }
    let grads = loss.backward()?;
    opt.step(net.params().params(), &grads, lr)?;
    net.params().project()?;
    Ok((value, correct(&logits, y)?))
}

/// Trains `net` on `train_set` for `cfg.epochs` epochs, evaluating on
/// `validation` after each; `on_epoch` sees every report as it is made.
///
/// A NaN or infinite loss stops training with [`CoreError::Diverged`].
pub fn train(
    net: &dyn Network,
    train_set: &Dataset,
    validation: &Dataset,
    batcher: &Batcher,
    cfg: &TrainConfig,
    device: &Device,
    on_epoch: &mut dyn FnMut(&EpochReport),
) -> Result<TrainReport> {
    train_with_control(
        net,
        train_set,
        validation,
        batcher,
        cfg,
        device,
        &TrainControl::default(),
        on_epoch,
    )
}

/// [`train`], checking `control` before every step and evaluation batch.
#[allow(clippy::too_many_arguments)]
pub fn train_with_control(
    net: &dyn Network,
    train_set: &Dataset,
    validation: &Dataset,
    batcher: &Batcher,
    cfg: &TrainConfig,
    device: &Device,
    control: &TrainControl,
    on_epoch: &mut dyn FnMut(&EpochReport),
) -> Result<TrainReport> {
    if cfg.batch_size == 0 || cfg.test_batch_size == 0 {
        return Err(CoreError::config("batch_size", "must be at least 1"));
    }
    if train_set.is_empty() {
        return Err(CoreError::config("data", "the training set is empty"));
    }
    let mut opt = Optimizer::new(cfg.optimizer, net.params().params().len())?;
    net.params().project()?;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let steps_per_epoch = train_set.len().div_ceil(cfg.batch_size);
    let total = steps_per_epoch * cfg.epochs;
    let mut reports = Vec::new();
    let mut order: Vec<usize> = (0..train_set.len()).collect();
    for epoch in 1..=cfg.epochs {
        order.shuffle(&mut rng);
        let start = Instant::now();
        let (mut loss_sum, mut hits, mut lr) = (0f64, 0usize, cfg.optimizer.lr);
        for (step, chunk) in order.chunks(cfg.batch_size).enumerate() {
            control.check()?;
            let global = (epoch - 1) * steps_per_epoch + step;
            lr = cosine_lr(cfg.optimizer.lr, global, total, cfg.cosine_schedule);
            let (x, y) = batcher.batch(train_set, chunk, Some(&mut rng), device)?;
            let (loss, ok) = train_step(net, &mut opt, &x, &y, lr)?;
            if !loss.is_finite() {
                return Err(CoreError::Diverged { loss, epoch, step });
            }
            loss_sum += f64::from(loss) * chunk.len() as f64;
            hits += ok;
        }
        let train_seconds = start.elapsed().as_secs_f64();
        let validation = evaluate_with_control(
            net,
            validation,
            batcher,
            cfg.test_batch_size,
            device,
            control,
        )?;
        let report = EpochReport {
            epoch,
            train_loss: loss_sum / train_set.len() as f64,
            train_accuracy: hits as f64 / train_set.len() as f64,
            validation,
            lr,
            train_seconds,
            images_per_second: train_set.len() as f64 / train_seconds.max(1e-9),
        };
        log::info!(
            "epoch {epoch}/{}: train loss {:.4}, train acc {:.2}%, val loss {:.4}, val acc {:.2}%, {:.0} img/s",
            cfg.epochs,
            report.train_loss,
            100.0 * report.train_accuracy,
            validation.loss,
            100.0 * validation.accuracy,
            report.images_per_second
        );
        on_epoch(&report);
        reports.push(report);
    }
    Ok(TrainReport { epochs: reports })
}

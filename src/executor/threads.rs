//! Worker threads in the `run` process: the default executor.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dsnn_core::train::TrainControl;
use dsnn_search::Outcome;

use super::{trial_label, Executor, ExecutorError, TrialEvaluator, TrialReport, TrialTask};

/// Worker threads in this process. Trials share the loaded data set; a trial
/// that panics or diverges is a failed report. A per-trial time limit is
/// checked before every training step (a thread cannot be killed), and a
/// trial that exhausts memory takes the process with it: use
/// [`super::processes::ProcessExecutor`] for isolation.
pub struct ThreadExecutor {
    evaluator: Arc<dyn TrialEvaluator>,
    workers: usize,
    time_limit: Option<Duration>,
    sender: Sender<TrialReport>,
    receiver: Receiver<TrialReport>,
    running: BTreeMap<u64, usize>,
    cancel: Arc<AtomicBool>,
    closed: bool,
}

impl ThreadExecutor {
    /// `workers` threads evaluating trials with `evaluator`.
    pub fn new(
        evaluator: Arc<dyn TrialEvaluator>,
        workers: usize,
        time_limit: Option<Duration>,
    ) -> Self {
        let (sender, receiver) = channel();
        ThreadExecutor {
            evaluator,
            workers: workers.max(1),
            time_limit,
            sender,
            receiver,
            running: BTreeMap::new(),
            cancel: Arc::new(AtomicBool::new(false)),
            closed: false,
        }
    }

    fn free_slot(&self) -> usize {
        (0..self.workers)
            .find(|s| !self.running.values().any(|r| r == s))
            .unwrap_or(0)
    }
}

impl Executor for ThreadExecutor {
    fn name(&self) -> &str {
        "threads"
    }

    fn slots(&self) -> usize {
        self.workers
    }

    fn runs_in_process(&self) -> bool {
        true
    }

    fn in_flight(&self) -> usize {
        self.running.len()
    }

    fn submit(&mut self, task: TrialTask) -> Result<(), ExecutorError> {
        if self.closed {
            return Err(ExecutorError::Other("the executor is shut down".into()));
        }
        let slot = self.free_slot();
        self.running.insert(task.trial.id, slot);
        let evaluator = self.evaluator.clone();
        let sender = self.sender.clone();
        let limit = self.time_limit;
        let cancel = self.cancel.clone();
        std::thread::Builder::new()
            .name(format!("dsnn-trial-{}", trial_label(task.trial.id)))
            .spawn(move || {
                let control = TrainControl {
                    deadline: limit.map(|l| Instant::now() + l),
                    cancel: Some(cancel),
                };
                let mut report = evaluator.evaluate(&task, &control, &format!("thread {slot}"));
                if let (Some(l), Outcome::Failure(reason)) = (limit, &report.outcome) {
                    if reason.contains("the time limit passed") {
                        report.outcome = Outcome::Failure(format!(
                            "exceeded the per-trial time limit of {:.1} s",
                            l.as_secs_f64()
                        ));
                    }
                }
                // The receiver is gone only when the run has stopped.
                let _ = sender.send(report);
            })
            .map_err(|e| ExecutorError::Io {
                context: "starting a worker thread".into(),
                source: e,
            })?;
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> Result<Vec<TrialReport>, ExecutorError> {
        let mut out = Vec::new();
        match self.receiver.recv_timeout(timeout) {
            Ok(r) => out.push(r),
            Err(RecvTimeoutError::Timeout) => return Ok(out),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(ExecutorError::Other("all worker threads are gone".into()))
            }
        }
        while let Ok(r) = self.receiver.try_recv() {
            out.push(r);
        }
        for r in &out {
            self.running.remove(&r.id);
        }
        Ok(out)
    }

    fn shutdown(&mut self, cancel: bool) -> Result<(), ExecutorError> {
        self.closed = true;
        if cancel {
            self.cancel.store(true, Ordering::Relaxed);
            // Trials check the flag before every step: wait (a while) for
            // them to stop, so none outlives the run; their reports are
            // dropped, and the trials run again on resume.
            let until = Instant::now() + Duration::from_secs(30);
            while !self.running.is_empty() && Instant::now() < until {
                if let Ok(r) = self.receiver.recv_timeout(Duration::from_millis(100)) {
                    self.running.remove(&r.id);
                }
            }
        }
        Ok(())
    }
}

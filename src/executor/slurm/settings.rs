//! `[executor.slurm]`: the SLURM executor's settings, their defaults and
//! their checks.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::settings::{ConfigError, Section};

/// The keys of [`SlurmSettings`], as written in `[executor.slurm]` or
/// directly in `executor = { kind = "slurm", ... }`.
pub const SETTING_KEYS: &[&str] = &[
    "partition",
    "account",
    "time_limit",
    "cpus_per_trial",
    "mem",
    "gpus",
    "extra_sbatch_args",
    "max_jobs_in_flight",
    "shared_dir",
    "poll_interval_s",
    "result_grace_s",
    "setup",
    "dsnn_exe",
    "bin_dir",
];

/// Settings of the SLURM executor: the `[executor.slurm]` table of an
/// experiment file. Every field is optional; unknown keys are errors.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlurmSettings {
    /// Partition to submit to (`sbatch --partition`); the cluster's default
    /// when unset.
    pub partition: Option<String>,
    /// Account to charge (`sbatch --account`).
    pub account: Option<String>,
    /// SLURM's time limit of one job (`sbatch --time`, e.g. `"30"` minutes or
    /// `"02:00:00"`). When unset and the run has a per-trial time limit, the
    /// jobs get that limit rounded up to whole minutes plus two, as a backstop
    /// for the executor's own (exact) enforcement.
    pub time_limit: Option<String>,
    /// CPUs of one trial (`sbatch --cpus-per-task`).
    pub cpus_per_trial: u32,
    /// Memory of one trial (`sbatch --mem`, e.g. `"4G"`).
    pub mem: Option<String>,
    /// GPUs of one trial: a count (`gpus = 1` is `--gres=gpu:1`) or a typed
    /// request (`gpus = "a100:2"` is `--gres=gpu:a100:2`).
    pub gpus: Option<GpuRequest>,
    /// Further `sbatch` arguments, passed as they are (e.g. `["--qos=short"]`).
    pub extra_sbatch_args: Vec<String>,
    /// Most jobs queued or running at once for this run.
    pub max_jobs_in_flight: usize,
    /// Where trial inputs, results, batch scripts and job logs live; it must
    /// be visible from the compute nodes. Defaults to `run_dir/slurm`.
    pub shared_dir: Option<PathBuf>,
    /// Seconds between two `squeue` polls.
    pub poll_interval_s: f64,
    /// Seconds to wait for the result file of a COMPLETED job before calling
    /// the trial failed (network file systems show new files late).
    pub result_grace_s: f64,
    /// Shell lines run in each job before `dsnn trial` (e.g.
    /// `"module load cuda"`).
    pub setup: Vec<String>,
    /// The `dsnn` binary the jobs run, when the compute nodes see it under
    /// another path than this machine; defaults to the running binary.
    pub dsnn_exe: Option<PathBuf>,
    /// Directory of the SLURM commands (`sbatch`, `squeue`, `scancel`,
    /// `scontrol`, `sacct`); they are looked up on `PATH` when unset.
    pub bin_dir: Option<PathBuf>,
}

impl Default for SlurmSettings {
    fn default() -> Self {
        SlurmSettings {
            partition: None,
            account: None,
            time_limit: None,
            cpus_per_trial: 1,
            mem: None,
            gpus: None,
            extra_sbatch_args: Vec::new(),
            max_jobs_in_flight: 16,
            shared_dir: None,
            poll_interval_s: 1.0,
            result_grace_s: 10.0,
            setup: Vec::new(),
            dsnn_exe: None,
            bin_dir: None,
        }
    }
}

impl SlurmSettings {
    /// Reads the settings from an experiment file's `[executor.slurm]`
    /// table (or the keys written in `[executor]` itself); errors point at
    /// the key and say what is allowed.
    pub fn from_section(section: &Section) -> Result<Self, ConfigError> {
        let settings: SlurmSettings = section.parse()?;
        settings.validate().map_err(|e| {
            section.error(
                &e.key,
                format!("`{}.{}`: {}", section.key(), e.key, e.message),
            )
        })?;
        Ok(settings)
    }

    /// Checks value ranges (serde checks the types).
    pub fn validate(&self) -> Result<(), SettingError> {
        let bad = |key: &str, msg: String| {
            Err(SettingError {
                key: key.to_string(),
                message: msg,
            })
        };
        if self.cpus_per_trial == 0 {
            return bad("cpus_per_trial", "is 0 (allowed: at least 1)".into());
        }
        if self.max_jobs_in_flight == 0 {
            return bad("max_jobs_in_flight", "is 0 (allowed: at least 1)".into());
        }
        // Bounded so that they convert to a `Duration` (1e300 panicked).
        if !(self.poll_interval_s.is_finite()
            && self.poll_interval_s > 0.0
            && self.poll_interval_s <= 86_400.0)
        {
            return bad(
                "poll_interval_s",
                format!(
                    "is {} (allowed: a number > 0, at most 86400)",
                    self.poll_interval_s
                ),
            );
        }
        if !(self.result_grace_s.is_finite()
            && self.result_grace_s >= 0.0
            && self.result_grace_s <= 86_400.0)
        {
            return bad(
                "result_grace_s",
                format!(
                    "is {} (allowed: a number >= 0, at most 86400)",
                    self.result_grace_s
                ),
            );
        }
        if let Some(GpuRequest::Count(0)) = self.gpus {
            return bad("gpus", "is 0 (leave it out for CPU-only jobs)".into());
        }
        for (key, v) in [
            ("partition", &self.partition),
            ("account", &self.account),
            ("time_limit", &self.time_limit),
            ("mem", &self.mem),
        ] {
            if let Some(v) = v {
                if v.trim().is_empty() {
                    return bad(key, "is empty (leave it out for SLURM's default)".into());
                }
            }
        }
        Ok(())
    }
}

/// A SLURM setting out of range: which key, and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{key}` {message}")]
pub struct SettingError {
    /// The key in `[executor.slurm]`.
    pub key: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

/// GPUs of one trial, as `--gres=gpu:<request>`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum GpuRequest {
    /// A number of GPUs of any type.
    Count(u32),
    /// A typed request such as `"a100:2"`.
    Spec(String),
}

impl GpuRequest {
    pub(super) fn gres(&self) -> String {
        match self {
            GpuRequest::Count(n) => format!("--gres=gpu:{n}"),
            GpuRequest::Spec(s) => format!("--gres=gpu:{}", s.trim_start_matches("gpu:")),
        }
    }
}

//! The built-in executors: `threads` (in this process), `processes` (one
//! child process per trial) and `slurm` (one batch job per trial).

use std::sync::Arc;

use serde::Deserialize;

use crate::executor::processes::ProcessExecutor;
use crate::executor::slurm::{SlurmExecutor, SlurmSettings};
use crate::executor::threads::ThreadExecutor;
use crate::executor::{Executor, ExecutorError, ExecutorSetup};
use crate::registry::{ExecutorFactory, Registry};
use crate::settings::{ConfigError, Section};

/// Registers the three executors.
pub fn register(r: &mut Registry) {
    r.register_executor("threads", Arc::new(Threads));
    r.register_executor("processes", Arc::new(Processes));
    r.register_executor("slurm", Arc::new(Slurm));
}

struct Threads;

impl ExecutorFactory for Threads {
    fn description(&self) -> String {
        "worker threads in the run's process (the default)".into()
    }

    fn check(&self, settings: &Section) -> Result<(), ConfigError> {
        if settings.value().get("memory_limit").is_some() {
            return Err(settings.error(
                "memory_limit",
                "`executor.memory_limit` needs `kind = \"processes\"` (threads share one process; SLURM jobs take `executor.slurm.mem`)",
            ));
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct NoSettings {}
        settings.parse::<NoSettings>().map(|_| ())
    }

    fn build(
        &self,
        _settings: &Section,
        setup: ExecutorSetup,
    ) -> Result<Box<dyn Executor>, ExecutorError> {
        Ok(Box::new(ThreadExecutor::new(
            setup.evaluator,
            setup.workers,
            setup.trial_time_limit,
        )))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessesToml {
    /// Address-space limit of one child process, e.g. `"4G"`.
    #[serde(default)]
    memory_limit: Option<String>,
}

struct Processes;

impl Processes {
    fn memory_limit(settings: &Section) -> Result<Option<u64>, ConfigError> {
        let t: ProcessesToml = settings.parse()?;
        t.memory_limit
            .as_deref()
            .map(parse_memory)
            .transpose()
            .map_err(|e| settings.error("memory_limit", format!("`executor.memory_limit`: {e}")))
    }
}

impl ExecutorFactory for Processes {
    fn description(&self) -> String {
        "one child process per trial (`<binary> trial`): isolated from crashes, with time and memory limits".into()
    }

    fn check(&self, settings: &Section) -> Result<(), ConfigError> {
        Self::memory_limit(settings).map(|_| ())
    }

    fn build(
        &self,
        settings: &Section,
        setup: ExecutorSetup,
    ) -> Result<Box<dyn Executor>, ExecutorError> {
        let limit =
            Self::memory_limit(settings).map_err(|e| ExecutorError::Other(e.to_string()))?;
        Ok(Box::new(ProcessExecutor::new(setup, limit)?))
    }
}

struct Slurm;

impl ExecutorFactory for Slurm {
    fn description(&self) -> String {
        "one SLURM batch job per trial (`sbatch`, `squeue`, `sacct`)".into()
    }

    fn check(&self, settings: &Section) -> Result<(), ConfigError> {
        SlurmSettings::from_section(settings).map(|_| ())
    }

    fn build(
        &self,
        settings: &Section,
        setup: ExecutorSetup,
    ) -> Result<Box<dyn Executor>, ExecutorError> {
        let s = SlurmSettings::from_section(settings)
            .map_err(|e| ExecutorError::Other(e.to_string()))?;
        Ok(Box::new(SlurmExecutor::new(s, setup)?))
    }
}

/// The smallest `memory_limit`: measured, `dsnn trial` cannot map its
/// shared libraries under 16 MiB and cannot decompress a data set under
/// 32 MiB; a test-problem trial runs in 32 MiB, a LeNet-5 trial needs about
/// 128 MiB (docs/config.md).
pub const MIN_MEMORY_LIMIT: u64 = 64 << 20;

/// Parses a memory size such as `512M`, `4G`, `1.5GiB` or a byte count.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a memory size (e.g. 512M, 4G)"))?;
    let scale = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1u64,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => return Err(format!("`{text}`: unknown unit (allowed: K, M, G, T)")),
    };
    let bytes = value * scale as f64;
    if bytes < MIN_MEMORY_LIMIT as f64 {
        return Err(format!(
            "`{text}` is too small (at least 64M: below it a `dsnn trial` process cannot \
             load its libraries and data; a LeNet-5 trial needs about 128M)"
        ));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_parse_and_the_minimum_is_one_a_trial_can_start_in() {
        assert_eq!(parse_memory("512M"), Ok(512 << 20));
        assert_eq!(parse_memory("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_memory("64M"), Ok(MIN_MEMORY_LIMIT));
        for bad in ["16M", "63M", "4x", "M", ""] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
        assert!(parse_memory("16M").unwrap_err().contains("at least 64M"));
    }
}

//! An energy estimator in CodeCarbon's manner, for machines without energy
//! counters (virtual machines, containers without powercap access).
//!
//! The figures follow CodeCarbon 3.3.2's fallback path on Linux when RAPL is
//! absent (`ResourceTracker._setup_fallback_tracking`, `CPU` in `cpu_load`
//! mode, `RAM`):
//!
//! **CPU power budget.** The model name from `/proc/cpuinfo` is looked up in
//! the TDP table ([`crate::cpu_tdp`]). Then
//! * model found: budget = TDP x sockets;
//! * model detected but not in the table (or ambiguous): 4 W per logical
//!   CPU (`DEFAULT_POWER_PER_CORE`), x sockets;
//! * no model detected at all: 85 W (`POWER_CONSTANT`), flagged generic;
//! * a TDP given by the user overrides all of these.
//!
//! **CPU power.** [`CpuPowerMode::ProcessShare`] (CodeCarbon's
//! `tracking_mode="process"`): P = budget x (process CPU time / wall time) /
//! logical CPUs, so the CPU energy of a region is budget x CPU time /
//! logical CPUs. [`CpuPowerMode::MachineLoad`] (`tracking_mode="machine"`):
//! P = budget x (0.1 + 0.9 x load^3) with the machine's load from
//! `/proc/stat`. [`CpuPowerMode::Constant`] (CodeCarbon without psutil):
//! P = budget x 0.5.
//!
//! **RAM power.** CodeCarbon 3's DIMM heuristic on the memory size (the
//! process's resident set in process mode, the machine's total in machine
//! mode): the DIMM count is guessed from the size, 5 W per x86 DIMM (1.5 W
//! on ARM) with diminishing increments above 4, 8 and 16 DIMMs, and at least
//! 10 W (3 W on ARM). A fixed wattage can be given instead.
//!
//! **GPU power.** Only where the user gives a constant wattage; the NVML
//! meter measures real GPUs.
//!
//! Every figure this meter produces is [`Provenance::Estimated`]. PUE and
//! carbon intensity are applied later by [`crate::carbon::CarbonAccount`].

use crate::cpu_tdp::{CpuInfo, TdpLookup, TdpTable};
use crate::error::{EnergyError, Result};
use crate::meter::{
    Component, ComponentEnergy, CpuClock, EnergyMeter, EnergyReading, Provenance, RegionTimer,
    RusageClock,
};
use crate::units::Energy;
use serde::{Deserialize, Serialize};

/// CodeCarbon's watts per logical CPU for a model missing from the table.
pub const DEFAULT_POWER_PER_THREAD_W: f64 = 4.0;
/// CodeCarbon's CPU power when no model can be detected at all.
pub const GENERIC_CPU_POWER_W: f64 = 85.0;
/// CodeCarbon's share of TDP drawn in constant mode.
pub const CONSTANT_MODE_TDP_SHARE: f64 = 0.5;
/// Bytes in CodeCarbon's "GB" (it divides by 1024^3).
pub const BYTES_PER_GB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Where the CPU power budget came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TdpSource {
    /// A row of the TDP table.
    Table {
        /// The table's model name.
        matched: String,
    },
    /// The model is unknown: 4 W per logical CPU.
    PerThreadDefault {
        /// Why the table gave nothing (not found, or the ambiguous candidates).
        reason: String,
    },
    /// No model could be detected: 85 W.
    Generic,
    /// Given by the user.
    User,
}

/// The CPU as the estimator sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuPowerSpec {
    /// Detected model name, if any.
    pub model: Option<String>,
    /// Power budget of the whole machine's CPUs in W (TDP x sockets, or a fallback).
    pub budget_w: f64,
    /// Logical CPUs (the denominator of the process share).
    pub logical_cpus: usize,
    /// Where the budget came from.
    pub source: TdpSource,
}

impl CpuPowerSpec {
    /// Resolves the budget for `info` from `table`, applying CodeCarbon's
    /// fallbacks; `user_tdp_w` (whole machine) overrides everything.
    pub fn resolve(
        info: &CpuInfo,
        table: &TdpTable,
        greedy: bool,
        user_tdp_w: Option<f64>,
    ) -> Result<Self> {
        let logical_cpus = info.logical_cpus.max(1);
        let sockets = info.sockets.max(1) as f64;
        if let Some(w) = user_tdp_w {
            if !w.is_finite() || w <= 0.0 {
                return Err(EnergyError::invalid("CPU TDP", format!("{w} W")));
            }
            return Ok(CpuPowerSpec {
                model: info.model.clone(),
                budget_w: w,
                logical_cpus,
                source: TdpSource::User,
            });
        }
        let Some(model) = info.model.clone() else {
            log::warn!(
                "CPU model not detected; using CodeCarbon's generic {GENERIC_CPU_POWER_W} W"
            );
            return Ok(CpuPowerSpec {
                model: None,
                budget_w: GENERIC_CPU_POWER_W,
                logical_cpus,
                source: TdpSource::Generic,
            });
        };
        let (tdp, source) = match table.lookup(&model, greedy) {
            TdpLookup::Found { row, .. } => (row.tdp_w, TdpSource::Table { matched: row.name }),
            other => {
                let reason = match other {
                    TdpLookup::Ambiguous { candidates } => {
                        format!(
                            "`{model}` matches several models ({})",
                            candidates.join(", ")
                        )
                    }
                    _ => format!("`{model}` is not in the TDP table"),
                };
                let tdp = DEFAULT_POWER_PER_THREAD_W * logical_cpus as f64;
                log::warn!(
                    "{reason}; using {DEFAULT_POWER_PER_THREAD_W} W per logical CPU ({tdp} W)"
                );
                (tdp, TdpSource::PerThreadDefault { reason })
            }
        };
        Ok(CpuPowerSpec {
            model: Some(model),
            budget_w: tdp * sockets,
            logical_cpus,
            source,
        })
    }
}

/// How CPU power follows the work (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuPowerMode {
    /// budget x process CPU time / (wall x logical CPUs).
    ProcessShare,
    /// budget x (0.1 + 0.9 x machine load^3).
    MachineLoad,
    /// budget x 0.5.
    Constant,
}

/// How RAM power is estimated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RamPowerModel {
    /// CodeCarbon 3's DIMM heuristic on the memory size.
    Dimms {
        /// ARM memory (1.5 W per DIMM, at least 3 W) instead of x86.
        arm: bool,
    },
    /// A fixed wattage.
    Fixed {
        /// Watts.
        watts: f64,
    },
}

/// CodeCarbon 3's guess of the number of DIMMs holding `gb` of memory.
pub fn estimate_dimm_count(gb: f64) -> u32 {
    if gb <= 2.0 {
        1
    } else if gb <= 16.0 {
        2
    } else if gb <= 64.0 {
        4
    } else if gb <= 128.0 {
        8
    } else {
        // Large servers: the largest common DIMM size that gives at least 8
        // DIMMs, capped at 32 DIMMs.
        [128.0f64, 64.0, 32.0, 16.0, 8.0, 4.0]
            .into_iter()
            .find(|size| *size <= gb / 8.0)
            .map(|size| ((gb / size).ceil() as u32).min(32))
            .unwrap_or(8)
    }
}

/// CodeCarbon 3's RAM power for `gb` of memory, in W.
pub fn dimm_ram_power_w(gb: f64, arm: bool) -> f64 {
    let dimms = f64::from(estimate_dimm_count(gb));
    let (per_dimm, min_w) = if arm { (1.5, 3.0) } else { (5.0, 10.0) };
    let total = if dimms <= 4.0 {
        per_dimm * dimms
    } else if dimms <= 8.0 {
        per_dimm * 4.0 + per_dimm * 0.9 * (dimms - 4.0)
    } else if dimms <= 16.0 {
        per_dimm * 4.0 + per_dimm * 0.9 * 4.0 + per_dimm * 0.8 * (dimms - 8.0)
    } else {
        per_dimm * 4.0
            + per_dimm * 0.9 * 4.0
            + per_dimm * 0.8 * 8.0
            + per_dimm * 0.7 * (dimms - 16.0)
    };
    total.max(min_w)
}

impl RamPowerModel {
    /// Power in W for `gb` of memory.
    pub fn power_w(&self, gb: f64) -> f64 {
        match *self {
            RamPowerModel::Dimms { arm } => dimm_ram_power_w(gb, arm),
            RamPowerModel::Fixed { watts } => watts,
        }
    }
}

/// Which memory size the RAM model sees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RamSize {
    /// The process's resident set at the end of the region (process mode).
    ProcessRss,
    /// The machine's total memory (machine mode).
    MachineTotal,
    /// A fixed size in GB.
    Fixed {
        /// Gigabytes (1024^3 bytes).
        gb: f64,
    },
}

/// Everything the estimator needs to know about the machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EstimatorConfig {
    /// CPU power budget.
    pub cpu: CpuPowerSpec,
    /// How CPU power follows the work.
    pub mode: CpuPowerMode,
    /// RAM power model.
    pub ram: RamPowerModel,
    /// Memory size fed to the RAM model.
    pub ram_size: RamSize,
    /// Constant GPU power in W, if the user gives one.
    pub gpu_w: Option<f64>,
    /// Whether to report CPU energy; off when a RAPL meter measures the CPU
    /// and this estimator only supplies RAM (and GPU) figures.
    #[serde(default = "default_true")]
    pub include_cpu: bool,
}

fn default_true() -> bool {
    true
}

impl EstimatorConfig {
    /// CodeCarbon's process-tracking setup for this machine: CPU from
    /// `/proc/cpuinfo` and the embedded table, process CPU share, DIMM RAM
    /// model on the process's resident set, no GPU.
    pub fn detect() -> Result<Self> {
        let info = CpuInfo::detect();
        let cpu = CpuPowerSpec::resolve(&info, TdpTable::embedded(), false, None)?;
        Ok(EstimatorConfig {
            cpu,
            mode: CpuPowerMode::ProcessShare,
            ram: RamPowerModel::Dimms {
                arm: cfg!(any(target_arch = "aarch64", target_arch = "arm")),
            },
            ram_size: RamSize::ProcessRss,
            gpu_w: None,
            include_cpu: true,
        })
    }
}

/// The measurements an estimate is computed from; fixed inputs give exact results.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EstimateInputs {
    /// Wall time of the region in s.
    pub wall_s: f64,
    /// Process CPU time (user + system) used during the region in s.
    pub cpu_time_s: f64,
    /// Machine load over the region, 0..1 (used by `MachineLoad`).
    pub machine_load: f64,
    /// Memory size for the RAM model, GB.
    pub ram_gb: f64,
}

/// The estimated power of each component and the energy of the region.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Average CPU power in W.
    pub cpu_w: f64,
    /// RAM power in W.
    pub ram_w: f64,
    /// GPU power in W.
    pub gpu_w: f64,
    /// CPU energy.
    pub cpu: Energy,
    /// RAM energy.
    pub ram: Energy,
    /// GPU energy.
    pub gpu: Energy,
}

impl Estimate {
    /// Sum of the parts.
    pub fn total(&self) -> Energy {
        self.cpu + self.ram + self.gpu
    }
}

impl EstimatorConfig {
    /// The estimate for fixed inputs (pure; see the module docs for formulas).
    pub fn estimate(&self, x: &EstimateInputs) -> Estimate {
        let budget = self.cpu.budget_w;
        let cpu_w = if x.wall_s <= 0.0 {
            0.0
        } else {
            match self.mode {
                CpuPowerMode::ProcessShare => {
                    budget * (x.cpu_time_s / x.wall_s) / self.cpu.logical_cpus.max(1) as f64
                }
                CpuPowerMode::MachineLoad => {
                    let l = x.machine_load.clamp(0.0, 1.0);
                    budget * (0.1 + 0.9 * l * l * l)
                }
                CpuPowerMode::Constant => budget * CONSTANT_MODE_TDP_SHARE,
            }
        };
        let ram_w = self.ram.power_w(x.ram_gb);
        let gpu_w = self.gpu_w.unwrap_or(0.0);
        let wall = x.wall_s.max(0.0);
        Estimate {
            cpu_w,
            ram_w,
            gpu_w,
            cpu: Energy::from_power(cpu_w, wall),
            ram: Energy::from_power(ram_w, wall),
            gpu: Energy::from_power(gpu_w, wall),
        }
    }
}

/// Aggregate CPU times from the first line of `/proc/stat`: (busy, total)
/// in clock ticks; idle and iowait count as not busy.
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 4 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Resident set size in bytes from the text of `/proc/self/statm` and the page size.
pub fn parse_statm_rss(text: &str, page_size: u64) -> Option<u64> {
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size)
}

/// `MemTotal` in bytes from the text of `/proc/meminfo`.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(unix)]
fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).unwrap_or(4096)
}

#[cfg(not(unix))]
fn page_size() -> u64 {
    4096
}

fn read_machine_stat() -> Option<(u64, u64)> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn read_ram_gb(size: RamSize) -> f64 {
    let bytes = match size {
        RamSize::Fixed { gb } => return gb,
        RamSize::ProcessRss => std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|t| parse_statm_rss(&t, page_size())),
        RamSize::MachineTotal => std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| parse_meminfo_total(&t)),
    };
    match bytes {
        Some(b) => b as f64 / BYTES_PER_GB,
        None => {
            log::warn!("cannot read the memory size for {size:?}; RAM model sees 0 GB");
            0.0
        }
    }
}

/// The CodeCarbon-style estimator as an [`EnergyMeter`].
pub struct EstimatorMeter {
    config: EstimatorConfig,
    clock: Box<dyn CpuClock>,
    timer: Option<RegionTimer>,
    stat_start: Option<(u64, u64)>,
    last: Option<Estimate>,
}

impl EstimatorMeter {
    /// A meter with the given configuration and the real CPU clock.
    pub fn new(config: EstimatorConfig) -> Self {
        Self::with_clock(config, Box::new(RusageClock))
    }

    /// A meter reading process CPU time from `clock` (for tests and for
    /// callers that account CPU time themselves).
    pub fn with_clock(config: EstimatorConfig, clock: Box<dyn CpuClock>) -> Self {
        EstimatorMeter {
            config,
            clock,
            timer: None,
            stat_start: None,
            last: None,
        }
    }

    /// A meter for this machine ([`EstimatorConfig::detect`]).
    pub fn detect() -> Result<Self> {
        Ok(Self::new(EstimatorConfig::detect()?))
    }

    /// The configuration in use.
    pub fn config(&self) -> &EstimatorConfig {
        &self.config
    }

    /// The powers behind the last reading.
    pub fn last_estimate(&self) -> Option<&Estimate> {
        self.last.as_ref()
    }
}

impl EnergyMeter for EstimatorMeter {
    fn name(&self) -> &str {
        "codecarbon-estimate"
    }

    fn start(&mut self) -> Result<()> {
        if self.timer.is_some() {
            return Err(EnergyError::AlreadyStarted(self.name().into()));
        }
        if self.config.mode == CpuPowerMode::MachineLoad {
            self.stat_start = read_machine_stat();
        }
        self.timer = Some(RegionTimer::start(self.clock.as_ref())?);
        Ok(())
    }

    fn stop(&mut self) -> Result<EnergyReading> {
        let timer = self
            .timer
            .take()
            .ok_or_else(|| EnergyError::NotStarted(self.name().into()))?;
        let span = timer.finish(self.clock.as_ref())?;
        let machine_load = match (self.stat_start.take(), read_machine_stat()) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                b1.saturating_sub(b0) as f64 / (t1 - t0) as f64
            }
            _ => 0.0,
        };
        let inputs = EstimateInputs {
            wall_s: span.wall.as_secs_f64(),
            cpu_time_s: span.cpu_time.as_secs_f64(),
            machine_load,
            ram_gb: read_ram_gb(self.config.ram_size),
        };
        let est = self.config.estimate(&inputs);
        self.last = Some(est);
        let part = |component, energy, what: &str| ComponentEnergy {
            component,
            energy,
            source: format!("codecarbon-estimate:{what}"),
            provenance: Provenance::Estimated,
        };
        let mut components = Vec::with_capacity(3);
        if self.config.include_cpu {
            components.push(part(Component::Cpu, est.cpu, "cpu"));
        }
        components.push(part(Component::Ram, est.ram, "ram"));
        if self.config.gpu_w.is_some() {
            components.push(part(Component::Gpu, est.gpu, "gpu"));
        }
        Ok(EnergyReading::from_components(
            self.name(),
            span,
            components,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::measure;
    use crate::meter::tests::FakeClock;
    use std::time::Duration;

    fn info(model: Option<&str>, logical: usize, sockets: usize) -> CpuInfo {
        CpuInfo {
            model: model.map(str::to_string),
            logical_cpus: logical,
            sockets,
        }
    }

    fn spec(model: Option<&str>, logical: usize, sockets: usize) -> CpuPowerSpec {
        CpuPowerSpec::resolve(
            &info(model, logical, sockets),
            TdpTable::embedded(),
            false,
            None,
        )
        .unwrap()
    }

    #[test]
    fn known_model_uses_table_tdp_times_sockets() {
        let s = spec(Some("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz"), 80, 2);
        assert_eq!(s.budget_w, 2.0 * 150.0);
        assert!(
            matches!(s.source, TdpSource::Table { ref matched } if matched == "Intel Xeon Gold 6148")
        );
    }

    #[test]
    fn unknown_or_ambiguous_model_uses_four_watts_per_thread() {
        let s = spec(Some("Quantum Widget 9000"), 8, 1);
        assert_eq!(s.budget_w, 32.0);
        assert!(matches!(s.source, TdpSource::PerThreadDefault { .. }));
        // "AMD EPYC" (this machine) is ambiguous: 2 threads x 4 W.
        let s = spec(Some("AMD EPYC"), 2, 1);
        assert_eq!(s.budget_w, 8.0);
        match &s.source {
            TdpSource::PerThreadDefault { reason } => {
                assert!(reason.contains("several"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn undetected_model_uses_generic_85_w_and_user_tdp_overrides() {
        let s = spec(None, 4, 2);
        assert_eq!(s.budget_w, 85.0);
        assert_eq!(s.source, TdpSource::Generic);
        let u = CpuPowerSpec::resolve(
            &info(Some("AMD EPYC"), 2, 1),
            TdpTable::embedded(),
            false,
            Some(120.0),
        )
        .unwrap();
        assert_eq!(u.budget_w, 120.0);
        assert_eq!(u.source, TdpSource::User);
        assert!(
            CpuPowerSpec::resolve(&info(None, 2, 1), TdpTable::embedded(), false, Some(0.0))
                .is_err()
        );
    }

    #[test]
    fn ram_dimm_heuristic_matches_codecarbon_figures() {
        // (GB, W) pairs worked by hand from CodeCarbon 3.3.2's ram.py.
        for (gb, w) in [
            (0.5, 10.0),     // 1 DIMM x 5 W, raised to the 10 W minimum
            (8.0, 10.0),     // 2 DIMMs
            (23.5, 20.0),    // 4 DIMMs
            (64.0, 20.0),    // 4 DIMMs
            (100.0, 38.0),   // 8 DIMMs: 20 + 4 x 4.5
            (256.0, 38.0),   // 256/8 = 32 -> 32 GB DIMMs -> 8 DIMMs
            (512.0, 38.0),   // 64 GB DIMMs -> 8
            (2048.0, 70.0),  // 128 GB DIMMs -> 16: 20 + 18 + 8 x 4
            (8192.0, 126.0), // 64 DIMMs capped at 32: 20 + 18 + 32 + 16 x 3.5
        ] {
            assert!(
                (dimm_ram_power_w(gb, false) - w).abs() < 1e-9,
                "{gb} GB: {}",
                dimm_ram_power_w(gb, false)
            );
        }
        assert_eq!(dimm_ram_power_w(1.0, true), 3.0);
        assert_eq!(dimm_ram_power_w(48.0, true), 6.0);
    }

    fn config(mode: CpuPowerMode) -> EstimatorConfig {
        EstimatorConfig {
            cpu: CpuPowerSpec {
                model: Some("Test CPU".into()),
                budget_w: 120.0,
                logical_cpus: 8,
                source: TdpSource::User,
            },
            mode,
            ram: RamPowerModel::Dimms { arm: false },
            ram_size: RamSize::Fixed { gb: 0.5 },
            gpu_w: Some(50.0),
            include_cpu: true,
        }
    }

    #[test]
    fn process_share_energy_is_budget_times_cpu_time_over_cpus() {
        let x = EstimateInputs {
            wall_s: 10.0,
            cpu_time_s: 4.0,
            machine_load: 0.0,
            ram_gb: 0.5,
        };
        let e = config(CpuPowerMode::ProcessShare).estimate(&x);
        // 120 W x (4 s / 10 s) / 8 CPUs = 6 W; 60 J.
        assert_eq!(e.cpu_w, 6.0);
        assert_eq!(e.cpu.joules(), 60.0);
        assert_eq!(e.ram.joules(), 100.0);
        assert_eq!(e.gpu.joules(), 500.0);
        assert_eq!(e.total().joules(), 660.0);
    }

    #[test]
    fn machine_load_is_cubic_with_ten_percent_floor_and_constant_is_half() {
        let mut x = EstimateInputs {
            wall_s: 2.0,
            cpu_time_s: 0.0,
            machine_load: 0.5,
            ram_gb: 0.5,
        };
        let c = config(CpuPowerMode::MachineLoad);
        // 120 x (0.1 + 0.9 x 0.125) = 25.5 W.
        assert!((c.estimate(&x).cpu_w - 25.5).abs() < 1e-12);
        x.machine_load = 0.0;
        assert!((c.estimate(&x).cpu_w - 12.0).abs() < 1e-12);
        assert_eq!(config(CpuPowerMode::Constant).estimate(&x).cpu_w, 60.0);
        x.wall_s = 0.0;
        assert_eq!(c.estimate(&x).total().joules(), 0.0);
    }

    #[test]
    fn proc_parsers() {
        let stat = "cpu  45192 0 8275 528651 361 0 154 264 0 0\ncpu0 1 2 3 4\n";
        let (busy, total) = parse_proc_stat(stat).unwrap();
        assert_eq!(total, 45192 + 8275 + 528651 + 361 + 154 + 264);
        assert_eq!(busy, 45192 + 8275 + 154 + 264);
        assert_eq!(parse_proc_stat("intr 1 2"), None);
        assert_eq!(
            parse_statm_rss("765 424 396 5 0 123 0", 4096),
            Some(424 * 4096)
        );
        assert_eq!(
            parse_meminfo_total("MemTotal:       24684084 kB\n"),
            Some(24684084 * 1024)
        );
    }

    #[test]
    fn meter_cpu_energy_is_exact_with_a_fixed_cpu_clock() {
        let clock = FakeClock::default();
        let mut m =
            EstimatorMeter::with_clock(config(CpuPowerMode::ProcessShare), Box::new(clock.clone()));
        let ((), r) = measure(&mut m, || clock.set(Duration::from_secs(2))).unwrap();
        // 120 W budget x 2 s CPU / 8 CPUs = 30 J, whatever the wall time.
        assert!((r.energy_of(Component::Cpu).joules() - 30.0).abs() < 1e-9);
        assert_eq!(r.cpu_time, Duration::from_secs(2));
        let wall = r.wall.as_secs_f64();
        assert!((r.energy_of(Component::Ram).joules() - 10.0 * wall).abs() < 1e-9);
        assert!((r.energy_of(Component::Gpu).joules() - 50.0 * wall).abs() < 1e-9);
        assert_eq!(r.provenance, Provenance::Estimated);
        assert_eq!(r.source, "codecarbon-estimate");
        assert!(matches!(m.stop(), Err(EnergyError::NotStarted(_))));

        // RAM and GPU only (the CPU measured elsewhere).
        let mut cfg = config(CpuPowerMode::ProcessShare);
        cfg.include_cpu = false;
        let mut m = EstimatorMeter::with_clock(cfg, Box::new(clock.clone()));
        let ((), r) = measure(&mut m, || clock.set(Duration::from_secs(9))).unwrap();
        assert_eq!(r.energy_of(Component::Cpu).joules(), 0.0);
        assert_eq!(r.components.len(), 2);
    }

    #[test]
    fn machine_load_meter_reads_proc_stat() {
        let mut cfg = config(CpuPowerMode::MachineLoad);
        cfg.gpu_w = None;
        let mut m = EstimatorMeter::new(cfg);
        let (_, r) = measure(&mut m, || {
            let t = std::time::Instant::now();
            let mut x = 0u64;
            while t.elapsed() < Duration::from_millis(50) {
                x = x.wrapping_add(1);
            }
            std::hint::black_box(x)
        })
        .unwrap();
        let cpu_w = m.last_estimate().unwrap().cpu_w;
        // Between the 10% floor and the full budget of 120 W.
        assert!((12.0..=120.0).contains(&cpu_w), "{cpu_w} W");
        let wall = r.wall.as_secs_f64();
        assert!((r.energy_of(Component::Cpu).joules() - cpu_w * wall).abs() < 1e-9);
    }

    #[test]
    fn detected_meter_runs_on_this_machine() {
        let mut m = EstimatorMeter::detect().unwrap();
        let (_, r) = measure(&mut m, || (0..200_000u64).sum::<u64>()).unwrap();
        assert!(r.joules() >= 0.0);
        assert!(m.last_estimate().unwrap().ram_w >= 3.0);
    }
}

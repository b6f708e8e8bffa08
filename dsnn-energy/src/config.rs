//! Choosing and building meters from a configuration (the `[energy]` part
//! of a run file), including the `auto` choice that measures what the
//! machine can measure and estimates the rest.
//!
//! `auto` picks, and records why in [`BuiltMeter::notes`]:
//! * CPU: RAPL when the powercap tree is readable, otherwise the
//!   CodeCarbon-style estimate;
//! * RAM: RAPL's DRAM domains when RAPL has them, otherwise the estimate;
//! * GPU: NVML when the driver is present (nothing otherwise).

use crate::error::{EnergyError, Result};
use crate::estimator::{
    CpuPowerMode, CpuPowerSpec, EstimatorConfig, EstimatorMeter, RamPowerModel,
};
use crate::meter::{CombinedMeter, EnergyMeter};
use crate::nvml::NvmlMeter;
use crate::rapl::{DomainKind, RaplMeter, DEFAULT_POWERCAP_ROOT};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Which meter to build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum MeterSpec {
    /// Measure what can be measured, estimate the rest (see the module docs).
    Auto {
        /// Powercap root (default `/sys/class/powercap`).
        #[serde(default)]
        powercap_root: Option<PathBuf>,
        /// Whether to look for NVIDIA GPUs.
        #[serde(default = "yes")]
        gpu: bool,
    },
    /// RAPL only; fails if unavailable.
    Rapl {
        /// Powercap root (default `/sys/class/powercap`).
        #[serde(default)]
        powercap_root: Option<PathBuf>,
        /// Add DRAM domains as RAM energy.
        #[serde(default)]
        include_dram: bool,
    },
    /// NVML only; fails if unavailable.
    Nvml {
        /// GPU indices (all when absent).
        #[serde(default)]
        devices: Option<Vec<u32>>,
        /// Power sampling interval for GPUs without an energy counter, ms.
        #[serde(default = "default_sample_ms")]
        sample_interval_ms: u64,
    },
    /// The CodeCarbon-style estimate only.
    Estimator {
        /// Whole-machine CPU TDP in W, overriding the table.
        #[serde(default)]
        cpu_tdp_w: Option<f64>,
        /// How CPU power follows the work.
        #[serde(default = "default_mode")]
        mode: CpuPowerMode,
        /// Fixed RAM power in W instead of the DIMM heuristic.
        #[serde(default)]
        ram_w: Option<f64>,
        /// Constant GPU power in W.
        #[serde(default)]
        gpu_w: Option<f64>,
    },
}

fn yes() -> bool {
    true
}

fn default_sample_ms() -> u64 {
    100
}

fn default_mode() -> CpuPowerMode {
    CpuPowerMode::ProcessShare
}

impl Default for MeterSpec {
    fn default() -> Self {
        MeterSpec::Auto {
            powercap_root: None,
            gpu: true,
        }
    }
}

/// A built meter and the reasons for each choice.
pub struct BuiltMeter {
    /// The meter (a [`CombinedMeter`] for `auto`).
    pub meter: Box<dyn EnergyMeter>,
    /// One line per decision, e.g. why RAPL was not used.
    pub notes: Vec<String>,
}

impl MeterSpec {
    /// Checks the settings' values without touching the machine, so that a
    /// configuration can be validated before anything runs. Returns the
    /// offending option's name with the error.
    pub fn validate(&self) -> std::result::Result<(), (&'static str, EnergyError)> {
        match self {
            MeterSpec::Nvml {
                sample_interval_ms, ..
            } if *sample_interval_ms == 0 => Err((
                "sample_interval_ms",
                EnergyError::invalid("NVML sample interval", "0 ms (allowed: at least 1)"),
            )),
            MeterSpec::Estimator {
                cpu_tdp_w,
                ram_w,
                gpu_w,
                ..
            } => {
                if let Some(w) = cpu_tdp_w {
                    if !w.is_finite() || *w <= 0.0 {
                        return Err((
                            "cpu_tdp_w",
                            EnergyError::invalid("CPU TDP", format!("{w} W (allowed: > 0)")),
                        ));
                    }
                }
                if let Some(w) = ram_w {
                    check_watts("RAM power", *w).map_err(|e| ("ram_w", e))?;
                }
                if let Some(w) = gpu_w {
                    check_watts("GPU power", *w).map_err(|e| ("gpu_w", e))?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Builds the meter.
    pub fn build(&self) -> Result<BuiltMeter> {
        self.validate().map_err(|(_, e)| e)?;
        let mut notes = Vec::new();
        let meter: Box<dyn EnergyMeter> = match self {
            MeterSpec::Rapl {
                powercap_root,
                include_dram,
            } => Box::new(RaplMeter::open(root(powercap_root))?.include_dram(*include_dram)),
            MeterSpec::Nvml {
                devices,
                sample_interval_ms,
            } => Box::new(
                NvmlMeter::with_backend(
                    std::sync::Arc::new(crate::nvml::Nvml::load()?),
                    devices.as_deref(),
                )?
                .sample_interval(Duration::from_millis(*sample_interval_ms)),
            ),
            MeterSpec::Estimator {
                cpu_tdp_w,
                mode,
                ram_w,
                gpu_w,
            } => {
                let mut cfg = EstimatorConfig::detect()?;
                if cpu_tdp_w.is_some() {
                    let info = crate::cpu_tdp::CpuInfo::detect();
                    cfg.cpu = CpuPowerSpec::resolve(
                        &info,
                        crate::cpu_tdp::TdpTable::embedded(),
                        false,
                        *cpu_tdp_w,
                    )?;
                }
                cfg.mode = *mode;
                if let Some(w) = ram_w {
                    cfg.ram = RamPowerModel::Fixed { watts: *w };
                }
                cfg.gpu_w = *gpu_w;
                notes.push(describe_estimate(&cfg));
                Box::new(EstimatorMeter::new(cfg))
            }
            MeterSpec::Auto { powercap_root, gpu } => {
                let mut parts: Vec<Box<dyn EnergyMeter>> = Vec::new();
                let mut est = EstimatorConfig::detect()?;
                match RaplMeter::open(root(powercap_root)) {
                    Ok(rapl) => {
                        let has_dram = rapl.domains().iter().any(|d| d.kind == DomainKind::Dram);
                        notes.push(format!(
                            "cpu: measured by RAPL ({} domains under {})",
                            rapl.domains().len(),
                            rapl.root().display()
                        ));
                        parts.push(Box::new(rapl.include_dram(has_dram)));
                        est.include_cpu = false;
                        if has_dram {
                            notes.push("ram: measured by RAPL's DRAM domains".into());
                        } else {
                            notes.push("ram: estimated (RAPL has no DRAM domain)".into());
                            parts.push(Box::new(EstimatorMeter::new(est)));
                        }
                    }
                    Err(e) => {
                        notes.push(format!("cpu: estimated, because {e}"));
                        notes.push(describe_estimate(&est));
                        parts.push(Box::new(EstimatorMeter::new(est)));
                    }
                }
                if *gpu {
                    match NvmlMeter::open() {
                        Ok(m) => {
                            let names: Vec<String> = m
                                .gpus()
                                .iter()
                                .map(|g| format!("{} {} ({:?})", g.index, g.name, g.method))
                                .collect();
                            notes.push(format!("gpu: measured by NVML: {}", names.join(", ")));
                            parts.push(Box::new(m));
                        }
                        Err(e) => notes.push(format!("gpu: none metered, because {e}")),
                    }
                }
                Box::new(CombinedMeter::new(parts)?)
            }
        };
        for n in &notes {
            log::info!("energy meter {n}");
        }
        Ok(BuiltMeter { meter, notes })
    }
}

fn root(r: &Option<PathBuf>) -> PathBuf {
    r.clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_POWERCAP_ROOT))
}

fn check_watts(what: &str, w: f64) -> Result<()> {
    if w.is_finite() && w >= 0.0 {
        Ok(())
    } else {
        Err(EnergyError::invalid(what, format!("{w} W (allowed: >= 0)")))
    }
}

fn describe_estimate(cfg: &EstimatorConfig) -> String {
    format!(
        "estimate: CPU `{}` budget {} W ({:?}), {} logical CPUs, {:?}; RAM {:?}",
        cfg.cpu.model.as_deref().unwrap_or("unknown"),
        cfg.cpu.budget_w,
        cfg.cpu.source,
        cfg.cpu.logical_cpus,
        cfg.mode,
        cfg.ram
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::{measure, Component, Provenance};
    use std::fs;

    fn fake_rapl(root: &std::path::Path, with_dram: bool) {
        let mut doms = vec![("intel-rapl:0", "package-0")];
        if with_dram {
            doms.push(("intel-rapl:0:1", "dram"));
        }
        for (rel, name) in doms {
            let d = root.join(rel);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("name"), name).unwrap();
            fs::write(d.join("energy_uj"), "100").unwrap();
            fs::write(d.join("max_energy_range_uj"), "1000000").unwrap();
        }
    }

    #[test]
    fn auto_without_rapl_estimates_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let spec = MeterSpec::Auto {
            powercap_root: Some(dir.path().join("missing")),
            gpu: false,
        };
        let mut b = spec.build().unwrap();
        assert_eq!(b.meter.name(), "codecarbon-estimate");
        assert!(b.notes[0].contains("cpu: estimated") && b.notes[0].contains("missing"));
        let ((), r) = measure(&mut b.meter, || ()).unwrap();
        assert_eq!(r.provenance, Provenance::Estimated);
    }

    #[test]
    fn auto_with_rapl_measures_cpu_and_estimates_ram_only_without_dram() {
        let dir = tempfile::tempdir().unwrap();
        fake_rapl(dir.path(), false);
        let spec = MeterSpec::Auto {
            powercap_root: Some(dir.path().into()),
            gpu: false,
        };
        let mut b = spec.build().unwrap();
        assert_eq!(b.meter.name(), "rapl+codecarbon-estimate");
        let ((), r) = measure(&mut b.meter, || {
            fs::write(dir.path().join("intel-rapl:0/energy_uj"), "2000100").unwrap()
        })
        .unwrap();
        assert!((r.energy_of(Component::Cpu).joules() - 2.0).abs() < 1e-12);
        assert!(r.energy_of(Component::Ram).joules() > 0.0);
        assert_eq!(r.provenance, Provenance::Estimated);

        let dir = tempfile::tempdir().unwrap();
        fake_rapl(dir.path(), true);
        let spec = MeterSpec::Auto {
            powercap_root: Some(dir.path().into()),
            gpu: false,
        };
        let mut b = spec.build().unwrap();
        assert_eq!(b.meter.name(), "rapl");
        let ((), r) = measure(&mut b.meter, || ()).unwrap();
        assert_eq!(r.provenance, Provenance::Measured);
    }

    #[test]
    fn specs_deserialize_with_defaults_and_reject_typos() {
        let s: MeterSpec = serde_json::from_str(r#"{"kind":"auto"}"#).unwrap();
        assert_eq!(s, MeterSpec::default());
        let s: MeterSpec =
            serde_json::from_str(r#"{"kind":"estimator","cpu_tdp_w":65,"mode":"constant"}"#)
                .unwrap();
        assert_eq!(
            s,
            MeterSpec::Estimator {
                cpu_tdp_w: Some(65.0),
                mode: CpuPowerMode::Constant,
                ram_w: None,
                gpu_w: None
            }
        );
        assert!(serde_json::from_str::<MeterSpec>(r#"{"kind":"rapl","rooot":"/x"}"#).is_err());
    }

    #[test]
    fn explicit_meters_fail_when_unavailable_and_estimator_validates() {
        let dir = tempfile::tempdir().unwrap();
        let spec = MeterSpec::Rapl {
            powercap_root: Some(dir.path().join("none")),
            include_dram: false,
        };
        assert!(spec.build().err().unwrap().is_unavailable());
        let spec = MeterSpec::Estimator {
            cpu_tdp_w: Some(100.0),
            mode: CpuPowerMode::Constant,
            ram_w: Some(-1.0),
            gpu_w: None,
        };
        assert!(matches!(spec.build(), Err(EnergyError::Invalid { .. })));
        let spec = MeterSpec::Estimator {
            cpu_tdp_w: Some(100.0),
            mode: CpuPowerMode::Constant,
            ram_w: Some(3.0),
            gpu_w: None,
        };
        let b = spec.build().unwrap();
        assert!(b.notes[0].contains("100 W"), "{}", b.notes[0]);
    }
}

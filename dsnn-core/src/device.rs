//! Choosing the device that trains: `auto`, `cpu` or `cuda[:N]`.
//!
//! [`select`] never panics. For `auto` it picks the first GPU when one is
//! usable and otherwise falls back to the CPU, saying why (binary built
//! without the `cuda` feature, no NVIDIA driver, no device, or the device
//! failed to initialise). The driver is probed with `libloading` before
//! candle or cudarc touch CUDA, because cudarc panics when `libcuda` is
//! missing.

use candle_core::Device;

/// Which device the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The first CUDA GPU if one is usable, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA GPU number `N` (an error when it is not usable).
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = DeviceError;
    fn from_str(s: &str) -> Result<Self, DeviceError> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            _ => match t.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .map(DeviceSpec::Cuda)
                    .map_err(|_| DeviceError::Spec(s.to_string())),
                None => Err(DeviceError::Spec(s.to_string())),
            },
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Why a device cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The device setting is not one of the allowed forms.
    #[error("unknown device `{0}` (allowed: auto, cpu, cuda, cuda:N)")]
    Spec(String),
    /// A GPU was requested from a binary built without CUDA support.
    #[error(
        "this binary was built without the `cuda` feature (build it with scripts/build-cuda.sh)"
    )]
    NotBuilt,
    /// No usable CUDA driver or device.
    #[error("no usable CUDA GPU: {0}")]
    Unavailable(String),
    /// The requested GPU number does not exist.
    #[error("CUDA device {index} requested but only {count} present")]
    NoSuchDevice {
        /// The requested ordinal.
        index: usize,
        /// How many devices the driver reports.
        count: usize,
    },
    /// The device exists but candle could not initialise it.
    #[error("CUDA device {index} failed to initialise: {reason}")]
    Init {
        /// The requested ordinal.
        index: usize,
        /// The error from candle/cudarc.
        reason: String,
    },
}

/// What the driver probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CudaProbe {
    /// Devices the driver reports.
    pub devices: usize,
    /// The driver's CUDA version, e.g. `13.0`.
    pub driver_version: String,
    /// Name of device 0, when there is one.
    pub first_name: Option<String>,
}

/// Probes the CUDA driver without candle or cudarc: loads `libcuda`, calls
/// `cuInit` and counts devices. An error says what is missing.
pub fn probe_cuda() -> Result<CudaProbe, DeviceError> {
    #[cfg(feature = "cuda")]
    {
        probe::run()
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err(DeviceError::NotBuilt)
    }
}

/// Whether this binary was built with the `cuda` feature.
pub const fn cuda_built() -> bool {
    cfg!(feature = "cuda")
}

/// Opens the device `spec` asks for. Returns it with a one-line description
/// of the choice (for `auto`: why it fell back to the CPU, if it did).
/// `cpu` and `auto` always succeed; `cuda[:N]` fails with the reason.
pub fn select(spec: DeviceSpec) -> Result<(Device, String), DeviceError> {
    match spec {
        DeviceSpec::Cpu => Ok((Device::Cpu, "CPU (requested)".to_string())),
        DeviceSpec::Cuda(index) => open_cuda(index),
        DeviceSpec::Auto => match open_cuda(0) {
            Ok(found) => Ok(found),
            Err(why) => {
                log::info!("device auto: using the CPU ({why})");
                Ok((Device::Cpu, format!("CPU (auto: {why})")))
            }
        },
    }
}

/// [`select`] on a textual setting (`auto`, `cpu`, `cuda`, `cuda:N`).
pub fn select_str(spec: &str) -> Result<(Device, String), DeviceError> {
    select(spec.parse()?)
}

fn open_cuda(index: usize) -> Result<(Device, String), DeviceError> {
    let probe = probe_cuda()?;
    if probe.devices == 0 {
        return Err(DeviceError::Unavailable(format!(
            "the driver (CUDA {}) reports no device",
            probe.driver_version
        )));
    }
    if index >= probe.devices {
        return Err(DeviceError::NoSuchDevice {
            index,
            count: probe.devices,
        });
    }
    let opened = std::panic::catch_unwind(|| Device::new_cuda(index));
    match opened {
        Ok(Ok(device)) => {
            let name = if index == 0 {
                probe.first_name.clone().unwrap_or_default()
            } else {
                String::new()
            };
            Ok((
                device,
                format!(
                    "CUDA device {index} {name} (driver CUDA {})",
                    probe.driver_version
                )
                .replace("  ", " "),
            ))
        }
        Ok(Err(e)) => Err(DeviceError::Init {
            index,
            reason: e.to_string(),
        }),
        Err(_) => Err(DeviceError::Init {
            index,
            reason: "candle panicked while creating the device".to_string(),
        }),
    }
}

#[cfg(feature = "cuda")]
mod probe {
    use super::{CudaProbe, DeviceError};
    use std::ffi::{c_char, c_int, c_uint};

    /// Library names tried in order (the driver installs the first).
    const LIBS: [&str; 2] = ["libcuda.so.1", "libcuda.so"];

    fn error_name(code: c_int) -> String {
        let name = match code {
            3 => "CUDA_ERROR_NOT_INITIALIZED",
            34 => "CUDA_ERROR_STUB_LIBRARY: libcuda is the toolkit's link stub, not a driver",
            35 => "CUDA_ERROR_INSUFFICIENT_DRIVER: the driver is older than the CUDA runtime",
            100 => "CUDA_ERROR_NO_DEVICE",
            101 => "CUDA_ERROR_INVALID_DEVICE",
            999 => "CUDA_ERROR_UNKNOWN",
            _ => "",
        };
        format!("error {code} {name}").trim_end().to_string()
    }

    pub(super) fn run() -> Result<CudaProbe, DeviceError> {
        let mut last = String::new();
        for name in LIBS {
            // SAFETY: loading the NVIDIA driver library runs its initialisers,
            // which is what any CUDA program does.
            match unsafe { libloading::Library::new(name) } {
                Ok(lib) => return query(&lib),
                Err(e) => last = e.to_string(),
            }
        }
        Err(DeviceError::Unavailable(format!(
            "no NVIDIA driver (cannot load libcuda.so.1: {last})"
        )))
    }

    fn query(lib: &libloading::Library) -> Result<CudaProbe, DeviceError> {
        type Init = unsafe extern "C" fn(c_uint) -> c_int;
        type Count = unsafe extern "C" fn(*mut c_int) -> c_int;
        type Version = unsafe extern "C" fn(*mut c_int) -> c_int;
        type Get = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
        type Name = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
        let sym = |e: libloading::Error| {
            DeviceError::Unavailable(format!("libcuda lacks a driver function: {e}"))
        };
        // SAFETY: the signatures are those of the CUDA driver API (cuda.h),
        // and every pointer passed points to a live local of the right size.
        unsafe {
            let init: libloading::Symbol<Init> = lib.get(b"cuInit\0").map_err(sym)?;
            let count: libloading::Symbol<Count> = lib.get(b"cuDeviceGetCount\0").map_err(sym)?;
            let version: libloading::Symbol<Version> =
                lib.get(b"cuDriverGetVersion\0").map_err(sym)?;
            let get: libloading::Symbol<Get> = lib.get(b"cuDeviceGet\0").map_err(sym)?;
            let name: libloading::Symbol<Name> = lib.get(b"cuDeviceGetName\0").map_err(sym)?;
            let mut v: c_int = 0;
            let driver_version = if version(&mut v) == 0 {
                format!("{}.{}", v / 1000, (v % 1000) / 10)
            } else {
                "unknown".to_string()
            };
            let rc = init(0);
            if rc != 0 {
                return Err(DeviceError::Unavailable(format!(
                    "cuInit failed ({})",
                    error_name(rc)
                )));
            }
            let mut n: c_int = 0;
            let rc = count(&mut n);
            if rc != 0 {
                return Err(DeviceError::Unavailable(format!(
                    "cuDeviceGetCount failed ({})",
                    error_name(rc)
                )));
            }
            let mut first_name = None;
            let mut dev: c_int = 0;
            if n > 0 && get(&mut dev, 0) == 0 {
                let mut buf = [0 as c_char; 256];
                if name(buf.as_mut_ptr(), buf.len() as c_int, dev) == 0 {
                    let s = std::ffi::CStr::from_ptr(buf.as_ptr());
                    first_name = Some(s.to_string_lossy().into_owned());
                }
            }
            Ok(CudaProbe {
                devices: n.max(0) as usize,
                driver_version,
                first_name,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_allowed_form() {
        assert_eq!("auto".parse::<DeviceSpec>(), Ok(DeviceSpec::Auto));
        assert_eq!("CPU".parse::<DeviceSpec>(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:3".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(3)));
        assert_eq!(" gpu ".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(0)));
        for bad in ["", "cuda:", "cuda:x", "tpu", "cuda:-1"] {
            let err = bad.parse::<DeviceSpec>().unwrap_err();
            assert_eq!(err, DeviceError::Spec(bad.to_string()));
            assert!(err.to_string().contains("allowed: auto, cpu, cuda, cuda:N"));
        }
        for spec in [DeviceSpec::Auto, DeviceSpec::Cpu, DeviceSpec::Cuda(2)] {
            assert_eq!(spec.to_string().parse::<DeviceSpec>(), Ok(spec));
        }
    }

    #[test]
    fn cpu_is_always_available() {
        let (dev, why) = select(DeviceSpec::Cpu).unwrap();
        assert!(dev.is_cpu());
        assert_eq!(why, "CPU (requested)");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn without_the_feature_auto_falls_back_and_cuda_is_refused() {
        let (dev, why) = select(DeviceSpec::Auto).unwrap();
        assert!(dev.is_cpu());
        assert!(why.contains("built without the `cuda` feature"), "{why}");
        assert_eq!(
            select(DeviceSpec::Cuda(0)).unwrap_err(),
            DeviceError::NotBuilt
        );
        assert_eq!(probe_cuda().unwrap_err(), DeviceError::NotBuilt);
        assert!(!cuda_built());
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn with_the_feature_auto_never_fails() {
        // On a machine without a GPU this is the fallback; with one, the GPU.
        let (dev, why) = select(DeviceSpec::Auto).unwrap();
        match probe_cuda() {
            Ok(p) if p.devices > 0 => assert!(dev.is_cuda(), "{why}"),
            Ok(_) => assert!(dev.is_cpu() && why.contains("no device"), "{why}"),
            Err(e) => assert!(dev.is_cpu() && why.contains(&e.to_string()), "{why}"),
        }
        assert!(cuda_built());
    }
}

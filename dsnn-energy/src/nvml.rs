//! GPU energy through NVIDIA's management library (NVML), loaded at run
//! time with `libloading`, so that the crate builds and runs on machines
//! without the driver (the meter then reports "unavailable" with the reason).
//!
//! For each GPU the meter prefers the cumulative energy counter
//! (`nvmlDeviceGetTotalEnergyConsumption`, millijoules, Volta and newer):
//! energy = counter at stop - counter at start. On older GPUs, where that
//! call returns `NOT_SUPPORTED`, a background thread samples
//! `nvmlDeviceGetPowerUsage` (milliwatts) every `sample_interval` and
//! integrates the samples with the trapezoidal rule; the first and last
//! samples are taken at start and stop. Both are measured figures.
//!
//! Device access goes through the [`GpuBackend`] trait; [`Nvml`] is the real
//! one, and tests drive the meter with a fake.

use crate::error::{EnergyError, Result};
use crate::meter::{
    Component, ComponentEnergy, CpuClock, EnergyMeter, EnergyReading, Provenance, RegionTimer,
    RusageClock,
};
use crate::units::Energy;
use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void, CStr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// An NVML status code other than success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("NVML error {code}: {message}")]
pub struct NvmlError {
    /// The `nvmlReturn_t` value.
    pub code: i32,
    /// NVML's description of it.
    pub message: String,
}

impl NvmlError {
    /// `NVML_ERROR_NOT_SUPPORTED`: the device lacks the feature.
    pub const NOT_SUPPORTED: i32 = 3;

    /// Whether the device does not support the call.
    pub fn is_not_supported(&self) -> bool {
        self.code == Self::NOT_SUPPORTED
    }
}

/// What the meter needs from a GPU driver.
pub trait GpuBackend: Send + Sync {
    /// Number of GPUs.
    fn device_count(&self) -> std::result::Result<u32, NvmlError>;
    /// Product name of GPU `index`.
    fn name(&self, index: u32) -> std::result::Result<String, NvmlError>;
    /// Energy used by GPU `index` since the driver was loaded, mJ.
    fn total_energy_mj(&self, index: u32) -> std::result::Result<u64, NvmlError>;
    /// Current power draw of GPU `index`, mW.
    fn power_mw(&self, index: u32) -> std::result::Result<u32, NvmlError>;
}

type NvmlDevice = *mut c_void;
type FnVoid = unsafe extern "C" fn() -> c_int;
type FnCount = unsafe extern "C" fn(*mut c_uint) -> c_int;
type FnHandle = unsafe extern "C" fn(c_uint, *mut NvmlDevice) -> c_int;
type FnEnergy = unsafe extern "C" fn(NvmlDevice, *mut c_ulonglong) -> c_int;
type FnPower = unsafe extern "C" fn(NvmlDevice, *mut c_uint) -> c_int;
type FnName = unsafe extern "C" fn(NvmlDevice, *mut c_char, c_uint) -> c_int;
type FnErrorString = unsafe extern "C" fn(c_int) -> *const c_char;

/// The library names tried by [`Nvml::load`], in order.
pub const NVML_LIBRARY_NAMES: [&str; 2] = ["libnvidia-ml.so.1", "libnvidia-ml.so"];

/// The NVML library, loaded and initialised.
pub struct Nvml {
    shutdown: FnVoid,
    count: FnCount,
    handle: FnHandle,
    energy: FnEnergy,
    power: FnPower,
    name: FnName,
    error_string: FnErrorString,
    devices: Mutex<Vec<Option<usize>>>,
    // Declared last so that it is dropped after the function pointers are
    // last used (in `Drop`).
    _lib: libloading::Library,
}

// SAFETY: NVML is thread-safe (its documentation says all calls may be made
// from any thread); device handles are opaque pointers valid until shutdown,
// stored as `usize`.
unsafe impl Send for Nvml {}
// SAFETY: as above.
unsafe impl Sync for Nvml {}

impl Nvml {
    /// Loads `libnvidia-ml.so.1` (then `libnvidia-ml.so`) and initialises it.
    pub fn load() -> Result<Self> {
        let mut reasons = Vec::new();
        for name in NVML_LIBRARY_NAMES {
            match Self::load_from(name) {
                Ok(n) => return Ok(n),
                Err(EnergyError::Unavailable { reason, .. }) => reasons.push(reason),
                Err(e) => reasons.push(e.to_string()),
            }
        }
        Err(EnergyError::unavailable(
            "nvml",
            format!(
                "the NVIDIA driver's NVML library could not be used ({}); \
                 no NVIDIA GPU or driver on this machine?",
                reasons.join("; ")
            ),
        ))
    }

    /// Loads NVML from `path` (a file name searched by the dynamic loader, or a path).
    pub fn load_from(path: &str) -> Result<Self> {
        let unavailable = |reason: String| EnergyError::unavailable("nvml", reason);
        // SAFETY: loading NVML runs its initialisers, which have no
        // preconditions; the symbols are NVML's documented C API.
        unsafe {
            let lib = libloading::Library::new(path)
                .map_err(|e| unavailable(format!("cannot load {path}: {e}")))?;
            macro_rules! sym {
                ($name:literal, $ty:ty) => {
                    *lib.get::<$ty>(concat!($name, "\0").as_bytes())
                        .map_err(|e| unavailable(format!("{path} lacks {}: {e}", $name)))?
                };
            }
            let init: FnVoid = sym!("nvmlInit_v2", FnVoid);
            let shutdown: FnVoid = sym!("nvmlShutdown", FnVoid);
            let count: FnCount = sym!("nvmlDeviceGetCount_v2", FnCount);
            let handle: FnHandle = sym!("nvmlDeviceGetHandleByIndex_v2", FnHandle);
            let energy: FnEnergy = sym!("nvmlDeviceGetTotalEnergyConsumption", FnEnergy);
            let power: FnPower = sym!("nvmlDeviceGetPowerUsage", FnPower);
            let name: FnName = sym!("nvmlDeviceGetName", FnName);
            let error_string: FnErrorString = sym!("nvmlErrorString", FnErrorString);
            let rc = init();
            if rc != 0 {
                let p = error_string(rc);
                let msg = if p.is_null() {
                    format!("code {rc}")
                } else {
                    format!("code {rc}: {}", CStr::from_ptr(p).to_string_lossy())
                };
                return Err(unavailable(format!("nvmlInit failed ({msg})")));
            }
            // Initialised: from here on, Drop balances it with nvmlShutdown.
            let nvml = Nvml {
                shutdown,
                count,
                handle,
                energy,
                power,
                name,
                error_string,
                devices: Mutex::new(Vec::new()),
                _lib: lib,
            };
            Ok(nvml)
        }
    }

    fn error(&self, code: c_int) -> NvmlError {
        // SAFETY: nvmlErrorString returns a static C string for any code.
        let message = unsafe {
            let p = (self.error_string)(code);
            if p.is_null() {
                "unknown".to_string()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        NvmlError { code, message }
    }

    fn check(&self, rc: c_int) -> std::result::Result<(), NvmlError> {
        if rc == 0 {
            Ok(())
        } else {
            Err(self.error(rc))
        }
    }

    fn device(&self, index: u32) -> std::result::Result<NvmlDevice, NvmlError> {
        let mut cache = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(Some(h)) = cache.get(index as usize) {
            return Ok(*h as NvmlDevice);
        }
        let mut h: NvmlDevice = std::ptr::null_mut();
        // SAFETY: `h` is a valid out-pointer.
        self.check(unsafe { (self.handle)(index, &mut h) })?;
        if cache.len() <= index as usize {
            cache.resize(index as usize + 1, None);
        }
        cache[index as usize] = Some(h as usize);
        Ok(h)
    }
}

impl GpuBackend for Nvml {
    fn device_count(&self) -> std::result::Result<u32, NvmlError> {
        let mut n: c_uint = 0;
        // SAFETY: `n` is a valid out-pointer.
        self.check(unsafe { (self.count)(&mut n) })?;
        Ok(n)
    }

    fn name(&self, index: u32) -> std::result::Result<String, NvmlError> {
        let d = self.device(index)?;
        let mut buf = [0 as c_char; 96];
        // SAFETY: the buffer and its length are passed together; NVML NUL-terminates.
        self.check(unsafe { (self.name)(d, buf.as_mut_ptr(), buf.len() as c_uint) })?;
        // SAFETY: NUL-terminated by NVML within the buffer.
        Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned())
    }

    fn total_energy_mj(&self, index: u32) -> std::result::Result<u64, NvmlError> {
        let d = self.device(index)?;
        let mut e: c_ulonglong = 0;
        // SAFETY: valid handle and out-pointer.
        self.check(unsafe { (self.energy)(d, &mut e) })?;
        Ok(e)
    }

    fn power_mw(&self, index: u32) -> std::result::Result<u32, NvmlError> {
        let d = self.device(index)?;
        let mut p: c_uint = 0;
        // SAFETY: valid handle and out-pointer.
        self.check(unsafe { (self.power)(d, &mut p) })?;
        Ok(p)
    }
}

impl Drop for Nvml {
    fn drop(&mut self) {
        // SAFETY: balanced with the successful nvmlInit in `load_from`.
        let rc = unsafe { (self.shutdown)() };
        if rc != 0 {
            log::debug!("nvmlShutdown: {}", self.error(rc));
        }
    }
}

/// Trapezoidal integration of power samples into energy.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PowerIntegrator {
    last: Option<(f64, f64)>,
    joules: f64,
    samples: u64,
}

impl PowerIntegrator {
    /// Adds a sample of `watts` taken at `t_s` seconds (non-decreasing).
    pub fn add(&mut self, t_s: f64, watts: f64) {
        if let Some((t0, w0)) = self.last {
            let dt = (t_s - t0).max(0.0);
            self.joules += 0.5 * (w0 + watts) * dt;
        }
        self.last = Some((t_s, watts));
        self.samples += 1;
    }

    /// Energy so far.
    pub fn energy(&self) -> Energy {
        Energy::from_joules(self.joules)
    }

    /// Samples taken.
    pub fn samples(&self) -> u64 {
        self.samples
    }
}

/// How one GPU is metered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuMethod {
    /// The cumulative energy counter.
    EnergyCounter,
    /// Integrated power samples.
    PowerSampling,
}

/// A GPU the meter watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    /// NVML index.
    pub index: u32,
    /// Product name.
    pub name: String,
    /// How it is metered.
    pub method: GpuMethod,
}

struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<PowerIntegrator>>,
}

/// GPU energy meter over a [`GpuBackend`] (NVML by default).
pub struct NvmlMeter {
    backend: Arc<dyn GpuBackend>,
    gpus: Vec<GpuInfo>,
    sample_interval: Duration,
    clock: Box<dyn CpuClock>,
    timer: Option<RegionTimer>,
    counters_at_start: Vec<u64>,
    sampler: Option<Sampler>,
}

impl NvmlMeter {
    /// Loads NVML and watches every GPU.
    pub fn open() -> Result<Self> {
        Self::with_backend(Arc::new(Nvml::load()?), None)
    }

    /// Watches the GPUs `indices` (all when `None`) through `backend`.
    pub fn with_backend(backend: Arc<dyn GpuBackend>, indices: Option<&[u32]>) -> Result<Self> {
        let unavailable = |reason: String| EnergyError::unavailable("nvml", reason);
        let count = backend
            .device_count()
            .map_err(|e| unavailable(format!("cannot count GPUs: {e}")))?;
        if count == 0 {
            return Err(unavailable("NVML reports no GPU".into()));
        }
        let wanted: Vec<u32> = match indices {
            Some(ix) => ix.to_vec(),
            None => (0..count).collect(),
        };
        let mut gpus = Vec::new();
        for index in wanted {
            if index >= count {
                return Err(EnergyError::invalid(
                    "GPU index",
                    format!("{index} (NVML reports {count} GPUs)"),
                ));
            }
            let name = backend.name(index).unwrap_or_else(|e| {
                log::debug!("GPU {index} name: {e}");
                format!("GPU {index}")
            });
            let method = match backend.total_energy_mj(index) {
                Ok(_) => GpuMethod::EnergyCounter,
                Err(e) if e.is_not_supported() => match backend.power_mw(index) {
                    Ok(_) => {
                        log::info!("GPU {index} ({name}) has no energy counter; sampling power");
                        GpuMethod::PowerSampling
                    }
                    Err(e) => {
                        return Err(unavailable(format!(
                            "GPU {index} ({name}) reports neither energy nor power: {e}"
                        )))
                    }
                },
                Err(e) => {
                    return Err(unavailable(format!(
                        "GPU {index} ({name}) energy counter: {e}"
                    )))
                }
            };
            gpus.push(GpuInfo {
                index,
                name,
                method,
            });
        }
        Ok(NvmlMeter {
            backend,
            gpus,
            sample_interval: Duration::from_millis(100),
            clock: Box::new(RusageClock),
            timer: None,
            counters_at_start: Vec::new(),
            sampler: None,
        })
    }

    /// Sets the power sampling interval (for GPUs without an energy counter).
    pub fn sample_interval(mut self, interval: Duration) -> Self {
        self.sample_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Meters every GPU by integrating power samples, even where an energy
    /// counter exists (to cross-check the two methods on one region).
    pub fn force_power_sampling(mut self) -> Result<Self> {
        for g in &mut self.gpus {
            self.backend.power_mw(g.index).map_err(|e| {
                EnergyError::unavailable("nvml", format!("GPU {} power: {e}", g.index))
            })?;
            g.method = GpuMethod::PowerSampling;
        }
        Ok(self)
    }

    /// The GPUs watched and how.
    pub fn gpus(&self) -> &[GpuInfo] {
        &self.gpus
    }

    fn sampled_indices(&self) -> Vec<u32> {
        self.gpus
            .iter()
            .filter(|g| g.method == GpuMethod::PowerSampling)
            .map(|g| g.index)
            .collect()
    }

    fn read_counters(&self) -> Result<Vec<u64>> {
        self.gpus
            .iter()
            .map(|g| match g.method {
                GpuMethod::EnergyCounter => self
                    .backend
                    .total_energy_mj(g.index)
                    .map_err(|e| EnergyError::unavailable("nvml", format!("GPU {}: {e}", g.index))),
                GpuMethod::PowerSampling => Ok(0),
            })
            .collect()
    }
}

fn sample_all(backend: &dyn GpuBackend, idx: &[u32], t0: Instant, acc: &mut [PowerIntegrator]) {
    let t = t0.elapsed().as_secs_f64();
    for (i, &gpu) in idx.iter().enumerate() {
        match backend.power_mw(gpu) {
            Ok(mw) => acc[i].add(t, f64::from(mw) / 1000.0),
            Err(e) => log::debug!("GPU {gpu} power sample: {e}"),
        }
    }
}

impl EnergyMeter for NvmlMeter {
    fn name(&self) -> &str {
        "nvml"
    }

    fn start(&mut self) -> Result<()> {
        if self.timer.is_some() {
            return Err(EnergyError::AlreadyStarted("nvml".into()));
        }
        self.counters_at_start = self.read_counters()?;
        let idx = self.sampled_indices();
        if !idx.is_empty() {
            let stop = Arc::new(AtomicBool::new(false));
            let (backend, flag, interval) =
                (self.backend.clone(), stop.clone(), self.sample_interval);
            let handle = std::thread::Builder::new()
                .name("nvml-power-sampler".into())
                .spawn(move || {
                    let t0 = Instant::now();
                    let mut acc = vec![PowerIntegrator::default(); idx.len()];
                    sample_all(backend.as_ref(), &idx, t0, &mut acc);
                    while !flag.load(Ordering::Acquire) {
                        std::thread::park_timeout(interval);
                        sample_all(backend.as_ref(), &idx, t0, &mut acc);
                    }
                    acc
                })
                .map_err(|e| EnergyError::Io {
                    path: "nvml power sampler thread".into(),
                    source: e,
                })?;
            self.sampler = Some(Sampler { stop, handle });
        }
        self.timer = Some(RegionTimer::start(self.clock.as_ref())?);
        Ok(())
    }

    fn stop(&mut self) -> Result<EnergyReading> {
        let timer = self
            .timer
            .take()
            .ok_or_else(|| EnergyError::NotStarted("nvml".into()))?;
        let counters = self.read_counters();
        let sampled = match self.sampler.take() {
            Some(s) => {
                s.stop.store(true, Ordering::Release);
                s.handle.thread().unpark();
                s.handle.join().map_err(|_| {
                    EnergyError::unavailable("nvml", "the power sampling thread panicked")
                })?
            }
            None => Vec::new(),
        };
        let counters = counters?;
        let span = timer.finish(self.clock.as_ref())?;
        let mut sampled = sampled.into_iter();
        let components = self
            .gpus
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let energy = match g.method {
                    GpuMethod::EnergyCounter => Energy::from_joules(
                        counters[i].saturating_sub(self.counters_at_start[i]) as f64 / 1000.0,
                    ),
                    GpuMethod::PowerSampling => {
                        sampled.next().map(|p| p.energy()).unwrap_or_default()
                    }
                };
                ComponentEnergy {
                    component: Component::Gpu,
                    energy,
                    source: format!("nvml:{}:{}", g.index, g.name),
                    provenance: Provenance::Measured,
                }
            })
            .collect();
        Ok(EnergyReading::from_components("nvml", span, components))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::measure;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn missing_library_is_unavailable() {
        let err = Nvml::load_from("/nonexistent/libnvidia-ml.so.1")
            .err()
            .unwrap();
        assert!(err.is_unavailable(), "{err}");
        assert!(err.to_string().contains("cannot load"), "{err}");
    }

    #[test]
    fn this_machine_has_nvml_or_says_why_not() {
        match NvmlMeter::open() {
            Ok(m) => assert!(!m.gpus().is_empty()),
            Err(e) => {
                assert!(e.is_unavailable(), "{e}");
                assert!(e.to_string().contains("NVIDIA"), "{e}");
            }
        }
    }

    #[test]
    fn trapezoid_integration() {
        let mut p = PowerIntegrator::default();
        p.add(0.0, 100.0);
        p.add(1.0, 200.0); // 150 J
        p.add(3.0, 200.0); // 400 J
        p.add(2.5, 0.0); // out of order: no time, no energy
        assert_eq!(p.energy().joules(), 550.0);
        assert_eq!(p.samples(), 4);
    }

    /// A fake driver: GPU 0 has an energy counter, GPU 1 only power.
    struct Fake {
        energy_mj: AtomicU64,
        power_mw: u32,
        fail_count: bool,
    }

    impl GpuBackend for Fake {
        fn device_count(&self) -> std::result::Result<u32, NvmlError> {
            if self.fail_count {
                return Err(NvmlError {
                    code: 9,
                    message: "Driver Not Loaded".into(),
                });
            }
            Ok(2)
        }
        fn name(&self, index: u32) -> std::result::Result<String, NvmlError> {
            Ok(format!("Fake {index}"))
        }
        fn total_energy_mj(&self, index: u32) -> std::result::Result<u64, NvmlError> {
            if index == 0 {
                Ok(self.energy_mj.load(Ordering::SeqCst))
            } else {
                Err(NvmlError {
                    code: NvmlError::NOT_SUPPORTED,
                    message: "Not Supported".into(),
                })
            }
        }
        fn power_mw(&self, _index: u32) -> std::result::Result<u32, NvmlError> {
            Ok(self.power_mw)
        }
    }

    fn fake() -> Arc<Fake> {
        Arc::new(Fake {
            energy_mj: AtomicU64::new(5_000_000),
            power_mw: 250_000,
            fail_count: false,
        })
    }

    #[test]
    fn energy_counter_delta_is_exact() {
        let f = fake();
        let mut m = NvmlMeter::with_backend(f.clone(), Some(&[0])).unwrap();
        assert_eq!(m.gpus()[0].method, GpuMethod::EnergyCounter);
        let ((), r) = measure(&mut m, || {
            f.energy_mj.fetch_add(12_345, Ordering::SeqCst);
        })
        .unwrap();
        assert_eq!(r.joules(), 12.345);
        assert_eq!(r.provenance, Provenance::Measured);
        assert_eq!(r.components[0].source, "nvml:0:Fake 0");
    }

    #[test]
    fn power_sampling_fallback_integrates_constant_power() {
        let f = fake();
        let mut m = NvmlMeter::with_backend(f, None)
            .unwrap()
            .sample_interval(Duration::from_millis(5));
        assert_eq!(m.gpus()[1].method, GpuMethod::PowerSampling);
        let ((), r) = measure(&mut m, || std::thread::sleep(Duration::from_millis(60))).unwrap();
        let sampled = r.components[1].energy.joules();
        // 250 W held for at least 60 ms (the first and last samples bracket
        // the region, so at most the start-up and stop latency is missing).
        let wall = r.wall.as_secs_f64();
        assert!(
            sampled > 250.0 * 0.05 && sampled <= 250.0 * wall + 1e-9,
            "{sampled} J in {wall} s"
        );
        assert_eq!(r.components[0].energy.joules(), 0.0);

        // Forcing sampling on the GPU that has a counter samples it too.
        let mut m = NvmlMeter::with_backend(fake(), Some(&[0]))
            .unwrap()
            .sample_interval(Duration::from_millis(5))
            .force_power_sampling()
            .unwrap();
        assert_eq!(m.gpus()[0].method, GpuMethod::PowerSampling);
        let ((), r) = measure(&mut m, || std::thread::sleep(Duration::from_millis(20))).unwrap();
        assert!(r.joules() > 0.0);
    }

    #[test]
    fn driver_failures_are_unavailable_and_bad_indices_invalid() {
        let f = Arc::new(Fake {
            energy_mj: AtomicU64::new(0),
            power_mw: 0,
            fail_count: true,
        });
        let err = NvmlMeter::with_backend(f, None).err().unwrap();
        assert!(
            err.is_unavailable() && err.to_string().contains("Driver Not Loaded"),
            "{err}"
        );
        let err = NvmlMeter::with_backend(fake(), Some(&[7])).err().unwrap();
        assert!(matches!(err, EnergyError::Invalid { .. }), "{err}");
    }
}

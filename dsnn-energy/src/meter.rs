//! The [`EnergyMeter`] trait, its [`EnergyReading`], process CPU time and
//! the [`CombinedMeter`] that adds several meters (CPU + GPU + RAM) together.
//!
//! A meter is started before a region of work and stopped after it; the
//! reading says how much energy the region used, how long it took in wall and
//! CPU time, which meter produced the figure, and whether the figure was
//! *measured* by a hardware counter or *estimated* by a model. Downstream
//! code (the run store, the Pareto front) keeps that provenance so that a
//! measured and an estimated figure are never compared silently.

use crate::error::{EnergyError, Result};
use crate::units::Energy;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant, SystemTime};

/// Whether an energy figure comes from a hardware counter or from a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    /// Read from an energy counter (RAPL, NVML energy, NVML power samples).
    Measured,
    /// Computed from a model (TDP table, RAM heuristic, op counts).
    Estimated,
}

impl Provenance {
    /// The provenance of a sum: measured only if every part was measured.
    pub fn combine(self, other: Provenance) -> Provenance {
        if self == Provenance::Measured && other == Provenance::Measured {
            Provenance::Measured
        } else {
            Provenance::Estimated
        }
    }
}

/// The part of the machine an energy figure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// CPU packages (and their core/uncore sub-domains).
    Cpu,
    /// GPUs or other accelerators.
    Gpu,
    /// Main memory.
    Ram,
    /// Anything else (for example an op-count model of a whole network).
    Other,
}

/// The energy one meter attributes to one component during a region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentEnergy {
    /// Which component.
    pub component: Component,
    /// Energy used by the component during the region.
    pub energy: Energy,
    /// Which meter (and domain, where useful) produced it, e.g. `rapl:package-0`.
    pub source: String,
    /// Measured or estimated.
    pub provenance: Provenance,
}

/// What a meter reports for one region of work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyReading {
    /// Total energy of the region (the sum of `components`).
    pub energy: Energy,
    /// Wall-clock time between start and stop.
    pub wall: Duration,
    /// CPU time (user + system) this process used between start and stop.
    pub cpu_time: Duration,
    /// When the region started.
    pub started_at: SystemTime,
    /// The meter, e.g. `rapl`, `nvml`, `codecarbon-estimate`, or `rapl+nvml`.
    pub source: String,
    /// Measured only if every component was measured.
    pub provenance: Provenance,
    /// Per-component breakdown.
    pub components: Vec<ComponentEnergy>,
}

impl EnergyReading {
    /// Builds a reading from its components; the total and provenance follow.
    pub fn from_components(
        source: impl Into<String>,
        span: RegionSpan,
        components: Vec<ComponentEnergy>,
    ) -> Self {
        let energy = components.iter().map(|c| c.energy).sum();
        let provenance = components
            .iter()
            .map(|c| c.provenance)
            .fold(Provenance::Measured, Provenance::combine);
        EnergyReading {
            energy,
            wall: span.wall,
            cpu_time: span.cpu_time,
            started_at: span.started_at,
            source: source.into(),
            provenance,
            components,
        }
    }

    /// Total energy in joules.
    pub fn joules(&self) -> f64 {
        self.energy.joules()
    }

    /// Total energy in kilowatt-hours.
    pub fn kwh(&self) -> f64 {
        self.energy.kwh()
    }

    /// Average power over the region in watts (0 for an empty region).
    pub fn average_power_w(&self) -> f64 {
        let s = self.wall.as_secs_f64();
        if s > 0.0 {
            self.energy.joules() / s
        } else {
            0.0
        }
    }

    /// Energy attributed to one component (summed over meters and domains).
    pub fn energy_of(&self, component: Component) -> Energy {
        self.components
            .iter()
            .filter(|c| c.component == component)
            .map(|c| c.energy)
            .sum()
    }

    /// Process CPU time divided by wall time: 2.0 means two cores kept busy.
    pub fn cpu_utilisation(&self) -> f64 {
        let s = self.wall.as_secs_f64();
        if s > 0.0 {
            self.cpu_time.as_secs_f64() / s
        } else {
            0.0
        }
    }
}

/// A meter of energy over a region of work.
///
/// `start` then `stop`; a meter can be reused for any number of regions. Use
/// [`measure`] to wrap a closure. Implementations report a machine or driver
/// that cannot be metered as [`EnergyError::Unavailable`] with the reason.
pub trait EnergyMeter: Send {
    /// A short, stable name (`rapl`, `nvml`, `codecarbon-estimate`, ...).
    fn name(&self) -> &str;

    /// Marks the start of a region.
    fn start(&mut self) -> Result<()>;

    /// Ends the region and reports its energy.
    fn stop(&mut self) -> Result<EnergyReading>;
}

impl<M: EnergyMeter + ?Sized> EnergyMeter for Box<M> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn start(&mut self) -> Result<()> {
        (**self).start()
    }
    fn stop(&mut self) -> Result<EnergyReading> {
        (**self).stop()
    }
}

/// Runs `work` between `meter.start()` and `meter.stop()` and returns its
/// result together with the reading.
pub fn measure<M, T, F>(meter: &mut M, work: F) -> Result<(T, EnergyReading)>
where
    M: EnergyMeter + ?Sized,
    F: FnOnce() -> T,
{
    meter.start()?;
    let out = work();
    let reading = meter.stop()?;
    Ok((out, reading))
}

/// A source of the process's CPU time, injectable so that estimators can be
/// tested with exact figures.
pub trait CpuClock: Send + Sync {
    /// User + system CPU time consumed by this process (all threads) so far.
    fn process_cpu_time(&self) -> Result<Duration>;
}

/// The real CPU clock: `getrusage(RUSAGE_SELF)`, which covers every thread
/// of the process (children are not included until they are reaped).
#[derive(Debug, Clone, Copy, Default)]
pub struct RusageClock;

impl CpuClock for RusageClock {
    #[cfg(unix)]
    fn process_cpu_time(&self) -> Result<Duration> {
        // SAFETY: getrusage writes into the zeroed struct we own and reads nothing else.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
        if rc != 0 {
            return Err(EnergyError::Io {
                path: "getrusage(RUSAGE_SELF)".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec.max(0) as u64)
                + Duration::from_micros(t.tv_usec.max(0) as u64)
        };
        Ok(tv(usage.ru_utime) + tv(usage.ru_stime))
    }

    #[cfg(not(unix))]
    fn process_cpu_time(&self) -> Result<Duration> {
        Err(EnergyError::unavailable(
            "cpu clock",
            "process CPU time is read with getrusage, which this platform lacks",
        ))
    }
}

/// Wall and CPU time of a finished region.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegionSpan {
    /// When the region started.
    pub started_at: SystemTime,
    /// Wall-clock duration.
    pub wall: Duration,
    /// Process CPU time used during the region.
    pub cpu_time: Duration,
}

/// The stopwatch every meter uses: wall time plus process CPU time.
#[derive(Debug, Clone, Copy)]
pub struct RegionTimer {
    started_at: SystemTime,
    wall_start: Instant,
    cpu_start: Duration,
}

impl RegionTimer {
    /// Starts timing now.
    pub fn start(clock: &dyn CpuClock) -> Result<Self> {
        Ok(RegionTimer {
            started_at: SystemTime::now(),
            wall_start: Instant::now(),
            cpu_start: clock.process_cpu_time()?,
        })
    }

    /// Wall time elapsed so far.
    pub fn elapsed(&self) -> Duration {
        self.wall_start.elapsed()
    }

    /// Ends timing and returns the span.
    pub fn finish(&self, clock: &dyn CpuClock) -> Result<RegionSpan> {
        let wall = self.wall_start.elapsed();
        let cpu_end = clock.process_cpu_time()?;
        Ok(RegionSpan {
            started_at: self.started_at,
            wall,
            cpu_time: cpu_end.saturating_sub(self.cpu_start),
        })
    }
}

/// Several meters read as one: their energies add up (for example RAPL for
/// the CPU, NVML for the GPU and the RAM estimate), their components are
/// kept side by side, and the provenance is measured only if all are.
pub struct CombinedMeter {
    meters: Vec<Box<dyn EnergyMeter>>,
    name: String,
    clock: Box<dyn CpuClock>,
    timer: Option<RegionTimer>,
}

impl CombinedMeter {
    /// Combines `meters`; at least one is required.
    pub fn new(meters: Vec<Box<dyn EnergyMeter>>) -> Result<Self> {
        if meters.is_empty() {
            return Err(EnergyError::invalid(
                "combined meter",
                "needs at least one meter",
            ));
        }
        let name = meters
            .iter()
            .map(|m| m.name().to_string())
            .collect::<Vec<_>>()
            .join("+");
        Ok(CombinedMeter {
            meters,
            name,
            clock: Box::new(RusageClock),
            timer: None,
        })
    }

    /// The names of the parts, in order.
    pub fn parts(&self) -> Vec<&str> {
        self.meters.iter().map(|m| m.name()).collect()
    }
}

impl EnergyMeter for CombinedMeter {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self) -> Result<()> {
        if self.timer.is_some() {
            return Err(EnergyError::AlreadyStarted(self.name.clone()));
        }
        for i in 0..self.meters.len() {
            if let Err(e) = self.meters[i].start() {
                // Leave no part running: stop those already started.
                for m in &mut self.meters[..i] {
                    if let Err(e2) = m.stop() {
                        log::debug!("stopping {} after a failed start: {e2}", m.name());
                    }
                }
                return Err(e);
            }
        }
        self.timer = Some(RegionTimer::start(self.clock.as_ref())?);
        Ok(())
    }

    fn stop(&mut self) -> Result<EnergyReading> {
        let timer = self
            .timer
            .take()
            .ok_or_else(|| EnergyError::NotStarted(self.name.clone()))?;
        let span = timer.finish(self.clock.as_ref())?;
        let mut components = Vec::new();
        let mut first_err = None;
        for m in &mut self.meters {
            match m.stop() {
                Ok(r) => components.extend(r.components),
                Err(e) => {
                    log::warn!("meter {} failed to stop: {e}", m.name());
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        Ok(EnergyReading::from_components(
            self.name.clone(),
            span,
            components,
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// A CPU clock that returns whatever the test sets, in microseconds.
    #[derive(Clone, Default)]
    pub(crate) struct FakeClock(pub Arc<AtomicU64>);

    impl FakeClock {
        pub(crate) fn set(&self, d: Duration) {
            self.0.store(d.as_micros() as u64, Ordering::SeqCst);
        }
    }

    impl CpuClock for FakeClock {
        fn process_cpu_time(&self) -> Result<Duration> {
            Ok(Duration::from_micros(self.0.load(Ordering::SeqCst)))
        }
    }

    /// A meter that reports a fixed energy, or fails to start.
    struct Fixed {
        name: &'static str,
        joules: f64,
        component: Component,
        provenance: Provenance,
        fail_start: bool,
        running: bool,
    }

    impl Fixed {
        fn new(name: &'static str, joules: f64, c: Component, p: Provenance) -> Self {
            Fixed {
                name,
                joules,
                component: c,
                provenance: p,
                fail_start: false,
                running: false,
            }
        }
    }

    impl EnergyMeter for Fixed {
        fn name(&self) -> &str {
            self.name
        }
        fn start(&mut self) -> Result<()> {
            if self.fail_start {
                return Err(EnergyError::unavailable(self.name, "no counters"));
            }
            self.running = true;
            Ok(())
        }
        fn stop(&mut self) -> Result<EnergyReading> {
            if !self.running {
                return Err(EnergyError::NotStarted(self.name.into()));
            }
            self.running = false;
            let span = RegionSpan {
                started_at: SystemTime::UNIX_EPOCH,
                wall: Duration::from_secs(2),
                cpu_time: Duration::from_secs(1),
            };
            Ok(EnergyReading::from_components(
                self.name,
                span,
                vec![ComponentEnergy {
                    component: self.component,
                    energy: Energy::from_joules(self.joules),
                    source: self.name.into(),
                    provenance: self.provenance,
                }],
            ))
        }
    }

    #[test]
    fn combined_meter_adds_parts_and_downgrades_provenance() {
        let mut m = CombinedMeter::new(vec![
            Box::new(Fixed::new(
                "rapl",
                10.0,
                Component::Cpu,
                Provenance::Measured,
            )),
            Box::new(Fixed::new(
                "nvml",
                30.0,
                Component::Gpu,
                Provenance::Measured,
            )),
            Box::new(Fixed::new(
                "ram",
                5.0,
                Component::Ram,
                Provenance::Estimated,
            )),
        ])
        .unwrap();
        assert_eq!(m.name(), "rapl+nvml+ram");
        assert_eq!(m.parts(), vec!["rapl", "nvml", "ram"]);
        let ((), r) = measure(&mut m, || ()).unwrap();
        assert_eq!(r.joules(), 45.0);
        assert_eq!(r.energy_of(Component::Gpu).joules(), 30.0);
        assert_eq!(r.energy_of(Component::Cpu).joules(), 10.0);
        assert_eq!(r.provenance, Provenance::Estimated);
        assert_eq!(r.source, "rapl+nvml+ram");
        assert_eq!(r.components.len(), 3);
    }

    #[test]
    fn combined_of_measured_parts_is_measured() {
        let mut m = CombinedMeter::new(vec![
            Box::new(Fixed::new("a", 1.0, Component::Cpu, Provenance::Measured)),
            Box::new(Fixed::new("b", 2.0, Component::Gpu, Provenance::Measured)),
        ])
        .unwrap();
        let (v, r) = measure(&mut m, || 7).unwrap();
        assert_eq!(v, 7);
        assert_eq!(r.provenance, Provenance::Measured);
    }

    #[test]
    fn combined_start_failure_stops_started_parts_and_misuse_is_reported() {
        let mut bad = Fixed::new("bad", 1.0, Component::Gpu, Provenance::Measured);
        bad.fail_start = true;
        let mut m = CombinedMeter::new(vec![
            Box::new(Fixed::new("a", 1.0, Component::Cpu, Provenance::Measured)),
            Box::new(bad),
        ])
        .unwrap();
        let err = m.start().unwrap_err();
        assert!(err.is_unavailable(), "{err}");
        assert!(matches!(m.stop(), Err(EnergyError::NotStarted(_))));
        assert!(CombinedMeter::new(vec![]).is_err());
    }

    #[test]
    fn double_start_is_an_error() {
        let mut m = CombinedMeter::new(vec![Box::new(Fixed::new(
            "a",
            1.0,
            Component::Cpu,
            Provenance::Measured,
        ))])
        .unwrap();
        m.start().unwrap();
        assert!(matches!(m.start(), Err(EnergyError::AlreadyStarted(_))));
    }

    #[test]
    fn rusage_clock_advances_with_work() {
        let c = RusageClock;
        let t0 = c.process_cpu_time().unwrap();
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let t1 = c.process_cpu_time().unwrap();
        assert!(t1 > t0, "{t0:?} -> {t1:?}");
    }

    #[test]
    fn region_timer_takes_cpu_time_from_the_clock() {
        let clock = FakeClock::default();
        clock.set(Duration::from_millis(1500));
        let t = RegionTimer::start(&clock).unwrap();
        clock.set(Duration::from_millis(4000));
        let span = t.finish(&clock).unwrap();
        assert_eq!(span.cpu_time, Duration::from_millis(2500));
        assert!(span.wall < Duration::from_secs(5));
    }

    #[test]
    fn reading_derived_figures() {
        let span = RegionSpan {
            started_at: SystemTime::UNIX_EPOCH,
            wall: Duration::from_secs(4),
            cpu_time: Duration::from_secs(6),
        };
        let r = EnergyReading::from_components(
            "x",
            span,
            vec![ComponentEnergy {
                component: Component::Cpu,
                energy: Energy::from_joules(100.0),
                source: "x".into(),
                provenance: Provenance::Measured,
            }],
        );
        assert_eq!(r.average_power_w(), 25.0);
        assert_eq!(r.cpu_utilisation(), 1.5);
        assert_eq!(r.kwh(), 100.0 / 3.6e6);
    }
}

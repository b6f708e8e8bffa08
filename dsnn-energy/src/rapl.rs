//! RAPL energy counters through the Linux powercap sysfs tree.
//!
//! The kernel's `intel_rapl` driver (also used for AMD Zen CPUs) exposes
//! one directory per domain under `/sys/class/powercap`: packages
//! `intel-rapl:N` and their sub-domains `intel-rapl:N:M` (`core`, `uncore`,
//! `dram`), each with `name`, `energy_uj` (a cumulative counter in
//! microjoules) and `max_energy_range_uj` (where the counter wraps to 0).
//!
//! The meter reads every counter at start and stop and adds the deltas; a
//! counter that went backwards has wrapped once, and the delta is
//! `max - start + end`. Two wraps between two reads would be invisible, so
//! a background thread also reads the counters every
//! [`DEFAULT_POLL_INTERVAL`] during a region (configurable with
//! [`RaplMeter::poll_interval`]; client CPUs with a 2^32 uJ range wrap after
//! about 11 s at 400 W, servers with 262 kJ after about 20 minutes at 200 W).
//! [`RaplMeter::sample`] reads them on demand. Core and uncore sub-domains are part of
//! their package: they are reported in [`RaplMeter::domain_energies`] but not
//! added to the total. DRAM is a separate domain, added as RAM energy when
//! `include_dram` is set (off by default, as in CodeCarbon). `psys` is used
//! only when there are no packages.
//!
//! A missing tree, a tree without RAPL domains, or an unreadable counter
//! (since Linux 5.10 `energy_uj` is readable by root only, CVE-2020-8694)
//! are reported as [`EnergyError::Unavailable`] with the reason. File reads
//! go through [`SysfsReader`] so that failures can be simulated in tests.

use crate::error::{EnergyError, Result};
use crate::meter::{
    Component, ComponentEnergy, CpuClock, EnergyMeter, EnergyReading, Provenance, RegionTimer,
    RusageClock,
};
use crate::units::Energy;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The default powercap root.
pub const DEFAULT_POWERCAP_ROOT: &str = "/sys/class/powercap";

/// Reads sysfs files; injectable so that tests can simulate failures (tests
/// run as root, which can read any file, so permission errors must be faked).
pub trait SysfsReader: Send + Sync {
    /// The whole file as text.
    fn read_to_string(&self, path: &Path) -> io::Result<String>;
}

/// Reads the real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsReader;

impl SysfsReader for FsReader {
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// What a RAPL domain covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainKind {
    /// A CPU package (socket).
    Package,
    /// The cores of a package (part of the package).
    Core,
    /// The uncore (integrated GPU, caches) of a package (part of the package).
    Uncore,
    /// Memory attached to a package.
    Dram,
    /// The whole platform (laptops).
    Psys,
    /// A domain with another name.
    Other,
}

impl DomainKind {
    fn from_name(name: &str) -> Self {
        let n = name.to_ascii_lowercase();
        if n.starts_with("package") {
            DomainKind::Package
        } else if n == "core" {
            DomainKind::Core
        } else if n == "uncore" {
            DomainKind::Uncore
        } else if n == "dram" {
            DomainKind::Dram
        } else if n == "psys" {
            DomainKind::Psys
        } else {
            DomainKind::Other
        }
    }
}

/// One RAPL domain.
#[derive(Debug, Clone, PartialEq)]
pub struct RaplDomain {
    /// Directory name, e.g. `intel-rapl:0:1`.
    pub id: String,
    /// Contents of `name`, e.g. `package-0`, `core`, `dram`.
    pub name: String,
    /// What it covers.
    pub kind: DomainKind,
    /// The domain's directory.
    pub dir: PathBuf,
    /// Where `energy_uj` wraps to 0, in microjoules.
    pub max_energy_range_uj: u64,
}

impl RaplDomain {
    fn energy_path(&self) -> PathBuf {
        self.dir.join("energy_uj")
    }
}

/// Energy counted in one domain during the last region.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainEnergy {
    /// The domain.
    pub domain: RaplDomain,
    /// Its energy.
    pub energy: Energy,
    /// How many times its counter wrapped.
    pub wraps: u32,
}

/// Microjoules between two readings of a counter that wraps at `max`.
pub fn counter_delta_uj(start: u64, end: u64, max: u64) -> (u64, bool) {
    if end >= start {
        (end - start, false)
    } else {
        (max.saturating_sub(start) + end, true)
    }
}

/// Counter state of a region, shared with the poller thread.
#[derive(Debug, Default)]
struct Counters {
    last: Vec<u64>,
    acc_uj: Vec<u128>,
    wraps: Vec<u32>,
    error: Option<EnergyError>,
}

impl Counters {
    /// Reads every counter and adds the energy since the previous read.
    fn accumulate(&mut self, domains: &[RaplDomain], reader: &dyn SysfsReader) -> Result<()> {
        let now = read_counters(domains, reader)?;
        for (i, d) in domains.iter().enumerate() {
            let (delta, wrapped) = counter_delta_uj(self.last[i], now[i], d.max_energy_range_uj);
            if wrapped {
                log::debug!("rapl: {} ({}) counter wrapped", d.id, d.name);
                self.wraps[i] += 1;
            }
            self.acc_uj[i] += u128::from(delta);
        }
        self.last = now;
        Ok(())
    }
}

fn read_counters(domains: &[RaplDomain], reader: &dyn SysfsReader) -> Result<Vec<u64>> {
    domains
        .iter()
        .map(|d| read_u64(reader, &d.energy_path()))
        .collect()
}

struct Poller {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

/// The default interval of the background poller: short enough for a
/// 2^32 uJ counter (4.3 kJ) at 400 W, which wraps after about 11 s.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// The RAPL meter.
pub struct RaplMeter {
    root: PathBuf,
    reader: Arc<dyn SysfsReader>,
    clock: Box<dyn CpuClock>,
    domains: Arc<Vec<RaplDomain>>,
    include_dram: bool,
    poll_interval: Option<Duration>,
    timer: Option<RegionTimer>,
    counters: Arc<Mutex<Counters>>,
    poller: Option<Poller>,
    finished: Vec<DomainEnergy>,
}

impl RaplMeter {
    /// Opens the RAPL domains under `/sys/class/powercap`.
    pub fn open_default() -> Result<Self> {
        Self::open(DEFAULT_POWERCAP_ROOT)
    }

    /// Opens the RAPL domains under `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        Self::with_reader(root, Arc::new(FsReader))
    }

    /// Opens the RAPL domains under `root`, reading files through `reader`.
    pub fn with_reader(root: impl AsRef<Path>, reader: Arc<dyn SysfsReader>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let unavailable = |reason: String| EnergyError::unavailable("rapl", reason);
        if !root.is_dir() {
            return Err(unavailable(format!(
                "no powercap tree at {} (no RAPL driver: virtual machines and non-x86 CPUs usually have none)",
                root.display()
            )));
        }
        let mut dirs = Vec::new();
        collect_domain_dirs(&root, 0, &mut dirs);
        dirs.sort_by(|a, b| a.0.cmp(&b.0));
        dirs.dedup_by(|a, b| a.0 == b.0);
        if dirs.is_empty() {
            return Err(unavailable(format!(
                "no intel-rapl domains under {}",
                root.display()
            )));
        }
        let mut domains = Vec::with_capacity(dirs.len());
        for (id, dir) in dirs {
            let name = reader
                .read_to_string(&dir.join("name"))
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| id.clone());
            let max_path = dir.join("max_energy_range_uj");
            let max_energy_range_uj = read_u64(reader.as_ref(), &max_path)
                .map_err(|e| unavailable(format!("domain {id}: {e}")))?;
            let domain = RaplDomain {
                kind: DomainKind::from_name(&name),
                id,
                name,
                dir,
                max_energy_range_uj,
            };
            // Probe the counter now, so that an unreadable one is reported
            // as "unavailable" before any region is measured.
            read_u64(reader.as_ref(), &domain.energy_path())
                .map_err(|e| unavailable(format!("domain {} ({}): {e}", domain.id, domain.name)))?;
            domains.push(domain);
        }
        log::debug!(
            "rapl: {} domain(s) under {}: {}",
            domains.len(),
            root.display(),
            domains
                .iter()
                .map(|d| format!("{}={}", d.id, d.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(RaplMeter {
            root,
            reader,
            clock: Box::new(RusageClock),
            domains: Arc::new(domains),
            include_dram: false,
            poll_interval: Some(DEFAULT_POLL_INTERVAL),
            timer: None,
            counters: Arc::new(Mutex::new(Counters::default())),
            poller: None,
            finished: Vec::new(),
        })
    }

    /// Adds DRAM domains to the total (as RAM energy).
    pub fn include_dram(mut self, yes: bool) -> Self {
        self.include_dram = yes;
        self
    }

    /// Sets how often a background thread reads the counters during a
    /// region, so that no wrap-around is missed (`None`: only at start, stop
    /// and explicit [`RaplMeter::sample`] calls).
    pub fn poll_interval(mut self, interval: Option<Duration>) -> Self {
        self.poll_interval = interval.map(|d| d.max(Duration::from_millis(1)));
        self
    }

    /// The powercap root in use.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The domains found.
    pub fn domains(&self) -> &[RaplDomain] {
        &self.domains
    }

    /// Every domain's energy in the last finished region, sub-domains included.
    pub fn domain_energies(&self) -> &[DomainEnergy] {
        &self.finished
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads every counter and accumulates the energy since the previous
    /// read. The background poller does this on its own; without it, call
    /// this more often than the counters wrap (see the module docs).
    pub fn sample(&mut self) -> Result<()> {
        if self.timer.is_none() {
            return Err(EnergyError::NotStarted("rapl".into()));
        }
        let domains = self.domains.clone();
        let reader = self.reader.clone();
        self.lock().accumulate(&domains, reader.as_ref())
    }

    /// Which domains count towards the total, and as what.
    fn counted(&self, d: &RaplDomain) -> Option<Component> {
        let has_package = self.domains.iter().any(|d| d.kind == DomainKind::Package);
        match d.kind {
            DomainKind::Package => Some(Component::Cpu),
            DomainKind::Psys if !has_package => Some(Component::Cpu),
            DomainKind::Dram if self.include_dram => Some(Component::Ram),
            _ => None,
        }
    }
}

impl EnergyMeter for RaplMeter {
    fn name(&self) -> &str {
        "rapl"
    }

    fn start(&mut self) -> Result<()> {
        if self.timer.is_some() {
            return Err(EnergyError::AlreadyStarted("rapl".into()));
        }
        let first = read_counters(&self.domains, self.reader.as_ref())?;
        {
            let n = self.domains.len();
            let mut c = self.lock();
            *c = Counters {
                last: first,
                acc_uj: vec![0; n],
                wraps: vec![0; n],
                error: None,
            };
        }
        if let Some(interval) = self.poll_interval {
            let stop = Arc::new(AtomicBool::new(false));
            let (flag, counters, domains, reader) = (
                stop.clone(),
                self.counters.clone(),
                self.domains.clone(),
                self.reader.clone(),
            );
            let handle = std::thread::Builder::new()
                .name("rapl-poller".into())
                .spawn(move || loop {
                    std::thread::park_timeout(interval);
                    if flag.load(Ordering::Acquire) {
                        break;
                    }
                    let mut c = counters.lock().unwrap_or_else(|p| p.into_inner());
                    if let Err(e) = c.accumulate(&domains, reader.as_ref()) {
                        c.error.get_or_insert(e);
                        break;
                    }
                })
                .map_err(|e| EnergyError::Io {
                    path: "rapl poller thread".into(),
                    source: e,
                })?;
            self.poller = Some(Poller { stop, handle });
        }
        self.timer = Some(RegionTimer::start(self.clock.as_ref())?);
        Ok(())
    }

    fn stop(&mut self) -> Result<EnergyReading> {
        if let Some(p) = self.poller.take() {
            p.stop.store(true, Ordering::Release);
            p.handle.thread().unpark();
            if p.handle.join().is_err() {
                log::warn!("rapl: the poller thread panicked");
            }
        }
        let sampled = self.sample();
        let timer = self
            .timer
            .take()
            .ok_or_else(|| EnergyError::NotStarted("rapl".into()))?;
        if let Some(e) = self.lock().error.take() {
            return Err(e);
        }
        sampled?;
        let span = timer.finish(self.clock.as_ref())?;
        let finished: Vec<DomainEnergy> = {
            let c = self.lock();
            self.domains
                .iter()
                .enumerate()
                .map(|(i, d)| DomainEnergy {
                    domain: d.clone(),
                    energy: Energy::from_joules(c.acc_uj[i] as f64 * 1e-6),
                    wraps: c.wraps[i],
                })
                .collect()
        };
        self.finished = finished;
        let components = self
            .finished
            .iter()
            .filter_map(|de| {
                self.counted(&de.domain).map(|component| ComponentEnergy {
                    component,
                    energy: de.energy,
                    source: format!("rapl:{}", de.domain.name),
                    provenance: Provenance::Measured,
                })
            })
            .collect();
        Ok(EnergyReading::from_components("rapl", span, components))
    }
}

/// Finds `intel-rapl:*` directories under `dir`, descending into the
/// `intel-rapl` control-type directory and into packages (for the nested
/// `/sys/devices/virtual/powercap` layout).
fn collect_domain_dirs(dir: &Path, depth: usize, out: &mut Vec<(String, PathBuf)>) {
    if depth > 3 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if !path.is_dir() {
            continue;
        }
        if name.starts_with("intel-rapl:") {
            out.push((name, path.clone()));
            collect_domain_dirs(&path, depth + 1, out);
        } else if name == "intel-rapl" {
            collect_domain_dirs(&path, depth + 1, out);
        }
    }
}

fn read_u64(reader: &dyn SysfsReader, path: &Path) -> Result<u64> {
    let text = reader
        .read_to_string(path)
        .map_err(|source| match source.kind() {
            io::ErrorKind::PermissionDenied => EnergyError::Io {
                path: path.to_path_buf(),
                source: io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{source}; RAPL counters are readable by root only since Linux 5.10 \
                         (grant access with `sudo chmod a+r {}`)",
                        path.display()
                    ),
                ),
            },
            _ => EnergyError::Io {
                path: path.to_path_buf(),
                source,
            },
        })?;
    text.trim().parse::<u64>().map_err(|e| EnergyError::Parse {
        what: path.display().to_string(),
        detail: format!("`{}` is not a counter: {e}", text.trim()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::measure;
    use std::fs;
    use std::sync::Mutex;

    /// Writes a domain directory with its three files.
    fn domain(root: &Path, rel: &str, name: &str, energy: u64, max: u64) -> PathBuf {
        let d = root.join(rel);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("name"), format!("{name}\n")).unwrap();
        fs::write(d.join("energy_uj"), format!("{energy}\n")).unwrap();
        fs::write(d.join("max_energy_range_uj"), format!("{max}\n")).unwrap();
        d
    }

    /// Replaces the counter atomically, as sysfs would show it (a poller
    /// must never see a half-written file).
    fn set(dir: &Path, energy: u64) {
        let tmp = dir.join(".energy_uj.tmp");
        fs::write(&tmp, format!("{energy}\n")).unwrap();
        fs::rename(&tmp, dir.join("energy_uj")).unwrap();
    }

    /// The flat layout of /sys/class/powercap on a two-socket server.
    fn server(root: &Path) -> [PathBuf; 5] {
        const MAX: u64 = 262_143_328_850;
        [
            domain(root, "intel-rapl:0", "package-0", 1_000_000, MAX),
            domain(root, "intel-rapl:0:0", "core", 500_000, MAX),
            domain(root, "intel-rapl:0:1", "dram", 10_000, MAX),
            domain(root, "intel-rapl:1", "package-1", 2_000_000, MAX),
            domain(root, "intel-rapl:1:0", "dram", 20_000, MAX),
        ]
    }

    #[test]
    fn missing_tree_is_unavailable_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("nope");
        let err = RaplMeter::open(&root).err().unwrap();
        assert!(err.is_unavailable(), "{err}");
        assert!(err.to_string().contains("nope"), "{err}");
        let err = RaplMeter::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("no intel-rapl domains"), "{err}");
    }

    #[test]
    fn packages_add_up_and_subdomains_are_reported_separately() {
        let dir = tempfile::tempdir().unwrap();
        let [p0, core0, dram0, p1, dram1] = server(dir.path());
        let mut m = RaplMeter::open(dir.path()).unwrap();
        assert_eq!(m.domains().len(), 5);
        let ((), r) = measure(&mut m, || {
            set(&p0, 1_000_000 + 3_000_000); // 3 J
            set(&core0, 500_000 + 2_000_000); // 2 J, inside package-0
            set(&p1, 2_000_000 + 1_500_000); // 1.5 J
            set(&dram0, 10_000 + 250_000); // 0.25 J
            set(&dram1, 20_000 + 250_000); // 0.25 J
        })
        .unwrap();
        assert!((r.joules() - 4.5).abs() < 1e-12, "{}", r.joules());
        assert_eq!(r.provenance, Provenance::Measured);
        assert_eq!(r.components.len(), 2);
        let core = m
            .domain_energies()
            .iter()
            .find(|d| d.domain.kind == DomainKind::Core)
            .unwrap();
        assert!((core.energy.joules() - 2.0).abs() < 1e-12);

        // With DRAM: 0.5 J more, as RAM.
        let mut m = RaplMeter::open(dir.path()).unwrap().include_dram(true);
        let ((), r) = measure(&mut m, || {
            set(&dram0, 10_000 + 250_000 + 100_000);
            set(&dram1, 20_000 + 250_000 + 400_000);
        })
        .unwrap();
        assert!((r.energy_of(Component::Ram).joules() - 0.5).abs() < 1e-12);
        assert_eq!(r.energy_of(Component::Cpu).joules(), 0.0);
    }

    #[test]
    fn nested_layout_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let p = domain(dir.path(), "intel-rapl/intel-rapl:0", "package-0", 5, 1000);
        domain(
            dir.path(),
            "intel-rapl/intel-rapl:0/intel-rapl:0:0",
            "core",
            1,
            1000,
        );
        let mut m = RaplMeter::open(dir.path()).unwrap();
        assert_eq!(m.domains().len(), 2);
        let ((), r) = measure(&mut m, || set(&p, 505)).unwrap();
        assert!((r.joules() - 500e-6).abs() < 1e-15);
    }

    #[test]
    fn poller_catches_wraps_between_start_and_stop_and_reports_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = domain(dir.path(), "intel-rapl:0", "package-0", 900, 1000);
        let mut m = RaplMeter::open(dir.path())
            .unwrap()
            .poll_interval(Some(Duration::from_millis(2)));
        let wait = || std::thread::sleep(Duration::from_millis(80));
        m.start().unwrap();
        set(&p, 100); // wrap: 200 uJ
        wait();
        set(&p, 950); // 850 uJ
        wait();
        set(&p, 50); // wrap: 100 uJ
        wait();
        let r = m.stop().unwrap();
        assert!((r.joules() - 1150e-6).abs() < 1e-15, "{}", r.joules());
        assert_eq!(m.domain_energies()[0].wraps, 2);

        // A counter that becomes unreadable fails the region at stop.
        m.start().unwrap();
        fs::remove_file(p.join("energy_uj")).unwrap();
        wait();
        assert!(matches!(m.stop(), Err(EnergyError::Io { .. })));
        set(&p, 60);
        m.start().unwrap();
        assert!(m.stop().is_ok());
    }

    #[test]
    fn wrap_around_is_handled() {
        assert_eq!(counter_delta_uj(900, 100, 1000), (200, true));
        assert_eq!(counter_delta_uj(100, 900, 1000), (800, false));
        let dir = tempfile::tempdir().unwrap();
        let p = domain(dir.path(), "intel-rapl:0", "package-0", 900_000, 1_000_000);
        let mut m = RaplMeter::open(dir.path()).unwrap().poll_interval(None);
        m.start().unwrap();
        set(&p, 100_000); // wrapped: 100_000 + 100_000 uJ
        m.sample().unwrap();
        set(&p, 950_000); // no wrap: 850_000 uJ
        m.sample().unwrap();
        set(&p, 50_000); // wrapped again: 50_000 + 50_000 uJ
        let r = m.stop().unwrap();
        assert!((r.joules() - 1.15).abs() < 1e-12, "{}", r.joules());
        assert_eq!(m.domain_energies()[0].wraps, 2);
    }

    /// A reader that fails with "permission denied" on chosen paths.
    struct Deny(Mutex<Vec<PathBuf>>);

    impl SysfsReader for Deny {
        fn read_to_string(&self, path: &Path) -> io::Result<String> {
            if self.0.lock().unwrap().iter().any(|p| p == path) {
                return Err(io::Error::from(io::ErrorKind::PermissionDenied));
            }
            fs::read_to_string(path)
        }
    }

    #[test]
    fn permission_error_is_unavailable_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let p = domain(dir.path(), "intel-rapl:0", "package-0", 1, 1000);
        let reader = Arc::new(Deny(Mutex::new(vec![p.join("energy_uj")])));
        let err = RaplMeter::with_reader(dir.path(), reader).err().unwrap();
        assert!(err.is_unavailable(), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("root only") && msg.contains("chmod"), "{msg}");
    }

    #[test]
    fn permission_lost_during_a_region_fails_the_stop() {
        let dir = tempfile::tempdir().unwrap();
        let p = domain(dir.path(), "intel-rapl:0", "package-0", 1, 1000);
        let reader = Arc::new(Deny(Mutex::new(vec![])));
        let mut m = RaplMeter::with_reader(dir.path(), reader.clone()).unwrap();
        m.start().unwrap();
        reader.0.lock().unwrap().push(p.join("energy_uj"));
        let err = m.stop().unwrap_err();
        assert!(matches!(err, EnergyError::Io { .. }), "{err}");
        // The meter is reset and can be started again once readable.
        reader.0.lock().unwrap().clear();
        m.start().unwrap();
        m.stop().unwrap();
    }

    #[test]
    fn unreadable_or_garbled_counter_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = domain(dir.path(), "intel-rapl:0", "package-0", 1, 1000);
        // A directory in place of the counter file.
        fs::remove_file(p.join("energy_uj")).unwrap();
        fs::create_dir(p.join("energy_uj")).unwrap();
        let err = RaplMeter::open(dir.path()).err().unwrap();
        assert!(err.is_unavailable(), "{err}");
        assert!(err.to_string().contains("energy_uj"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let p = domain(dir.path(), "intel-rapl:0", "package-0", 1, 1000);
        let mut m = RaplMeter::open(dir.path()).unwrap();
        m.start().unwrap();
        fs::write(p.join("energy_uj"), "lots\n").unwrap();
        assert!(matches!(m.stop(), Err(EnergyError::Parse { .. })));
    }

    #[test]
    fn psys_counts_only_without_packages() {
        let dir = tempfile::tempdir().unwrap();
        let s = domain(dir.path(), "intel-rapl:1", "psys", 0, 1_000_000);
        let mut m = RaplMeter::open(dir.path()).unwrap();
        let ((), r) = measure(&mut m, || set(&s, 7)).unwrap();
        assert_eq!(r.components.len(), 1);
        let p = domain(dir.path(), "intel-rapl:0", "package-0", 0, 1_000_000);
        let mut m = RaplMeter::open(dir.path()).unwrap();
        let ((), r) = measure(&mut m, || {
            set(&s, 1_000);
            set(&p, 3);
        })
        .unwrap();
        assert_eq!(r.components.len(), 1);
        assert_eq!(r.components[0].source, "rapl:package-0");
        assert!((r.joules() - 3e-6).abs() < 1e-18);
    }

    #[test]
    fn this_machine_either_has_rapl_or_says_why_not() {
        match RaplMeter::open_default() {
            Ok(m) => assert!(!m.domains().is_empty()),
            Err(e) => assert!(e.is_unavailable(), "{e}"),
        }
    }
}

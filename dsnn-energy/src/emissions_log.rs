//! An emissions log in CodeCarbon's `emissions.csv` format, so that tools
//! which read CodeCarbon output (its dashboard, pandas scripts) read ours.
//!
//! The columns and their units are those of CodeCarbon 3.3.2
//! (`EmissionsData`): durations in s, powers in W, energies in kWh,
//! emissions in kg CO2e, rates in kg/s. As in CodeCarbon, the PUE multiplies
//! the energies *and* the powers that are written. Each row is written and
//! flushed before [`EmissionsLog::append`] returns, so a killed run loses at
//! most the row being written.

use crate::carbon::CarbonAccount;
use crate::csv;
use crate::error::{EnergyError, Result};
use crate::meter::{Component, EnergyReading};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// CodeCarbon 3.3.2's `emissions.csv` header, in order.
pub const COLUMNS: [&str; 38] = [
    "timestamp",
    "project_name",
    "run_id",
    "experiment_id",
    "duration",
    "emissions",
    "emissions_rate",
    "cpu_power",
    "gpu_power",
    "ram_power",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "water_consumed",
    "country_name",
    "country_iso_code",
    "region",
    "cloud_provider",
    "cloud_region",
    "os",
    "python_version",
    "codecarbon_version",
    "cpu_count",
    "cpu_model",
    "gpu_count",
    "gpu_model",
    "longitude",
    "latitude",
    "ram_total_size",
    "tracking_mode",
    "cpu_utilization_percent",
    "gpu_utilization_percent",
    "ram_utilization_percent",
    "ram_used_gb",
    "on_cloud",
    "pue",
    "wue",
];

/// What the log records about the run and the machine, beyond the reading.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunInfo {
    /// Project name (CodeCarbon's default is `codecarbon`).
    pub project_name: String,
    /// Identifier of the run (a trial id, a UUID).
    pub run_id: String,
    /// Identifier of the experiment the run belongs to.
    pub experiment_id: String,
    /// Sub-national region, where known.
    pub region: String,
    /// Operating system description.
    pub os: String,
    /// Logical CPUs available.
    pub cpu_count: u32,
    /// CPU model name.
    pub cpu_model: String,
    /// Number of GPUs metered.
    pub gpu_count: u32,
    /// GPU model names.
    pub gpu_model: String,
    /// RAM size used by the RAM model, GB.
    pub ram_total_size_gb: f64,
    /// `process` or `machine`.
    pub tracking_mode: String,
}

/// One row of the log, already in CodeCarbon's units.
#[derive(Debug, Clone, PartialEq)]
pub struct EmissionsRow {
    /// The values, one per entry of [`COLUMNS`].
    pub values: Vec<String>,
}

impl EmissionsRow {
    /// Builds the row for one region of work.
    pub fn new(reading: &EnergyReading, account: &CarbonAccount, run: &RunInfo) -> Self {
        let secs = reading.wall.as_secs_f64();
        let pue = account.pue;
        let kwh = |c: Component| reading.energy_of(c).kwh() * pue;
        let watts = |c: Component| {
            if secs > 0.0 {
                reading.energy_of(c).joules() / secs * pue
            } else {
                0.0
            }
        };
        let emissions_kg = account.emissions_g(reading.energy) / 1000.0;
        let rate = if secs > 0.0 { emissions_kg / secs } else { 0.0 };
        let i = &account.intensity;
        let on_cloud = if i.cloud_provider.is_empty() {
            "N"
        } else {
            "Y"
        };
        let cpu_util = if run.cpu_count > 0 {
            100.0 * reading.cpu_utilisation() / f64::from(run.cpu_count)
        } else {
            0.0
        };
        // Energy the meters could not attribute to CPU, GPU or RAM (an
        // op-count model, say) is counted in the total only.
        let values = vec![
            format_timestamp(reading.started_at + reading.wall),
            run.project_name.clone(),
            run.run_id.clone(),
            run.experiment_id.clone(),
            secs.to_string(),
            emissions_kg.to_string(),
            rate.to_string(),
            watts(Component::Cpu).to_string(),
            watts(Component::Gpu).to_string(),
            watts(Component::Ram).to_string(),
            kwh(Component::Cpu).to_string(),
            kwh(Component::Gpu).to_string(),
            kwh(Component::Ram).to_string(),
            (reading.energy.kwh() * pue).to_string(),
            "0.0".into(),
            i.country_name.clone(),
            i.country_iso_code.clone(),
            run.region.clone(),
            i.cloud_provider.clone(),
            i.cloud_region.clone(),
            run.os.clone(),
            String::new(),
            format!("dsnn-energy {}", env!("CARGO_PKG_VERSION")),
            run.cpu_count.to_string(),
            run.cpu_model.clone(),
            run.gpu_count.to_string(),
            run.gpu_model.clone(),
            String::new(),
            String::new(),
            run.ram_total_size_gb.to_string(),
            run.tracking_mode.clone(),
            cpu_util.to_string(),
            "0.0".into(),
            "0.0".into(),
            "0.0".into(),
            on_cloud.into(),
            pue.to_string(),
            "0.0".into(),
        ];
        debug_assert_eq!(values.len(), COLUMNS.len());
        EmissionsRow { values }
    }

    /// The row as one CSV line (with the line break).
    pub fn to_csv_line(&self) -> String {
        let mut line = self
            .values
            .iter()
            .map(|v| csv::escape(v))
            .collect::<Vec<_>>()
            .join(",");
        line.push('\n');
        line
    }
}

/// An append-only `emissions.csv`.
#[derive(Debug)]
pub struct EmissionsLog {
    path: PathBuf,
    file: File,
}

impl EmissionsLog {
    /// Opens (or creates) the log at `path`; writes the header if the file
    /// is new or empty, and refuses a file whose header is not CodeCarbon's.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io = |source| EnergyError::Io {
            path: path.clone(),
            source,
        };
        let existing = match std::fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(e)),
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        if existing.trim().is_empty() {
            file.write_all(format!("{}\n", COLUMNS.join(",")).as_bytes())
                .and_then(|_| file.flush())
                .map_err(io)?;
        } else {
            let header = existing.lines().next().unwrap_or_default();
            if header.trim_start_matches('\u{feff}') != COLUMNS.join(",") {
                return Err(EnergyError::Parse {
                    what: path.display().to_string(),
                    detail: "existing file does not start with the emissions.csv header".into(),
                });
            }
            if !existing.ends_with('\n') {
                // A row cut short by a crash: end it so the next row starts cleanly.
                file.write_all(b"\n").map_err(io)?;
            }
        }
        Ok(EmissionsLog { path, file })
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one row and flushes it to the operating system.
    pub fn append(&mut self, row: &EmissionsRow) -> Result<()> {
        self.file
            .write_all(row.to_csv_line().as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|source| EnergyError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Builds and appends the row for one region of work.
    pub fn record(
        &mut self,
        reading: &EnergyReading,
        account: &CarbonAccount,
        run: &RunInfo,
    ) -> Result<EmissionsRow> {
        let row = EmissionsRow::new(reading, account, run);
        self.append(&row)?;
        Ok(row)
    }
}

/// `YYYY-MM-DDTHH:MM:SS` in UTC, CodeCarbon's timestamp layout.
pub fn format_timestamp(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so that leap days fall at the end of a
    // year, then split into 400-year eras of 146,097 days.
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::carbon::CarbonIntensity;
    use crate::meter::{ComponentEnergy, Provenance, RegionSpan};
    use crate::units::Energy;
    use std::time::Duration;

    fn reading() -> EnergyReading {
        let span = RegionSpan {
            started_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            wall: Duration::from_secs(10),
            cpu_time: Duration::from_secs(5),
        };
        let c = |component, j: f64| ComponentEnergy {
            component,
            energy: Energy::from_joules(j),
            source: "t".into(),
            provenance: Provenance::Estimated,
        };
        EnergyReading::from_components(
            "t",
            span,
            vec![
                c(Component::Cpu, 360.0),
                c(Component::Ram, 100.0),
                c(Component::Gpu, 0.0),
            ],
        )
    }

    #[test]
    fn timestamps_are_utc_civil_dates() {
        assert_eq!(format_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00");
        assert_eq!(
            format_timestamp(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            "2023-11-14T22:13:20"
        );
        // A leap day.
        assert_eq!(
            format_timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00"
        );
    }

    #[test]
    fn row_has_codecarbon_units_and_pue() {
        let intensity = CarbonIntensity {
            g_per_kwh: 500.0,
            country_name: "France".into(),
            country_iso_code: "FRA".into(),
            ..CarbonIntensity::world()
        };
        let acc = CarbonAccount::new(intensity, 2.0).unwrap();
        let run = RunInfo {
            project_name: "dsnn".into(),
            cpu_count: 2,
            cpu_model: "AMD EPYC, 2 cores".into(),
            ..RunInfo::default()
        };
        let row = EmissionsRow::new(&reading(), &acc, &run);
        let get = |name: &str| row.values[COLUMNS.iter().position(|c| *c == name).unwrap()].clone();
        let f = |name: &str| get(name).parse::<f64>().unwrap();
        assert_eq!(get("timestamp"), "2023-11-14T22:13:30");
        assert_eq!(f("duration"), 10.0);
        // 460 J x PUE 2 = 920 J = 2.5556e-4 kWh; x 500 g/kWh = 0.12778 g.
        assert!((f("energy_consumed") - 920.0 / 3.6e6).abs() < 1e-15);
        assert!((f("emissions") - 920.0 / 3.6e6 * 0.5).abs() < 1e-15);
        assert!((f("emissions_rate") - f("emissions") / 10.0).abs() < 1e-18);
        assert_eq!(f("cpu_power"), 72.0);
        assert_eq!(f("ram_power"), 20.0);
        assert!((f("cpu_energy") - 720.0 / 3.6e6).abs() < 1e-15);
        assert_eq!(f("cpu_utilization_percent"), 25.0);
        assert_eq!(get("on_cloud"), "N");
        assert_eq!(get("country_iso_code"), "FRA");
        assert!(row.to_csv_line().contains("\"AMD EPYC, 2 cores\""));
    }

    #[test]
    fn log_writes_header_once_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("emissions.csv");
        let acc = CarbonAccount::world_default();
        let run = RunInfo::default();
        {
            let mut log = EmissionsLog::open(&p).unwrap();
            log.record(&reading(), &acc, &run).unwrap();
        }
        {
            let mut log = EmissionsLog::open(&p).unwrap();
            log.record(&reading(), &acc, &run).unwrap();
        }
        let rows = csv::parse(&std::fs::read_to_string(&p).unwrap());
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0], COLUMNS.to_vec());
        assert!(rows[1..].iter().all(|r| r.len() == COLUMNS.len()));
    }

    #[test]
    fn log_refuses_a_foreign_file_and_heals_a_cut_row() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("other.csv");
        std::fs::write(&p, "a,b\n1,2\n").unwrap();
        assert!(matches!(
            EmissionsLog::open(&p),
            Err(EnergyError::Parse { .. })
        ));
        let q = dir.path().join("emissions.csv");
        std::fs::write(
            &q,
            format!("{}\n2023-01-01T00:00:00,cut", COLUMNS.join(",")),
        )
        .unwrap();
        let mut log = EmissionsLog::open(&q).unwrap();
        log.record(
            &reading(),
            &CarbonAccount::world_default(),
            &RunInfo::default(),
        )
        .unwrap();
        let rows = csv::parse(&std::fs::read_to_string(&q).unwrap());
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2].len(), COLUMNS.len());
    }
}

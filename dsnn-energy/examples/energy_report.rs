//! End-to-end use of the crate: builds the `auto` meter, meters one second
//! of single-threaded work, prints the reading with its provenance and the
//! footprint for a country, and appends the row to an `emissions.csv`.
//!
//! Usage: `energy_report [COUNTRY_ISO3] [PUE] [OUTPUT_DIR]` (defaults: DEU,
//! 1.0, the current directory).

use dsnn_energy::cpu_tdp::CpuInfo;
use dsnn_energy::{
    measure, CarbonAccount, CarbonTables, EmissionsLog, GridLocation, MeterSpec, RunInfo,
};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let country = args.first().cloned().unwrap_or_else(|| "DEU".into());
    let pue: f64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(1.0);
    let out = std::path::PathBuf::from(args.get(2).cloned().unwrap_or_else(|| ".".into()));

    let mut built = MeterSpec::default().build()?;
    for note in &built.notes {
        println!("note: {note}");
    }
    let (work, reading) = measure(&mut built.meter, || {
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_secs(1) {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
        }
        x
    })?;
    std::hint::black_box(work);
    println!(
        "reading: {:.3} J over {:.3} s wall, {:.3} s CPU, source {}, {:?}",
        reading.joules(),
        reading.wall.as_secs_f64(),
        reading.cpu_time.as_secs_f64(),
        reading.source,
        reading.provenance
    );
    for c in &reading.components {
        println!(
            "  {:?}: {:.3} J from {} ({:?})",
            c.component,
            c.energy.joules(),
            c.source,
            c.provenance
        );
    }
    let tables = CarbonTables::embedded()?;
    let grid = tables.intensity_or_world(&GridLocation::Country { iso3: country });
    let account = CarbonAccount::new(grid, pue)?;
    let f = account.footprint(reading.energy);
    println!(
        "footprint: {:.3e} kWh IT, {:.3e} kWh facility, {:.4} gCO2e at {} g/kWh ({})",
        f.it_energy.kwh(),
        f.facility_energy.kwh(),
        f.emissions_g,
        f.g_per_kwh,
        account.intensity.source
    );
    let info = CpuInfo::detect();
    let run = RunInfo {
        project_name: "dsnn".into(),
        run_id: "energy-report".into(),
        cpu_count: info.logical_cpus as u32,
        cpu_model: info.model.unwrap_or_default(),
        tracking_mode: "process".into(),
        os: std::env::consts::OS.into(),
        ..RunInfo::default()
    };
    let mut log = EmissionsLog::open(out.join("emissions.csv"))?;
    log.record(&reading, &account, &run)?;
    println!("appended a row to {}", log.path().display());
    Ok(())
}

//! Measures what a start/stop pair of each CPU-side meter costs: the
//! CodeCarbon-style estimator (reads the process CPU time, `/proc/self/statm`),
//! the op-count meter, RAPL on a fake two-package powercap tree (the cost of
//! reading ten sysfs-like files; real sysfs reads cost more), a combined
//! meter, and building the carbon and TDP tables once. Prints a Markdown
//! table for docs/benchmarks.md.

use dsnn_energy::cpu_tdp::TdpTable;
use dsnn_energy::{
    CarbonTables, CombinedMeter, EnergyMeter, EstimatorMeter, OpCountMeter, OpCountModel,
    OpProfile, RaplMeter,
};
use std::time::Instant;

fn per_pair(meter: &mut dyn EnergyMeter, n: u32) -> f64 {
    for _ in 0..n / 10 {
        meter.start().unwrap();
        meter.stop().unwrap();
    }
    let t = Instant::now();
    for _ in 0..n {
        meter.start().unwrap();
        meter.stop().unwrap();
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

fn fake_rapl(root: &std::path::Path) {
    for (rel, name) in [
        ("intel-rapl:0", "package-0"),
        ("intel-rapl:0:0", "core"),
        ("intel-rapl:0:1", "dram"),
        ("intel-rapl:1", "package-1"),
        ("intel-rapl:1:0", "core"),
    ] {
        let d = root.join(rel);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("name"), name).unwrap();
        std::fs::write(d.join("energy_uj"), "123456789").unwrap();
        std::fs::write(d.join("max_energy_range_uj"), "262143328850").unwrap();
    }
}

fn main() {
    let t = Instant::now();
    let tables = CarbonTables::embedded().unwrap();
    let carbon_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let tdp = TdpTable::embedded();
    let tdp_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let n_lookups = 100;
    for _ in 0..n_lookups {
        std::hint::black_box(tdp.lookup("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz", false));
    }
    let lookup_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n_lookups);

    let dir = tempfile::tempdir().unwrap();
    fake_rapl(dir.path());
    let n = 2000;
    let mut rows: Vec<(String, f64)> = Vec::new();
    let mut est = EstimatorMeter::detect().unwrap();
    rows.push(("codecarbon-estimate".into(), per_pair(&mut est, n)));
    let mut op = OpCountMeter::new(&OpCountModel::default(), &OpProfile::default()).unwrap();
    rows.push(("op-count".into(), per_pair(&mut op, n)));
    let mut rapl = RaplMeter::open(dir.path()).unwrap();
    rows.push(("rapl (fake tree, 5 domains)".into(), per_pair(&mut rapl, n)));
    let mut comb = CombinedMeter::new(vec![
        Box::new(RaplMeter::open(dir.path()).unwrap()),
        Box::new(EstimatorMeter::detect().unwrap()),
    ])
    .unwrap();
    rows.push(("rapl+codecarbon-estimate".into(), per_pair(&mut comb, n)));

    println!("| meter | start+stop, us |");
    println!("|---|---|");
    for (name, us) in rows {
        println!("| {name} | {us:.1} |");
    }
    println!();
    println!(
        "one-off: carbon tables {carbon_ms:.1} ms ({} countries), TDP table {tdp_ms:.1} ms ({} rows), TDP lookup {lookup_us:.0} us",
        tables.country_count(),
        tdp.len()
    );
}

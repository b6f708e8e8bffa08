//! Trials per second through the SLURM executor with trivial trials, against
//! running the same trial as a plain child process in a loop.
//!
//! Needs a running cluster (`scripts/slurm-dev-cluster.sh start`).
//!
//! ```text
//! cargo run --example slurm_throughput -- [TRIALS] [POLL_INTERVAL_S] [MAX_JOBS_IN_FLIGHT]
//! ```
//!
//! The trial is a shell script that follows `dsnn trial`'s protocol (read
//! the trial file, write the report atomically) and does nothing else, so
//! the figures are the cost of the executor and of SLURM.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use dsnn::executor::{Executor, ExecutorContext, TrialTask};
use dsnn::slurm::{SlurmExecutor, SlurmSettings};
use dsnn_search::{Configuration, Outcome, Trial};

const TRIVIAL_TRIAL: &str = r#"#!/bin/sh
id=$(sed -n 's/^ *"id": *\([0-9][0-9]*\).*/\1/p' "$3" | head -n 1)
printf '{"id":%s,"outcome":{"Success":[%s.0]},"metrics":{},"duration_s":0.0,"worker":"pid %s"}' "$id" "$id" "$$" > "$5.tmp"
mv "$5.tmp" "$5"
"#;

fn task(id: u64) -> TrialTask {
    TrialTask {
        trial: Trial {
            id,
            config: Configuration::new(),
            budget: 1.0,
        },
        attempt: 0,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u64 = args.first().map_or(Ok(100), |s| s.parse())?;
    let poll: f64 = args.get(1).map_or(Ok(0.2), |s| s.parse())?;
    let slots: usize = args.get(2).map_or(Ok(16), |s| s.parse())?;

    let run_dir = std::env::temp_dir().join(format!("dsnn-slurm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&run_dir)?;
    let experiment_file = run_dir.join("experiment.toml");
    std::fs::write(&experiment_file, "# unused\n")?;
    let dsnn_exe = run_dir.join("trivial-trial");
    std::fs::write(&dsnn_exe, TRIVIAL_TRIAL)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dsnn_exe, std::fs::Permissions::from_mode(0o755))?;
    }

    // The same trial as a plain child process, one after another.
    let input = run_dir.join("loop-trial.json");
    let start = Instant::now();
    for id in 0..n {
        let body = serde_json::json!({ "experiment_file": experiment_file, "task": task(id) });
        std::fs::write(&input, serde_json::to_string_pretty(&body)?)?;
        let out = run_dir.join("loop-result.json");
        let st = Command::new(&dsnn_exe)
            .arg("trial")
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&out)
            .status()?;
        assert!(st.success());
        let text = std::fs::read_to_string(&out)?;
        assert!(text.contains(&format!("\"id\":{id},")));
    }
    let loop_s = start.elapsed().as_secs_f64();
    println!(
        "plain loop of child processes: {n} trials in {loop_s:.2} s = {:.1} trials/s",
        n as f64 / loop_s
    );

    let settings = SlurmSettings {
        poll_interval_s: poll,
        max_jobs_in_flight: slots,
        ..SlurmSettings::default()
    };
    let ctx = ExecutorContext {
        run_dir: run_dir.join("run"),
        experiment_file,
        dsnn_exe,
        trial_time_limit: None,
    };
    let mut ex = SlurmExecutor::new(settings, ctx)?;
    let start = Instant::now();
    let mut next = 0;
    let mut submitted_at = BTreeMap::new();
    let mut latency = Vec::new();
    while latency.len() < n as usize {
        while next < n && ex.in_flight() < ex.slots() {
            submitted_at.insert(next, Instant::now());
            ex.submit(task(next))?;
            next += 1;
        }
        for r in ex.wait(Duration::from_secs(5))? {
            if let Outcome::Failure(m) = &r.outcome {
                return Err(format!("trial {} failed: {m}", r.id).into());
            }
            latency.push(submitted_at[&r.id].elapsed().as_secs_f64());
        }
    }
    let slurm_s = start.elapsed().as_secs_f64();
    latency.sort_by(f64::total_cmp);
    println!(
        "SLURM executor ({slots} jobs in flight, poll every {poll} s): {n} trials in \
         {slurm_s:.2} s = {:.2} trials/s; submit-to-report latency median {:.2} s, max {:.2} s",
        n as f64 / slurm_s,
        latency[latency.len() / 2],
        latency[latency.len() - 1]
    );
    std::fs::remove_dir_all(&run_dir)?;
    Ok(())
}

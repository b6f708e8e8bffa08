//! Trials per second through the SLURM executor with trivial trials (one
//! ZDT1 evaluation each, run by the real `dsnn trial`), against the
//! in-process thread executor and the child-process executor on the same
//! machine.
//!
//! Needs a running cluster (`scripts/slurm-dev-cluster.sh start`) and the
//! `dsnn` binary of the same profile (`cargo build` first):
//!
//! ```text
//! cargo build && cargo run --example slurm_throughput -- [TRIALS] [POLL_INTERVAL_S] [MAX_JOBS_IN_FLIGHT]
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dsnn::executor::processes::ProcessExecutor;
use dsnn::executor::slurm::{SlurmExecutor, SlurmSettings};
use dsnn::executor::threads::ThreadExecutor;
use dsnn::executor::{Executor, ExecutorSetup, TrialTask};
use dsnn::experiment::CheckedExperiment;
use dsnn::runner::RunEvaluator;
use dsnn_search::{Outcome, Trial};

const EXPERIMENT: &str = r#"
name = "throughput"
[problem]
name = "zdt1"
dimensions = 4
[optimizer]
kind = "random"
[stop]
trials = 1
"#;

/// Run `n` trials through `ex`, keeping its slots full; returns
/// (seconds, median and max submit-to-report latency).
fn drive(ex: &mut dyn Executor, exp: &CheckedExperiment, n: u64) -> (f64, f64, f64) {
    let config = exp.space.default_configuration();
    let start = Instant::now();
    let mut next = 0;
    let mut submitted_at = std::collections::BTreeMap::new();
    let mut latency = Vec::new();
    while latency.len() < n as usize {
        while next < n && ex.in_flight() < ex.slots() {
            submitted_at.insert(next, Instant::now());
            ex.submit(TrialTask {
                trial: Trial {
                    id: next,
                    config: config.clone(),
                    budget: 1.0,
                },
                attempt: 0,
            })
            .expect("submit");
            next += 1;
        }
        for r in ex.wait(Duration::from_secs(5)).expect("wait") {
            if let Outcome::Failure(m) = &r.outcome {
                panic!("trial {} failed: {m}", r.id);
            }
            latency.push(submitted_at[&r.id].elapsed().as_secs_f64());
        }
    }
    let total = start.elapsed().as_secs_f64();
    latency.sort_by(f64::total_cmp);
    (
        total,
        latency[latency.len() / 2],
        latency[latency.len() - 1],
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u64 = args.first().map_or(Ok(100), |s| s.parse())?;
    let poll: f64 = args.get(1).map_or(Ok(0.2), |s| s.parse())?;
    let in_flight: usize = args.get(2).map_or(Ok(16), |s| s.parse())?;
    // target/<profile>/examples/slurm_throughput -> target/<profile>/dsnn
    let exe = std::env::current_exe()?;
    let dsnn_exe: PathBuf = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("dsnn"))
        .filter(|p| p.is_file())
        .ok_or("the dsnn binary is not built next to this example: run `cargo build` first")?;

    let root = std::env::temp_dir().join(format!("dsnn-slurm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let experiment_file = root.join("experiment.toml");
    std::fs::write(&experiment_file, EXPERIMENT)?;
    let exp = CheckedExperiment::from_file(&experiment_file, &dsnn::builtins::registry())?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let evaluator = Arc::new(RunEvaluator::new(&exp, None));
    let ctx = |name: &str| ExecutorSetup {
        run_dir: root.join(name),
        experiment_file: experiment_file.clone(),
        exe: dsnn_exe.clone(),
        workers,
        trial_time_limit: None,
        evaluator: evaluator.clone(),
    };
    let report = |what: String, (s, med, max): (f64, f64, f64)| {
        println!(
            "{what}: {n} trials in {s:.2} s = {:.1} trials/s; submit-to-report latency \
             median {med:.3} s, max {max:.3} s",
            n as f64 / s
        );
    };

    let mut threads = ThreadExecutor::new(evaluator.clone(), workers, None);
    report(
        format!("threads ({workers} workers, in process)"),
        drive(&mut threads, &exp, n),
    );
    threads.shutdown(false)?;

    let mut procs = ProcessExecutor::new(ctx("processes"), None)?;
    report(
        format!("processes ({workers} `dsnn trial` children at a time)"),
        drive(&mut procs, &exp, n),
    );
    procs.shutdown(false)?;

    let settings = SlurmSettings {
        poll_interval_s: poll,
        max_jobs_in_flight: in_flight,
        ..SlurmSettings::default()
    };
    let mut slurm = SlurmExecutor::new(settings, ctx("slurm"))?;
    report(
        format!("slurm ({in_flight} jobs in flight, squeue every {poll} s)"),
        drive(&mut slurm, &exp, n),
    );
    slurm.shutdown(false)?;
    std::fs::remove_dir_all(&root)?;
    Ok(())
}

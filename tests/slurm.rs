//! The SLURM executor against a real cluster (`scripts/slurm-dev-cluster.sh
//! start`). Without a cluster these tests skip with the reason, or fail when
//! `DSNN_REQUIRE_SLURM=1` (CI starts the cluster and sets it).
//!
//! The jobs run a small shell script in place of `dsnn trial`: it reads the
//! trial file, then succeeds, sleeps, exits 3 or exits without a result as
//! the trial's `mode` says, writing its report atomically like `dsnn trial`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{output_text, results as run_results};

use dsnn::executor::slurm::{GpuRequest, SlurmExecutor, SlurmSettings};
use dsnn::executor::{Executor, ExecutorSetup, TrialEvaluator, TrialReport, TrialTask};
use dsnn_search::{Configuration, Outcome, Trial};

/// Why the cluster cannot be used, if it cannot.
fn cluster_problem() -> Option<String> {
    match Command::new("sbatch").arg("--version").output() {
        Err(e) => return Some(format!("`sbatch` cannot be run ({e})")),
        Ok(o) if !o.status.success() => return Some("`sbatch --version` fails".into()),
        Ok(_) => {}
    }
    match Command::new("scontrol").arg("ping").output() {
        Ok(o) if o.status.success() && String::from_utf8_lossy(&o.stdout).contains("UP") => None,
        Ok(o) => Some(format!(
            "the SLURM controller is not up: {}",
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
        )),
        Err(e) => Some(format!("`scontrol` cannot be run ({e})")),
    }
}

/// Skip the test (return) without a cluster, or fail if one is required.
macro_rules! require_cluster {
    () => {
        if let Some(why) = cluster_problem() {
            if std::env::var("DSNN_REQUIRE_SLURM").as_deref() == Ok("1") {
                panic!(
                    "DSNN_REQUIRE_SLURM=1 but {why}; start one with \
                     `scripts/slurm-dev-cluster.sh start`"
                );
            }
            eprintln!("skipped: {why} (start one with `scripts/slurm-dev-cluster.sh start`)");
            return;
        }
    };
}

const FAKE_DSNN: &str = r#"#!/bin/sh
# Stands in for `dsnn trial --input IN --output OUT`.
[ "$1" = trial ] && [ "$2" = --input ] && [ "$4" = --output ] || { echo "bad args: $*" >&2; exit 64; }
in="$3"; out="$5"
id=$(sed -n 's/^ *"id": *\([0-9][0-9]*\).*/\1/p' "$in" | head -n 1)
mode=$(sed -n 's/^ *"mode": *"\([a-z0-9]*\)".*/\1/p' "$in" | head -n 1)
secs=$(sed -n 's/^ *"secs": *\([0-9.]*\).*/\1/p' "$in" | head -n 1)
grep -q '"experiment_file": "/' "$in" || { echo "no absolute experiment_file in $in" >&2; exit 65; }
echo "fake trial $id mode $mode"
[ -n "$secs" ] && sleep "$secs"
case "$mode" in
  exit3) echo "failing on purpose" >&2; exit 3 ;;
  exit75) echo "error: cannot write the report" >&2; exit 75 ;;
  noresult) exit 0 ;;
esac
printf '{"id":%s,"outcome":{"Success":[%s.0]},"metrics":{"accuracy":0.5},"duration_s":0.01,"worker":"pid %s"}' \
  "$id" "$id" "$$" > "$out.tmp"
mv "$out.tmp" "$out"
"#;

/// The SLURM executor never evaluates in its own process: jobs run the
/// (fake) binary. This evaluator says so if it is ever called.
struct JobsOnly;

impl TrialEvaluator for JobsOnly {
    fn evaluate(
        &self,
        task: &TrialTask,
        _: &dsnn_core::train::TrainControl,
        worker: &str,
    ) -> TrialReport {
        TrialReport::failed(
            task.trial.id,
            "evaluated in the run's process instead of a SLURM job".into(),
            0.0,
            worker.into(),
        )
    }
}

/// A fresh run directory with an experiment file and the fake binary.
fn setup(name: &str, limit: Option<Duration>) -> ExecutorSetup {
    let run_dir =
        std::env::temp_dir().join(format!("dsnn-slurm-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir).unwrap();
    let experiment_file = run_dir.join("experiment.toml");
    std::fs::write(&experiment_file, "# not read by the fake trial\n").unwrap();
    let dsnn_exe = run_dir.join("fake-dsnn");
    write_executable(&dsnn_exe, FAKE_DSNN);
    ExecutorSetup {
        run_dir,
        experiment_file,
        exe: dsnn_exe,
        workers: 1,
        trial_time_limit: limit,
        evaluator: std::sync::Arc::new(JobsOnly),
    }
}

fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn settings() -> SlurmSettings {
    SlurmSettings {
        poll_interval_s: 0.2,
        result_grace_s: 1.0,
        ..SlurmSettings::default()
    }
}

fn task(id: u64, mode: &str, secs: f64) -> TrialTask {
    let mut config = Configuration::new();
    config.insert("mode", mode.to_string());
    if secs > 0.0 {
        config.insert("secs", secs);
    }
    TrialTask {
        trial: Trial {
            id,
            config,
            budget: 1.0,
        },
        attempt: 0,
    }
}

/// Wait until `n` reports came back (or fail after `limit`).
fn collect(ex: &mut SlurmExecutor, n: usize, limit: Duration) -> BTreeMap<u64, TrialReport> {
    let start = Instant::now();
    let mut got = BTreeMap::new();
    while got.len() < n {
        assert!(
            start.elapsed() < limit,
            "only {} of {n} reports after {limit:?}: {got:?}",
            got.len()
        );
        for r in ex.wait(Duration::from_secs(1)).unwrap() {
            assert!(got.insert(r.id, r).is_none(), "trial reported twice");
        }
    }
    got
}

fn squeue_state(job: u64) -> String {
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-j", &job.to_string(), "-o", "%T"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn wait_for_state(job: u64, state: &str, limit: Duration) {
    let start = Instant::now();
    while squeue_state(job) != state {
        assert!(
            start.elapsed() < limit,
            "job {job} is {} after {limit:?}, expected {state}",
            squeue_state(job)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn failure(r: &TrialReport) -> &str {
    match &r.outcome {
        Outcome::Failure(m) => m,
        Outcome::Success(f) => panic!("trial {} succeeded with {f:?}", r.id),
    }
}

fn records(ctx: &ExecutorSetup) -> String {
    std::fs::read_to_string(ctx.run_dir.join("slurm/jobs.jsonl")).unwrap()
}

#[test]
fn all_trials_run_as_jobs_and_failures_carry_state_and_exit_code() {
    require_cluster!();
    let ctx = setup("all", None);
    let mut ex = SlurmExecutor::new(settings(), ctx.clone()).unwrap();
    assert_eq!(ex.slots(), 16);
    for id in 0..5 {
        ex.submit(task(id, "ok", 0.0)).unwrap();
    }
    ex.submit(task(5, "exit3", 0.0)).unwrap();
    ex.submit(task(6, "noresult", 0.0)).unwrap();
    assert_eq!(ex.in_flight(), 7);
    let jobs = ex.job_ids();
    assert_eq!(jobs.len(), 7);
    let got = collect(&mut ex, 7, Duration::from_secs(60));
    assert_eq!(ex.in_flight(), 0);
    for id in 0..5 {
        let r = &got[&id];
        assert_eq!(r.outcome, Outcome::Success(vec![id as f64]), "{r:?}");
        assert_eq!(r.metrics["accuracy"], 0.5);
        assert_eq!(r.worker, format!("slurm job {}", jobs[&id]));
    }
    let m = failure(&got[&5]);
    assert!(m.contains("FAILED (exit code 3:0)"), "{m}");
    assert!(m.contains("failing on purpose"), "the log's tail: {m}");
    let m = failure(&got[&6]);
    assert!(
        m.contains("COMPLETED") && m.contains("without a result file"),
        "{m}"
    );
    assert_eq!(records(&ctx).matches("\"event\":\"submitted\"").count(), 7);
    // Nothing left: wait returns at once.
    let t = Instant::now();
    assert!(ex.wait(Duration::from_secs(5)).unwrap().is_empty());
    assert!(t.elapsed() < Duration::from_secs(1));
    std::fs::remove_dir_all(&ctx.run_dir).unwrap();
}

#[test]
fn a_job_whose_trial_command_could_not_run_it_is_not_charged() {
    // `dsnn trial` exits 75 when the failure is not the trial's (its report
    // cannot be written, the experiment cannot be read): the executor hands
    // on the other reports, then stops the run with an error instead of
    // recording a failed trial.
    require_cluster!();
    let ctx = setup("infra", None);
    let mut ex = SlurmExecutor::new(settings(), ctx.clone()).unwrap();
    ex.submit(task(0, "ok", 0.0)).unwrap();
    ex.submit(task(1, "exit75", 0.0)).unwrap();
    let start = Instant::now();
    let (mut reports, mut error) = (Vec::new(), None);
    while reports.is_empty() || error.is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{reports:?} {error:?}"
        );
        match ex.wait(Duration::from_secs(1)) {
            Ok(r) => reports.extend(r),
            Err(e) => error = Some(e.to_string()),
        }
    }
    assert_eq!(reports.len(), 1, "only trial 0 is reported: {reports:?}");
    assert_eq!(reports[0].id, 0);
    let e = error.unwrap();
    assert!(
        e.contains("trial 1") && e.contains("not charged") && e.contains("cannot write the report"),
        "{e}"
    );
    assert_eq!(ex.in_flight(), 0);
    std::fs::remove_dir_all(&ctx.run_dir).unwrap();
}

#[test]
fn a_job_cancelled_from_outside_is_a_failed_trial() {
    require_cluster!();
    let ctx = setup("scancel", None);
    let mut ex = SlurmExecutor::new(settings(), ctx.clone()).unwrap();
    ex.submit(task(1, "ok", 30.0)).unwrap();
    ex.submit(task(2, "ok", 0.0)).unwrap();
    let job = ex.job_ids()[&1];
    wait_for_state(job, "RUNNING", Duration::from_secs(30));
    let st = Command::new("scancel")
        .arg(job.to_string())
        .status()
        .unwrap();
    assert!(st.success());
    let got = collect(&mut ex, 2, Duration::from_secs(30));
    let m = failure(&got[&1]);
    assert!(
        m.contains(&format!("slurm job {job} CANCELLED (exit code ")),
        "{m}"
    );
    assert!(matches!(got[&2].outcome, Outcome::Success(_)));
    std::fs::remove_dir_all(&ctx.run_dir).unwrap();
}

#[test]
fn a_trial_over_its_time_limit_is_cancelled_and_recorded() {
    require_cluster!();
    let ctx = setup("limit", Some(Duration::from_millis(1500)));
    let mut ex = SlurmExecutor::new(settings(), ctx.clone()).unwrap();
    let start = Instant::now();
    ex.submit(task(1, "ok", 60.0)).unwrap();
    ex.submit(task(2, "ok", 0.0)).unwrap();
    let job = ex.job_ids()[&1];
    let got = collect(&mut ex, 2, Duration::from_secs(30));
    let m = failure(&got[&1]);
    assert!(m.contains("exceeded the trial time limit of 1.5 s"), "{m}");
    assert!(
        got[&1].duration_s >= 1.5 && got[&1].duration_s < 10.0,
        "{}",
        got[&1].duration_s
    );
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(matches!(got[&2].outcome, Outcome::Success(_)));
    // The job itself is gone, not just forgotten.
    wait_for_state(job, "CANCELLED", Duration::from_secs(15));
    std::fs::remove_dir_all(&ctx.run_dir).unwrap();
}

#[test]
fn a_fresh_executor_collects_the_jobs_of_a_killed_one() {
    require_cluster!();
    let ctx = setup("resume", None);
    let mut first = SlurmExecutor::new(settings(), ctx.clone()).unwrap();
    first.submit(task(1, "ok", 0.0)).unwrap();
    first.submit(task(2, "exit3", 0.0)).unwrap();
    first.submit(task(3, "ok", 4.0)).unwrap();
    let before = first.job_ids();
    // The first executor dies without a word (no shutdown).
    drop(first);
    wait_for_state(before[&1], "COMPLETED", Duration::from_secs(30));
    wait_for_state(before[&2], "FAILED", Duration::from_secs(30));
    // A job the first run recorded that SLURM never heard of (lost).
    let lost = r#"{"event":"submitted","trial_id":4,"attempt":0,"job_id":"987654","job_name":"dsnn-gone-t4"}"#;
    let mut text = records(&ctx);
    text.push_str(lost);
    text.push('\n');
    std::fs::write(ctx.run_dir.join("slurm/jobs.jsonl"), text).unwrap();

    let mut second = SlurmExecutor::new(settings(), ctx.clone()).unwrap();
    let mut tasks: Vec<TrialTask> = (1..=4).map(|id| task(id, "ok", 0.0)).collect();
    tasks[1] = task(2, "exit3", 0.0);
    tasks.push(task(5, "ok", 0.0)); // never submitted before
    for t in &mut tasks {
        t.attempt = 1;
    }
    second.resume(tasks).unwrap();
    let after = second.job_ids();
    assert_eq!(
        after[&3], before[&3],
        "the running job is awaited, not resubmitted"
    );
    assert!(
        after.contains_key(&4) && after[&4] != 987654,
        "lost job resubmitted"
    );
    assert!(after.contains_key(&5));
    assert!(
        !after.contains_key(&1) && !after.contains_key(&2),
        "finished ones collected"
    );
    let got = collect(&mut second, 5, Duration::from_secs(60));
    assert_eq!(got[&1].worker, format!("slurm job {}", before[&1]));
    assert_eq!(got[&1].outcome, Outcome::Success(vec![1.0]));
    let m = failure(&got[&2]);
    assert!(
        m.contains(&format!("slurm job {} FAILED (exit code 3:0)", before[&2])),
        "{m}"
    );
    assert_eq!(got[&3].worker, format!("slurm job {}", before[&3]));
    assert_eq!(got[&3].outcome, Outcome::Success(vec![3.0]));
    assert_eq!(got[&4].outcome, Outcome::Success(vec![4.0]));
    assert_eq!(got[&5].outcome, Outcome::Success(vec![5.0]));
    // 3 first submissions, the lost one, then the lost one and trial 5 again.
    assert_eq!(records(&ctx).matches("\"event\":\"submitted\"").count(), 6);
    std::fs::remove_dir_all(&ctx.run_dir).unwrap();
}

#[test]
fn a_taken_over_job_counts_its_earlier_run_time_against_the_limit() {
    require_cluster!();
    let ctx = setup("resume-limit", Some(Duration::from_secs(4)));
    let mut first = SlurmExecutor::new(settings(), ctx.clone()).unwrap();
    first.submit(task(1, "ok", 60.0)).unwrap();
    let job = first.job_ids()[&1];
    drop(first);
    wait_for_state(job, "RUNNING", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let mut second = SlurmExecutor::new(settings(), ctx.clone()).unwrap();
    let resumed = Instant::now();
    second.resume(vec![task(1, "ok", 60.0)]).unwrap();
    // On a loaded machine SLURM's run time may already be past the limit
    // when `resume` first polls; then the job is cancelled there and is no
    // longer in flight. Either way it is the same job, never a new one.
    if let Some(id) = second.job_ids().get(&1) {
        assert_eq!(*id, job);
    }
    let got = collect(&mut second, 1, Duration::from_secs(30));
    assert_eq!(got[&1].worker, format!("slurm job {job}"));
    assert_eq!(records(&ctx).matches("\"event\":\"submitted\"").count(), 1);
    let m = failure(&got[&1]);
    assert!(m.contains("exceeded the trial time limit of 4 s"), "{m}");
    // About 1 s after the take-over, not 4: SLURM's run time counts.
    assert!(
        resumed.elapsed() < Duration::from_millis(3500),
        "{:?}",
        resumed.elapsed()
    );
    assert!(got[&1].duration_s >= 4.0, "{}", got[&1].duration_s);
    wait_for_state(job, "CANCELLED", Duration::from_secs(15));
    std::fs::remove_dir_all(&ctx.run_dir).unwrap();
}

#[test]
fn shutdown_cancels_the_jobs_and_a_resume_submits_them_again() {
    require_cluster!();
    let ctx = setup("shutdown", None);
    let mut ex = SlurmExecutor::new(settings(), ctx.clone()).unwrap();
    ex.submit(task(1, "ok", 60.0)).unwrap();
    ex.submit(task(2, "ok", 60.0)).unwrap();
    let before = ex.job_ids();
    ex.shutdown(true).unwrap();
    assert_eq!(ex.in_flight(), 0);
    for job in before.values() {
        wait_for_state(*job, "CANCELLED", Duration::from_secs(15));
    }
    let e = ex.submit(task(3, "ok", 0.0)).unwrap_err().to_string();
    assert!(e.contains("shut down"), "{e}");
    assert_eq!(records(&ctx).matches("\"event\":\"cancelled\"").count(), 2);

    let mut again = SlurmExecutor::new(settings(), ctx.clone()).unwrap();
    again
        .resume(vec![task(1, "ok", 0.0), task(2, "ok", 0.0)])
        .unwrap();
    let after = again.job_ids();
    assert!(after[&1] != before[&1] && after[&2] != before[&2]);
    let got = collect(&mut again, 2, Duration::from_secs(30));
    assert!(got
        .values()
        .all(|r| matches!(r.outcome, Outcome::Success(_))));
    std::fs::remove_dir_all(&ctx.run_dir).unwrap();
}

#[test]
fn a_rejected_submission_shows_sbatch_message() {
    require_cluster!();
    let ctx = setup("rejected", None);
    let s = SlurmSettings {
        partition: Some("no-such-partition".into()),
        ..settings()
    };
    let mut ex = SlurmExecutor::new(s, ctx.clone()).unwrap();
    let e = ex.submit(task(1, "ok", 0.0)).unwrap_err().to_string();
    assert!(e.contains("sbatch rejected trial 1"), "{e}");
    assert!(e.contains("invalid partition"), "{e}");
    assert_eq!(ex.in_flight(), 0);
    std::fs::remove_dir_all(&ctx.run_dir).unwrap();
}

#[test]
fn every_setting_reaches_the_sbatch_command_line() {
    // No cluster needed: fake commands that take any submission's arguments
    // and refuse it, so the error shows the command line.
    let ctx = setup("args", Some(Duration::from_secs(150)));
    let bin = ctx.run_dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    write_executable(
        &bin.join("sbatch"),
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'slurm 22.05.8'; exit 0; }\necho 'sbatch: error: refused by the fake' >&2\nexit 1\n",
    );
    write_executable(
        &bin.join("scontrol"),
        "#!/bin/sh\necho 'Slurmctld(primary) at fake is UP'\n",
    );
    // The arguments of the refused command, as the error shows them.
    let submit = |s: SlurmSettings| -> Vec<String> {
        let mut ex = SlurmExecutor::new(s, ctx.clone()).unwrap();
        let e = ex.submit(task(4, "ok", 0.0)).unwrap_err().to_string();
        assert!(e.contains("refused by the fake"), "{e}");
        let (_, command) = e.split_once("(command: sbatch ").expect("the command");
        command
            .trim_end_matches(')')
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    let args = submit(SlurmSettings {
        bin_dir: Some(bin.clone()),
        partition: Some("short".into()),
        account: Some("green-ai".into()),
        cpus_per_trial: 3,
        mem: Some("2G".into()),
        gpus: Some(GpuRequest::Spec("h100:1".into())),
        extra_sbatch_args: vec!["--qos=low".into()],
        ..settings()
    });
    for arg in [
        "--parsable",
        "--partition=short",
        "--account=green-ai",
        "--cpus-per-task=3",
        "--mem=2G",
        "--gres=gpu:h100:1",
        "--qos=low",
        // No time limit of its own: the trial limit (150 s) rounded up to
        // minutes, plus two as a backstop behind the executor's own scancel.
        "--time=5",
    ] {
        assert!(args.iter().any(|a| a == arg), "{arg} missing: {args:?}");
    }
    let args = submit(SlurmSettings {
        bin_dir: Some(bin),
        time_limit: Some("01:00:00".into()),
        ..settings()
    });
    assert!(args.contains(&"--time=01:00:00".to_string()), "{args:?}");
    assert!(!args.iter().any(|a| a.starts_with("--account")), "{args:?}");
    std::fs::remove_dir_all(&ctx.run_dir).unwrap();
}

#[test]
fn a_gpu_request_reaches_sbatch() {
    require_cluster!();
    // The dev cluster has no GPUs: SLURM itself refuses the --gres request.
    let ctx = setup("gres", None);
    let s = SlurmSettings {
        gpus: Some(GpuRequest::Count(1)),
        ..settings()
    };
    let mut ex = SlurmExecutor::new(s, ctx.clone()).unwrap();
    let e = ex.submit(task(1, "ok", 0.0)).unwrap_err().to_string();
    assert!(e.contains("--gres=gpu:1"), "{e}");
    assert!(e.to_lowercase().contains("gres"), "{e}");
    std::fs::remove_dir_all(&ctx.run_dir).unwrap();
}

#[test]
fn a_shared_dir_of_its_own_and_setup_lines() {
    require_cluster!();
    let ctx = setup("shared", None);
    let shared = ctx.run_dir.join("elsewhere");
    let s = SlurmSettings {
        shared_dir: Some(shared.clone()),
        setup: vec!["echo setup-line-ran".into()],
        cpus_per_trial: 2,
        mem: Some("256M".into()),
        extra_sbatch_args: vec!["--comment=dsnn-test".into()],
        ..settings()
    };
    let mut ex = SlurmExecutor::new(s, ctx.clone()).unwrap();
    ex.submit(task(1, "ok", 0.0)).unwrap();
    let job = ex.job_ids()[&1];
    let out = Command::new("scontrol")
        .args(["show", "job", "-o", &job.to_string()])
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(
        info.contains("NumCPUs=2") && info.contains("mem=256M"),
        "{info}"
    );
    assert!(info.contains("Comment=dsnn-test"), "{info}");
    let got = collect(&mut ex, 1, Duration::from_secs(30));
    assert_eq!(got[&1].outcome, Outcome::Success(vec![1.0]));
    // Inputs, results and logs live in the shared directory, with a copy of
    // the experiment file; the job record stays in the run directory.
    let input = std::fs::read_to_string(shared.join("trials/t1-a0.json")).unwrap();
    assert!(
        input.contains(&shared.join("experiment.toml").display().to_string()),
        "{input}"
    );
    assert!(shared.join("experiment.toml").is_file());
    assert!(shared.join(format!("results/t1-job{job}.json")).is_file());
    let log = std::fs::read_to_string(shared.join(format!("logs/t1-a0-{job}.log"))).unwrap();
    assert!(log.starts_with("setup-line-ran\n"), "{log}");
    assert!(records(&ctx).contains(&format!("\"job_id\":\"{job}\"")));
    std::fs::remove_dir_all(&ctx.run_dir).unwrap();
}

#[test]
fn missing_sbatch_is_a_clear_error() {
    // Needs no cluster: the commands are looked up in an empty directory.
    let ctx = setup("nosbatch", None);
    let empty = ctx.run_dir.join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let s = SlurmSettings {
        bin_dir: Some(empty),
        ..settings()
    };
    let e = SlurmExecutor::new(s, ctx.clone()).unwrap_err().to_string();
    assert!(e.contains("`sbatch` not found in"), "{e}");
    assert!(e.contains("executor.slurm.bin_dir"), "{e}");
    std::fs::remove_dir_all(&ctx.run_dir).unwrap();
}

#[test]
fn an_unreachable_controller_is_a_clear_error() {
    require_cluster!();
    // The real commands, with a configuration whose controller port is closed.
    let ctx = setup("unreachable", None);
    let conf = std::fs::read_to_string(slurm_conf()).unwrap();
    let bad: String = conf
        .lines()
        .filter(|l| !l.starts_with("SlurmctldPort") && !l.starts_with("MessageTimeout"))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        + "SlurmctldPort=1\nMessageTimeout=1\n";
    let bad_conf = ctx.run_dir.join("bad-slurm.conf");
    std::fs::write(&bad_conf, bad).unwrap();
    let bin = ctx.run_dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for cmd in ["sbatch", "scontrol", "squeue", "scancel", "sacct"] {
        let real = which(cmd);
        write_executable(
            &bin.join(cmd),
            &format!(
                "#!/bin/sh\nSLURM_CONF='{}' exec '{}' \"$@\"\n",
                bad_conf.display(),
                real.display()
            ),
        );
    }
    let s = SlurmSettings {
        bin_dir: Some(bin),
        ..settings()
    };
    let e = SlurmExecutor::new(s, ctx.clone()).unwrap_err().to_string();
    assert!(e.contains("the SLURM controller is unreachable"), "{e}");
    assert!(e.contains("DOWN"), "{e}");
    std::fs::remove_dir_all(&ctx.run_dir).unwrap();
}

fn slurm_conf() -> PathBuf {
    std::env::var_os("SLURM_CONF")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/slurm/slurm.conf"))
}

fn which(cmd: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{cmd} not on PATH"))
}

// ---- `dsnn run` end to end, trials as SLURM jobs running the real `dsnn trial`.

const SEARCH: &str = r#"
name = "zdt"
seed = 7
output_dir = "out"
[problem]
name = "zdt1"
dimensions = 4
delay_s = DELAY
[optimizer]
kind = "random"
[executor]
kind = "slurm"
[executor.slurm]
poll_interval_s = 0.2
max_jobs_in_flight = 4
[stop]
trials = TRIALS
"#;

fn search(dir: &Path, trials: u32, delay: f64) -> PathBuf {
    let f = dir.join("exp.toml");
    let text = SEARCH
        .replace("TRIALS", &trials.to_string())
        .replace("DELAY", &delay.to_string());
    std::fs::write(&f, text).unwrap();
    f
}

/// `dsnn run EXP`, run from the experiment's directory.
fn dsnn_run_command(exp: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsnn"));
    cmd.arg("run").arg(exp).current_dir(exp.parent().unwrap());
    cmd
}

fn dsnn_run(exp: &Path) -> std::process::Output {
    dsnn_run_command(exp).output().unwrap()
}

/// Trial id -> job ids, from the executor's `jobs.jsonl`.
fn submissions(run: &Path) -> BTreeMap<u64, Vec<u64>> {
    let mut m: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for l in std::fs::read_to_string(run.join("slurm/jobs.jsonl"))
        .unwrap_or_default()
        .lines()
    {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        if v["event"] == "submitted" {
            let job = v["job_id"].as_str().unwrap().parse().unwrap();
            m.entry(v["trial_id"].as_u64().unwrap())
                .or_default()
                .push(job);
        }
    }
    m
}

fn worker_job(r: &serde_json::Value) -> u64 {
    let w = r["report"]["worker"].as_str().unwrap();
    w.strip_prefix("slurm job ")
        .unwrap_or_else(|| panic!("worker {w}"))
        .parse()
        .unwrap()
}

#[test]
fn dsnn_run_searches_with_every_trial_a_slurm_job() {
    require_cluster!();
    let dir = tempfile::tempdir().unwrap();
    let exp = search(dir.path(), 8, 0.0);
    let out = dsnn_run(&exp);
    assert!(out.status.success(), "{}", output_text(&out));
    let run = dir.path().join("out/zdt");
    let res = run_results(&run);
    assert_eq!(res.len(), 9, "8 trials and the default");
    let subs = submissions(&run);
    assert_eq!(subs.len(), 9);
    for r in &res {
        assert!(r["report"]["outcome"]["Success"].is_array(), "{r}");
        let id = r["report"]["id"].as_u64().unwrap();
        assert_eq!(
            subs[&id],
            vec![worker_job(r)],
            "trial {id} ran once, as its job"
        );
    }
    let summary = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(summary.contains("8 trials (0 failed)"), "{summary}");
}

#[test]
fn a_killed_dsnn_run_resumed_collects_the_jobs_it_submitted() {
    require_cluster!();
    let dir = tempfile::tempdir().unwrap();
    let trials = 8;
    let exp = search(dir.path(), trials, 1.5);
    let run = dir.path().join("out/zdt");
    let mut child = dsnn_run_command(&exp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it (SIGKILL: no clean-up) once results came back and more jobs
    // are queued or running.
    let start = Instant::now();
    while run_results(&run).len() < 2 || submissions(&run).len() < 6 {
        assert!(start.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done: Vec<u64> = run_results(&run)
        .iter()
        .map(|r| r["report"]["id"].as_u64().unwrap())
        .collect();
    let left_behind: BTreeMap<u64, u64> = submissions(&run)
        .into_iter()
        .filter(|(id, _)| !done.contains(id))
        .map(|(id, jobs)| (id, jobs[0]))
        .collect();
    assert!(!left_behind.is_empty(), "the run finished before the kill");

    let out = dsnn_run(&exp);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("resuming"), "{text}");
    let res = run_results(&run);
    assert_eq!(res.len(), trials as usize + 1, "{text}");
    let subs = submissions(&run);
    for (id, job) in &left_behind {
        let r = res
            .iter()
            .find(|r| r["report"]["id"].as_u64() == Some(*id))
            .unwrap_or_else(|| panic!("trial {id} has no result"));
        assert_eq!(
            worker_job(r),
            *job,
            "trial {id} collected from its first job"
        );
        assert_eq!(subs[id], vec![*job], "trial {id} was not submitted again");
        assert!(r["report"]["outcome"]["Success"].is_array(), "{r}");
    }
    // Every trial ran exactly once.
    assert!(subs.values().all(|jobs| jobs.len() == 1), "{subs:?}");
}

#[test]
fn dsnn_run_records_a_job_cancelled_from_outside_and_finishes() {
    require_cluster!();
    let dir = tempfile::tempdir().unwrap();
    let trials = 5;
    let exp = search(dir.path(), trials, 3.0);
    let run = dir.path().join("out/zdt");
    let child = dsnn_run_command(&exp)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // An optimizer trial's job (the default configuration's id is u64::MAX).
    let start = Instant::now();
    let (trial, job) = loop {
        if let Some((t, jobs)) = submissions(&run).into_iter().find(|(t, _)| *t != u64::MAX) {
            break (t, jobs[0]);
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no submissions");
        std::thread::sleep(Duration::from_millis(50));
    };
    wait_for_state(job, "RUNNING", Duration::from_secs(30));
    let st = Command::new("scancel")
        .arg(job.to_string())
        .status()
        .unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    let res = run_results(&run);
    assert_eq!(res.len(), trials as usize + 1, "{text}");
    let cancelled = res
        .iter()
        .find(|r| r["report"]["id"].as_u64() == Some(trial))
        .unwrap_or_else(|| panic!("trial {trial} has no result"));
    let reason = cancelled["report"]["outcome"]["Failure"]
        .as_str()
        .unwrap_or_else(|| panic!("not a failure: {cancelled}"));
    assert!(
        reason.contains(&format!("slurm job {job} CANCELLED (exit code ")),
        "{reason}"
    );
    let failed = res
        .iter()
        .filter(|r| r["report"]["outcome"]["Failure"].is_string())
        .count();
    assert_eq!(failed, 1, "{text}");
    let summary = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(summary.contains("5 trials (1 failed)"), "{summary}");
}

#[test]
fn dsnn_run_cancels_trials_over_their_time_limit_and_finishes() {
    require_cluster!();
    let dir = tempfile::tempdir().unwrap();
    let exp = search(dir.path(), 3, 60.0);
    let text = std::fs::read_to_string(&exp).unwrap().replace(
        "kind = \"slurm\"\n",
        "kind = \"slurm\"\ntrial_time_limit_s = 1.5\n",
    );
    std::fs::write(&exp, text).unwrap();
    let start = Instant::now();
    let out = dsnn_run(&exp);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(start.elapsed() < Duration::from_secs(45), "{text}");
    let run = dir.path().join("out/zdt");
    let res = run_results(&run);
    assert_eq!(res.len(), 4, "3 trials and the default: {text}");
    for r in &res {
        let reason = r["report"]["outcome"]["Failure"]
            .as_str()
            .unwrap_or_else(|| panic!("not a failure: {r}"));
        assert!(
            reason.contains("exceeded the trial time limit of 1.5 s"),
            "{reason}"
        );
    }
    // The jobs themselves were cancelled, not left running for a minute.
    for jobs in submissions(&run).values() {
        wait_for_state(jobs[0], "CANCELLED", Duration::from_secs(15));
    }
}

#[test]
fn ctrl_c_cancels_the_runs_jobs_and_keeps_the_trial_log() {
    require_cluster!();
    let dir = tempfile::tempdir().unwrap();
    let exp = search(dir.path(), 6, 30.0);
    let run = dir.path().join("out/zdt");
    let child = dsnn_run_command(&exp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while submissions(&run).len() < 4 {
        assert!(start.elapsed() < Duration::from_secs(30), "no submissions");
        std::thread::sleep(Duration::from_millis(50));
    }
    let jobs: Vec<u64> = submissions(&run).values().map(|j| j[0]).collect();
    for job in &jobs {
        wait_for_state(*job, "RUNNING", Duration::from_secs(30));
    }
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    let text = output_text(&out);
    assert!(
        !out.status.success() && text.contains("interrupted"),
        "{text}"
    );
    for job in &jobs {
        wait_for_state(*job, "CANCELLED", Duration::from_secs(15));
    }
    // The trial log is intact: it parses, and records the interruption.
    let log = std::fs::read_to_string(run.join("trials.jsonl")).unwrap();
    for l in log.lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{l}: {e}"));
    }
    assert!(log.contains("interrupted"), "{log}");
    assert!(run_results(&run).is_empty());
}

#[test]
fn settings_may_be_written_in_the_executor_table_itself() {
    // `executor = { kind = "slurm", ... }` and `[executor.slurm]` mean the same.
    let parse = |text: &str| {
        let exp = dsnn::experiment::CheckedExperiment::from_str(
            text,
            "exp.toml",
            Path::new("."),
            &dsnn::builtins::registry(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        SlurmSettings::from_section(&exp.executor.settings).unwrap()
    };
    let head = "name = \"x\"\n[problem]\nname = \"zdt1\"\n[stop]\ntrials = 3\n";
    let flat = parse(&format!(
        "executor = {{ kind = \"slurm\", partition = \"gpu\", max_jobs_in_flight = 7, gpus = 2, workers = 1 }}\n{head}"
    ));
    let nested = parse(&format!(
        "{head}[executor]\nkind = \"slurm\"\nworkers = 1\n[executor.slurm]\npartition = \"gpu\"\nmax_jobs_in_flight = 7\ngpus = 2\n"
    ));
    let mixed = parse(&format!(
        "{head}[executor]\nkind = \"slurm\"\npartition = \"gpu\"\n[executor.slurm]\nmax_jobs_in_flight = 7\ngpus = 2\n"
    ));
    assert_eq!(flat.partition.as_deref(), Some("gpu"));
    assert_eq!(flat.max_jobs_in_flight, 7);
    assert_eq!(format!("{flat:?}"), format!("{nested:?}"));
    assert_eq!(format!("{mixed:?}"), format!("{nested:?}"));

    // A range error in the flat form points at the key where it is written.
    let e = dsnn::experiment::CheckedExperiment::from_str(
        "name = \"x\"\n[problem]\nname = \"zdt1\"\n[executor]\nkind = \"slurm\"\nmax_jobs_in_flight = 0\n[stop]\ntrials = 3\n",
        "exp.toml",
        Path::new("."),
        &dsnn::builtins::registry(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("exp.toml:6:22"), "{e}");
    assert!(
        e.contains("max_jobs_in_flight") && e.contains("at least 1"),
        "{e}"
    );
    // Written twice: refused, naming the key.
    let e = dsnn::experiment::CheckedExperiment::from_str(
        &format!("{head}[executor]\nkind = \"slurm\"\npartition = \"a\"\n[executor.slurm]\npartition = \"b\"\n"),
        "exp.toml",
        Path::new("."),
        &dsnn::builtins::registry(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("`executor.partition`") && e.contains("both"),
        "{e}"
    );
}

#[test]
fn timeout_node_fail_and_out_of_memory_are_failures_with_state_and_exit_code() {
    // No cluster needed: fake commands play a controller whose jobs ended in
    // the states a small test cluster cannot produce on demand.
    let ctx = setup("states", None);
    let bin = ctx.run_dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let jobs = bin.join("jobs");
    write_executable(
        &bin.join("sbatch"),
        &format!(
            "#!/bin/sh\n[ \"$1\" = --version ] && {{ echo 'slurm 22.05.8'; exit 0; }}\n\
             n=$(( $(wc -l < '{jobs}' 2>/dev/null || echo 0) + 101 ))\n\
             for a in \"$@\"; do case \"$a\" in --job-name=*) name=\"${{a#--job-name=}}\" ;; esac; done\n\
             echo \"$n $name\" >> '{jobs}'\necho \"$n\"\n",
            jobs = jobs.display()
        ),
    );
    // squeue no longer lists the jobs; scontrol still knows how they ended.
    write_executable(&bin.join("squeue"), "#!/bin/sh\nexit 0\n");
    write_executable(
        &bin.join("scontrol"),
        &format!(
            "#!/bin/sh\n[ \"$1\" = ping ] && {{ echo 'Slurmctld(primary) at fake is UP'; exit 0; }}\n\
             name=$(awk -v id=\"$4\" '$1 == id {{ print $2 }}' '{jobs}')\n\
             case \"$name\" in\n\
               *-t1) s=TIMEOUT; c=0:15 ;;\n\
               *-t2) s=NODE_FAIL; c=0:0 ;;\n\
               *-t3) s=OUT_OF_MEMORY; c=0:125 ;;\n\
               *) exit 1 ;;\n\
             esac\n\
             echo \"JobId=$4 JobName=$name JobState=$s Reason=None ExitCode=$c\"\n",
            jobs = jobs.display()
        ),
    );
    let mut ex = SlurmExecutor::new(
        SlurmSettings {
            bin_dir: Some(bin),
            ..settings()
        },
        ctx.clone(),
    )
    .unwrap();
    for id in 1..=3 {
        ex.submit(task(id, "ok", 0.0)).unwrap();
    }
    let got = collect(&mut ex, 3, Duration::from_secs(20));
    for (id, expected) in [
        (1, "TIMEOUT (exit code 0:15)"),
        (2, "NODE_FAIL (exit code 0:0)"),
        (3, "OUT_OF_MEMORY (exit code 0:125)"),
    ] {
        let m = failure(&got[&id]);
        assert!(m.contains(&format!("slurm job {}", 100 + id)), "{m}");
        assert!(m.contains(expected), "trial {id}: {m}");
    }
    assert_eq!(ex.in_flight(), 0);
    std::fs::remove_dir_all(&ctx.run_dir).unwrap();
}

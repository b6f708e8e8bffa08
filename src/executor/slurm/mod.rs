//! The SLURM executor: every trial is a batch job on a cluster.
//!
//! Each trial becomes one `sbatch --parsable` job that runs
//! `dsnn trial --input TRIAL.json --output RESULT.json`; `dsnn trial` writes
//! its result atomically, so a result file that exists is complete. The
//! executor polls all its jobs with one `squeue` call per poll interval,
//! reads the result files of finished jobs and turns jobs that ended without
//! one (FAILED, CANCELLED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY, COMPLETED
//! without a result) into failed reports that carry the SLURM state and exit
//! code. SLURM's own time limits have minute granularity, so the per-trial
//! limit is enforced here with `scancel`.
//!
//! Every submission is appended to `run_dir/slurm/jobs.jsonl` (flushed to
//! disk) before the trial counts as handed over, so a fresh executor on the
//! same run directory finds the jobs of a killed `dsnn run` again
//! ([`Executor::resume`]): finished ones are collected, running ones awaited,
//! lost ones submitted again.
//!
//! Files, all under the shared directory (default `run_dir/slurm/`):
//! `trials/` (inputs), `results/` (outputs), `scripts/` (the batch scripts)
//! and `logs/` (the jobs' stdout and stderr).
//!
//! This file is longer than the run layer's others (about 950 lines):
//! submission, polling, collection, resumption and cancellation are one
//! state machine over the same job table, and read best together; the
//! settings and the unit tests live in their own files.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dsnn_search::TrialId;
use serde::{Deserialize, Serialize};

use super::{
    trial_label, write_atomically, Executor, ExecutorError, ExecutorSetup, TrialInput, TrialReport,
    TrialTask, EXIT_INFRASTRUCTURE,
};
mod settings;

pub use settings::{GpuRequest, SettingError, SlurmSettings, SETTING_KEYS};

/// One line of `jobs.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum JobEvent {
    /// A trial was handed to SLURM as job `job_id`.
    Submitted {
        trial_id: TrialId,
        attempt: u32,
        job_id: String,
        job_name: String,
    },
    /// The executor cancelled the job on shutdown; a resume submits the
    /// trial again instead of reporting it cancelled.
    Cancelled { job_id: String },
}

/// What `jobs.jsonl` says: the latest (job id, job name) per trial, and the
/// jobs cancelled on shutdown.
type Records = (HashMap<TrialId, (String, String)>, HashSet<String>);

/// A job this executor watches.
#[derive(Debug)]
struct Job {
    task: TrialTask,
    id: String,
    name: String,
    submitted: Instant,
    /// When a poll first saw it running (the time limit counts from here).
    started: Option<Instant>,
    /// When a poll first saw it COMPLETED while its result was missing.
    completed_without_result: Option<Instant>,
    /// Taken over from an earlier executor: a job SLURM no longer knows is
    /// submitted again rather than reported failed.
    adopted: bool,
}

/// What SLURM says about a job.
#[derive(Clone, Debug, PartialEq)]
struct JobState {
    state: String,
    name: String,
    /// How long it has been running, as SLURM counts (`squeue %M`).
    run_time: Option<Duration>,
}

const ACTIVE_STATES: &[&str] = &[
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
    "RESV_DEL_HOLD",
    "SPECIAL_EXIT",
];

/// How long `squeue` may keep failing (e.g. a controller restart) before
/// the executor gives up.
const POLL_FAILURE_TOLERANCE: Duration = Duration::from_secs(60);

/// Runs trials as SLURM batch jobs; see the module documentation.
#[derive(Debug)]
pub struct SlurmExecutor {
    settings: SlurmSettings,
    ctx: ExecutorSetup,
    shared: PathBuf,
    records: PathBuf,
    experiment_file: PathBuf,
    /// Where jobs write a trial's own files (see `TrialInput::run_dir`).
    trial_output_dir: PathBuf,
    dsnn_exe: PathBuf,
    name_prefix: String,
    jobs: BTreeMap<u64, Job>,
    ready: VecDeque<TrialReport>,
    last_poll: Option<Instant>,
    failing_since: Option<Instant>,
    /// A job whose `dsnn trial` failed for a reason not the trial's (exit
    /// status [`EXIT_INFRASTRUCTURE`]): `wait` hands on the reports it has,
    /// then returns this error, and the trial runs again on resume.
    infrastructure_error: Option<ExecutorError>,
    closed: bool,
}

impl SlurmExecutor {
    /// Check the settings, create the executor's directories and check that
    /// `sbatch` exists and the controller answers.
    pub fn new(settings: SlurmSettings, ctx: ExecutorSetup) -> Result<Self, ExecutorError> {
        settings
            .validate()
            .map_err(|e| ExecutorError::Other(format!("[executor.slurm] {e}")))?;
        let own_dir = ctx.run_dir.join("slurm");
        let shared = settings
            .shared_dir
            .clone()
            .unwrap_or_else(|| own_dir.clone());
        let mut dirs = vec![own_dir.clone()];
        dirs.extend(["trials", "results", "scripts", "logs"].map(|d| shared.join(d)));
        for d in dirs {
            fs::create_dir_all(&d).map_err(|e| io_err(format!("create {}", d.display()), e))?;
        }
        let shared = absolute(&shared)?;
        // Jobs read the experiment file; with a shared directory of its own
        // the run directory may not be visible on the nodes, so copy it.
        // Jobs write a trial's files (emissions, weights) where they read the
        // experiment: the run directory, or the shared directory when the run
        // directory may not be visible on the nodes.
        let experiment_file = if settings.shared_dir.is_some() {
            let copy = shared.join("experiment.toml");
            fs::copy(&ctx.experiment_file, &copy).map_err(|e| {
                io_err(
                    format!(
                        "copy {} to {}",
                        ctx.experiment_file.display(),
                        copy.display()
                    ),
                    e,
                )
            })?;
            copy
        } else {
            absolute(&ctx.experiment_file)?
        };
        let trial_output_dir = match settings.shared_dir {
            Some(_) => shared.clone(),
            None => absolute(&ctx.run_dir)?,
        };
        let dsnn_exe = match &settings.dsnn_exe {
            Some(p) => p.clone(),
            None => absolute(&ctx.exe)?,
        };
        let name_prefix = format!("dsnn-{}-{}", run_label(&ctx.run_dir), run_tag(&own_dir)?);
        let mut ex = SlurmExecutor {
            records: own_dir.join("jobs.jsonl"),
            settings,
            ctx,
            shared,
            experiment_file,
            trial_output_dir,
            dsnn_exe,
            name_prefix,
            jobs: BTreeMap::new(),
            ready: VecDeque::new(),
            last_poll: None,
            failing_since: None,
            infrastructure_error: None,
            closed: false,
        };
        ex.check_cluster()?;
        Ok(ex)
    }

    /// The settings this executor runs with.
    pub fn settings(&self) -> &SlurmSettings {
        &self.settings
    }

    /// SLURM job ids of the trials in flight, by trial.
    pub fn job_ids(&self) -> BTreeMap<TrialId, u64> {
        self.jobs
            .values()
            .map(|j| (j.task.trial.id, j.id.parse().unwrap_or(0)))
            .collect()
    }

    fn command(&self, name: &str) -> Command {
        match &self.settings.bin_dir {
            Some(d) => Command::new(d.join(name)),
            None => Command::new(name),
        }
    }

    /// Run a SLURM command; a missing command is a clear error.
    fn run(&self, name: &str, args: &[String]) -> Result<Output, ExecutorError> {
        log::debug!("{name} {}", args.join(" "));
        self.command(name).args(args).output().map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                let place = match &self.settings.bin_dir {
                    Some(d) => format!("in {} (executor.slurm.bin_dir)", d.display()),
                    None => "on PATH".into(),
                };
                ExecutorError::Command(format!(
                    "`{name}` not found {place}: the SLURM executor needs the SLURM client \
                     commands (run dsnn on a cluster login node, or set executor.slurm.bin_dir)"
                ))
            } else {
                ExecutorError::Command(format!("could not run `{name}`: {e}"))
            }
        })
    }

    fn check_cluster(&mut self) -> Result<(), ExecutorError> {
        let out = self.run("sbatch", &["--version".into()])?;
        if !out.status.success() {
            return Err(ExecutorError::Command(format!(
                "`sbatch --version` failed: {}",
                output_text(&out)
            )));
        }
        let out = self.run("scontrol", &["ping".into()])?;
        let text = output_text(&out);
        if !out.status.success() || !text.contains("UP") {
            return Err(ExecutorError::Command(format!(
                "the SLURM controller is unreachable (`scontrol ping`: {})",
                text.trim()
            )));
        }
        Ok(())
    }

    fn trial_stem(task: &TrialTask) -> String {
        format!("t{}-a{}", trial_label(task.trial.id), task.attempt)
    }

    fn result_path(&self, trial: TrialId, job_id: &str) -> PathBuf {
        self.shared
            .join("results")
            .join(format!("t{}-job{job_id}.json", trial_label(trial)))
    }

    fn exit_path(&self, trial: TrialId, job_id: &str) -> PathBuf {
        self.shared
            .join("results")
            .join(format!("t{}-job{job_id}.exit", trial_label(trial)))
    }

    fn log_path(&self, task: &TrialTask, job_id: &str) -> PathBuf {
        self.shared
            .join("logs")
            .join(format!("{}-{job_id}.log", Self::trial_stem(task)))
    }

    /// The `sbatch` arguments of one trial (without the script).
    fn sbatch_args(&self, task: &TrialTask, name: &str) -> Vec<String> {
        let s = &self.settings;
        let mut args = vec![
            "--parsable".to_string(),
            format!("--job-name={name}"),
            format!(
                "--output={}",
                self.shared
                    .join("logs")
                    .join(format!("{}-%j.log", Self::trial_stem(task)))
                    .display()
            ),
            format!("--chdir={}", self.shared.display()),
            "--ntasks=1".into(),
            format!("--cpus-per-task={}", s.cpus_per_trial),
        ];
        if let Some(p) = &s.partition {
            args.push(format!("--partition={p}"));
        }
        if let Some(a) = &s.account {
            args.push(format!("--account={a}"));
        }
        match (&s.time_limit, self.ctx.trial_time_limit) {
            (Some(t), _) => args.push(format!("--time={t}")),
            (None, Some(limit)) => {
                let minutes = limit.as_secs_f64() / 60.0;
                args.push(format!("--time={}", minutes.ceil() as u64 + 2));
            }
            (None, None) => {}
        }
        if let Some(m) = &s.mem {
            args.push(format!("--mem={m}"));
        }
        if let Some(g) = &s.gpus {
            args.push(g.gres());
        }
        args.extend(s.extra_sbatch_args.iter().cloned());
        args
    }

    /// The batch script of one trial.
    fn script(&self, task: &TrialTask, input: &Path) -> String {
        let id = trial_label(task.trial.id);
        let results = self.shared.join("results");
        let mut s = format!(
            "#!/bin/sh\n# dsnn trial {id} (attempt {}) of run {}, written by the SLURM executor.\n",
            task.attempt,
            self.ctx.run_dir.display()
        );
        for line in &self.settings.setup {
            s.push_str(line);
            s.push('\n');
        }
        let res = format!("{}/t{id}-job${{SLURM_JOB_ID}}", shell_quote(&results));
        s.push_str(&format!(
            "{} trial --input {} --output {res}.json\nrc=$?\n\
             echo \"$rc\" > {res}.exit.tmp && mv {res}.exit.tmp {res}.exit\nexit \"$rc\"\n",
            shell_quote(&self.dsnn_exe),
            shell_quote(input),
        ));
        s
    }

    /// Append one event to `jobs.jsonl` and flush it to disk.
    fn record(&self, event: &JobEvent) -> Result<(), ExecutorError> {
        let line = serde_json::to_string(event).expect("job events serialise");
        let ctx = || format!("append to {}", self.records.display());
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.records)
            .map_err(|e| io_err(ctx(), e))?;
        f.write_all(format!("{line}\n").as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| io_err(ctx(), e))
    }

    /// The recorded submissions: the latest per trial, and the jobs this
    /// executor cancelled on shutdown.
    fn read_records(&self) -> Result<Records, ExecutorError> {
        let mut latest = HashMap::new();
        let mut cancelled = HashSet::new();
        let text = match fs::read_to_string(&self.records) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_err(format!("read {}", self.records.display()), e)),
        };
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<JobEvent>(line) {
                Ok(JobEvent::Submitted {
                    trial_id,
                    job_id,
                    job_name,
                    ..
                }) => {
                    latest.insert(trial_id, (job_id, job_name));
                }
                Ok(JobEvent::Cancelled { job_id }) => {
                    cancelled.insert(job_id);
                }
                // A line cut short by a crash: the job it named was not
                // handed over.
                Err(e) => log::warn!(
                    "{}:{}: skipping unreadable job record: {e}",
                    self.records.display(),
                    n + 1
                ),
            }
        }
        Ok((latest, cancelled))
    }

    fn submit_job(&mut self, task: TrialTask) -> Result<(), ExecutorError> {
        let stem = Self::trial_stem(&task);
        let input = self.shared.join("trials").join(format!("{stem}.json"));
        let body = TrialInput {
            experiment_file: self.experiment_file.clone(),
            run_dir: Some(self.trial_output_dir.clone()),
            task: task.clone(),
        };
        write_atomic(
            &input,
            serde_json::to_string_pretty(&body)
                .expect("trial serialises")
                .as_bytes(),
        )?;
        let script = self.shared.join("scripts").join(format!("{stem}.sh"));
        write_atomic(&script, self.script(&task, &input).as_bytes())?;
        let name = format!("{}-t{}", self.name_prefix, trial_label(task.trial.id));
        let mut args = self.sbatch_args(&task, &name);
        args.push(script.display().to_string());
        let mut tries = 0;
        let out = loop {
            let out = self.run("sbatch", &args)?;
            let text = output_text(&out);
            let transient = ["Socket timed out", "temporarily unavailable", "try again"]
                .iter()
                .any(|m| text.contains(m));
            if out.status.success() || !transient || tries == 3 {
                break out;
            }
            tries += 1;
            log::warn!("sbatch failed ({}); retrying", text.trim());
            std::thread::sleep(Duration::from_secs(1 << tries));
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let id = stdout
            .trim()
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        if !out.status.success() || id.parse::<u64>().is_err() {
            return Err(ExecutorError::Command(format!(
                "sbatch rejected trial {}: {} (command: sbatch {})",
                task.trial.id,
                output_text(&out).trim(),
                args.join(" ")
            )));
        }
        self.record(&JobEvent::Submitted {
            trial_id: task.trial.id,
            attempt: task.attempt,
            job_id: id.clone(),
            job_name: name.clone(),
        })?;
        log::info!("trial {} is slurm job {id}", task.trial.id);
        self.jobs.insert(
            id.parse().expect("checked above"),
            Job {
                task,
                id,
                name,
                submitted: Instant::now(),
                started: None,
                completed_without_result: None,
                adopted: false,
            },
        );
        Ok(())
    }

    /// One `squeue` call for all jobs: state and name by job id.
    fn squeue(&self) -> Result<HashMap<String, JobState>, ExecutorError> {
        let ids: Vec<&str> = self.jobs.values().map(|j| j.id.as_str()).collect();
        let args = [
            "-h".to_string(),
            "-t".into(),
            "all".into(),
            "-j".into(),
            ids.join(","),
            "-o".into(),
            "%i|%T|%M|%j".into(),
        ];
        let out = self.run("squeue", &args)?;
        let text = output_text(&out);
        if !out.status.success() {
            // squeue fails when none of the ids is known any more.
            if text.contains("Invalid job id") {
                return Ok(HashMap::new());
            }
            return Err(ExecutorError::Command(format!(
                "squeue failed: {}",
                text.trim()
            )));
        }
        let mut states = HashMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut parts = line.splitn(4, '|');
            if let (Some(id), Some(state), Some(time), Some(name)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            {
                states.insert(
                    id.trim().to_string(),
                    JobState {
                        state: base_state(state),
                        name: name.trim().to_string(),
                        run_time: parse_run_time(time.trim()),
                    },
                );
            }
        }
        Ok(states)
    }

    /// State and exit code of a job from `scontrol show job`, then `sacct`
    /// (with the accounting daemon, then from the job completion log), if
    /// any of them still knows it under the expected name.
    fn finished_state(&self, job: &Job) -> Option<(String, String)> {
        let out = self
            .run(
                "scontrol",
                &["show".into(), "job".into(), "-o".into(), job.id.clone()],
            )
            .ok()?;
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            let field = |key: &str| {
                text.split_whitespace()
                    .find_map(|w| w.strip_prefix(key))
                    .map(str::to_string)
            };
            if field("JobName=").as_deref() == Some(job.name.as_str()) {
                if let (Some(state), Some(code)) = (field("JobState="), field("ExitCode=")) {
                    return Some((base_state(&state), code));
                }
            }
        }
        for extra in [None, Some("-c")] {
            let mut args: Vec<String> = extra.into_iter().map(String::from).collect();
            args.extend(
                [
                    "-X",
                    "-n",
                    "-P",
                    "-j",
                    &job.id,
                    "-o",
                    "JobName,State,ExitCode",
                ]
                .iter()
                .map(|s| s.to_string()),
            );
            let Ok(out) = self.run("sacct", &args) else {
                break;
            };
            if !out.status.success() {
                continue;
            }
            let text = String::from_utf8_lossy(&out.stdout);
            for line in text.lines().rev() {
                let f: Vec<&str> = line.split('|').collect();
                if f.len() == 3 && f[0] == job.name {
                    return Some((base_state(f[1]), f[2].to_string()));
                }
            }
        }
        None
    }

    /// The job's own record of `dsnn trial`'s exit status, if it wrote one.
    fn own_exit_code(&self, job: &Job) -> Option<String> {
        fs::read_to_string(self.exit_path(job.task.trial.id, &job.id))
            .ok()
            .map(|s| s.trim().to_string())
    }

    fn failure(&self, job: &Job, what: String) -> TrialReport {
        let log = self.log_path(&job.task, &job.id);
        let mut msg = format!("slurm job {} {what}; log: {}", job.id, log.display());
        if let Some(tail) = log_tail(&log) {
            msg.push_str(&format!("; last lines: {tail}"));
        }
        TrialReport::failed(
            job.task.trial.id,
            msg,
            job.started.unwrap_or(job.submitted).elapsed().as_secs_f64(),
            format!("slurm job {}", job.id),
        )
    }

    /// Records that `job`'s `dsnn trial` could not run its trial for a
    /// reason of the experiment or the cluster, not of the configuration.
    fn not_charged(&mut self, job: &Job, state: &str) {
        let label = trial_label(job.task.trial.id);
        let log = self.log_path(&job.task, &job.id);
        let tail = log_tail(&log).unwrap_or_default();
        self.infrastructure_error
            .get_or_insert(ExecutorError::Other(format!(
                "trial {label}: slurm job {} ended {state} with exit status {EXIT_INFRASTRUCTURE}: \
                 `dsnn trial` could not run it ({tail}; log: {}); the trial is not charged and \
                 runs again when the run resumes",
                job.id,
                log.display()
            )));
    }

    /// The job's result file, if it is there and readable.
    fn read_result(&self, job: &Job) -> Option<Result<TrialReport, String>> {
        let path = self.result_path(job.task.trial.id, &job.id);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => return Some(Err(format!("cannot read {}: {e}", path.display()))),
        };
        Some(match serde_json::from_str::<TrialReport>(&text) {
            Ok(mut r) if r.id == job.task.trial.id => {
                r.worker = format!("slurm job {}", job.id);
                Ok(r)
            }
            Ok(r) => Err(format!(
                "{} reports trial {} instead of {}",
                path.display(),
                r.id,
                job.task.trial.id
            )),
            Err(e) => Err(format!("unreadable result {}: {e}", path.display())),
        })
    }

    /// Poll SLURM once and move finished trials to `ready`.
    fn poll(&mut self) -> Result<(), ExecutorError> {
        self.last_poll = Some(Instant::now());
        if self.jobs.is_empty() {
            return Ok(());
        }
        let states = match self.squeue() {
            Ok(s) => {
                self.failing_since = None;
                s
            }
            Err(ExecutorError::Command(msg)) => {
                let since = *self.failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > POLL_FAILURE_TOLERANCE {
                    return Err(ExecutorError::Command(format!(
                        "{msg} (for {} s; is the SLURM controller down?)",
                        since.elapsed().as_secs()
                    )));
                }
                log::warn!("{msg}; retrying at the next poll");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let limit = self.ctx.trial_time_limit;
        let grace = Duration::from_secs_f64(self.settings.result_grace_s);
        let mut resubmit = Vec::new();
        let mut cancel = Vec::new();
        let keys: Vec<u64> = self.jobs.keys().copied().collect();
        for key in keys {
            let job = &self.jobs[&key];
            // Ours only if SLURM knows the id under our name (ids restart
            // when a cluster is set up again).
            let listed = states.get(&job.id).filter(|s| s.name == job.name).cloned();
            match self.read_result(job) {
                Some(Ok(report)) => {
                    self.ready.push_back(report);
                    self.jobs.remove(&key);
                    continue;
                }
                Some(Err(msg)) => {
                    let active = listed.as_ref().is_some_and(|s| is_active(&s.state));
                    if !active {
                        let r = self.failure(job, msg);
                        self.ready.push_back(r);
                        self.jobs.remove(&key);
                    }
                    continue;
                }
                None => {}
            }
            let run_time = listed.as_ref().and_then(|s| s.run_time);
            let state = match listed {
                Some(s) => Some((s.state, None)),
                None => self.finished_state(job).map(|(s, c)| (s, Some(c))),
            };
            match state {
                Some((state, _)) if is_active(&state) => {
                    let job = self.jobs.get_mut(&key).expect("present");
                    if state == "RUNNING" && job.started.is_none() {
                        // A job taken over from an earlier process has run
                        // for a while already: count that time too.
                        let ran = run_time.filter(|_| job.adopted).unwrap_or_default();
                        let now = Instant::now();
                        job.started = Some(now.checked_sub(ran).unwrap_or(now));
                    }
                    if let (Some(limit), Some(started)) = (limit, job.started) {
                        if started.elapsed() > limit {
                            cancel.push(key);
                        }
                    }
                }
                Some((state, _)) if state == "COMPLETED" => {
                    let job = self.jobs.get_mut(&key).expect("present");
                    let since = *job
                        .completed_without_result
                        .get_or_insert_with(Instant::now);
                    if since.elapsed() >= grace {
                        let job = self.jobs.remove(&key).expect("present");
                        let code = self.own_exit_code(&job).unwrap_or_else(|| "0".into());
                        if is_infrastructure_exit(&code) {
                            self.not_charged(&job, "COMPLETED");
                            continue;
                        }
                        let r = self.failure(
                            &job,
                            format!("COMPLETED (exit code {code}) without a result file"),
                        );
                        self.ready.push_back(r);
                    }
                }
                Some((state, code)) => {
                    let job = self.jobs.remove(&key).expect("present");
                    let own = self.own_exit_code(&job);
                    if own.as_deref().is_some_and(is_infrastructure_exit)
                        || code.as_deref().is_some_and(is_infrastructure_exit)
                    {
                        self.not_charged(&job, &state);
                        continue;
                    }
                    let code = code
                        .or_else(|| self.finished_state(&job).map(|(_, c)| c))
                        .or(own)
                        .unwrap_or_else(|| "unknown".into());
                    let r = self.failure(&job, format!("{state} (exit code {code})"));
                    self.ready.push_back(r);
                }
                None if job.adopted => {
                    let job = self.jobs.remove(&key).expect("present");
                    log::warn!(
                        "slurm job {} of trial {} is unknown to SLURM; submitting the trial again",
                        job.id,
                        job.task.trial.id
                    );
                    resubmit.push(job.task);
                }
                None if job.submitted.elapsed() > Duration::from_secs(10) => {
                    let job = self.jobs.remove(&key).expect("present");
                    let r = self.failure(&job, "vanished from the queue without a result".into());
                    self.ready.push_back(r);
                }
                None => {}
            }
        }
        if !cancel.is_empty() {
            let ids: Vec<String> = cancel.iter().map(|k| k.to_string()).collect();
            self.scancel(&ids)?;
            let limit = limit.expect("cancel only with a limit");
            for key in cancel {
                let job = self.jobs.remove(&key).expect("present");
                let r = self.failure(
                    &job,
                    format!(
                        "exceeded the trial time limit of {} s and was cancelled",
                        limit.as_secs_f64()
                    ),
                );
                self.ready.push_back(r);
            }
        }
        for task in resubmit {
            self.submit_job(task)?;
        }
        Ok(())
    }

    fn scancel(&self, ids: &[String]) -> Result<(), ExecutorError> {
        if ids.is_empty() {
            return Ok(());
        }
        let out = self.run("scancel", ids)?;
        if !out.status.success() {
            return Err(ExecutorError::Command(format!(
                "scancel {} failed: {}",
                ids.join(" "),
                output_text(&out).trim()
            )));
        }
        Ok(())
    }
}

impl Executor for SlurmExecutor {
    fn name(&self) -> &str {
        "slurm"
    }

    fn slots(&self) -> usize {
        self.settings.max_jobs_in_flight
    }

    fn in_flight(&self) -> usize {
        self.jobs.len() + self.ready.len()
    }

    fn submit(&mut self, task: TrialTask) -> Result<(), ExecutorError> {
        if self.closed {
            return Err(ExecutorError::Other(format!(
                "trial {}: the SLURM executor is shut down",
                task.trial.id
            )));
        }
        self.submit_job(task)
    }

    fn wait(&mut self, timeout: Duration) -> Result<Vec<TrialReport>, ExecutorError> {
        let deadline = Instant::now() + timeout;
        let interval = Duration::from_secs_f64(self.settings.poll_interval_s);
        loop {
            if !self.ready.is_empty() {
                return Ok(self.ready.drain(..).collect());
            }
            if let Some(e) = self.infrastructure_error.take() {
                return Err(e);
            }
            if self.jobs.is_empty() {
                return Ok(Vec::new());
            }
            let due = self.last_poll.map_or(Instant::now(), |t| t + interval);
            let now = Instant::now();
            if now >= due {
                self.poll()?;
                continue;
            }
            if now >= deadline {
                return Ok(Vec::new());
            }
            std::thread::sleep(due.min(deadline) - now);
        }
    }

    fn resume(&mut self, tasks: Vec<TrialTask>) -> Result<(), ExecutorError> {
        if self.closed {
            return Err(ExecutorError::Other(
                "the SLURM executor is shut down".into(),
            ));
        }
        let (latest, cancelled) = self.read_records()?;
        let mut fresh = Vec::new();
        for task in tasks {
            match latest.get(&task.trial.id) {
                Some((job_id, name)) if !cancelled.contains(job_id) => {
                    let Ok(key) = job_id.parse::<u64>() else {
                        fresh.push(task);
                        continue;
                    };
                    log::info!("trial {}: taking over slurm job {job_id}", task.trial.id);
                    self.jobs.insert(
                        key,
                        Job {
                            task,
                            id: job_id.clone(),
                            name: name.clone(),
                            submitted: Instant::now(),
                            started: None,
                            completed_without_result: None,
                            adopted: true,
                        },
                    );
                }
                _ => fresh.push(task),
            }
        }
        // Classify the taken-over jobs now: finished ones become reports,
        // lost ones are submitted again below.
        self.poll()?;
        for job in self.jobs.values_mut() {
            job.adopted = false;
        }
        for task in fresh {
            self.submit_job(task)?;
        }
        Ok(())
    }

    fn shutdown(&mut self, cancel: bool) -> Result<(), ExecutorError> {
        self.closed = true;
        if cancel && !self.jobs.is_empty() {
            let ids: Vec<String> = self.jobs.values().map(|j| j.id.clone()).collect();
            log::info!("cancelling {} slurm job(s)", ids.len());
            self.scancel(&ids)?;
            for id in &ids {
                self.record(&JobEvent::Cancelled { job_id: id.clone() })?;
            }
            self.jobs.clear();
        }
        Ok(())
    }
}

fn is_active(state: &str) -> bool {
    ACTIVE_STATES.contains(&state)
}

/// Whether a job's exit code (`75`, or SLURM's `75:0`) is `dsnn trial`'s
/// "not the trial's fault" status.
fn is_infrastructure_exit(code: &str) -> bool {
    code.split(':')
        .next()
        .and_then(|c| c.trim().parse::<i32>().ok())
        == Some(EXIT_INFRASTRUCTURE)
}

/// `squeue`'s `%M`: `[days-][hours:]minutes:seconds`, or `INVALID` for
/// jobs that have not started.
fn parse_run_time(s: &str) -> Option<Duration> {
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().ok()?, r),
        None => (0, s),
    };
    let mut secs = 0u64;
    let parts: Vec<&str> = rest.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return None;
    }
    for p in parts {
        secs = secs * 60 + p.parse::<u64>().ok()?;
    }
    Some(Duration::from_secs(days * 86_400 + secs))
}

/// `CANCELLED by 0` -> `CANCELLED`; `OUT_OF_ME+` stays as it is.
fn base_state(s: &str) -> String {
    s.split_whitespace()
        .next()
        .unwrap_or("")
        .trim_end_matches('+')
        .to_string()
}

fn io_err(context: String, source: io::Error) -> ExecutorError {
    ExecutorError::Io { context, source }
}

fn absolute(p: &Path) -> Result<PathBuf, ExecutorError> {
    std::path::absolute(p).map_err(|e| io_err(format!("resolve {}", p.display()), e))
}

fn output_text(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stderr).into_owned();
    if s.trim().is_empty() {
        s = String::from_utf8_lossy(&out.stdout).into_owned();
    }
    s
}

/// Writes a file so that readers never see it half-written.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ExecutorError> {
    write_atomically(path, bytes).map_err(|e| io_err(format!("write {}", path.display()), e))
}

/// `'...'` with embedded quotes escaped, for `sh`.
fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// The run directory's name, cut to characters and a length that read well
/// in `squeue`.
fn run_label(run_dir: &Path) -> String {
    let name = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let label: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(24)
        .collect();
    if label.is_empty() {
        "run".into()
    } else {
        label
    }
}

/// A random tag for this run directory's job names, created once and kept
/// in `slurm/run-tag`, so a job id that SLURM hands out again for another
/// job is never mistaken for one of this run's.
fn run_tag(dir: &Path) -> Result<String, ExecutorError> {
    let path = dir.join("run-tag");
    match fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(format!("read {}", path.display()), e)),
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15;
    // splitmix64 finaliser: spreads nearby clock readings apart.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let tag = format!("{:08x}", x as u32);
    write_atomic(&path, tag.as_bytes())?;
    Ok(tag)
}

/// The last few non-empty lines of a job log, on one line.
fn log_tail(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return None;
    }
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    let tail: String = tail
        .chars()
        .rev()
        .take(400)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Some(tail)
}

#[cfg(test)]
mod tests;

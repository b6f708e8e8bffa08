//! One child process per trial: `<binary> trial --input F --output R`, which
//! isolates the run from crashes (a panic, an abort, running out of
//! memory) and enforces per-trial memory and time limits.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{
    trial_label, write_atomically, Executor, ExecutorError, ExecutorSetup, TrialInput, TrialReport,
    TrialTask, EXIT_INFRASTRUCTURE,
};

struct ChildTrial {
    child: Child,
    task: TrialTask,
    started: Instant,
    result_file: PathBuf,
    log_file: PathBuf,
}

/// One `dsnn trial` child process per trial: a crash, an abort or running out
/// of memory fails that trial only. The time limit is enforced by killing
/// the child, the memory limit by `RLIMIT_AS` set in the child.
pub struct ProcessExecutor {
    setup: ExecutorSetup,
    workers: usize,
    memory_limit: Option<u64>,
    dir: PathBuf,
    children: Vec<ChildTrial>,
    /// A child that could not do its work for a reason that is not its
    /// trial's (exit status [`EXIT_INFRASTRUCTURE`]): the next `wait` stops
    /// the run with it, after the reports collected with it are handed on.
    infrastructure_error: Option<ExecutorError>,
}

impl ProcessExecutor {
    /// `setup.workers` children at a time, each limited to `memory_limit`
    /// bytes of address space; files go to `<run_dir>/processes/`.
    pub fn new(setup: ExecutorSetup, memory_limit: Option<u64>) -> Result<Self, ExecutorError> {
        let dir = setup.run_dir.join("processes");
        fs::create_dir_all(&dir).map_err(|e| ExecutorError::Io {
            context: format!("creating {}", dir.display()),
            source: e,
        })?;
        if !setup.exe.is_file() {
            return Err(ExecutorError::Command(format!(
                "the binary {} that runs trials does not exist",
                setup.exe.display()
            )));
        }
        Ok(ProcessExecutor {
            workers: setup.workers.max(1),
            setup,
            memory_limit,
            dir,
            children: Vec::new(),
            infrastructure_error: None,
        })
    }

    /// The report of a child that ended, or the infrastructure error it
    /// ended with (not the trial's: the trial is not charged).
    fn finish(
        &self,
        c: &ChildTrial,
        status: std::process::ExitStatus,
    ) -> Result<TrialReport, ExecutorError> {
        let label = trial_label(c.task.trial.id);
        let failed = |reason: String| {
            TrialReport::failed(
                c.task.trial.id,
                reason,
                c.started.elapsed().as_secs_f64(),
                format!("pid {}", c.child.id()),
            )
        };
        let log = fs::read_to_string(&c.log_file).unwrap_or_default();
        // The telling line: an allocation failure, a panic or an error, else
        // the last line (backtrace notes skipped).
        let log_tail = log
            .lines()
            .find(|l| {
                l.contains("memory allocation of")
                    || l.contains("panicked")
                    || l.starts_with("error")
            })
            .or_else(|| {
                log.lines().rev().find(|l| {
                    !l.trim().is_empty()
                        && !l.starts_with("note:")
                        && !l.contains("stack backtrace")
                })
            })
            .unwrap_or("")
            .trim()
            .to_string();
        if status.code() == Some(EXIT_INFRASTRUCTURE) {
            return Err(ExecutorError::Other(format!(
                "trial {label}: its process could not run it ({log_tail}); the trial is not \
                 charged and runs again when the run resumes"
            )));
        }
        if status.success() {
            return Ok(
                match fs::read_to_string(&c.result_file)
                    .map_err(|e| e.to_string())
                    .and_then(|t| {
                        serde_json::from_str::<TrialReport>(&t).map_err(|e| e.to_string())
                    }) {
                    Ok(r) => r,
                    Err(e) => failed(format!(
                    "trial {label}: the child exited cleanly but its result {} is unreadable: {e}",
                    c.result_file.display()
                )),
                },
            );
        }
        // Rust's allocation-failure message (the process then aborts).
        let oom = log.contains("memory allocation of");
        let reason = match (status.code(), signal_of(status)) {
            _ if oom => format!(
                "ran out of memory{} ({log_tail})",
                self.memory_limit
                    .map(|m| format!(" (limit {} MiB)", m >> 20))
                    .unwrap_or_default()
            ),
            (Some(code), _) => format!("the trial process exited with status {code}: {log_tail}"),
            (None, Some(sig)) => format!(
                "the trial process was killed by signal {sig}{}",
                if sig == 9 {
                    " (SIGKILL: out of memory, or killed from outside)"
                } else if sig == 6 {
                    " (SIGABRT: an abort, often a failed allocation)"
                } else {
                    ""
                }
            ),
            (None, None) => "the trial process ended abnormally".into(),
        };
        Ok(failed(reason))
    }
}

#[cfg(unix)]
fn signal_of(status: std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

#[cfg(not(unix))]
fn signal_of(_status: std::process::ExitStatus) -> Option<i32> {
    None
}

impl Executor for ProcessExecutor {
    fn name(&self) -> &str {
        "processes"
    }

    fn slots(&self) -> usize {
        self.workers
    }

    fn in_flight(&self) -> usize {
        self.children.len()
    }

    fn submit(&mut self, task: TrialTask) -> Result<(), ExecutorError> {
        let stem = format!("trial-{}-{}", trial_label(task.trial.id), task.attempt);
        let input_file = self.dir.join(format!("{stem}.json"));
        let result_file = self.dir.join(format!("{stem}.result.json"));
        let log_file = self.dir.join(format!("{stem}.log"));
        let input = TrialInput {
            experiment_file: self.setup.experiment_file.clone(),
            run_dir: Some(self.setup.run_dir.clone()),
            task: task.clone(),
        };
        let io = |what: &str, p: &Path, e: std::io::Error| ExecutorError::Io {
            context: format!("{what} {}", p.display()),
            source: e,
        };
        let _ = fs::remove_file(&result_file);
        write_atomically(
            &input_file,
            serde_json::to_string_pretty(&input)
                .map_err(|e| ExecutorError::Other(e.to_string()))?
                .as_bytes(),
        )
        .map_err(|e| io("writing", &input_file, e))?;
        let log = fs::File::create(&log_file).map_err(|e| io("creating", &log_file, e))?;
        let mut cmd = Command::new(&self.setup.exe);
        cmd.arg("trial")
            .arg("--input")
            .arg(&input_file)
            .arg("--output")
            .arg(&result_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            // A process group of its own: a Ctrl-C at the terminal reaches
            // `dsnn run`, which cancels its trials, and not the trials first
            // (they would be recorded as killed instead of being re-run).
            cmd.process_group(0);
        }
        #[cfg(unix)]
        if let Some(bytes) = self.memory_limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs
            // between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: bytes as libc::rlim_t,
                        rlim_max: bytes as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // The trial dies with the run: a `dsnn run` killed with SIGKILL
            // cannot cancel its children, and orphans would keep computing
            // trials that the resumed run evaluates again.
            let parent = std::process::id() as libc::pid_t;
            // SAFETY: prctl, getppid and raise are async-signal-safe;
            // nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // The run died before the line above took effect.
                    if libc::getppid() != parent {
                        libc::raise(libc::SIGKILL);
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().map_err(|e| {
            ExecutorError::Command(format!("cannot start {}: {e}", self.setup.exe.display()))
        })?;
        self.children.push(ChildTrial {
            child,
            task,
            started: Instant::now(),
            result_file,
            log_file,
        });
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> Result<Vec<TrialReport>, ExecutorError> {
        if let Some(e) = self.infrastructure_error.take() {
            return Err(e);
        }
        let until = Instant::now() + timeout;
        loop {
            let mut out = Vec::new();
            let mut k = 0;
            while k < self.children.len() {
                let limit = self.setup.trial_time_limit;
                let c = &mut self.children[k];
                let status = c.child.try_wait().map_err(|e| ExecutorError::Io {
                    context: "waiting for a trial process".into(),
                    source: e,
                })?;
                if let Some(status) = status {
                    let c = self.children.remove(k);
                    match self.finish(&c, status) {
                        Ok(report) => out.push(report),
                        Err(e) => {
                            self.infrastructure_error.get_or_insert(e);
                        }
                    }
                    continue;
                }
                if let Some(l) = limit {
                    if c.started.elapsed() > l {
                        let _ = c.child.kill();
                        let _ = c.child.wait();
                        let c = self.children.remove(k);
                        out.push(TrialReport::failed(
                            c.task.trial.id,
                            format!(
                                "exceeded the per-trial time limit of {:.1} s (process killed)",
                                l.as_secs_f64()
                            ),
                            c.started.elapsed().as_secs_f64(),
                            format!("pid {}", c.child.id()),
                        ));
                        continue;
                    }
                }
                k += 1;
            }
            if out.is_empty() {
                if let Some(e) = self.infrastructure_error.take() {
                    return Err(e);
                }
            }
            if !out.is_empty() || Instant::now() >= until {
                return Ok(out);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn shutdown(&mut self, cancel: bool) -> Result<(), ExecutorError> {
        if cancel {
            for c in &mut self.children {
                let _ = c.child.kill();
                let _ = c.child.wait();
            }
            self.children.clear();
        }
        Ok(())
    }
}

impl Drop for ProcessExecutor {
    fn drop(&mut self) {
        let _ = self.shutdown(true);
    }
}

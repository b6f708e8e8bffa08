//! The run store: `runs/<name>/` and its append-only trial log.
//!
//! Files of a run directory:
//! - `experiment.toml`: the resolved experiment (absolute paths, the space
//!   inline); `dsnn trial` reads it, and a resumed run must match it.
//! - `trials.jsonl`: one JSON record per line (see [`LogRecord`]); a trial
//!   counts once its `result` line is written and synced to disk. A line cut
//!   short by a crash at the end of the file is ignored on resume.
//! - `pareto.csv`, `summary.json`, `summary.md`, `pareto.svg`: written at the
//!   end of every session from the log (by the report module).
//! - `emissions.csv`: one CodeCarbon-style row per metered validation pass.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use dsnn_search::{Event, Trial};
use serde::{Deserialize, Serialize};

use crate::executor::{write_atomically, TrialReport, DEFAULT_TRIAL_ID};

/// Errors of the run store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The trial log has a broken line that is not the last one.
    #[error(
        "{path}:{line}: corrupt trial log line ({reason}); only a cut-off last line is tolerated"
    )]
    Corrupt {
        /// The log.
        path: PathBuf,
        /// Line number (1-based).
        line: usize,
        /// The parse error.
        reason: String,
    },
    /// Another `dsnn run` has the run directory open.
    #[error(
        "{} is in use by another run ({}): wait for it to finish or stop it; two runs of one experiment would mix their trials",
        dir.display(),
        if holder.is_empty() { "process unknown" } else { holder.as_str() }
    )]
    Locked {
        /// The run directory.
        dir: PathBuf,
        /// Who holds the lock (`pid 1234`), as it wrote itself.
        holder: String,
    },
    /// The stored experiment file lacks what a reader needs.
    #[error("{path}: {reason}")]
    BadExperiment {
        /// The stored `experiment.toml`.
        path: PathBuf,
        /// What is missing or malformed.
        reason: String,
    },
    /// The run directory holds a different experiment.
    #[error(
        "{} holds a different experiment than the one given ({} changed; only `stop` may change, to let a run grow); compare with {}, choose another `name`, or delete the directory to start over",
        dir.display(),
        if changed.is_empty() { "its text".to_string() } else { changed.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ") },
        dir.join(RunStore::EXPERIMENT).display()
    )]
    Mismatch {
        /// The run directory.
        dir: PathBuf,
        /// The dotted keys whose values differ.
        changed: Vec<String>,
    },
}

/// A run directory's name and objectives, read from its stored
/// `experiment.toml` (resolved, so the objectives are listed there).
#[derive(Clone, Debug, PartialEq)]
pub struct RunInfo {
    /// The experiment's `name`.
    pub name: String,
    /// The objectives, in order (all minimised).
    pub objectives: Vec<String>,
}

impl RunInfo {
    /// Reads the run directory `dir`'s name and objectives.
    pub fn read(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(RunStore::EXPERIMENT);
        let bad = |reason: String| StoreError::BadExperiment {
            path: path.clone(),
            reason,
        };
        if !path.is_file() {
            return Err(bad(format!(
                "not found: {} is not a run directory",
                dir.display()
            )));
        }
        let text = fs::read_to_string(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        let doc: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let name = doc
            .get("name")
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad("no `name`".into()))?
            .to_string();
        let objectives = doc
            .get("objectives")
            .and_then(|v| v.as_array())
            .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_string)).collect())
            .ok_or_else(|| {
                bad(
                    "no `objectives` list of names (run directories of dsnn before 0.2 lack it)"
                        .into(),
                )
            })?;
        Ok(RunInfo { name, objectives })
    }
}

/// One line of `trials.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LogRecord {
    /// A `dsnn run` session started.
    Session {
        /// Seconds since the Unix epoch.
        started_at: f64,
        /// dsnn's version.
        version: String,
        /// Run wall-clock seconds before this session, sessions that died
        /// counted up to their last heartbeat (absent in older logs).
        #[serde(default)]
        elapsed_s: f64,
    },
    /// The default configuration's trial was submitted.
    Default {
        /// The trial (id [`DEFAULT_TRIAL_ID`]).
        trial: Trial,
    },
    /// `optimizer.ask(n)` returned these trials.
    Ask {
        /// Requested number.
        n: usize,
        /// Returned trials.
        trials: Vec<Trial>,
        /// Run wall-clock seconds so far, summed over sessions.
        #[serde(default)]
        elapsed_s: f64,
    },
    /// A trial finished (successfully or not) and was told to the optimizer.
    Result {
        /// The trial's budget (for reports without the ask record at hand).
        budget: f64,
        /// The report.
        report: TrialReport,
        /// Run wall-clock seconds so far, summed over sessions.
        elapsed_s: f64,
    },
    /// The session ended.
    Stop {
        /// Why.
        reason: String,
        /// Run wall-clock seconds so far, summed over sessions.
        elapsed_s: f64,
    },
    /// The log no longer replayed on the optimizer (it or dsnn changed), so
    /// a fresh one took over the logged trials (see
    /// `runner::warm_start`).
    WarmStart {
        /// Why, and how the fresh optimizer took over.
        reason: String,
    },
}

/// What the log of an earlier session says.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Ask/tell events for replaying the optimizer.
    pub events: Vec<Event>,
    /// Every finished trial: the trial and its report, in log order.
    pub results: Vec<(Trial, TrialReport)>,
    /// The run's wall-clock seconds (summed over sessions) when each of
    /// `results` was logged, in the same order; empty for a history built
    /// by hand without times.
    pub result_elapsed_s: Vec<f64>,
    /// Trials asked (or the default trial submitted) with no result yet, and
    /// how many sessions they were already started in.
    pub in_flight: Vec<(Trial, u32)>,
    /// The default configuration's trial, if submitted.
    pub default_trial: Option<Trial>,
    /// Wall-clock seconds of the earlier sessions.
    pub elapsed_s: f64,
    /// How many `dsnn run` sessions the log records.
    pub sessions: usize,
    /// For trials in flight: how many sessions ended without a stop record
    /// while they ran (the process died: a crash, an abort, running out of
    /// memory, SIGKILL). The last session counts when it has no stop
    /// record: whoever reads the log to resume holds the run directory's
    /// lock, so that session is over.
    pub crashes: std::collections::BTreeMap<dsnn_search::TrialId, u32>,
    /// Whether the log is empty or ends with a newline (else its last line
    /// was cut off by a crash).
    pub ends_with_newline: bool,
    /// Where the last line starts when it was ignored as cut off by a
    /// crash (byte offset): a resume truncates the log there, so that the
    /// damaged line never ends up between good ones.
    pub cut_off_at: Option<u64>,
    /// Why each warm start happened (a resume whose log no longer
    /// replayed on the optimizer), in log order.
    pub warm_starts: Vec<String>,
    /// The last session's start (seconds since the Unix epoch), when that
    /// session died without a stop record: its heartbeat says how long it ran.
    pub crashed_session_started_at: Option<f64>,
}

impl History {
    /// Finished optimizer trials (the default trial not counted).
    pub fn finished_trials(&self) -> usize {
        self.results
            .iter()
            .filter(|(t, _)| t.id != DEFAULT_TRIAL_ID)
            .count()
    }

    /// Optimizer trials asked so far.
    pub fn asked_trials(&self) -> usize {
        self.events
            .iter()
            .map(|e| match e {
                Event::Ask { trials, .. } => trials.len(),
                _ => 0,
            })
            .sum()
    }

    /// The budgets of the optimizer trials asked so far, summed (what
    /// `stop.budget` limits).
    pub fn asked_budget(&self) -> f64 {
        self.events
            .iter()
            .map(|e| match e {
                Event::Ask { trials, .. } => trials.iter().map(|t| t.budget).sum(),
                _ => 0.0,
            })
            .sum()
    }
}

/// The content of [`RunStore::HEARTBEAT`].
#[derive(Debug, Serialize, Deserialize)]
struct Heartbeat {
    started_at: f64,
    elapsed_s: f64,
}

/// The run directory and its open trial log. While it is open the
/// directory is locked (`File::try_lock`, an advisory `flock`, on `.lock`), so a second `dsnn run` of the
/// same experiment fails at once instead of writing into the same log.
pub struct RunStore {
    dir: PathBuf,
    log_path: PathBuf,
    log: File,
    /// Held for the lock; released when the store is dropped (or the
    /// process dies, however it dies).
    _lock: File,
}

/// Takes the run directory's lock, or says who holds it.
fn lock_run_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            return Err(StoreError::Locked {
                dir: dir.to_path_buf(),
                holder: holder.trim().to_string(),
            });
        }
        Err(std::fs::TryLockError::Error(source)) => return Err(StoreError::Io { path, source }),
    }
    // Say who holds it, for the error of the next one.
    let mut f = &file;
    let _ = f.set_len(0);
    let _ = writeln!(
        f,
        "pid {} since {} (seconds since 1970)",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    );
    Ok(file)
}

impl RunStore {
    /// The trial log's file name.
    pub const LOG: &'static str = "trials.jsonl";
    /// The resolved experiment's file name.
    pub const EXPERIMENT: &'static str = "experiment.toml";
    /// The running session's heartbeat: its start and the run's wall-clock
    /// seconds, rewritten every few seconds, so that a session killed
    /// without a stop record still counts the time it ran.
    pub const HEARTBEAT: &'static str = ".heartbeat";

    /// Records that the session that started at `started_at` is alive and
    /// the run has taken `elapsed_s` seconds. Best effort: a failed write
    /// loses at most the time since the last one.
    pub fn heartbeat(&self, started_at: f64, elapsed_s: f64) {
        let beat = Heartbeat {
            started_at,
            elapsed_s,
        };
        let path = self.dir.join(Self::HEARTBEAT);
        let text = serde_json::to_string(&beat).unwrap_or_default();
        if let Err(e) = fs::write(&path, text) {
            log::debug!("writing {}: {e}", path.display());
        }
    }

    /// Opens (creating if needed) the run directory `dir` for an experiment
    /// whose resolved form is `resolved` (TOML text). An existing directory
    /// must hold the same experiment, but for `stop`: raising
    /// `stop.trials` or `stop.wall_time_s` continues a finished run.
    pub fn open(dir: &Path, resolved: &str) -> Result<(Self, History), StoreError> {
        let io = |p: &Path, e| StoreError::Io {
            path: p.to_path_buf(),
            source: e,
        };
        fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let lock = lock_run_dir(dir)?;
        let exp_path = dir.join(Self::EXPERIMENT);
        match fs::read_to_string(&exp_path) {
            Ok(existing) if existing != resolved => {
                let changed = match (
                    toml::from_str::<toml::Table>(&existing),
                    toml::from_str::<toml::Table>(resolved),
                ) {
                    (Ok(a), Ok(b)) => Some(changed_keys(&a, &b)),
                    _ => None,
                };
                match changed {
                    Some(keys) if keys.is_empty() => {
                        // Only the stopping rule differs: the run grows.
                        write_atomically(&exp_path, resolved.as_bytes())
                            .map_err(|e| io(&exp_path, e))?;
                    }
                    other => {
                        return Err(StoreError::Mismatch {
                            dir: dir.to_path_buf(),
                            changed: other.unwrap_or_default(),
                        })
                    }
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A log without its experiment cannot be checked against
                // the one given: refuse rather than mix two experiments.
                let log_path = dir.join(Self::LOG);
                if fs::metadata(&log_path).is_ok_and(|m| m.len() > 0) {
                    return Err(StoreError::BadExperiment {
                        path: exp_path.clone(),
                        reason: format!(
                            "missing, but {} holds trials: restore it, or delete the run directory to start over",
                            log_path.display()
                        ),
                    });
                }
                write_atomically(&exp_path, resolved.as_bytes()).map_err(|e| io(&exp_path, e))?;
            }
            Err(e) => return Err(io(&exp_path, e)),
        }
        let log_path = dir.join(Self::LOG);
        let mut history = read_history(&log_path)?;
        // A session that died without a stop record ran until its last
        // heartbeat, past its last log record.
        if let Some(started_at) = history.crashed_session_started_at {
            let beat = fs::read_to_string(dir.join(Self::HEARTBEAT))
                .ok()
                .and_then(|t| serde_json::from_str::<Heartbeat>(&t).ok());
            if let Some(b) = beat.filter(|b| b.started_at == started_at && b.elapsed_s.is_finite())
            {
                history.elapsed_s = history.elapsed_s.max(b.elapsed_s);
            }
        }
        if let Some(at) = history.cut_off_at {
            let f = OpenOptions::new()
                .write(true)
                .open(&log_path)
                .map_err(|e| io(&log_path, e))?;
            f.set_len(at).map_err(|e| io(&log_path, e))?;
            f.sync_all().map_err(|e| io(&log_path, e))?;
            log::warn!(
                "{}: removed its last line, cut off by a crash",
                log_path.display()
            );
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io(&log_path, e))?;
        // End a line cut short by a crash so the next record starts cleanly.
        if !history.ends_with_newline && history.cut_off_at.is_none() {
            log.write_all(b"\n").map_err(|e| io(&log_path, e))?;
        }
        Ok((
            RunStore {
                dir: dir.to_path_buf(),
                log_path,
                log,
                _lock: lock,
            },
            history,
        ))
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a record and syncs it to disk before returning.
    pub fn append(&mut self, record: &LogRecord) -> Result<(), StoreError> {
        let mut line = serde_json::to_string(record).map_err(|e| StoreError::Io {
            path: self.log_path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push('\n');
        self.log
            .write_all(line.as_bytes())
            .and_then(|_| self.log.sync_data())
            .map_err(|e| StoreError::Io {
                path: self.log_path.clone(),
                source: e,
            })
    }
}

/// The dotted keys whose values differ between two resolved experiments,
/// `stop` excluded (a run may grow). Integers and floats of equal value are
/// equal.
pub fn changed_keys(a: &toml::Table, b: &toml::Table) -> Vec<String> {
    fn walk(a: Option<&toml::Value>, b: Option<&toml::Value>, prefix: &str, out: &mut Vec<String>) {
        match (a, b) {
            (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(x.get(k), y.get(k), &p, out);
                }
            }
            (Some(x), Some(y)) if x == y => {}
            (Some(toml::Value::Float(x)), Some(toml::Value::Integer(y)))
            | (Some(toml::Value::Integer(y)), Some(toml::Value::Float(x)))
                if *x == *y as f64 => {}
            (None, None) => {}
            _ => out.push(prefix.to_string()),
        }
    }
    let strip = |t: &toml::Table| {
        let mut t = t.clone();
        t.remove("stop");
        toml::Value::Table(t)
    };
    let mut out = Vec::new();
    walk(Some(&strip(a)), Some(&strip(b)), "", &mut out);
    out
}

/// Reads a trial log (missing: empty history).
pub fn read_history(path: &Path) -> Result<History, StoreError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(History {
                ends_with_newline: true,
                ..History::default()
            })
        }
        Err(e) => {
            return Err(StoreError::Io {
                path: path.to_path_buf(),
                source: e,
            })
        }
    };
    let mut h = History {
        ends_with_newline: text.is_empty() || text.ends_with('\n'),
        ..History::default()
    };
    // Trials without a result, with the session count when they were asked.
    let mut asked: Vec<(Trial, usize)> = Vec::new();
    // Every trial asked so far: a trial asked twice is a damaged log.
    let mut ever_asked = std::collections::HashSet::new();
    // Whether the current session has written its stop record.
    let mut stopped = true;
    let crashed = |asked: &[(Trial, usize)], h: &mut History| {
        for (t, _) in asked {
            *h.crashes.entry(t.id).or_default() += 1;
        }
    };
    let lines: Vec<&str> = text.split('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: LogRecord = match serde_json::from_str(line) {
            Ok(r) => r,
            Err(e) => {
                // Only the last (unterminated) line may be cut off by a crash;
                // a broken line followed by more lines was ended on resume.
                let last_nonempty = lines[i + 1..].iter().all(|l| l.trim().is_empty());
                let cut_off = last_nonempty || e.is_eof();
                if last_nonempty {
                    let start: usize = lines[..i].iter().map(|l| l.len() + 1).sum();
                    h.cut_off_at = Some(start as u64);
                }
                if cut_off {
                    log::warn!(
                        "{}:{}: ignoring a trial log line cut off by a crash",
                        path.display(),
                        i + 1
                    );
                    continue;
                }
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    line: i + 1,
                    reason: e.to_string(),
                });
            }
        };
        match record {
            LogRecord::Session {
                started_at,
                elapsed_s,
                ..
            } => {
                if !stopped {
                    crashed(&asked, &mut h);
                }
                stopped = false;
                h.sessions += 1;
                h.elapsed_s = h.elapsed_s.max(elapsed_s);
                h.crashed_session_started_at = Some(started_at);
            }
            LogRecord::Default { trial } => {
                if !ever_asked.insert(trial.id) {
                    return Err(StoreError::Corrupt {
                        path: path.to_path_buf(),
                        line: i + 1,
                        reason: "a second record of the default trial".into(),
                    });
                }
                asked.push((trial.clone(), h.sessions));
                h.default_trial = Some(trial);
            }
            LogRecord::Ask {
                n,
                trials,
                elapsed_s,
            } => {
                h.elapsed_s = h.elapsed_s.max(elapsed_s);
                if let Some(t) = trials.iter().find(|t| !ever_asked.insert(t.id)) {
                    return Err(StoreError::Corrupt {
                        path: path.to_path_buf(),
                        line: i + 1,
                        reason: format!("trial {} asked a second time", t.id),
                    });
                }
                asked.extend(trials.iter().map(|t| (t.clone(), h.sessions)));
                h.events.push(Event::Ask { n, trials });
            }
            LogRecord::Result {
                report, elapsed_s, ..
            } => {
                h.elapsed_s = h.elapsed_s.max(elapsed_s);
                let Some(pos) = asked.iter().position(|(t, _)| t.id == report.id) else {
                    let twice = h.results.iter().any(|(t, _)| t.id == report.id);
                    return Err(StoreError::Corrupt {
                        path: path.to_path_buf(),
                        line: i + 1,
                        reason: if twice {
                            format!("a second result for trial {}", report.id)
                        } else {
                            format!("a result for trial {} that was never asked", report.id)
                        },
                    });
                };
                let (trial, _) = asked.remove(pos);
                if trial.id != DEFAULT_TRIAL_ID {
                    h.events.push(Event::Tell {
                        id: report.id,
                        outcome: report.outcome.clone(),
                    });
                }
                h.results.push((trial, report));
                h.result_elapsed_s.push(elapsed_s);
            }
            LogRecord::WarmStart { reason } => h.warm_starts.push(reason),
            LogRecord::Stop { elapsed_s, .. } => {
                stopped = true;
                h.elapsed_s = h.elapsed_s.max(elapsed_s);
            }
        }
    }
    if !stopped {
        crashed(&asked, &mut h);
    } else {
        h.crashed_session_started_at = None;
    }
    h.crashes
        .retain(|id, _| asked.iter().any(|(t, _)| t.id == *id));
    // A trial asked in session k and still in flight after session s was
    // started s - k + 1 times (sessions count from 1).
    h.in_flight = asked
        .into_iter()
        .map(|(t, asked_in)| {
            let started = (h.sessions + 1).saturating_sub(asked_in.max(1)) as u32;
            (t, started)
        })
        .collect();
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsnn_search::{Configuration, Outcome};

    fn trial(id: u64) -> Trial {
        let mut config = Configuration::new();
        config.insert("x", id as f64 / 10.0);
        Trial {
            id,
            config,
            budget: 1.0,
        }
    }

    fn result(id: u64, outcome: Outcome) -> LogRecord {
        LogRecord::Result {
            budget: 1.0,
            report: TrialReport {
                id,
                outcome,
                metrics: Default::default(),
                duration_s: 0.1,
                worker: "thread 0".into(),
                setup_failure: false,
            },
            elapsed_s: id.min(5) as f64,
        }
    }

    #[test]
    fn a_log_without_its_experiment_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let exp = "name = \"x\"\n[stop]\ntrials = 3\n";
        let (mut store, _) = RunStore::open(dir.path(), exp).unwrap();
        store
            .append(&LogRecord::Session {
                started_at: 0.0,
                version: "test".into(),
                elapsed_s: 0.0,
            })
            .unwrap();
        drop(store);
        std::fs::remove_file(dir.path().join(RunStore::EXPERIMENT)).unwrap();
        let other = "name = \"x\"\n[stop]\ntrials = 9\nseed = 3\n";
        match RunStore::open(dir.path(), other) {
            Err(e @ StoreError::BadExperiment { .. }) => {
                assert!(e.to_string().contains("holds trials"), "{e}")
            }
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("a log without its experiment was reused"),
        }
    }

    #[test]
    fn a_session_that_died_counts_until_its_last_heartbeat() {
        let dir = tempfile::tempdir().unwrap();
        let exp = "name = \"x\"\n";
        let (mut store, h) = RunStore::open(dir.path(), exp).unwrap();
        assert_eq!(h.elapsed_s, 0.0);
        // Session 1: 7 s of earlier sessions, its last record at 9 s, its
        // last heartbeat at 30 s, then SIGKILL (no stop record).
        let started_at = 1_700_000_000.25;
        for r in [
            LogRecord::Session {
                started_at,
                version: "0".into(),
                elapsed_s: 7.0,
            },
            LogRecord::Ask {
                n: 1,
                trials: vec![trial(0)],
                elapsed_s: 9.0,
            },
        ] {
            store.append(&r).unwrap();
        }
        store.heartbeat(started_at, 30.0);
        drop(store);
        let (store, h) = RunStore::open(dir.path(), exp).unwrap();
        assert_eq!(h.elapsed_s, 30.0, "the heartbeat counts");
        // A heartbeat of another session, or a session that stopped
        // cleanly, does not count.
        store.heartbeat(started_at + 1.0, 99.0);
        drop(store);
        assert_eq!(RunStore::open(dir.path(), exp).unwrap().1.elapsed_s, 9.0);
        let (mut store, _) = RunStore::open(dir.path(), exp).unwrap();
        store.heartbeat(started_at, 99.0);
        store
            .append(&LogRecord::Stop {
                reason: "done".into(),
                elapsed_s: 12.0,
            })
            .unwrap();
        drop(store);
        assert_eq!(RunStore::open(dir.path(), exp).unwrap().1.elapsed_s, 12.0);
        // Without a heartbeat (older runs), the last record counts.
        let older = tempfile::tempdir().unwrap();
        std::fs::copy(
            dir.path().join(RunStore::EXPERIMENT),
            older.path().join(RunStore::EXPERIMENT),
        )
        .unwrap();
        let log = std::fs::read_to_string(dir.path().join(RunStore::LOG)).unwrap();
        let cut: String = log.lines().take(2).map(|l| format!("{l}\n")).collect();
        std::fs::write(older.path().join(RunStore::LOG), cut).unwrap();
        assert_eq!(RunStore::open(older.path(), exp).unwrap().1.elapsed_s, 9.0);
    }

    #[test]
    fn a_trial_asked_twice_is_a_damaged_log() {
        // Found by tests/fuzz_trial_log.rs: a duplicated default record
        // made the resume run the default again and count it twice.
        let default = Trial {
            id: DEFAULT_TRIAL_ID,
            ..trial(9)
        };
        let ask = |ids: &[u64]| LogRecord::Ask {
            n: ids.len(),
            trials: ids.iter().map(|&i| trial(i)).collect(),
            elapsed_s: 0.0,
        };
        for (records, why) in [
            (
                vec![
                    LogRecord::Default {
                        trial: default.clone(),
                    },
                    LogRecord::Default { trial: default },
                ],
                "a second record of the default trial",
            ),
            (vec![ask(&[0, 1]), ask(&[1])], "trial 1 asked a second time"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let (mut store, _) = RunStore::open(dir.path(), "exp").unwrap();
            for r in &records {
                store.append(r).unwrap();
            }
            drop(store);
            match RunStore::open(dir.path(), "exp") {
                Err(StoreError::Corrupt {
                    line: 2, reason, ..
                }) => assert_eq!(reason, why),
                Err(e) => panic!("wrong error {e}"),
                Ok(_) => panic!("{why}: accepted"),
            }
        }
    }

    #[test]
    fn a_run_directory_in_use_is_refused_until_it_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let exp = "name = \"x\"\n[stop]\ntrials = 3\n";
        let (first, _) = RunStore::open(dir.path(), exp).unwrap();
        match RunStore::open(dir.path(), exp) {
            Err(e @ StoreError::Locked { .. }) => {
                let StoreError::Locked { holder, .. } = &e else {
                    unreachable!()
                };
                assert!(
                    holder.starts_with(&format!("pid {} since ", std::process::id())),
                    "{holder}"
                );
                assert!(e.to_string().contains("in use by another run"), "{e}");
            }
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("opened twice"),
        }
        drop(first);
        RunStore::open(dir.path(), exp).unwrap();
    }

    #[test]
    fn history_rebuilds_events_results_and_in_flight_trials() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, h) = RunStore::open(dir.path(), "exp").unwrap();
        assert!(h.results.is_empty() && h.events.is_empty());
        let default = Trial {
            id: DEFAULT_TRIAL_ID,
            ..trial(9)
        };
        for r in [
            LogRecord::Session {
                started_at: 0.0,
                version: "0".into(),
                elapsed_s: 0.0,
            },
            LogRecord::Default {
                trial: default.clone(),
            },
            LogRecord::Ask {
                n: 3,
                trials: vec![trial(0), trial(1), trial(2)],
                elapsed_s: 0.5,
            },
            result(1, Outcome::Success(vec![1.0, 2.0])),
            result(DEFAULT_TRIAL_ID, Outcome::Success(vec![3.0, 3.0])),
            result(0, Outcome::Failure("diverged".into())),
        ] {
            store.append(&r).unwrap();
        }
        drop(store);
        let (_, h) = RunStore::open(dir.path(), "exp").unwrap();
        assert_eq!(h.sessions, 1);
        assert_eq!(h.finished_trials(), 2);
        assert_eq!(h.asked_trials(), 3);
        // Asked in session 1, in flight after it: started once.
        assert_eq!(h.in_flight, vec![(trial(2), 1)]);
        assert_eq!(h.default_trial, Some(default));
        // The default trial is not an optimizer event.
        assert_eq!(h.events.len(), 3);
        assert!(matches!(h.events[1], Event::Tell { id: 1, .. }));
        assert!(matches!(h.events[2], Event::Tell { id: 0, .. }));
        assert_eq!(h.elapsed_s, 5.0);
    }

    #[test]
    fn a_cut_off_last_line_is_ignored_but_a_broken_middle_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = RunStore::open(dir.path(), "exp").unwrap();
        store
            .append(&LogRecord::Ask {
                n: 2,
                trials: vec![trial(0), trial(1)],
                elapsed_s: 0.0,
            })
            .unwrap();
        store
            .append(&result(0, Outcome::Success(vec![1.0])))
            .unwrap();
        drop(store);
        let log = dir.path().join(RunStore::LOG);
        let full = fs::read_to_string(&log).unwrap();
        // A crash in the middle of writing the second result.
        let cut = serde_json::to_string(&result(1, Outcome::Success(vec![2.0]))).unwrap();
        fs::write(&log, format!("{full}{}", &cut[..cut.len() / 2])).unwrap();
        let (mut store, h) = RunStore::open(dir.path(), "exp").unwrap();
        assert_eq!(h.results.len(), 1);
        assert!(!h.ends_with_newline);
        // No session record in this log: the trial was never started.
        assert_eq!(h.in_flight, vec![(trial(1), 0)]);
        // Resuming removes the cut line, so new records start cleanly.
        assert_eq!(fs::read_to_string(&log).unwrap(), full);
        store
            .append(&result(1, Outcome::Success(vec![2.0])))
            .unwrap();
        drop(store);
        let h = read_history(&log).unwrap();
        assert_eq!(h.results.len(), 2);
        assert!(h.in_flight.is_empty());

        let lines: Vec<String> = fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        fs::write(&log, format!("{}\n{{oops\n{}\n", lines[0], lines[1])).unwrap();
        match read_history(&log) {
            Err(StoreError::Corrupt { line: 2, .. }) => {}
            other => panic!("expected a corrupt-line error, got {other:?}"),
        }
    }

    #[test]
    fn another_experiment_is_refused_naming_the_changed_keys_but_a_run_may_grow() {
        let dir = tempfile::tempdir().unwrap();
        let a = "name = \"x\"\n[optimizer]\nkind = \"random\"\n[stop]\ntrials = 3\n";
        RunStore::open(dir.path(), a).unwrap();
        let b = "name = \"x\"\n[optimizer]\nkind = \"parego\"\n[stop]\ntrials = 3\n";
        match RunStore::open(dir.path(), b) {
            Err(e @ StoreError::Mismatch { .. }) => {
                let StoreError::Mismatch { changed, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(changed, &["optimizer.kind"]);
                assert!(e.to_string().contains("different experiment"), "{e}");
            }
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("a different experiment was accepted"),
        }
        let grown =
            "name = \"x\"\n[optimizer]\nkind = \"random\"\n[stop]\ntrials = 9\nwall_time_s = 60\n";
        RunStore::open(dir.path(), grown).unwrap();
        let stored = fs::read_to_string(dir.path().join(RunStore::EXPERIMENT)).unwrap();
        assert_eq!(stored, grown);
    }
}

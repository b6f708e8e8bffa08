//! The trial protocol: how a trial travels to a child process or a cluster
//! job and back.
//!
//! The executor writes a [`TrialInput`] (the resolved experiment file and
//! the task) as JSON; `<binary> trial --input IN --output OUT` evaluates it
//! and writes the [`super::TrialReport`] with [`write_atomically`], so a
//! result file that exists is complete.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use dsnn_search::TrialId;
use serde::{Deserialize, Serialize};

use super::TrialTask;

/// The identifier of the trial of the default configuration, which every run
/// evaluates first at the full budget (outside the optimizer's numbering).
pub const DEFAULT_TRIAL_ID: TrialId = u64::MAX;

/// The exit status of `<binary> trial` when it could not do its work for a
/// reason that is not the trial's (its input unreadable, its report
/// unwritable, the experiment file gone): executors stop the run instead of
/// charging the trial, which runs again when the run resumes (`EX_TEMPFAIL`).
pub const EXIT_INFRASTRUCTURE: i32 = 75;

/// The input of `<binary> trial`: which experiment, which trial.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialInput {
    /// The resolved experiment file of the run.
    pub experiment_file: PathBuf,
    /// The run directory that receives the files a trial keeps (the
    /// emissions log, saved weights); none: the trial writes nothing but
    /// its report (never beside the experiment file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_dir: Option<PathBuf>,
    /// The trial.
    pub task: TrialTask,
}

/// `default` for the default configuration's trial, else the number.
pub fn trial_label(id: TrialId) -> String {
    if id == DEFAULT_TRIAL_ID {
        "default".into()
    } else {
        id.to_string()
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory, flushed and synced, then renamed over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

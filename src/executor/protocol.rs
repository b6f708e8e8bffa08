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

/// The input of `<binary> trial`: which experiment, which trial.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialInput {
    /// The resolved experiment file of the run.
    pub experiment_file: PathBuf,
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

//! Helpers shared by the root package's integration tests: output text, the
//! trial log of a run, and the plugin libraries cargo builds for the tests.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::Output;

/// stdout and stderr of a finished command, for assertion messages.
pub fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every parseable record of a run directory's `trials.jsonl`.
pub fn log_records(run_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("trials.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The `result` records of a run directory's trial log.
pub fn results(run_dir: &Path) -> Vec<serde_json::Value> {
    log_records(run_dir)
        .into_iter()
        .filter(|r| r["event"] == "result")
        .collect()
}

/// The platform's file name of dynamic library `lib`.
pub fn library_file_name(lib: &str) -> String {
    format!(
        "{}{lib}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// A plugin library cargo built for a dev-dependency of this package.
pub fn built_library(lib: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    for dir in [deps, deps.parent().unwrap()] {
        let p = dir.join(library_file_name(lib));
        if p.is_file() {
            return p;
        }
    }
    panic!("{} not built in {}", library_file_name(lib), deps.display());
}

/// Puts plugin library `lib` into `dir` (a hard link when possible).
pub fn install_library(dir: &Path, lib: &str) {
    let to = dir.join(library_file_name(lib));
    if std::fs::hard_link(built_library(lib), &to).is_err() {
        std::fs::copy(built_library(lib), &to).unwrap();
    }
}

/// The proptest configuration of the fuzz targets: `DSNN_FUZZ_CASES` cases
/// per property (`default_cases` when unset), no failure files.
pub fn fuzz_config(default_cases: u32) -> proptest::test_runner::Config {
    let cases = std::env::var("DSNN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

/// A fresh directory for one fuzz case, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// `<tmp>/<prefix>-<pid>-<n>`, empty.
    pub fn new(prefix: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

//! Fuzzing the trial log's replay (`trials.jsonl`, what every resume reads)
//! with property tests on real logs: a test-problem run writes its log,
//! which is then cut at any byte (as SIGKILL leaves it) or edited (lines
//! dropped, duplicated, swapped, digits changed, junk inserted), and the run
//! is resumed with a larger `stop.trials`. A log cut anywhere must resume
//! and finish the run with every trial counted once; an edited log must
//! resume the same way or be refused with an error, never panic, and a
//! resumed run must leave a log that reads back.
//!
//! `DSNN_FUZZ_CASES` sets the cases per property (default 256, a few
//! seconds); see docs/reliability.md for the long run.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use dsnn::experiment::CheckedExperiment;
use dsnn::runner::{run_experiment, RunOptions, StopReason};
use dsnn::store::{read_history, RunStore};
use proptest::prelude::*;

mod common;
use common::{fuzz_config, Scratch};

/// A fast test-problem experiment; `optimizer` 0: random search, 1:
/// NSGA-II, 2: Hyperband with random proposals (several budgets).
fn experiment(dir: &Path, optimizer: usize, workers: usize, trials: usize) -> String {
    let (opt, fidelity) = match optimizer {
        0 => ("kind = \"random\"", ""),
        1 => ("kind = \"nsga2\"\npopulation = 4", ""),
        _ => (
            "kind = \"random\"",
            "[fidelity]\nkind = \"hyperband\"\nmin = 1\nmax = 4\neta = 2\n",
        ),
    };
    format!(
        "name = \"log\"\nseed = 5\noutput_dir = {:?}\n[problem]\nname = \"zdt1\"\ndimensions = 3\n\
         [optimizer]\n{opt}\n{fidelity}[executor]\nkind = \"threads\"\nworkers = {workers}\n\
         [stop]\ntrials = {trials}\n",
        dir.join("out").display().to_string()
    )
}

fn run(text: &str, dir: &Path) -> Result<StopReason, String> {
    let registry = dsnn::builtins::registry();
    let exp =
        CheckedExperiment::from_str(text, "log.toml", dir, &registry).map_err(|e| e.to_string())?;
    run_experiment(exp, RunOptions::default())
        .map(|o| o.reason)
        .map_err(|e| e.to_string())
}

/// Runs the experiment, applies `damage` to its log, resumes it with more
/// trials and checks the outcome. Returns whether the resume was accepted.
fn damage_and_resume(
    optimizer: usize,
    workers: usize,
    trials: usize,
    damage: impl FnOnce(&str) -> String,
) -> bool {
    let scratch = Scratch::new("dsnn-fuzz-log");
    let first = experiment(&scratch.0, optimizer, workers, trials);
    run(&first, &scratch.0).expect("the undamaged run");
    let log = scratch.0.join("out/log").join(RunStore::LOG);
    let text = std::fs::read_to_string(&log).unwrap();
    let damaged = damage(&text);
    std::fs::write(&log, &damaged).unwrap();
    let more = trials + 3;
    let second = experiment(&scratch.0, optimizer, workers, more);
    let result = catch_unwind(AssertUnwindSafe(|| run(&second, &scratch.0)));
    let Ok(result) = result else {
        panic!("resuming panicked on the log:\n{damaged}");
    };
    match result {
        Ok(reason) => {
            let h = read_history(&log).unwrap_or_else(|e| {
                let left = std::fs::read_to_string(&log).unwrap_or_default();
                panic!(
                    "a resumed run left a log that does not read: {e}\ndamaged:\n{damaged}\nleft:\n{left}"
                )
            });
            let mut ids: Vec<u64> = h.results.iter().map(|(t, _)| t.id).collect();
            let n = ids.len();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(
                ids.len(),
                n,
                "a trial counted twice after resuming:\n{damaged}"
            );
            if matches!(reason, StopReason::TrialsDone { .. }) {
                assert_eq!(h.finished_trials(), more, "trials lost:\n{damaged}");
            }
            assert!(
                h.in_flight.is_empty(),
                "trials left in flight: {:?}",
                h.in_flight
            );
            true
        }
        Err(e) => {
            assert!(!e.is_empty());
            false
        }
    }
}

#[test]
fn a_log_cut_anywhere_resumes_with_every_trial_counted_once() {
    proptest!(fuzz_config(64), |(optimizer in 0usize..3, workers in 1usize..3, trials in 1usize..9, cut in 0.0f64..1.0)| {
        let accepted = damage_and_resume(optimizer, workers, trials, |t| {
            let mut at = (cut * t.len() as f64) as usize;
            while !t.is_char_boundary(at) {
                at -= 1;
            }
            t[..at].to_string()
        });
        prop_assert!(accepted, "a log cut at {cut} was refused");
    });
}

/// One edit of a log's lines.
#[derive(Debug, Clone)]
enum LineEdit {
    Drop(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Digit(usize, usize, u8),
    Junk(usize, String),
}

fn line_edit() -> impl Strategy<Value = LineEdit> {
    prop_oneof![
        2 => any::<usize>().prop_map(LineEdit::Drop),
        2 => any::<usize>().prop_map(LineEdit::Duplicate),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| LineEdit::Swap(a, b)),
        3 => (any::<usize>(), any::<usize>(), 0u8..10).prop_map(|(l, p, d)| LineEdit::Digit(l, p, d)),
        1 => (any::<usize>(), prop_oneof![
            Just("{}".to_string()),
            Just("{\"event\":\"stop\"}".to_string()),
            Just("{\"event\":\"result\",\"budget\":1}".to_string()),
            "\\PC{0,40}",
        ]).prop_map(|(l, s)| LineEdit::Junk(l, s)),
    ]
}

fn apply(text: &str, edits: &[LineEdit]) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for e in edits {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match e {
            LineEdit::Drop(i) => {
                lines.remove(i % n);
            }
            LineEdit::Duplicate(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n + 1, l);
            }
            LineEdit::Swap(a, b) => lines.swap(a % n, b % n),
            LineEdit::Digit(i, p, d) => {
                let l = &mut lines[i % n];
                let digits: Vec<usize> = l
                    .char_indices()
                    .filter(|(_, c)| c.is_ascii_digit())
                    .map(|(k, _)| k)
                    .collect();
                if !digits.is_empty() {
                    let k = digits[p % digits.len()];
                    l.replace_range(k..k + 1, &d.to_string());
                }
            }
            LineEdit::Junk(i, s) => lines.insert(i % (n + 1), s.clone()),
        }
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn an_edited_log_is_resumed_or_refused_cleanly() {
    let accepted = AtomicUsize::new(0);
    let total = AtomicUsize::new(0);
    proptest!(fuzz_config(64), |(
        optimizer in 0usize..3,
        workers in 1usize..3,
        trials in 1usize..9,
        edits in prop::collection::vec(line_edit(), 1..4),
    )| {
        total.fetch_add(1, Ordering::Relaxed);
        if damage_and_resume(optimizer, workers, trials, |t| apply(t, &edits)) {
            accepted.fetch_add(1, Ordering::Relaxed);
        }
    });
    // Enough edits must leave a resumable log to reach the replay.
    let (a, t) = (accepted.into_inner(), total.into_inner());
    assert!(a * 10 >= t, "only {a} of {t} edited logs were resumed");
}

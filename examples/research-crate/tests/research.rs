//! The research crate end to end through its own binary: `check` and `run`
//! with its backbone and objective (processes executor: the children are
//! this binary too), resume after SIGKILL, `plugins` listing its names, and
//! `train --save` / `export` / `infer` of its backbone on the integer engine.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_dsnn-research")
}

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn research(args: &[&str], cwd: &Path) -> Output {
    Command::new(exe())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run dsnn-research")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The bundled search, smaller: 4 trials, 600 training images, output in `dir`.
fn small_search(dir: &Path, trials: u64) -> PathBuf {
    let text = std::fs::read_to_string(crate_dir().join("search.toml"))
        .unwrap()
        .replace("train_limit = 4000", "train_limit = 600")
        .replace("trials = 10", &format!("trials = {trials}"))
        .replace(
            "seed = 0",
            &format!("seed = 0\noutput_dir = {:?}", dir.join("runs")),
        );
    let f = dir.join("search.toml");
    std::fs::write(&f, text).unwrap();
    f
}

fn results(run_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("trials.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["event"] == "result")
        .collect()
}

#[test]
fn the_bundled_search_checks_and_its_names_are_listed() {
    let out = research(
        &["check", crate_dir().join("search.toml").to_str().unwrap()],
        crate_dir(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = research(&["plugins"], crate_dir());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout.contains("  vgg ") && stdout.contains("(registered)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[model] width = 16 (allowed: 4..=64)"),
        "{stdout}"
    );
    assert!(stdout.contains("loss-latency"), "{stdout}");
    assert!(
        stdout.contains("fashion-mnist-classes") && stdout.contains("two-step"),
        "{stdout}"
    );

    // Its hyperparameters are refused for another backbone, located.
    let dir = tempfile::tempdir().unwrap();
    let f = small_search(dir.path(), 2);
    let other = std::fs::read_to_string(&f).unwrap().replace(
        "backbone = \"vgg\"\nwidth = 8\nblocks = 2",
        "backbone = \"lenet5\"",
    );
    std::fs::write(&f, other).unwrap();
    let out = research(&["check", f.to_str().unwrap()], dir.path());
    assert!(!out.status.success());
    let e = text(&out);
    assert!(
        e.contains("backbone `lenet5` has no hyperparameter `width`") && e.contains("search.toml:"),
        "{e}"
    );
}

#[test]
fn a_search_of_the_own_backbone_and_objective_runs_in_child_processes() {
    let dir = tempfile::tempdir().unwrap();
    let f = small_search(dir.path(), 4);
    let out = research(&["run", f.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let run = dir.path().join("runs/research-vgg");
    let rs = results(&run);
    assert_eq!(rs.len(), 5, "4 trials and the default: {rs:?}");
    for r in &rs {
        let report = &r["report"];
        assert!(
            report["outcome"]["Success"].is_array(),
            "every trial succeeds: {report}"
        );
        let latency = report["metrics"]["latency_ms"].as_f64().unwrap();
        assert!(latency > 0.0 && latency < 1000.0, "{report}");
        assert!(
            report["worker"].as_str().unwrap().starts_with("pid "),
            "run by a child process: {report}"
        );
    }
    let summary = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(summary.contains("latency_ms"), "{summary}");
    // The front's most accurate network, exported from its saved weights,
    // runs on the integer engine.
    let front = std::fs::read_to_string(run.join("pareto.csv")).unwrap();
    let best = front
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .min_by(|a, b| {
            a[2].parse::<f64>()
                .unwrap()
                .total_cmp(&b[2].parse().unwrap())
        })
        .unwrap()[0]
        .to_string();
    let weights = run.join(format!("weights/{best}.safetensors"));
    let model = dir.path().join("best.dsnnint");
    let out = research(
        &[
            "export",
            weights.to_str().unwrap(),
            "--output",
            model.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = research(
        &["infer", model.to_str().unwrap(), "--limit", "200"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("accuracy"), "{}", text(&out));
    // Architecture values reach the network: trials of different widths
    // have different model sizes.
    let sizes: std::collections::BTreeSet<u64> = rs
        .iter()
        .map(|r| r["report"]["metrics"]["model_size"].as_f64().unwrap() as u64)
        .collect();
    assert!(sizes.len() > 1, "{rs:?}");
}

#[test]
fn a_killed_search_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let f = small_search(dir.path(), 6);
    let run = dir.path().join("runs/research-vgg");
    let mut child = Command::new(exe())
        .args(["run", f.to_str().unwrap()])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it (SIGKILL: no clean-up) once two results are logged.
    let start = Instant::now();
    while results(&run).len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(300), "no results");
        assert!(child.try_wait().unwrap().is_none(), "finished too early");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = results(&run).len();
    assert!(before < 7, "killed before the end");
    let out = research(&["run", f.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let after = results(&run);
    assert_eq!(after.len(), 7, "6 trials and the default after resuming");
    let ids: std::collections::BTreeSet<u64> = after
        .iter()
        .map(|r| r["report"]["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 7, "no trial counted twice");
}

#[test]
fn the_own_backbone_trains_exports_and_runs_on_the_integer_engine() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("vgg.safetensors");
    let out = research(
        &[
            "train",
            "--backbone",
            "vgg",
            "--arch",
            "width=8",
            "--arch",
            "blocks=2",
            "--shift-type",
            "ps",
            "--epochs",
            "1",
            "--train-limit",
            "1000",
            "--lr",
            "0.05",
            "--save",
            w.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let m = dir.path().join("vgg.dsnnint");
    let out = research(
        &[
            "export",
            w.to_str().unwrap(),
            "--output",
            m.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("block2.conv"), "{}", text(&out));
    let out = research(
        &[
            "infer",
            m.to_str().unwrap(),
            "--limit",
            "300",
            "--compare",
            w.to_str().unwrap(),
        ],
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", text(&out));
    // The integer engine agrees with the float-simulated network on
    // nearly every image.
    let agreement: f64 = stdout
        .split("top-1 agreement ")
        .nth(1)
        .and_then(|s| s.split('%').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(agreement >= 98.0, "{stdout}");

    // An architecture value out of range is refused, naming it.
    let out = research(
        &["train", "--backbone", "vgg", "--arch", "width=1000"],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("width"), "{}", text(&out));
}

#[test]
fn a_registered_data_set_and_schedule_run_in_child_processes() {
    let dir = tempfile::tempdir().unwrap();
    let f = small_search(dir.path(), 6);
    let text_of = std::fs::read_to_string(&f)
        .unwrap()
        .replace(
            "dataset = \"fashion-mnist\"",
            "dataset = \"fashion-mnist-classes\"\nclasses = 3",
        )
        .replace(
            "kind = \"hyperband\"\nmin = 1\nmax = 3\neta = 3",
            "kind = \"two-step\"\nmin = 1\nmax = 2\nstart = 4\nkeep = 2",
        )
        // One child at a time, so that the bracket's order is fixed.
        .replace("workers = 2", "workers = 1");
    std::fs::write(&f, &text_of).unwrap();
    let out = research(&["check", f.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let out = research(&["run", f.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let rs = results(&dir.path().join("runs/research-vgg"));
    assert_eq!(rs.len(), 7, "6 trials and the default");
    let mut budgets: Vec<f64> = rs
        .iter()
        .filter(|r| r["report"]["id"].as_u64() != Some(u64::MAX))
        .map(|r| r["budget"].as_f64().unwrap_or(-1.0))
        .collect();
    budgets.sort_by(f64::total_cmp);
    // The two-step bracket: 4 at min, the best 2 continued at max.
    assert_eq!(&budgets[..], &[1.0, 1.0, 1.0, 1.0, 2.0, 2.0], "{rs:?}");
    // Three classes: a network that learnt something beats 1 - 1/3.
    let best = rs
        .iter()
        .filter_map(|r| r["report"]["metrics"]["loss"].as_f64())
        .fold(f64::INFINITY, f64::min);
    assert!(best < 0.55, "{rs:?}");

    // Their settings are checked with located errors.
    std::fs::write(&f, text_of.replace("classes = 3", "classes = 11")).unwrap();
    let out = research(&["check", f.to_str().unwrap()], dir.path());
    assert!(!out.status.success());
    assert!(
        text(&out).contains("classes") && text(&out).contains("2..=10"),
        "{}",
        text(&out)
    );
    std::fs::write(&f, text_of.replace("keep = 2", "keep = 4")).unwrap();
    let out = research(&["check", f.to_str().unwrap()], dir.path());
    assert!(!out.status.success());
    assert!(
        text(&out).contains("keep") && text(&out).contains("search.toml:"),
        "{}",
        text(&out)
    );
}

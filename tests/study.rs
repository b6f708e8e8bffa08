//! `dsnn study`: the micro study end to end (every section of the report),
//! the same fronts whatever the executor, resuming a partial study, the
//! report alone, and bad study files.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{output_text, results};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `dsnn study ARGS` run in `cwd` (where `runs/` goes).
fn study(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsnn"))
        .arg("study")
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// A run's front as a set: `trial,objectives...` lines of `pareto.csv`
/// (order aside: it follows completion order).
fn front(run_dir: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(run_dir.join("pareto.csv"))
        .unwrap_or_else(|e| panic!("{}: {e}", run_dir.display()))
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

const BASE: &str = "examples/studies/experiments/digits_micro.toml";

/// A study of the micro study's base experiment, written into `dir`.
fn write_study(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "name = \"{name}\"\nbase = \"{}\"\n{body}",
        repo().join(BASE).display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_micro_study_runs_and_its_report_has_every_section() {
    let tmp = tempfile::tempdir().unwrap();
    let file = repo().join("examples/studies/micro.toml");
    let start = std::time::Instant::now();
    let out = study(tmp.path(), &[file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", output_text(&out));
    eprintln!("micro study: {:.1} s", start.elapsed().as_secs_f64());
    let dir = tmp.path().join("runs/micro");
    for variant in ["parego-hyperband", "random-full"] {
        for seed in [0, 1] {
            let run = dir.join(variant).join(format!("seed-{seed}"));
            // An ordinary run directory: log, summary, plots.
            for f in [
                "trials.jsonl",
                "experiment.toml",
                "summary.md",
                "pareto.svg",
            ] {
                assert!(run.join(f).is_file(), "{}/{f}", run.display());
            }
            // 8 trials and the default.
            assert_eq!(results(&run).len(), 9, "{}", run.display());
        }
    }
    let md = std::fs::read_to_string(dir.join("study.md")).unwrap();
    for section in [
        "## Variants",
        "## The default configuration",
        "## Improvement of the search over the default",
        ">= 20% loss",
        ">= 60% energy at no worse loss",
        "## Hypervolume",
        "![hypervolume over finished trials](hypervolume_trials.svg)",
        "![hypervolume over wall-clock time](hypervolume_time.svg)",
        "![hypervolume over the training budget used (epochs of the finished trials)](hypervolume_budget.svg)",
        "## Empirical attainment surfaces",
        "![attainment surfaces](attainment.svg)",
        "## Settings of the front members",
        "![front members' settings](front_settings.svg)",
        "## Energy and emissions",
        "op-count model",
        "world average",
        "emissions",
    ] {
        assert!(md.contains(section), "study.md lacks {section:?}:\n{md}");
    }
    for plot in [
        "hypervolume_trials.svg",
        "hypervolume_time.svg",
        "hypervolume_budget.svg",
        "attainment.svg",
        "front_settings.svg",
    ] {
        let svg = std::fs::read_to_string(dir.join(plot)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.ends_with("</svg>\n"),
            "{plot}"
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("study.json")).unwrap()).unwrap();
    assert_eq!(json["objectives"], serde_json::json!(["loss", "energy"]));
    let variants = json["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 2);
    for v in variants {
        assert_eq!(v["seeds_run"], serde_json::json!([0, 1]));
        assert_eq!(v["seeds_with_default"], 2);
        assert_eq!(v["energy"]["kind"], "op-count model");
        assert_eq!(v["energy"]["g_per_kwh"], 475.0);
        let hv = &v["hypervolume"];
        assert!(hv["min"].as_f64().unwrap() >= 0.0 && hv["max"].as_f64().unwrap() <= 1.0);
        assert_eq!(v["hypervolume_over_trials"]["runs"], 2);
        assert!(v["attainment"]["best"]
            .as_array()
            .is_some_and(|a| !a.is_empty()));
        assert!(v["default_metrics"]["emissions"]["mean"].as_f64().unwrap() > 0.0);
    }
    // Every front member of the searches, with its DSNN settings.
    let settings = json["front_settings"].as_array().unwrap();
    assert!(!settings.is_empty());
    for s in settings {
        let f = s["shift_depth_fraction"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&f), "{s}");
        assert!(s["weight_bits"].as_f64().is_some() && s["optimizer"] == "SGD");
    }
}

#[test]
fn fronts_are_the_same_whatever_the_executor_the_workers_and_in_a_second_study() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write_study(
        tmp.path(),
        "same",
        r#"seeds = [0, 1]
[stop]
trials = 6
[[variants]]
name = "threads"
[[variants]]
name = "processes"
set = { "executor.kind" = "processes" }
[[variants]]
name = "threads-again"
[[variants]]
name = "window-2-one-worker"
set = { "executor.tell_order" = "trial", "executor.tell_window" = 2 }
[[variants]]
name = "window-2-two-threads"
set = { "executor.tell_order" = "trial", "executor.tell_window" = 2, "executor.workers" = 2 }
[[variants]]
name = "window-2-three-processes"
[variants.set]
"executor.kind" = "processes"
"executor.tell_order" = "trial"
"executor.tell_window" = 2
"executor.workers" = 3
"#,
    );
    let out = study(tmp.path(), &[file.to_str().unwrap(), "--jobs", "2"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let dir = tmp.path().join("runs/same");
    for seed in [0, 1] {
        let run = |v: &str| dir.join(v).join(format!("seed-{seed}"));
        let threads = front(&run("threads"));
        assert!(!threads.is_empty());
        assert_eq!(threads, front(&run("processes")), "seed {seed}");
        assert_eq!(threads, front(&run("threads-again")), "seed {seed}");
        // Results told in trial order within a window of two: the same
        // fronts with one, two or three workers (ParEGO under Hyperband,
        // whose asks depend on the results told so far).
        let window = front(&run("window-2-one-worker"));
        assert!(!window.is_empty());
        assert_eq!(window, front(&run("window-2-two-threads")), "seed {seed}");
        assert_eq!(
            window,
            front(&run("window-2-three-processes")),
            "seed {seed}"
        );
    }
    // Different seeds search differently.
    assert_ne!(
        results(&dir.join("threads/seed-0"))[1]["report"]["outcome"],
        results(&dir.join("threads/seed-1"))[1]["report"]["outcome"]
    );
}

#[test]
fn a_partial_study_resumes_skipping_finished_runs_and_report_alone_runs_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let body = r#"seeds = [0, 1]
[stop]
trials = 5
[[variants]]
name = "parego"
[[variants]]
name = "random"
set = { "optimizer.kind" = "random" }
unset = ["optimizer.n_initial"]
"#;
    let file = write_study(tmp.path(), "partial", body);
    let out = study(tmp.path(), &[file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", output_text(&out));
    let dir = tmp.path().join("runs/partial");
    let full_front = front(&dir.join("parego/seed-1"));
    // A crash in parego/seed-1 after its third result; random/seed-1 never started.
    let log = dir.join("parego/seed-1/trials.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let mut kept = Vec::new();
    let mut seen = 0;
    for line in text.lines() {
        if line.contains("\"event\":\"result\"") {
            seen += 1;
            if seen > 3 {
                break;
            }
        }
        kept.push(line);
    }
    std::fs::write(&log, kept.join("\n") + "\n").unwrap();
    std::fs::remove_dir_all(dir.join("random/seed-1")).unwrap();
    let before = std::fs::read(dir.join("parego/seed-0/trials.jsonl")).unwrap();

    let out = study(tmp.path(), &[file.to_str().unwrap()]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("partial/parego/seed-0: finished before, skipped"),
        "{text}"
    );
    assert!(
        text.contains("partial/random/seed-0: finished before, skipped"),
        "{text}"
    );
    assert!(text.contains("partial/parego/seed-1: resuming"), "{text}");
    assert!(text.contains("partial/random/seed-1: starting"), "{text}");
    assert_eq!(
        std::fs::read(dir.join("parego/seed-0/trials.jsonl")).unwrap(),
        before,
        "a finished run is not touched"
    );
    for run in ["parego/seed-1", "random/seed-1"] {
        assert_eq!(results(&dir.join(run)).len(), 6, "{run}");
    }
    // The resumed run replays its log and ends where the uninterrupted one did.
    assert_eq!(front(&dir.join("parego/seed-1")), full_front);

    // --report rebuilds the report without running anything.
    std::fs::remove_file(dir.join("study.md")).unwrap();
    std::fs::remove_file(dir.join("attainment.svg")).unwrap();
    let logs = |d: &Path| -> Vec<Vec<u8>> {
        [
            "parego/seed-0",
            "parego/seed-1",
            "random/seed-0",
            "random/seed-1",
        ]
        .iter()
        .map(|r| std::fs::read(d.join(r).join("trials.jsonl")).unwrap())
        .collect()
    };
    let logs_before = logs(&dir);
    let out = study(tmp.path(), &[file.to_str().unwrap(), "--report"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(dir.join("study.md").is_file() && dir.join("attainment.svg").is_file());
    assert_eq!(logs(&dir), logs_before);
    assert!(!output_text(&out).contains("starting"));

    // A report of a study with runs missing says so.
    std::fs::remove_dir_all(dir.join("random/seed-1")).unwrap();
    let out = study(tmp.path(), &[file.to_str().unwrap(), "--report"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let md = std::fs::read_to_string(dir.join("study.md")).unwrap();
    assert!(md.contains("1 of 4 runs have no trial log yet"), "{md}");
    assert!(
        md.contains("| random |") && md.contains("| 1 of 2 |"),
        "{md}"
    );
}

#[test]
fn a_study_with_a_budget_stop_is_finished_once_its_budget_is_used() {
    // Equal training budget per variant (epochs of Hyperband's trials)
    // instead of equal wall-clock time: the runs do not depend on the
    // machine's load, and a second `dsnn study` finds them finished.
    let tmp = tempfile::tempdir().unwrap();
    let body = r#"seeds = [0]
[stop]
budget = 7
[[variants]]
name = "parego"
[[variants]]
name = "random-full"
unset = ["fidelity.min", "fidelity.eta", "optimizer.n_initial"]
[variants.set]
optimizer.kind = "random"
fidelity.kind = "fixed"
"#;
    let file = write_study(tmp.path(), "budget", body);
    let out = study(tmp.path(), &[file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", output_text(&out));
    let dir = tmp.path().join("runs/budget");
    for run in ["parego/seed-0", "random-full/seed-0"] {
        let used: f64 = results(&dir.join(run))
            .iter()
            .filter(|r| r["report"]["id"].as_u64() != Some(u64::MAX))
            .map(|r| r["budget"].as_f64().unwrap())
            .sum();
        assert!((7.0..10.0).contains(&used), "{run}: budget used {used}");
    }
    let md = std::fs::read_to_string(dir.join("study.md")).unwrap();
    assert!(
        md.contains("budget 7") && md.contains("budget used per run"),
        "{md}"
    );
    // Hypervolume over the budget ends at the training the runs did: the
    // default's 3 epochs and the budget used, shown as the report's mean.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("study.json")).unwrap()).unwrap();
    for v in json["variants"].as_array().unwrap() {
        let used = v["budget_used"]["mean"].as_f64().unwrap();
        let x = v["hypervolume_over_budget"]["x"].as_array().unwrap();
        assert_eq!(
            x.last().unwrap().as_f64().unwrap(),
            used + 3.0,
            "{}",
            v["name"]
        );
    }
    let out = study(tmp.path(), &[file.to_str().unwrap()]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("budget/parego/seed-0: finished before, skipped"),
        "{text}"
    );
    assert!(
        text.contains("budget/random-full/seed-0: finished before, skipped"),
        "{text}"
    );
}

#[test]
fn bad_study_files_get_located_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "unknown-override",
            "seeds = [0]\n[[variants]]\nname = \"a\"\nset = { \"optimizer.n_initial\" = 3, \"optimizer.rhoo\" = 1 }\n",
            &["unknown-override.toml:6:", "variant `a` sets `optimizer.rhoo`", "rhoo"],
        ),
        (
            "study-set",
            "seeds = [0]\n[set]\n\"optimizer.rhoo\" = 1\n[[variants]]\nname = \"a\"\n",
            &["study-set.toml:5:", "the study (variant `a`) sets `optimizer.rhoo`"],
        ),
        (
            "bad-value",
            "seeds = [0]\n[[variants]]\nname = \"a\"\n[variants.set]\nfidelity.kind = \"hyperbandd\"\n",
            &["bad-value.toml:7:", "`fidelity.kind`", "hyperband"],
        ),
        (
            "bad-stop",
            "seeds = [0]\n[stop]\ntrials = 0\n[[variants]]\nname = \"a\"\n",
            &["bad-stop.toml:5:", "the study's `[stop]`", "trials"],
        ),
        (
            "unknown-key",
            "seeds = [0]\nrepeats = 3\n[[variants]]\nname = \"a\"\n",
            &["unknown-key.toml:4:", "repeats"],
        ),
        (
            "sets-name",
            "seeds = [0]\n[[variants]]\nname = \"a\"\nset = { seed = 4 }\n",
            &["sets-name.toml:6:", "`seed` is set by the study"],
        ),
        (
            "no-seeds",
            "seeds = []\n[[variants]]\nname = \"a\"\n",
            &["no-seeds.toml:3:", "`seeds` is empty"],
        ),
        (
            "twice",
            "seeds = [0]\n[[variants]]\nname = \"a\"\n[[variants]]\nname = \"a\"\n",
            &["twice.toml:7:", "variant `a` is listed twice"],
        ),
        (
            "bad-unset",
            "seeds = [0]\n[[variants]]\nname = \"a\"\nunset = [\"optimizer.nope\"]\n",
            &["bad-unset.toml:6:", "`optimizer.nope` is not in"],
        ),
        (
            "other-objectives",
            "seeds = [0]\n[[variants]]\nname = \"a\"\n[[variants]]\nname = \"b\"\nset = { objectives = [\"loss\", \"emissions\"] }\n",
            &["other-objectives.toml:7:", "the same objectives"],
        ),
    ];
    // (write_study adds two lines, `name` and `base`, above the body.)
    for (name, body, wanted) in cases {
        let file = write_study(tmp.path(), name, body);
        let out = study(tmp.path(), &[file.to_str().unwrap()]);
        let text = output_text(&out);
        assert!(!out.status.success(), "{name}: {text}");
        assert!(!text.contains("panicked"), "{name}: {text}");
        for w in *wanted {
            assert!(text.contains(w), "{name}: {w:?} not in {text}");
        }
        assert!(!tmp.path().join("runs").exists(), "{name}: nothing runs");
    }
    // A missing base file is named at `base`.
    let path = tmp.path().join("nobase.toml");
    std::fs::write(
        &path,
        "name = \"nobase\"\nbase = \"missing.toml\"\nseeds = [0]\n[[variants]]\nname = \"a\"\n",
    )
    .unwrap();
    let out = study(tmp.path(), &[path.to_str().unwrap()]);
    let text = output_text(&out);
    assert!(
        !out.status.success() && text.contains("nobase.toml:2:") && text.contains("missing.toml"),
        "{text}"
    );
}

#[test]
fn every_shipped_study_file_is_valid() {
    // `--report` reads and checks the study and every run's experiment
    // without training. A study whose data set is not next to it (the full
    // Fashion-MNIST, CIFAR-10) may only fail on `data.path`.
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("examples/studies")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let out = study(tmp.path(), &[path.to_str().unwrap(), "--report"]);
        let msg = output_text(&out);
        assert!(
            out.status.success() || msg.contains("`data.path`"),
            "{}: {msg}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 7, "only {checked} study files");
}

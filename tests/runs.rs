//! `dsnn run`, `dsnn check`, `dsnn trial` and `dsnn pareto` end to end:
//! experiment-file errors, both local executors, failing trials, and a run
//! killed with SIGKILL and resumed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{log_records, output_text as text, results};

fn dsnn(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsnn"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run dsnn")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn is_default(r: &serde_json::Value) -> bool {
    r["report"]["id"].as_u64() == Some(u64::MAX)
}

#[test]
fn check_names_key_line_and_allowed_values() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str])] = &[
        (
            "name = \"x\"\nseeed = 3\n[problem]\nname = \"zdt1\"\n[stop]\ntrials = 3\n",
            &[":2:1", "unknown field `seeed`", "`seed`"],
        ),
        (
            "name = \"x\"\n[problem]\nname = \"zdt1\"\n[executor]\nkind = \"gpu-farm\"\n[stop]\ntrials = 3\n",
            &[":5:8", "`executor.kind`", "gpu-farm", "`threads`", "`processes`", "`slurm`"],
        ),
        (
            "name = \"x\"\n[problem]\nname = \"zdt1\"\n[executor]\nworkers = 0\n[stop]\ntrials = 3\n",
            &[":5:11", "executor.workers", "allowed: 1..=1024"],
        ),
        (
            "name = \"x\"\n[problem]\nname = \"zdt1\"\n[stop]\ntrials = \"many\"\n",
            &[":5:10", "`stop.trials`", "invalid type"],
        ),
        (
            "name = \"x\"\n[problem]\nname = \"zdt1\"\n",
            &["stopping rule", "stop.trials"],
        ),
        (
            "name = \"x\"\noutput_dir = \"/etc/passwd\"\n[problem]\nname = \"zdt1\"\n[stop]\ntrials = 3\n",
            &[":2:", "`output_dir`", "/etc/passwd exists and is not a directory"],
        ),
        (
            "name = \"x\"\n[problem]\nname = \"zdt1\"\n[executor]\nkind = \"processes\"\nmemory_limit = \"16M\"\n[stop]\ntrials = 3\n",
            &[":6:", "memory_limit", "at least 64M"],
        ),
        (
            "name = \"x\"\n[problem]\nname = \"zdt1\"\n[executor]\nkind = \"slurm\"\n[executor.slurm]\nmax_jobs_in_flight = 0\n[stop]\ntrials = 3\n",
            &[":7:22", "executor.slurm.max_jobs_in_flight", "at least 1"],
        ),
        (
            "name = \"x\"\n[data]\ndataset = \"digits\"\n[space]\nhyperparameters = [{ name = \"dropout\", type = \"float\", lower = 0.0, upper = 0.5 }]\n[stop]\ntrials = 3\n",
            &[":5:", "dropout", "allowed:", "weight_bits"],
        ),
        (
            "name = \"x\"\n[data]\ndataset = \"digits\"\n[model]\nweight_bits = 12\n[space]\nhyperparameters = [{ name = \"lr\", type = \"float\", lower = 0.01, upper = 0.1 }]\n[stop]\ntrials = 3\n",
            &[":5:15", "weight_bits", "2..=8"],
        ),
        (
            "name = \"x\"\n[data]\ndataset = \"digits\"\n[space]\nhyperparameters = [{ name = \"epochs\", type = \"int\", lower = 1, upper = 5 }]\n[stop]\ntrials = 3\n",
            &["`epochs` cannot be searched", "data_fraction"],
        ),
        (
            "name = \"x\"\n[data]\ndataset = \"mnist\"\n[space]\nhyperparameters = [{ name = \"lr\", type = \"float\", lower = 0.01, upper = 0.1 }]\n[stop]\ntrials = 3\n",
            &["no bundled copy of mnist", "data.path"],
        ),
        (
            "name = \"x\"\nobjectives = [\"loss\", \"joules\"]\n[data]\ndataset = \"digits\"\n[space]\nhyperparameters = [{ name = \"lr\", type = \"float\", lower = 0.01, upper = 0.1 }]\n[stop]\ntrials = 3\n",
            &[":2:", "`objectives.1`", "joules", "`loss`", "`energy`", "`model_size`"],
        ),
        (
            "name = \"x\"\n[data]\ndataset = \"digits\"\n[model]\nlrr = 0.1\n[space]\nhyperparameters = [{ name = \"lr\", type = \"float\", lower = 0.01, upper = 0.1 }]\n[stop]\ntrials = 3\n",
            &[":5:1", "unknown field `lrr`", "`lr`", "`weight_bits`"],
        ),
        (
            "name = \"x\"\n[problem]\nname = \"zdt1\"\n[optimizer]\nkind = \"parego\"\nn_initial = \"4\"\n[stop]\ntrials = 3\n",
            &[":6:13", "`optimizer.n_initial`", "invalid type", "usize"],
        ),
        (
            "name = \"x\"\n[problem]\nname = \"zdt1\"\n[optimizer]\nkind = \"parego\"\nn_initail = 4\n[stop]\ntrials = 3\n",
            &[":6:1", "`optimizer.n_initail`", "unknown field", "`n_initial`", "`rho`"],
        ),
        (
            "name = \"x\"\n[objective]\nkind = \"problem\"\ndimension = 4\n[problem]\nname = \"zdt1\"\n[stop]\ntrials = 3\n",
            &[":4:13", "`objective.dimension`", "takes no settings", "[problem]"],
        ),
        (
            "name = \"x\"\n[problem]\nname = \"wfg10\"\n[stop]\ntrials = 3\n",
            &[":3:8", "`problem.name`", "wfg10", "wfg9", "dtlz7"],
        ),
        (
            "name = \"x\"\n[problem]\nname = \"zdt1\"\n[optimizer]\nkind = \"nsga2\"\npopulation = 1\n[stop]\ntrials = 3\n",
            &[":6:14", "`optimizer.population`", "allowed: 2..=100000"],
        ),
        (
            "name = \"x\"\n[problem]\nname = \"zdt1\"\n[energy]\ngrid = { kind = \"world\", iso3 = \"DEU\" }\n[stop]\ntrials = 3\n",
            &[":5:26", "`energy.grid.iso3`", "unknown field", "allowed: kind"],
        ),
        (
            "name = \"x\"\n[problem]\nname = \"zdt1\"\n[energy]\ngrid = { kind = \"cloud\", provider = \"gcp\", region = \"mars-1\" }\n[stop]\ntrials = 3\n",
            &[":5:53", "`energy.grid.region`", "mars-1", "unknown cloud region"],
        ),
        (
            "name = \"x\"\n[problem]\nname = \"zdt1\"\n[energy]\ngrid = { kind = \"fixed\", g_per_kwh = -5 }\n[stop]\ntrials = 3\n",
            &[":5:38", "`energy.grid.g_per_kwh`", "-5", "non-negative"],
        ),
        (
            "name = \"x\"\n[problem]\nname = \"zdt1\"\n[energy.meter]\nkind = \"estimator\"\nram_w = -3\n[stop]\ntrials = 3\n",
            &[":6:9", "`energy.meter.ram_w`", "-3 W", "allowed: >= 0"],
        ),
        (
            "name = \"x\"\n[problem]\nname = \"dtlz2\"\nobjectives = 1\n[stop]\ntrials = 3\n",
            &[":4:14", "`problem.objectives`", "allowed: 2..=10"],
        ),
        (
            "name = \"x\"\n[problem]\nname = \"zdt1\"\n[executor]\nkind = \"slurm\"\n[executor.slurm]\npartitoin = \"gpu\"\n[stop]\ntrials = 3\n",
            &[":7:1", "executor.slurm.partitoin", "unknown field", "`partition`"],
        ),
    ];
    for (i, (toml, expected)) in cases.iter().enumerate() {
        let f = write(dir.path(), &format!("bad{i}.toml"), toml);
        let out = dsnn(&["check", f.to_str().unwrap()], dir.path());
        let msg = text(&out);
        assert!(!out.status.success(), "case {i} passed:\n{toml}");
        for e in *expected {
            assert!(msg.contains(e), "case {i}: `{e}` not in:\n{msg}");
        }
        assert!(
            msg.contains(&format!("bad{i}.toml")),
            "case {i}: no file name in {msg}"
        );
        // Nothing ran: no run directory.
        assert!(!dir.path().join("runs").exists(), "case {i} created a run");
    }
}

/// The shared data directory (as in dsnn-core's data tests).
fn shared_data() -> PathBuf {
    std::env::var_os("DSNN_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"))
}

#[test]
fn bundled_examples_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("examples/experiments");
    // CIFAR-10 is not bundled: the paper example is checked against a
    // directory of CIFAR-10 batch files made from the shared 20-image sample.
    let tmp = tempfile::tempdir().unwrap();
    let cifar = tmp.path().join("cifar");
    std::fs::create_dir(&cifar).unwrap();
    let sample = shared_data().join("cifar10-sample/test_batch_first20.bin");
    let have_sample = sample.exists();
    if !have_sample {
        eprintln!(
            "SKIPPED: the CIFAR-10 example (shared data file {} not found; set DSNN_SHARED_DATA)",
            sample.display()
        );
    }
    for f in [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ] {
        if have_sample {
            std::fs::copy(&sample, cifar.join(f)).unwrap();
        }
    }
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            let content = std::fs::read_to_string(&p).unwrap();
            let cifar_example = content.contains("dataset = \"cifar10\"");
            if cifar_example && !have_sample {
                continue;
            }
            let file = if cifar_example {
                let patched = content.replace(
                    "path = \"data/cifar-10-batches-bin\"",
                    &format!("path = {:?}", cifar.to_str().unwrap()),
                );
                assert_ne!(patched, content, "{}: data.path not found", p.display());
                let f = tmp.path().join(p.file_name().unwrap());
                std::fs::write(
                    &f,
                    patched.replace(
                        "file = \"spaces/",
                        &format!("file = \"{}/spaces/", dir.display()),
                    ),
                )
                .unwrap();
                f
            } else {
                p.clone()
            };
            // `dsnn check` loads the plugins an example names: the MOEA/D
            // example finds the one cargo built for the tests.
            let moead = common::built_library("dsnn_plugin_moead");
            let out = Command::new(env!("CARGO_BIN_EXE_dsnn"))
                .args(["check", file.to_str().unwrap()])
                .current_dir(root)
                .env("DSNN_PLUGIN_PATH", moead.parent().unwrap())
                .output()
                .unwrap();
            assert!(out.status.success(), "{}: {}", p.display(), text(&out));
            n += 1;
        }
    }
    assert!(n >= 6, "only {n} example experiments");
    if have_sample {
        assert!(n >= 7, "the CIFAR-10 example was not checked");
    }
}

const PROBLEM: &str = r#"
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
kind = "KIND"
workers = 2
[stop]
trials = TRIALS
"#;

fn problem(kind: &str, trials: u32, delay: f64, extra: &str) -> String {
    PROBLEM
        .replace("KIND", kind)
        .replace("TRIALS", &trials.to_string())
        .replace("DELAY", &delay.to_string())
        + extra
}

#[test]
fn threads_and_processes_run_every_trial_and_write_the_run_store() {
    for kind in ["threads", "processes"] {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "exp.toml", &problem(kind, 6, 0.0, ""));
        let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
        assert!(out.status.success(), "{kind}: {}", text(&out));
        let run = dir.path().join("out/zdt");
        let res = results(&run);
        assert_eq!(res.len(), 7, "{kind}: 6 trials + the default");
        assert!(res
            .iter()
            .all(|r| r["report"]["outcome"]["Success"].is_array()));
        let workers: std::collections::BTreeSet<String> = res
            .iter()
            .map(|r| r["report"]["worker"].as_str().unwrap().to_string())
            .collect();
        if kind == "processes" {
            assert!(workers.iter().all(|w| w.starts_with("pid ")), "{workers:?}");
        } else {
            assert!(
                workers.iter().all(|w| w.starts_with("thread ")),
                "{workers:?}"
            );
        }
        // ZDT1 values are reproduced from the configuration.
        for r in &res {
            let f = r["report"]["outcome"]["Success"].as_array().unwrap();
            assert!(f[0].as_f64().unwrap() >= 0.0 && f[0].as_f64().unwrap() <= 1.0);
        }
        for file in RUN_FILES {
            assert!(run.join(file).is_file(), "{kind}: no {file}");
        }
        // The default configuration is submitted before the optimizer's
        // first trial.
        let events: Vec<String> = log_records(&run)
            .iter()
            .map(|r| r["event"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(&events[..3], ["session", "default", "ask"], "{kind}");
        // Not a terminal: one plain line per finished trial, with the
        // run's status after it.
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| l.contains(" trial ")).collect();
        assert_eq!(lines.len(), 7, "{kind}: {err}");
        assert!(err.contains("[6/6] trial "), "{kind}: {err}");
        for l in &lines {
            assert!(
                l.contains(" running, ")
                    && l.contains(" failed, hypervolume ")
                    && l.contains(" elapsed"),
                "{kind}: {l}"
            );
        }
        let csv = std::fs::read_to_string(run.join("pareto.csv")).unwrap();
        assert!(csv.starts_with("trial,budget,f1,f2,x0,x1,x2,x3\n"), "{csv}");
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(summary["trials"], 6);
        assert_eq!(summary["failed"], 0);
        assert!(
            summary["default"].is_array(),
            "the default configuration is evaluated"
        );
        let pareto = dsnn(&["pareto", run.to_str().unwrap(), "--csv"], dir.path());
        assert_eq!(String::from_utf8_lossy(&pareto.stdout), csv);
        // The table is the summary, recomputed from the trial log.
        let table = dsnn(&["pareto", run.to_str().unwrap()], dir.path());
        let md = std::fs::read_to_string(run.join("summary.md")).unwrap();
        assert!(md.contains("| trial | f1 | f2 | configuration |"), "{md}");
        assert_eq!(String::from_utf8_lossy(&table.stdout), md, "{kind}");
        // `dsnn report` writes the reports again, the same as the run did.
        let before: Vec<String> = RUN_FILES[2..]
            .iter()
            .map(|f| std::fs::read_to_string(run.join(f)).unwrap())
            .collect();
        for f in &RUN_FILES[2..] {
            std::fs::remove_file(run.join(f)).unwrap();
        }
        let report = dsnn(&["report", run.to_str().unwrap()], dir.path());
        assert!(report.status.success(), "{}", text(&report));
        let listed = String::from_utf8_lossy(&report.stdout);
        assert_eq!(listed.lines().count(), 6, "{listed}");
        for (f, old) in RUN_FILES[2..].iter().zip(&before) {
            assert_eq!(&std::fs::read_to_string(run.join(f)).unwrap(), old, "{f}");
            assert!(listed.contains(f), "{listed}");
        }
        let svg = &before[4]; // hypervolume_trials.svg
        assert!(svg.contains("hypervolume at budget 1 over trials"), "{svg}");
    }
    let not_a_run = dsnn(&["report", "."], Path::new("/tmp"));
    assert!(!not_a_run.status.success());
    assert!(text(&not_a_run).contains("is not a run directory"));
}

#[test]
fn the_quick_start_beats_the_papers_default_for_seeds_0_to_4() {
    // The README's promise: for each of seeds 0-4 the quick start's front
    // has a point better than the paper's default DSNN in loss and one
    // better in energy. Seed 0 is the file as shipped; the others are
    // copies with another seed, run two at a time.
    let dir = tempfile::tempdir().unwrap();
    let quickstart =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/experiments/quickstart.toml");
    let text_of = std::fs::read_to_string(&quickstart).unwrap();
    assert!(text_of.contains("\nseed = 0\n"), "the shipped seed is 0");
    let mut files = vec![quickstart.clone()];
    for seed in 1..5 {
        let copy = text_of
            .replace("\nseed = 0\n", &format!("\nseed = {seed}\n"))
            .replace(
                "name = \"quickstart\"",
                &format!("name = \"quickstart-{seed}\""),
            );
        files.push(write(dir.path(), &format!("quickstart-{seed}.toml"), &copy));
    }
    let mut outputs = Vec::new();
    for pair in files.chunks(2) {
        let children: Vec<_> = pair
            .iter()
            .map(|f| {
                Command::new(env!("CARGO_BIN_EXE_dsnn"))
                    .args(["run", f.to_str().unwrap()])
                    .current_dir(dir.path())
                    .env("RAYON_NUM_THREADS", "1")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        outputs.extend(children.into_iter().map(|c| c.wait_with_output().unwrap()));
    }
    for (seed, out) in outputs.iter().enumerate() {
        assert!(out.status.success(), "seed {seed}: {}", text(out));
        let name = if seed == 0 {
            "quickstart".to_string()
        } else {
            format!("quickstart-{seed}")
        };
        let run = dir.path().join("runs").join(&name);
        if seed == 0 {
            for file in RUN_FILES.iter().chain(&["emissions.csv"]) {
                assert!(run.join(file).is_file(), "no {file}");
            }
            // It ends with the front and the improvement over the default DSNN.
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.contains("## Pareto front at budget 3"), "{stdout}");
            assert!(stdout.contains("## Best optimizer trial per objective vs the default"));
        }
        assert_eq!(
            results(&run).len(),
            13,
            "seed {seed}: 12 trials and the default"
        );
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap())
                .unwrap();
        let improvement = summary["improvement_over_default"].as_array().unwrap();
        for (k, objective) in ["loss", "energy"].iter().enumerate() {
            let i = improvement[k].as_f64().unwrap_or(f64::NAN);
            assert!(
                i > 0.0,
                "seed {seed}: no trial better than the default in {objective}: {summary}"
            );
        }
    }
}

#[test]
fn a_terminal_gets_a_progress_bar_with_the_runs_status() {
    // `script` (util-linux) runs dsnn on a pseudo-terminal.
    let util_linux = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !util_linux {
        eprintln!("skipped: util-linux's `script` is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "exp.toml", &problem("threads", 6, 0.3, ""));
    let cmd = format!("'{}' run '{}'", env!("CARGO_BIN_EXE_dsnn"), f.display());
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(dir.path())
        .env("TERM", "xterm")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let screen = String::from_utf8_lossy(&out.stdout);
    // The bar: trials done out of the limit and the status; the finished
    // trials are printed above it, without the status (the bar has it).
    assert!(screen.contains("/6 trials, "), "{screen}");
    assert!(
        screen.contains(" running, ") && screen.contains(" failed, hypervolume "),
        "{screen}"
    );
    assert!(screen.contains("[6/6] trial "), "{screen}");
    // Elapsed time, and once trials have finished, the time left.
    assert!(screen.contains(" elapsed"), "{screen}");
    assert!(screen.contains(" left"), "{screen}");
    let trial_lines: Vec<&str> = screen
        .split(['\n', '\r'])
        .filter(|l| l.contains("] trial "))
        .collect();
    assert_eq!(trial_lines.len(), 7, "{screen}");
    // (Plain lines end "(0.3 s); 1 running, ...".)
    assert!(!screen.contains(" s); "), "{screen}");
    assert_eq!(results(&dir.path().join("out/zdt")).len(), 7);
}

#[test]
fn failing_trials_are_recorded_and_the_run_goes_on() {
    // Panics and NaN in threads; aborts and memory exhaustion in child processes.
    let cases = [
        ("threads", "panic", "", "panicked: injected failure"),
        ("threads", "nan", "", "not finite"),
        ("processes", "abort", "", "signal 6"),
        (
            "processes",
            "out_of_memory",
            "memory_limit = \"512M\"\n",
            "out of memory",
        ),
    ];
    for (kind, failure, executor_extra, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let exp = problem(kind, 8, 0.0, "")
            .replace(
                "[optimizer]",
                &format!(
                    "inject_failure = {{ kind = \"{failure}\", fraction = 0.5 }}\n[optimizer]"
                ),
            )
            .replace("workers = 2", &format!("workers = 2\n{executor_extra}"));
        let f = write(dir.path(), "exp.toml", &exp);
        let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
        assert!(out.status.success(), "{failure}: {}", text(&out));
        let res = results(&dir.path().join("out/zdt"));
        assert_eq!(res.len(), 9, "{failure}: every trial is recorded");
        let failed: Vec<&serde_json::Value> = res
            .iter()
            .filter(|r| r["report"]["outcome"]["Failure"].is_string())
            .collect();
        assert!(
            !failed.is_empty() && failed.len() < 9,
            "{failure}: {} failed",
            failed.len()
        );
        for r in &failed {
            let reason = r["report"]["outcome"]["Failure"].as_str().unwrap();
            assert!(reason.contains(expected), "{failure}: {reason}");
        }
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("out/zdt/summary.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            summary["failed"].as_u64().unwrap() as usize,
            failed.iter().filter(|r| !is_default(r)).count()
        );
    }
}

#[test]
fn trials_past_their_time_limit_fail_in_both_executors() {
    for kind in ["threads", "processes"] {
        let dir = tempfile::tempdir().unwrap();
        let exp = problem(kind, 3, 30.0, "")
            .replace("workers = 2", "workers = 2\ntrial_time_limit_s = 0.5");
        let f = write(dir.path(), "exp.toml", &exp);
        let start = Instant::now();
        let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
        assert!(out.status.success(), "{kind}: {}", text(&out));
        assert!(
            start.elapsed() < Duration::from_secs(25),
            "{kind}: limits not enforced"
        );
        let res = results(&dir.path().join("out/zdt"));
        assert_eq!(res.len(), 4);
        for r in &res {
            let reason = r["report"]["outcome"]["Failure"]
                .as_str()
                .unwrap_or_default();
            assert!(reason.contains("time limit of 0.5 s"), "{kind}: {r}");
        }
    }
}

/// Configurations of the successful optimizer trials, sorted.
fn configs(run: &Path) -> Vec<String> {
    let mut asked: Vec<String> = log_records(run)
        .into_iter()
        .filter(|r| r["event"] == "ask")
        .flat_map(|r| r["trials"].as_array().unwrap().clone())
        .map(|t| t["config"].to_string())
        .collect();
    asked.sort();
    asked
}

#[test]
fn a_run_killed_with_sigkill_resumes_without_losing_or_repeating_trials() {
    let dir = tempfile::tempdir().unwrap();
    let trials = 16;
    let f = write(
        dir.path(),
        "exp.toml",
        &problem("threads", trials, 0.15, ""),
    );
    let run = dir.path().join("out/zdt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dsnn"))
        .args(["run", f.to_str().unwrap()])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while results(&run).len() < 6 {
        assert!(start.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before: Vec<serde_json::Value> = results(&run);
    assert!(
        before.len() < trials as usize + 1,
        "the run finished before the kill"
    );

    let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("resuming"), "{}", text(&out));
    let after = results(&run);
    // Every completed trial is still there, unchanged, and none ran twice.
    assert_eq!(&after[..before.len()], &before[..]);
    let mut ids: Vec<u64> = after
        .iter()
        .map(|r| r["report"]["id"].as_u64().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), after.len(), "a trial was recorded twice");
    assert_eq!(after.len(), trials as usize + 1);

    // The same number of trials, with the same configurations, as a run
    // that was never interrupted.
    let dir2 = tempfile::tempdir().unwrap();
    let f2 = write(
        dir2.path(),
        "exp.toml",
        &problem("threads", trials, 0.0, ""),
    );
    let out = dsnn(&["run", f2.to_str().unwrap()], dir2.path());
    assert!(out.status.success(), "{}", text(&out));
    let run2 = dir2.path().join("out/zdt");
    assert_eq!(results(&run2).len(), after.len());
    assert_eq!(configs(&run2), configs(&run));
    // Running a finished experiment again adds nothing.
    let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(results(&run).len(), after.len());
}

#[test]
fn a_changed_experiment_does_not_reuse_the_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "exp.toml", &problem("threads", 2, 0.0, ""));
    assert!(dsnn(&["run", f.to_str().unwrap()], dir.path())
        .status
        .success());
    write(
        dir.path(),
        "exp.toml",
        &problem("threads", 2, 0.0, "").replace("seed = 7", "seed = 8"),
    );
    let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
    assert!(!out.status.success());
    assert!(
        text(&out).contains("holds a different experiment") && text(&out).contains("`seed`"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_log_that_no_longer_replays_resumes_with_a_warm_start() {
    // A log written by another version of the optimizer: the replay's asks
    // differ from the recorded ones. Instead of stranding the run, a fresh
    // optimizer takes over (random search and ParEGO adopt the logged
    // trials; NSGA-II cannot, and starts afresh with ids past them).
    for optimizer in ["random", "nsga2"] {
        let dir = tempfile::tempdir().unwrap();
        let exp = problem("threads", 4, 0.0, "")
            .replace("kind = \"random\"", &format!("kind = \"{optimizer}\""));
        let f = write(dir.path(), "exp.toml", &exp);
        let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
        assert!(out.status.success(), "{optimizer}: {}", text(&out));
        let run = dir.path().join("out/zdt");
        // Another version asked another first trial: its x0 differs.
        let log = std::fs::read_to_string(run.join("trials.jsonl")).unwrap();
        let edited: String = log
            .lines()
            .map(|l| {
                if l.contains("\"event\":\"ask\"") && l.contains("\"id\":0,") {
                    l.replacen("\"x0\":0.", "\"x0\":0.1", 1)
                } else {
                    l.to_string()
                }
            })
            .map(|l| l + "\n")
            .collect();
        assert_ne!(edited, log, "{optimizer}: the edit found no ask of trial 0");
        std::fs::write(run.join("trials.jsonl"), edited).unwrap();
        for more in [7, 9] {
            let grown = exp.replace("trials = 4", &format!("trials = {more}"));
            write(dir.path(), "exp.toml", &grown);
            let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
            assert!(out.status.success(), "{optimizer}: {}", text(&out));
            assert!(
                text(&out).contains("warm start"),
                "{optimizer}: {}",
                text(&out)
            );
            let res = results(&run);
            let mut ids: Vec<u64> = res
                .iter()
                .map(|r| r["report"]["id"].as_u64().unwrap())
                .collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(
                ids.len(),
                more + 1,
                "{optimizer}: every trial once, and the default"
            );
            let summary = std::fs::read_to_string(run.join("summary.md")).unwrap();
            assert!(summary.contains("Resumed with a warm start"), "{summary}");
        }
    }
}

/// The asks of a run's log in order: each trial's id and configuration.
fn asks_in_order(run: &Path) -> Vec<String> {
    log_records(run)
        .into_iter()
        .filter(|r| r["event"] == "ask")
        .flat_map(|r| r["trials"].as_array().unwrap().clone())
        .map(|t| format!("{} {}", t["id"], t["config"]))
        .collect()
}

#[test]
fn tell_order_trial_gives_the_same_trials_whatever_the_timing() {
    // TPE (a model-based proposer) with three workers and trials of random
    // duration: told in completion order, what it asks next depends on
    // which trial finished first; told in trial order, two runs ask the
    // same trials and reach the same results.
    let exp = problem("threads", 14, 0.002, "")
        .replace("kind = \"random\"", "kind = \"tpe\"\nn_initial = 4")
        .replace("workers = 2", "workers = 3\ntell_order = \"trial\"")
        .replace("delay_s = 0.002", "delay_s = 0.002\ndelay_jitter_s = 0.06");
    let mut runs = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "exp.toml", &exp);
        let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
        assert!(out.status.success(), "{}", text(&out));
        let run = dir.path().join("out/zdt");
        let asks = asks_in_order(&run);
        assert_eq!(asks.len(), 14);
        // Results are logged in ask order (the default's whenever it ends).
        let told: Vec<u64> = results(&run)
            .iter()
            .filter(|r| !is_default(r))
            .map(|r| r["report"]["id"].as_u64().unwrap())
            .collect();
        assert_eq!(told, (0..14).collect::<Vec<u64>>());
        // One ask of one trial after each result, at most three untold.
        let events: Vec<String> = log_records(&run)
            .iter()
            .filter(|r| r["event"] == "ask" || (r["event"] == "result" && !is_default(r)))
            .map(|r| r["event"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(&events[..4], ["ask", "ask", "ask", "result"], "{events:?}");
        let mut untold = 0i32;
        for e in &events {
            untold += if e == "ask" { 1 } else { -1 };
            assert!((0..=3).contains(&untold), "{events:?}");
        }
        // Rows sorted: the default's result lands wherever it finished.
        let front = std::fs::read_to_string(run.join("pareto.csv")).unwrap();
        let mut rows: Vec<String> = front.lines().map(str::to_string).collect();
        rows.sort();
        runs.push((asks, rows, dir));
    }
    assert_eq!(runs[0].0, runs[1].0, "the same trials in the same order");
    assert_eq!(runs[0].1, runs[1].1, "the same front");

    // A misspelt order names the key and the allowed values.
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "exp.toml",
        &exp.replace("tell_order = \"trial\"", "tell_order = \"asked\""),
    );
    let out = dsnn(&["check", f.to_str().unwrap()], dir.path());
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(
        msg.contains("exp.toml:16:")
            && msg.contains("tell_order")
            && msg.contains("\"completion\""),
        "{msg}"
    );
}

#[test]
fn raising_stop_trials_continues_a_finished_run() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "exp.toml", &problem("threads", 3, 0.0, ""));
    let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let run = dir.path().join("out/zdt");
    let first = results(&run);
    assert_eq!(first.len(), 4, "3 trials + the default");
    // Only the stopping rule changes: the run grows by 3 trials, keeping
    // the first ones (none re-run).
    write(dir.path(), "exp.toml", &problem("threads", 6, 0.0, ""));
    let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let grown = results(&run);
    assert_eq!(grown.len(), 7, "{}", text(&out));
    assert_eq!(&grown[..4], &first[..]);
    let stored = std::fs::read_to_string(run.join("experiment.toml")).unwrap();
    assert!(stored.contains("trials = 6"), "{stored}");
}

/// The budgets of the optimizer's trials asked, in ask order.
fn budgets_asked(run: &Path) -> Vec<f64> {
    log_records(run)
        .into_iter()
        .filter(|r| r["event"] == "ask")
        .flat_map(|r| r["trials"].as_array().unwrap().clone())
        .map(|t| t["budget"].as_f64().unwrap())
        .collect()
}

#[test]
fn stop_budget_limits_the_budget_asked_and_raising_it_continues_the_run() {
    // Hyperband (budgets 1, 3 and 9) on a test problem, one worker: the run
    // asks until the budgets asked reach `stop.budget`, finishes those
    // trials and stops; the default's budget is not counted.
    let exp = |budget: u32| {
        problem("threads", 1, 0.0, "")
            .replace("trials = 1\n", &format!("budget = {budget}\n"))
            .replace("workers = 2", "workers = 1")
            + "[fidelity]\nkind = \"hyperband\"\nmin = 1\nmax = 9\neta = 3\n"
    };
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "exp.toml", &exp(40));
    let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("budget of"), "{}", text(&out));
    let run = dir.path().join("out/zdt");
    let asked = budgets_asked(&run);
    // Each progress line shows the budget the finished trials used.
    let first_line = format!("[1, budget {}/40] trial ", asked[0]);
    assert!(text(&out).contains(&first_line), "{}", text(&out));
    let total: f64 = asked.iter().sum();
    let last = asked.last().copied().unwrap();
    assert!(
        total >= 40.0 && total - last < 40.0,
        "asked {asked:?}: the last ask must be the one that reached 40"
    );
    assert!(
        asked.contains(&9.0),
        "Hyperband reached its top budget: {asked:?}"
    );
    let first = results(&run);
    assert_eq!(
        first.len(),
        asked.len() + 1,
        "every trial asked finished, and the default"
    );

    // A larger budget continues the finished run, keeping its trials.
    write(dir.path(), "exp.toml", &exp(70));
    let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let grown = budgets_asked(&run);
    assert_eq!(&grown[..asked.len()], &asked[..]);
    let total: f64 = grown.iter().sum();
    assert!(
        total >= 70.0 && total - grown.last().unwrap() < 70.0,
        "{grown:?}"
    );
    assert_eq!(&results(&run)[..first.len()], &first[..]);

    // A budget of zero names the key, its line and the allowed range.
    let f = write(
        dir.path(),
        "bad.toml",
        &exp(40).replace("budget = 40", "budget = 0"),
    );
    let out = dsnn(&["check", f.to_str().unwrap()], dir.path());
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(
        msg.contains("bad.toml:") && msg.contains("budget") && msg.contains("> 0"),
        "{msg}"
    );
}

#[test]
fn dsnn_search_on_digits_records_diverged_trials_and_reports_the_front() {
    let dir = tempfile::tempdir().unwrap();
    let exp = r#"
name = "digits"
output_dir = "out"
objectives = ["loss", "energy", "model_size"]
[data]
dataset = "digits"
validation_fraction = 0.2
[model]
optimizer = "SGD"
batch_size = 32
[space]
hyperparameters = [
  { name = "lr", type = "float", lower = 0.01, upper = 1e9, log = true, default = 0.05 },
  { name = "weight_bits", type = "int", lower = 2, upper = 5, default = 5 },
  { name = "shift_type", type = "categorical", choices = ["Q", "PS"], default = "Q" },
]
[energy]
meter = { kind = "opcount" }
[fidelity]
max = 3
[executor]
kind = "processes"
workers = 2
[stop]
trials = 6
"#;
    let f = write(dir.path(), "exp.toml", exp);
    let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let run = dir.path().join("out/digits");
    let res = results(&run);
    assert_eq!(res.len(), 7);
    let default = res.iter().find(|r| is_default(r)).unwrap();
    let f0 = default["report"]["outcome"]["Success"].as_array().unwrap();
    assert!(
        f0[0].as_f64().unwrap() < 0.3,
        "default DSNN learns digits: {default}"
    );
    assert!(default["report"]["metrics"]["accuracy"].as_f64().unwrap() > 0.7);
    // Huge learning rates diverge: failed with the reason, never fake values.
    let asked: Vec<serde_json::Value> = log_records(&run)
        .into_iter()
        .filter(|x| x["event"] == "ask")
        .flat_map(|x| x["trials"].as_array().unwrap().clone())
        .collect();
    let mut diverged = 0;
    for r in res.iter().filter(|r| !is_default(r)) {
        let lr = asked
            .iter()
            .find(|t| t["id"] == r["report"]["id"])
            .map(|t| t["config"]["lr"].as_f64().unwrap())
            .unwrap();
        if let Some(reason) = r["report"]["outcome"]["Failure"].as_str() {
            assert!(reason.contains("diverged"), "{reason}");
            assert!(lr > 1.0, "lr {lr} diverged");
            diverged += 1;
        }
    }
    assert!(diverged > 0, "no trial diverged: {res:?}");
    let emissions = std::fs::read_to_string(run.join("emissions.csv")).unwrap();
    assert!(emissions.lines().count() >= 2, "{emissions}");
    let md = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(
        md.contains("Pareto front") && md.contains("vs the default"),
        "{md}"
    );
    for file in RUN_FILES.iter().chain(&["emissions.csv"]) {
        assert!(run.join(file).is_file(), "no {file}");
    }
    // The front is non-empty, and no successful trial at its budget
    // dominates a point on it.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let front: Vec<Vec<f64>> = summary["front"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| floats(&p["objectives"]))
        .collect();
    assert!(!front.is_empty(), "{summary}");
    let at_budget: Vec<Vec<f64>> = res
        .iter()
        .filter(|r| r["budget"] == summary["budget"])
        .filter_map(|r| r["report"]["outcome"].get("Success").map(floats))
        .collect();
    assert!(at_budget.len() >= front.len());
    for p in &front {
        assert!(at_budget.contains(p), "{p:?} is not a trial's result");
        assert!(
            !at_budget
                .iter()
                .any(|q| dsnn_search::pareto::dominates(q, p)),
            "{p:?} is dominated"
        );
    }
    let csv = std::fs::read_to_string(run.join("pareto.csv")).unwrap();
    assert_eq!(csv.lines().count(), front.len() + 1, "{csv}");
}

/// The files every finished run directory holds (`emissions.csv` too where
/// trials are metered).
const RUN_FILES: [&str; 8] = [
    "experiment.toml",
    "trials.jsonl",
    "pareto.csv",
    "summary.json",
    "summary.md",
    "pareto.svg",
    "hypervolume_trials.svg",
    "hypervolume_time.svg",
];

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn wall_time_stops_the_run_and_trial_reads_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let exp = problem("threads", 1, 0.2, "").replace("trials = 1", "wall_time_s = 1.0");
    let f = write(dir.path(), "exp.toml", &exp);
    let start = Instant::now();
    let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(
        text(&out).contains("wall time of 1 s reached"),
        "{}",
        text(&out)
    );
    let run = dir.path().join("out/zdt");
    let n = results(&run).len();
    assert!(
        (3..=12).contains(&n),
        "{n} results in 1 s of 0.2 s trials on 2 workers"
    );

    // `dsnn trial` without files: JSON in on stdin, the report out on stdout.
    let input = serde_json::json!({
        "experiment_file": run.join("experiment.toml"),
        "task": { "trial": { "id": 5, "budget": 1.0, "config": { "x0": 0.0, "x1": 0.0, "x2": 0.0, "x3": 0.0 } }, "attempt": 0 }
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_dsnn"))
        .arg("trial")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["id"], 5);
    // ZDT1 at x = 0: f1 = 0, g = 1, f2 = 1.
    assert_eq!(report["outcome"]["Success"], serde_json::json!([0.0, 1.0]));

    // A budget the schedule cannot give is a broken input, not a trial.
    for budget in [1e300, -1.0, 0.0] {
        let mut bad = input.clone();
        bad["task"]["trial"]["budget"] = serde_json::json!(budget);
        let f = dir.path().join("bad-trial.json");
        std::fs::write(&f, bad.to_string()).unwrap();
        let out = dsnn(&["trial", "--input", f.to_str().unwrap()], dir.path());
        assert!(!out.status.success(), "budget {budget}");
        assert!(
            text(&out).contains("out of range") && text(&out).contains("fidelity.max"),
            "{}",
            text(&out)
        );
    }
}

/// `dsnn trial` with its input in a file: the report, or an exit status
/// of 75 when the failure is not the trial's.
fn trial_from_file(dir: &Path, input: &serde_json::Value, output: Option<&Path>) -> Output {
    let f = dir.join("trial-input.json");
    std::fs::write(&f, input.to_string()).unwrap();
    let mut args = vec!["trial", "--input", f.to_str().unwrap()];
    if let Some(o) = output {
        args.extend(["--output", o.to_str().unwrap()]);
    }
    dsnn(&args, dir)
}

#[test]
fn dsnn_trial_refuses_incomplete_configurations_and_separates_its_own_failures() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "exp.toml", &problem("threads", 1, 0.0, ""));
    let input = serde_json::json!({
        "experiment_file": f,
        "task": { "trial": { "id": 3, "budget": 1.0, "config": { "x0": 0.5, "x1": 0.0, "x2": 0.0, "x3": 0.0 } }, "attempt": 0 }
    });
    let out = trial_from_file(dir.path(), &input, None);
    assert!(out.status.success(), "{}", text(&out));

    // A hyperparameter missing: a failed trial naming it, not defaults
    // filled in silently.
    let mut missing = input.clone();
    missing["task"]["trial"]["config"]
        .as_object_mut()
        .unwrap()
        .remove("x3");
    let out = trial_from_file(dir.path(), &missing, None);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reason = report["outcome"]["Failure"].as_str().unwrap_or_default();
    assert!(
        reason.contains("not in the search space") && reason.contains("x3"),
        "{report}"
    );

    // Failures that are not the trial's exit with 75, so that executors
    // stop the run instead of charging the trial: a report that cannot be
    // written, an experiment file that is gone, a budget the schedule
    // cannot give.
    let unwritable = dir.path().join("no-such-dir").join("r.json");
    let out = trial_from_file(dir.path(), &input, Some(&unwritable));
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    assert!(text(&out).contains("no-such-dir"), "{}", text(&out));
    let mut gone = input.clone();
    gone["experiment_file"] = serde_json::json!(dir.path().join("gone.toml"));
    assert_eq!(
        trial_from_file(dir.path(), &gone, None).status.code(),
        Some(75)
    );
    let mut huge = input.clone();
    huge["task"]["trial"]["budget"] = serde_json::json!(1e300);
    assert_eq!(
        trial_from_file(dir.path(), &huge, None).status.code(),
        Some(75)
    );
}

#[test]
fn a_trial_run_outside_a_run_directory_writes_nothing_beside_its_experiment() {
    let dir = tempfile::tempdir().unwrap();
    let exp = r#"
name = "digits-one"
output_dir = "out"
[data]
dataset = "digits"
validation_fraction = 0.2
train_limit = 300
[model]
batch_size = 32
save_weights = true
[space]
hyperparameters = [
  { name = "weight_bits", type = "int", lower = 2, upper = 5, default = 5 },
]
[energy]
meter = { kind = "opcount" }
[fidelity]
max = 1
[stop]
trials = 1
"#;
    let f = write(dir.path(), "exp.toml", exp);
    let input = serde_json::json!({
        "experiment_file": f,
        "task": { "trial": { "id": 0, "budget": 1.0, "config": { "weight_bits": 3 } }, "attempt": 0 }
    });
    let out = trial_from_file(dir.path(), &input, None);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["outcome"]["Success"].is_array(), "{report}");
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    // Only what the test wrote: no emissions.csv, no weights/ beside the
    // experiment file (they were, before the trial input named its run
    // directory).
    assert_eq!(left, ["exp.toml", "trial-input.json"]);
}

#[test]
fn every_objective_kind_is_taken_from_the_trials_measurements() {
    let names = [
        "loss",
        "cross_entropy",
        "energy",
        "emissions",
        "training_energy",
        "model_size",
        "latency",
    ];
    let exp = format!(
        r#"
name = "all"
output_dir = "out"
objectives = {names:?}
[data]
dataset = "digits"
validation_fraction = 0.2
[model]
optimizer = "Adam"
lr = 0.01
batch_size = 32
[space]
hyperparameters = [
  {{ name = "weight_bits", type = "int", lower = 2, upper = 5, default = 5 }},
]
[energy]
meter = {{ kind = "opcount" }}
[fidelity]
max = 1
[stop]
trials = 2
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "all.toml", &exp);
    let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let run = dir.path().join("out/all");
    let res = results(&run);
    assert_eq!(res.len(), 3);
    let mut grams_per_joule = Vec::new();
    for r in &res {
        let m = &r["report"]["metrics"];
        let f = floats(&r["report"]["outcome"]["Success"]);
        // The objective vector is the named measurements, in order.
        for (name, v) in names.iter().zip(&f) {
            assert_eq!(m[name].as_f64(), Some(*v), "{name}: {m}");
            assert!(v.is_finite() && *v > 0.0, "{name}: {m}");
        }
        assert!((f[0] - (1.0 - m["accuracy"].as_f64().unwrap())).abs() < 1e-12);
        let images = m["validation_images"].as_f64().unwrap();
        assert!((f[2] * images - m["validation_energy_j"].as_f64().unwrap()).abs() < 1e-12);
        grams_per_joule.push(f[3] / m["validation_energy_j"].as_f64().unwrap());
        assert!(
            f[4] > f[2],
            "training costs more than one image's inference: {m}"
        );
    }
    // Emissions are the metered energy at one carbon intensity.
    assert!(grams_per_joule
        .iter()
        .all(|g| (g / grams_per_joule[0] - 1.0).abs() < 1e-9));
    let csv = std::fs::read_to_string(run.join("pareto.csv")).unwrap();
    assert!(
        csv.starts_with(&format!("trial,budget,{}", names.join(","))),
        "{csv}"
    );
}

#[test]
fn the_integer_engine_measures_the_validation_pass_of_shift_networks() {
    let exp = |engine: &str| {
        format!(
            r#"
name = "int"
output_dir = "out-{engine}"
objectives = ["loss", "energy"]
[data]
dataset = "digits"
validation_fraction = 0.2
[model]
shift_type = "Q"
optimizer = "Adam"
lr = 0.01
batch_size = 32
[space]
hyperparameters = [
  {{ name = "shift_type", type = "categorical", choices = ["Q", "PS", "float"], default = "Q" }},
]
[energy]
meter = {{ kind = "opcount" }}
inference = "{engine}"
[fidelity]
max = 2
[stop]
trials = 4
"#
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let mut default_metrics = Vec::new();
    for engine in ["simulated", "integer"] {
        let f = write(dir.path(), &format!("{engine}.toml"), &exp(engine));
        let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
        assert!(out.status.success(), "{engine}: {}", text(&out));
        let res = results(&dir.path().join(format!("out-{engine}/int")));
        assert_eq!(res.len(), 5);
        for r in &res {
            let m = &r["report"]["metrics"];
            let used = m["integer_inference"].as_f64().unwrap();
            let float_net = m["shift_mac_fraction"].as_f64().unwrap() == 0.0;
            // Shift networks run on the integer engine when asked; float
            // networks (and every network when simulated) do not.
            let expected = if engine == "integer" && !float_net {
                1.0
            } else {
                0.0
            };
            assert_eq!(used, expected, "{engine}: {m}");
        }
        default_metrics
            .push(res.iter().find(|r| is_default(r)).unwrap()["report"]["metrics"].clone());
    }
    // The same trained network: the integer engine agrees with the simulation.
    let acc = |m: &serde_json::Value| m["accuracy"].as_f64().unwrap();
    assert!(acc(&default_metrics[0]) > 0.8, "{}", default_metrics[0]);
    assert!(
        (acc(&default_metrics[0]) - acc(&default_metrics[1])).abs() <= 0.01,
        "simulated {} vs integer {}",
        default_metrics[0],
        default_metrics[1]
    );
    let energy = |m: &serde_json::Value| m["energy"].as_f64().unwrap();
    assert!(energy(&default_metrics[1]) > 0.0 && energy(&default_metrics[1]).is_finite());
}

#[test]
fn a_configspace_json_space_file_drives_a_dsnn_search() {
    let dir = tempfile::tempdir().unwrap();
    // A space written by Python's ConfigSpace (its JSON format), converted
    // here from dsnn-search's TOML so the test does not need Python.
    let space = dsnn_search::ConfigurationSpace::from_toml_str(
        r#"
[[hyperparameters]]
name = "lr"
type = "float"
lower = 0.005
upper = 0.05
log = true
default = 0.02
[[hyperparameters]]
name = "shift_type"
type = "categorical"
choices = ["Q", "PS"]
default = "Q"
"#,
    )
    .unwrap();
    write(
        dir.path(),
        "space.json",
        &space.to_configspace_json().unwrap(),
    );
    let exp = r#"
name = "json"
output_dir = "out"
[data]
dataset = "digits"
[model]
optimizer = "Adam"
batch_size = 64
[space]
file = "space.json"
[energy]
meter = { kind = "opcount" }
[stop]
trials = 2
"#;
    let f = write(dir.path(), "exp.toml", exp);
    let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let run = dir.path().join("out/json");
    // The resolved experiment holds the space inline.
    let resolved = std::fs::read_to_string(run.join("experiment.toml")).unwrap();
    assert!(
        resolved.contains("shift_type") && !resolved.contains("space.json"),
        "{resolved}"
    );
    let asked: Vec<serde_json::Value> = log_records(&run)
        .into_iter()
        .filter(|r| r["event"] == "ask")
        .flat_map(|r| r["trials"].as_array().unwrap().clone())
        .collect();
    assert_eq!(asked.len(), 2);
    for t in &asked {
        let lr = t["config"]["lr"].as_f64().unwrap();
        assert!((0.005..=0.05).contains(&lr), "{t}");
        assert!(["Q", "PS"].contains(&t["config"]["shift_type"].as_str().unwrap()));
    }
    assert_eq!(results(&run).len(), 3);
}

#[test]
fn a_trial_that_cannot_write_its_report_is_not_charged_and_reruns_on_resume() {
    // The processes executor's directory vanishes while trials run (a
    // cleaned scratch disk; as root, permissions cannot stop the write):
    // the children cannot write their reports. That is the run's failure,
    // not the trials': the run stops with an error, nothing is recorded as
    // failed, and the resume evaluates those trials.
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "exp.toml", &problem("processes", 4, 1.5, ""));
    let run = dir.path().join("out/zdt");
    let child = Command::new(env!("CARGO_BIN_EXE_dsnn"))
        .args(["run", f.to_str().unwrap()])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let processes = run.join("processes");
    let start = Instant::now();
    let started = |p: &Path| {
        std::fs::read_dir(p).is_ok_and(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .count()
                >= 2
        })
    };
    while !started(&processes) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no trial started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::remove_dir_all(&processes).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("not charged"), "{stderr}");
    assert!(
        results(&run)
            .iter()
            .all(|r| r["report"]["outcome"]["Success"].is_array()),
        "a trial was charged: {:?}",
        results(&run)
    );
    let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let res = results(&run);
    assert_eq!(res.len(), 5, "4 trials and the default");
    assert!(res
        .iter()
        .all(|r| r["report"]["outcome"]["Success"].is_array()));
}

#[test]
fn ctrl_c_stops_the_run_cleanly_and_resume_reruns_the_cancelled_trials() {
    for kind in ["processes", "threads"] {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "exp.toml", &problem(kind, 8, 0.4, ""));
        let run = dir.path().join("out/zdt");
        use std::os::unix::process::CommandExt;
        // In a process group of its own, like a shell's foreground job.
        let child = Command::new(env!("CARGO_BIN_EXE_dsnn"))
            .args(["run", f.to_str().unwrap()])
            .current_dir(dir.path())
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while results(&run).len() < 2 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{kind}: no progress"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // SIGINT to the whole foreground group, as a terminal's Ctrl-C.
        // SAFETY: signalling the process group of a child we own.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{kind}: {stderr}");
        assert!(stderr.contains("interrupted"), "{kind}: {stderr}");
        let stopped = results(&run);
        assert!(stopped.len() < 9, "{kind}: finished before the interrupt");
        assert!(
            stopped
                .iter()
                .all(|r| r["report"]["outcome"]["Success"].is_array()),
            "{kind}: an interrupted trial was recorded as a result: {stopped:?}"
        );
        let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
        assert!(out.status.success(), "{kind}: {}", text(&out));
        let all = results(&run);
        assert_eq!(all.len(), 9, "{kind}");
        assert!(all
            .iter()
            .all(|r| r["report"]["outcome"]["Success"].is_array()));
    }
}

#[test]
fn rust_log_sets_the_verbosity() {
    // A one-trial DSNN search on the bundled digits: at the default level it
    // prints warnings only; RUST_LOG=info adds where trials run and the meter.
    let dir = tempfile::tempdir().unwrap();
    let exp = "name = \"logs\"\noutput_dir = \"out\"\n[data]\ndataset = \"digits\"\n\
               [model]\nbackbone = \"digits_cnn\"\nepochs = 1\n\
               [space]\nhyperparameters = [{ name = \"lr\", type = \"float\", lower = 0.01, upper = 0.1 }]\n\
               [energy]\nmeter = { kind = \"opcount\" }\n[stop]\ntrials = 1\n";
    let run = |name: &str, rust_log: Option<&str>| {
        let g = write(
            dir.path(),
            &format!("{name}.toml"),
            &exp.replace("name = \"logs\"", &format!("name = \"{name}\"")),
        );
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsnn"));
        cmd.args(["run", g.to_str().unwrap()])
            .current_dir(dir.path())
            .env_remove("RUST_LOG");
        if let Some(level) = rust_log {
            cmd.env("RUST_LOG", level);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let quiet = run("quiet", None);
    let info = run("info", Some("info"));
    assert!(!quiet.contains(" INFO "), "{quiet}");
    assert!(info.contains(" INFO "), "{info}");
    assert!(info.contains("trials run on"), "{info}");
    // The plain status lines are there either way.
    for stderr in [&quiet, &info] {
        assert!(stderr.contains("[1/1] trial "), "{stderr}");
    }
}

#[test]
fn a_setup_failure_stops_the_run_without_charging_a_trial_and_resumes_once_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let exp = |limit: usize| {
        format!(
            "name = \"tiny\"\noutput_dir = \"out\"\n[data]\ndataset = \"digits\"\npath = \"digits\"\ntrain_limit = {limit}\nvalidation_fraction = 0.1\n[model]\nbatch_size = 32\n[space]\nhyperparameters = [{{ name = \"lr\", type = \"float\", lower = 0.01, upper = 0.1, default = 0.05 }}]\n[energy]\nmeter = {{ kind = \"opcount\" }}\n[fidelity]\nkind = \"fixed\"\nmax = 1\n[optimizer]\nkind = \"random\"\n[stop]\ntrials = 2\n"
        )
    };
    let data = dir.path().join("digits");
    std::fs::create_dir(&data).unwrap();
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits");
    let run = dir.path().join("out/tiny");
    // The data directory is empty: the run stops at the first trial, which
    // is not charged.
    let f = write(dir.path(), "exp.toml", &exp(300));
    let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("could not run"), "{}", text(&out));
    assert!(results(&run).is_empty(), "no trial is charged");
    // The data put in place, the same experiment resumes and completes.
    for e in std::fs::read_dir(&bundled).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, data.join(p.file_name().unwrap())).unwrap();
    }
    let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let rs = results(&run);
    assert_eq!(rs.len(), 3, "2 trials and the default");
    assert!(rs
        .iter()
        .all(|r| r["report"]["outcome"]["Success"].is_array()));

    // Three images leave the validation split empty: an error, not a
    // front of loss-1 "successes".
    let f = write(dir.path(), "exp.toml", &exp(3).replace("tiny", "empty"));
    let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("both splits need images"),
        "{}",
        text(&out)
    );
    assert!(results(&dir.path().join("out/empty")).is_empty());
}

/// Processes whose parent is `pid` (from /proc).
#[cfg(target_os = "linux")]
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: the fields after the last ')'.
        let after = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
        let ppid = after
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

#[cfg(target_os = "linux")]
#[test]
fn trial_processes_die_with_a_killed_run() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "exp.toml", &problem("processes", 4, 30.0, ""));
    let mut run = Command::new(env!("CARGO_BIN_EXE_dsnn"))
        .args(["run", f.to_str().unwrap()])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let trials = loop {
        let c = children_of(run.id());
        if c.len() >= 2 {
            break c;
        }
        assert!(start.elapsed().as_secs() < 60, "no trial processes started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    run.kill().unwrap();
    run.wait().unwrap();
    let gone = |pid: &u32| {
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
    };
    let start = std::time::Instant::now();
    while !trials.iter().all(gone) {
        assert!(
            start.elapsed().as_secs() < 10,
            "trial processes {trials:?} outlived the killed run"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_trial_that_kills_a_threads_run_twice_fails_instead_of_running_forever() {
    let dir = tempfile::tempdir().unwrap();
    // Every trial aborts the process (threads executor, one worker).
    let exp = problem("threads", 1, 0.0, "")
        .replace(
            "[optimizer]",
            "inject_failure = { kind = \"abort\", fraction = 1.0 }\n[optimizer]",
        )
        .replace("workers = 2", "workers = 1");
    let f = write(dir.path(), "exp.toml", &exp);
    let run = dir.path().join("out/zdt");
    let mut sessions = 0;
    let out = loop {
        sessions += 1;
        let out = dsnn(&["run", f.to_str().unwrap()], dir.path());
        if out.status.success() || sessions == 10 {
            break out;
        }
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(6),
            "the injected abort kills the run: {}",
            text(&out)
        );
    };
    assert!(
        out.status.success(),
        "after {sessions} sessions: {}",
        text(&out)
    );
    // The default and the one trial each killed two sessions, then failed.
    assert_eq!(sessions, 5, "{}", text(&out));
    let res = results(&run);
    assert_eq!(res.len(), 2);
    for r in &res {
        let reason = r["report"]["outcome"]["Failure"].as_str().unwrap();
        assert!(reason.contains("the run died 2 times"), "{reason}");
    }
}

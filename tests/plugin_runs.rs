//! Plugins inside `dsnn run`: an optimizer plugin named in an experiment file
//! runs a search exactly like a built-in optimizer, a meter plugin meters the
//! trials, and a plugin that panics stops the run cleanly with its trial log
//! intact.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{install_library, results};

/// A temporary experiment directory with `plugins/` holding `libs`.
fn setup(libs: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("plugin-runs-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for lib in libs {
        install_library(&plugins, lib);
    }
    dir
}

fn run(dir: &Path, experiment: &str) -> Output {
    std::fs::write(dir.join("exp.toml"), experiment).unwrap();
    // Run from elsewhere: `./plugins` is found next to the experiment file.
    Command::new(env!("CARGO_BIN_EXE_dsnn"))
        .arg("run")
        .arg(dir.join("exp.toml"))
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .output()
        .unwrap()
}

fn experiment(dir: &Path, optimizer: &str, trials: u32) -> String {
    format!(
        r#"
name = "plugged"
output_dir = {out:?}
seed = 4
[problem]
name = "zdt1"
dimensions = 6
[optimizer]
{optimizer}
[executor]
workers = 2
[stop]
trials = {trials}
"#,
        out = dir.join("runs").to_str().unwrap()
    )
}

#[test]
fn moead_plugin_runs_a_search_like_a_built_in_optimizer() {
    let dir = setup(&["dsnn_plugin_moead"]);
    let exp = experiment(
        dir.path(),
        "plugin = \"moead\"\npopulation = 20\nneighbours = 5",
        600,
    );
    let out = run(dir.path(), &exp);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let run_dir = dir.path().join("runs/plugged");
    let res = results(&run_dir);
    assert_eq!(res.len(), 601);
    assert!(res
        .iter()
        .all(|r| r["report"]["outcome"]["Success"].is_array()));
    // MOEA/D converges towards ZDT1's front (f2 = 1 - sqrt(f1) at g = 1):
    // the front's g = f2 + sqrt(f1) stays far below a random point's (~5.5).
    // With two workers the order of results varies between runs; over 20
    // seeds, 500 trials already gave a mean g of 1.02-1.60 and fronts of 7-36
    // points (200 trials gave up to 2.68 and fronts of 3 points, too close to
    // call), so 600 leave a margin.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    let front = summary["front"].as_array().unwrap();
    assert!(front.len() >= 5, "{summary}");
    let mean_g: f64 = front
        .iter()
        .map(|p| {
            let f = p["objectives"].as_array().unwrap();
            f[1].as_f64().unwrap() + f[0].as_f64().unwrap().sqrt()
        })
        .sum::<f64>()
        / front.len() as f64;
    assert!(mean_g < 2.5, "mean g on the front {mean_g}");
    // Unknown settings of a plugin are an error naming them, before any trial.
    let bad = experiment(dir.path(), "plugin = \"moead\"\npopulaton = 20", 5)
        .replace("plugged", "plugged-bad");
    let out = run(dir.path(), &bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("populaton"),
        "{stderr}"
    );
}

#[test]
fn plugin_dirs_in_the_experiment_file_are_searched() {
    // The plugin lives in a directory the file names, not in `./plugins`.
    let dir = setup(&[]);
    let elsewhere = dir.path().join("my-plugins");
    std::fs::create_dir(&elsewhere).unwrap();
    install_library(&elsewhere, "dsnn_plugin_example");
    let exp = format!(
        "plugin_dirs = [\"my-plugins\"]\n{}",
        experiment(dir.path(), "plugin = \"example\"", 6)
    );
    let out = run(dir.path(), &exp);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(results(&dir.path().join("runs/plugged")).len(), 7);
    // Without the key the plugin is not found.
    let without = experiment(dir.path(), "plugin = \"example\"", 6).replace("plugged", "plain");
    let out = run(dir.path(), &without);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("example"));
}

#[test]
fn a_missing_plugin_is_a_clear_error() {
    let dir = setup(&[]);
    let out = run(dir.path(), &experiment(dir.path(), "plugin = \"cmaes\"", 5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cmaes") && stderr.contains("plugins"),
        "{stderr}"
    );
    // The failed start leaves no run directory behind, so the corrected file
    // runs under the same name.
    assert!(!dir.path().join("runs/plugged").exists());
    let out = run(dir.path(), &experiment(dir.path(), "kind = \"random\"", 3));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(results(&dir.path().join("runs/plugged")).len(), 4);
}

#[test]
fn a_plugin_panicking_in_ask_or_tell_stops_the_run_cleanly_with_its_log_intact() {
    for method in ["ask", "tell"] {
        let dir = setup(&["dsnn_fixture_panicky"]);
        let exp = experiment(
            dir.path(),
            &format!("plugin = \"panicky\"\npanic_in = \"{method}\"\nafter = 4"),
            20,
        );
        let out = run(dir.path(), &exp);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{method}: {stderr}");
        assert!(stderr.contains("panic"), "{method}: {stderr}");
        // The finished trials are in the log, every line parses.
        let run_dir = dir.path().join("runs/plugged");
        let log = std::fs::read_to_string(run_dir.join("trials.jsonl")).unwrap();
        assert!(log.ends_with('\n'), "{method}: a cut-off last line");
        for line in log.lines() {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok(),
                "{method}: {line}"
            );
        }
        let res = results(&run_dir);
        assert!(res.len() >= 4, "{method}: {} results", res.len());
    }
}

#[test]
fn a_meter_plugin_meters_the_validation_pass_of_dsnn_trials() {
    // Trial processes read the resolved experiment in the run directory and
    // must still find `./plugins` next to the original file.
    for executor in ["threads", "processes"] {
        let dir = setup(&["dsnn_plugin_constant_power"]);
        let exp = format!(
            r#"
name = "metered"
output_dir = {out:?}
objectives = ["loss", "energy"]
[data]
dataset = "digits"
[model]
batch_size = 64
[space]
hyperparameters = [{{ name = "weight_bits", type = "int", lower = 2, upper = 5, default = 5 }}]
[energy]
meter = {{ plugin = "constant-power", watts = 50.0 }}
[fidelity]
max = 1
[executor]
kind = "{executor}"
[stop]
trials = 1
"#,
            out = dir.path().join("runs").to_str().unwrap()
        );
        let out = run(dir.path(), &exp);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let res = results(&dir.path().join("runs/metered"));
        assert_eq!(res.len(), 2);
        for r in &res {
            let m = &r["report"]["metrics"];
            // 50 W over the metered validation pass and training.
            let value = |k: &str| m[k].as_f64().unwrap_or_else(|| panic!("no {k} in {m}"));
            let watts = value("validation_energy_j") / value("validation_metered_s");
            assert!((watts - 50.0).abs() < 0.5, "{executor}: {watts} W from {m}");
            let train_watts = value("training_energy") / value("training_metered_s");
            assert!(
                (train_watts - 50.0).abs() < 0.5,
                "{executor}: {train_watts} W from {m}"
            );
            // The metered regions surround the evaluation and the training.
            let images = value("validation_images");
            assert!(value("validation_metered_s") >= value("latency") * images * 0.999);
            assert!(value("training_metered_s") >= value("train_seconds") * 0.999);
            assert!((value("energy") * images - value("validation_energy_j")).abs() < 1e-9);
        }
    }
}

/// `dsnn check` on `experiment` written into `dir`.
fn check(dir: &Path, experiment: &str) -> Output {
    std::fs::write(dir.join("exp.toml"), experiment).unwrap();
    Command::new(env!("CARGO_BIN_EXE_dsnn"))
        .arg("check")
        .arg(dir.join("exp.toml"))
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .output()
        .unwrap()
}

/// `experiment` with a `[fidelity]` section.
fn with_fidelity(experiment: String, fidelity: &str) -> String {
    format!("{experiment}[fidelity]\n{fidelity}\n")
}

#[test]
fn a_proposer_plugin_runs_under_hyperband_end_to_end() {
    let dir = setup(&["dsnn_plugin_example", "dsnn_plugin_moead"]);
    let hyperband = "kind = \"hyperband\"\nmin = 1\nmax = 9\neta = 3";
    let exp = with_fidelity(
        experiment(dir.path(), "plugin = \"example\"\nrandom_trials = 5", 60),
        hyperband,
    );
    let out = check(dir.path(), &exp);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("plugin example"), "{stdout}");
    let out = run(dir.path(), &exp);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let res = results(&dir.path().join("runs/plugged"));
    assert_eq!(res.len(), 61, "60 trials and the default configuration");
    // Hyperband chose the budgets: every rung of its brackets ran.
    let budgets: Vec<f64> = res.iter().map(|r| r["budget"].as_f64().unwrap()).collect();
    for b in [1.0, 3.0, 9.0] {
        assert!(budgets.contains(&b), "budget {b} in {budgets:?}");
    }
    assert!(
        budgets.iter().all(|b| [1.0, 3.0, 9.0].contains(b)),
        "{budgets:?}"
    );

    // MOEA/D is a whole optimizer without a proposer: a clear error at
    // check time, naming the way out.
    let exp = with_fidelity(experiment(dir.path(), "plugin = \"moead\"", 20), hyperband)
        .replace("plugged", "moead-hb");
    let out = check(dir.path(), &exp);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("moead") && stderr.contains("fidelity.kind = \"fixed\""),
        "{stderr}"
    );
}

#[test]
fn dsnn_check_loads_plugins_and_refuses_bad_settings_and_budgets() {
    let dir = setup(&["dsnn_plugin_moead"]);
    // A setting typo is found by the plugin when the file is checked.
    let out = check(
        dir.path(),
        &experiment(dir.path(), "plugin = \"moead\"\npopulaton = 20", 5),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("populaton"),
        "{stderr}"
    );
    // MOEA/D (interface 1.1) is told the budget: a different one of its own
    // is refused at check time.
    let exp = with_fidelity(
        experiment(dir.path(), "plugin = \"moead\"\nbudget = 2.0", 5),
        "max = 3",
    );
    let out = check(dir.path(), &exp);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("`budget`") && stderr.contains("is 3"),
        "{stderr}"
    );
    // Without the setting it runs at the run's budget.
    let exp = with_fidelity(experiment(dir.path(), "plugin = \"moead\"", 6), "max = 3");
    let out = run(dir.path(), &exp);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res = results(&dir.path().join("runs/plugged"));
    assert_eq!(res.len(), 7);
    assert!(res.iter().all(|r| r["budget"] == 3.0), "{res:?}");
}

/// Builds `plugins/fixtures/interface-1.0` (a plugin built against a frozen
/// copy of dsnn-plugin-api 1.0.0, outside the workspace) with its own cargo
/// call, as its author did, and puts its library into `dir`.
fn install_interface_1_0_plugin(dir: &Path) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/fixtures/interface-1.0");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interface-1.0");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--locked", "--quiet", "--manifest-path"])
        .arg(fixture.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .output()
        .expect("running cargo");
    assert!(
        out.status.success(),
        "building the interface-1.0 fixture failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = common::library_file_name("dsnn_fixture_interface_1_0");
    std::fs::copy(target.join("debug").join(&file), dir.join(&file)).unwrap();
}

#[test]
fn a_plugin_built_against_interface_1_0_loads_and_runs() {
    let dir = setup(&[]);
    install_interface_1_0_plugin(&dir.path().join("plugins"));
    // Listed with its interface version.
    let out = Command::new(env!("CARGO_BIN_EXE_dsnn"))
        .args(["plugins", "--dir"])
        .arg(dir.path().join("plugins"))
        .env_remove("DSNN_PLUGIN_PATH")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("interface-1.0"))
        .unwrap_or_else(|| panic!("listed: {stdout}"));
    assert!(
        line.contains("1.0.0") && line.contains("optimizer"),
        "{line}"
    );

    // It runs a search at the run's budget, which it sets itself.
    let exp = with_fidelity(
        experiment(dir.path(), "plugin = \"interface-1.0\"\nbudget = 2.0", 8),
        "max = 2",
    );
    let out = run(dir.path(), &exp);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res = results(&dir.path().join("runs/plugged"));
    assert_eq!(res.len(), 9);
    assert!(res.iter().all(|r| r["budget"] == 2.0), "{res:?}");

    // A 1.0 plugin is not told the budget: if its own differs from the
    // run's, `dsnn check` says so (before, the trials and the default
    // configuration silently trained for different lengths).
    let exp = with_fidelity(
        experiment(dir.path(), "plugin = \"interface-1.0\"", 8),
        "max = 2",
    )
    .replace("plugged", "mismatch");
    let out = check(dir.path(), &exp);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("budget 1") && stderr.contains("is 2") && stderr.contains("interface 1.0"),
        "{stderr}"
    );
    // And it runs at one fidelity only.
    let exp = with_fidelity(
        experiment(dir.path(), "plugin = \"interface-1.0\"\nbudget = 9.0", 8),
        "kind = \"hyperband\"\nmin = 1\nmax = 9",
    )
    .replace("plugged", "hb");
    let out = check(dir.path(), &exp);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("fidelity.kind = \"fixed\""), "{stderr}");
}

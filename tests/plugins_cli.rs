//! `dsnn plugins`: listing plugins from `--dir`, `./plugins` and
//! DSNN_PLUGIN_PATH, with one line for each unusable library.

use std::process::Command;

mod common;
use common::{install_library as put, library_file_name as file_name};

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("plugins-cli-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

#[test]
fn lists_plugins_from_all_three_places_and_explains_unusable_ones() {
    let cwd = tempdir();
    std::fs::create_dir(cwd.path().join("plugins")).unwrap();
    put(&cwd.path().join("plugins"), "dsnn_plugin_example");
    let extra = tempdir();
    put(extra.path(), "dsnn_fixture_other_version");
    put(extra.path(), "dsnn_plugin_example");
    let from_env = tempdir();
    std::fs::write(from_env.path().join(file_name("broken")), "no ELF here").unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_dsnn"))
        .current_dir(cwd.path())
        .env("DSNN_PLUGIN_PATH", from_env.path())
        .args(["plugins", "--dir"])
        .arg(extra.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The plugin part ends at the blank line before the registry's names.
    let lines: Vec<&str> = stdout.lines().take_while(|l| !l.is_empty()).collect();
    assert!(
        stdout.contains("\nbackbones:\n  digits_cnn") && stdout.contains("\nexecutors:\n"),
        "{stdout}"
    );
    assert!(
        lines[0].contains(&extra.path().display().to_string()),
        "{stdout}"
    );
    assert!(
        lines[0].contains(&from_env.path().display().to_string()),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("NAME") && lines[1].contains("INTERFACE"),
        "{stdout}"
    );
    let example = lines[2];
    for part in ["example", "optimizer", "1.1.0", "libdsnn_plugin_example"] {
        assert!(example.contains(part), "{part} in {example}");
    }
    assert!(example.starts_with("example") && example.contains("Pareto local search"));
    // The same plugin further down the search order is shadowed.
    assert!(
        lines[3].starts_with("example") && lines[3].contains("(shadowed"),
        "{stdout}"
    );
    assert!(
        lines[3].contains(&extra.path().display().to_string()),
        "{stdout}"
    );
    assert_eq!(lines[4], "Unusable libraries:", "{stdout}");
    assert!(
        lines[5].contains("libdsnn_fixture_other_version")
            && lines[5].contains("built against dsnn plugin interface 2.0.0"),
        "{stdout}"
    );
    assert!(lines[6].contains("broken") && lines[6].contains("not a loadable dynamic library"));
    assert_eq!(
        lines.len(),
        7,
        "one line per library, no layout dump:\n{stdout}"
    );
}

#[test]
fn a_missing_directory_is_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_dsnn"))
        .args(["plugins", "--dir", "/nonexistent/dsnn-plugins"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("plugin directory `/nonexistent/dsnn-plugins` does not exist"),
        "{stderr}"
    );
}

#[test]
fn lists_what_an_experiment_file_would_see_and_names_a_missing_plugin() {
    // The experiment lives in its own directory with `plugins/` beside it
    // and a `plugin_dirs` entry; the command runs from elsewhere.
    let exp_dir = tempdir();
    std::fs::create_dir(exp_dir.path().join("plugins")).unwrap();
    put(&exp_dir.path().join("plugins"), "dsnn_plugin_example");
    std::fs::create_dir(exp_dir.path().join("more")).unwrap();
    put(&exp_dir.path().join("more"), "dsnn_plugin_constant_power");
    let elsewhere = tempdir();
    let experiment = |optimizer: &str| {
        let f = exp_dir.path().join("exp.toml");
        std::fs::write(
            &f,
            format!(
                "name = \"p\"\nplugin_dirs = [\"more\"]\n[problem]\nname = \"zdt1\"\n[optimizer]\nplugin = \"{optimizer}\"\n[energy.meter]\nplugin = \"constant-power\"\nwatts = 5.0\n[stop]\ntrials = 2\n"
            ),
        )
        .unwrap();
        Command::new(env!("CARGO_BIN_EXE_dsnn"))
            .current_dir(elsewhere.path())
            .env_remove("DSNN_PLUGIN_PATH")
            .args(["plugins", "--experiment"])
            .arg(&f)
            .output()
            .unwrap()
    };

    let out = experiment("example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let header = stdout.lines().next().unwrap();
    assert!(header.contains("next to the experiment file"), "{header}");
    assert!(
        header.contains(&exp_dir.path().join("plugins").display().to_string())
            && header.contains(&exp_dir.path().join("more").display().to_string()),
        "{header}"
    );
    assert!(
        stdout.contains("optimizer plugin `example`: found"),
        "{stdout}"
    );
    assert!(
        stdout.contains("meter plugin `constant-power`: found"),
        "{stdout}"
    );

    let out = experiment("cmaes");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("optimizer plugin `cmaes`: NOT FOUND"),
        "{stdout}"
    );
    assert!(stderr.contains("optimizer plugin `cmaes`"), "{stderr}");
    // The listing still shows what is there.
    assert!(stdout.contains("libdsnn_plugin_example"), "{stdout}");
}

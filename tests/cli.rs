//! The `dsnn` binary end to end: training on the bundled data, saving
//! weights, and clear errors for bad input.

use std::process::Command;

fn dsnn(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dsnn"))
        .args(args)
        .output()
        .expect("run dsnn")
}

#[test]
fn train_on_bundled_digits_reports_accuracy_and_saves_weights() {
    let save = std::env::temp_dir().join(format!("dsnn-cli-{}.safetensors", std::process::id()));
    let out = dsnn(&[
        "train",
        "--dataset",
        "digits",
        "--shift-type",
        "q",
        "--epochs",
        "2",
        "--lr",
        "0.05",
        "--batch-size",
        "32",
        "--save",
        save.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("epoch   1/2") && stderr.contains("epoch   2/2"),
        "{stderr}"
    );
    assert!(stderr.contains("DeepShift-Q, 5-bit weights"), "{stderr}");
    let acc: f64 = stdout
        .split("test accuracy ")
        .nth(1)
        .and_then(|s| s.split('%').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no accuracy in {stdout}"));
    assert!(acc > 80.0, "{stdout}");
    assert!(std::fs::metadata(&save).unwrap().len() > 1000);
    std::fs::remove_file(&save).unwrap();
}

#[test]
fn bad_settings_are_clear_errors() {
    let out = dsnn(&[
        "train",
        "--dataset",
        "digits",
        "--weight-bits",
        "9",
        "--epochs",
        "1",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("weight_bits") && stderr.contains("2..=8"),
        "{stderr}"
    );

    let out = dsnn(&[
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        "/nonexistent/mnist",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/mnist"), "{stderr}");

    let out = dsnn(&["train", "--validation-fraction", "1.5"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: --validation-fraction 1.5"),
        "{stderr}"
    );
    assert!(!stderr.contains("backtrace"), "{stderr}");

    let out = dsnn(&["train", "--optimizer", "lbfgs"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lbfgs") && stderr.contains("RAdam"),
        "{stderr}"
    );
}

#[test]
fn a_closed_or_full_stdout_ends_without_a_panic() {
    // A reader that goes away (`dsnn plugins | head -0`): quiet, exit 0.
    let mut child = Command::new(env!("CARGO_BIN_EXE_dsnn"))
        .arg("plugins")
        .env_remove("DSNN_PLUGIN_PATH")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A full disk (`> /dev/full`): an error naming it, exit 1.
    if let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") {
        let out = Command::new(env!("CARGO_BIN_EXE_dsnn"))
            .arg("plugins")
            .env_remove("DSNN_PLUGIN_PATH")
            .stdout(full)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.starts_with("error:") && stderr.contains("No space left"),
            "{stderr}"
        );
    }
}

#[test]
fn missing_experiment_and_study_files_name_the_file_and_its_kind() {
    for (command, kind) in [
        ("run", "experiment"),
        ("study", "study"),
        ("check", "experiment"),
    ] {
        let out = dsnn(&[command, "/nonexistent/dsnn-file.toml"]);
        assert!(!out.status.success(), "{command}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "/nonexistent/dsnn-file.toml: cannot read the {kind} file"
            )),
            "{command}: {stderr}"
        );
    }
}

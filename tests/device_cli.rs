//! `dsnn train --device`: parsing, the CPU fallback of `auto`, and a clear
//! error for a GPU the binary cannot use.

use std::process::Command;

fn dsnn(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dsnn"))
        .args(args)
        .output()
        .expect("run dsnn")
}

const SHORT: [&str; 10] = [
    "train",
    "--dataset",
    "digits",
    "--epochs",
    "1",
    "--train-limit",
    "300",
    "--shift-type",
    "ps",
    "--test-batch-size=500",
];

#[test]
fn unknown_devices_are_refused_with_the_allowed_forms() {
    for bad in ["tpu", "cuda:x", "cuda:"] {
        let out = dsnn(&["train", "--device", bad]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("unknown device `{bad}`"))
                && stderr.contains("allowed: auto, cpu, cuda, cuda:N"),
            "{stderr}"
        );
    }
}

#[test]
fn cpu_and_auto_train_and_say_which_device() {
    let mut args = SHORT.to_vec();
    args.extend(["--device", "cpu"]);
    let out = dsnn(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("device: CPU (requested)"), "{stderr}");

    // The default is auto: without a usable GPU it trains on the CPU and says why.
    let out = dsnn(&SHORT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    if cfg!(feature = "cuda") {
        assert!(stderr.contains("device: "), "{stderr}");
    } else {
        assert!(
            stderr.contains("device: CPU (auto: this binary was built without the `cuda` feature"),
            "{stderr}"
        );
    }
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_feature_is_a_clear_error() {
    let mut args = SHORT.to_vec();
    args.extend(["--device", "cuda:1"]);
    let out = dsnn(&args);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--device cuda:1")
            && stderr.contains("built without the `cuda` feature")
            && stderr.contains("scripts/build-cuda.sh"),
        "{stderr}"
    );
}

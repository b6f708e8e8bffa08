//! `dsnn export` and `dsnn infer` end to end: train on the bundled digits,
//! export to integers, run the integer model, and clear errors for weights
//! without a model spec and for float networks.

use std::path::{Path, PathBuf};
use std::process::Command;

fn dsnn(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dsnn"))
        .args(args)
        .output()
        .expect("run dsnn")
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("dsnn-int-cli-{}-{name}", std::process::id()))
}

fn train(shift: &str, save: &Path) {
    let out = dsnn(&[
        "train",
        "--dataset",
        "digits",
        "--shift-type",
        shift,
        "--epochs",
        "2",
        "--lr",
        "0.05",
        "--batch-size",
        "32",
        "--save",
        save.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn export_and_infer_agree_with_the_trained_network() {
    let (w, m) = (scratch("q.safetensors"), scratch("q.int"));
    train("q", &w);
    let out = dsnn(&["export", w.to_str().unwrap(), "-o", m.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("smaller"), "{stdout}");
    let out = dsnn(&[
        "infer",
        m.to_str().unwrap(),
        "--dataset",
        "digits",
        "--compare",
        w.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let number = |key: &str| -> f64 {
        stdout
            .split(key)
            .nth(1)
            .and_then(|s| s.split('%').next())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{key}` in {stdout}"))
    };
    assert!(number("accuracy ") > 80.0, "{stdout}");
    assert!(number("agreement ") >= 99.5, "{stdout}");
    assert!(stdout.contains("img/s at batch 128") && stdout.contains("latency at batch 1"));
    // --device cuda: refused with the reason in a build without `cuda`.
    if !cfg!(feature = "cuda") {
        let out = dsnn(&[
            "infer",
            m.to_str().unwrap(),
            "--dataset",
            "digits",
            "--device",
            "cuda",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains("--device cuda") && stderr.contains("`cuda` feature"),
            "{stderr}"
        );
    }
    for p in [w, m] {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn export_errors_name_the_file_and_the_cause() {
    // A weights file without the model spec.
    let plain = scratch("plain.safetensors");
    let t =
        candle_core::Tensor::zeros(3, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    candle_core::safetensors::save(&std::collections::HashMap::from([("x", t)]), &plain).unwrap();
    let out = dsnn(&["export", plain.to_str().unwrap(), "-o", "/dev/null"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(plain.to_str().unwrap()) && stderr.contains("no model spec"),
        "{stderr}"
    );
    std::fs::remove_file(&plain).unwrap();

    // A float network has nothing to shift.
    let w = scratch("float.safetensors");
    train("float", &w);
    let out = dsnn(&["export", w.to_str().unwrap(), "-o", "/dev/null"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("float network"), "{stderr}");
    std::fs::remove_file(&w).unwrap();

    let out = dsnn(&["infer", "/nonexistent/model.int", "--dataset", "digits"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("/nonexistent/model.int"),
        "{stderr}"
    );
}

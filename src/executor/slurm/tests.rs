//! Unit tests of the SLURM executor's parsing and state handling.

use super::*;
use crate::settings::{ConfigError, Section};

fn from_toml(t: &toml::Table) -> Result<SlurmSettings, ConfigError> {
    SlurmSettings::from_section(&Section::detached(
        "<test>",
        "executor.slurm",
        toml::Value::Table(t.clone()),
    ))
}

#[test]
fn settings_defaults_and_unknown_keys() {
    let s = from_toml(&toml::Table::new()).unwrap();
    assert_eq!(s, SlurmSettings::default());
    let t: toml::Table = toml::from_str(
        r#"partition = "gpu"
           gpus = 2
           mem = "8G"
           extra_sbatch_args = ["--qos=short"]"#,
    )
    .unwrap();
    let s = from_toml(&t).unwrap();
    assert_eq!(s.partition.as_deref(), Some("gpu"));
    assert_eq!(s.gpus, Some(GpuRequest::Count(2)));
    assert_eq!(s.gpus.as_ref().unwrap().gres(), "--gres=gpu:2");
    let t: toml::Table = toml::from_str(r#"gpus = "a100:1""#).unwrap();
    let s = from_toml(&t).unwrap();
    assert_eq!(s.gpus.unwrap().gres(), "--gres=gpu:a100:1");
    let t: toml::Table = toml::from_str("partiton = \"gpu\"").unwrap();
    let e = from_toml(&t).unwrap_err().to_string();
    assert!(
        e.contains("unknown field `partiton`") && e.contains("partition"),
        "{e}"
    );
    let t: toml::Table = toml::from_str("max_jobs_in_flight = 0").unwrap();
    let e = from_toml(&t).unwrap_err().to_string();
    assert!(e.contains("executor.slurm.max_jobs_in_flight"), "{e}");
    let t: toml::Table = toml::from_str("poll_interval_s = -1.0").unwrap();
    assert!(from_toml(&t).is_err());
}

#[test]
fn states_and_quoting() {
    assert_eq!(base_state("CANCELLED by 0"), "CANCELLED");
    assert_eq!(base_state("OUT_OF_MEMORY"), "OUT_OF_MEMORY");
    assert!(is_active("PENDING") && is_active("RUNNING") && !is_active("TIMEOUT"));
    assert_eq!(shell_quote(Path::new("/a b/it's")), r"'/a b/it'\''s'");
    assert_eq!(run_label(Path::new("/runs/my run!")), "myrun");
    assert_eq!(run_label(Path::new("/")), "run");
    assert_eq!(parse_run_time("0:05"), Some(Duration::from_secs(5)));
    assert_eq!(parse_run_time("12:34"), Some(Duration::from_secs(754)));
    assert_eq!(parse_run_time("1:02:03"), Some(Duration::from_secs(3723)));
    assert_eq!(
        parse_run_time("2-01:00:00"),
        Some(Duration::from_secs(2 * 86_400 + 3600))
    );
    assert_eq!(parse_run_time("INVALID"), None);
    assert_eq!(trial_label(TrialId::MAX), "default");
    assert_eq!(trial_label(7), "7");
}

#[test]
fn job_events_round_trip() {
    let e = JobEvent::Submitted {
        trial_id: 3,
        attempt: 1,
        job_id: "42".into(),
        job_name: "dsnn-x-t3".into(),
    };
    let line = serde_json::to_string(&e).unwrap();
    assert!(line.contains("\"event\":\"submitted\""), "{line}");
    match serde_json::from_str::<JobEvent>(&line).unwrap() {
        JobEvent::Submitted {
            trial_id, job_id, ..
        } => {
            assert_eq!((trial_id, job_id.as_str()), (3, "42"))
        }
        other => panic!("{other:?}"),
    }
}

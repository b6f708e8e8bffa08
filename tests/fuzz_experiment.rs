//! Fuzzing the experiment-file reader (`CheckedExperiment::from_str`, what
//! `dsnn check`, `run`, `trial` and `study` all go through) with property
//! tests: valid experiments with keys set to edge-case values of every
//! type, keys removed or added, the shipped example files, byte-mutated
//! text and arbitrary text. Every input must give a checked experiment or a
//! located `ConfigError` naming the file, never a panic; an accepted
//! experiment's resolved form must read back to itself (what a resumed run
//! and `dsnn trial` rely on).
//!
//! `DSNN_FUZZ_CASES` sets the cases per property (default 256, a few
//! seconds); see docs/reliability.md for the long run.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use dsnn::experiment::CheckedExperiment;
use dsnn::registry::Registry;
use proptest::prelude::*;

mod common;
use common::{fuzz_config, Scratch};

/// Small valid experiments covering every section the reader knows.
const BASES: &[&str] = &[
    r#"
name = "zdt"
seed = 3
output_dir = "out"
[problem]
name = "zdt1"
dimensions = 4
[optimizer]
kind = "nsga2"
population = 8
[executor]
kind = "threads"
workers = 2
[stop]
trials = 10
wall_time_s = 60.0
"#,
    r#"
name = "digits"
objectives = ["loss", "energy", "model_size"]
[data]
dataset = "digits"
validation_fraction = 0.2
train_limit = 300
[model]
optimizer = "SGD"
batch_size = 32
shift_type = "Q"
[space]
hyperparameters = [
  { name = "lr", type = "float", lower = 0.01, upper = 0.5, log = true, default = 0.05 },
  { name = "weight_bits", type = "int", lower = 2, upper = 5, default = 5 },
  { name = "shift_type", type = "categorical", choices = ["Q", "PS"], default = "Q" },
  { name = "batch_size", type = "ordinal", sequence = [16, 32, 64], default = 32 },
]
[energy]
meter = { kind = "opcount" }
grid = { kind = "country", iso3 = "DEU" }
[optimizer]
kind = "parego"
n_initial = 3
[fidelity]
kind = "hyperband"
min = 1
max = 9
eta = 3
[executor]
kind = "processes"
workers = 2
memory_limit = "2G"
trial_time_limit_s = 100.0
[stop]
trials = 6
"#,
    r#"
name = "dtlz"
[problem]
name = "dtlz2"
objectives = 3
dimensions = 7
[optimizer]
kind = "random"
[fidelity]
kind = "successive_halving"
min = 1
max = 4
eta = 2
[executor]
kind = "slurm"
[executor.slurm]
partition = "cpu"
time_limit = "00:10:00"
max_jobs_in_flight = 4
[stop]
trials = 5
"#,
];

/// The shipped example experiments (some need data that is absent: they
/// must then fail cleanly).
fn examples() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/experiments");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    v.sort();
    v
}

/// Every dotted key path of a table (array elements by index).
fn key_paths(prefix: &[String], v: &toml::Value, out: &mut Vec<Vec<String>>) {
    match v {
        toml::Value::Table(t) => {
            for (k, x) in t {
                let mut p = prefix.to_vec();
                p.push(k.clone());
                out.push(p.clone());
                key_paths(&p, x, out);
            }
        }
        toml::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let mut p = prefix.to_vec();
                p.push(i.to_string());
                out.push(p.clone());
                key_paths(&p, x, out);
            }
        }
        _ => {}
    }
}

/// Values of every type at their edges.
fn edge_value() -> impl Strategy<Value = toml::Value> {
    use toml::Value as V;
    let ints = vec![0i64, 1, -1, 2, 3, 7, 1 << 31, 1 << 53, i64::MAX, i64::MIN];
    let floats = vec![
        0.0,
        -0.0,
        0.5,
        1.0,
        1e-300,
        1e300,
        f64::MAX,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ];
    let strings = vec![
        String::new(),
        "x".into(),
        "Q".into(),
        "PS".into(),
        "float".into(),
        "threads".into(),
        "processes".into(),
        "hyperband".into(),
        "random".into(),
        "zdt1".into(),
        "digits".into(),
        "lenet5".into(),
        "resnet20".into(),
        "opcount".into(),
        "4G".into(),
        "16M".into(),
        "/etc/passwd".into(),
        "../../..".into(),
        "a".repeat(300),
        "ünïcødé ☃".into(),
        "nan".into(),
    ];
    let leaf = prop_oneof![
        3 => prop::sample::select(ints).prop_map(V::Integer),
        2 => any::<i64>().prop_map(V::Integer),
        3 => prop::sample::select(floats).prop_map(V::Float),
        2 => (-10.0f64..10.0).prop_map(V::Float),
        3 => prop::sample::select(strings).prop_map(V::String),
        1 => "\\PC{0,20}".prop_map(V::String),
        1 => any::<bool>().prop_map(V::Boolean),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(V::Array),
            prop::collection::vec(("[a-z_]{1,8}", inner), 0..3)
                .prop_map(|kv| V::Table(kv.into_iter().collect())),
        ]
    })
}

/// One edit of a document.
#[derive(Debug, Clone)]
enum Edit {
    /// Set the `n`-th key path (modulo their count) to a value.
    Set(usize, toml::Value),
    /// Remove the `n`-th key path.
    Remove(usize),
    /// Add a key to the `n`-th table (or the top level).
    Add(usize, String, toml::Value),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        5 => (any::<usize>(), edge_value()).prop_map(|(n, v)| Edit::Set(n, v)),
        2 => any::<usize>().prop_map(Edit::Remove),
        1 => (any::<usize>(), "[a-z_]{1,10}", edge_value()).prop_map(|(n, k, v)| Edit::Add(n, k, v)),
    ]
}

fn apply(doc: &mut toml::Value, e: &Edit) {
    let mut paths = Vec::new();
    key_paths(&[], doc, &mut paths);
    if paths.is_empty() {
        return;
    }
    let path = match e {
        Edit::Set(n, _) | Edit::Remove(n) | Edit::Add(n, _, _) => &paths[*n % paths.len()],
    };
    let (last, parent_path) = path.split_last().unwrap();
    let mut parent = &mut *doc;
    for seg in parent_path {
        parent = match parent {
            toml::Value::Table(t) => t.get_mut(seg).unwrap(),
            toml::Value::Array(a) => &mut a[seg.parse::<usize>().unwrap()],
            _ => unreachable!(),
        };
    }
    match (e, parent) {
        (Edit::Set(_, v), toml::Value::Table(t)) => {
            t.insert(last.clone(), v.clone());
        }
        (Edit::Set(_, v), toml::Value::Array(a)) => a[last.parse::<usize>().unwrap()] = v.clone(),
        (Edit::Remove(_), toml::Value::Table(t)) => {
            t.remove(last);
        }
        (Edit::Remove(_), toml::Value::Array(a)) => {
            a.remove(last.parse::<usize>().unwrap());
        }
        (Edit::Add(_, k, v), toml::Value::Table(t)) => match t.get_mut(last) {
            Some(toml::Value::Table(inner)) => {
                inner.insert(k.clone(), v.clone());
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        },
        _ => {}
    }
}

/// Reads `text` as an experiment; panics (failing the property) if the
/// reader panics or an accepted experiment does not read back.
/// Returns whether it was accepted.
fn read(text: &str, registry: &Registry, dir: &Path) -> bool {
    // For hunting crashes that kill the process (an abort, the OOM killer):
    // the input being read is in this file when it dies.
    if let Some(trace) = std::env::var_os("DSNN_FUZZ_TRACE") {
        let mut path = std::path::PathBuf::from(trace);
        path.as_mut_os_string()
            .push(format!(".{:?}", std::thread::current().id()));
        let _ = std::fs::write(path, text);
    }
    let result = catch_unwind(AssertUnwindSafe(|| {
        CheckedExperiment::from_str(text, "fuzz.toml", dir, registry)
    }));
    let Ok(result) = result else {
        panic!("the experiment reader panicked on:\n{text}");
    };
    match result {
        Ok(exp) => {
            let resolved = exp.resolved_toml();
            let again = CheckedExperiment::from_str(&resolved, "resolved.toml", dir, registry)
                .unwrap_or_else(|e| {
                    panic!("an accepted experiment's resolved form is refused: {e}\n{text}")
                });
            assert_eq!(again.resolved_toml(), resolved, "resolving is not stable");
            let _ = exp.describe();
            true
        }
        Err(e) => {
            assert!(!e.message.is_empty(), "an empty error message for:\n{text}");
            assert!(
                e.file.ends_with("fuzz.toml")
                    || e.file.ends_with(".toml")
                    || e.file.ends_with(".json"),
                "an error naming no file ({e}) for:\n{text}"
            );
            false
        }
    }
}

fn mutate_bytes(text: &str, edits: &[(usize, u8, u8)]) -> String {
    let mut b = text.as_bytes().to_vec();
    for &(pos, op, byte) in edits {
        if b.is_empty() {
            b.push(byte);
            continue;
        }
        let i = pos % b.len();
        match op % 4 {
            0 => b[i] = byte,
            1 => {
                b.remove(i);
            }
            2 => b.insert(i, byte),
            _ => b.truncate(i),
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

#[test]
fn the_bases_are_valid() {
    let registry = dsnn::builtins::registry();
    let dir = Scratch::new("dsnn-fuzz-exp");
    for (i, b) in BASES.iter().enumerate() {
        CheckedExperiment::from_str(b, "fuzz.toml", &dir.0, &registry)
            .unwrap_or_else(|e| panic!("base {i}: {e}"));
    }
}

#[test]
fn edited_experiments_are_read_or_refused_cleanly() {
    let registry = dsnn::builtins::registry();
    let dir = Scratch::new("dsnn-fuzz-exp");
    let mut docs: Vec<String> = BASES.iter().map(|s| s.to_string()).collect();
    docs.extend(examples());
    let accepted = AtomicUsize::new(0);
    let total = AtomicUsize::new(0);
    proptest!(fuzz_config(256), |(base in 0..docs.len(), edits in prop::collection::vec(edit(), 0..4))| {
        let mut doc: toml::Value = toml::from_str(&docs[base]).unwrap();
        for e in &edits {
            apply(&mut doc, e);
        }
        // Values toml cannot write (a table after a plain value inside an
        // array of tables) are skipped, not inputs of the reader.
        if let Ok(text) = toml::to_string(&doc) {
            total.fetch_add(1, Ordering::Relaxed);
            if read(&text, &registry, &dir.0) {
                accepted.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    // The edits must leave enough experiments valid to reach the checks
    // behind the first parse.
    let (a, t) = (accepted.into_inner(), total.into_inner());
    assert!(a * 10 >= t, "only {a} of {t} edited experiments were valid");
}

#[test]
fn byte_mutated_and_arbitrary_text_is_refused_cleanly() {
    let registry = dsnn::builtins::registry();
    let dir = Scratch::new("dsnn-fuzz-exp");
    let mut docs: Vec<String> = BASES.iter().map(|s| s.to_string()).collect();
    docs.extend(examples());
    proptest!(fuzz_config(256), |(
        base in 0..docs.len(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
        junk in "\\PC{0,200}",
    )| {
        read(&mutate_bytes(&docs[base], &edits), &registry, &dir.0);
        read(&junk, &registry, &dir.0);
    });
}

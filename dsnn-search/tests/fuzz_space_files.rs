//! Fuzzing the space parsers (TOML and ConfigSpace JSON) with property
//! tests: structured documents built from edge-case fields, byte-mutated
//! valid files and arbitrary text must parse to a space or a clean error,
//! never panic. A space that parses is then used (defaults, sampling,
//! encoding, neighbours) and written back: both writers must produce a file
//! its reader accepts.
//!
//! `DSNN_FUZZ_CASES` sets the cases per property (default 256, a few
//! seconds); `DSNN_FUZZ_CASES=200000 cargo test --release -p dsnn-search
//! --test fuzz_space_files` is a long run (see docs/reliability.md).

use dsnn_search::space::{ConfigurationSpace, SearchSpace};
use proptest::prelude::*;
use proptest::test_runner::Config;
use rand::{rngs::StdRng, Rng, SeedableRng};

fn config() -> Config {
    let cases = std::env::var("DSNN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// A TOML or JSON value of the documents this test writes (TOML can spell
/// NaN and infinities; JSON cannot, and writes them as out-of-range numbers).
#[derive(Debug, Clone)]
enum Lit {
    Int(i128),
    Float(f64),
    Str(String),
    Bool(bool),
    Array(Vec<Lit>),
    Table(Vec<(String, Lit)>),
}

impl Lit {
    fn toml(&self) -> String {
        match self {
            Lit::Int(i) => i.to_string(),
            Lit::Float(f) if f.is_nan() => "nan".into(),
            Lit::Float(f) if f.is_infinite() => if *f > 0.0 { "inf" } else { "-inf" }.into(),
            Lit::Float(f) => format!("{f:?}"),
            Lit::Str(s) => serde_json::to_string(s).unwrap(),
            Lit::Bool(b) => b.to_string(),
            Lit::Array(v) => format!(
                "[{}]",
                v.iter().map(Lit::toml).collect::<Vec<_>>().join(", ")
            ),
            Lit::Table(kv) => format!(
                "{{{}}}",
                kv.iter()
                    .map(|(k, v)| format!("{} = {}", serde_json::to_string(k).unwrap(), v.toml()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    fn json(&self) -> String {
        match self {
            Lit::Int(i) => i.to_string(),
            Lit::Float(f) if f.is_nan() => "1e999".into(),
            Lit::Float(f) if f.is_infinite() => if *f > 0.0 { "1e999" } else { "-1e999" }.into(),
            Lit::Float(f) => format!("{f:?}"),
            Lit::Str(s) => serde_json::to_string(s).unwrap(),
            Lit::Bool(b) => b.to_string(),
            Lit::Array(v) => format!(
                "[{}]",
                v.iter().map(Lit::json).collect::<Vec<_>>().join(", ")
            ),
            Lit::Table(kv) => format!(
                "{{{}}}",
                kv.iter()
                    .map(|(k, v)| format!("{}: {}", serde_json::to_string(k).unwrap(), v.json()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// A TOML document: each top-level key on its own line.
    fn toml_document(&self) -> String {
        let Lit::Table(kv) = self else {
            return self.toml();
        };
        kv.iter()
            .map(|(k, v)| format!("{} = {}\n", serde_json::to_string(k).unwrap(), v.toml()))
            .collect()
    }
}

/// Hyperparameter names: mostly a few shared ones, so that conditions and
/// forbidden clauses refer to hyperparameters that exist.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec!["h0", "h1", "h2", "h3"]).prop_map(String::from),
        1 => Just(String::new()),
        1 => "\\PC{0,12}",
    ]
}

fn number() -> impl Strategy<Value = Lit> {
    let ints: Vec<i128> = vec![
        0,
        1,
        -1,
        2,
        3,
        i64::MAX as i128,
        i64::MIN as i128,
        i64::MAX as i128 + 1,
        1 << 53,
        u64::MAX as i128,
    ];
    let floats = vec![
        0.0,
        -0.0,
        0.5,
        1.0,
        1e-300,
        5e-324,
        1e300,
        f64::MAX,
        -f64::MAX,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        9.223372036854776e18,
    ];
    prop_oneof![
        3 => (-5i128..20).prop_map(Lit::Int),
        1 => prop::sample::select(ints).prop_map(Lit::Int),
        1 => any::<i64>().prop_map(|i| Lit::Int(i.into())),
        2 => (-10.0f64..10.0).prop_map(Lit::Float),
        1 => prop::sample::select(floats).prop_map(Lit::Float),
        1 => any::<f64>().prop_map(Lit::Float),
    ]
}

fn scalar() -> impl Strategy<Value = Lit> {
    prop_oneof![
        3 => number(),
        2 => prop::sample::select(vec!["sgd", "adam", "a", "b", "", "Q", "PS"])
            .prop_map(|s| Lit::Str(s.into())),
        1 => any::<bool>().prop_map(Lit::Bool),
    ]
}

fn field_value() -> impl Strategy<Value = Lit> {
    prop_oneof![
        3 => scalar(),
        2 => prop::collection::vec(scalar(), 0..5).prop_map(Lit::Array),
        1 => Just(Lit::Table(vec![])),
    ]
}

/// Small numbers of either type, for ranges that often make sense.
fn small(int: bool) -> BoxedStrategy<Lit> {
    if int {
        prop_oneof![4 => (-3i128..12).prop_map(Lit::Int), 1 => number()].boxed()
    } else {
        prop_oneof![4 => (-1.0f64..4.0).prop_map(Lit::Float), 1 => number()].boxed()
    }
}

/// The fields a hyperparameter of `kind` needs, well typed and mostly
/// consistent (bounds in order, defaults among the choices), `log_key` and
/// `default_key` spelt as the format wants.
fn fitting_fields(
    kind: Kind,
    default_key: &'static str,
) -> BoxedStrategy<Vec<(&'static str, Lit)>> {
    match kind {
        Kind::Range { int } => (
            small(int),
            small(int),
            any::<bool>(),
            prop::option::weighted(0.3, any::<bool>()),
            prop::option::weighted(0.5, small(int)),
        )
            .prop_map(move |(a, b, swap, log, default)| {
                let (lo, hi) = match (&a, &b) {
                    (Lit::Int(x), Lit::Int(y)) if (x > y) != swap => (b, a),
                    (Lit::Float(x), Lit::Float(y)) if (x > y) != swap => (b, a),
                    _ => (a, b),
                };
                let mut f = vec![("lower", lo), ("upper", hi)];
                f.extend(log.map(|l| ("log", Lit::Bool(l))));
                f.extend(default.map(|d| (default_key, d)));
                f
            })
            .boxed(),
        Kind::Choices { key } => (
            prop::collection::vec(scalar(), 1..5),
            any::<prop::sample::Index>(),
            prop::option::weighted(0.4, Just(())),
            prop::option::weighted(0.3, prop::collection::vec(number(), 1..5)),
        )
            .prop_map(move |(choices, pick, default, weights)| {
                let mut f = Vec::new();
                if default.is_some() {
                    f.push((default_key, pick.get(&choices).clone()));
                }
                if key == "choices" {
                    let w = weights.unwrap_or_default();
                    if !w.is_empty() {
                        f.push(("weights", Lit::Array(w)));
                    }
                }
                f.push((key, Lit::Array(choices)));
                f
            })
            .boxed(),
        Kind::Constant => scalar().prop_map(|v| vec![("value", v)]).boxed(),
    }
}

/// What fields a hyperparameter type needs.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Range { int: bool },
    Choices { key: &'static str },
    Constant,
}

/// Hyperparameter tables: one of `kinds` with its fields, each field
/// sometimes dropped or replaced by any value, and sometimes a key from
/// `extra`; the `i`-th is mostly named `hi` (so that names are distinct
/// and conditions find them).
fn hyperparameters(
    kinds: Vec<(&'static str, Kind)>,
    default_key: &'static str,
    extra: Vec<&'static str>,
) -> impl Strategy<Value = Vec<Lit>> {
    let one = (
        prop::sample::select(kinds),
        prop::option::weighted(0.1, name()),
        prop::option::weighted(0.15, (prop::sample::select(extra), field_value())),
        any::<u64>(),
    )
        .prop_flat_map(move |((kind, shape), rename, extra, noise)| {
            (
                Just(kind),
                Just(rename),
                Just(extra),
                Just(noise),
                fitting_fields(shape, default_key),
                prop::collection::vec(field_value(), 4),
            )
        });
    prop::collection::vec(one, 0..6).prop_map(|hps| {
        hps.into_iter()
            .enumerate()
            .map(|(i, (kind, rename, extra, noise, fields, junk))| {
                let name = rename.unwrap_or_else(|| format!("h{i}"));
                let mut kv = vec![("type".to_string(), Lit::Str(kind.into()))];
                if noise % 23 != 0 {
                    kv.push(("name".into(), Lit::Str(name)));
                }
                for (j, (k, v)) in fields.into_iter().enumerate() {
                    match (noise >> (8 * j)) % 32 {
                        0 => {}
                        1 => kv.push((k.into(), junk[j % 4].clone())),
                        _ => kv.push((k.into(), v)),
                    }
                }
                kv.extend(extra.map(|(k, v)| (k.to_string(), v)));
                Lit::Table(kv)
            })
            .collect()
    })
}

/// Kinds of condition or forbidden-clause leaves, with the name keys each needs.
type Leaves = Vec<(&'static str, &'static [&'static str])>;

/// A condition (or forbidden clause) tree: leaves of `leaf_kinds` (with
/// their name keys and a value or values, sometimes keys from `extra`),
/// nodes of `node_kinds` holding their parts under `parts_key`.
fn clause(
    leaf_kinds: Leaves,
    extra: Vec<&'static str>,
    node_kinds: Vec<&'static str>,
    parts_key: &'static str,
) -> impl Strategy<Value = Lit> {
    let leaf = (
        prop::sample::select(leaf_kinds),
        prop::collection::vec(name(), 3),
        prop::collection::vec((prop::sample::select(extra), name()), 0..2),
        prop::option::weighted(0.7, small(true)),
        prop::option::weighted(0.3, field_value()),
        prop::option::weighted(0.5, prop::collection::vec(scalar(), 0..4)),
    )
        .prop_map(|((kind, needed), names, extra, value, odd_value, values)| {
            let mut kv = vec![("type".to_string(), Lit::Str(kind.into()))];
            let keys = needed.iter().copied().zip(names).chain(extra);
            for (k, n) in keys {
                if !kv.iter().any(|(have, _)| have == k) {
                    kv.push((k.into(), Lit::Str(n)));
                }
            }
            if let Some(v) = odd_value.or(value) {
                kv.push(("value".into(), v));
            }
            if let Some(v) = values {
                kv.push(("values".into(), Lit::Array(v)));
            }
            Lit::Table(kv)
        });
    leaf.prop_recursive(3, 12, 4, move |inner| {
        (
            prop::sample::select(node_kinds.clone()),
            prop::collection::vec(inner, 0..4),
        )
            .prop_map(move |(kind, parts)| {
                Lit::Table(vec![
                    ("type".into(), Lit::Str(kind.into())),
                    (parts_key.into(), Lit::Array(parts)),
                ])
            })
    })
}

const CHILD: &[&str] = &["child", "parent"];
const NAME: &[&str] = &["name"];
const SIDES: &[&str] = &["left", "right"];

fn toml_space() -> impl Strategy<Value = Lit> {
    let range = |int| Kind::Range { int };
    let hps = hyperparameters(
        vec![
            ("float", range(false)),
            ("int", range(true)),
            ("categorical", Kind::Choices { key: "choices" }),
            ("ordinal", Kind::Choices { key: "sequence" }),
            ("constant", Kind::Constant),
            ("normal", range(false)),
        ],
        "default",
        vec![
            "lower", "upper", "log", "default", "choices", "weights", "sequence", "value", "q",
        ],
    );
    let cond = clause(
        vec![
            ("equals", CHILD),
            ("not_equals", CHILD),
            ("less_than", CHILD),
            ("greater_than", CHILD),
            ("in", CHILD),
        ],
        vec!["child", "parent", "name"],
        vec!["and", "or"],
        "conditions",
    );
    let forb = clause(
        vec![
            ("equals", NAME),
            ("in", NAME),
            ("less_than_relation", SIDES),
            ("equals_relation", SIDES),
            ("greater_than_relation", SIDES),
        ],
        vec!["name", "left", "right"],
        vec!["and"],
        "clauses",
    );
    space_document(hps, cond, forb, "forbidden")
}

fn configspace_space() -> impl Strategy<Value = Lit> {
    let range = |int| Kind::Range { int };
    let hps = hyperparameters(
        vec![
            ("uniform_float", range(false)),
            ("normal_float", range(false)),
            ("beta_float", range(false)),
            ("uniform_int", range(true)),
            ("normal_int", range(true)),
            ("beta_int", range(true)),
            ("categorical", Kind::Choices { key: "choices" }),
            ("ordinal", Kind::Choices { key: "sequence" }),
            ("constant", Kind::Constant),
            ("unparametrized", Kind::Constant),
        ],
        "default_value",
        vec![
            "lower",
            "upper",
            "log",
            "default",
            "q",
            "weights",
            "probabilities",
            "value",
            "meta",
        ],
    );
    let cond = clause(
        vec![
            ("EQ", CHILD),
            ("NEQ", CHILD),
            ("LT", CHILD),
            ("GT", CHILD),
            ("IN", CHILD),
        ],
        vec!["child", "parent"],
        vec!["AND", "OR"],
        "conditions",
    );
    let forb = clause(
        vec![
            ("EQUALS", NAME),
            ("IN", NAME),
            ("RELATION_LT", SIDES),
            ("RELATION_EQ", SIDES),
            ("RELATION_GT", SIDES),
            ("RELATION", &["left", "right", "lambda"]),
        ],
        vec!["name", "left", "right", "lambda"],
        vec!["AND"],
        "clauses",
    );
    space_document(hps, cond, forb, "forbiddens")
}

fn space_document(
    hps: impl Strategy<Value = Vec<Lit>>,
    cond: impl Strategy<Value = Lit>,
    forb: impl Strategy<Value = Lit>,
    forbidden_key: &'static str,
) -> impl Strategy<Value = Lit> {
    (
        prop::option::of(name()),
        hps,
        prop_oneof![2 => Just(vec![]), 1 => prop::collection::vec(cond, 1..3)],
        prop_oneof![2 => Just(vec![]), 1 => prop::collection::vec(forb, 1..3)],
    )
        .prop_map(move |(name, hps, conds, forbs)| {
            let mut kv = Vec::new();
            if let Some(n) = name {
                kv.push(("name".to_string(), Lit::Str(n)));
            }
            kv.push(("hyperparameters".into(), Lit::Array(hps)));
            if !conds.is_empty() {
                kv.push(("conditions".into(), Lit::Array(conds)));
            }
            if !forbs.is_empty() {
                kv.push((forbidden_key.into(), Lit::Array(forbs)));
            }
            Lit::Table(kv)
        })
}

/// Byte edits of a valid file: flips, deletions, insertions of syntax
/// and numbers, and duplicated spans.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Delete(usize, usize),
    Insert(usize, &'static str),
    Duplicate(usize, usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let snippets = vec![
        "\"",
        "[",
        "]",
        "{",
        "}",
        ",",
        "=",
        ":",
        "\n",
        "-",
        "0",
        "1e999",
        "-1e999",
        "nan",
        "inf",
        "9223372036854775808",
        "-9223372036854775809",
        "1e300",
        "null",
        "true",
        "\"\"",
        "[]",
        "{}",
        "\\u0000",
        "\u{fffd}",
        "0.0",
    ];
    let edit = prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, x)| Edit::Flip(at, x)),
        (any::<usize>(), 1usize..16).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<usize>(), prop::sample::select(snippets)).prop_map(|(at, s)| Edit::Insert(at, s)),
        (any::<usize>(), 1usize..200).prop_map(|(at, n)| Edit::Duplicate(at, n)),
    ];
    prop::collection::vec(edit, 1..6)
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut b = text.as_bytes().to_vec();
    for e in edits {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match *e {
            Edit::Flip(i, x) if !b.is_empty() => {
                let i = i % b.len();
                b[i] ^= x;
            }
            Edit::Flip(..) => {}
            Edit::Delete(i, n) => {
                let i = at(i, b.len());
                let end = (i + n).min(b.len());
                b.drain(i..end);
            }
            Edit::Insert(i, s) => {
                let i = at(i, b.len());
                b.splice(i..i, s.bytes());
            }
            Edit::Duplicate(i, n) => {
                let i = at(i, b.len());
                let span = b[i..(i + n).min(b.len())].to_vec();
                b.splice(i..i, span);
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

const VALID_TOML: &str = r#"
name = "fuzz"
[[hyperparameters]]
name = "opt"
type = "categorical"
choices = ["sgd", "adam", "rmsprop"]
weights = [1.0, 2.0, 1.0]

[[hyperparameters]]
name = "momentum"
type = "float"
lower = 0
upper = 0.9
default = 0.5

[[hyperparameters]]
name = "lr"
type = "float"
lower = 1e-4
upper = 0.5
log = true

[[hyperparameters]]
name = "bits"
type = "int"
lower = 2
upper = 8
log = true

[[hyperparameters]]
name = "width"
type = "ordinal"
sequence = [8, 16, 32]

[[hyperparameters]]
name = "seed"
type = "constant"
value = 3

[[conditions]]
type = "in"
child = "momentum"
parent = "opt"
values = ["sgd", "rmsprop"]

[[conditions]]
type = "or"
conditions = [ { type = "greater_than", child = "width", parent = "bits", value = 3 },
               { type = "equals", child = "width", parent = "bits", value = 2 } ]

[[forbidden]]
type = "and"
clauses = [ { type = "equals", name = "opt", value = "adam" }, { type = "in", name = "bits", values = [7, 8] } ]

[[forbidden]]
type = "less_than_relation"
left = "bits"
right = "seed"
"#;

fn valid_json() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut texts: Vec<String> = ["mlp_configspace_0x.json", "svm_configspace_1x.json"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
        .collect();
    let space = ConfigurationSpace::from_toml_str(VALID_TOML).unwrap();
    texts.push(space.to_configspace_json().unwrap());
    texts
}

/// Uses a space as an optimizer would, then writes it both ways and reads
/// it back: every step must return, and each written file must be accepted.
fn exercise(space: &ConfigurationSpace, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let default = space.default_configuration();
    let _ = space.validate(&default);
    let _ = space.encode(&default);
    for _ in 0..3 {
        let Ok(c) = space.sample(&mut rng) else {
            continue;
        };
        space
            .validate(&c)
            .expect("a sampled configuration is valid");
        let u = space.encode(&c).expect("a sampled configuration encodes");
        let back = space.decode(&u).expect("an encoding decodes");
        let _ = space.validate(&back);
        let _ = space.neighbours(&c, &mut rng, 2);
    }
    let dim = space.dim();
    for _ in 0..3 {
        let u: Vec<f64> = (0..dim)
            .map(|_| match rng.random_range(0..6) {
                0 => f64::NAN,
                1 => -1.0,
                2 => 2.0,
                _ => rng.random(),
            })
            .collect();
        let _ = space.canonical_encoding(&u);
    }
    let toml = space
        .to_toml_string()
        .expect("a valid space writes as TOML");
    if let Err(e) = ConfigurationSpace::from_toml_str(&toml) {
        panic!("the TOML this space writes is refused: {e}\n{toml}");
    }
    let json = space
        .to_configspace_json()
        .expect("a valid space writes as ConfigSpace JSON");
    if let Err(e) = ConfigurationSpace::from_configspace_json(&json) {
        panic!("the ConfigSpace JSON this space writes is refused: {e}\n{json}");
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn structured_toml_spaces_parse_or_fail_cleanly(doc in toml_space(), seed in any::<u64>()) {
        if let Ok(space) = ConfigurationSpace::from_toml_str(&doc.toml_document()) {
            exercise(&space, seed);
        }
    }

    #[test]
    fn structured_configspace_json_parses_or_fails_cleanly(
        doc in configspace_space(),
        seed in any::<u64>(),
    ) {
        if let Ok(space) = ConfigurationSpace::from_configspace_json(&doc.json()) {
            exercise(&space, seed);
        }
    }

    #[test]
    fn mutated_toml_parses_or_fails_cleanly(edits in edits(), seed in any::<u64>()) {
        if let Ok(space) = ConfigurationSpace::from_toml_str(&apply(VALID_TOML, &edits)) {
            exercise(&space, seed);
        }
    }

    #[test]
    fn mutated_configspace_json_parses_or_fails_cleanly(
        which in 0usize..3,
        edits in edits(),
        seed in any::<u64>(),
    ) {
        let text = &valid_json()[which];
        if let Ok(space) = ConfigurationSpace::from_configspace_json(&apply(text, &edits)) {
            exercise(&space, seed);
        }
    }

    #[test]
    fn arbitrary_text_parses_or_fails_cleanly(text in "\\PC{0,300}") {
        let _ = ConfigurationSpace::from_toml_str(&text);
        let _ = ConfigurationSpace::from_configspace_json(&text);
    }
}

/// Deep nesting must be refused by the parsers' recursion limits, not
/// overflow the stack.
#[test]
fn deeply_nested_documents_fail_cleanly() {
    for depth in [100, 10_000, 100_000] {
        let toml = format!(
            "hyperparameters = {}{}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        assert!(ConfigurationSpace::from_toml_str(&toml).is_err());
        let cond = "{\"type\": \"AND\", \"conditions\": [".repeat(depth) + &"]}".repeat(depth);
        let json = format!("{{\"hyperparameters\": [], \"conditions\": [{cond}]}}");
        assert!(ConfigurationSpace::from_configspace_json(&json).is_err());
        let toml = format!(
            "hyperparameters = []\nconditions = [{}{}]",
            "{type = \"and\", conditions = [".repeat(depth),
            "]}".repeat(depth)
        );
        assert!(ConfigurationSpace::from_toml_str(&toml).is_err());
    }
}

/// The structured generators reach the code behind the parsers: a good
/// share of their documents are valid spaces (else the fuzzing above would
/// only test the first field checks).
#[test]
fn structured_documents_are_often_valid_spaces() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (toml, json) = (toml_space(), configspace_space());
    let (mut toml_ok, mut json_ok) = (0, 0);
    let useful = |s: Result<ConfigurationSpace, _>| usize::from(s.is_ok_and(|s| s.dim() >= 2));
    for _ in 0..2000 {
        let doc = toml.new_tree(&mut runner).unwrap().current();
        toml_ok += useful(ConfigurationSpace::from_toml_str(&doc.toml_document()));
        let doc = json.new_tree(&mut runner).unwrap().current();
        json_ok += useful(ConfigurationSpace::from_configspace_json(&doc.json()));
    }
    eprintln!("valid spaces of 2 or more hyperparameters, of 2000: TOML {toml_ok}, ConfigSpace JSON {json_ok}");
    assert!(
        toml_ok >= 20 && json_ok >= 20,
        "TOML {toml_ok}, JSON {json_ok}"
    );
}

/// Found by the fuzzer: an integer range wider than `i64` (its bin count
/// overflowed when the space was used) is refused when read, as is any bound
/// beyond 2^53, where the unit-cube encoding is no longer exact.
#[test]
fn integer_ranges_beyond_2_pow_53_are_refused() {
    for (lo, hi) in [(i64::MIN, i64::MAX), (0, (1 << 53) + 1), (-(1 << 60), 0)] {
        let text = format!(
            "[[hyperparameters]]\nname = \"n\"\ntype = \"int\"\nlower = {lo}\nupper = {hi}\n"
        );
        let e = ConfigurationSpace::from_toml_str(&text).unwrap_err();
        assert!(e.to_string().contains("within +-2^53"), "{e}");
    }
    let json = r#"{"hyperparameters": [{"name": "n", "type": "uniform_int",
        "lower": -9223372036854775808, "upper": 9223372036854775807}]}"#;
    let e = ConfigurationSpace::from_configspace_json(json).unwrap_err();
    assert!(e.to_string().contains("within +-2^53"), "{e}");
    let edge = "[[hyperparameters]]\nname = \"n\"\ntype = \"int\"\nlower = -9007199254740992\nupper = 9007199254740992\n";
    ConfigurationSpace::from_toml_str(edge).unwrap();
}

/// Found by the fuzzer: a NaN or infinite choice read from TOML was
/// written to ConfigSpace JSON as `null`, which no reader accepts.
#[test]
fn non_finite_choices_are_refused() {
    for (kind, key, value) in [
        ("categorical", "choices", "[1.0, nan]"),
        ("ordinal", "sequence", "[inf, 2]"),
        ("constant", "value", "-inf"),
    ] {
        let text =
            format!("[[hyperparameters]]\nname = \"x\"\ntype = \"{kind}\"\n{key} = {value}\n");
        let e = ConfigurationSpace::from_toml_str(&text).unwrap_err();
        assert!(
            e.to_string().contains("must be finite numbers"),
            "{kind}: {e}"
        );
    }
}

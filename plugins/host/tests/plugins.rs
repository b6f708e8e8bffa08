//! Loading the bundled plugins and the test fixtures from a temporary
//! plugins directory, as a user would after building them.
//!
//! The plugin crates are dev-dependencies of this crate (built as both
//! `cdylib` and `rlib`), so `cargo test` builds their dynamic libraries next
//! to this test binary; each test links or copies the ones it needs into
//! its own directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dsnn_energy::{EnergyError, Provenance};
use dsnn_plugin_host::{PluginError, PluginHost, PluginKind, RunContext};
use dsnn_search::problems::{ProblemKind, TestProblem};
use dsnn_search::{
    pareto, replay, Hyperband, HyperbandOptimizer, Optimizer, OptimizerError, Outcome,
    RandomSearch, Recorded, SearchSpace,
};

const MOEAD: &str = "dsnn_plugin_moead";
const EXAMPLE: &str = "dsnn_plugin_example";
const METER: &str = "dsnn_plugin_constant_power";
const OTHER_VERSION: &str = "dsnn_fixture_other_version";
const BAD_LAYOUT: &str = "dsnn_fixture_bad_layout";
const NOT_A_PLUGIN: &str = "dsnn_fixture_not_a_plugin";
const PANICKY: &str = "dsnn_fixture_panicky";

fn file_name(lib: &str) -> String {
    format!(
        "{}{lib}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// The library built by cargo for the crate whose library is named `lib`.
fn built(lib: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps directory");
    for dir in [deps, deps.parent().expect("profile directory")] {
        let p = dir.join(file_name(lib));
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{} not built next to {}; is its crate a dev-dependency?",
        file_name(lib),
        deps.display()
    );
}

/// A fresh plugins directory holding the given libraries (hard links where
/// possible, copies otherwise).
fn plugin_dir(libs: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("plugins-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temporary directory");
    for lib in libs {
        let from = built(lib);
        let to = dir.path().join(file_name(lib));
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).expect("copy plugin");
        }
    }
    dir
}

fn host(dir: &Path) -> PluginHost {
    PluginHost::new(vec![dir.to_path_buf()])
}

fn unwrap_err<T>(r: Result<T, OptimizerError>) -> OptimizerError {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

#[test]
fn list_describes_plugins_and_explains_unusable_libraries_in_one_line() {
    let dir = plugin_dir(&[
        MOEAD,
        EXAMPLE,
        METER,
        OTHER_VERSION,
        BAD_LAYOUT,
        NOT_A_PLUGIN,
    ]);
    std::fs::write(dir.path().join(file_name("garbage")), "not a library").unwrap();
    std::fs::write(dir.path().join("README.txt"), "ignored").unwrap();
    let entries = host(dir.path()).list();
    assert_eq!(entries.len(), 7, "README.txt is not a candidate");

    let find = |lib: &str| {
        entries
            .iter()
            .find(|e| e.path.file_name().unwrap().to_str() == Some(&file_name(lib)))
            .unwrap_or_else(|| panic!("{lib} listed"))
    };
    for (lib, name, kind) in [
        (MOEAD, "moead", PluginKind::Optimizer),
        (EXAMPLE, "example", PluginKind::Optimizer),
        (METER, "constant-power", PluginKind::Meter),
    ] {
        let info = find(lib).status.as_ref().expect("loads");
        assert_eq!(info.name, name);
        assert_eq!(info.kind, kind);
        assert_eq!(info.interface_version, dsnn_plugin_api::INTERFACE_VERSION);
        assert!(!info.description.is_empty());
    }

    let reasons = [
        (OTHER_VERSION, "built against dsnn plugin interface 2.0.0"),
        (BAD_LAYOUT, "whose types differ from this host's"),
        (NOT_A_PLUGIN, "not a dsnn plugin"),
        ("garbage", "not a loadable dynamic library"),
    ];
    for (lib, expected) in reasons {
        let reason = find(lib).status.as_ref().expect_err("unusable");
        assert!(reason.contains(expected), "{lib}: {reason}");
        assert!(
            !reason.contains('\n') && reason.len() < 300,
            "one line: {reason}"
        );
    }
    let other = find(OTHER_VERSION).status.as_ref().unwrap_err();
    assert!(
        other.contains(&format!("interface {}", dsnn_plugin_api::INTERFACE_VERSION)),
        "{other}"
    );

    // The host goes on: the good plugins in the same directory still load.
    let p = TestProblem::zdt1();
    let mut opt = host(dir.path())
        .load_optimizer("moead", &p.space(), "", 1)
        .unwrap();
    assert_eq!(opt.ask(3).unwrap().len(), 3);
}

/// Non-dominated hypervolume of `points` at `reference`.
fn hv(points: &[Vec<f64>], reference: &[f64]) -> f64 {
    pareto::hypervolume(points, reference)
}

#[test]
fn moead_plugin_beats_random_search_on_zdt1_and_replays() {
    let dir = plugin_dir(&[MOEAD]);
    let p = TestProblem::new(ProblemKind::Zdt1, 10, 2);
    let space = p.space();
    let settings = "population = 40\nneighbours = 8";
    let evaluations = 4000;
    let mut opt = Recorded::new(
        host(dir.path())
            .load_optimizer("moead", &space, settings, 11)
            .unwrap(),
    );
    assert!(opt.name().starts_with("moead(N=40"), "{}", opt.name());
    let found = p.minimise(&mut opt, evaluations, 8).unwrap();

    let mut random = RandomSearch::random(Arc::new(space.clone()), 1.0, 11);
    let baseline = p.minimise(&mut random, evaluations, 8).unwrap();

    // Near the true front (reference 1.1, 1.1), where random search finds
    // nothing at all, and against random search at a reference it reaches.
    let best = p.optimal_hypervolume().unwrap();
    let hv_moead = hv(&found, &[1.1, 1.1]);
    assert!(hv_moead > 0.9 * best, "MOEA/D {hv_moead} vs optimum {best}");
    let wide = [1.1, 10.0];
    let (wide_moead, wide_random) = (hv(&found, &wide), hv(&baseline, &wide));
    eprintln!(
        "ZDT1 (10 variables), {evaluations} evaluations: MOEA/D {hv_moead:.4} (optimum {best:.4}); \
         at (1.1, 10): MOEA/D {wide_moead:.3}, random search {wide_random:.3}"
    );
    assert!(
        wide_random > 0.0,
        "the wide reference is reachable by random search"
    );
    assert!(
        wide_moead > wide_random + 1.0,
        "MOEA/D {wide_moead} vs random search {wide_random}"
    );

    // Same seed, same asks and tells: the same trials (what resuming a run
    // from its trial log relies on).
    let mut again = host(dir.path())
        .load_optimizer("moead", &space, settings, 11)
        .unwrap();
    replay(&mut *again, opt.events()).unwrap();
}

#[test]
fn example_plugin_runs_a_short_search_beside_moead() {
    let dir = plugin_dir(&[EXAMPLE, MOEAD]);
    let h = host(dir.path());
    let p = TestProblem::new(ProblemKind::Zdt1, 5, 2);
    let space = p.space();
    // Two plugins of the same interface, each from its own library.
    let mut example = h
        .load_optimizer("example", &space, "random_trials = 20", 5)
        .unwrap();
    let mut moead = h.load_optimizer("moead", &space, "", 5).unwrap();
    assert_eq!(example.name(), "example-local-search");
    assert!(moead.name().starts_with("moead("));
    assert_eq!(moead.ask(2).unwrap().len(), 2);

    let trials = example.ask(4).unwrap();
    assert_eq!(trials.len(), 4);
    assert!(trials.iter().all(|t| t.budget == 1.0));
    for t in &trials {
        space.validate(&t.config).unwrap();
    }
    // A failure is accepted and counts for nothing.
    example
        .tell(trials[0].id, Outcome::Failure("crashed".into()))
        .unwrap();
    for t in &trials[1..] {
        example
            .tell(t.id, Outcome::Success(p.evaluate_config(&t.config)))
            .unwrap();
    }
    assert!(matches!(
        example.tell(trials[1].id, Outcome::Success(vec![1.0, 1.0])),
        Err(OptimizerError::UnknownTrial(_))
    ));
    let f = p.minimise(&mut *example, 400, 4).unwrap();
    let reference = [1.1, 1.1];
    let first = hv(&f[..20], &reference);
    let all = hv(&f, &reference);
    assert!(
        all > first + 0.05,
        "local search improved nothing: {first} -> {all}"
    );
}

#[test]
fn bad_settings_unknown_names_and_wrong_kinds_are_clear_errors() {
    let dir = plugin_dir(&[MOEAD, METER, OTHER_VERSION]);
    let h = host(dir.path());
    let space = TestProblem::zdt1().space();
    match h.load_optimizer("moead", &space, "neighbors = 3", 1) {
        Err(PluginError::Create { name, message, .. }) => {
            assert_eq!(name, "moead");
            assert!(message.contains("`neighbors`"), "{message}");
        }
        other => panic!("expected a create error, got {:?}", other.err()),
    }
    let e = h.load_optimizer("nsga3", &space, "", 1).err().unwrap();
    let text = e.to_string();
    assert!(matches!(e, PluginError::NotFound { .. }), "{text}");
    assert!(text.contains("moead (optimizer)"), "{text}");
    assert!(
        text.contains("interface 2.0.0"),
        "unusable ones are named: {text}"
    );
    let e = h.load_meter("moead", "").err().unwrap();
    assert!(
        matches!(
            e,
            PluginError::WrongKind {
                found: PluginKind::Optimizer,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn panic_in_ask_is_reported_and_the_log_stays_intact() {
    let dir = plugin_dir(&[PANICKY, MOEAD]);
    let h = host(dir.path());
    let p = TestProblem::zdt1();
    let mut opt = Recorded::new(
        h.load_optimizer("panicky", &p.space(), "panic_in = 'ask'\nafter = 2", 3)
            .unwrap(),
    );
    for _ in 0..2 {
        for t in opt.ask(2).unwrap() {
            opt.tell(t.id, Outcome::Success(p.evaluate_config(&t.config)))
                .unwrap();
        }
    }
    let e = unwrap_err(opt.ask(2));
    let text = e.to_string();
    assert!(matches!(e, OptimizerError::Plugin(_)), "{text}");
    assert!(text.contains("`panicky` panicked in ask"), "{text}");
    assert!(
        text.contains("told to panic in ask after 2 calls"),
        "{text}"
    );
    // The instance refuses further work instead of running on in an unknown state.
    let again = unwrap_err(opt.ask(1)).to_string();
    assert!(again.contains("unusable after an earlier panic"), "{again}");
    // Everything before the panic is recorded: 2 asks and 4 tells.
    assert_eq!(opt.events().len(), 6);
    // The host is fine: other plugins still load and run.
    let mut moead = h.load_optimizer("moead", &p.space(), "", 3).unwrap();
    assert_eq!(moead.ask(1).unwrap().len(), 1);
}

#[test]
fn panic_in_tell_and_in_create_are_reported() {
    let dir = plugin_dir(&[PANICKY]);
    let h = host(dir.path());
    let p = TestProblem::zdt1();
    let mut opt = h
        .load_optimizer("panicky", &p.space(), "panic_in = 'tell'\nafter = 1", 3)
        .unwrap();
    let trials = opt.ask(3).unwrap();
    let f = |i: usize| Outcome::Success(p.evaluate_config(&trials[i].config));
    opt.tell(trials[0].id, f(0)).unwrap();
    let text = unwrap_err(opt.tell(trials[1].id, f(1))).to_string();
    assert!(text.contains("`panicky` panicked in tell"), "{text}");
    let text = unwrap_err(opt.tell(trials[2].id, f(2))).to_string();
    assert!(text.contains("unusable after an earlier panic"), "{text}");

    match h.load_optimizer("panicky", &p.space(), "panic_in = 'create'", 3) {
        Err(PluginError::Create { message, .. }) => {
            assert!(message.contains("panicked in create"), "{message}")
        }
        other => panic!("expected a create error, got {:?}", other.err()),
    }
}

#[test]
fn meter_plugin_measures_a_region() {
    let dir = plugin_dir(&[METER]);
    let h = host(dir.path());
    let mut m = h.load_meter("constant-power", "watts = 50.0").unwrap();
    assert_eq!(m.name(), "constant-power");
    assert!(matches!(m.stop(), Err(EnergyError::NotStarted(_))));
    m.start().unwrap();
    assert!(matches!(m.start(), Err(EnergyError::AlreadyStarted(_))));
    std::thread::sleep(std::time::Duration::from_millis(30));
    let r = m.stop().unwrap();
    let wall = r.wall.as_secs_f64();
    assert!(wall >= 0.03, "{wall}");
    assert!(
        (r.joules() - 50.0 * wall).abs() < 1e-6,
        "{} J over {wall} s",
        r.joules()
    );
    assert_eq!(r.provenance, Provenance::Estimated);
    assert_eq!(r.source, "constant-power:50W");

    let e = h
        .load_meter("constant-power", "")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("needs `watts`"), "{e}");
}

#[test]
fn standard_directories_come_in_order_of_precedence() {
    let base = tempfile::tempdir().unwrap();
    let a = plugin_dir(&[EXAMPLE]);
    let b = plugin_dir(&[EXAMPLE]);
    std::fs::create_dir(base.path().join("plugins")).unwrap();
    // A DSNN_PLUGIN_PATH value, given directly: setting the variable would
    // race with the other tests' threads.
    let path_value = std::ffi::OsString::from(format!("{}:", b.path().display()));
    let h = PluginHost::standard_with_path(
        base.path(),
        &[a.path().to_path_buf()],
        dsnn_plugin_host::split_plugin_path(Some(&path_value)),
    );
    assert_eq!(
        h.dirs(),
        &[
            base.path().join("plugins"),
            a.path().to_path_buf(),
            b.path().to_path_buf()
        ]
    );
    let files = h.library_files();
    assert_eq!(files.len(), 2);
    assert!(files[0].starts_with(a.path()) && files[1].starts_with(b.path()));
    assert!(h.list().iter().all(|e| e.status.is_ok()));
}

#[test]
fn integer_string_and_conditional_values_cross_the_boundary() {
    let dir = plugin_dir(&[EXAMPLE, MOEAD]);
    let space = dsnn_search::ConfigurationSpace::from_toml_str(
        r#"
        [[hyperparameters]]
        name = "optimizer"
        type = "categorical"
        choices = ["sgd", "adam"]
        [[hyperparameters]]
        name = "momentum"
        type = "float"
        lower = 0.0
        upper = 0.99
        [[hyperparameters]]
        name = "weight_bits"
        type = "int"
        lower = 2
        upper = 8
        [[hyperparameters]]
        name = "lr"
        type = "float"
        lower = 0.0001
        upper = 0.1
        log = true
        [[conditions]]
        child = "momentum"
        parent = "optimizer"
        type = "equals"
        value = "sgd"
        "#,
    )
    .unwrap();
    for name in ["example", "moead"] {
        let mut opt = host(dir.path())
            .load_optimizer(name, &space, "", 2)
            .unwrap();
        let (mut sgd, mut adam) = (0, 0);
        for round in 0..30 {
            let trials = opt.ask(4).unwrap();
            assert!(!trials.is_empty(), "{name} round {round}");
            for t in trials {
                // The adapter already validated the configuration; check the
                // types came through as integers and strings.
                assert!(t.config.get_i64("weight_bits").is_some(), "{}", t.config);
                match t.config.get_str("optimizer").unwrap() {
                    "sgd" => {
                        assert!(t.config.get_f64("momentum").is_some());
                        sgd += 1;
                    }
                    _ => {
                        assert!(t.config.get("momentum").is_none());
                        adam += 1;
                    }
                }
                let bits = t.config.get_i64("weight_bits").unwrap() as f64;
                let lr = t.config.get_f64("lr").unwrap();
                let outcome = if lr > 0.08 {
                    Outcome::Failure("diverged".into())
                } else {
                    Outcome::Success(vec![(lr.ln() + 5.0).abs(), bits])
                };
                opt.tell(t.id, outcome).unwrap();
            }
        }
        assert!(sgd > 0 && adam > 0, "{name}: sgd {sgd}, adam {adam}");
    }
}

/// Builds the fixture workspace `plugins/fixtures/NAME` as its author
/// would, with its own cargo call (it lives outside the workspace, with its
/// own copy of dsnn-plugin-api), and returns a plugins directory holding
/// its library `lib`.
fn fixture_plugin_dir(name: &str, lib: &str) -> tempfile::TempDir {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name);
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["build", "--locked", "--quiet", "--manifest-path"])
        .arg(fixture.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .output()
        .expect("running cargo");
    assert!(
        out.status.success(),
        "building the {name} fixture failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = plugin_dir(&[]);
    let file = file_name(lib);
    std::fs::copy(target.join("debug").join(&file), dir.path().join(&file)).unwrap();
    dir
}

/// Drives `opt` on `p` for `rounds` rounds of `batch` trials; returns the
/// budgets of the trials asked for.
fn drive(opt: &mut dyn Optimizer, p: &TestProblem, rounds: usize, batch: usize) -> Vec<f64> {
    let mut budgets = Vec::new();
    for _ in 0..rounds {
        for t in opt.ask(batch).unwrap() {
            budgets.push(t.budget);
            let f = p.evaluate_config(&t.config);
            opt.tell(t.id, Outcome::Success(f)).unwrap();
        }
    }
    budgets
}

#[test]
fn a_plugin_of_a_newer_minor_interface_loads_and_runs() {
    // Built against dsnn-plugin-api as a 1.2.0 might be: one more
    // root-module field after those of 1.1.
    let dir = fixture_plugin_dir("interface-1.2", "dsnn_fixture_interface_1_2");
    let h = host(dir.path());
    let entries = h.list();
    assert_eq!(entries.len(), 1);
    let info = entries[0].status.as_ref().expect("loads");
    assert_eq!(info.name, "interface-1.2");
    assert_eq!(info.interface_version, "1.2.0");
    assert!(info.proposer, "its 1.1 field `create_proposer` is read");
    assert_eq!(dsnn_plugin_api::INTERFACE_VERSION, "1.1.0");

    // Without a context: `create`, whose settings set the budget.
    let p = TestProblem::zdt1();
    let mut opt = h
        .load_optimizer("interface-1.2", &p.space(), "budget = 2.0", 3)
        .unwrap();
    assert!(drive(&mut *opt, &p, 5, 4).iter().all(|&b| b == 2.0));
    // With one: `create_with_context`, at the run's budget.
    let context = RunContext::fixed(2, 3.0);
    let mut opt = h
        .load_optimizer_in("interface-1.2", &p.space(), "", 3, &context)
        .unwrap();
    assert!(drive(&mut *opt, &p, 5, 4).iter().all(|&b| b == 3.0));
    // And its proposer under Hyperband.
    let schedule = Hyperband::new(1.0, 9.0, 3.0).unwrap();
    let context = RunContext {
        objectives: 2,
        min_budget: 1.0,
        max_budget: 9.0,
        multi_fidelity: true,
    };
    let proposer = h
        .load_proposer("interface-1.2", &p.space(), "", 3, &context)
        .unwrap();
    let mut opt = HyperbandOptimizer::new(&schedule, proposer, 3).unwrap();
    let budgets = drive(&mut opt, &p, 40, 4);
    for b in [1.0, 3.0, 9.0] {
        assert!(budgets.contains(&b), "budget {b} in {budgets:?}");
    }
}

#[test]
fn a_plugin_built_against_interface_1_0_loads_and_runs() {
    // The fixture is a real 1.0 plugin: built against a frozen copy of
    // dsnn-plugin-api 1.0.0, whose optimizer root module has three fields.
    let dir = fixture_plugin_dir("interface-1.0", "dsnn_fixture_interface_1_0");
    let lib = dir.path().join(file_name("dsnn_fixture_interface_1_0"));

    // What abi_stable alone says: the 1.0 root module does not pass the
    // check against the 1.1 layout, but passes against the frozen 1.0 one.
    {
        use dsnn_plugin_api::abi_stable::library::{abi_header_from_raw_library, RawLibrary};
        let raw: &'static RawLibrary = Box::leak(Box::new(RawLibrary::load_at(&lib).unwrap()));
        // SAFETY: the library is never unloaded (leaked above).
        let header = unsafe { abi_header_from_raw_library(raw) }
            .unwrap()
            .upgrade()
            .unwrap();
        let refused = header
            .ensure_layout::<dsnn_plugin_api::OptimizerPluginRef>()
            .expect_err("a 1.0 root module against the 1.1 layout");
        // abi_stable's words for a prefix type with fewer fields than the
        // host's (its FieldCountMismatch).
        assert!(refused.to_string().contains("too many fields"), "{refused}");
        header
            .ensure_layout::<dsnn_plugin_api::v1_0::OptimizerPluginRef>()
            .expect("the frozen 1.0 layout");
    }

    let h = host(dir.path());
    let entries = h.list();
    assert_eq!(entries.len(), 1);
    let info = entries[0].status.as_ref().expect("loads");
    assert_eq!(info.name, "interface-1.0");
    assert_eq!(info.interface_version, "1.0.0");
    assert!(!info.proposer);

    // A 1.0 plugin is told nothing: `create` with its own settings, even
    // when the host has a context to give.
    let p = TestProblem::zdt1();
    let context = RunContext::fixed(2, 2.0);
    let mut opt = Recorded::new(
        h.load_optimizer_in("interface-1.0", &p.space(), "budget = 2.0", 7, &context)
            .unwrap(),
    );
    assert!(drive(&mut opt, &p, 5, 4).iter().all(|&b| b == 2.0));
    // Deterministic: a fresh instance replays the log (what resume needs).
    let mut again = h
        .load_optimizer("interface-1.0", &p.space(), "budget = 2.0", 7)
        .unwrap();
    replay(&mut *again, opt.events()).unwrap();
    // Its settings are still checked by the plugin.
    match h.load_optimizer_in("interface-1.0", &p.space(), "budgt = 2.0", 7, &context) {
        Err(PluginError::Create { message, .. }) => {
            assert!(message.contains("`budgt`"), "{message}")
        }
        other => panic!("expected a create error, got {:?}", other.err()),
    }
    // It has no proposer: a clear error, not a crash.
    let e = h
        .load_proposer("interface-1.0", &p.space(), "", 7, &context)
        .err()
        .unwrap();
    assert!(matches!(e, PluginError::NoProposer { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("interface 1.0.0") && text.contains("fixed"),
        "{text}"
    );
}

#[test]
fn the_example_proposer_runs_under_hyperband_and_improves_on_its_random_start() {
    let dir = plugin_dir(&[EXAMPLE, MOEAD]);
    let h = host(dir.path());
    let p = TestProblem::new(ProblemKind::Zdt1, 5, 2);
    let space = p.space();
    let context = RunContext {
        objectives: 2,
        min_budget: 1.0,
        max_budget: 9.0,
        multi_fidelity: true,
    };
    let schedule = Hyperband::new(1.0, 9.0, 3.0).unwrap();
    let run = |seed: u64| {
        let proposer = h
            .load_proposer("example", &space, "random_trials = 9", seed, &context)
            .unwrap();
        assert_eq!(proposer.name(), "example-local-search");
        let mut opt = Recorded::new(HyperbandOptimizer::new(&schedule, proposer, seed).unwrap());
        let mut full = Vec::new();
        for _ in 0..150 {
            for t in opt.ask(4).unwrap() {
                let f = p.evaluate_config(&t.config);
                if t.budget == 9.0 {
                    full.push(f.clone());
                }
                opt.tell(t.id, Outcome::Success(f)).unwrap();
            }
        }
        (opt, full)
    };
    let (opt, full) = run(5);
    let reference = [1.1, 10.0];
    let first = hv(&full[..9], &reference);
    let all = hv(&full, &reference);
    assert!(full.len() > 30, "{} full-budget trials", full.len());
    assert!(
        all > first + 0.1,
        "local search improved nothing: {first} -> {all}"
    );
    // Same seed, same calls: the same trials (resume replays the log).
    let proposer = h
        .load_proposer("example", &space, "random_trials = 9", 5, &context)
        .unwrap();
    let mut again = HyperbandOptimizer::new(&schedule, proposer, 5).unwrap();
    replay(&mut again, opt.events()).unwrap();
    // MOEA/D has no proposer.
    let e = h
        .load_proposer("moead", &space, "", 5, &context)
        .err()
        .unwrap();
    assert!(matches!(e, PluginError::NoProposer { .. }), "{e}");
}

#[test]
fn moead_is_told_the_objectives_and_the_budget() {
    let dir = plugin_dir(&[MOEAD]);
    let h = host(dir.path());
    let p = TestProblem::new(ProblemKind::Dtlz2, 6, 3);
    let context = RunContext::fixed(3, 5.0);
    let mut opt = h
        .load_optimizer_in("moead", &p.space(), "population = 15", 2, &context)
        .unwrap();
    assert!(drive(&mut *opt, &p, 10, 5).iter().all(|&b| b == 5.0));
    match h.load_optimizer_in("moead", &p.space(), "budget = 1.0", 2, &context) {
        Err(PluginError::Create { message, .. }) => {
            assert!(
                message.contains("`budget`") && message.contains("is 5"),
                "{message}"
            )
        }
        other => panic!("expected a create error, got {:?}", other.err()),
    }
}

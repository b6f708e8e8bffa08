//! Search spaces loaded from files: ConfigSpace JSON (1.x and 0.x layouts) and
//! the DSNN example TOML.

use dsnn_search::{ConfigurationSpace, SearchSpace, SpaceError, Value};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn reads_configspace_1x_json() {
    let s = ConfigurationSpace::from_configspace_json(&data("svm_configspace_1x.json")).unwrap();
    assert_eq!(s.name(), Some("svm"));
    assert_eq!(s.dim(), 9);
    assert_eq!(s.conditions().len(), 3);
    assert_eq!(s.forbidden().len(), 2);
    let d = s.default_configuration();
    assert_eq!(d.get_str("kernel"), Some("rbf"));
    assert_eq!(d.get_f64("gamma"), Some(0.1));
    assert!(d.get("degree").is_none() && d.get("coef0").is_none());
    assert_eq!(d.get("shrinking"), Some(&Value::Bool(true)));
    assert_eq!(d.get("cache"), Some(&Value::Int(200)));
    assert_eq!(d.get_f64("tol"), Some(0.001));
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut kernels = std::collections::BTreeSet::new();
    let mut shrinking_true = 0;
    for _ in 0..500 {
        let c = s.sample(&mut rng).unwrap();
        s.validate(&c).unwrap();
        let k = c.get_str("kernel").unwrap().to_string();
        assert_eq!(c.get("degree").is_some(), k == "poly");
        assert_eq!(c.get("gamma").is_some(), k != "linear");
        assert_eq!(c.get("coef0").is_some(), k == "poly" || k == "sigmoid");
        assert!(!(k == "linear" && c.get_i64("cache") == Some(400)));
        if let (Some(c0), Some(nu)) = (c.get_f64("coef0"), c.get_f64("nu")) {
            assert!(c0 <= nu, "relation forbids coef0 > nu");
        }
        if c.get("shrinking") == Some(&Value::Bool(true)) {
            shrinking_true += 1;
        }
        kernels.insert(k);
    }
    assert_eq!(kernels.len(), 4);
    // Weights 0.7 / 0.3 (bar the rejections of the relation clause) are honoured.
    assert!((250..=420).contains(&shrinking_true), "{shrinking_true}");
}

#[test]
fn reads_configspace_0x_json() {
    let s = ConfigurationSpace::from_configspace_json(&data("mlp_configspace_0x.json")).unwrap();
    assert_eq!(s.dim(), 7);
    let d = s.default_configuration();
    assert_eq!(d.get_str("solver"), Some("adam"));
    assert_eq!(d.get_i64("batch_size"), Some(64));
    assert_eq!(d.get_i64("n_neurons"), Some(64));
    assert!(d.get("momentum").is_none());
    let mut c = d.clone();
    c.insert("solver", "lbfgs");
    c.remove("batch_size");
    s.validate(&c).unwrap();
    c.insert("n_layer", 3i64);
    assert!(matches!(s.validate(&c), Err(SpaceError::Forbidden(_))));
    c.insert("n_layer", 1i64);
    assert!(matches!(s.validate(&c), Err(SpaceError::Inactive(n)) if n == "n_neurons"));
}

#[test]
fn configspace_json_round_trips() {
    for file in ["svm_configspace_1x.json", "mlp_configspace_0x.json"] {
        let s = ConfigurationSpace::from_configspace_json(&data(file)).unwrap();
        let text = s.to_configspace_json().unwrap();
        let again = ConfigurationSpace::from_configspace_json(&text).unwrap();
        assert_eq!(s, again, "{file}");
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["format_version"], serde_json::json!(0.4));
        assert!(doc["hyperparameters"][0]["default_value"].is_string());
        // And through TOML, which must carry the same space.
        let toml = s.to_toml_string().unwrap();
        assert_eq!(
            ConfigurationSpace::from_toml_str(&toml).unwrap(),
            s,
            "{file}"
        );
    }
}

#[test]
fn rejects_bad_configspace_json() {
    let bad = data("svm_configspace_1x.json").replace(
        "\"parent\": \"kernel\",\n      \"value\": \"poly\"",
        "\"parent\": \"kernel\",\n      \"value\": \"cubic\"",
    );
    assert!(ConfigurationSpace::from_configspace_json(&bad).is_err());
    let bad = data("svm_configspace_1x.json").replace("uniform_int", "weird_int");
    let e = ConfigurationSpace::from_configspace_json(&bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("degree") && e.contains("weird_int"), "{e}");
}

#[test]
fn dsnn_example_space_loads() {
    let path = format!("{}/examples/dsnn_space.toml", env!("CARGO_MANIFEST_DIR"));
    let s = ConfigurationSpace::from_toml_file(path).unwrap();
    assert_eq!(s.dim(), 13);
    let d = s.default_configuration();
    assert_eq!(d.get_str("optimizer"), Some("SGD"));
    assert_eq!(d.get_f64("lr"), Some(0.1));
    assert_eq!(d.get_f64("momentum"), Some(0.9));
    assert_eq!(d.get_i64("weight_bits"), Some(5));
    assert_eq!(d.get_i64("activation_integer_bits"), Some(16));
    assert_eq!(d.get_i64("activation_fraction_bits"), Some(16));
    assert_eq!(d.get_i64("shift_depth"), Some(20));
    assert_eq!(d.get_str("shift_type"), Some("PS"));
    assert_eq!(d.get_str("rounding"), Some("deterministic"));
    assert_eq!(d.get_f64("weight_decay"), Some(1e-4));
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for _ in 0..100 {
        let c = s.sample(&mut rng).unwrap();
        let x = s.encode(&c).unwrap();
        assert_eq!(
            s.decode(&x).unwrap().get_str("optimizer"),
            c.get_str("optimizer")
        );
    }
    let mut c = d.clone();
    c.insert("weight_bits", 6i64);
    let e = s.validate(&c).unwrap_err().to_string();
    assert!(e.contains("weight_bits") && e.contains("[2, 5]"), "{e}");
}

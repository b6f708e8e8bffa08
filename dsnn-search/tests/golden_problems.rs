//! Test problems against `shared/golden/mo_problems.json` (computed with pymoo 0.6.2).

use dsnn_search::pareto;
use dsnn_search::problems::TestProblem;

fn golden() -> serde_json::Value {
    let path = format!(
        "{}/../../shared/golden/mo_problems.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e} (shared/ must sit beside the repository)"));
    serde_json::from_str(&text).unwrap()
}

fn problem(key: &str) -> TestProblem {
    match key {
        "ZDT1" => TestProblem::zdt1(),
        "ZDT2" => TestProblem::zdt2(),
        "ZDT3" => TestProblem::zdt3(),
        "ZDT4" => TestProblem::zdt4(),
        "ZDT6" => TestProblem::zdt6(),
        "DTLZ2-M2" => TestProblem::dtlz2(2),
        "DTLZ2-M3" => TestProblem::dtlz2(3),
        other => panic!("unexpected problem {other}"),
    }
}

#[test]
fn objectives_match_pymoo() {
    let g = golden();
    let problems = g["problems"].as_object().unwrap();
    assert_eq!(problems.len(), 7);
    let mut checked = 0;
    for (key, spec) in problems {
        let p = problem(key);
        assert_eq!(p.name(), *key);
        assert_eq!(p.n_var() as u64, spec["n_var"].as_u64().unwrap());
        assert_eq!(p.n_obj() as u64, spec["n_obj"].as_u64().unwrap());
        let (lo, hi) = p.bounds();
        let as_vec = |v: &serde_json::Value| -> Vec<f64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        assert_eq!(lo, as_vec(&spec["xl"]));
        assert_eq!(hi, as_vec(&spec["xu"]));
        for case in spec["cases"].as_array().unwrap() {
            let x = as_vec(&case["x"]);
            let want = as_vec(&case["f"]);
            let got = p.evaluate(&x);
            for (a, b) in got.iter().zip(&want) {
                let tol = 1e-12 * b.abs().max(1.0);
                assert!(
                    (a - b).abs() <= tol,
                    "{key} {}: {got:?} vs {want:?}",
                    case["label"]
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 63);
}

#[test]
fn optimal_hypervolumes_match_the_golden_notes() {
    let known = [
        ("ZDT1", 0.876_666_666_7),
        ("ZDT2", 0.543_333_333_3),
        ("ZDT3", 1.331_762_908_7),
        ("ZDT4", 0.876_666_666_7),
        ("ZDT6", 0.507_877_514_6),
        ("DTLZ2-M2", 0.424_601_836_6),
        ("DTLZ2-M3", 0.807_401_224_4),
    ];
    for (key, hv) in known {
        let p = problem(key);
        let got = p.optimal_hypervolume().unwrap();
        assert!((got - hv).abs() < 1e-9, "{key}: {got} vs {hv}");
        // A dense true-front sample approaches it from below.
        let m = p.n_obj();
        let front = p.pareto_front(if m == 2 { 100_000 } else { 20_000 });
        let sampled = pareto::hypervolume(&front, &vec![1.1; m]);
        let tol = if m == 2 { 1e-4 } else { 5e-3 };
        assert!(
            sampled <= hv + 1e-9 && sampled > hv - tol,
            "{key}: {sampled} vs {hv}"
        );
    }
}

//! Cases every model-based proposer (TPE, evolutionary TPE) must pass,
//! shared by their test files.

use std::collections::HashSet;
use std::sync::Arc;

use dsnn_search::problems::TestProblem;
use dsnn_search::*;
use rand::SeedableRng;

/// A batch of 16 proposals after 30 trials on ZDT1: all valid, none tried
/// before, none pending, none twice.
pub fn a_batch_is_distinct_and_avoids_pending<P: Proposer>(
    make: impl Fn(Arc<dyn SearchSpace>) -> P,
) {
    let p = TestProblem::zdt1();
    let space: Arc<dyn SearchSpace> = Arc::new(p.space());
    let mut proposer = make(space.clone());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let mut opt = ProposerOptimizer::new(make(space.clone()), 1.0, 4);
    p.minimise(&mut opt, 30, 1).unwrap();
    let history = opt.history().to_vec();
    let pending: Vec<Configuration> = (0..5).map(|_| space.sample(&mut rng).unwrap()).collect();
    let batch = proposer.propose(16, &history, &pending, &mut rng).unwrap();
    assert_eq!(batch.len(), 16);
    let mut seen: HashSet<String> = history.iter().map(|o| o.config.to_string()).collect();
    seen.extend(pending.iter().map(|c| c.to_string()));
    for c in &batch {
        space.validate(c).unwrap();
        assert!(seen.insert(c.to_string()), "proposed twice or pending: {c}");
    }
}

/// 100 trials on the DSNN space (integer, categorical and conditional
/// hyperparameters) asked 5 at a time against a toy objective that prefers
/// Adam, every eighth trial crashing: every proposal is valid (and, with
/// `distinct`, new), and the proposer learns to pick Adam (random search
/// picks it one time in seven).
pub fn handles_int_categorical_and_conditional_hyperparameters<P: Proposer>(
    make: impl Fn(Arc<dyn SearchSpace>) -> P,
    distinct: bool,
) {
    let text = std::fs::read_to_string(format!(
        "{}/examples/dsnn_space.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let space: Arc<dyn SearchSpace> = Arc::new(ConfigurationSpace::from_toml_str(&text).unwrap());
    let mut o = ProposerOptimizer::new(make(space.clone()), 1.0, 8);
    let mut adam = Vec::new();
    let mut seen = HashSet::new();
    for round in 0..20 {
        let trials = o.ask(5).unwrap();
        assert_eq!(trials.len(), 5);
        for t in trials {
            space.validate(&t.config).unwrap();
            if distinct {
                assert!(seen.insert(t.config.to_string()), "proposed twice");
            }
            let c = &t.config;
            let is_adam = c.get_str("optimizer") == Some("Adam");
            if round >= 15 {
                adam.push(is_adam);
            }
            if t.id % 8 == 7 {
                o.tell(t.id, Outcome::Failure("crashed".into())).unwrap();
                continue;
            }
            let pen = if is_adam { 0.0 } else { 1.0 };
            let lr = c.get_f64("lr").unwrap();
            let f1 = pen + c.get_i64("weight_bits").unwrap() as f64 / 5.0 + lr;
            let f2 = pen + c.get_i64("shift_depth").unwrap() as f64 / 20.0 - lr;
            o.tell(t.id, Outcome::Success(vec![f1, f2])).unwrap();
        }
    }
    let share = adam.iter().filter(|a| **a).count() as f64 / adam.len() as f64;
    assert!(share >= 0.4, "Adam share in the last 25 trials: {share}");
}

/// Under Hyperband (1..9, eta 3) on ZDT1, 150 asks of 3: the proposer fills
/// brackets of at least three different budgets.
pub fn proposes_the_brackets_of_hyperband<P: Proposer>(make: impl Fn(Arc<dyn SearchSpace>) -> P) {
    let p = TestProblem::zdt1();
    let hb = Hyperband::new(1.0, 9.0, 3.0).unwrap();
    let space: Arc<dyn SearchSpace> = Arc::new(p.space());
    let mut o = HyperbandOptimizer::new(&hb, make(space), 2).unwrap();
    let mut budgets = HashSet::new();
    for _ in 0..150 {
        let ts = o.ask(3).unwrap();
        for t in ts {
            budgets.insert(t.budget.to_bits());
            let f = p.evaluate_config(&t.config);
            o.tell(t.id, Outcome::Success(f)).unwrap();
        }
    }
    assert!(budgets.len() >= 3, "{budgets:?}");
}

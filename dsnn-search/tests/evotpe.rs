//! Evolutionary TPE: quality against random search and fixed hypervolume
//! levels, recombination of the parents, batches, mixed and conditional
//! spaces, warm start from adopted trials, multi-fidelity, settings.
//! (Determinism, replay and protocol errors: `tests/optimizers.rs`.)

use std::collections::HashSet;
use std::sync::Arc;

use dsnn_search::pareto::igd_plus;
use dsnn_search::problems::TestProblem;
use dsnn_search::*;
use rand::SeedableRng;

mod proposers;

fn space_of(p: &TestProblem) -> Arc<dyn SearchSpace> {
    Arc::new(p.space())
}

fn evotpe(p: &TestProblem, seed: u64) -> EvoTpe {
    EvoTpeProposer::optimizer(space_of(p), EvoTpeSettings::default(), 1.0, seed)
}

/// Mean IGD+ over `seeds` of evolutionary TPE (defaults) and of random
/// search, both with `evals` evaluations asked `batch` at a time.
fn evotpe_and_random_igd(p: &TestProblem, evals: usize, batch: usize, seeds: u64) -> (f64, f64) {
    let front = p.pareto_front(500);
    let (mut t, mut r) = (0.0, 0.0);
    for seed in 0..seeds {
        let mut rnd = RandomSearch::random(space_of(p), 1.0, seed);
        t += igd_plus(
            &p.minimise(&mut evotpe(p, seed), evals, batch).unwrap(),
            &front,
        );
        r += igd_plus(&p.minimise(&mut rnd, evals, batch).unwrap(), &front);
    }
    (t / seeds as f64, r / seeds as f64)
}

#[test]
fn evotpe_beats_random_search_at_100_evaluations() {
    // Smooth (ZDT1, DTLZ2) and multimodal (DTLZ1: 11^5 local fronts, where
    // every optimizer is far from the front at 100 evaluations). Measured
    // (3 seeds, defaults of issue 21's second round): ZDT1 0.69x random
    // search's IGD+, DTLZ2 M=2 0.38x, DTLZ1 M=2 0.58x.
    for (p, factor) in [
        (TestProblem::zdt1(), 0.75),
        (TestProblem::dtlz2(2), 0.75),
        (TestProblem::by_name("dtlz1", None, Some(2)).unwrap(), 0.95),
    ] {
        let (t, r) = evotpe_and_random_igd(&p, 100, 1, 3);
        eprintln!("{}: evolutionary TPE IGD+ {t:.4}, random {r:.4}", p.name());
        assert!(t < factor * r, "{}: IGD+ {t} vs random {r}", p.name());
    }
}

#[test]
fn evotpe_asking_in_batches_still_beats_random_search() {
    let p = TestProblem::zdt1();
    let (t, r) = evotpe_and_random_igd(&p, 120, 8, 3);
    eprintln!("ZDT1, batches of 8: evolutionary TPE IGD+ {t:.4}, random {r:.4}");
    assert!(t < 0.75 * r, "IGD+ {t} vs random {r}");
}

#[test]
fn evotpe_reaches_fixed_hypervolume_levels() {
    // Normalised hypervolume (ideal 0, nadir 1, reference 1.1) of all
    // evaluated points after 200 evaluations, seed 1. Measured with the
    // defaults of issue 21's second round: DTLZ2 M=2 0.756, M=3 0.390, WFG4
    // M=2 0.579 (first round: 0.789, 0.451, 0.568); random search at 100
    // evaluations (5 seeds, docs/search.md): 0.046, 0.033 and 0.414.
    for (p, level) in [
        (TestProblem::dtlz2(2), 0.7),
        (TestProblem::dtlz2(3), 0.35),
        (TestProblem::by_name("wfg4", None, Some(2)).unwrap(), 0.5),
    ] {
        let f = p.minimise(&mut evotpe(&p, 1), 200, 1).unwrap();
        let hv = p.hypervolume_ratio(&f).unwrap();
        eprintln!("{}: normalised HV {hv:.4}", p.name());
        assert!(
            hv >= level,
            "{}: normalised HV {hv} below {level}",
            p.name()
        );
    }
}

#[test]
fn offspring_recombine_the_parents_genes() {
    // Only evolutionary proposals, always recombined, never mutated: every
    // coordinate of a proposal is the same coordinate of some parent, and
    // the parents are among the best `parents` trials so far.
    let p = TestProblem::zdt1();
    let space = space_of(&p);
    let settings = EvoTpeSettings {
        evolution_share: 1.0,
        adaptive_share: false,
        crossover_probability: 1.0,
        mutation_probability: Some(0.0),
        parents: 5,
        ..EvoTpeSettings::default()
    };
    let mut o = EvoTpeProposer::optimizer(space.clone(), settings.clone(), 1.0, 3);
    p.minimise(&mut o, 30, 1).unwrap();
    let history = o.history().to_vec();
    let objs: Vec<&[f64]> = history
        .iter()
        .map(|h| h.outcome.objectives().unwrap())
        .collect();
    let norm = pareto::Normalizer::fit(&objs).unwrap();
    let scaled: Vec<Vec<f64>> = objs.iter().map(|f| norm.transform(f)).collect();
    let best = pareto::select_by_rank(&scaled, 5, TieBreak::Crowding);
    let parents: Vec<Vec<f64>> = best
        .iter()
        .map(|&i| space.encode(&history[i].config).unwrap())
        .collect();
    let mut proposer = EvoTpeProposer::new(space.clone(), settings);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let batch = proposer.propose(12, &history, &[], &mut rng).unwrap();
    assert_eq!(batch.len(), 12);
    let mut mixed = 0;
    for c in &batch {
        let x = space.encode(c).unwrap();
        let mut sources = HashSet::new();
        for (k, v) in x.iter().enumerate() {
            let from: Vec<usize> = (0..parents.len())
                .filter(|&j| (parents[j][k] - v).abs() < 1e-12)
                .collect();
            assert!(!from.is_empty(), "coordinate {k} = {v} is no parent's");
            sources.insert(from[0]);
        }
        if sources.len() > 1 {
            mixed += 1;
        }
    }
    // Uniform crossover of two different parents mixes their genes.
    assert!(mixed >= 6, "only {mixed} of 12 offspring mix two parents");
}

#[test]
fn a_batch_is_distinct_and_avoids_pending_configurations() {
    proposers::a_batch_is_distinct_and_avoids_pending(|s| {
        EvoTpeProposer::new(s, EvoTpeSettings::default())
    });
}

#[test]
fn evotpe_handles_int_categorical_and_conditional_hyperparameters() {
    proposers::handles_int_categorical_and_conditional_hyperparameters(
        |s| EvoTpeProposer::new(s, EvoTpeSettings::default()),
        true,
    );
}

#[test]
fn adopted_trials_warm_start_the_model() {
    // 30 trials of random search, adopted and told: the next proposals are
    // model-based at once (a fresh run would still sample at random) and
    // better than random search's next ones.
    let p = TestProblem::dtlz2(2);
    let mut rnd = RandomSearch::random(space_of(&p), 1.0, 7);
    let earlier = rnd.ask(30).unwrap();
    let mut warm = evotpe(&p, 7);
    assert!(warm.adopt(&earlier).unwrap());
    for t in &earlier {
        warm.tell(t.id, Outcome::Success(p.evaluate_config(&t.config)))
            .unwrap();
    }
    // Adopted ids are taken.
    assert!(warm.adopt(&earlier[..1]).is_err());
    let next = warm.ask(20).unwrap();
    assert!(
        next.iter().all(|t| t.id >= 30),
        "fresh ids after the adopted ones"
    );
    let tried: HashSet<String> = earlier.iter().map(|t| t.config.to_string()).collect();
    assert!(next.iter().all(|t| !tried.contains(&t.config.to_string())));
    let front = p.pareto_front(500);
    let f = |ts: &[Trial]| -> Vec<Vec<f64>> {
        ts.iter().map(|t| p.evaluate_config(&t.config)).collect()
    };
    let more_random = rnd.ask(20).unwrap();
    let (w, r) = (
        igd_plus(&f(&next), &front),
        igd_plus(&f(&more_random), &front),
    );
    eprintln!("DTLZ2 M=2, 20 proposals after 30 adopted trials: IGD+ {w:.4}, random {r:.4}");
    assert!(w < r, "warm-started proposals {w} vs random {r}");
}

#[test]
fn evotpe_proposes_the_brackets_of_hyperband() {
    proposers::proposes_the_brackets_of_hyperband(|s| {
        EvoTpeProposer::new(s, EvoTpeSettings::default())
    });
}

#[test]
fn settings_default_and_refuse_unknown_keys() {
    let s: EvoTpeSettings = toml::from_str("evolution_share = 0.25\nparents = 6").unwrap();
    assert_eq!(
        s,
        EvoTpeSettings {
            evolution_share: 0.25,
            parents: 6,
            ..EvoTpeSettings::default()
        }
    );
    assert!(toml::from_str::<EvoTpeSettings>("evolution = 0.2").is_err());
    let bad = EvoTpeSettings {
        offspring_candidates: 0,
        ..EvoTpeSettings::default()
    };
    assert!(matches!(bad.validate(), Err(OptimizerError::Invalid(_))));
    let p = TestProblem::zdt1();
    let mut o = EvoTpeProposer::optimizer(space_of(&p), bad, 1.0, 0);
    assert!(matches!(o.ask(1), Err(OptimizerError::Invalid(_))));
}

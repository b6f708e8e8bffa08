//! Runs dsnn-search's optimizers in-process on the benchmark suite and
//! stores every run's evaluations in the layout of `scripts/peer-benchmark.py`
//! (`RUNS/<variant>/<budget>/<problem>-m<M>-s<seed>.json`), so that
//! `score_peer_runs` scores them beside the peers. Used to choose defaults
//! on the whole suite (variants below); the benchmark itself runs dsnn's
//! optimizers through `dsnn run`.
//!
//!     cargo run --release -p dsnn-search --example suite_runs -- RUNS BUDGET SEEDS VARIANT...
//!
//! Variants: `tpe` (defaults), `tpe-uni` (independent kernels), `tpe-multi`
//! (joint kernels), `tpe-cN`
//! (N candidates), `tpe-gG` (gamma G), `evotpe` (defaults) with options
//! `sS` (evolution share S), `kN` (N offspring candidates per evolutionary
//! proposal), `pN` (N parents), `oN` (N offspring among TPE's candidates),
//! `gG` (gamma G), `cN` (N TPE candidates), `mP` (mutation probability P),
//! `a` (adaptive share), `D` (mutation draws from the good density), `J`
//! (joint candidate selection) and `F` (face gaps in the outermost
//! bandwidths), so that `evotpe-J-F-g0.2` is the default before issue 21's
//! second round; for both `tpe` and `evotpe`: `P` (per-coordinate
//! candidate selection, Optuna's independent sampler), `E` (no face gaps in
//! the outermost bandwidths, Optuna's `consider_endpoints = False`), `R`
//! (Optuna's ramp of weights on old bad observations),
//! `gpehvi` (defaults) with options `iN` (N initial random trials), `lO`
//! (model `ln(O + f)` of the normalised objectives), `rN` / `qN` (N random /
//! perturbed candidates), `dS` (perturbation sd S), `mM` (reference margin M),
//! `fN` (N L-BFGS iterations per warm refit), `bB` (improvement bounded
//! below B front extents under the ideal), `U` (unbounded below), `sN` (N local searches), `L` (five local searches), `eP` (a share P of
//! the proposals by evolutionary TPE),
//! `evogp` (defaults) with options `tT` (GP/EHVI when every leave-one-out
//! correlation is at least T), `rR` (correlation over the R most recent
//! points, 0 all), `C` (credit-based share when the models pass), `A` / `N` (always / never GP/EHVI), `eK` (K
//! evolutionary TPE candidates beside GP/EHVI's), `kK` (K evolutionary TPE
//! candidates screened by EHVI when the models fail), `qN` (N perturbed
//! candidates of GP/EHVI),
//! `parego`, `random`, `nsga2`
//! (`Nsga2Settings::for_budget`), `nsga2-pN` (population N, pymoo's
//! operators), `nsga2-pN-u` (Optuna's operators). Existing files are kept.

use std::sync::Arc;
use std::time::Instant;

use dsnn_search::problems::TestProblem;
use dsnn_search::*;

const SUITE: &[(&str, usize)] = &[
    ("zdt1", 2),
    ("zdt2", 2),
    ("zdt3", 2),
    ("zdt4", 2),
    ("zdt6", 2),
    ("dtlz1", 2),
    ("dtlz1", 3),
    ("dtlz2", 2),
    ("dtlz2", 3),
    ("dtlz3", 2),
    ("dtlz3", 3),
    ("dtlz4", 2),
    ("dtlz4", 3),
    ("dtlz5", 2),
    ("dtlz5", 3),
    ("dtlz6", 2),
    ("dtlz6", 3),
    ("dtlz7", 2),
    ("dtlz7", 3),
    ("wfg1", 2),
    ("wfg1", 3),
    ("wfg2", 2),
    ("wfg2", 3),
    ("wfg3", 2),
    ("wfg3", 3),
    ("wfg4", 2),
    ("wfg4", 3),
    ("wfg5", 2),
    ("wfg5", 3),
    ("wfg6", 2),
    ("wfg6", 3),
    ("wfg7", 2),
    ("wfg7", 3),
    ("wfg8", 2),
    ("wfg8", 3),
    ("wfg9", 2),
    ("wfg9", 3),
];

fn build(
    variant: &str,
    space: Arc<dyn SearchSpace>,
    budget: usize,
    seed: u64,
) -> Box<dyn Optimizer> {
    let parts: Vec<&str> = variant.split('-').collect();
    match parts[0] {
        "random" => Box::new(RandomSearch::random(space, 1.0, seed)),
        "parego" => Box::new(ParEgoProposer::optimizer(
            space,
            ParEgoSettings::default(),
            1.0,
            seed,
        )),
        "tpe" => {
            let mut s = TpeSettings::default();
            for p in &parts[1..] {
                match *p {
                    "uni" => s.multivariate = false,
                    "multi" => s.multivariate = true,
                    p if p.starts_with('c') => s.n_candidates = p[1..].parse().unwrap(),
                    p if p.starts_with('g') => s.gamma = p[1..].parse().unwrap(),
                    p if p.starts_with('w') => s.prior_weight = p[1..].parse().unwrap(),
                    p if p.starts_with('i') => s.n_initial = p[1..].parse().unwrap(),
                    "P" => s.selection = CandidateSelection::PerCoordinate,
                    "E" => s.endpoint_bandwidth = false,
                    "R" => s.bad_weight_ramp = true,
                    other => panic!("unknown tpe option {other}"),
                }
            }
            Box::new(TpeProposer::optimizer(space, s, 1.0, seed))
        }
        "evotpe" => {
            let mut s = EvoTpeSettings::default();
            for p in &parts[1..] {
                let (key, value) = p.split_at(1);
                match key {
                    "s" => s.evolution_share = value.parse().unwrap(),
                    "k" => s.offspring_candidates = value.parse().unwrap(),
                    "p" => s.parents = value.parse().unwrap(),
                    "o" => s.offspring_among_candidates = value.parse().unwrap(),
                    "g" => s.gamma = value.parse().unwrap(),
                    "c" => s.n_candidates = value.parse().unwrap(),
                    "m" => s.mutation_probability = Some(value.parse().unwrap()),
                    "a" => s.adaptive_share = true,
                    "D" => s.mutation_from_good_density = true,
                    "J" => s.selection = CandidateSelection::Joint,
                    "F" => s.endpoint_bandwidth = true,
                    "P" => s.selection = CandidateSelection::PerCoordinate,
                    "E" => s.endpoint_bandwidth = false,
                    "R" => s.bad_weight_ramp = true,
                    _ => panic!("unknown evotpe option {p}"),
                }
            }
            Box::new(EvoTpeProposer::optimizer(space, s, 1.0, seed))
        }
        "gpehvi" => {
            let mut s = GpEhviSettings::default();
            for p in &parts[1..] {
                let (key, value) = p.split_at(1);
                match key {
                    "i" => s.n_initial = value.parse().unwrap(),
                    "l" => s.log_offset = Some(value.parse().unwrap()),
                    "r" => s.n_random_candidates = value.parse().unwrap(),
                    "q" => s.n_perturbed_candidates = value.parse().unwrap(),
                    "d" => s.perturbation_sd = value.parse().unwrap(),
                    "m" => s.reference_margin = value.parse().unwrap(),
                    "f" => s.refit_iterations = value.parse().unwrap(),
                    "b" => s.ideal_margin = Some(value.parse().unwrap()),
                    "U" => s.ideal_margin = None,
                    "L" => s.n_local_starts = 5,
                    "e" => s.evotpe_share = value.parse().unwrap(),
                    "s" => s.n_local_starts = value.parse().unwrap(),
                    _ => panic!("unknown gpehvi option {p}"),
                }
            }
            Box::new(GpEhviProposer::optimizer(space, s, 1.0, seed))
        }
        "evogp" => {
            let mut s = EvoGpSettings::default();
            for p in &parts[1..] {
                let (key, value) = p.split_at(1);
                match key {
                    "t" => s.min_loo_correlation = value.parse().unwrap(),
                    "r" => s.check_recent = value.parse().unwrap(),
                    "A" => s.min_loo_correlation = -2.0,
                    "C" => s.credit_share = true,
                    "N" => s.min_loo_correlation = 2.0,
                    "e" => s.evotpe_candidates = value.parse().unwrap(),
                    "k" => s.screened_candidates = value.parse().unwrap(),
                    "q" => s.gp.n_perturbed_candidates = value.parse().unwrap(),
                    _ => panic!("unknown evogp option {p}"),
                }
            }
            Box::new(EvoGpProposer::optimizer(space, s, 1.0, seed))
        }
        "nsga2" => {
            let mut s = Nsga2Settings::for_budget(Some(budget as u64));
            for p in &parts[1..] {
                match *p {
                    "u" => {
                        s.crossover = Crossover::Uniform;
                        s.mutation = Mutation::Uniform;
                    }
                    "sbx" => {
                        s.crossover = Crossover::Sbx;
                        s.mutation = Mutation::Polynomial;
                    }
                    p if p.starts_with('p') => {
                        s.population = p[1..].parse().unwrap();
                        s.offspring = s.population;
                    }
                    other => panic!("unknown nsga2 option {other}"),
                }
            }
            Box::new(Nsga2::new(space, s, seed).unwrap())
        }
        other => panic!("unknown variant {other}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [runs, budget, seeds, variants @ ..] = args.as_slice() else {
        eprintln!("usage: suite_runs RUNS BUDGET SEEDS VARIANT...");
        std::process::exit(2);
    };
    let budget: usize = budget.parse().unwrap();
    let seeds: u64 = seeds.parse().unwrap();
    for variant in variants {
        let started = Instant::now();
        let mut trial_seconds = 0.0;
        for seed in 0..seeds {
            for &(name, m) in SUITE {
                let dir = format!("{runs}/dsnn-{variant}/{budget}");
                let path = format!("{dir}/{name}-m{m}-s{seed}.json");
                if std::path::Path::new(&path).exists() {
                    continue;
                }
                std::fs::create_dir_all(&dir).unwrap();
                let p = TestProblem::by_name(name, None, Some(m)).unwrap();
                let mut opt = build(variant, Arc::new(p.space()), budget, seed);
                let t = Instant::now();
                let f = p.minimise(opt.as_mut(), budget, 1).unwrap();
                let secs = t.elapsed().as_secs_f64();
                trial_seconds += secs;
                let out = serde_json::json!({
                    "optimizer": format!("dsnn-{variant}"), "problem": name, "n_obj": m,
                    "n_var": p.n_var(), "budget": budget, "seed": seed, "seconds": secs, "f": f,
                });
                std::fs::write(&path, out.to_string()).unwrap();
            }
        }
        println!(
            "{variant}: {:.1} s, {:.2} ms per trial",
            started.elapsed().as_secs_f64(),
            1000.0 * trial_seconds / (seeds as f64 * SUITE.len() as f64 * budget as f64)
        );
    }
}

//! Every single-fidelity optimizer on every test problem at 100 and 1,000
//! evaluations over 5 seeds: mean IGD+ of the archive of all evaluated points
//! (against a 1,000-point sample of the true front), mean normalised hypervolume
//! at reference 1.1 per objective (and at 11 for ZDT), and the optimizer's own
//! time per trial (ask + tell, evaluation excluded; median and mean).
//! MO-Hyperband runs with budgets ignored (these problems have one fidelity),
//! so its promotions cost evaluations without gaining information.
//!
//! Run with `cargo run --release -p dsnn-search --example bench_optimizers`.
//! Options for a quicker look: `--seeds 2`; `--problems ZDT2,DTLZ2-M3` (problem
//! names as printed); `--optimizers parego`
//! (optimizer names containing the text); `--evals 100`.

use std::sync::Arc;
use std::time::Instant;

use dsnn_search::pareto::{hypervolume, igd_plus};
use dsnn_search::problems::TestProblem;
use dsnn_search::{
    Crossover, Hyperband, HyperbandOptimizer, Mutation, Nsga2, Nsga2Settings, Optimizer, Outcome,
    ParEgoProposer, ParEgoSettings, RandomProposer, RandomSearch, SearchSpace,
};

struct RunResult {
    igd: f64,
    hv: f64,
    hv11: f64,
    median_ms: f64,
    mean_ms: f64,
}

fn run(p: &TestProblem, opt: &mut dyn Optimizer, evals: usize) -> RunResult {
    let mut f_all: Vec<Vec<f64>> = Vec::with_capacity(evals);
    let mut times = Vec::with_capacity(evals);
    while f_all.len() < evals {
        let t0 = Instant::now();
        let trials = opt.ask(1).expect("ask");
        let mut spent = t0.elapsed().as_secs_f64();
        for t in trials {
            let f = p.evaluate_config(&t.config);
            let t1 = Instant::now();
            opt.tell(t.id, Outcome::Success(f.clone())).expect("tell");
            spent += t1.elapsed().as_secs_f64();
            f_all.push(f);
        }
        times.push(spent * 1e3);
    }
    let m = p.n_obj();
    let opt_hv = p.optimal_hypervolume().unwrap_or(f64::NAN);
    // The optimum at reference 11 from a dense sample of the true front.
    let opt_hv11 = hypervolume(&p.pareto_front(100_000), &vec![11.0; m]);
    let hv11 = hypervolume(&f_all, &vec![11.0; m]) / opt_hv11;
    let mean_ms = times.iter().sum::<f64>() / times.len() as f64;
    times.sort_by(f64::total_cmp);
    RunResult {
        igd: igd_plus(&f_all, &p.pareto_front(1000)),
        hv: hypervolume(&f_all, &vec![1.1; m]) / opt_hv,
        hv11,
        median_ms: times[times.len() / 2],
        mean_ms,
    }
}

type Factory = Box<dyn Fn(Arc<dyn SearchSpace>, u64) -> Box<dyn Optimizer>>;

/// The value following `flag` on the command line.
fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seeds: u64 = arg(&args, "--seeds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let problem_filter: Option<Vec<String>> =
        arg(&args, "--problems").map(|s| s.split(',').map(str::to_string).collect());
    let optimizer_filter = arg(&args, "--optimizers");
    let evals_filter: Option<usize> = arg(&args, "--evals").and_then(|s| s.parse().ok());
    let problems = [
        TestProblem::zdt1(),
        TestProblem::zdt2(),
        TestProblem::zdt3(),
        TestProblem::zdt4(),
        TestProblem::zdt6(),
        TestProblem::dtlz2(2),
        TestProblem::dtlz2(3),
    ];
    let optimizers: Vec<(&str, Vec<usize>, Factory)> = vec![
        (
            "random",
            vec![100, 1000],
            Box::new(|s, seed| Box::new(RandomSearch::random(s, 1.0, seed))),
        ),
        (
            "nsga2 (pop 100)",
            vec![100, 1000],
            Box::new(|s, seed| Box::new(Nsga2::new(s, Nsga2Settings::default(), seed).unwrap())),
        ),
        (
            "nsga2 (pop 40)",
            vec![100, 1000],
            Box::new(|s, seed| {
                let st = Nsga2Settings {
                    population: 40,
                    offspring: 40,
                    ..Default::default()
                };
                Box::new(Nsga2::new(s, st, seed).unwrap())
            }),
        ),
        // Optuna's operators: uniform crossover (swap probability 0.5) and
        // mutation by resampling (probability 1/n).
        (
            "nsga2 (pop 40, uniform operators)",
            vec![100, 1000],
            Box::new(|s, seed| {
                let st = Nsga2Settings {
                    population: 40,
                    offspring: 40,
                    crossover: Crossover::Uniform,
                    mutation: Mutation::Uniform,
                    ..Default::default()
                };
                Box::new(Nsga2::new(s, st, seed).unwrap())
            }),
        ),
        (
            "parego",
            vec![100, 1000],
            Box::new(|s, seed| {
                Box::new(ParEgoProposer::optimizer(
                    s,
                    ParEgoSettings::default(),
                    1.0,
                    seed,
                ))
            }),
        ),
        // MO-Hyperband on single-fidelity problems: the budget is ignored, so every
        // promotion re-evaluates a configuration and costs an evaluation.
        (
            "hyperband(1,9,3)+random",
            vec![100, 1000],
            Box::new(|s, seed| {
                let hb = Hyperband::new(1.0, 9.0, 3.0).unwrap();
                Box::new(HyperbandOptimizer::new(&hb, RandomProposer::new(s), seed).unwrap())
            }),
        ),
        (
            "hyperband(1,9,3)+parego",
            vec![100, 1000],
            Box::new(|s, seed| {
                let hb = Hyperband::new(1.0, 9.0, 3.0).unwrap();
                let p = ParEgoProposer::new(s, ParEgoSettings::default());
                Box::new(HyperbandOptimizer::new(&hb, p, seed).unwrap())
            }),
        ),
    ];
    println!(
        "{seeds} seeds; HV normalised by the optimal HV (ref 1.1); HV@11 likewise at ref 11 (ZDT)"
    );
    println!();
    println!(
        "| problem | optimizer | evals | IGD+ | HV | HV@11 | ms/trial median | ms/trial mean |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for p in &problems {
        if problem_filter
            .as_ref()
            .is_some_and(|f| !f.iter().any(|n| n.eq_ignore_ascii_case(&p.name())))
        {
            continue;
        }
        for (name, budgets, make) in &optimizers {
            if optimizer_filter
                .as_ref()
                .is_some_and(|f| !name.contains(f.as_str()))
            {
                continue;
            }
            for &evals in budgets {
                if evals_filter.is_some_and(|e| e != evals) {
                    continue;
                }
                let mut acc = [0.0f64; 5];
                for seed in 0..seeds {
                    let space: Arc<dyn SearchSpace> = Arc::new(p.space());
                    let mut o = make(space, seed);
                    let r = run(p, o.as_mut(), evals);
                    for (a, v) in acc
                        .iter_mut()
                        .zip([r.igd, r.hv, r.hv11, r.median_ms, r.mean_ms])
                    {
                        *a += v / seeds as f64;
                    }
                }
                let hv11 = if p.n_obj() == 2 && p.name().starts_with("ZDT") {
                    format!("{:.3}", acc[2])
                } else {
                    "-".into()
                };
                println!(
                    "| {} | {name} | {evals} | {:.3} | {:.3} | {hv11} | {:.3} | {:.3} |",
                    p.name(),
                    acc[0],
                    acc[1],
                    acc[3],
                    acc[4]
                );
            }
        }
    }
}

//! Time TPE's (or evolutionary TPE's, or GP/EHVI's) ask + tell per trial (evaluation
//! excluded) over runs of 200 evaluations: on ZDT1 (30 floats), DTLZ2 with
//! three objectives (12 floats) and on the 13-hyperparameter DSNN space
//! (`examples/dsnn_space.toml`: categoricals, integers, conditional
//! hyperparameters) with a cheap synthetic objective, asking 1 and 4 at a time.
//! Prints the mean time per trial over the run and over its last 20 trials.
//!
//!     cargo run --release -p dsnn-search --example bench_tpe_time [-- EVALS SEEDS [tpe|evotpe|gpehvi|evogp]]

use std::sync::Arc;
use std::time::Instant;

use dsnn_search::problems::TestProblem;
use dsnn_search::*;

/// An objective function over configurations.
type Objective<'a> = Box<dyn Fn(&Configuration) -> Vec<f64> + 'a>;

/// Two objectives from the cube encoding of a configuration (inactive
/// coordinates count as 0.5): a cheap stand-in for accuracy and energy.
fn synthetic(space: &dyn SearchSpace, c: &Configuration) -> Vec<f64> {
    let x = space.encode(c).expect("proposed configurations encode");
    let x: Vec<f64> = x
        .iter()
        .map(|v| if v.is_nan() { 0.5 } else { *v })
        .collect();
    let a = x.iter().map(|v| (v - 0.3) * (v - 0.3)).sum::<f64>();
    let b = x.iter().map(|v| (v - 0.7) * (v - 0.7)).sum::<f64>();
    vec![a, b]
}

/// The optimizer timed, with its defaults.
fn optimizer(kind: &str, space: Arc<dyn SearchSpace>, seed: u64) -> Box<dyn Optimizer> {
    match kind {
        "tpe" => Box::new(TpeProposer::optimizer(
            space,
            TpeSettings::default(),
            1.0,
            seed,
        )),
        "evotpe" => Box::new(EvoTpeProposer::optimizer(
            space,
            EvoTpeSettings::default(),
            1.0,
            seed,
        )),
        "gpehvi" => Box::new(GpEhviProposer::optimizer(
            space,
            GpEhviSettings::default(),
            1.0,
            seed,
        )),
        "evogp" => Box::new(EvoGpProposer::optimizer(
            space,
            EvoGpSettings::default(),
            1.0,
            seed,
        )),
        other => panic!("unknown optimizer {other} (tpe, evotpe, gpehvi, evogp)"),
    }
}

fn run(
    kind: &str,
    space: Arc<dyn SearchSpace>,
    eval: &dyn Fn(&Configuration) -> Vec<f64>,
    evals: usize,
    batch: usize,
    seed: u64,
) -> (f64, f64) {
    let mut o = optimizer(kind, space, seed);
    let mut times = Vec::with_capacity(evals);
    while times.len() < evals {
        let t0 = Instant::now();
        let trials = o.ask(batch.min(evals - times.len())).expect("ask");
        let ask = t0.elapsed().as_secs_f64() / trials.len() as f64;
        for t in trials {
            let f = eval(&t.config);
            let t1 = Instant::now();
            o.tell(t.id, Outcome::Success(f)).expect("tell");
            times.push(ask + t1.elapsed().as_secs_f64());
        }
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let tail = &times[times.len().saturating_sub(20)..];
    (
        1e3 * mean,
        1e3 * tail.iter().sum::<f64>() / tail.len() as f64,
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let evals: usize = args.first().map_or(200, |a| a.parse().expect("a number"));
    let seeds: u64 = args.get(1).map_or(3, |a| a.parse().expect("a number"));
    let kind = args.get(2).map_or("tpe", |a| a.as_str());
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/dsnn_space.toml"
    ))
    .expect("examples/dsnn_space.toml");
    let dsnn: Arc<dyn SearchSpace> =
        Arc::new(ConfigurationSpace::from_toml_str(&text).expect("valid space"));
    let zdt1 = TestProblem::zdt1();
    let zspace: Arc<dyn SearchSpace> = Arc::new(zdt1.space());
    let dtlz2 = TestProblem::dtlz2(3);
    let dspace: Arc<dyn SearchSpace> = Arc::new(dtlz2.space());
    println!("{kind}:");
    println!("| space | batch | ms per trial (mean over {evals}) | ms per trial (last 20) |");
    println!("|---|---:|---:|---:|");
    for batch in [1, 4] {
        for (name, space) in [
            ("ZDT1 (30 floats)", zspace.clone()),
            ("DTLZ2 M=3 (12 floats)", dspace.clone()),
            ("DSNN (13, conditional)", dsnn.clone()),
        ] {
            let (mut mean, mut tail) = (0.0, 0.0);
            for seed in 0..seeds {
                let eval: Objective = if name.starts_with("ZDT") {
                    Box::new(|c: &Configuration| zdt1.evaluate_config(c))
                } else if name.starts_with("DTLZ") {
                    Box::new(|c: &Configuration| dtlz2.evaluate_config(c))
                } else {
                    let s = space.clone();
                    Box::new(move |c: &Configuration| synthetic(s.as_ref(), c))
                };
                let (m, t) = run(kind, space.clone(), eval.as_ref(), evals, batch, seed);
                mean += m / seeds as f64;
                tail += t / seeds as f64;
            }
            println!("| {name} | {batch} | {mean:.2} | {tail:.2} |");
        }
    }
}

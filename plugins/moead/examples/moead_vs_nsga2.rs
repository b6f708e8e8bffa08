//! MOEA/D against dsnn-search's NSGA-II on ZDT1, ZDT2 and DTLZ2 (in-process,
//! same evaluations, three seeds): hypervolume at reference 1.1 per objective.
//!
//! `cargo run --release -p dsnn-plugin-moead --example moead_vs_nsga2`

use std::sync::Arc;

use dsnn_plugin_api::dsnn_search::problems::TestProblem;
use dsnn_plugin_api::dsnn_search::{pareto, Nsga2, Nsga2Settings};
use dsnn_plugin_moead::{Moead, MoeadSettings};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let problems = [
        ("ZDT1", TestProblem::zdt1()),
        ("ZDT2", TestProblem::zdt2()),
        ("DTLZ2 (3 objectives)", TestProblem::dtlz2(3)),
    ];
    println!("| problem | evaluations | MOEA/D | NSGA-II | optimum |");
    println!("|---|---|---|---|---|");
    for (name, p) in problems {
        let m = p.n_obj();
        let reference = vec![1.1; m];
        let n = if m == 2 { 50 } else { 91 };
        for evaluations in [2000, 5000] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for seed in 0..3 {
                let text = format!("objectives = {m}\npopulation = {n}\nneighbours = 10");
                let settings = MoeadSettings::parse(&text)?;
                let mut moead = Moead::new(p.space(), settings, seed);
                let f = p.minimise(&mut moead, evaluations, 10)?;
                a.push(format!("{:.3}", pareto::hypervolume(&f, &reference)));
                let nsga2_settings = Nsga2Settings {
                    population: 50,
                    offspring: 50,
                    ..Default::default()
                };
                let mut nsga2 = Nsga2::new(Arc::new(p.space()), nsga2_settings, seed)?;
                let g = p.minimise(&mut nsga2, evaluations, 10)?;
                b.push(format!("{:.3}", pareto::hypervolume(&g, &reference)));
            }
            let best = p.optimal_hypervolume().unwrap_or(f64::NAN);
            println!(
                "| {name} | {evaluations} | {} | {} | {best:.3} |",
                a.join(" / "),
                b.join(" / ")
            );
        }
    }
    Ok(())
}

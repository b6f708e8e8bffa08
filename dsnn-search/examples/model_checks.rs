//! Diagnostics of `evogp`'s model check on the benchmark suite: for each
//! problem, one run of `EvoGp` at a threshold, the proposals made by each
//! part and the smallest leave-one-out rank correlation of the objectives'
//! GPs at a few training-set sizes.
//!
//!     cargo run --release -p dsnn-search --example model_checks -- BUDGET SEED THRESHOLD RECENT

use std::sync::Arc;

use dsnn_search::problems::TestProblem;
use dsnn_search::*;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [budget, seed, threshold, recent] = args.as_slice() else {
        eprintln!("usage: model_checks BUDGET SEED THRESHOLD RECENT");
        std::process::exit(2);
    };
    let budget: usize = budget.parse().unwrap();
    let seed: u64 = seed.parse().unwrap();
    let settings = EvoGpSettings {
        min_loo_correlation: threshold.parse().unwrap(),
        check_recent: recent.parse().unwrap(),
        ..EvoGpSettings::default()
    };
    println!(
        "| problem | GP/EHVI | evolutionary TPE | smallest correlation at 10, 25, 50, 75, last |"
    );
    println!("|---|---:|---:|---|");
    for family in ["zdt", "dtlz", "wfg"] {
        let cells: Vec<(String, usize)> = match family {
            "zdt" => [1, 2, 3, 4, 6]
                .iter()
                .map(|i| (format!("zdt{i}"), 2))
                .collect(),
            "dtlz" => (1..=7)
                .flat_map(|i| [2, 3].map(|m| (format!("dtlz{i}"), m)))
                .collect(),
            _ => (1..=9)
                .flat_map(|i| [2, 3].map(|m| (format!("wfg{i}"), m)))
                .collect(),
        };
        for (name, m) in cells {
            let p = TestProblem::by_name(&name, None, Some(m)).unwrap();
            let mut o = EvoGpProposer::optimizer(Arc::new(p.space()), settings.clone(), 1.0, seed);
            p.minimise(&mut o, budget, 1).unwrap();
            let (gp, evo) = o.proposer().proposal_counts();
            let checks = o.proposer().checks();
            let at = |n: usize| {
                checks
                    .iter()
                    .find(|c| c.0 >= n)
                    .or(checks.last())
                    .map(|c| c.1.iter().cloned().fold(f64::INFINITY, f64::min))
                    .unwrap_or(f64::NAN)
            };
            let shown: Vec<String> = [10, 25, 50, 75, usize::MAX]
                .iter()
                .map(|&n| format!("{:.2}", at(n)))
                .collect();
            println!("| {name}-m{m} | {gp} | {evo} | {} |", shown.join(", "));
        }
    }
}

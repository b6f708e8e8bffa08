//! Scores every stored run of the peer benchmark (`scripts/peer-benchmark.py`)
//! with one metric implementation, dsnn-search's, whoever produced the run:
//! IGD+ of all evaluated points against a sample of about 1,000 points of the
//! true front (raw objectives), and the hypervolume of all evaluated points
//! after the problem's normaliser (true front's ideal 0, nadir 1) at reference
//! 1.1, divided by the true front's (1.0 = the optimum). Writes a Markdown
//! table per budget: the mean IGD+ (and normalised hypervolume) over the
//! seeds per problem and optimizer, the best mean in bold, and a summary of
//! the targets.
//!
//!     cargo run --release -p dsnn-search --example score_peer_runs -- RUNS... OUT.md
//!
//! Each `RUNS` directory holds `RUNS/<optimizer>/<budget>/<problem>-m<M>-s<seed>.json`, each holding
//! `{"f": [[f1, f2, ...], ...]}` in evaluation order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use dsnn_search::pareto::{hypervolume, igd_plus, non_dominated, Normalizer};
use dsnn_search::problems::TestProblem;

/// Problems in the order of the tables.
fn cell_order(name: &str, m: usize) -> (usize, usize, usize) {
    let family = if name.starts_with("zdt") {
        0
    } else if name.starts_with("dtlz") {
        1
    } else {
        2
    };
    let number: usize = name
        .trim_start_matches(|c: char| c.is_ascii_alphabetic())
        .parse()
        .unwrap_or(0);
    (family, number, m)
}

/// What a problem's runs are scored against.
struct Reference {
    front: Vec<Vec<f64>>,
    normaliser: Normalizer,
    n_obj: usize,
    optimal_hv: f64,
}

impl Reference {
    fn new(name: &str, m: usize) -> Result<Reference, String> {
        let problem = TestProblem::by_name(name, None, Some(m)).map_err(|e| e.to_string())?;
        let optimal_hv = problem
            .normalised_optimal_hypervolume()
            .ok_or_else(|| format!("{name} with {m} objectives has no optimal hypervolume"))?;
        Ok(Reference {
            front: problem.pareto_front(1000),
            normaliser: problem.normaliser(),
            n_obj: m,
            optimal_hv,
        })
    }

    /// (IGD+, normalised hypervolume) of the evaluated points `f`.
    fn score(&self, f: &[Vec<f64>]) -> (f64, f64) {
        let nd: Vec<Vec<f64>> = non_dominated(f).into_iter().map(|i| f[i].clone()).collect();
        let scaled: Vec<Vec<f64>> = nd.iter().map(|p| self.normaliser.transform(p)).collect();
        let m = self.n_obj;
        (
            igd_plus(&nd, &self.front),
            hypervolume(&scaled, &vec![1.1; m]) / self.optimal_hv,
        )
    }
}

#[derive(Default)]
struct Cell {
    igd: Vec<f64>,
    hv: Vec<f64>,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

type Key = (usize, String, usize); // budget, problem, objectives

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [runs_dirs @ .., out] = args.as_slice() else {
        eprintln!("usage: score_peer_runs RUNS... OUT.md");
        std::process::exit(2);
    };
    if runs_dirs.is_empty() {
        eprintln!("usage: score_peer_runs RUNS... OUT.md");
        std::process::exit(2);
    }
    let mut refs: HashMap<(String, usize), Reference> = HashMap::new();
    let mut cells: BTreeMap<Key, BTreeMap<String, Cell>> = BTreeMap::new();
    let mut optimizers: BTreeSet<String> = BTreeSet::new();
    let mut runs_scored = 0;
    let opt_dirs = runs_dirs
        .iter()
        .map(std::fs::read_dir)
        .collect::<Result<Vec<_>, _>>()?;
    for opt_dir in opt_dirs.into_iter().flatten() {
        let opt_dir = opt_dir?.path();
        if !opt_dir.is_dir() {
            continue;
        }
        let optimizer = file_name(&opt_dir);
        for budget_dir in std::fs::read_dir(&opt_dir)? {
            let budget_dir = budget_dir?.path();
            if !budget_dir.is_dir() {
                continue;
            }
            let budget: usize = file_name(&budget_dir).parse()?;
            for run in std::fs::read_dir(&budget_dir)? {
                let run = run?.path();
                if run.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let stem = run.file_stem().unwrap_or_default().to_string_lossy();
                let Some((name, m)) = parse_stem(&stem) else {
                    eprintln!("skipping {}: not <problem>-m<M>-s<seed>", run.display());
                    continue;
                };
                let data: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&run)?)?;
                let f: Vec<Vec<f64>> = serde_json::from_value(data["f"].clone())
                    .map_err(|e| format!("{}: `f`: {e}", run.display()))?;
                if f.len() < budget {
                    eprintln!(
                        "note: {}: {} evaluations of {budget}",
                        run.display(),
                        f.len()
                    );
                }
                if f.is_empty() || f.iter().any(|p| p.len() != m) {
                    return Err(format!("{}: expected {m} objectives", run.display()).into());
                }
                let key = (name.clone(), m);
                if !refs.contains_key(&key) {
                    refs.insert(key.clone(), Reference::new(&name, m)?);
                }
                let (igd, hv) = refs[&key].score(&f);
                let cell = cells
                    .entry((budget, name, m))
                    .or_default()
                    .entry(optimizer.clone())
                    .or_default();
                cell.igd.push(igd);
                cell.hv.push(hv);
                optimizers.insert(optimizer.clone());
                runs_scored += 1;
            }
        }
    }
    let text = render(&cells, &optimizers);
    std::fs::write(out, &text)?;
    println!("{runs_scored} runs scored; table in {out}");
    print!("{text}");
    Ok(())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// `zdt1-m2-s0` -> (`zdt1`, 2).
fn parse_stem(stem: &str) -> Option<(String, usize)> {
    let mut parts = stem.rsplitn(3, '-');
    let seed = parts.next()?;
    let m = parts.next()?;
    let name = parts.next()?;
    seed.strip_prefix('s')?.parse::<u64>().ok()?;
    Some((name.to_string(), m.strip_prefix('m')?.parse().ok()?))
}

/// Peers each dsnn optimizer is held against in the targets' summary.
const TARGETS: &[(usize, &str, &[&str])] = &[
    (100, "dsnn-tpe", &["optuna-tpe", "smac-parego"]),
    (100, "dsnn-parego", &["optuna-tpe", "smac-parego"]),
    (1000, "dsnn-nsga2", &["pymoo-nsga2", "optuna-nsga2"]),
    (100, "dsnn-nsga2", &["pymoo-nsga2", "optuna-nsga2"]),
];

fn render(cells: &BTreeMap<Key, BTreeMap<String, Cell>>, optimizers: &BTreeSet<String>) -> String {
    let mut s = String::new();
    let budgets: BTreeSet<usize> = cells.keys().map(|k| k.0).collect();
    for &budget in &budgets {
        let mut rows: Vec<(&Key, &BTreeMap<String, Cell>)> =
            cells.iter().filter(|(k, _)| k.0 == budget).collect();
        rows.sort_by_key(|(k, _)| cell_order(&k.1, k.2));
        let cols: Vec<&String> = optimizers
            .iter()
            .filter(|o| rows.iter().any(|(_, c)| c.contains_key(*o)))
            .collect();
        let seeds: BTreeSet<usize> = rows
            .iter()
            .flat_map(|(_, c)| c.values().map(|v| v.igd.len()))
            .collect();
        let _ = writeln!(
            s,
            "\n#### {budget} evaluations: mean IGD+ (normalised hypervolume), seeds per cell: {}\n",
            seeds
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            s,
            "| problem | {} |",
            cols.iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(s, "|---|{}", "---:|".repeat(cols.len()));
        for (key, by_opt) in &rows {
            let best = by_opt
                .values()
                .map(|c| mean(&c.igd))
                .fold(f64::INFINITY, f64::min);
            let mut line = format!("| {}-m{} |", key.1, key.2);
            for c in &cols {
                match by_opt.get(*c) {
                    Some(cell) => {
                        let igd = mean(&cell.igd);
                        let v = format!("{} ({:.3})", sig(igd), mean(&cell.hv));
                        if igd == best {
                            let _ = write!(line, " **{v}** |");
                        } else {
                            let _ = write!(line, " {v} |");
                        }
                    }
                    None => line.push_str(" - |"),
                }
            }
            let _ = writeln!(s, "{line}");
        }
        for &(b, ours, peers) in TARGETS.iter().filter(|t| t.0 == budget) {
            let mut n = 0;
            let mut below = 0;
            let mut worst: (f64, String) = (0.0, String::new());
            for (key, by_opt) in &rows {
                let Some(o) = by_opt.get(ours) else { continue };
                let ps: Vec<f64> = peers
                    .iter()
                    .filter_map(|p| by_opt.get(*p).map(|c| mean(&c.igd)))
                    .collect();
                if ps.len() < peers.len() {
                    continue;
                }
                n += 1;
                let v = mean(&o.igd);
                if ps.iter().all(|p| v < *p) {
                    below += 1;
                }
                let best_peer = ps.iter().cloned().fold(f64::INFINITY, f64::min);
                let ratio = v / best_peer;
                if ratio > worst.0 {
                    worst = (ratio, format!("{}-m{}", key.1, key.2));
                }
            }
            if n > 0 {
                let _ = writeln!(
                    s,
                    "\n{ours} at {b}: mean IGD+ below {} on {below} of {n} cells ({:.0}%); \
                     largest ratio to the better of them {:.2}x ({}).",
                    peers.join(" and "),
                    100.0 * below as f64 / n as f64,
                    worst.0,
                    worst.1
                );
            }
        }
    }
    s
}

/// Three significant digits.
fn sig(v: f64) -> String {
    if !v.is_finite() || v == 0.0 {
        return format!("{v}");
    }
    let digits = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    format!("{v:.digits$}")
}

//! The front as CSV and the summary as Markdown.

use std::fmt::Write as _;

use super::Summary;

/// The front as CSV: `trial,budget,<objectives...>,<hyperparameters...>`.
pub fn front_csv(s: &Summary) -> String {
    let mut names: Vec<String> = s
        .front
        .iter()
        .flat_map(|p| p.config.iter().map(|(k, _)| k.clone()))
        .collect();
    names.sort();
    names.dedup();
    let mut out = String::new();
    let header: Vec<String> = ["trial".to_string(), "budget".to_string()]
        .into_iter()
        .chain(s.objectives.iter().cloned())
        .chain(names.iter().cloned())
        .collect();
    let _ = writeln!(out, "{}", header.join(","));
    for p in &s.front {
        let mut row = vec![p.trial.clone(), format!("{}", p.budget)];
        row.extend(p.objectives.iter().map(|v| format!("{v}")));
        for n in &names {
            row.push(
                p.config
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| csv_field(v))
                    .unwrap_or_default(),
            );
        }
        let _ = writeln!(out, "{}", row.join(","));
    }
    out
}

fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

/// The summary as Markdown, for people.
pub fn summary_markdown(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Run `{}`\n", s.name);
    let _ = writeln!(
        out,
        "{} trials ({} failed) in {:.1} s. Objectives (minimised): {}.\n",
        s.trials,
        s.failed,
        s.elapsed_s,
        s.objectives.join(", ")
    );
    match (&s.default, s.default_budget) {
        (Some(d), Some(b)) => {
            let _ = writeln!(
                out,
                "Default configuration at budget {b}: {}.\n",
                fmt_vec(d)
            );
        }
        _ => {
            let _ = writeln!(out, "The default configuration has no successful result.\n");
        }
    }
    if let Some(b) = s.budget {
        let _ = writeln!(
            out,
            "## Pareto front at budget {b} ({} points)\n",
            s.front.len()
        );
        let _ = writeln!(
            out,
            "| trial | {} | configuration |",
            s.objectives.join(" | ")
        );
        let _ = writeln!(out, "|---|{}---|", "---:|".repeat(s.objectives.len()));
        for p in &s.front {
            let cfg: Vec<String> = p.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                p.trial,
                p.objectives
                    .iter()
                    .map(|v| format!("{v:.6}"))
                    .collect::<Vec<_>>()
                    .join(" | "),
                cfg.join(" ")
            );
        }
        let _ = writeln!(out);
    }
    if s.default.is_some() {
        let _ = writeln!(
            out,
            "## Best optimizer trial per objective vs the default\n"
        );
        for (name, imp) in s.objectives.iter().zip(&s.improvement_over_default) {
            if let Some(i) = imp {
                let _ = writeln!(out, "- {name}: {:+.1}% (positive = better)", 100.0 * i);
            }
        }
        let _ = writeln!(out);
    }
    if let Some(hv) = s.normalized_hypervolume {
        let _ = writeln!(
            out,
            "Normalised hypervolume of the front: {hv:.4} (fraction of the box up to 1.1 after scaling each objective to the range of this run's successful trials; compares fronts within a run, not across runs).\n"
        );
    }
    if !s.failures.is_empty() {
        let _ = writeln!(out, "## Failures\n");
        for (reason, n) in &s.failures {
            let _ = writeln!(out, "- {n} x {reason}");
        }
    }
    out
}

fn fmt_vec(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.6}"))
        .collect::<Vec<_>>()
        .join(", ")
}

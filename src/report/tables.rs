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
    for reason in &s.warm_starts {
        let _ = writeln!(
            out,
            "Resumed with a warm start: the trial log no longer replayed on the optimizer ({reason}).\n"
        );
    }
    match (&s.default, s.default_budget) {
        (Some(d), Some(b)) => {
            let _ = writeln!(
                out,
                "Default configuration at budget {b}: {} ({}).\n",
                fmt_vec(d),
                s.objectives.join(", ")
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
                    .map(|v| fmt_objective(*v))
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

/// An objective value for people: five significant digits, in scientific
/// notation when it is small or large (an energy of 4.4e-5 J per image
/// printed as `0.000044` hides its digits).
fn fmt_objective(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 || !x.is_finite() {
        format!("{x}")
    } else if (1e-3..1e5).contains(&a) {
        let decimals = (4 - a.log10().floor() as i32).max(0) as usize;
        format!("{x:.decimals$}")
    } else {
        format!("{x:.4e}")
    }
}

fn fmt_vec(v: &[f64]) -> String {
    v.iter()
        .map(|&x| fmt_objective(x))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::fmt_objective;

    #[test]
    fn objective_values_keep_five_significant_digits() {
        assert_eq!(fmt_objective(0.876667), "0.87667");
        assert_eq!(fmt_objective(4.4123e-5), "4.4123e-5");
        assert_eq!(fmt_objective(1234.5678), "1234.6");
        assert_eq!(fmt_objective(-0.25), "-0.25000");
        assert_eq!(fmt_objective(2.5e7), "2.5000e7");
        assert_eq!(fmt_objective(0.0), "0");
    }
}

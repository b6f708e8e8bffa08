//! Study files: a base experiment (or one file per variant), variants as
//! overrides of it, and seeds; each (variant, seed) becomes an ordinary
//! [`CheckedExperiment`] whose run directory is
//! `<output_dir>/<study>/<variant>/seed-<s>/`.
//!
//! Overrides are applied to the base experiment's TOML table, and the
//! result is read by the experiment reader itself, so every key an
//! experiment file refuses is refused here too; its error is then located
//! where the key is written: at the override in the study file, at the
//! study's `[stop]`, or in the base experiment file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::experiment::{set_key, CheckedExperiment};
use crate::registry::Registry;
use crate::settings::{dotted, split_key, ConfigError, Section, Source};

/// The top level of a study file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StudyToml {
    name: String,
    seeds: Vec<u64>,
    #[serde(default)]
    base: Option<PathBuf>,
    #[serde(default)]
    output_dir: Option<PathBuf>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    stop: Option<toml::Table>,
    #[serde(default)]
    set: toml::Table,
    variants: Vec<VariantToml>,
}

/// One `[[variants]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VariantToml {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    experiment: Option<PathBuf>,
    #[serde(default)]
    set: toml::Table,
    #[serde(default)]
    unset: Vec<String>,
}

/// Who sets the study-wide overrides, in messages.
const STUDY: &str = "the study";

/// Keys a variant may not set: the study decides them for every run.
const STUDY_OWNED: &[&str] = &["name", "seed", "output_dir"];

/// One override of a variant: the dotted key it sets in the experiment
/// and where it is written in the study file.
#[derive(Debug, Clone)]
struct Override {
    target: Vec<String>,
    written_at: Vec<String>,
    /// Who sets it, for messages: `the study`, `variant `a``.
    by: String,
}

/// One run of a study: a variant at a seed.
#[derive(Clone, Debug)]
pub struct StudyRun {
    /// The variant's name.
    pub variant: String,
    /// The run's seed.
    pub seed: u64,
    /// The experiment, checked, with its run directory inside the study's.
    pub experiment: CheckedExperiment,
}

/// A variant of a study: its name, what it is, and its runs (one per seed).
#[derive(Clone, Debug)]
pub struct Variant {
    /// Its name (the folder under the study's directory).
    pub name: String,
    /// A few words saying what it is (the file's `description`, or the
    /// overrides it makes).
    pub description: String,
    /// The experiment file it is built from.
    pub experiment_file: PathBuf,
    /// The overrides, as `key = value` pairs (for the report).
    pub overrides: Vec<(String, String)>,
}

/// A checked study: every (variant, seed) resolved into an experiment.
#[derive(Clone, Debug)]
pub struct Study {
    /// The study's name (the folder under `output_dir`).
    pub name: String,
    /// The study file.
    pub file: PathBuf,
    /// What the study is for, if the file says.
    pub description: Option<String>,
    /// The study's directory: `<output_dir>/<name>`.
    pub dir: PathBuf,
    /// The seeds, in order.
    pub seeds: Vec<u64>,
    /// The variants, in file order.
    pub variants: Vec<Variant>,
    /// The runs, seed by seed (every variant of the first seed, then the
    /// next seed), so that a study stopped early has every variant at the
    /// first seeds.
    pub runs: Vec<StudyRun>,
}

/// Names of studies and variants: what a run name allows.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !name.starts_with('.')
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The leaves of a `set` table written at `written_at` (its key path in
/// the study file), set by `by`: nested tables (and dotted or quoted keys)
/// are walked down to the values they set.
fn overrides_of(
    set: &toml::Table,
    written_at: Vec<String>,
    by: &str,
    out: &mut Vec<(Override, toml::Value)>,
) {
    fn walk(
        set: &toml::Table,
        at: &[String],
        skip: usize,
        by: &str,
        out: &mut Vec<(Override, toml::Value)>,
    ) {
        for (k, v) in set {
            let mut at = at.to_vec();
            at.push(k.clone());
            match v {
                toml::Value::Table(t) if !t.is_empty() => walk(t, &at, skip, by, out),
                _ => {
                    // A quoted `"optimizer.kind"` sets the same key as the
                    // dotted `optimizer.kind`.
                    let target: Vec<String> =
                        at[skip..].iter().flat_map(|s| split_key(s)).collect();
                    out.push((
                        Override {
                            target,
                            written_at: at,
                            by: by.to_string(),
                        },
                        v.clone(),
                    ));
                }
            }
        }
    }
    walk(set, &written_at, written_at.len(), by, out);
}

/// An error at `path` of `source`, located at the longest prefix of the
/// path the file has (a missing key is reported at its table).
fn locate(source: &Source, path: &[String], message: String) -> ConfigError {
    let mut e = source.error_at(path, false, message.clone());
    let mut n = path.len();
    while e.location.is_empty() && n > 0 {
        n -= 1;
        e = source.error_at(&path[..n], false, message.clone());
    }
    e.key = (!path.is_empty()).then(|| dotted(path));
    e
}

fn read_experiment_source(study: &Source, at: &str, path: &Path) -> Result<Source, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        study.error(
            at,
            format!(
                "`{at}`: cannot read the experiment file {}: {e}",
                path.display()
            ),
        )
    })?;
    Ok(Source::new(path.display().to_string(), text))
}

impl Study {
    /// Reads a study file and checks every (variant, seed) experiment,
    /// resolving names with `registry`.
    pub fn from_file(path: &Path, registry: &Registry) -> Result<Study, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::unreadable(path, "study", &e))?;
        Self::from_str(&text, path, registry)
    }

    /// Parses and checks study text read from `path` (relative experiment
    /// paths are resolved against its folder).
    pub fn from_str(text: &str, path: &Path, registry: &Registry) -> Result<Study, ConfigError> {
        let source = Source::new(path.display().to_string(), text);
        let doc = source.parse()?;
        let root = Section::new(&source, Vec::new(), Some(toml::Value::Table(doc)));
        let file: StudyToml = root.parse()?;
        if !valid_name(&file.name) {
            return Err(source.error(
                "name",
                format!(
                    "`name` = {:?} is not a valid study name (allowed: 1 to 100 letters, digits, `-`, `_`, `.`; not starting with `.`)",
                    file.name
                ),
            ));
        }
        if file.seeds.is_empty() {
            return Err(source.error("seeds", "`seeds` is empty: a study needs at least one seed"));
        }
        for (i, s) in file.seeds.iter().enumerate() {
            if file.seeds[..i].contains(s) {
                return Err(
                    source.error(&format!("seeds.{i}"), format!("seed {s} is listed twice"))
                );
            }
        }
        if file.variants.is_empty() {
            return Err(source.error(
                "variants",
                "`variants` is empty: a study needs at least one `[[variants]]`",
            ));
        }
        let study_dir = std::path::absolute(parent_dir(path)).unwrap_or_else(|_| parent_dir(path));
        let output_dir = file
            .output_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs"));
        let output_dir = if output_dir.is_relative() {
            std::env::current_dir()
                .map(|d| d.join(&output_dir))
                .unwrap_or(output_dir)
        } else {
            output_dir
        };
        let dir = output_dir.join(&file.name);
        let mut variants = Vec::new();
        let mut per_variant = Vec::new();
        for (i, v) in file.variants.iter().enumerate() {
            let at = |k: &str| format!("variants.{i}.{k}");
            if !valid_name(&v.name) {
                return Err(source.error(
                    &at("name"),
                    format!(
                        "variant name {:?} is not valid (allowed: 1 to 100 letters, digits, `-`, `_`, `.`; not starting with `.`)",
                        v.name
                    ),
                ));
            }
            if file.variants[..i].iter().any(|w| w.name == v.name) {
                return Err(
                    source.error(&at("name"), format!("variant `{}` is listed twice", v.name))
                );
            }
            let (exp_key, exp_path) = match (&v.experiment, &file.base) {
                (Some(p), _) => (at("experiment"), study_dir.join(p)),
                (None, Some(p)) => ("base".to_string(), study_dir.join(p)),
                (None, None) => {
                    return Err(source.error(
                        &at("name"),
                        format!(
                            "variant `{}` has no experiment: set `base` for the study or `experiment` for the variant",
                            v.name
                        ),
                    ))
                }
            };
            let base = read_experiment_source(&source, &exp_key, &exp_path)?;
            // The study's `set` first, then the variant's (which wins).
            let mut overrides = Vec::new();
            overrides_of(&file.set, vec!["set".into()], STUDY, &mut overrides);
            let study_sets = overrides.len();
            overrides_of(
                &v.set,
                vec!["variants".into(), i.to_string(), "set".into()],
                &format!("variant `{}`", v.name),
                &mut overrides,
            );
            for (o, _) in &overrides {
                if let Some(first) = o
                    .target
                    .first()
                    .filter(|f| STUDY_OWNED.contains(&f.as_str()))
                {
                    return Err(source.error_at(
                        &o.written_at,
                        true,
                        format!(
                            "`{first}` is set by the study for every run (run name `seed-<s>`, the study's seeds and output folder); `set` cannot change it"
                        ),
                    ));
                }
            }
            let description = v.description.clone().unwrap_or_else(|| {
                let mut parts: Vec<String> = overrides[study_sets..]
                    .iter()
                    .map(|(o, val)| format!("{} = {val}", dotted(&o.target)))
                    .collect();
                parts.extend(v.unset.iter().map(|k| format!("no {k}")));
                if parts.is_empty() {
                    format!("as {}", exp_path.display())
                } else {
                    parts.join(", ")
                }
            });
            variants.push(Variant {
                name: v.name.clone(),
                description,
                experiment_file: exp_path.clone(),
                overrides: overrides[study_sets..]
                    .iter()
                    .map(|(o, val)| (dotted(&o.target), val.to_string()))
                    .collect(),
            });
            per_variant.push((i, base, exp_path, overrides));
        }
        let mut runs = Vec::new();
        for &seed in &file.seeds {
            for (i, base, exp_path, overrides) in &per_variant {
                let v = &file.variants[*i];
                let experiment = build_run(
                    &source,
                    &file,
                    *i,
                    base,
                    exp_path,
                    overrides,
                    seed,
                    &dir.join(&v.name),
                    registry,
                )?;
                runs.push(StudyRun {
                    variant: v.name.clone(),
                    seed,
                    experiment,
                });
            }
        }
        let first = &runs[0];
        for r in &runs {
            if r.experiment.objective_names() != first.experiment.objective_names() {
                let i = file
                    .variants
                    .iter()
                    .position(|v| v.name == r.variant)
                    .unwrap_or(0);
                return Err(source.error(
                    &format!("variants.{i}.name"),
                    format!(
                        "variant `{}` minimises {}, variant `{}` {}: a study compares its variants on the same objectives (other metrics, emissions included, are reported anyway)",
                        r.variant,
                        r.experiment.objective_names().join(", "),
                        first.variant,
                        first.experiment.objective_names().join(", ")
                    ),
                ));
            }
        }
        Ok(Study {
            name: file.name,
            file: path.to_path_buf(),
            description: file.description,
            dir,
            seeds: file.seeds,
            variants,
            runs,
        })
    }

    /// The objectives every run minimises (the same for all variants).
    pub fn objective_names(&self) -> &[String] {
        self.runs[0].experiment.objective_names()
    }
}

/// The experiment of variant `i` at `seed`: the base table, the study's
/// `[stop]` in place of the base's, the variant's `unset` and `set`, then
/// the study's name, seed and folder; read by the experiment reader.
#[allow(clippy::too_many_arguments)]
fn build_run(
    study: &Source,
    file: &StudyToml,
    i: usize,
    base: &Source,
    base_path: &Path,
    overrides: &[(Override, toml::Value)],
    seed: u64,
    variant_dir: &Path,
    registry: &Registry,
) -> Result<CheckedExperiment, ConfigError> {
    let v = &file.variants[i];
    let mut doc = base.parse()?;
    if let Some(stop) = &file.stop {
        doc.insert("stop".into(), toml::Value::Table(stop.clone()));
    }
    for (j, key) in v.unset.iter().enumerate() {
        if !remove_key(&mut doc, &split_key(key)) {
            return Err(study.error(
                &format!("variants.{i}.unset.{j}"),
                format!(
                    "`{key}` is not in {} (after the study's `[stop]`): nothing to unset",
                    base_path.display()
                ),
            ));
        }
    }
    for (o, value) in overrides {
        set_key(&mut doc, &dotted(&o.target), value.clone());
    }
    doc.insert("name".into(), toml::Value::String(format!("seed-{seed}")));
    doc.insert("seed".into(), toml::Value::Integer(seed as i64));
    doc.insert(
        "output_dir".into(),
        toml::Value::String(variant_dir.display().to_string()),
    );
    let text = toml::to_string(&doc).map_err(|e| ConfigError {
        file: study.file().to_string(),
        location: String::new(),
        key: None,
        message: format!("variant `{}`: cannot write its experiment: {e}", v.name),
    })?;
    let label = format!("{} (variant `{}`, seed {seed})", study.file(), v.name);
    CheckedExperiment::from_str(&text, &label, &parent_dir(base_path), registry)
        .map_err(|e| relocate(e, study, file, i, base, overrides))
}

/// Removes the dotted key `path` from `doc`; whether it was there.
fn remove_key(doc: &mut toml::Table, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => doc.remove(last).is_some(),
        [first, rest @ ..] => match doc.get_mut(first) {
            Some(toml::Value::Table(t)) => remove_key(t, rest),
            _ => false,
        },
    }
}

/// Moves an error of the generated experiment to where its key is
/// written: the variant's override of it, the study's `[stop]`, or the
/// base file.
fn relocate(
    e: ConfigError,
    study: &Source,
    file: &StudyToml,
    i: usize,
    base: &Source,
    overrides: &[(Override, toml::Value)],
) -> ConfigError {
    let v = &file.variants[i];
    let Some(key) = e.key.clone() else {
        return ConfigError {
            file: study.file().to_string(),
            location: String::new(),
            key: None,
            message: format!("variant `{}`: {}", v.name, e.message),
        };
    };
    let path = split_key(&key);
    let related = |t: &[String]| path.starts_with(t) || t.starts_with(&path);
    // The most specific override of the key; of equal ones the last (the
    // variant's over the study's).
    if let Some((o, _)) = overrides
        .iter()
        .filter(|(o, _)| related(&o.target))
        .max_by_key(|(o, _)| o.target.len())
    {
        let by = if o.by == STUDY {
            format!("{STUDY} (variant `{}`)", v.name)
        } else {
            o.by.clone()
        };
        return locate(
            study,
            &o.written_at,
            format!("{by} sets `{}`: {}", dotted(&o.target), e.message),
        );
    }
    if path.first().is_some_and(|p| p == "stop") && file.stop.is_some() {
        return locate(study, &path, format!("the study's `[stop]`: {}", e.message));
    }
    let mut out = locate(base, &path, e.message.clone());
    out.message = format!("{} (variant `{}`)", e.message, v.name);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_tables_are_walked_to_their_leaves() {
        let set: toml::Table = toml::from_str(
            "\"optimizer.kind\" = \"nsga2\"\nfidelity = { kind = \"fixed\" }\nstop.trials = 3\n",
        )
        .unwrap();
        let mut out = Vec::new();
        overrides_of(
            &set,
            vec!["variants".into(), "0".into(), "set".into()],
            "variant `a`",
            &mut out,
        );
        assert!(out.iter().all(|(o, _)| o.by == "variant `a`"));
        let mut targets: Vec<String> = out.iter().map(|(o, _)| dotted(&o.target)).collect();
        targets.sort();
        assert_eq!(targets, ["fidelity.kind", "optimizer.kind", "stop.trials"]);
        let quoted = out
            .iter()
            .find(|(o, _)| dotted(&o.target) == "optimizer.kind")
            .unwrap();
        assert_eq!(
            quoted.0.written_at,
            ["variants", "0", "set", "optimizer.kind"]
        );
    }

    #[test]
    fn remove_key_finds_nested_keys_only_where_they_are() {
        let mut doc: toml::Table = toml::from_str("[optimizer]\nkind = \"x\"\nn = 3\n").unwrap();
        assert!(remove_key(&mut doc, &split_key("optimizer.n")));
        assert!(!remove_key(&mut doc, &split_key("optimizer.n")));
        assert!(!remove_key(&mut doc, &split_key("optimizer.kind.deeper")));
        assert_eq!(doc["optimizer"].as_table().unwrap().len(), 1);
    }
}

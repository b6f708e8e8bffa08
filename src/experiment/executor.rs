//! `[executor]`: where trials run, through a registered executor.
//!
//! `kind`, `workers`, `trial_time_limit_s` and `tell_order` are common to
//! every executor;
//! the executor's own settings are the other keys of `[executor]` and those
//! of `[executor.KIND]` (so `executor = { kind = "slurm", partition = "gpu" }`
//! and `[executor.slurm] partition = "gpu"` say the same).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::registry::{ExecutorFactory, Kind, Registry};
use crate::settings::{ConfigError, Section};

/// The keys of `[executor]` every executor shares.
pub const COMMON_KEYS: &[&str] = &[
    "kind",
    "workers",
    "trial_time_limit_s",
    "tell_order",
    "tell_window",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Common {
    #[serde(default = "default_kind")]
    kind: String,
    #[serde(default = "default_workers")]
    workers: usize,
    #[serde(default)]
    trial_time_limit_s: Option<f64>,
    #[serde(default)]
    tell_order: Option<String>,
    #[serde(default)]
    tell_window: Option<usize>,
}

fn default_kind() -> String {
    "threads".into()
}

fn default_workers() -> usize {
    1
}

/// In which order the run loop tells the optimizer the results of trials
/// that run at the same time (`executor.tell_order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TellOrder {
    /// As they finish (the default): no worker waits, but with several
    /// workers what the optimizer asks next depends on timing.
    #[default]
    Completion,
    /// In the order the trials were asked, one ask after each tell, at most
    /// `tell_window` trials asked and not yet told: the same file and seed
    /// give the same trials with any timing and any number of workers (for
    /// a given window), at the price of a free worker waiting while an
    /// earlier trial runs on.
    Trial,
}

/// The run's executor, checked.
#[derive(Clone)]
pub struct ExecutorChoice {
    /// The executor's registered name.
    pub kind: String,
    /// Trials at once.
    pub workers: usize,
    /// Per-trial wall-clock limit.
    pub trial_time_limit: Option<Duration>,
    /// In which order results reach the optimizer.
    pub tell_order: TellOrder,
    /// With [`TellOrder::Trial`]: at most this many trials asked and not yet
    /// told (`executor.tell_window`, default `workers`). The sequence of
    /// trials depends on it, not on the number of workers.
    pub tell_window: usize,
    /// Its own settings.
    pub settings: Section,
    /// Its factory.
    pub factory: Arc<dyn ExecutorFactory>,
}

impl ExecutorChoice {
    /// Reads and checks `[executor]`.
    pub fn read(section: &Section, registry: &Registry) -> Result<Self, ConfigError> {
        let c: Common = section.only(COMMON_KEYS).parse()?;
        let factory = registry
            .executor(&c.kind)
            .map_err(|e| section.error("kind", format!("`executor.kind`: {e}")))?;
        if c.workers == 0 || c.workers > 1024 {
            return Err(section.out_of_range("workers", c.workers, "1..=1024"));
        }
        if let Some(t) = c.trial_time_limit_s {
            // Bounded so that it converts to a `Duration` and adds to an
            // `Instant` (1e300 panicked).
            if !(t.is_finite() && t > 0.0 && t <= 1e9) {
                return Err(section.out_of_range("trial_time_limit_s", t, "> 0 and at most 1e9"));
            }
        }
        // Tables named after another executor belong to that one.
        let table = section.table();
        for name in registry.names(Kind::Executor) {
            if name != c.kind && table.get(&name).is_some_and(|v| v.is_table()) {
                return Err(section.error(
                    &name,
                    format!("`[executor.{name}]` needs `executor.kind = \"{name}\"`"),
                ));
            }
        }
        let tell_order = match c.tell_order.as_deref() {
            None | Some("completion") => TellOrder::Completion,
            Some("trial") => TellOrder::Trial,
            Some(other) => {
                return Err(section.error(
                    "tell_order",
                    format!(
                        "`executor.tell_order` is \"{other}\"; allowed: \"completion\", \"trial\""
                    ),
                ))
            }
        };
        let tell_window = match (c.tell_window, tell_order) {
            (None, _) => c.workers,
            (Some(w), TellOrder::Trial) if (1..=1024).contains(&w) => w,
            (Some(w), TellOrder::Trial) => {
                return Err(section.out_of_range("tell_window", w, "1..=1024"))
            }
            (Some(_), TellOrder::Completion) => {
                return Err(section.error(
                    "tell_window",
                    "`executor.tell_window` needs `executor.tell_order = \"trial\"`",
                ))
            }
        };
        let settings = own_settings(section, &c.kind)?;
        factory.check(&settings)?;
        Ok(ExecutorChoice {
            kind: c.kind,
            workers: c.workers,
            trial_time_limit: c.trial_time_limit_s.map(Duration::from_secs_f64),
            tell_order,
            tell_window,
            settings,
            factory,
        })
    }
}

/// The executor's own settings: `[executor.KIND]` with the other keys of
/// `[executor]` merged in (each remembering where it is written).
fn own_settings(section: &Section, kind: &str) -> Result<Section, ConfigError> {
    let table = section.table();
    let mut own = match table.get(kind) {
        Some(toml::Value::Table(t)) => t.clone(),
        Some(_) => {
            return Err(section.error(
                kind,
                format!("`executor.{kind}`: invalid type, expected a table"),
            ))
        }
        None => toml::Table::new(),
    };
    let mut flat = Vec::new();
    for (k, v) in &table {
        if COMMON_KEYS.contains(&k.as_str()) || k == kind {
            continue;
        }
        if own.contains_key(k) {
            return Err(section.error(
                k,
                format!(
                    "`executor.{k}`: `{k}` is given both in `executor` and in `[executor.{kind}]`"
                ),
            ));
        }
        own.insert(k.clone(), v.clone());
        flat.push(k.clone());
    }
    let mut path = section.path().to_vec();
    path.push(kind.to_string());
    let mut s = Section::new(section.source(), path, Some(toml::Value::Table(own)));
    for k in flat {
        let mut written = section.path().to_vec();
        written.push(k.clone());
        s = s.with_origin(&k, written);
    }
    Ok(s)
}

//! A data set and a fidelity schedule of our own, to show that every kind
//! of name in an experiment file can come from research code:
//!
//! - `fashion-mnist-classes`: the bundled Fashion-MNIST subset restricted
//!   to its first `classes` classes (`[data] classes = 3`, 2..=10), for
//!   quick studies on an easier problem;
//! - `two-step`: one bracket that trains `start` configurations at
//!   `fidelity.min` and continues the best `keep` of them at `fidelity.max`
//!   (`[fidelity] kind = "two-step"`, `start = 6`, `keep = 2`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dsnn::registry::{BudgetRange, DatasetFactory, ScheduleFactory};
use dsnn::settings::{ConfigError, Section};
use dsnn_core::data::{load_dataset, Dataset, DatasetName, Splits};
use dsnn_search::{Bracket, FidelitySchedule, Rung};
use serde::Deserialize;

/// `[data]` settings of `fashion-mnist-classes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassesSettings {
    #[serde(default = "default_classes")]
    classes: usize,
}

fn default_classes() -> usize {
    3
}

impl ClassesSettings {
    fn read(settings: &Section) -> Result<Self, ConfigError> {
        let s: ClassesSettings = settings.parse()?;
        if !(2..=10).contains(&s.classes) {
            return Err(settings.out_of_range("classes", s.classes, "2..=10"));
        }
        Ok(s)
    }
}

/// Fashion-MNIST restricted to its first classes.
pub struct FashionMnistClasses;

/// The images of `data` whose label is below `classes`, relabelled to that
/// many classes.
fn first_classes(data: &Dataset, classes: usize) -> Dataset {
    let keep: Vec<usize> = (0..data.len())
        .filter(|&i| usize::from(data.labels[i]) < classes)
        .collect();
    let mut subset = data.select(&keep);
    subset.classes = classes;
    subset
}

impl DatasetFactory for FashionMnistClasses {
    fn description(&self) -> String {
        "the bundled Fashion-MNIST subset, first `classes` classes only (examples/research-crate)"
            .into()
    }

    fn bundled_dir(&self) -> Option<PathBuf> {
        Some(dsnn::dsnn_objective::bundled_data_root().join("fashion-mnist-small"))
    }

    fn default_backbone(&self) -> Option<String> {
        Some("vgg".into())
    }

    fn check(&self, settings: &Section) -> Result<(), ConfigError> {
        ClassesSettings::read(settings).map(|_| ())
    }

    fn load(&self, dir: &Path, settings: &Section, seed: u64) -> Result<Splits, String> {
        let classes = ClassesSettings::read(settings)
            .map_err(|e| e.to_string())?
            .classes;
        let splits =
            load_dataset(DatasetName::FashionMnist, dir, seed).map_err(|e| e.to_string())?;
        Ok(Splits {
            train: first_classes(&splits.train, classes),
            test: first_classes(&splits.test, classes),
        })
    }
}

/// `[fidelity]` settings of `two-step` besides the common keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TwoStepSettings {
    start: usize,
    keep: usize,
}

/// The `two-step` schedule's factory.
pub struct TwoStepFactory;

/// `start` configurations at `min`, the best `keep` continued at `max`.
#[derive(Debug, Clone)]
pub struct TwoStep {
    start: usize,
    keep: usize,
    min: f64,
    max: f64,
}

impl FidelitySchedule for TwoStep {
    fn brackets(&self) -> Vec<Bracket> {
        vec![Bracket {
            rungs: vec![
                Rung {
                    n_configs: self.start,
                    budget: self.min,
                },
                Rung {
                    n_configs: self.keep,
                    budget: self.max,
                },
            ],
        }]
    }

    fn max_budget(&self) -> f64 {
        self.max
    }
}

impl ScheduleFactory for TwoStepFactory {
    fn description(&self) -> String {
        "`start` configurations at `min`, the best `keep` continued at `max` (examples/research-crate)"
            .into()
    }

    fn multi_fidelity(&self) -> bool {
        true
    }

    fn build(
        &self,
        section: &Section,
        range: &BudgetRange,
    ) -> Result<Arc<dyn FidelitySchedule>, ConfigError> {
        let own = section.without(&["kind", "unit", "min", "max", "eta"]);
        let s: TwoStepSettings = own.parse()?;
        if s.start < 2 {
            return Err(section.out_of_range("start", s.start, ">= 2"));
        }
        if !(1..s.start).contains(&s.keep) {
            return Err(section.out_of_range("keep", s.keep, format!("1..{}", s.start)));
        }
        let min = range
            .min
            .ok_or_else(|| section.error("", "`two-step` needs `fidelity.min`"))?;
        if !(min > 0.0 && min < range.max) {
            return Err(section.out_of_range(
                "min",
                min,
                format!("above 0 and below max = {}", range.max),
            ));
        }
        Ok(Arc::new(TwoStep {
            start: s.start,
            keep: s.keep,
            min,
            max: range.max,
        }))
    }
}

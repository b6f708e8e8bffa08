//! Studies (`dsnn study FILE.toml`): a set of variants (experiment files,
//! or one base experiment with overrides: another optimizer, backbone,
//! data set, objective or stopping rule) times a list of seeds. Each
//! (variant, seed) is an ordinary run directory,
//! `<output_dir>/<study>/<variant>/seed-<s>/`, carried out by the normal
//! run loop, so resume, locking, executors and per-run reports hold
//! unchanged; the study skips finished runs and resumes half-done ones.
//! The report (`study.md`, `study.json`, SVG plots in the study's folder)
//! compares the variants over seeds: the default's objectives and the
//! search's improvement over it, hypervolume on one scale shared by the
//! whole study, empirical attainment surfaces, the front members'
//! settings, and how energy and emissions were obtained.
//!
//! ```no_run
//! use dsnn::study::{run_study, study_report, write_study_report, Study, StudyOptions};
//!
//! let registry = dsnn::builtins::registry();
//! let study = Study::from_file("examples/studies/micro.toml".as_ref(), &registry)?;
//! let outcome = run_study(&study, StudyOptions::default());
//! let report = study_report(&study);
//! write_study_report(&study, &report)?;
//! println!("{} runs, {} variants", outcome.runs.len(), report.variants.len());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Format of study files: `docs/study.md`.

pub mod analysis;
pub mod execute;
pub mod file;
pub mod report;

pub use analysis::{Band, FrontSettings, SharedScale, Spread};
pub use execute::{run_state, run_study, RunEnd, RunState, StudyOptions, StudyOutcome};
pub use file::{Study, StudyRun, Variant};
pub use report::{study_markdown, study_report, write_study_report, StudyReport, VariantReport};

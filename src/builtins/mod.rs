//! The built-in entries of the registry: dsnn-core's backbones, the data
//! sets, the `dsnn` and `problem` objectives, optimizers and proposers,
//! schedules, the `configuration` space kind, meters and executors.

pub mod datasets;
pub mod executors;
pub mod meters;
pub mod optimizers;
pub mod schedules;
pub mod spaces;

use std::sync::Arc;

use crate::dsnn_objective::DsnnObjectiveFactory;
use crate::problem_objective::ProblemObjectiveFactory;
use crate::registry::Registry;

/// A registry with every built-in entry (and, in builds with the `plugins`
/// feature, the plugin loader that finds dynamic plugins for an
/// experiment). Research code adds its own entries to it.
pub fn registry() -> Registry {
    let mut r = Registry::empty();
    r.mark_built_in(true);
    for b in dsnn_core::builtin_backbones() {
        r.register_backbone(b);
    }
    datasets::register(&mut r);
    r.register_objective("dsnn", Arc::new(DsnnObjectiveFactory));
    r.register_objective("problem", Arc::new(ProblemObjectiveFactory));
    optimizers::register(&mut r);
    schedules::register(&mut r);
    spaces::register(&mut r);
    meters::register(&mut r);
    executors::register(&mut r);
    #[cfg(feature = "plugins")]
    r.set_plugin_loader(Arc::new(crate::plugins::HostLoader));
    r.mark_built_in(false);
    r
}

//! A research crate built on dsnn, as a researcher outside the repository
//! would write one: a backbone of its own ([`vgg::Vgg`], with `width` and
//! `blocks` hyperparameters the search may tune), an objective of its own
//! ([`latency::LossLatency`]: loss and integer-engine latency), a data set
//! and a fidelity schedule ([`extras`]) and a binary,
//! `dsnn-research`, that is dsnn's whole CLI with both registered.
//!
//! ```sh
//! cargo run --release -p dsnn-example-research -- run examples/research-crate/search.toml
//! ```

#![warn(missing_docs)]

pub mod extras;
pub mod latency;
pub mod vgg;

use std::sync::Arc;

use dsnn::registry::Registry;

/// dsnn's built-in registry plus this crate's backbone (`vgg`), objective
/// (`loss-latency`), data set (`fashion-mnist-classes`) and fidelity
/// schedule (`two-step`).
pub fn registry() -> Registry {
    let mut registry = dsnn::builtins::registry();
    registry.register_backbone(Arc::new(vgg::Vgg));
    registry.register_objective("loss-latency", Arc::new(latency::LossLatencyFactory));
    registry.register_dataset(
        "fashion-mnist-classes",
        Arc::new(extras::FashionMnistClasses),
    );
    registry.register_schedule("two-step", Arc::new(extras::TwoStepFactory));
    registry
}

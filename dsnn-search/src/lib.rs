//! Generic multi-objective, multi-fidelity hyperparameter optimisation.
//!
//! Independent of neural networks and of every other dsnn crate.

//! `dsnn-research`: dsnn's whole command line (`run`, `check`, `trial`,
//! `train`, `export`, `infer`, `report`, `pareto`, `plugins`) with this
//! crate's backbone and objective registered. The processes and SLURM
//! executors start this binary for trials, so the objective runs there too.

fn main() -> std::process::ExitCode {
    dsnn::cli::main(dsnn_example_research::registry())
}

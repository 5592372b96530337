//! The subcommands of `infer`, one module each: arguments and the steps of the command.

use infer::runtime::Backend;
use std::path::PathBuf;

/// Exit code for an error (see `main`): 3 when the runtime failed, else 2 (bad input).
pub fn exit_code(e: &anyhow::Error) -> i32 {
    match e.downcast_ref::<infer::Error>() {
        Some(infer::Error::Runtime { .. }) => 3,
        _ => 2,
    }
}

/// The model and the runtime: every subcommand but `inspect` takes them.
#[derive(clap::Args)]
pub struct ModelArgs {
    /// The exported ONNX model (with its card).
    #[arg(long)]
    pub model: PathBuf,
    /// tract (pure Rust) or ort (ONNX Runtime).
    #[arg(long, default_value = "tract")]
    pub backend: Backend,
    /// Threads per model run, for tract and ONNX Runtime alike (default: one per core; `infer
    /// slide`: the cores its patch workers leave, at least one).
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    pub threads: usize,
}

/// An expression file and, optionally, its known labels (to report accuracy).
#[derive(clap::Args)]
pub struct ExpressionInput {
    /// Expression file: GSEA txt/gct, CSV/TSV, HDF5 or h5ad.
    #[arg(long)]
    pub input: PathBuf,
    /// Label column (CSV/TSV) or obs column (h5ad) with known classes, to report accuracy against.
    #[arg(long)]
    pub label_column: Option<String>,
}

pub mod cells;
pub mod genes;
pub mod inspect;
pub mod mol;
pub mod nodes;
pub mod predict;
pub mod slide;

/// Print the accuracy of the predictions against labels read with the input, if any.
pub fn report_accuracy(c: &infer::classify::Classification, labels: Option<&[String]>) {
    print_accuracy(labels.map(|l| c.correct(l)));
}

/// Prints `(correct, total)` as the accuracy against the input's labels, when there are labels.
pub fn print_accuracy(correct: Option<(usize, usize)>) {
    if let Some((correct, total)) = correct {
        eprintln!("accuracy against the input's labels: {:.3} ({correct}/{total})", correct as f64 / total as f64);
    }
}

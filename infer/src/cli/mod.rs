//! The subcommands of `infer`, one module each: arguments and the steps of the command.

use anyhow::Context;
use infer::runtime::Backend;
use std::path::{Path, PathBuf};

/// Exit code for an error (see `main`): 3 when the runtime failed, else 2 (bad input).
pub fn exit_code(e: &anyhow::Error) -> i32 {
    match e.downcast_ref::<infer::Error>() {
        Some(infer::Error::Runtime { .. }) => 3,
        _ => 2,
    }
}

/// Refuse, before any work, an output path that is one of the inputs or not a regular file.
pub fn check_out(out: &Path, inputs: &[Option<&Path>]) -> anyhow::Result<()> {
    onnx_format::check_output_kind(out).with_context(|| out.display().to_string())?;
    let inputs: Vec<&Path> = inputs.iter().flatten().copied().collect();
    onnx_format::check_not_an_input(out, &inputs)?;
    Ok(())
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
    if let Some(labels) = labels {
        let (correct, total) = c.correct(labels);
        eprintln!("accuracy against the input's labels: {:.3} ({correct}/{total})", correct as f64 / total as f64);
    }
}

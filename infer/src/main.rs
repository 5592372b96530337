//! `infer`: run exported models without burn. One module per subcommand in `cli/`.

mod cli;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "infer", version, about = "Run exported bioedge models with tract or ONNX Runtime")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the model card and graph summary of an exported model.
    Inspect(cli::inspect::Args),
    /// Class probabilities per sample for an expression file (GSEA txt/gct + cls, CSV/TSV, HDF5, h5ad).
    Predict(cli::predict::Args),
    /// Cell types for single-cell data (h5ad or any expression format): PCA and kNN graph as the model card says.
    Cells(cli::cells::Args),
    /// Node classes for a graph: sparse features (`node feature value` lines) + an edge list.
    Nodes(cli::nodes::Args),
    /// Task probabilities (e.g. Tox21) for molecules given as SMILES, with a `mol-graphconv` model.
    Mol(cli::mol::Args),
    /// Gene embeddings (gene2vec): the genes most similar to a gene, or its predicted gene sets.
    Genes(cli::genes::Args),
    /// Predicted expression over a whole histology image: at spot-file positions or on a grid over tissue.
    Slide(cli::slide::Args),
}

/// Exit codes: 0 done; 2 bad input or usage (a file, a value, a model that does not fit the
/// command: fix the input, do not retry); 3 runtime failure (the inference runtime failed on
/// valid input: may be retried, e.g. elsewhere); 70 internal error (a bug: please report it).
fn main() {
    infer::error::report_panics_as_bugs();
    bioedge_runtime::keep_freed_memory();
    let r = match Cli::parse().cmd {
        Cmd::Inspect(a) => cli::inspect::run(a),
        Cmd::Predict(a) => cli::predict::run(a),
        Cmd::Cells(a) => cli::cells::run(a),
        Cmd::Nodes(a) => cli::nodes::run(a),
        Cmd::Mol(a) => cli::mol::run(a),
        Cmd::Genes(a) => cli::genes::run(a),
        Cmd::Slide(a) => cli::slide::run(a),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(cli::exit_code(&e));
    }
}

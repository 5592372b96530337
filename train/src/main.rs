//! `train`: data → burn training → verified ONNX export.

mod cells;
mod compare;
mod gene;
mod gene2vec;
mod mol;
mod node;
mod node2vec;
mod pipeline;
mod spot;
mod spot_cv;
mod verify;

use clap::{Parser, Subcommand};
use onnx_format::Family;

#[derive(Parser)]
#[command(name = "train", version, about = "Train bioedge models with burn and export verified ONNX")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Gene-graph GCN (Dutil et al. 2018) on an expression matrix + gene graph; exports ONNX.
    GeneGcn(gene::GeneArgs),
    /// MLP baseline on the same genes; exports ONNX.
    GeneMlp(gene::GeneArgs),
    /// GCN node classification (Kipf & Welling) on a Planetoid-style dataset; exports ONNX.
    NodeGcn(node::NodeArgs),
    /// GAT node classification (Veličković et al.) on a Planetoid-style dataset; exports ONNX.
    NodeGat(node::NodeArgs),
    /// Node2Vec embeddings (Grover & Leskovec); k-means / logistic-regression evaluation; exports ONNX.
    Node2vec(node2vec::Node2VecArgs),
    /// Gene2Vec embeddings from gene sets (GMT): held-out membership scores; exports ONNX + word2vec text.
    Gene2vec(gene2vec::Gene2VecArgs),
    /// DeepChem GraphConv on a SMILES table with binary tasks (Tox21): per-task ROC-AUC; exports ONNX.
    Mol(mol::MolArgs),
    /// Cell types on single-cell data (h5ad): PCA, kNN graph, GAT; baselines and clustering.
    Cells(cells::CellArgs),
    /// TCGN-style histology spot model on HER2ST: train, evaluate on a held-out section, export ONNX.
    Spot(spot::SpotArgs),
    /// Histology protocols on HER2ST: leave-one-section-out and leave-one-patient-out over seeds,
    /// with test-time augmentation, seed ensembles and baselines; a Markdown + JSON report.
    SpotCv(spot_cv::SpotCvArgs),
    /// GCN vs MLP over training sizes and seeds; table, CSV and SVG plot.
    GeneCompare {
        #[command(flatten)]
        data: gene::DataArgs,
        #[command(flatten)]
        fit: gene::FitArgs,
        #[command(flatten)]
        compare: compare::CompareArgs,
    },
}

/// Exit codes: 0 done; 2 an error (bad input, or a failed parity check: nothing written); 70 an
/// internal error (a bug: please report it).
fn main() {
    infer::error::report_panics_as_bugs();
    let r = match Cli::parse().cmd {
        Cmd::GeneGcn(a) => gene::run_export(Family::GeneGcn, &a.data, &a.fit, &a.export),
        Cmd::GeneMlp(a) => gene::run_export(Family::GeneMlp, &a.data, &a.fit, &a.export),
        Cmd::GeneCompare { data, fit, compare } => compare::run(&data, &fit, &compare),
        Cmd::NodeGcn(a) => node::run(Family::NodeGcn, &a),
        Cmd::Cells(a) => cells::run(&a),
        Cmd::NodeGat(a) => node::run(Family::NodeGat, &a),
        Cmd::Node2vec(a) => node2vec::run(&a),
        Cmd::Gene2vec(a) => gene2vec::run(&a),
        Cmd::Spot(a) => spot::run(&a),
        Cmd::SpotCv(a) => spot_cv::run(&a),
        Cmd::Mol(a) => mol::run(&a),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

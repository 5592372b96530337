//! `infer nodes`: node classes for a graph given as sparse features and an edge list.

use anyhow::{Context, Result};
use infer::runtime::{Options, Session};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub m: super::ModelArgs,
    /// Node features as `row col value` TSV (header first), optionally gzipped.
    #[arg(long)]
    pub features: PathBuf,
    /// Edges as `src dst` TSV (header first).
    #[arg(long)]
    pub edges: PathBuf,
    /// Number of nodes (default: largest feature row + 1).
    #[arg(long)]
    pub num_nodes: Option<usize>,
    /// Treat edges as directed (default: add the reverse of every edge).
    #[arg(long)]
    pub directed: bool,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let Args { m: super::ModelArgs { model, backend, threads }, features, edges, num_nodes, directed, out } = a;
    onnx_format::check_output(&out, [model.as_path(), &features, &edges])?;
    use infer::nodes::{check_node_family, classify_nodes, read_coo_features_opt, read_edges};
    let card = infer::read_card(&model)?;
    check_node_family(&card, &model)?;
    let (x, width, n) = read_coo_features_opt(&features, num_nodes)?;
    let e = read_edges(&edges, n)?;
    let (src, dst) = if directed { e.iter().map(|&(a, b)| (a as i64, b as i64)).unzip() } else { infer::nodes::both_directions(&e) };
    let mut session = Session::from_file(&model, backend, &Options { threads, ..Default::default() })?;
    let probs = classify_nodes(&mut session, &card, &model, &x, n, width, &src, &dst)
        .with_context(|| format!("{} + {}", features.display(), edges.display()))?;
    let k = probs.len() / n;
    let classes: Vec<String> = (0..k).map(|c| card.classes.get(c).cloned().unwrap_or_else(|| c.to_string())).collect();
    let ids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let csv = infer::classify::probabilities_csv("node", &ids, &classes, &probs);
    onnx_format::write_atomic(&out, csv.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("{n} nodes, {} directed edges; provider {}; wrote {}", src.len(), session.provider, out.display());
    Ok(())
}

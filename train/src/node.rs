//! `train node-gcn` / `train node-gat`: Planetoid-style node classification, several seeds,
//! export of one model with parity on graphs of other sizes.

use crate::pipeline::{CommonArgs, Draft, progress, record_parity};
use crate::verify::{self, Parity};
use anyhow::{Context, Result};
use clap::Args;
use infer::nodes::{NodeDataset, read_planetoid};
use infer::runtime::Value;
use models::metrics::{accuracy, argmax_rows, mean_std};
use models::node::{NodeGatConfig, NodeGcnConfig};
use models::node_fit::{NodeArchitecture, NodeClassifier, NodeData, NodeTrainConfig};
use onnx_format::card::{Family, ModelCard, NodeFeatures, Preprocessing};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct NodeArgs {
    /// Dataset prefix: `<prefix>.edges.tsv`, `.features.coo.tsv[.gz]`, `.labels.tsv`, `.splits.tsv`.
    #[arg(long, default_value = "../shared/data/planetoid/derived/cora")]
    pub data: PathBuf,
    /// Seeds 0..N; mean ± std of test accuracy is reported; seed 0's model is exported.
    #[arg(long, default_value_t = 10)]
    pub seeds: u64,
    /// Defaults per family: GCN 200 epochs / patience 10 / lr 0.01; GAT 1000 / 100 / 0.005.
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub patience: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f64,
    /// Hidden units (GCN) or per head (GAT; default 8).
    #[arg(long)]
    pub hidden: Option<usize>,
    /// GAT heads in the first layer.
    #[arg(long, default_value_t = 8)]
    pub heads: usize,
    #[arg(long)]
    pub dropout: Option<f64>,
    /// GAT: dropout on the attended features too, as the reference TensorFlow code.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub value_dropout: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

fn induced(d: &NodeDataset, keep: usize) -> (Vec<i64>, Vec<i64>) {
    let e: Vec<(u32, u32)> = d.edges.iter().copied().filter(|&(a, b)| (a as usize) < keep && (b as usize) < keep).collect();
    infer::nodes::directed(&e)
}

/// Meaning of a node model's `edge_index` input.
pub const EDGE_INDEX: (&str, &str) = (
    "edge_index",
    "row 0 = source node, row 1 = target node, ids in 0..num_nodes; both directions for undirected graphs; self-loops are ignored and re-added once per node; at most 16,777,215 edges + nodes per run (the segment bounds are counted in f32, exact below 2^24)",
);

pub fn run(family: Family, a: &NodeArgs) -> Result<()> {
    let inputs = infer::nodes::planetoid_files(&a.data);
    onnx_format::check_output(&a.common.out, inputs.iter().map(|p| p.as_path()))?;
    let d = read_planetoid(&a.data)?;
    let (src, dst) = d.edge_index();
    eprintln!(
        "{}: {} nodes, {} features, {} classes, {} undirected edges; split {}/{}/{}",
        d.name,
        d.num_nodes,
        d.num_features,
        d.num_classes,
        d.edges.len(),
        d.train.len(),
        d.val.len(),
        d.test.len()
    );
    let gat = family == Family::NodeGat;
    let arch = if gat {
        NodeArchitecture::NodeGat(NodeGatConfig {
            heads: a.heads,
            hidden: a.hidden.unwrap_or(8),
            dropout: a.dropout.unwrap_or(0.6),
            value_dropout: a.value_dropout,
            ..Default::default()
        })
    } else {
        NodeArchitecture::NodeGcn(NodeGcnConfig { hidden: a.hidden.unwrap_or(16), dropout: a.dropout.unwrap_or(0.5), ..Default::default() })
    };
    let cfg = |seed| NodeTrainConfig {
        lr: a.lr.unwrap_or(if gat { 0.005 } else { 0.01 }),
        weight_decay: a.weight_decay,
        first_layer_decay_only: !gat,
        epochs: a.epochs.unwrap_or(if gat { 1000 } else { 200 }),
        patience: a.patience.unwrap_or(if gat { 100 } else { 10 }),
        accuracy_and_loss: gat,
        seed,
    };
    let data = NodeData {
        x: &d.features,
        num_nodes: d.num_nodes,
        num_features: d.num_features,
        src: &src,
        dst: &dst,
        labels: &d.labels,
        num_classes: d.num_classes,
        train: &d.train,
        val: &d.val,
    };
    let device = crate::gene::device(&a.common.device)?;
    let test_truth: Vec<usize> = d.test.iter().map(|&i| d.labels[i] as usize).collect();
    let mut accs = Vec::new();
    let mut first = None;
    let t0 = std::time::Instant::now();
    for seed in 0..a.seeds.max(1) {
        let c = cfg(seed);
        let bar = progress(c.epochs, format!("{family} seed {seed}"));
        let m = NodeClassifier::fit(&data, arch.clone(), c, &device, &mut |ep, tl, vl, va| {
            bar.set_position(ep as u64);
            bar.set_message(format!("train loss {tl:.3} val loss {vl:.3} val acc {va:.3}"));
        })?;
        bar.finish_and_clear();
        let probs = m.predict_proba(&d.features, d.num_nodes, &src, &dst);
        let pred = argmax_rows(&probs, d.num_classes);
        let test_pred: Vec<usize> = d.test.iter().map(|&i| pred[i]).collect();
        let acc = accuracy(&test_pred, &test_truth);
        eprintln!("{family} seed {seed}: test accuracy {acc:.4} ({} epochs, best {})", m.epochs_run, m.best_epoch);
        accs.push(acc);
        if first.is_none() {
            first = Some((m, probs));
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let (mean, std) = mean_std(&accs);
    let (m, probs) = first.unwrap();
    // parity of the export on the training graph and on graphs it never saw
    let draft = Draft::new(m.export(vec![]));
    let f = d.num_features;
    let mut parities: Vec<(String, Parity)> = Vec::new();
    let mut case = |label: &str, n: usize, s: Vec<i64>, t: Vec<i64>, expected: Option<Vec<f32>>| -> Result<()> {
        let x = d.features[..n * f].to_vec();
        let expected = expected.unwrap_or_else(|| m.predict_proba(&x, n, &s, &t));
        let e = s.len();
        let inputs = [Value::f32(&[n, f], x), Value::i64(&[2, e], [s, t].concat())];
        let p = verify::check_values(draft.bytes(), &a.common.out, &inputs, n, "probabilities", &expected, a.common.tolerance_or(1e-4))
            .with_context(|| format!("parity on {label}"))?;
        parities.push((label.to_string(), p));
        Ok(())
    };
    case("full graph", d.num_nodes, src.clone(), dst.clone(), Some(probs))?;
    let (s5, t5) = induced(&d, 500);
    case("first 500 nodes", 500, s5.clone(), t5.clone(), None)?;
    case("no edges", 50, vec![], vec![], None)?;
    let (mut s6, mut t6) = (s5.clone(), t5.clone());
    s6.extend([0, 1, 2, s5[0]]);
    t6.extend([0, 1, 2, t5[0]]);
    case("self-loops and a duplicate edge", 500, s6, t6, None)?;
    let mut card = ModelCard::new(
        family,
        if gat {
            "Graph attention network (Veličković et al. 2018) for node classification"
        } else {
            "Graph convolutional network (Kipf & Welling 2017) for node classification"
        },
        Preprocessing::NodeFeatures(NodeFeatures {
            row_normalize: true,
            self_loops: "input self-loops ignored, one per node added inside the model".into(),
            normalization: if gat {
                "softmax attention over each node's incoming edges".into()
            } else {
                "D^-1/2 (A+I) D^-1/2 inside the model".into()
            },
        }),
    );
    card.classes = (0..d.num_classes).map(|c| c.to_string()).collect();
    card.architecture = serde_json::to_value(&m.architecture)?;
    card.architecture["parameters"] = serde_json::json!(m.num_params());
    card.training = serde_json::json!({
        "data": a.data.file_name().map(|s| s.to_string_lossy().into_owned()), "nodes": d.num_nodes, "edges": d.edges.len(),
        "split": {"train": d.train.len(), "val": d.val.len(), "test": d.test.len()},
        "config": m.train, "seeds": a.seeds, "per_seed_test_accuracy": accs, "epochs_run": m.epochs_run, "best_epoch": m.best_epoch,
        "device": a.common.device, "parity_cases": parities.iter().map(|(l, p)| serde_json::json!({"case": l, "nodes": p.samples, "tract": p.tract_max_abs_diff, "ort": p.ort_max_abs_diff})).collect::<Vec<_>>(),
    });
    card.metrics.insert("test_accuracy_mean".into(), mean);
    card.metrics.insert("test_accuracy_std".into(), std);
    card.metrics.insert("test_accuracy_seed0".into(), accs[0]);
    record_parity(&mut card, parities.iter().map(|(_, p)| p));
    let (tract_diff, ort_diff) = (card.metrics["parity_tract_max_abs_diff"], card.metrics["parity_ort_max_abs_diff"]);
    let x = "node features (bag-of-words counts or 0/1); rows are normalized to sum 1 inside the model";
    draft.finish(card, &[("x", x), EDGE_INDEX, crate::gene::CLASSIFIER_OUTPUTS[0], crate::gene::CLASSIFIER_OUTPUTS[1]], &a.common.out)?;
    println!(
        "{family} on {}: test accuracy {:.1} ± {:.1} % over {} seeds ({secs:.0} s); parity on {} graphs (full, 500-node subgraph, no edges, self-loops + duplicate): tract {tract_diff:.1e}, ort {ort_diff:.1e}; wrote {}",
        d.name,
        mean * 100.0,
        std * 100.0,
        accs.len(),
        parities.len(),
        a.common.out.display()
    );
    Ok(())
}

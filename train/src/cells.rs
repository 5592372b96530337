//! `train cells`: cell-type classification on single-cell data (h5ad): PCA in Rust, a kNN cell
//! graph, a GAT on the graph; baselines and clustering; export with the PCA and graph recipe in
//! the model card so `infer cells` rebuilds both without burn.

use crate::pipeline::{CommonArgs, Draft, record_parity};
use crate::verify;
use anyhow::{Context, Result, bail};
use clap::Args;
use infer::cells::{fit_pca, knn_graph};
use infer::data::h5ad::read_h5ad;
use infer::runtime::Value;
use models::cluster::{LogisticRegression, adjusted_rand_index, kmeans, macro_f1};
use models::metrics::{accuracy, argmax_rows, mean_std};
use models::node::NodeGatConfig;
use models::node::NodeGcnConfig;
use models::node_fit::{NodeArchitecture, NodeClassifier, NodeData, NodeTrainConfig};
use onnx_format::card::{Cells, Family, Knn, ModelCard, Preprocessing};
use rand::seq::SliceRandom;
use rand::{SeedableRng, rngs::StdRng};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CellArgs {
    #[arg(long, default_value = "../shared/data/scanpy_pbmc68k_reduced/10x_pbmc68k_reduced.h5ad")]
    pub h5ad: PathBuf,
    /// obs column with the cell types.
    #[arg(long, default_value = "bulk_labels")]
    pub label_column: String,
    /// A second obs column to compare clusters with (e.g. louvain).
    #[arg(long, default_value = "louvain")]
    pub cluster_column: String,
    #[arg(long, default_value_t = 50)]
    pub n_pcs: usize,
    /// Neighbours per cell in the kNN graph.
    #[arg(long, default_value_t = 15)]
    pub k: usize,
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    #[arg(long, default_value_t = 300)]
    pub epochs: usize,
    #[arg(long, default_value_t = 50)]
    pub patience: usize,
    /// GAT dropout (features and attention).
    #[arg(long, default_value_t = 0.2)]
    pub dropout: f64,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Seeded stratified split: 60 % train, 20 % validation, 20 % test of each class.
fn split(labels: &[usize], k: usize, seed: u64) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut tr, mut va, mut te) = (vec![], vec![], vec![]);
    for c in 0..k {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        idx.shuffle(&mut rng);
        let n = idx.len();
        let ntr = ((n as f64 * 0.6).round() as usize).max(1).min(n);
        let nva = ((n as f64 * 0.2).round() as usize).min(n - ntr);
        tr.extend(&idx[..ntr]);
        va.extend(&idx[ntr..ntr + nva]);
        te.extend(&idx[ntr + nva..]);
    }
    (tr, va, te)
}

fn rows(x: &[f32], d: usize, idx: &[usize]) -> Vec<f32> {
    idx.iter().flat_map(|&i| x[i * d..(i + 1) * d].iter().copied()).collect()
}

pub fn run(a: &CellArgs) -> Result<()> {
    onnx_format::check_output(&a.common.out, [a.h5ad.as_path()])?;
    let m = read_h5ad(&a.h5ad, Some(&a.label_column))?;
    m.check_finite(&a.h5ad)?;
    let (n, g) = (m.samples.len(), m.genes.len());
    let raw = m.labels.clone().context("no labels")?;
    let mut classes = raw.clone();
    classes.sort();
    classes.dedup();
    let y: Vec<usize> = raw.iter().map(|l| classes.iter().position(|c| c == l).unwrap()).collect();
    let k = classes.len();
    eprintln!("{}: {n} cells × {g} genes, {k} types in `{}`", a.h5ad.display(), a.label_column);
    let pca = fit_pca(&m.values, n, g, a.n_pcs)?;
    let z = pca.transform(&m.values);
    let d = pca.n_pcs;
    let (src, dst) = knn_graph(&z, n, d, a.k);
    eprintln!(
        "PCA {d} components ({:.1} % of variance in the first 2); kNN graph k={}: {} undirected edges",
        100.0 * (pca.variance[0] + pca.variance[1]) / pca.variance.iter().sum::<f32>(),
        a.k,
        src.len() / 2
    );
    let labels_i64: Vec<i64> = y.iter().map(|&c| c as i64).collect();
    let device = crate::gene::device(&a.common.device)?;
    let arch = NodeArchitecture::NodeGat(NodeGatConfig { row_normalize: false, dropout: a.dropout, ..Default::default() });
    let (mut gat_acc, mut gat_f1, mut lr_acc, mut lr_f1) = (vec![], vec![], vec![], vec![]);
    let mut first = None;
    for seed in 0..a.seeds.max(1) {
        let (tr, va, te) = split(&y, k, seed);
        let data = NodeData {
            x: &z,
            num_nodes: n,
            num_features: d,
            src: &src,
            dst: &dst,
            labels: &labels_i64,
            num_classes: k,
            train: &tr,
            val: &va,
        };
        let cfg = NodeTrainConfig {
            lr: 0.005,
            weight_decay: 5e-4,
            first_layer_decay_only: false,
            epochs: a.epochs,
            patience: a.patience,
            accuracy_and_loss: true,
            seed,
        };
        let model = NodeClassifier::fit(&data, arch.clone(), cfg, &device, &mut |_, _, _, _| {})?;
        let probs = model.predict_proba(&z, n, &src, &dst);
        let pred = argmax_rows(&probs, k);
        let truth: Vec<usize> = te.iter().map(|&i| y[i]).collect();
        let p_te: Vec<usize> = te.iter().map(|&i| pred[i]).collect();
        gat_acc.push(accuracy(&p_te, &truth));
        gat_f1.push(macro_f1(&p_te, &truth, k));
        // baseline: logistic regression on the same PCA features
        let ytr: Vec<usize> = tr.iter().map(|&i| y[i]).collect();
        let mut lr = LogisticRegression::default();
        lr.fit(&rows(&z, d, &tr), tr.len(), d, &ytr, k)?;
        let lp = lr.predict(&rows(&z, d, &te), te.len());
        lr_acc.push(accuracy(&lp, &truth));
        lr_f1.push(macro_f1(&lp, &truth, k));
        eprintln!(
            "seed {seed}: GAT accuracy {:.3} macro-F1 {:.3} | logistic regression accuracy {:.3} macro-F1 {:.3}",
            gat_acc[seed as usize], gat_f1[seed as usize], lr_acc[seed as usize], lr_f1[seed as usize]
        );
        if first.is_none() {
            first = Some((model, probs, tr, va));
        }
    }
    // clustering: k-means on GCN embeddings (trained on the same split) vs labels and louvain
    let louvain = infer::data::h5ad::read_obs_column(&a.h5ad, &a.cluster_column).ok();
    let (model, probs, tr, va) = first.unwrap();
    let gcn = NodeClassifier::fit(
        &NodeData { x: &z, num_nodes: n, num_features: d, src: &src, dst: &dst, labels: &labels_i64, num_classes: k, train: &tr, val: &va },
        NodeArchitecture::NodeGcn(NodeGcnConfig { hidden: 32, dropout: 0.5, row_normalize: false }),
        NodeTrainConfig {
            lr: 0.01,
            weight_decay: 5e-4,
            first_layer_decay_only: true,
            epochs: 200,
            patience: 20,
            accuracy_and_loss: false,
            seed: 0,
        },
        &device,
        &mut |_, _, _, _| {},
    )?;
    let (emb, ed) = gcn.embed(&z, n, &src, &dst);
    let mut cluster_metrics = BTreeMap::new();
    let (km_gcn, _) = kmeans(&emb, n, ed, k, 0, 10);
    let (km_pca, _) = kmeans(&z, n, d, k, 0, 10);
    cluster_metrics.insert(format!("ari_gcn_kmeans_vs_{}", a.label_column), adjusted_rand_index(&km_gcn, &y));
    cluster_metrics.insert(format!("ari_pca_kmeans_vs_{}", a.label_column), adjusted_rand_index(&km_pca, &y));
    if let Some(lv) = &louvain {
        let mut names = lv.clone();
        names.sort();
        names.dedup();
        let lvi: Vec<usize> = lv.iter().map(|l| names.iter().position(|c| c == l).unwrap()).collect();
        let (km_gcn_l, _) = kmeans(&emb, n, ed, names.len(), 0, 10);
        cluster_metrics.insert(format!("ari_gcn_kmeans_vs_{}", a.cluster_column), adjusted_rand_index(&km_gcn_l, &lvi));
        cluster_metrics.insert(format!("ari_{}_vs_{}", a.cluster_column, a.label_column), adjusted_rand_index(&lvi, &y));
    }
    for (key, v) in &cluster_metrics {
        eprintln!("{key}: {v:.3}");
    }
    // export seed 0's GAT; parity on the training graph and on a new graph over a subset of cells
    let draft = Draft::new(model.export(vec![]));
    let full = [Value::f32(&[n, d], z.clone()), Value::i64(&[2, src.len()], [src.clone(), dst.clone()].concat())];
    let p1 = verify::check_values(draft.bytes(), &a.common.out, &full, n, "probabilities", &probs, a.common.tolerance_or(1e-4))?;
    let sub: Vec<usize> = (0..n).step_by(3).collect();
    let zs = rows(&z, d, &sub);
    let (ss, sd) = knn_graph(&zs, sub.len(), d, a.k);
    let want = model.predict_proba(&zs, sub.len(), &ss, &sd);
    let p2 = verify::check_values(
        draft.bytes(),
        &a.common.out,
        &[Value::f32(&[sub.len(), d], zs), Value::i64(&[2, ss.len()], [ss, sd].concat())],
        sub.len(),
        "probabilities",
        &want,
        a.common.tolerance_or(1e-4),
    )?;
    if !(p1.tract_max_abs_diff <= a.common.tolerance_or(1e-4) && p2.ort_max_abs_diff <= a.common.tolerance_or(1e-4)) {
        bail!("parity failed");
    }
    let (ga, gs) = mean_std(&gat_acc);
    let (gf, gfs) = mean_std(&gat_f1);
    let (la, las) = mean_std(&lr_acc);
    let (lf, lfs) = mean_std(&lr_f1);
    let cells = Cells {
        expression:
            "adata.X as stored in the training file (pbmc68k_reduced: log-normalized and scaled); missing genes count as the training mean"
                .into(),
        pca,
        knn: Knn {
            k: a.k,
            metric: "euclidean on PCA coordinates".into(),
            symmetric: "union".into(),
            self_loops: "none (the model adds one per cell)".into(),
        },
    };
    let mut card = ModelCard::new(
        Family::CellGat,
        "Cell-type classifier: GAT on a kNN cell graph built from PCA of expression",
        Preprocessing::Cells(cells),
    );
    card.genes = m.genes.clone();
    card.classes = classes.clone();
    card.architecture = serde_json::to_value(&model.architecture)?;
    card.training = serde_json::json!({"data": a.h5ad.file_name().map(|s| s.to_string_lossy().into_owned()), "cells": n, "genes": g, "label_column": a.label_column, "split": "stratified 60/20/20 per seed", "seeds": a.seeds, "device": a.common.device});
    card.metrics = cluster_metrics.clone();
    for (key, v) in [
        ("test_accuracy_mean", ga),
        ("test_accuracy_std", gs),
        ("test_macro_f1_mean", gf),
        ("test_macro_f1_std", gfs),
        ("logreg_test_accuracy_mean", la),
        ("logreg_test_macro_f1_mean", lf),
    ] {
        card.metrics.insert(key.into(), v);
    }
    record_parity(&mut card, [&p1, &p2]);
    draft.finish(
        card,
        &[
            ("x", "PCA coordinates of the cells (preprocessing.pca applied to the expression, genes in `genes` order)"),
            ("edge_index", "kNN cell graph (preprocessing.knn), both directions"),
            ("probabilities", "cell-type probabilities, in `classes` order"),
            crate::gene::CLASSIFIER_OUTPUTS[1],
        ],
        &a.common.out,
    )?;
    println!(
        "cells: GAT test accuracy {:.3} ± {:.3}, macro-F1 {:.3} ± {:.3}; logistic regression on PCA: accuracy {:.3} ± {:.3}, macro-F1 {:.3} ± {:.3} ({} seeds); {}; parity tract {:.1e} ort {:.1e}; wrote {}",
        ga,
        gs,
        gf,
        gfs,
        la,
        las,
        lf,
        lfs,
        gat_acc.len(),
        cluster_metrics.iter().map(|(k, v)| format!("{k} {v:.3}")).collect::<Vec<_>>().join(", "),
        p1.tract_max_abs_diff.max(p2.tract_max_abs_diff),
        p1.ort_max_abs_diff.max(p2.ort_max_abs_diff),
        a.common.out.display()
    );
    Ok(())
}

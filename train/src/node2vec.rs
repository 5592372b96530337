//! `train node2vec`: Node2Vec embeddings of a graph over several seeds, evaluated by k-means
//! against node labels (accuracy under the best matching, ARI) and, for a graph with a split,
//! by logistic regression on the embeddings (test accuracy). Seed 0's table is exported as an
//! ONNX Gather model (checked on tract and ONNX Runtime) and as word2vec text.

use crate::pipeline::{CommonArgs, Draft, record_parity};
use crate::verify::{self, Parity};
use anyhow::{Context, Result, bail};
use clap::Args;
use infer::runtime::Value;
use models::cluster::{LogisticRegression, adjusted_rand_index, kmeans, macro_f1, matched_accuracy};
use models::metrics::{accuracy, mean_std};
use models::node2vec::{Node2Vec, Node2VecConfig, WalkGraph};
use onnx_format::card::{Family, Lookup, ModelCard, Preprocessing};
use rand::seq::SliceRandom;
use rand::{SeedableRng, rngs::StdRng};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct Node2VecArgs {
    /// `karate`, `cora`, a Planetoid-style prefix (`<prefix>.labels.tsv` …), or an edge list
    /// (`a b [weight]`, see `infer` graph formats).
    #[arg(long, default_value = "karate")]
    pub graph: String,
    /// Node labels for an edge-list graph (TSV with a header: node, label) for the k-means check;
    /// `karate` uses its `club` column.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Ignore edge weights (they scale transition probabilities when present).
    #[arg(long)]
    pub unweighted: bool,
    #[arg(long, default_value_t = 16)]
    pub dim: usize,
    #[arg(long, default_value_t = 1.0)]
    pub p: f64,
    #[arg(long, default_value_t = 1.0)]
    pub q: f64,
    #[arg(long, default_value_t = 20)]
    pub walk_length: usize,
    #[arg(long, default_value_t = 10)]
    pub walks_per_node: usize,
    #[arg(long, default_value_t = 5)]
    pub window: usize,
    #[arg(long, default_value_t = 5)]
    pub negatives: usize,
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    #[arg(long, default_value_t = 1024)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    /// Seeds 0..N; mean ± std over seeds is reported; seed 0's embedding is exported.
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    /// k-means clusters (default: the number of label classes) and restarts.
    #[arg(long)]
    pub clusters: Option<usize>,
    #[arg(long, default_value_t = 10)]
    pub restarts: usize,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// A graph to embed, with optional labels (class index per node) and split.
struct Input {
    name: String,
    source: String,
    names: Vec<String>,
    edges: Vec<(u32, u32)>,
    weights: Option<Vec<f32>>,
    labels: Option<(Vec<Option<usize>>, Vec<String>)>,
    split: Option<(Vec<usize>, Vec<usize>, Vec<usize>)>,
}

fn data_root() -> PathBuf {
    std::env::var_os("BIOEDGE_DATA").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("../shared/data"))
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// `node<TAB>label` rows after a header; labels are numbered in sorted order.
fn read_labels(path: &Path, names: &[String]) -> Result<(Vec<Option<usize>>, Vec<String>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut by_node: HashMap<String, String> = HashMap::new();
    for (no, line) in text.lines().enumerate().skip(1) {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (node, label) = match line.split_once('\t') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => match line.trim().split_once(char::is_whitespace) {
                Some((a, b)) => (a, b.trim()),
                None => bail!("{}: line {}: expected `node label`", path.display(), no + 1),
            },
        };
        by_node.insert(node.to_string(), label.to_string());
    }
    let mut classes: Vec<String> = by_node.values().cloned().collect();
    classes.sort();
    classes.dedup();
    let labels: Vec<Option<usize>> = names.iter().map(|n| by_node.get(n).map(|l| classes.binary_search(l).unwrap())).collect();
    if labels.iter().all(|l| l.is_none()) {
        bail!("{}: no label matches a graph node", path.display());
    }
    Ok((labels, classes))
}

fn load(a: &Node2VecArgs) -> Result<Input> {
    let root = data_root();
    let (path, labels_path) = match a.graph.as_str() {
        "karate" => (root.join("karate_club/karate_edges.tsv"), Some(root.join("karate_club/karate_nodes.tsv"))),
        "cora" => (root.join("planetoid/derived/cora"), None),
        p => (PathBuf::from(p), None),
    };
    let labels_path = a.labels.clone().or(labels_path);
    if with_suffix(&path, ".labels.tsv").exists() {
        let d = infer::nodes::read_planetoid(&path)?;
        let labels = d.labels.iter().map(|&l| (l >= 0).then_some(l as usize)).collect();
        return Ok(Input {
            name: d.name.clone(),
            source: path.display().to_string(),
            names: (0..d.num_nodes).map(|i| i.to_string()).collect(),
            edges: d.edges.clone(),
            weights: None,
            labels: Some((labels, (0..d.num_classes).map(|c| c.to_string()).collect())),
            split: Some((d.train, d.val, d.test)),
        });
    }
    if !path.is_file() {
        bail!("{}: no such edge list or Planetoid prefix (`karate`, `cora`, a path)", path.display());
    }
    let (g, _) = infer::graph::read_edge_list(&path)?;
    let labels = match labels_path {
        Some(p) => Some(read_labels(&p, &g.nodes)?),
        None => None,
    };
    let name =
        if a.graph == "karate" { "karate".into() } else { path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default() };
    Ok(Input {
        name,
        source: path.display().to_string(),
        names: g.nodes,
        edges: g.edges,
        weights: if a.unweighted { None } else { g.weights },
        labels,
        split: None,
    })
}

/// Per-seed evaluation numbers.
#[derive(Default, serde::Serialize)]
struct Eval {
    kmeans_accuracy: f64,
    kmeans_ari: f64,
    lr_val_accuracy: Option<f64>,
    lr_test_accuracy: Option<f64>,
    lr_test_macro_f1: Option<f64>,
    lr_trainval_test_accuracy: Option<f64>,
    lr_l2: Option<f64>,
}

fn rows(x: &[f32], d: usize, idx: &[usize]) -> Vec<f32> {
    idx.iter().flat_map(|&i| x[i * d..(i + 1) * d].iter().copied()).collect()
}

fn evaluate(x: &[f32], n: usize, d: usize, inp: &Input, clusters: Option<usize>, restarts: usize, seed: u64) -> Result<Option<Eval>> {
    let Some((labels, classes)) = &inp.labels else { return Ok(None) };
    let known: Vec<usize> = (0..n).filter(|&i| labels[i].is_some()).collect();
    let truth: Vec<usize> = known.iter().map(|&i| labels[i].unwrap()).collect();
    let k = clusters.unwrap_or(classes.len()).max(1);
    let xk = rows(x, d, &known);
    let (pred, _) = kmeans(&xk, known.len(), d, k, seed, restarts);
    let mut e =
        Eval { kmeans_accuracy: matched_accuracy(&pred, &truth), kmeans_ari: adjusted_rand_index(&pred, &truth), ..Default::default() };
    if let Some((train, val, test)) = &inp.split {
        let y = |idx: &[usize]| -> Vec<usize> { idx.iter().map(|&i| labels[i].unwrap()).collect() };
        let kc = classes.len();
        let (xtr, xva, xte) = (rows(x, d, train), rows(x, d, val), rows(x, d, test));
        let (ytr, yva, yte) = (y(train), y(val), y(test));
        // L2 strength chosen on the validation split
        let mut best: Option<(f64, LogisticRegression)> = None;
        for l2 in [1e-4, 1e-3, 1e-2, 1e-1, 0.3, 1.0, 3.0, 10.0] {
            let mut m = LogisticRegression::new(l2);
            m.fit(&xtr, train.len(), d, &ytr, kc)?;
            let acc = accuracy(&m.predict(&xva, val.len()), &yva);
            if best.as_ref().is_none_or(|(b, _)| acc > *b) {
                best = Some((acc, m));
            }
        }
        let (va, m) = best.unwrap();
        e.lr_val_accuracy = Some(va);
        let pt = m.predict(&xte, test.len());
        e.lr_test_accuracy = Some(accuracy(&pt, &yte));
        e.lr_test_macro_f1 = Some(macro_f1(&pt, &yte, kc));
        e.lr_l2 = Some(m.l2);
        let tv: Vec<usize> = train.iter().chain(val).copied().collect();
        let mut m2 = LogisticRegression::new(m.l2);
        m2.fit(&rows(x, d, &tv), tv.len(), d, &y(&tv), kc)?;
        e.lr_trainval_test_accuracy = Some(accuracy(&m2.predict(&xte, test.len()), &yte));
    }
    Ok(Some(e))
}

/// Records `<key>_mean` / `<key>_std`.
fn put(metrics: &mut BTreeMap<String, f64>, key: &str, v: Vec<f64>) -> (f64, f64) {
    let (mean, std) = mean_std(&v);
    metrics.insert(format!("{key}_mean"), mean);
    metrics.insert(format!("{key}_std"), std);
    (mean, std)
}

pub fn run(a: &Node2VecArgs) -> Result<()> {
    onnx_format::check_output(&a.common.out, [Path::new(&a.graph)])?;
    let inp = load(a)?;
    let n = inp.names.len();
    let g = WalkGraph::new(n, &inp.edges, inp.weights.as_deref())?;
    eprintln!(
        "{}: {} nodes, {} undirected edges{}{}",
        inp.name,
        n,
        g.num_edges(),
        if g.is_weighted() { ", weighted" } else { "" },
        inp.labels.as_ref().map_or(String::new(), |(_, c)| format!(", {} label classes", c.len()))
    );
    let device = crate::gene::device(&a.common.device)?;
    let cfg = |seed| Node2VecConfig {
        dim: a.dim,
        p: a.p,
        q: a.q,
        walk_length: a.walk_length,
        walks_per_node: a.walks_per_node,
        window: a.window,
        negatives: a.negatives,
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        seed,
    };
    let mut evals: Vec<Eval> = Vec::new();
    let mut first: Option<Node2Vec> = None;
    let t0 = std::time::Instant::now();
    for seed in 0..a.seeds.max(1) {
        let ts = std::time::Instant::now();
        let m = Node2Vec::fit(&g, cfg(seed), &device, &mut |_, _| {})?;
        let secs = ts.elapsed().as_secs_f64();
        let x = m.embeddings();
        let loss = m.losses.last().copied().unwrap_or(f64::NAN);
        match evaluate(&x, n, a.dim, &inp, a.clusters, a.restarts, seed)? {
            Some(e) => {
                let lr = match (e.lr_test_accuracy, e.lr_trainval_test_accuracy) {
                    (Some(t), Some(tv)) => format!(
                        "; logistic regression val accuracy {:.4}, test accuracy {t:.4} (train+val fit {tv:.4}, l2 {:.0e})",
                        e.lr_val_accuracy.unwrap_or(f64::NAN),
                        e.lr_l2.unwrap_or(0.0)
                    ),
                    _ => String::new(),
                };
                eprintln!(
                    "seed {seed}: loss {loss:.4}, k-means accuracy {:.4} ARI {:.4}{lr} ({secs:.1} s)",
                    e.kmeans_accuracy, e.kmeans_ari
                );
                evals.push(e);
            }
            None => eprintln!("seed {seed}: loss {loss:.4} ({secs:.1} s)"),
        }
        if first.is_none() {
            first = Some(m);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let m = first.unwrap();

    // the export against burn's lookup: every node in order, then a shuffled draw with repeats
    let draft = Draft::new(m.export(vec![]));
    let mut parities: Vec<(String, Parity)> = Vec::new();
    let all: Vec<u32> = (0..n as u32).collect();
    let mut rng = StdRng::seed_from_u64(0);
    let mut mixed: Vec<u32> = all.iter().chain(all.iter().take(n.min(7))).copied().collect();
    mixed.shuffle(&mut rng);
    for (label, ids) in [("all nodes", all), ("shuffled with repeats", mixed), ("one node", vec![(n - 1) as u32])] {
        let input = Value::i64(&[ids.len()], ids.iter().map(|&v| v as i64).collect());
        let p = verify::check_values(
            draft.bytes(),
            &a.common.out,
            &[input],
            ids.len(),
            "embedding",
            &m.embed(&ids),
            a.common.tolerance_or(1e-6),
        )
        .with_context(|| format!("parity on {label}"))?;
        parities.push((label.to_string(), p));
    }
    let worst = |f: fn(&Parity) -> f64| parities.iter().map(|(_, p)| f(p)).fold(0.0, f64::max);
    let (tract_diff, ort_diff) = (worst(|p| p.tract_max_abs_diff), worst(|p| p.ort_max_abs_diff));

    let mut metrics = BTreeMap::new();
    let mut summary = Vec::new();
    if !evals.is_empty() {
        let k = a.clusters.unwrap_or_else(|| inp.labels.as_ref().map_or(0, |(_, c)| c.len()));
        let (am, asd) = put(&mut metrics, "kmeans_accuracy", evals.iter().map(|e| e.kmeans_accuracy).collect());
        let (rm, rsd) = put(&mut metrics, "kmeans_ari", evals.iter().map(|e| e.kmeans_ari).collect());
        summary.push(format!("k-means (k={k}) clustering accuracy {am:.4} ± {asd:.4}, ARI {rm:.4} ± {rsd:.4}"));
        if evals[0].lr_test_accuracy.is_some() {
            let (am, asd) = put(&mut metrics, "lr_val_accuracy", evals.iter().filter_map(|e| e.lr_val_accuracy).collect());
            let (tm, tsd) = put(&mut metrics, "lr_test_accuracy", evals.iter().filter_map(|e| e.lr_test_accuracy).collect());
            let (fm, fsd) = put(&mut metrics, "lr_test_macro_f1", evals.iter().filter_map(|e| e.lr_test_macro_f1).collect());
            let (vm, vsd) =
                put(&mut metrics, "lr_trainval_test_accuracy", evals.iter().filter_map(|e| e.lr_trainval_test_accuracy).collect());
            summary.push(format!(
                "logistic regression val accuracy {am:.4} ± {asd:.4}, test accuracy {tm:.4} ± {tsd:.4} (macro F1 {fm:.4} ± {fsd:.4}) fit on train; {vm:.4} ± {vsd:.4} fit on train+val"
            ));
        }
    }
    metrics.insert("final_loss_seed0".into(), m.losses.last().copied().unwrap_or(f64::NAN));
    let w2v_path = a.common.out.with_file_name(format!(
        "{}.w2v.txt",
        a.common.out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "node2vec".into())
    ));
    let mut card = ModelCard::new(
        Family::Node2vec,
        "Node2Vec node embeddings (Grover & Leskovec 2016): biased random walks + skip-gram with negative sampling; a lookup table",
        Preprocessing::Lookup(Lookup { ids: "a node id is its position in training.nodes".into() }),
    );
    card.architecture = serde_json::json!({"embedding": "skip-gram input table", "num_nodes": n, "dim": a.dim, "parameters": n * a.dim, "config": m.config});
    card.training = serde_json::json!({
        "graph": inp.name, "source": inp.source, "nodes_count": n, "edges": g.num_edges(), "weighted": g.is_weighted(),
        "nodes": inp.names, "skipgram_pairs_per_epoch": m.pairs, "loss_per_epoch": m.losses,
        "seeds": a.seeds.max(1), "per_seed": evals, "kmeans_restarts": a.restarts,
        "evaluation": "k-means on embeddings vs labels (accuracy under the best cluster-class matching, ARI); logistic regression (L2 chosen on val) on train → test",
        "word2vec_text": w2v_path.file_name().map(|s| s.to_string_lossy().into_owned()),
        "parity_cases": parities.iter().map(|(l, p)| serde_json::json!({"case": l, "nodes": p.samples, "tract": p.tract_max_abs_diff, "ort": p.ort_max_abs_diff})).collect::<Vec<_>>(),
        "device": a.common.device, "seconds": secs,
    });
    card.metrics = metrics;
    record_parity(&mut card, parities.iter().map(|(_, p)| p));
    let node = format!("node ids in 0..{n}; names in training.nodes (id = position)");
    let onnx = draft.finish_bytes(card, &[("node", &node), ("embedding", "the node's embedding (skip-gram input vector)")])?;
    // the model and its word2vec table appear together or not at all
    onnx_format::write_all_atomic(&[(&a.common.out, &onnx), (&w2v_path, m.to_word2vec_text(&inp.names).as_bytes())])?;
    println!(
        "node2vec on {} ({} nodes, dim {}, p {}, q {}): {} over {} seeds ({secs:.1} s); parity tract {tract_diff:.1e}, ort {ort_diff:.1e}; wrote {} and {}",
        inp.name,
        n,
        a.dim,
        a.p,
        a.q,
        if summary.is_empty() { "no labels to evaluate".to_string() } else { summary.join("; ") },
        a.seeds.max(1),
        a.common.out.display(),
        w2v_path.display()
    );
    Ok(())
}

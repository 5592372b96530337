//! `train gene-gcn`, `train gene-mlp` and `train gene-compare` on an expression matrix + gene graph.

use crate::pipeline::{Draft, record_parity};
use crate::verify;
use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::ProgressBar;
use infer::data::{ExpressionMatrix, ReadOptions, read_expression};
use models::burn::prelude::Device;
use models::fit::{Architecture, EpochLog, GeneClassifier, Samples, TrainConfig};
use models::gene::{GeneGcnConfig, GeneMlpConfig, MessagePassing};
use models::metrics;
use onnx_format::card::{Family, ModelCard, Preprocessing};
use rand::seq::SliceRandom;
use rand::{SeedableRng, rngs::StdRng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `train gene-gcn` / `gene-mlp`: data, fit and export arguments.
#[derive(Args, Debug)]
pub struct GeneArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub fit: FitArgs,
    #[command(flatten)]
    pub export: ExportArgs,
}

const DEFAULT_EXPRESSION: &str = "../shared/data/gseapy_leukemia/Leukemia_hgu95av2.trim.txt.gz";
const DEFAULT_CLS: &str = "../shared/data/gseapy_leukemia/Leukemia.cls";

impl DataArgs {
    /// The labels file: `--cls`, or the bundled one with the bundled expression file.
    pub fn cls(&self) -> Option<PathBuf> {
        self.cls.clone().or_else(|| (self.expression == Path::new(DEFAULT_EXPRESSION)).then(|| DEFAULT_CLS.into()))
    }
}

#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Expression matrix (GSEA txt/gct, CSV/TSV, HDF5, h5ad).
    #[arg(long, default_value = DEFAULT_EXPRESSION)]
    pub expression: PathBuf,
    /// GSEA .cls labels (for GSEA inputs). Default: the bundled Leukemia.cls, only with the
    /// bundled expression file (never applied to another --expression).
    #[arg(long)]
    pub cls: Option<PathBuf>,
    /// Label column (CSV/TSV) or obs column (h5ad).
    #[arg(long)]
    pub label_column: Option<String>,
    /// Gene-interaction graph (networkx adjlist, optionally gzipped, or an edge list TSV).
    #[arg(long, default_value = "../shared/data/gene_graphs/genemania.adjlist.gz")]
    pub graph: PathBuf,
    /// Genes used by both models: the N most variable (on training samples) of the genes present in
    /// the graph, or `all` for every gene in the graph.
    #[arg(long, default_value = "2000")]
    pub genes: String,
    /// `log2(max(x, 1))` before standardization: auto (when values look like raw intensities/counts), yes, no.
    #[arg(long, default_value = "auto")]
    pub log2: String,
}

#[derive(Args, Debug, Clone)]
pub struct FitArgs {
    /// Training samples (stratified); the rest is split into validation and test.
    #[arg(long, default_value_t = 30)]
    pub train_size: usize,
    /// Validation samples for early stopping (taken after the training samples).
    #[arg(long, default_value_t = 8)]
    pub valid_size: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 200)]
    pub epochs: usize,
    #[arg(long, default_value_t = 30)]
    pub patience: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// GCN: graph-convolution layers.
    #[arg(long, default_value_t = 4)]
    pub num_layer: usize,
    /// GCN: channels per gene.
    #[arg(long, default_value_t = 32)]
    pub channels: usize,
    /// GCN: dense layer after the per-gene readout.
    #[arg(long, default_value_t = 32)]
    pub embedding: usize,
    /// MLP: hidden widths, comma-separated.
    #[arg(long, default_value = "64,32")]
    pub hidden: String,
    #[arg(long, default_value_t = 0.5)]
    pub dropout: f64,
    /// cpu (burn flex) or gpu (burn wgpu; build with `--features wgpu`). `cuda` is accepted as gpu.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Where to write the verified ONNX model.
    #[arg(long)]
    pub out: PathBuf,
    /// Message passing in the export: auto, scatter-nd or dense.
    #[arg(long, default_value = "auto")]
    pub message_passing: String,
    /// Parity tolerance (max abs diff of probabilities) for burn vs tract vs ONNX Runtime.
    #[arg(long, default_value_t = 1e-4)]
    pub tolerance: f64,
    /// Folder for burnpack checkpoints of the best weights (default: next to --out).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
}

pub fn device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::flex()),
        "gpu" | "cuda" | "wgpu" => {
            #[cfg(feature = "wgpu")]
            {
                Ok(Device::wgpu(Default::default()))
            }
            #[cfg(not(feature = "wgpu"))]
            bail!("`--device {name}` needs a GPU build: cargo build --release -p train --features wgpu")
        }
        _ => bail!("unknown device `{name}` (cpu or gpu)"),
    }
}

/// The expression task prepared for fitting: genes restricted to the graph, labels as indices.
pub struct Task {
    pub matrix: ExpressionMatrix,
    pub labels: Vec<usize>,
    pub classes: Vec<String>,
    /// Graph-gene positions in `matrix.genes`.
    pub graph_genes: Vec<usize>,
    pub graph: infer::graph::GeneGraph,
    pub log2: bool,
    pub sources: serde_json::Value,
}

pub fn load_task(a: &DataArgs) -> Result<Task> {
    let opts = ReadOptions { label_column: a.label_column.clone(), cls: a.cls() };
    let matrix = read_expression(&a.expression, &opts)?;
    matrix.check_finite(&a.expression)?;
    let Some(raw_labels) = matrix.labels.clone() else {
        bail!("{}: no labels (give --cls for GSEA files or --label-column)", a.expression.display())
    };
    let mut classes: Vec<String> = raw_labels.clone();
    classes.sort();
    classes.dedup();
    if classes.len() < 2 {
        bail!("{}: need at least 2 classes, found {:?}", a.expression.display(), classes);
    }
    let labels = raw_labels.iter().map(|l| classes.iter().position(|c| c == l).unwrap()).collect();
    let (graph, _) = infer::graph::read_graph(&a.graph)?;
    let in_graph: std::collections::HashSet<&str> = graph.nodes.iter().map(|s| s.as_str()).collect();
    let graph_genes: Vec<usize> = (0..matrix.genes.len()).filter(|&i| in_graph.contains(matrix.genes[i].as_str())).collect();
    if graph_genes.is_empty() {
        bail!("no gene of {} is in the graph {}", a.expression.display(), a.graph.display());
    }
    let log2 = match a.log2.as_str() {
        "yes" | "true" => true,
        "no" | "false" => false,
        "auto" => {
            let mut v: Vec<f32> = matrix.values.iter().copied().step_by(7).collect();
            v.sort_by(f32::total_cmp);
            v[v.len() * 99 / 100] > 100.0
        }
        o => bail!("--log2 must be auto, yes or no, not `{o}`"),
    };
    let sources = serde_json::json!({
        "expression": file_info(&a.expression),
        "labels": a.cls().as_ref().map(|p| file_info(p)).unwrap_or(serde_json::json!(a.label_column)),
        "graph": file_info(&a.graph),
        "samples": matrix.samples.len(),
        "genes_in_file": matrix.genes.len(),
        "genes_in_graph": graph_genes.len(),
    });
    Ok(Task { graph, matrix, labels, classes, graph_genes, log2, sources })
}

fn file_info(p: &Path) -> serde_json::Value {
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let bytes = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let folder = p.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    serde_json::json!({ "file": name, "folder": folder, "bytes": bytes })
}

/// A seeded stratified split: `train` samples, then `valid`, the rest is test.
pub fn split(labels: &[usize], k: usize, train: usize, valid: usize, seed: u64) -> Result<(Vec<usize>, Vec<usize>, Vec<usize>)> {
    let n = labels.len();
    if train + valid >= n {
        bail!("train size {train} + validation size {valid} leaves no test samples out of {n}");
    }
    if train < k {
        bail!("train size {train} is smaller than the number of classes {k}");
    }
    let mut rng = StdRng::seed_from_u64(seed);
    // interleave classes so any prefix is (close to) stratified
    let mut by_class: Vec<Vec<usize>> = (0..k).map(|c| (0..n).filter(|&i| labels[i] == c).collect()).collect();
    for v in &mut by_class {
        v.shuffle(&mut rng);
    }
    let mut order = Vec::with_capacity(n);
    let longest = by_class.iter().map(|v| v.len()).max().unwrap_or(0);
    for i in 0..longest {
        for v in &by_class {
            if let Some(&s) = v.get(i) {
                order.push(s);
            }
        }
    }
    let test = order.split_off(train + valid);
    let valid_rows = order.split_off(train);
    Ok((order, valid_rows, test))
}

/// Columns of the task used by the models: all graph genes or the top-N by variance on `rows`.
pub fn select_genes(task: &Task, spec: &str, rows: &[usize]) -> Result<Vec<usize>> {
    if spec == "all" {
        return Ok(task.graph_genes.clone());
    }
    let n: usize = spec.parse().with_context(|| format!("--genes must be a number or `all`, not `{spec}`"))?;
    let g = task.matrix.genes.len();
    let v = &task.matrix.values;
    let tr = |x: f32| if task.log2 { x.max(1.0).log2() } else { x };
    let mut scored: Vec<(f64, usize)> = task
        .graph_genes
        .iter()
        .map(|&c| {
            let col: Vec<f64> = rows.iter().map(|&r| tr(v[r * g + c]) as f64).collect();
            let m = col.iter().sum::<f64>() / col.len() as f64;
            (col.iter().map(|x| (x - m).powi(2)).sum::<f64>(), c)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut cols: Vec<usize> = scored.into_iter().take(n).map(|(_, c)| c).collect();
    cols.sort_unstable();
    Ok(cols)
}

/// Values of `cols` for all samples, and the gene names.
fn columns(task: &Task, cols: &[usize]) -> (Vec<f32>, Vec<String>) {
    let g = task.matrix.genes.len();
    let mut out = Vec::with_capacity(task.labels.len() * cols.len());
    for row in task.matrix.values.chunks(g) {
        out.extend(cols.iter().map(|&c| row[c]));
    }
    (out, cols.iter().map(|&c| task.matrix.genes[c].clone()).collect())
}

pub fn architecture(family: Family, f: &FitArgs) -> Result<Architecture> {
    Ok(match family {
        Family::GeneGcn => Architecture::GeneGcn(GeneGcnConfig {
            num_layer: f.num_layer,
            channels: f.channels,
            embedding: f.embedding,
            dropout: f.dropout,
        }),
        Family::GeneMlp => Architecture::GeneMlp(GeneMlpConfig {
            hidden: f
                .hidden
                .split(',')
                .map(|s| s.trim().parse().with_context(|| format!("bad --hidden `{}`", f.hidden)))
                .collect::<Result<_>>()?,
            dropout: f.dropout,
        }),
        _ => bail!("{family} is not an expression classifier"),
    })
}

/// Result of one fit + evaluation.
pub struct Outcome {
    pub model: GeneClassifier,
    pub values: Vec<f32>,
    pub test_rows: Vec<usize>,
    pub metrics: BTreeMap<String, f64>,
    pub split: serde_json::Value,
}

pub fn fit_eval(task: &Task, d: &DataArgs, f: &FitArgs, family: Family, progress: bool) -> Result<Outcome> {
    let k = task.classes.len();
    let (train_rows, valid_rows, test_rows) = split(&task.labels, k, f.train_size, f.valid_size, f.seed)?;
    let cols = select_genes(task, &d.genes, &train_rows)?;
    let (values, genes) = columns(task, &cols);
    let edges = task.graph.induced(&genes);
    let arch = architecture(family, f)?;
    let cfg = TrainConfig {
        lr: f.lr,
        weight_decay: f.weight_decay,
        max_epochs: f.epochs,
        patience: f.patience,
        batch_size: f.batch_size,
        seed: f.seed,
        log2: task.log2,
    };
    let bar = if progress { crate::pipeline::progress(f.epochs, family.name()) } else { ProgressBar::hidden() };
    let data = Samples { values: &values, genes: &genes, labels: &task.labels, classes: &task.classes };
    let dev = device(&f.device)?;
    let model = GeneClassifier::fit(&data, &train_rows, &valid_rows, Some(&edges), arch, cfg, &dev, &mut |e: &EpochLog| {
        bar.set_position(e.epoch as u64);
        bar.set_message(format!("train loss {:.4}  valid loss {:.4}  valid acc {:.3}", e.train_loss, e.valid_loss, e.valid_accuracy));
    })?;
    bar.finish_and_clear();
    let g = genes.len();
    let rows_values = |rows: &[usize]| -> Vec<f32> { rows.iter().flat_map(|&r| values[r * g..(r + 1) * g].iter().copied()).collect() };
    let probs = model.predict_proba(&rows_values(&test_rows))?;
    let truth: Vec<usize> = test_rows.iter().map(|&r| task.labels[r]).collect();
    let pred = metrics::argmax_rows(&probs, k);
    let mut m = BTreeMap::new();
    m.insert("test_accuracy".into(), metrics::accuracy(&pred, &truth));
    m.insert("test_roc_auc".into(), metrics::roc_auc_multiclass(&probs, k, &truth));
    m.insert("best_epoch".into(), model.best_epoch as f64);
    let split = serde_json::json!({
        "seed": f.seed, "train": train_rows.len(), "valid": valid_rows.len(), "test": test_rows.len(),
        "stratified": true, "genes_selected": d.genes, "graph_edges": edges.len(), "device": f.device,
    });
    Ok(Outcome { model, values, test_rows, metrics: m, split })
}

fn card(task: &Task, o: &Outcome, family: Family, mp: Option<MessagePassing>) -> ModelCard {
    let m = &o.model;
    let mut arch = serde_json::to_value(&m.architecture).unwrap();
    arch["parameters"] = serde_json::json!(m.num_params());
    if let Some(g) = &m.graph {
        arch["graph_nodes"] = serde_json::json!(g.num_nodes);
        arch["graph_messages"] = serde_json::json!(g.num_edges());
        arch["message_passing"] = serde_json::json!(mp.unwrap_or(MessagePassing::auto(g.num_nodes)));
        arch["normalization"] = serde_json::json!("D^-1/2 (A + I) D^-1/2, fixed, inside the ONNX graph");
    }
    let description = match family {
        Family::GeneGcn => {
            "Gene-graph convolutional classifier (Dutil et al. 2018): each gene is a node of the gene-interaction graph with its expression as input"
        }
        _ => "MLP baseline on the same genes as the gene-graph GCN",
    };
    let mut card = ModelCard::new(family, description, Preprocessing::Expression(m.standardizer.describe()));
    card.genes = m.genes.clone();
    card.classes = m.classes.clone();
    card.architecture = arch;
    card.training = serde_json::json!({
        "data": task.sources, "split": o.split, "config": m.train,
        "epochs_run": m.epochs_run, "best_epoch": m.best_epoch,
    });
    card.metrics = o.metrics.clone();
    card
}

/// Meanings of a classifier's outputs.
pub const CLASSIFIER_OUTPUTS: [(&str, &str); 2] =
    [("probabilities", "class probabilities (softmax), classes in the order of `classes`"), ("logits", "unnormalized class scores")];

pub fn run_export(family: Family, d: &DataArgs, f: &FitArgs, e: &ExportArgs) -> Result<()> {
    let mut inputs = vec![d.expression.as_path(), d.graph.as_path()];
    let cls = d.cls();
    inputs.extend(cls.as_deref());
    onnx_format::check_output(&e.out, inputs)?;
    let task = load_task(d)?;
    eprintln!(
        "{}: {} samples, classes {:?}; {} of {} genes in the graph; log2: {}",
        d.expression.display(),
        task.labels.len(),
        task.classes,
        task.graph_genes.len(),
        task.matrix.genes.len(),
        task.log2
    );
    let t0 = std::time::Instant::now();
    let o = fit_eval(&task, d, f, family, true)?;
    let secs = t0.elapsed().as_secs_f64();
    let m = &o.model;
    eprintln!(
        "{family}: {} genes, {} parameters, {} epochs (best {}), {secs:.1} s on {}",
        m.genes.len(),
        m.num_params(),
        m.epochs_run,
        m.best_epoch,
        f.device
    );
    let mp = match e.message_passing.as_str() {
        "auto" => None,
        "scatter-nd" => Some(MessagePassing::ScatterNd),
        "dense" => Some(MessagePassing::Dense),
        o => bail!("--message-passing must be auto, scatter-nd or dense, not `{o}`"),
    };
    // checkpoint of the best weights
    let ckpt_dir =
        e.checkpoint_dir.clone().unwrap_or_else(|| e.out.parent().map(Path::to_path_buf).unwrap_or_default().join("checkpoints"));
    std::fs::create_dir_all(&ckpt_dir)?;
    let stem = e.out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| family.name().into());
    m.save_weights(&ckpt_dir.join(format!("{stem}.bpk")))?;
    // parity on every sample (train + test), burn as reference
    let expected = m.predict_proba(&o.values)?;
    let draft = Draft::new(m.export(mp, vec![]));
    let parity = verify::check(draft.bytes(), &e.out, &o.values, m.genes.len(), "probabilities", &expected, e.tolerance);
    if let (Err(_), Some(p)) = (&parity, std::env::var_os("BIOEDGE_KEEP_FAILED_EXPORT")) {
        std::fs::write(&p, draft.bytes())?; // for debugging an exporter; never the requested output
    }
    let parity = parity?;
    let mut card = card(&task, &o, family, mp);
    record_parity(&mut card, [&parity]);
    let input =
        "expression per sample, genes in the order of `genes`, raw units of the training file (see preprocessing); NaN = gene not measured";
    let size = draft.finish(card, &[("expression", input), CLASSIFIER_OUTPUTS[0], CLASSIFIER_OUTPUTS[1]], &e.out)?;
    println!(
        "{family}: test accuracy {:.3}, test ROC-AUC {:.3} ({} test samples); parity on {} samples: tract {:.1e}, ort {:.1e} (tol {:.0e}); wrote {} ({:.1} MB)",
        o.metrics["test_accuracy"],
        o.metrics["test_roc_auc"],
        o.test_rows.len(),
        parity.samples,
        parity.tract_max_abs_diff,
        parity.ort_max_abs_diff,
        parity.tolerance,
        e.out.display(),
        size as f64 / 1e6
    );
    Ok(())
}

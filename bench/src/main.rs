//! Benchmarks, side by side in one run (ratios, never timed assertions):
//! - `bench models M.onnx ...`: tract vs ONNX Runtime (Rust) vs Python onnxruntime on exported
//!   expression models;
//! - `bench message-passing`: the gene GCN exported with ScatterND vs a dense adjacency MatMul on
//!   graphs of growing size (the evidence for `MessagePassing::auto`);
//! - `bench segment-sum`: the forms of the segment sum in message-passing exports (decisions §5).
//! - `bench spot-ensemble`: the cost of test-time augmentation and seed ensembles of the spot model.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use infer::runtime::{Backend, Options, Session, Value};
use models::burn::prelude::Device;
use models::gene::{GeneGcnConfig, MessagePassing};
use models::graph::NormalizedGraph;
use models::preprocess::Standardizer;
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::path::{Path, PathBuf};
use std::time::Instant;

mod flops;
mod segment;
mod spot_ensemble;
mod torch;

#[derive(Parser)]
#[command(name = "bench")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Throughput of exported expression (and spot) models on each runtime.
    Models {
        models: Vec<PathBuf>,
        #[arg(long, default_value_t = 48)]
        batch: usize,
        /// Seconds per measurement (at least 3 runs).
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Python with onnxruntime (default: $BIOEDGE_PYTHON).
        #[arg(long)]
        python: Option<PathBuf>,
        /// Add a column: tract on 1 thread with the symbolic plan (no plan per input shape).
        #[arg(long)]
        symbolic: bool,
    },
    /// Node models (GCN/GAT exports) at the training graph's size and on a ~100k-edge graph.
    Nodes {
        models: Vec<PathBuf>,
        /// Planetoid-style prefix of the graph the models were trained on.
        #[arg(long, default_value = "../shared/data/planetoid/derived/cora")]
        data: PathBuf,
        /// Nodes of the synthetic large graph (mean degree 10: ~5 × nodes undirected edges).
        #[arg(long, default_value_t = 10000)]
        large_nodes: usize,
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        #[arg(long)]
        python: Option<PathBuf>,
        /// Add a column: tract on 1 thread with the symbolic plan (no plan per input shape).
        #[arg(long)]
        symbolic: bool,
        /// Also print where tract's time goes on each graph (one thread, each node timed, per op).
        #[arg(long)]
        profile: bool,
        /// With --profile: per node, with input shapes.
        #[arg(long)]
        per_node: bool,
    },
    /// Training speed: burn (CPU) vs plain PyTorch (CPU) on the same GCN and GAT, ms per epoch.
    TrainNodes {
        #[arg(long, default_value = "../shared/data/planetoid/derived/cora")]
        data: PathBuf,
        #[arg(long, default_value_t = 100)]
        epochs: usize,
        /// Python with torch (default: $BIOEDGE_TORCH_PYTHON, then ~/.cache/bioedge/torchvenv; `bash bench/setup_torch.sh`).
        #[arg(long)]
        python: Option<PathBuf>,
    },
    /// Training step time of the spot model (burn, CPU or `--device gpu`): ms per Adam step.
    SpotStep {
        /// small or large.
        #[arg(long, default_value = "small")]
        config: String,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        #[arg(long, default_value_t = 5)]
        steps: usize,
    },
    /// `infer mol` throughput (featurize + predict) on a SMILES table: tract vs ONNX Runtime.
    Mol {
        model: PathBuf,
        #[arg(long, default_value = "../shared/data/tox21/tox21.csv")]
        data: PathBuf,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Add a row: tract on 1 thread with the symbolic plan (no plan per input shape).
        #[arg(long)]
        symbolic: bool,
    },
    /// This machine's measured f32 peak: square SGEMMs through tract and ONNX Runtime, 1 and all threads.
    Peak {
        #[arg(long, default_value = "512,1024,2048")]
        sizes: String,
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
    },
    /// FLOPs per item of each benchmarked model and the fraction of the measured peak each runtime reaches.
    Roofline {
        /// Models (default: the gene GCN/MLP, Cora GCN/GAT, Tox21 GraphConv and spot CNN under out/).
        models: Vec<PathBuf>,
        #[arg(long, default_value = "../shared/data/planetoid/derived/cora")]
        data: PathBuf,
        #[arg(long, default_value = "../shared/data/tox21/tox21.csv")]
        tox21: PathBuf,
        #[arg(long, default_value_t = 48)]
        gene_batch: usize,
        #[arg(long, default_value_t = 256)]
        mol_batch: usize,
        #[arg(long, default_value_t = 32)]
        spot_batch: usize,
        /// Seconds per measurement (at least 3 runs).
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// GEMM sizes of the peak measurement.
        #[arg(long, default_value = "512,1024,2048")]
        sizes: String,
        /// Also print the FLOP counts per op.
        #[arg(long)]
        ops: bool,
        /// Also print where tract's time goes: its optimized plan for the benchmark input on one
        /// thread, each node timed, summed per op.
        #[arg(long)]
        profile: bool,
        /// With --profile: each node of the plan on its own line, with its input shapes.
        #[arg(long)]
        per_node: bool,
    },
    /// ScatterND vs dense message passing for the gene GCN.
    /// Forms of the segment sum behind message passing: tract and ONNX Runtime 1 and 2 threads.
    SegmentSum {
        #[arg(long, default_value = "../shared/data/planetoid/derived/cora")]
        data: PathBuf,
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
    },
    MessagePassing {
        #[arg(long, default_value = "128,512,2000,4000")]
        nodes: String,
        /// Mean degree of the random graph.
        #[arg(long, default_value_t = 8)]
        degree: usize,
        #[arg(long, default_value_t = 16)]
        batch: usize,
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
    },
    /// Cost of test-time augmentation and seed ensembles in one spot ONNX: ms per spot, tract and ONNX Runtime.
    SpotEnsemble(spot_ensemble::SpotEnsembleArgs),
    /// Ours (ONNX Runtime, tract) vs PyTorch eager and PyTorch Geometric, same weights and inputs: Cora GCN/GAT, a 100k-edge graph, Tox21.
    Torch(torch::TorchArgs),
}

/// Runs of `f` per second over about `seconds` (after one warm-up run).
fn rate(seconds: f64, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let t0 = Instant::now();
    let mut n = 0;
    while n < 3 || t0.elapsed().as_secs_f64() < seconds {
        f()?;
        n += 1;
    }
    Ok(n as f64 / t0.elapsed().as_secs_f64())
}

fn input(rows: usize, cols: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(7);
    (0..rows * cols).map(|_| rng.random_range(1.0f32..2000.0)).collect()
}

fn runtime_rate(bytes: &[u8], name: &Path, backend: Backend, threads: usize, x: &[f32], shape: &[usize], seconds: f64) -> Result<f64> {
    runtime_rate_values(bytes, name, backend, threads, &[Value::f32(shape, x.to_vec())], seconds)
}

/// Python onnxruntime runs/s on the same inputs (written to temp files).
fn python_rate(python: &Path, model: &Path, inputs: &[(String, Value)], seconds_hint: f64, runs_per_s: f64, threads: usize) -> Result<f64> {
    let dir = std::env::temp_dir().join(format!("bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut spec = Vec::new();
    for (i, (name, v)) in inputs.iter().enumerate() {
        let file = dir.join(format!("in{i}.bin"));
        let (bytes, dtype): (Vec<u8>, &str) = match v {
            Value::F32 { data, .. } => (data.iter().flat_map(|x| x.to_le_bytes()).collect(), "float32"),
            Value::I64 { data, .. } => (data.iter().flat_map(|x| x.to_le_bytes()).collect(), "int64"),
        };
        std::fs::write(&file, bytes)?;
        spec.push(serde_json::json!({"name": name, "dtype": dtype, "shape": v.shape(), "file": file}));
    }
    let spec_path = dir.join("inputs.json");
    std::fs::write(&spec_path, serde_json::to_vec(&spec)?)?;
    let iters = ((seconds_hint * runs_per_s) as usize).max(3);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ort_python.py");
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg(model)
        .arg(&spec_path)
        .arg(iters.to_string())
        .arg(threads.to_string())
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        bail!("python bench failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v["runs_per_s"].as_f64().context("python bench output")
}

fn runtime_rate_values(bytes: &[u8], name: &Path, backend: Backend, threads: usize, inputs: &[Value], seconds: f64) -> Result<f64> {
    session_rate(bytes, name, backend, &Options { threads, ..Default::default() }, inputs, seconds)
}

/// Runs/s of one session built with `opts`.
fn session_rate(bytes: &[u8], name: &Path, backend: Backend, opts: &Options, inputs: &[Value], seconds: f64) -> Result<f64> {
    let mut s = Session::from_bytes(bytes, name, backend, opts)?;
    // tract builds a shape's own plan on its second run: both runs before timing
    s.run(inputs)?;
    rate(seconds, || {
        s.run(inputs)?;
        Ok(())
    })
}

/// tract and ONNX Runtime at 1 thread and at all cores: runs/s as [tract 1t, ort 1t, tract Nt,
/// ort Nt], then tract 1t on the symbolic plan when `symbolic`.
fn same_threads(bytes: &[u8], name: &Path, inputs: &[Value], seconds: f64, symbolic: bool) -> Result<Vec<f64>> {
    let mut r = Vec::new();
    for threads in [1, 0] {
        for backend in [Backend::Tract, Backend::Ort] {
            r.push(session_rate(bytes, name, backend, &Options { threads, ..Default::default() }, inputs, seconds)?);
        }
    }
    if symbolic {
        r.push(session_rate(bytes, name, Backend::Tract, &Options { threads: 1, symbolic: true, ..Default::default() }, inputs, seconds)?);
    }
    Ok(r)
}

/// The header cells of [`same_threads`]'s columns and their ratios.
fn same_threads_header(symbolic: bool) -> String {
    let n = infer::runtime::thread_count(0);
    let s = if symbolic { " tract 1t symbolic | symbolic/specialised |" } else { "" };
    format!("tract 1t | ort 1t | tract/ort 1t | tract {n}t | ort {n}t | tract/ort {n}t | tract {n}t/1t |{s}")
}

/// [`same_threads`]'s rates (times `scale`) and ratios as table cells.
fn same_threads_cells(r: &[f64], scale: f64, digits: usize) -> String {
    let mut c = format!(
        "{:.digits$} | {:.digits$} | {:.2}× | {:.digits$} | {:.digits$} | {:.2}× | {:.2}× |",
        r[0] * scale,
        r[1] * scale,
        r[0] / r[1],
        r[2] * scale,
        r[3] * scale,
        r[2] / r[3],
        r[2] / r[0]
    );
    if let Some(sym) = r.get(4) {
        c += &format!(" {:.digits$} | {:.2}× |", sym * scale, sym / r[0]);
    }
    c
}

fn models_bench(models: &[PathBuf], batch: usize, seconds: f64, python: Option<PathBuf>, symbolic: bool) -> Result<()> {
    let python = python
        .or_else(|| std::env::var_os("BIOEDGE_PYTHON").map(PathBuf::from))
        .context("no Python: pass --python or set BIOEDGE_PYTHON (scripts/env.sh)")?;
    let n = infer::runtime::thread_count(0);
    println!("samples/s at batch {batch} (higher is better); tract and ONNX Runtime at 1 thread and at all {n} cores");
    let cols = 11 + if symbolic { 2 } else { 0 };
    println!("| model | {} python ort 1t | python ort {n}t | rust ort / python ort ({n}t) |", same_threads_header(symbolic));
    println!("|{}", "---|".repeat(cols));
    for m in models {
        let bytes = std::fs::read(m).with_context(|| m.display().to_string())?;
        let card = onnx_format::card_from_bytes(&bytes, &m.display().to_string())?;
        // expression [batch, genes] or a spot model's image [batch, 3, side, side]
        let spec = card.inputs.first().context("the card lists no input")?;
        let shape: Vec<usize> = std::iter::once(Ok(batch))
            .chain(spec.shape.iter().skip(1).map(|d| d.parse::<usize>().with_context(|| format!("{}: input dim `{d}`", m.display()))))
            .collect::<Result<_>>()?;
        let x = if card.family == onnx_format::Family::SpotExpression {
            let mut rng = StdRng::seed_from_u64(7);
            (0..shape.iter().product::<usize>()).map(|_| rng.random_range(-2.0f32..2.0)).collect()
        } else {
            input(batch, shape[1..].iter().product())
        };
        let inputs = [Value::f32(&shape, x)];
        let r = same_threads(&bytes, m, &inputs, seconds, symbolic)?;
        let named = [(spec.name.clone(), inputs[0].clone())];
        let py1 = python_rate(&python, m, &named, seconds, r[1], 1)?;
        let py = python_rate(&python, m, &named, seconds, r[3], 0)?;
        let b = batch as f64;
        println!(
            "| {} ({}) | {} {:.0} | {:.0} | {:.2}× |",
            m.file_name().unwrap().to_string_lossy(),
            card.family,
            same_threads_cells(&r, b, 0),
            py1 * b,
            py * b,
            r[3] / py
        );
    }
    Ok(())
}

fn message_passing_bench(nodes: &str, degree: usize, batch: usize, seconds: f64) -> Result<()> {
    let device = Device::flex();
    println!("gene GCN (4 layers × 32 channels), batch {batch}, random graph with mean degree {degree}: batches/s (higher is better)");
    println!(
        "| genes | messages | tract scatter-nd | tract dense | ort scatter-nd | ort dense | dense/scatter tract | dense/scatter ort |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for n in nodes.split(',') {
        let n: usize = n.trim().parse()?;
        let mut rng = StdRng::seed_from_u64(n as u64);
        let edges: Vec<(u32, u32)> = (0..n * degree / 2).map(|_| (rng.random_range(0..n as u32), rng.random_range(0..n as u32))).collect();
        let graph = NormalizedGraph::gcn(n, &edges);
        let model = GeneGcnConfig::default().init(n, 2, &device);
        let pre = Standardizer { log2: true, floor: 1.0, mean: vec![5.0; n], std: vec![2.0; n] };
        let x = input(batch, n);
        let mut r = Vec::new();
        for backend in [Backend::Tract, Backend::Ort] {
            for mp in [MessagePassing::ScatterNd, MessagePassing::Dense] {
                let bytes = onnx_format::encode(&model.export(&pre, &graph, mp, vec![]));
                r.push(runtime_rate(&bytes, Path::new("bench.onnx"), backend, 0, &x, &[batch, n], seconds)?);
            }
        }
        println!(
            "| {n} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}× | {:.2}× |",
            graph.num_edges(),
            r[0],
            r[1],
            r[2],
            r[3],
            r[1] / r[0],
            r[3] / r[2]
        );
    }
    Ok(())
}

/// `profile`: Some(per node) prints tract's profile of each model on each graph after the table.
fn nodes_bench(
    models: &[PathBuf],
    data: &Path,
    large: usize,
    seconds: f64,
    python: Option<PathBuf>,
    symbolic: bool,
    profile: Option<bool>,
) -> Result<()> {
    let python = python
        .or_else(|| std::env::var_os("BIOEDGE_PYTHON").map(PathBuf::from))
        .context("no Python: pass --python or set BIOEDGE_PYTHON (scripts/env.sh)")?;
    let d = infer::nodes::read_planetoid(data)?;
    let (s, t) = d.edge_index();
    let f = d.num_features;
    // a larger graph with Cora-like sparse features (the one `bench torch` times too)
    let (xl, ls, lt) = torch::random_graph(large, f);
    let graphs = torch::in_target_order([
        (format!("{} ({} nodes, {} edges)", d.name, d.num_nodes, s.len()), d.num_nodes, d.features.clone(), s, t),
        (format!("random ({large} nodes, {} edges)", ls.len()), large, xl, ls, lt),
    ]);
    let n = infer::runtime::thread_count(0);
    println!("forward passes/s over the whole graph (higher is better); tract and ONNX Runtime at 1 thread and at all {n} cores");
    let cols = 11 + if symbolic { 2 } else { 0 };
    let mut profiles = Vec::new();
    println!("| model | graph | {} python ort {n}t | rust ort / python ort ({n}t) |", same_threads_header(symbolic));
    println!("|{}", "---|".repeat(cols));
    for m in models {
        let bytes = std::fs::read(m).with_context(|| m.display().to_string())?;
        for (label, nodes, x, s, t) in &graphs {
            let inputs = vec![Value::f32(&[*nodes, f], x.clone()), Value::i64(&[2, s.len()], [s.clone(), t.clone()].concat())];
            let r = same_threads(&bytes, m, &inputs, seconds, symbolic)?;
            let named = [("x".to_string(), inputs[0].clone()), ("edge_index".to_string(), inputs[1].clone())];
            let py = python_rate(&python, m, &named, seconds, r[3], 0)?;
            println!(
                "| {} | {label} | {} {py:.1} | {:.2}× |",
                m.file_name().unwrap().to_string_lossy(),
                same_threads_cells(&r, 1.0, 1),
                r[3] / py
            );
            if let Some(per_node) = profile {
                let p = flops::profile_line(&bytes, &inputs, seconds, per_node, 1, "pass")?;
                profiles.push(format!("{} on {label}: {p}", m.file_name().unwrap().to_string_lossy()));
            }
        }
    }
    if !profiles.is_empty() {
        println!();
        println!("tract's time per op (its plan for each graph, 1 thread, each node timed; ms per pass, share):");
        for p in profiles {
            println!("{p}");
        }
    }
    Ok(())
}

fn train_nodes_bench(data: &Path, epochs: usize, python: Option<PathBuf>) -> Result<()> {
    use models::node_fit::{NodeArchitecture, NodeClassifier, NodeData, NodeTrainConfig};
    let python = python
        .or_else(|| std::env::var_os("BIOEDGE_TORCH_PYTHON").map(PathBuf::from))
        .or_else(|| std::env::var_os("BIOEDGE_CACHE").map(|c| PathBuf::from(c).join("torchvenv/bin/python")))
        .context("no Python with torch: pass --python, set BIOEDGE_TORCH_PYTHON, or run `bash bench/setup_torch.sh`")?;
    if !python.exists() {
        bail!("{} not found: run `bash bench/setup_torch.sh` (installs torch from PyPI into $BIOEDGE_CACHE/torchvenv)", python.display());
    }
    let d = infer::nodes::read_planetoid(data)?;
    let (src, dst) = d.edge_index();
    let infer::nodes::NodeDataset { features: x, num_nodes, num_features, labels, num_classes, train, val, .. } = &d;
    let (num_nodes, num_features, num_classes) = (*num_nodes, *num_features, *num_classes);
    let nd = NodeData { x, num_nodes, num_features, src: &src, dst: &dst, labels, num_classes, train, val };
    let device = Device::flex();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("train_torch.py");
    println!("training ms per epoch on {} (one step + one validation forward; lower is better), {} epochs, CPU", d.name, epochs);
    println!("| model | burn (flex, all cores) | PyTorch 1 thread | PyTorch all threads | best PyTorch / burn |");
    println!("|---|---|---|---|---|");
    let mut version = String::new();
    for (name, arch, lr, first_only) in [
        ("gcn", NodeArchitecture::NodeGcn(Default::default()), 0.01, true),
        ("gat", NodeArchitecture::NodeGat(models::node::NodeGatConfig { value_dropout: true, ..Default::default() }), 0.005, false),
    ] {
        let cfg = |e| NodeTrainConfig {
            lr,
            weight_decay: 5e-4,
            first_layer_decay_only: first_only,
            epochs: e,
            patience: usize::MAX,
            accuracy_and_loss: false,
            seed: 0,
        };
        NodeClassifier::fit(&nd, arch.clone(), cfg(3), &device, &mut |_, _, _, _| {})?; // warm-up
        let t0 = Instant::now();
        let m = NodeClassifier::fit(&nd, arch, cfg(epochs), &device, &mut |_, _, _, _| {})?;
        let burn_ms = t0.elapsed().as_secs_f64() * 1000.0 / m.epochs_run as f64;
        let mut torch = Vec::new();
        for threads in [1usize, 0] {
            let out = std::process::Command::new(&python)
                .arg(&script)
                .arg(data)
                .arg(name)
                .arg(epochs.to_string())
                .arg(threads.to_string())
                .output()?;
            if !out.status.success() {
                bail!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr));
            }
            let v: serde_json::Value = serde_json::from_slice(out.stdout.trim_ascii()).context("train_torch.py output")?;
            torch.push((
                v["ms_per_epoch"].as_f64().context("ms_per_epoch")?,
                v["threads"].as_u64().unwrap_or(0),
                v["torch"].as_str().unwrap_or("?").to_string(),
            ));
        }
        let best = torch.iter().map(|t| t.0).fold(f64::INFINITY, f64::min);
        println!("| {name} | {burn_ms:.1} | {:.1} | {:.1} ({} threads) | {:.2}× |", torch[0].0, torch[1].0, torch[1].1, best / burn_ms);
        version = torch[0].2.clone();
    }
    println!("PyTorch {version}; same model, same epoch (train step + validation forward); ratio > 1: burn is faster");
    Ok(())
}

/// Scores a batch per thread before timing `infer::mol::score`: each thread's session is made on
/// its first batch (`Session::run_each`).
fn warm_up_mol(s: &mut Session, tasks: &[String], smiles: &[String], batch: usize) -> Result<()> {
    let n = batch.saturating_mul(s.threads).min(smiles.len());
    infer::mol::score(s, tasks, &smiles[..n], batch)?;
    Ok(())
}

fn mol_bench(model: &Path, data: &Path, batch: usize, symbolic: bool) -> Result<()> {
    let t = infer::mol::Table::read(data)?;
    let c = infer::mol::smiles_column(&t, None, data)?;
    let smiles: Vec<String> = (0..t.rows.len()).map(|r| t.get(r, c).to_string()).collect();
    let card = infer::read_card(model)?;
    let t0 = Instant::now();
    let (ok, bad) = infer::mol::featurize_rows(&smiles);
    let feat_s = t0.elapsed().as_secs_f64();
    println!(
        "{}: {} SMILES ({} rejected); batch {batch}; molecules/s over all rows, featurize + predict (higher is better)",
        data.display(),
        smiles.len(),
        bad.len()
    );
    println!(
        "featurize only: {:.0} molecules/s ({} atoms)",
        smiles.len() as f64 / feat_s,
        ok.iter().map(|(_, g)| g.num_atoms).sum::<usize>()
    );
    println!("| runtime | threads | molecules/s | tract/ort (same threads) |");
    println!("|---|---|---|---|");
    let mut runs = vec![];
    for threads in [1, 0] {
        runs.push((Backend::Tract, threads, false));
        runs.push((Backend::Ort, threads, false));
    }
    if symbolic {
        runs.push((Backend::Tract, 1, true));
    }
    let mut rates: Vec<f64> = Vec::new();
    for (i, (backend, threads, symbolic)) in runs.into_iter().enumerate() {
        let mut s = Session::from_file(model, backend, &Options { threads, symbolic, ..Default::default() })?;
        warm_up_mol(&mut s, &card.classes, &smiles, batch)?;
        let t0 = Instant::now();
        let scored = infer::mol::score(&mut s, &card.classes, &smiles, batch)?;
        let rate = smiles.len() as f64 / t0.elapsed().as_secs_f64();
        rates.push(rate);
        let name = if symbolic { format!("{} (symbolic plan)", s.provider) } else { s.provider.clone() };
        let ratio = if i % 2 == 1 && i < 4 { format!("{:.2}×", rates[i - 1] / rate) } else { String::new() };
        println!("| {name} | {} | {rate:.0} | {ratio} |", s.threads);
        anyhow::ensure!(
            scored.num_scored() == ok.len(),
            "{}: scored {} molecules, featurized {}",
            s.provider,
            scored.num_scored(),
            ok.len()
        );
    }
    Ok(())
}

/// ms per Adam step of the spot model on random images (the first step, which builds kernels, apart).
fn spot_step_bench(config: &str, batch: usize, steps: usize) -> Result<()> {
    use models::burn::optim::{AdamConfig, GradientsParams};
    use models::burn::prelude::*;
    use models::spot::SpotModelConfig;
    let cfg = match config {
        "small" => SpotModelConfig::small(),
        "large" => SpotModelConfig::large(),
        c => bail!("unknown --config `{c}` (small or large)"),
    };
    let device = Device::flex();
    device.seed(5);
    let ad = device.clone().autodiff();
    let mut model = cfg.init(&ad);
    let mut optim = AdamConfig::new().init();
    let s = cfg.image_size;
    let x: Tensor<4> = Tensor::random([batch, 3, s, s], models::burn::tensor::Distribution::Normal(0.0, 1.0), &ad);
    let target: Tensor<2> = Tensor::zeros([batch, cfg.num_genes], &ad);
    let mut ms = Vec::new();
    for _ in 0..steps.max(2) {
        let t = Instant::now();
        let loss = (model.forward(x.clone()) - target.clone()).powf_scalar(2.0).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model, grads);
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let rest = &ms[1..];
    println!(
        "spot {config}, batch {batch}: first step {:.0} ms, then {:.0} ms per step (mean of {}) = {:.1} images/s",
        ms[0],
        rest.iter().sum::<f64>() / rest.len() as f64,
        rest.len(),
        batch as f64 * 1e3 * rest.len() as f64 / rest.iter().sum::<f64>()
    );
    Ok(())
}

fn main() -> Result<()> {
    infer::runtime::keep_freed_memory();
    match Cli::parse().cmd {
        Cmd::Mol { model, data, batch, symbolic } => mol_bench(&model, &data, batch, symbolic),
        Cmd::SpotStep { config, batch, steps } => spot_step_bench(&config, batch, steps),
        Cmd::TrainNodes { data, epochs, python } => train_nodes_bench(&data, epochs, python),
        Cmd::Nodes { models, data, large_nodes, seconds, python, symbolic, profile, per_node } => {
            nodes_bench(&models, &data, large_nodes, seconds, python, symbolic, profile.then_some(per_node))
        }
        Cmd::Models { models, batch, seconds, python, symbolic } => models_bench(&models, batch, seconds, python, symbolic),
        Cmd::Peak { sizes, seconds } => flops::measure_peak(&flops::sizes(&sizes)?, seconds).map(|_| ()),
        Cmd::Roofline { models, data, tox21, gene_batch, mol_batch, spot_batch, seconds, sizes, ops, profile, per_node } => {
            flops::roofline(&flops::RooflineArgs {
                models: &models,
                cora: &data,
                tox21: &tox21,
                gene_batch,
                mol_batch,
                spot_batch,
                seconds,
                sizes: &flops::sizes(&sizes)?,
                ops,
                profile,
                per_node,
            })
        }
        Cmd::SegmentSum { data, seconds } => segment::segment_sum_bench(&data, seconds),
        Cmd::MessagePassing { nodes, degree, batch, seconds } => message_passing_bench(&nodes, degree, batch, seconds),
        Cmd::Torch(a) => torch::run(&a),
        Cmd::SpotEnsemble(a) => spot_ensemble::run(&a),
    }
}

//! `bench torch`: our Rust path (bioedge_runtime `Session`, ONNX Runtime at 1 and all threads, and
//! tract) vs PyTorch eager and PyTorch Geometric with the same weights (copied from the ONNX file by
//! bench/torch_models.py, which refuses to time unless its modules agree with ONNX Runtime) on the
//! same inputs: Cora GCN and GAT, the random 100k-edge graph of `bench nodes`, Tox21 GraphConv.

use anyhow::{Context, Result, bail, ensure};
use infer::runtime::{Backend, Options, Session, Value};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options of `bench torch`.
#[derive(clap::Args)]
pub struct TorchArgs {
    /// Node GCN export (inputs x, edge_index).
    #[arg(long, default_value = "out/cora-gcn.onnx")]
    gcn: PathBuf,
    /// Node GAT export.
    #[arg(long, default_value = "out/cora-gat.onnx")]
    gat: PathBuf,
    /// Tox21 GraphConv export.
    #[arg(long, default_value = "out/tox21-graphconv.onnx")]
    mol: PathBuf,
    /// Planetoid-style prefix of the graph the node models were trained on.
    #[arg(long, default_value = "../shared/data/planetoid/derived/cora")]
    data: PathBuf,
    /// SMILES table for the GraphConv model (all rows are used).
    #[arg(long, default_value = "../shared/data/tox21/tox21.csv")]
    tox21: PathBuf,
    /// Nodes of the random graph (mean degree 10, as `bench nodes`: ~100k directed edges at 10000).
    #[arg(long, default_value_t = 10000)]
    large_nodes: usize,
    /// Molecules per batch.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Seconds per measurement (at least 3 runs after a warm-up).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Max abs difference of the logits allowed between each PyTorch module and ONNX Runtime.
    #[arg(long, default_value_t = 1e-4)]
    tolerance: f64,
    /// Python with torch and torch_geometric (default: $BIOEDGE_TORCH_PYTHON, then $BIOEDGE_CACHE/torchvenv; `bash bench/setup_torch.sh`).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Python with RDKit for the featurization baseline (default: $BIOEDGE_PYTHON; without one, model-only).
    #[arg(long)]
    rdkit_python: Option<PathBuf>,
    /// Only check that the PyTorch modules agree with ONNX Runtime (no timing); prints the JSON report.
    #[arg(long)]
    check: bool,
}

/// The random graph of `bench nodes`: `n` nodes with 2 % of `f` features set, `5n` random pairs
/// (self-loops dropped, deduplicated), both directions.
pub fn random_graph(n: usize, f: usize) -> (Vec<f32>, Vec<i64>, Vec<i64>) {
    let mut rng = StdRng::seed_from_u64(11);
    let x: Vec<f32> = (0..n * f).map(|_| if rng.random_range(0..100) < 2 { 1.0 } else { 0.0 }).collect();
    let el: Vec<(u32, u32)> = (0..n * 5).map(|_| (rng.random_range(0..n as u32), rng.random_range(0..n as u32))).collect();
    let (s, t) = infer::nodes::directed(&infer::nodes::undirected(&el));
    (x, s, t)
}

/// Benchmark graphs `(label, nodes, x, src, dst)` with their edges in target order, as `infer nodes`
/// feeds them ([`infer::nodes::target_order`]); prints what that host sort takes per graph.
pub fn in_target_order<const G: usize>(
    graphs: [(String, usize, Vec<f32>, Vec<i64>, Vec<i64>); G],
) -> [(String, usize, Vec<f32>, Vec<i64>, Vec<i64>); G] {
    graphs.map(|(label, n, x, s, t)| {
        let t0 = std::time::Instant::now();
        let (s, t) = infer::nodes::target_order(&s, &t, n);
        println!("{label}: edges put in target order on the host (as `infer nodes` does) in {:.0} µs", t0.elapsed().as_secs_f64() * 1e6);
        (label, n, x, s, t)
    })
}

/// The Python with torch: --python, $BIOEDGE_TORCH_PYTHON, then the venv of bench/setup_torch.sh.
fn torch_python(python: Option<PathBuf>) -> Result<PathBuf> {
    let p = python
        .or_else(|| std::env::var_os("BIOEDGE_TORCH_PYTHON").map(PathBuf::from))
        .or_else(|| std::env::var_os("BIOEDGE_CACHE").map(|c| PathBuf::from(c).join("torchvenv/bin/python")))
        .context("no Python with torch: pass --python, set BIOEDGE_TORCH_PYTHON, or run `bash bench/setup_torch.sh`")?;
    if !p.exists() {
        bail!(
            "{} not found: run `bash bench/setup_torch.sh` (torch and torch_geometric from PyPI into $BIOEDGE_CACHE/torchvenv)",
            p.display()
        );
    }
    Ok(p)
}

/// One model on one input set: `batches` run once per pass; `items` per pass (1 graph, or molecules).
struct Case {
    kind: &'static str,
    model: PathBuf,
    graph: String,
    items: usize,
    batches: Vec<Vec<Value>>,
}

/// Writes each case's inputs as raw files and the spec torch_models.py reads.
fn write_spec(dir: &Path, cases: &[Case], a: &TorchArgs) -> Result<PathBuf> {
    let mut specs = Vec::new();
    for (c, case) in cases.iter().enumerate() {
        let names: &[&str] =
            if case.kind == "mol" { &["atom_features", "edge_index", "membership", "molecule_sizes"] } else { &["x", "edge_index"] };
        let mut batches = Vec::new();
        for (b, inputs) in case.batches.iter().enumerate() {
            let mut spec = Vec::new();
            for (name, v) in names.iter().zip(inputs) {
                let file = dir.join(format!("c{c}-b{b}-{name}.bin"));
                let (bytes, dtype): (Vec<u8>, &str) = match v {
                    Value::F32 { data, .. } => (data.iter().flat_map(|x| x.to_le_bytes()).collect(), "float32"),
                    Value::I64 { data, .. } => (data.iter().flat_map(|x| x.to_le_bytes()).collect(), "int64"),
                };
                std::fs::write(&file, bytes).with_context(|| file.display().to_string())?;
                spec.push(json!({"name": name, "dtype": dtype, "shape": v.shape(), "file": file}));
            }
            batches.push(spec);
        }
        let model = std::fs::canonicalize(&case.model).with_context(|| case.model.display().to_string())?;
        specs.push(json!({"kind": case.kind, "model": model, "graph": case.graph, "batches": batches}));
    }
    let path = dir.join("spec.json");
    let spec = json!({"cases": specs, "seconds": a.seconds, "threads": [1, 0], "tolerance": a.tolerance});
    std::fs::write(&path, serde_json::to_vec(&spec)?)?;
    Ok(path)
}

/// Passes/s of our runtime over a case's batches, and the threads the session actually used.
fn ours(case: &Case, backend: Backend, threads: usize, seconds: f64) -> Result<(f64, usize)> {
    let mut s = Session::from_file(&case.model, backend, &Options { threads, ..Default::default() })?;
    // the batches as `infer mol` runs them: as many at once as there are threads
    let r = crate::rate(seconds, || {
        s.run_each(&case.batches)?;
        Ok(())
    })?;
    Ok((r, s.threads))
}

/// Items/s of our runtimes: ort 1 thread, ort all threads, tract all threads (with the threads used).
fn ours_all(case: &Case, seconds: f64) -> Result<Vec<(f64, usize)>> {
    let mut out = Vec::new();
    for (backend, threads) in [(Backend::Ort, 1), (Backend::Ort, 0), (Backend::Tract, 0)] {
        let (r, t) = ours(case, backend, threads, seconds)?;
        out.push((r * case.items as f64, t));
    }
    Ok(out)
}

fn torch_rate(r: &Json, name: &str, threads: &str) -> Option<f64> {
    r["runs_per_s"][name][threads].as_f64()
}

fn cell(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| if v >= 100.0 { format!("{v:.0}") } else { format!("{v:.2}") })
}

fn ratio(a: f64, b: Option<f64>) -> String {
    b.map_or("—".into(), |b| format!("{:.2}×", a / b))
}

/// Runs bench/torch_models.py on the spec; its JSON report (an error if it refused).
fn run_script(python: &Path, spec: &Path, check: bool) -> Result<Json> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("torch_models.py");
    let mut cmd = std::process::Command::new(python);
    cmd.arg(&script).arg(spec);
    if check {
        cmd.arg("--check");
    }
    let out = cmd.output().with_context(|| format!("running {}", python.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stderr}");
    if !out.status.success() {
        bail!("{} failed ({})", script.display(), out.status);
    }
    let last = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_string();
    serde_json::from_str(&last).with_context(|| format!("{} output: {last}", script.display()))
}

/// RDKit featurization of `csv` in molecules/s with `python` (None when it has no RDKit).
fn rdkit_rate(python: Option<PathBuf>, csv: &Path, batch: usize) -> Result<Option<(f64, String)>> {
    let Some(python) = python.or_else(|| std::env::var_os("BIOEDGE_PYTHON").map(PathBuf::from)) else { return Ok(None) };
    let has_rdkit = std::process::Command::new(&python).args(["-c", "import rdkit"]).output().is_ok_and(|o| o.status.success());
    if !has_rdkit {
        eprintln!("{}: no RDKit, Tox21 compared model-only", python.display());
        return Ok(None);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("torch_models.py");
    let out = std::process::Command::new(&python).arg(&script).arg("featurize").arg(csv).arg(batch.to_string()).output()?;
    if !out.status.success() {
        bail!("RDKit featurization failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: Json = serde_json::from_slice(out.stdout.trim_ascii()).context("featurize output")?;
    Ok(Some((v["molecules_per_s"].as_f64().context("molecules_per_s")?, v["rdkit"].as_str().unwrap_or("?").to_string())))
}

/// `bench torch`.
pub fn run(a: &TorchArgs) -> Result<()> {
    let python = torch_python(a.python.clone())?;
    ensure!(a.batch > 0, "--batch must be at least 1");
    for m in [&a.gcn, &a.gat, &a.mol] {
        ensure!(m.is_file(), "{}: no such model file (--gcn, --gat, --mol)", m.display());
    }
    let d = infer::nodes::read_planetoid(&a.data)?;
    let (s, t) = d.edge_index();
    let f = d.num_features;
    let (xl, ls, lt) = random_graph(a.large_nodes, f);
    let graphs = in_target_order([
        (format!("{} ({} nodes, {} edges)", d.name, d.num_nodes, s.len()), d.num_nodes, d.features.clone(), s, t),
        (format!("random ({} nodes, {} edges)", a.large_nodes, ls.len()), a.large_nodes, xl, ls, lt),
    ]);
    let mut cases = Vec::new();
    for (kind, model) in [("gcn", &a.gcn), ("gat", &a.gat)] {
        for (label, n, x, s, t) in &graphs {
            let inputs = vec![Value::f32(&[*n, f], x.clone()), Value::i64(&[2, s.len()], [s.clone(), t.clone()].concat())];
            cases.push(Case { kind, model: model.clone(), graph: label.clone(), items: 1, batches: vec![inputs] });
        }
    }
    let table = infer::mol::Table::read(&a.tox21)?;
    let col = infer::mol::smiles_column(&table, None, &a.tox21)?;
    let smiles: Vec<String> = (0..table.rows.len()).map(|r| table.get(r, col).to_string()).collect();
    let (ok, bad) = infer::mol::featurize_rows(&smiles);
    ensure!(!ok.is_empty(), "{}: no SMILES featurized", a.tox21.display());
    let mols: Vec<_> = ok.iter().map(|(_, g)| g).collect();
    // as `infer mol` batches them (atoms in the model's degree order)
    let batches = mols
        .chunks(a.batch)
        .map(|c| Ok(infer::mol::MolBatch::new(c)?.in_degree_order()?.values()))
        .collect::<Result<Vec<_>, infer::Error>>()?;
    let atoms: usize = mols.iter().map(|g| g.num_atoms).sum();
    let mol_label = format!("Tox21 ({} molecules, {} rejected, {atoms} atoms, batch {})", ok.len(), bad.len(), a.batch);
    cases.push(Case { kind: "mol", model: a.mol.clone(), graph: mol_label, items: ok.len(), batches });

    let dir = std::env::temp_dir().join(format!("bench-torch-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let spec = write_spec(&dir, &cases, a);
    let report = spec.and_then(|spec| run_script(&python, &spec, a.check));
    let _ = std::fs::remove_dir_all(&dir);
    let report = report?;
    if a.check {
        println!("{report}");
        return Ok(());
    }

    let cores = infer::runtime::thread_count(0);
    let n = format!("{cores} threads");
    println!(
        "PyTorch {}, PyTorch Geometric {}, ONNX Runtime (Python reference) {}; {} cores. Weights copied from each ONNX file; \
         every PyTorch module agrees with ONNX Runtime (max abs diff of the logits ≤ {:e}) before timing.",
        report["torch"].as_str().unwrap_or("?"),
        report["torch_geometric"].as_str().unwrap_or("?"),
        report["onnxruntime"].as_str().unwrap_or("?"),
        cores,
        a.tolerance
    );
    let results = report["cases"].as_array().context("report cases")?;
    ensure!(results.len() == cases.len(), "report has {} cases, expected {}", results.len(), cases.len());
    let mut mol_model_rates = None;
    let mut last_model = PathBuf::new();
    for (case, r) in cases.iter().zip(results) {
        if case.model != last_model {
            let unit = if case.kind == "mol" { "molecules/s" } else { "forward passes/s over the whole graph" };
            println!();
            println!(
                "{} ({}): {unit}, higher is better; ratios = ours (ONNX Runtime) / PyTorch at the same threads",
                case.model.display(),
                case.kind
            );
            println!(
                "| input | ours ort 1 thread | ours ort {n} | ours tract {n} | eager 1 thread | eager {n} | PyG 1 thread | PyG {n} | vs eager (1 / {cores}) | vs PyG (1 / {cores}) | ours best / PyTorch best | max abs diff eager / PyG |"
            );
            println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
            last_model = case.model.clone();
        }
        let o = ours_all(case, a.seconds)?;
        let items = case.items as f64;
        let tr = |name, th| torch_rate(r, name, th).map(|v| v * items);
        let (e1, en, p1, pn) = (tr("eager", "1"), tr("eager", "0"), tr("pyg", "1"), tr("pyg", "0"));
        let pinned = |(v, t): (f64, usize), want: usize| if t != want { format!("{} ({t} thread)", cell(Some(v))) } else { cell(Some(v)) };
        let best_ours = o.iter().map(|r| r.0).fold(0.0, f64::max);
        let best_torch = [e1, en, p1, pn].into_iter().flatten().reduce(f64::max);
        let diff = |name| r["max_abs_diff"][name].as_f64().map_or("—".into(), |d| format!("{d:.1e}"));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} / {} | {} | {} / {} |",
            case.graph,
            cell(Some(o[0].0)),
            pinned(o[1], cores),
            pinned(o[2], cores),
            cell(e1),
            cell(en),
            cell(p1),
            cell(pn),
            ratio(o[0].0, e1),
            ratio(o[1].0, en),
            ratio(o[0].0, p1),
            ratio(o[1].0, pn),
            ratio(best_ours, best_torch),
            diff("eager"),
            diff("pyg")
        );
        if case.kind == "mol" {
            mol_model_rates = Some((e1, en));
        }
    }

    // featurize + model: `infer mol`'s path vs RDKit featurization + the PyTorch model
    let (e1, en) = mol_model_rates.context("no Tox21 case")?;
    let card = infer::read_card(&a.mol)?;
    let mut e2e = Vec::new();
    for threads in [1, 0] {
        let mut s = Session::from_file(&a.mol, Backend::Ort, &Options { threads, ..Default::default() })?;
        crate::warm_up_mol(&mut s, &card.classes, &smiles, a.batch)?;
        let t0 = Instant::now();
        infer::mol::score(&mut s, &card.classes, &smiles, a.batch)?;
        e2e.push(smiles.len() as f64 / t0.elapsed().as_secs_f64());
    }
    println!();
    println!("{}: featurize + model, SMILES/s over all {} rows (higher is better)", a.mol.display(), smiles.len());
    match rdkit_rate(a.rdkit_python.clone(), &a.tox21, a.batch)? {
        Some((feat, version)) => {
            // the Python pipeline runs featurization, then the model: the times add
            let py = |model: Option<f64>| model.map(|m| smiles.len() as f64 / (smiles.len() as f64 / feat + ok.len() as f64 / m));
            let (py1, pyn) = (py(e1), py(en));
            println!("| pipeline | 1 thread | {n} |");
            println!("|---|---|---|");
            println!("| ours: `infer mol` path (Rust featurizer + ONNX Runtime) | {} | {} |", cell(Some(e2e[0])), cell(Some(e2e[1])));
            println!(
                "| Python: RDKit {version} + DeepChem atom features ({} SMILES/s, 1 thread) + PyTorch eager | {} | {} |",
                cell(Some(feat)),
                cell(py1),
                cell(pyn)
            );
            println!("| ours / Python | {} | {} |", ratio(e2e[0], py1), ratio(e2e[1], pyn));
        }
        None => {
            println!("no Python with RDKit ($BIOEDGE_PYTHON or --rdkit-python): model-only comparison above; ours end to end:");
            println!("| pipeline | 1 thread | {n} |");
            println!("|---|---|---|");
            println!("| ours: `infer mol` path (Rust featurizer + ONNX Runtime) | {} | {} |", cell(Some(e2e[0])), cell(Some(e2e[1])));
        }
    }
    Ok(())
}

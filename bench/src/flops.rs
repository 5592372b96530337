//! The physical limit: this machine's measured f32 GEMM peak (`bench peak`), FLOPs per item of
//! each benchmarked model counted from its ONNX graph, and the fraction of the peak each runtime
//! reaches on it (`bench roofline`).
//!
//! FLOPs are counted by running the model once through tract's decluttered (not optimized)
//! graph with the benchmark's inputs, so every node sees concrete shapes: MatMul/Gemm/Conv
//! (tract's EinSum and Conv) count 2 × their multiply-adds from tract's own `TypedOp::cost`;
//! every other node counts one operation per element it produces (a reduction: per element it
//! reads; a scatter: per update; layout and copies: nothing), reported apart as "other ops".

use crate::{rate, runtime_rate_values};
use anyhow::{Context, Result, bail};
use infer::runtime::{Backend, Options, Session, Value};
use onnx_format::builder::Elem;
use onnx_format::{Family, GraphBuilder};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::Cost;
use tract_onnx::tract_core::plan::{SimplePlan, SimpleState};

/// Ops that only move or reshape data: no arithmetic counted.
const LAYOUT_OPS: &[&str] = &[
    "Source",
    "Const",
    "Cast",
    "Concat",
    "Slice",
    "DynSlice",
    "StridedSlice",
    "Reshape",
    "IntoShape",
    "AddAxis",
    "RmAxis",
    "MoveAxis",
    "AxisOp",
    "MultiBroadcastTo",
    "Identity",
    "Pad",
    "Range",
    "Tile",
    "DynTile",
    "Downsample",
    "Onehot",
    "Dummy",
];

/// FLOPs of one model run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flops {
    /// 2 × multiply-adds of MatMul/Gemm/Conv nodes.
    pub dense: u64,
    /// Element operations of all other nodes (elementwise, reductions, scatter, gather).
    pub other: u64,
    /// Per tract op name: (nodes, operations, counted as dense).
    pub by_op: BTreeMap<String, (usize, u64, bool)>,
}

fn is_dense(name: &str) -> bool {
    name == "EinSum" || name.contains("MatMul") || name.contains("Conv")
}

/// Operations of one node: (count, dense?).
fn node_ops(op: &dyn TypedOp, inputs: &[TypedFact], outputs: &TVec<TValue>) -> Result<(u64, bool)> {
    let name = op.name();
    if is_dense(&name) {
        let refs: Vec<&TypedFact> = inputs.iter().collect();
        let mut fma = 0u64;
        for (cost, n) in op.cost(&refs)? {
            if let Cost::FMA(_) = cost {
                fma += n.to_i64().with_context(|| format!("{name}: cost {n} is not a number"))? as u64;
            }
        }
        // an EinSum with nothing to sum (an elementwise product) is not a matrix product
        let produced = outputs.first().map_or(0, |t| t.len() as u64);
        return Ok(if fma > produced { (2 * fma, true) } else { (produced, false) });
    }
    if LAYOUT_OPS.iter().any(|l| name == *l) {
        return Ok((0, false));
    }
    let elements = |f: Option<&TypedFact>| f.and_then(|f| f.shape.as_concrete().map(|s| s.iter().product::<usize>() as u64)).unwrap_or(0);
    let n = if name.starts_with("Scatter") {
        elements(inputs.get(2))
    } else if name.starts_with("Reduce")
        || ["Softmax", "MaxPool", "SumPool", "RmsNorm", "CumSum", "Topk"].iter().any(|p| name.starts_with(p))
    {
        elements(inputs.first())
    } else {
        outputs.first().map_or(0, |t| t.len() as u64)
    };
    Ok((n, false))
}

/// The ONNX model `bytes` in tract, decluttered, with its symbolic dims bound to the sizes of
/// `inputs` (sizes that depend on them, as a TopK's k, need it), and `inputs` as tract values.
fn bound(bytes: &[u8], inputs: &[Value]) -> Result<(TypedModel, TVec<TValue>)> {
    let model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .and_then(|m| m.into_typed())
        .and_then(|m| m.into_decluttered())
        .context("tract cannot load the model")?;
    if model.inputs.len() != inputs.len() {
        bail!("the model takes {} inputs, got {}", model.inputs.len(), inputs.len());
    }
    let tensors: TVec<TValue> = inputs
        .iter()
        .map(|v| match v {
            Value::F32 { shape, data } => Tensor::from_shape(shape, data),
            Value::I64 { shape, data } => Tensor::from_shape(shape, data),
        })
        .map(|t| t.map(|t| t.into_tvalue()))
        .collect::<TractResult<_>>()?;
    let mut subs = std::collections::HashMap::new();
    for (o, v) in model.input_outlets()?.iter().zip(inputs) {
        for (d, &n) in model.outlet_fact(*o)?.shape.iter().zip(v.shape()) {
            if let TDim::Sym(s) = d {
                subs.insert(s.clone(), TDim::Val(n as i64));
            }
        }
    }
    Ok((model.set_symbols(&subs)?.into_decluttered()?, tensors))
}

/// Count the FLOPs of one run of the ONNX model `bytes` on `inputs` (graph input order).
pub fn count(bytes: &[u8], inputs: &[Value]) -> Result<Flops> {
    let (model, tensors) = bound(bytes, inputs)?;
    let plan = SimplePlan::new(model)?;
    let mut state = SimpleState::new(&plan)?;
    let mut flops = Flops::default();
    state
        .run_plan_with_eval(tensors, |ctx, op_state, node, values| -> TractResult<TVec<TValue>> {
            let facts: Vec<TypedFact> = values.iter().map(|v| TypedFact::shape_and_dt_of(v)).collect();
            let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, values)?;
            let (n, dense) = node_ops(node.op.as_ref(), &facts, &out).with_context(|| format!("counting {node}"))?;
            if dense {
                flops.dense += n;
            } else {
                flops.other += n;
            }
            let name = node.op.name();
            let key = if !dense && is_dense(&name) { format!("{name} (nothing summed)") } else { name.to_string() };
            let e = flops.by_op.entry(key).or_insert((0, 0, dense));
            e.0 += 1;
            e.1 += n;
            Ok(out)
        })
        .context("running the model to count FLOPs")?;
    Ok(flops)
}

/// Where tract's time goes on `inputs`: its optimized plan for these shapes on one thread, each
/// node timed; per op name (nodes, seconds per run), slowest first, over at least 3 runs and
/// `seconds` (after one untimed run). `per_node`: per node (op, name and input shapes) instead.
pub fn profile(bytes: &[u8], inputs: &[Value], seconds: f64, per_node: bool) -> Result<Vec<(String, usize, f64)>> {
    let (model, tensors) = bound(bytes, inputs)?;
    // the plan bioedge-runtime runs: tract's, with our kernels swapped in
    let plan = SimplePlan::new(infer::runtime::tract_ops::optimize(model)?)?;
    let mut state = SimpleState::new(&plan)?;
    state.run(tensors.clone())?;
    let mut by: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    let (t0, mut runs) = (std::time::Instant::now(), 0usize);
    while runs < 3 || t0.elapsed().as_secs_f64() < seconds {
        state.run_plan_with_eval(tensors.clone(), |ctx, op_state, node, values| -> TractResult<TVec<TValue>> {
            let shapes: Option<Vec<Vec<usize>>> = per_node.then(|| values.iter().map(|v| v.shape().to_vec()).collect());
            let t = std::time::Instant::now();
            let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, values)?;
            let key = match shapes {
                Some(shapes) => format!("{} {} {shapes:?}", node.op.name(), node.name),
                None => node.op.name().to_string(),
            };
            let e = by.entry(key).or_default();
            e.0 += 1;
            e.1 += t.elapsed().as_secs_f64();
            Ok(out)
        })?;
        runs += 1;
    }
    let mut out: Vec<(String, usize, f64)> = by.into_iter().map(|(k, (n, s))| (k, n / runs, s / runs as f64)).collect();
    out.sort_by(|a, b| b.2.total_cmp(&a.2));
    Ok(out)
}

/// `n × n` f32 MatMul with a constant right operand, as ONNX bytes.
pub fn gemm_model(n: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(n as u64);
    let mut g = GraphBuilder::new("gemm");
    let a = g.input("a", Elem::F32, &[n.into(), n.into()]);
    let b = g.init_f32("b", &[n, n], (0..n * n).map(|_| rng.random_range(-1.0f32..1.0)).collect());
    g.node_to("MatMul", &[&a, &b], &["c"], &[]);
    g.output("c", Elem::F32, &[n.into(), n.into()]);
    onnx_format::encode(&g.finish("bench", vec![]))
}

fn random(shape: &[usize], seed: u64) -> Value {
    let mut rng = StdRng::seed_from_u64(seed);
    Value::f32(shape, (0..shape.iter().product()).map(|_| rng.random_range(-1.0f32..1.0)).collect())
}

/// Measured GEMM peak, GFLOP/s: best over sizes and runtimes on 1 thread and on all threads.
pub struct Peak {
    /// Best GFLOP/s on one thread.
    pub one: f64,
    /// Best GFLOP/s with one thread per core (never below `one`).
    pub all: f64,
}

/// The SGEMM microbenchmark; prints one row per size.
pub fn measure_peak(sizes: &[usize], seconds: f64) -> Result<Peak> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("f32 GEMM (n × n MatMul, constant right operand), GFLOP/s = 2n³ / time (higher is better)");
    println!("| n | tract 1 thread | tract all threads ({threads}) | ort 1 thread | ort all threads ({threads}) |");
    println!("|---|---|---|---|---|");
    let mut peak = Peak { one: 0.0, all: 0.0 };
    for &n in sizes {
        if n == 0 {
            bail!("GEMM size 0");
        }
        let bytes = gemm_model(n);
        let x = [random(&[n, n], 1)];
        let flop = 2.0 * (n as f64).powi(3);
        let g = |backend, threads| -> Result<f64> {
            Ok(runtime_rate_values(&bytes, Path::new("gemm.onnx"), backend, threads, &x, seconds)? * flop / 1e9)
        };
        let (tract1, tract, ort1, ort) = (g(Backend::Tract, 1)?, g(Backend::Tract, 0)?, g(Backend::Ort, 1)?, g(Backend::Ort, 0)?);
        println!("| {n} | {tract1:.1} | {tract:.1} | {ort1:.1} | {ort:.1} |");
        peak.one = peak.one.max(tract1).max(ort1);
        peak.all = peak.all.max(tract).max(ort).max(peak.one);
    }
    println!("measured peak: {:.1} GFLOP/s on 1 thread, {:.1} GFLOP/s on all {threads} threads", peak.one, peak.all);
    match theoretical() {
        Some(t) => println!("{t}"),
        None => println!("theoretical peak: unknown (no x86 FMA flags or clock in /proc/cpuinfo)"),
    }
    Ok(peak)
}

/// The theoretical f32 peak from /proc/cpuinfo and lscpu, in words.
fn theoretical() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let field = |key: &str| info.lines().find(|l| l.starts_with(key)).and_then(|l| l.split(':').nth(1)).map(|v| v.trim().to_string());
    let flags = field("flags")?;
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let lanes = if has("avx512f") {
        16.0
    } else if has("avx2") && has("fma") {
        8.0
    } else {
        return None;
    };
    let lscpu =
        std::process::Command::new("lscpu").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let ls =
        |key: &str| lscpu.lines().find(|l| l.starts_with(key)).and_then(|l| l.split(':').nth(1)).and_then(|v| v.trim().parse::<f64>().ok());
    // max clock if lscpu knows it, else the current one, else BogoMIPS / 2
    let (mhz, clock) = match ls("CPU max MHz") {
        Some(m) => (m, "max clock"),
        None => match field("cpu MHz").and_then(|v| v.parse().ok()) {
            Some(m) => (m, "clock"),
            None => (field("bogomips")?.parse::<f64>().ok()? / 2.0, "BogoMIPS/2"),
        },
    };
    let cores = match (ls("Core(s) per socket"), ls("Socket(s)")) {
        (Some(c), Some(s)) => c * s,
        _ => std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
    };
    let per_core = lanes * 2.0 * 2.0 * mhz / 1e3;
    Some(format!(
        "theoretical peak: {per_core:.0} GFLOP/s per core ({} × {lanes} f32 lanes × 2 (FMA) × 2 FMA units assumed × {:.2} GHz {clock}), {:.0} GFLOP/s on {cores} cores",
        if lanes == 16.0 { "AVX-512" } else { "AVX2" },
        mhz / 1e3,
        per_core * cores
    ))
}

/// A model of the roofline table with the benchmark's inputs.
struct Case {
    label: String,
    /// What one item is, e.g. "sample" or "graph (2708 nodes)".
    item: String,
    items_per_run: usize,
    inputs: Vec<Value>,
}

/// Where the roofline inputs come from.
pub struct RooflineArgs<'a> {
    /// Models; empty: the default list under out/ (missing ones skipped).
    pub models: &'a [PathBuf],
    /// Planetoid prefix for node models.
    pub cora: &'a Path,
    /// SMILES table for molecule models.
    pub tox21: &'a Path,
    /// Samples per batch for gene models.
    pub gene_batch: usize,
    /// Molecules per batch.
    pub mol_batch: usize,
    /// Images per batch for the spot CNN.
    pub spot_batch: usize,
    /// Seconds per measurement.
    pub seconds: f64,
    /// GEMM sizes of the peak measurement.
    pub sizes: &'a [usize],
    /// Print the per-op breakdown of the counts.
    pub ops: bool,
    /// Print tract's time per op.
    pub profile: bool,
    /// Profile per node (name and input shapes) rather than per op.
    pub per_node: bool,
}

const DEFAULT_MODELS: &[&str] = &[
    "out/gene-gcn.onnx",
    "out/gene-mlp.onnx",
    "out/cora-gcn.onnx",
    "out/cora-gat.onnx",
    "out/tox21-graphconv.onnx",
    "out/spot-small.onnx",
];

fn case(path: &Path, bytes: &[u8], a: &RooflineArgs) -> Result<Case> {
    let card = onnx_format::card_from_bytes(bytes, &path.display().to_string())?;
    let label =
        format!("{} ({})", path.file_name().map_or_else(|| path.display().to_string(), |f| f.to_string_lossy().into_owned()), card.family);
    Ok(match card.family {
        Family::GeneGcn | Family::GeneMlp => {
            let b = a.gene_batch;
            Case { label, item: "sample".into(), items_per_run: b, inputs: vec![random(&[b, card.genes.len()], 2)] }
        }
        Family::NodeGcn | Family::NodeGat => {
            let d = infer::nodes::read_planetoid(a.cora)?;
            let (s, t) = d.edge_index();
            // in target order, as `infer nodes` feeds them
            let (s, t) = infer::nodes::target_order(&s, &t, d.num_nodes);
            let item = format!("{} graph ({} nodes, {} edges)", d.name, d.num_nodes, s.len());
            let inputs = vec![Value::f32(&[d.num_nodes, d.num_features], d.features.clone()), Value::i64(&[2, s.len()], [s, t].concat())];
            Case { label, item, items_per_run: 1, inputs }
        }
        Family::MolGraphconv => {
            let t = infer::mol::Table::read(a.tox21)?;
            let c = infer::mol::smiles_column(&t, None, a.tox21)?;
            let smiles: Vec<String> = (0..t.rows.len()).map(|r| t.get(r, c).to_string()).collect();
            let (ok, _) = infer::mol::featurize_rows(&smiles);
            if ok.len() < a.mol_batch {
                bail!("{}: {} molecules featurize, the batch needs {}", a.tox21.display(), ok.len(), a.mol_batch);
            }
            let mols: Vec<_> = ok[..a.mol_batch].iter().map(|(_, g)| g).collect();
            let batch = infer::mol::MolBatch::new(&mols)?.in_degree_order()?;
            let item = format!("molecule ({:.1} atoms)", batch.num_atoms() as f64 / a.mol_batch as f64);
            Case { label, item, items_per_run: a.mol_batch, inputs: batch.values() }
        }
        Family::SpotExpression => {
            let p: &onnx_format::card::SpotImage = card.require()?;
            let s = p.image.size as usize;
            Case {
                label,
                item: format!("image (3×{s}×{s})"),
                items_per_run: a.spot_batch,
                inputs: vec![random(&[a.spot_batch, 3, s, s], 3)],
            }
        }
        f => bail!("{}: family {f} is not benchmarked here", path.display()),
    })
}

/// `v` with three significant digits (at least none after the point).
fn sig3(v: f64) -> String {
    let digits = if v == 0.0 || !v.is_finite() { 0 } else { (2 - v.abs().log10().floor() as i32).max(0) as usize };
    format!("{v:.digits$}")
}

/// One runtime's cell: items/s, GFLOP/s and % of the peak of its thread count.
fn cell(runs_per_s: f64, c: &Case, f: &Flops, peak: f64, note: &str) -> String {
    let gflops = runs_per_s * f.dense as f64 / 1e9;
    format!("{} · {} · {:.1}%{note}", sig3(runs_per_s * c.items_per_run as f64), sig3(gflops), 100.0 * gflops / peak)
}

/// `bench roofline`: the peak, then one row per model.
pub fn roofline(a: &RooflineArgs) -> Result<()> {
    let explicit = !a.models.is_empty();
    let models: Vec<PathBuf> = if explicit { a.models.to_vec() } else { DEFAULT_MODELS.iter().map(PathBuf::from).collect() };
    if let Some(m) = models.iter().find(|m| explicit && !m.is_file()) {
        bail!("{}: no such model file", m.display());
    }
    let peak = measure_peak(a.sizes, a.seconds)?;
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    let mut breakdown = Vec::new();
    let mut profiles = Vec::new();
    for m in &models {
        if !explicit && !m.exists() {
            skipped.push(m.display().to_string());
            continue;
        }
        let bytes = std::fs::read(m).with_context(|| m.display().to_string())?;
        let c = case(m, &bytes, a).with_context(|| m.display().to_string())?;
        let f = count(&bytes, &c.inputs).with_context(|| format!("{}: counting FLOPs", m.display()))?;
        let tract1 = runtime_rate_values(&bytes, m, Backend::Tract, 1, &c.inputs, a.seconds)?;
        let tract = runtime_rate_values(&bytes, m, Backend::Tract, 0, &c.inputs, a.seconds)?;
        let ort1 = runtime_rate_values(&bytes, m, Backend::Ort, 1, &c.inputs, a.seconds)?;
        let mut s = Session::from_bytes(&bytes, m, Backend::Ort, &Options::default())?;
        // a model with ScatterND reductions runs on one ORT thread whatever is asked (see the runtime)
        let forced_one = s.provider.contains("1 thread");
        let ort = rate(a.seconds, || {
            s.run(&c.inputs)?;
            Ok(())
        })?;
        let per = |n: u64| n as f64 / c.items_per_run as f64;
        let ops: Vec<String> =
            f.by_op.iter().filter(|(_, v)| v.1 > 0).map(|(k, (nodes, n, _))| format!("{k} ×{nodes}: {}", sig3(per(*n) / 1e6))).collect();
        breakdown.push(format!("{}: {}", c.label, ops.join(", ")));
        if a.profile {
            let p = profile_line(&bytes, &c.inputs, a.seconds, a.per_node, c.items_per_run, &c.item)
                .with_context(|| format!("{}: profiling tract", m.display()))?;
            profiles.push(format!("{}: {p}", c.label));
        }
        rows.push(format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            c.label,
            c.item,
            sig3(per(f.dense) / 1e6),
            sig3(per(f.other) / 1e6),
            cell(tract1, &c, &f, peak.one, ""),
            cell(tract, &c, &f, peak.all, ""),
            cell(ort1, &c, &f, peak.one, ""),
            if forced_one { cell(ort, &c, &f, peak.one, " (1 thread: ScatterND)") } else { cell(ort, &c, &f, peak.all, "") }
        ));
    }
    println!();
    println!("each runtime: items/s · GFLOP/s (MatMul/Gemm/Conv FLOPs only) · % of the measured peak at its thread count");
    println!(
        "| model | item | MFLOP/item (MatMul/Gemm/Conv) | M other ops/item | tract 1 thread | tract all threads | ort 1 thread | ort all threads |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    if !skipped.is_empty() {
        println!("skipped (not found): {}", skipped.join(", "));
    }
    if a.ops {
        println!();
        println!("per tract op (decluttered graph): nodes, M operations per item");
        for b in breakdown {
            println!("{b}");
        }
    }
    if a.profile {
        println!();
        println!("tract's time per op (optimized plan for the benchmark input, 1 thread, each node timed; ms per item, share):");
        for p in profiles {
            println!("{p}");
        }
    }
    Ok(())
}

/// [`profile`] as one line: the time per item and the 8 slowest ops (or nodes) with their shares.
pub fn profile_line(bytes: &[u8], inputs: &[Value], seconds: f64, per_node: bool, items: usize, item: &str) -> Result<String> {
    let p = profile(bytes, inputs, seconds, per_node)?;
    let total: f64 = p.iter().map(|x| x.2).sum();
    let top: Vec<String> =
        p.iter().take(8).map(|(k, n, s)| format!("{k} ×{n} {:.2} ms ({:.0} %)", 1e3 * s / items as f64, 100.0 * s / total)).collect();
    Ok(format!("{:.2} ms per {item}; {}", 1e3 * total / items as f64, top.join(", ")))
}

/// Parse "512,1024,2048".
pub fn sizes(s: &str) -> Result<Vec<usize>> {
    s.split(',').map(|v| v.trim().parse::<usize>().with_context(|| format!("bad size `{v}` in `{s}`"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use onnx_format::builder::Attr;

    fn model(build: impl FnOnce(&mut GraphBuilder)) -> Vec<u8> {
        let mut g = GraphBuilder::new("t");
        build(&mut g);
        onnx_format::encode(&g.finish("test", vec![]))
    }

    /// The profile times every node of tract's optimized plan: a GEMM model's time is mostly its
    /// matrix product.
    #[test]
    fn profile_times_the_optimized_plan() {
        let p = profile(&gemm_model(128), &[random(&[128, 128], 1)], 0.0, false).unwrap();
        assert!(!p.is_empty());
        assert!(p.iter().all(|(_, n, s)| *n >= 1 && *s >= 0.0), "{p:?}");
        assert!(p[0].0.contains("MatMul"), "slowest op: {p:?}");
        // per node: each key names the node and its input shapes
        let p = profile(&gemm_model(128), &[random(&[128, 128], 1)], 0.0, true).unwrap();
        assert!(p.iter().any(|(k, n, _)| k.contains("MatMul") && k.contains("[128, 128]") && *n == 1), "{p:?}");
    }

    #[test]
    fn matmul_bias_relu() {
        // [4, 8] × [8, 3]: 4·8·3 = 96 MACs = 192 FLOPs; Add 12 + Relu 12 other ops
        let bytes = model(|g| {
            let x = g.input("x", Elem::F32, &["n".into(), 8usize.into()]);
            let w = g.init_f32("w", &[8, 3], vec![0.5; 24]);
            let b = g.init_f32("b", &[3], vec![1.0; 3]);
            let y = g.op2("MatMul", &x, &w);
            let y = g.op2("Add", &y, &b);
            g.node_to("Relu", &[&y], &["out"], &[]);
            g.output("out", Elem::F32, &["n".into(), 3usize.into()]);
        });
        let f = count(&bytes, &[random(&[4, 8], 0)]).unwrap();
        assert_eq!(f.dense, 192, "{f:?}");
        assert_eq!(f.other, 24, "{f:?}");
        // the batch scales both linearly
        let f = count(&bytes, &[random(&[10, 8], 0)]).unwrap();
        assert_eq!((f.dense, f.other), (480, 60), "{f:?}");
    }

    #[test]
    fn conv_and_grouped_conv() {
        // [1, 2, 5, 5] * [3, 2, 3, 3], no padding: output [1, 3, 3, 3];
        // MACs = 3 out channels · 9 points · 2 in channels · 9 taps = 486
        let conv = |cin: usize, cout: usize, group: usize| {
            model(|g| {
                let x = g.input("x", Elem::F32, &[1usize.into(), cin.into(), 5usize.into(), 5usize.into()]);
                let w = g.init_f32("w", &[cout, cin / group, 3, 3], vec![0.1; cout * cin / group * 9]);
                g.node_to("Conv", &[&x, &w], &["out"], &[("group", Attr::Int(group as i64)), ("kernel_shape", Attr::Ints(vec![3, 3]))]);
                g.output("out", Elem::F32, &[1usize.into(), cout.into(), 3usize.into(), 3usize.into()]);
            })
        };
        let f = count(&conv(2, 3, 1), &[random(&[1, 2, 5, 5], 0)]).unwrap();
        assert_eq!(f.dense, 2 * 486, "{f:?}");
        // 2 groups of 2 → 2 channels: 4 out channels · 9 points · 2 in channels per group · 9 taps = 648
        let f = count(&conv(4, 4, 2), &[random(&[1, 4, 5, 5], 0)]).unwrap();
        assert_eq!(f.dense, 2 * 648, "{f:?}");
    }

    #[test]
    fn einsum_without_sum_is_elementwise() {
        let einsum = |eq: &str, b_shape: [usize; 2]| {
            model(|g| {
                let x = g.input("x", Elem::F32, &[3usize.into(), 4usize.into()]);
                let w = g.init_f32("w", &b_shape, vec![0.5; b_shape[0] * b_shape[1]]);
                g.node_to("Einsum", &[&x, &w], &["out"], &[("equation", Attr::Str(eq.into()))]);
                g.output("out", Elem::F32, &["a".into(), "b".into()]);
            })
        };
        let f = count(&einsum("ij,jk->ik", [4, 5]), &[random(&[3, 4], 0)]).unwrap();
        assert_eq!((f.dense, f.other), (2 * 3 * 4 * 5, 0), "{f:?}");
        let f = count(&einsum("ij,ij->ij", [3, 4]), &[random(&[3, 4], 0)]).unwrap();
        assert_eq!((f.dense, f.other), (0, 12), "{f:?}");
    }

    #[test]
    fn gemm_model_is_2n3() {
        let f = count(&gemm_model(16), &[random(&[16, 16], 0)]).unwrap();
        assert_eq!((f.dense, f.other), (2 * 16 * 16 * 16, 0), "{f:?}");
    }

    #[test]
    fn scatter_counts_updates() {
        // ScatterND with add: 5 updates of 4-wide rows into a [3, 4] table = 20 other ops
        let bytes = model(|g| {
            let data = g.input("data", Elem::F32, &[3usize.into(), 4usize.into()]);
            let idx = g.init_i64("idx", &[5, 1], vec![0, 1, 2, 0, 1]);
            let upd = g.input("upd", Elem::F32, &[5usize.into(), 4usize.into()]);
            g.node_to("ScatterND", &[&data, &idx, &upd], &["out"], &[("reduction", Attr::Str("add".into()))]);
            g.output("out", Elem::F32, &[3usize.into(), 4usize.into()]);
        });
        let f = count(&bytes, &[random(&[3, 4], 0), random(&[5, 4], 1)]).unwrap();
        assert_eq!((f.dense, f.other), (0, 20), "{f:?}");
    }

    #[test]
    fn bad_input_is_an_error() {
        let bytes = gemm_model(4);
        assert!(count(&bytes, &[]).is_err());
        assert!(count(&bytes, &[random(&[4, 5], 0)]).is_err());
        assert!(count(b"not onnx", &[random(&[4, 4], 0)]).is_err());
        assert!(sizes("512,x").is_err());
        assert_eq!((sig3(0.000266), sig3(124.84), sig3(36604.2), sig3(0.0)), ("0.000266".into(), "125".into(), "36604".into(), "0".into()));
        assert_eq!(sizes("512, 1024").unwrap(), vec![512, 1024]);
    }
}

//! `bench segment-sum`: the forms of the segment sum behind every message-passing export
//! (`Lower::scatter_add`, docs/decisions.md §5), on tract and on ONNX Runtime with 1 and 2 threads.

use anyhow::{Context, Result, bail};
use infer::runtime::{Backend, Options, Session, Value};
use models::export::{Lower, SegmentSum, dims};
use onnx_format::builder::{Dim, Elem};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::path::Path;
use std::time::Instant;

const FORMS: [(SegmentSum, &str); 3] =
    [(SegmentSum::ScatterNd, "scatter-nd"), (SegmentSum::ScatterElements, "scatter-elements"), (SegmentSum::Sorted, "sorted")];

/// One benchmark graph: `propagate` twice over (src, dst), or a pooling sum by `dst` into `segments` rows.
struct Case {
    label: String,
    nodes: usize,
    src: Vec<i64>,
    dst: Vec<i64>,
    channels: usize,
    /// Pool rows into this many segments (GraphGather) instead of propagating.
    pool: Option<usize>,
}

/// Two propagation steps `out[dst] += h[src]` (inputs `x`, `edge_index`), or a pooling sum (inputs `x`, `segment`, `sizes`).
fn model(case: &Case, form: SegmentSum) -> Vec<u8> {
    let cx = Lower::new("segment_sum");
    cx.set_segment_sum(form);
    let x = cx.input("x", Elem::F32, &dims("rows", case.channels));
    let y = match case.pool {
        None => {
            let (src, dst) = cx.edge_index_inputs("edge_index");
            let dst = cx.column(&dst);
            let h = cx.propagate(&x, &src, &dst, None);
            cx.propagate(&cx.op1("Tanh", &h), &src, &dst, None)
        }
        Some(_) => {
            let seg = cx.column(&cx.input("segment", Elem::I64, &[Dim::from("rows")]));
            let sizes = cx.input("sizes", Elem::I64, &[Dim::from("segments")]);
            let shape = cx.concat(&[&cx.op1("Shape", &sizes), &cx.ints("width", &[case.channels as i64])], 0);
            cx.scatter_add(&shape, &seg, &x)
        }
    };
    cx.output_from(&y, "y", &dims("out_rows", case.channels));
    onnx_format::encode(&cx.finish(vec![]))
}

fn inputs(case: &Case) -> Vec<Value> {
    let mut rng = StdRng::seed_from_u64(5);
    let x: Vec<f32> = (0..case.nodes * case.channels).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let x = Value::f32(&[case.nodes, case.channels], x);
    match case.pool {
        None => vec![x, Value::i64(&[2, case.src.len()], [case.src.clone(), case.dst.clone()].concat())],
        Some(m) => {
            let mut sizes = vec![0i64; m];
            case.dst.iter().for_each(|&d| sizes[d as usize] += 1);
            vec![x, Value::i64(&[case.nodes], case.dst.clone()), Value::i64(&[m], sizes)]
        }
    }
}

/// Runs per second over about `seconds` (after one warm-up run), and the first output.
fn measure(bytes: &[u8], backend: Backend, threads: usize, inputs: &[Value], seconds: f64) -> Result<(f64, Vec<f32>)> {
    let mut s = Session::from_bytes(bytes, Path::new("segment-sum.onnx"), backend, &Options { threads, ..Default::default() })?;
    let first = s.run(inputs)?.remove(0).into_f32()?;
    let t0 = Instant::now();
    let mut n = 0;
    while n < 3 || t0.elapsed().as_secs_f64() < seconds {
        let out = s.run(inputs)?.remove(0).into_f32()?;
        if n < 5 && out.iter().zip(&first).any(|(a, b)| a.to_bits() != b.to_bits()) {
            bail!("{} with {threads} threads: two runs differ", backend.name());
        }
        n += 1;
    }
    Ok((n as f64 / t0.elapsed().as_secs_f64(), first))
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).abs() / (1.0 + (*y as f64).abs())).fold(0.0, f64::max)
}

fn with_loops(n: usize, src: &mut Vec<i64>, dst: &mut Vec<i64>) {
    src.extend(0..n as i64);
    dst.extend(0..n as i64);
}

/// Molecule-like batch: `molecules` random trees of 10–27 atoms plus one ring bond each, bonds both ways.
/// Returns atoms, (src, dst) and each atom's molecule.
fn molecules(molecules: usize, rng: &mut StdRng) -> (usize, Vec<i64>, Vec<i64>, Vec<i64>) {
    let (mut src, mut dst, mut member) = (Vec::new(), Vec::new(), Vec::new());
    let mut bond = |a: usize, b: usize| {
        src.extend([a as i64, b as i64]);
        dst.extend([b as i64, a as i64]);
    };
    let mut first = 0;
    for m in 0..molecules {
        let size = rng.random_range(10..28);
        for i in 1..size {
            bond(first + i, first + rng.random_range(i.saturating_sub(3)..i));
        }
        bond(first, first + size - 1);
        member.extend(std::iter::repeat_n(m as i64, size));
        first += size;
    }
    (first, src, dst, member)
}

fn cases(cora: &Path) -> Result<Vec<Case>> {
    let mut out = Vec::new();
    let d = infer::nodes::read_planetoid(cora).with_context(|| format!("Cora at {}", cora.display()))?;
    let (mut s, mut t) = d.edge_index();
    with_loops(d.num_nodes, &mut s, &mut t);
    for c in [16, 64] {
        let label = format!("{} ({} nodes, {} edges incl. loops)", d.name, d.num_nodes, s.len());
        out.push(Case { label, nodes: d.num_nodes, src: s.clone(), dst: t.clone(), channels: c, pool: None });
    }
    let mut rng = StdRng::seed_from_u64(11);
    let n = 10_000;
    let el: Vec<(u32, u32)> = (0..50_000).map(|_| (rng.random_range(0..n as u32), rng.random_range(0..n as u32))).collect();
    let (mut s, mut t) = infer::nodes::directed(&infer::nodes::undirected(&el));
    with_loops(n, &mut s, &mut t);
    let label = format!("random ({n} nodes, {} edges incl. loops)", s.len());
    out.push(Case { label, nodes: n, src: s, dst: t, channels: 64, pool: None });
    let (atoms, s, t, member) = molecules(256, &mut rng);
    for c in [64, 128] {
        let label = format!("Tox21-like batch (256 molecules, {atoms} atoms, {} bonds)", s.len());
        out.push(Case { label, nodes: atoms, src: s.clone(), dst: t.clone(), channels: c, pool: None });
    }
    let label = format!("Tox21-like gather ({atoms} atoms → 256 molecules)");
    out.push(Case { label, nodes: atoms, src: Vec::new(), dst: member, channels: 128, pool: Some(256) });
    Ok(out)
}

/// Prints one table row per graph and form: runs/s on tract and ONNX Runtime with 1 and 2 threads,
/// whether repeated runs are bit-identical, and the largest difference from tract's ScatterND.
pub fn segment_sum_bench(cora: &Path, seconds: f64) -> Result<()> {
    println!("two propagation steps out[dst] += h[src] (pooling: one sum), runs/s (higher is better); 'same' = 5 repeated");
    println!("ONNX Runtime runs bit-identical and equal across 1 and 2 threads; 'max diff' = max |Δ|/(1+|ref|) vs tract ScatterND");
    println!("(ScatterND models are pinned to one ONNX Runtime thread by the runtime while racy_scatter exists)");
    println!("| graph | channels | form | tract | ort 1 thread | ort 2 threads | ort 2 threads / tract scatter-nd | same | max diff |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for case in cases(cora)? {
        let inputs = inputs(&case);
        let mut reference = None;
        let mut tract_nd = 0.0;
        for (form, name) in FORMS {
            let bytes = model(&case, form);
            let (tract, out_t) = measure(&bytes, Backend::Tract, 0, &inputs, seconds)?;
            let (ort1, out1) = measure(&bytes, Backend::Ort, 1, &inputs, seconds)?;
            let (ort2, out2) = measure(&bytes, Backend::Ort, 2, &inputs, seconds)?;
            let reference = reference.get_or_insert_with(|| out_t.clone());
            if form == SegmentSum::ScatterNd {
                tract_nd = tract;
            }
            let same = out1.iter().zip(&out2).all(|(a, b)| a.to_bits() == b.to_bits());
            let diff = [&out_t, &out1, &out2].iter().map(|o| max_rel_diff(o, reference)).fold(0.0, f64::max);
            println!(
                "| {} | {} | {name} | {tract:.1} | {ort1:.1} | {ort2:.1} | {:.2}× | {} | {diff:.1e} |",
                case.label,
                case.channels,
                ort2 / tract_nd,
                if same { "yes" } else { "NO" }
            );
        }
    }
    Ok(())
}

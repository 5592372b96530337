//! The graph exports give bit-identical outputs run to run on ONNX Runtime with 1, 2, 3 and 4
//! intra-op threads (20 runs each), equal to tract within the parity tolerance: Cora GCN and GAT,
//! a Tox21 GraphConv batch and the gene GCN with sparse message passing (docs/decisions.md §5).

mod common;

use common::*;
use infer::chem::featurize;
use infer::mol::MolBatch;
use infer::runtime::{Backend, Options, Session, Value, max_abs_diff};
use models::burn::prelude::*;
use models::export::degree_buckets;
use models::gene::{GeneGcnConfig, MessagePassing};
use models::graph::NormalizedGraph;
use models::mol::MolGcnConfig;
use models::node::{NodeGatConfig, NodeGcnConfig};
use models::preprocess::Standardizer;
use std::path::Path;

/// 20 ONNX Runtime runs (5 each at 1–4 threads) of `output` are bit-identical and match tract.
fn check(name: &str, bytes: &[u8], inputs: &[Value], output: &str) {
    let model = onnx_format::decode(bytes, name).unwrap();
    let ops: Vec<&str> = model.graph.as_ref().unwrap().node.iter().filter_map(|n| n.op_type.as_deref()).collect();
    // a ScatterND reduction would race (and the runtime would pin the model to one thread)
    assert!(!ops.contains(&"ScatterND"), "{name} still contains ScatterND");
    let origin = Path::new(name);
    let mut tract = Session::from_bytes(bytes, origin, Backend::Tract, &Options::default()).unwrap();
    let reference = tract.run_output(inputs, output).unwrap().into_f32().unwrap();
    let mut first: Option<Vec<f32>> = None;
    let mut runs = 0;
    for threads in 1..=4 {
        let mut ort = Session::from_bytes(bytes, origin, Backend::Ort, &Options { threads, ..Default::default() }).unwrap();
        assert!(!ort.provider.contains("1 thread"), "{name}: {}", ort.provider);
        for _ in 0..5 {
            let out = ort.run_output(inputs, output).unwrap().into_f32().unwrap();
            match &first {
                None => first = Some(out),
                Some(f) => {
                    let same = f.len() == out.len() && f.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{name}: run {runs} ({threads} threads) differs by {:.2e}", max_abs_diff(f, &out));
                }
            }
            runs += 1;
        }
    }
    assert_eq!(runs, 20);
    let first = first.unwrap();
    let scale = reference.iter().fold(1.0f64, |m, v| m.max(v.abs() as f64));
    let diff = max_abs_diff(&first, &reference);
    assert!(diff <= 1e-4 * scale, "{name}: ONNX Runtime vs tract max abs diff {diff:.2e} (scale {scale:.1})");
}

/// Cora's features with its edges as read and in target order (as `infer nodes` feeds them).
fn cora() -> (usize, [Vec<Value>; 2]) {
    let d = infer::nodes::read_planetoid(&data("planetoid/derived/cora")).unwrap();
    let (s, t) = d.edge_index();
    assert!(t.windows(2).any(|w| w[0] > w[1]), "Cora's edges are read out of target order");
    let (os, ot) = infer::nodes::target_order(&s, &t, d.num_nodes);
    let f = d.num_features;
    let x = Value::f32(&[d.num_nodes, f], d.features.clone());
    let edges = |s: Vec<i64>, t: Vec<i64>| Value::i64(&[2, s.len()], [s, t].concat());
    (f, [vec![x.clone(), edges(s, t)], vec![x, edges(os, ot)]])
}

#[test]
fn cora_gcn_and_gat_are_identical_at_any_thread_count() {
    let device = Device::flex();
    device.seed(7);
    let (f, [as_read, ordered]) = cora();
    let gcn = onnx_format::encode(&NodeGcnConfig::default().init(f, 7, &device).export(vec![]));
    let gat = onnx_format::encode(&NodeGatConfig::default().init(f, 7, &device).export(vec![]));
    for (name, bytes) in [("cora-gcn", &gcn), ("cora-gat", &gat)] {
        check(name, bytes, &as_read, "logits");
        check(&format!("{name}-target-order"), bytes, &ordered, "logits");
        // the edge order moves the sums by rounding only
        let mut tract = Session::from_bytes(bytes, Path::new(name), Backend::Tract, &Options::default()).unwrap();
        let a = tract.run_output(&as_read, "logits").unwrap().into_f32().unwrap();
        let b = tract.run_output(&ordered, "logits").unwrap().into_f32().unwrap();
        assert!(max_abs_diff(&a, &b) <= 1e-5, "{name}: edge order changes the logits by {:.2e}", max_abs_diff(&a, &b));
    }
}

#[test]
fn tox21_graphconv_is_identical_at_any_thread_count() {
    let device = Device::flex();
    device.seed(7);
    let table = std::fs::read_to_string(data("tox21/tox21.csv")).unwrap();
    let header: Vec<&str> = table.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "smiles").unwrap();
    let mols: Vec<_> = table.lines().skip(1).filter_map(|l| featurize(l.split(',').nth(col)?).ok()).take(256).collect();
    let refs: Vec<_> = mols.iter().collect();
    let batch = MolBatch::new(&refs).unwrap();
    assert!(batch.num_atoms() > 3000, "{} atoms", batch.num_atoms());
    let model = MolGcnConfig::default().init(infer::chem::ATOM_FEATURES, 12, &device);
    let bytes = onnx_format::encode(&model.export(vec![]));
    check("tox21-graphconv", &bytes, &batch.values(), "logits");
    // no bonds at all: empty segments everywhere
    let ions: Vec<_> = ["[Na+]", "[Cl-]", "C"].iter().map(|s| featurize(s).unwrap()).collect();
    let batch = MolBatch::new(&ions.iter().collect::<Vec<_>>()).unwrap();
    assert!(batch.src.is_empty());
    check("tox21-graphconv-no-bonds", &bytes, &batch.values(), "logits");
}

#[test]
fn gene_gcn_sparse_is_identical_at_any_thread_count() {
    let device = Device::flex();
    device.seed(7);
    let n = 1500;
    // a fixed LCG: the graph is part of the export
    let mut state = 17u64;
    let mut next = |m: usize| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) % m as u64) as u32
    };
    // random with mean degree 8, a hub joined to every gene on a sparse random graph, a ring
    let random: Vec<(u32, u32)> = (0..n * 4).map(|_| (next(n), next(n))).collect();
    let hub: Vec<(u32, u32)> = (1..n as u32).map(|i| (0, i)).chain((0..n).map(|_| (next(n), next(n)))).collect();
    let ring: Vec<(u32, u32)> = (0..n as u32).map(|i| (i, (i + 1) % n as u32)).collect();
    let pre = Standardizer { log2: true, floor: 1.0, mean: vec![5.0; n], std: vec![2.0; n] };
    let batch = 16;
    let x: Vec<f32> = (0..batch * n).map(|i| 1.0 + (i * 7919 % 2000) as f32).collect();
    // (graph, fewest buckets, most buckets)
    let cases = [("gene-gcn-random", random, 2, 24), ("gene-gcn-hub", hub, 2, 24), ("gene-gcn-ring", ring, 1, 1)];
    for (name, edges, fewest, most) in cases {
        let graph = NormalizedGraph::gcn(n, &edges);
        // every gene in one bucket, as wide as its in-degree at least; slots within 1.5 × the edges
        let buckets = degree_buckets(&graph.dst, n);
        let mut degree = vec![0usize; n];
        graph.dst.iter().for_each(|&d| degree[d as usize] += 1);
        let mut seen = vec![false; n];
        for (genes, k) in &buckets {
            for &g in genes {
                assert!(!seen[g] && degree[g] <= *k, "{name}: gene {g} (in-degree {}) in a bucket of width {k}", degree[g]);
                seen[g] = true;
            }
        }
        assert!(seen.iter().all(|&s| s), "{name}: a gene in no bucket");
        let slots: usize = buckets.iter().map(|(g, k)| g.len() * k).sum();
        assert!(slots * 2 <= graph.dst.len() * 3, "{name}: {slots} slots for {} edges", graph.dst.len());
        assert!((fewest..=most).contains(&buckets.len()), "{name}: {} buckets", buckets.len());
        if name == "gene-gcn-hub" {
            assert_eq!(buckets.last().unwrap().0, vec![0], "the hub has a bucket of its own");
        }
        let model = GeneGcnConfig::default().init(n, 2, &device);
        let bytes = onnx_format::encode(&model.export(&pre, &graph, MessagePassing::ScatterNd, vec![]));
        // the bucket form: gathers summed per bucket, no sort and no prefix sums at run time
        let decoded = onnx_format::decode(&bytes, name).unwrap();
        let ops: Vec<&str> = decoded.graph.as_ref().unwrap().node.iter().filter_map(|n| n.op_type.as_deref()).collect();
        assert!(ops.contains(&"ReduceSum") && !ops.contains(&"TopK") && !ops.contains(&"CumSum"), "{name}: {ops:?}");
        check(name, &bytes, &[Value::f32(&[batch, n], x.clone())], "logits");
        // and the export computes burn's forward
        let input = Tensor::<2>::from_data(TensorData::new(pre.apply(&x), [batch, n]), &device);
        let expected = models::to_vec(model.forward(input, &graph.tensors(&device)));
        let mut tract = Session::from_bytes(&bytes, Path::new(name), Backend::Tract, &Options::default()).unwrap();
        let got = tract.run_output(&[Value::f32(&[batch, n], x.clone())], "logits").unwrap().into_f32().unwrap();
        let scale = expected.iter().fold(1.0f64, |m, v| m.max(v.abs() as f64));
        let diff = max_abs_diff(&got, &expected);
        assert!(diff <= 1e-5 * scale, "{name}: tract vs burn {diff:.2e} (scale {scale:.1})");
    }
}

/// Odd batches for the GraphConv export: hubs of degree 10 and 13 (the degree ≥ MAX_DEGREE group,
/// whose degrees vary), a 40-atom chain (3 chunks of the per-molecule reductions), a molecule with
/// no atoms, a lone atom, atoms of different molecules interleaved. The export agrees with burn on
/// both runtimes and is identical run to run at any thread count.
#[test]
fn tox21_graphconv_matches_burn_on_hubs_long_chains_and_gaps() {
    let device = Device::flex();
    device.seed(11);
    let mut bonds: Vec<(usize, usize)> = Vec::new();
    let mut mol: Vec<i64> = Vec::new();
    let add_atoms = |m: i64, k: usize, mol: &mut Vec<i64>| {
        let first = mol.len();
        mol.extend(std::iter::repeat_n(m, k));
        first
    };
    // molecule 0: hubs of degree 13 and 10, joined by one bond
    let h13 = add_atoms(0, 14, &mut mol);
    bonds.extend((1..14).map(|i| (h13, h13 + i)));
    let h10 = add_atoms(0, 10, &mut mol);
    bonds.extend((1..10).map(|i| (h10, h10 + i)));
    bonds.push((h13, h10));
    // molecule 1: a 40-atom chain; molecule 2: no atoms; molecule 3: one atom
    let c = add_atoms(1, 40, &mut mol);
    bonds.extend((0..39).map(|i| (c + i, c + i + 1)));
    add_atoms(3, 1, &mut mol);
    let n = mol.len();
    // interleave the molecules: a fixed permutation of the atoms
    let perm: Vec<usize> = (0..n).map(|i| (i * 37 + 5) % n).collect();
    assert!(!n.is_multiple_of(37), "37 and {n} share a factor");
    let mut at = vec![0usize; n];
    perm.iter().enumerate().for_each(|(new, &old)| at[old] = new);
    let membership: Vec<i64> = perm.iter().map(|&old| mol[old]).collect();
    let (mut src, mut dst) = (Vec::new(), Vec::new());
    for &(a, b) in &bonds {
        src.extend([at[a] as i64, at[b] as i64]);
        dst.extend([at[b] as i64, at[a] as i64]);
    }
    let f = infer::chem::ATOM_FEATURES;
    let x: Vec<f32> = (0..n * f).map(|i| ((i * 7919 % 113) as f32) / 113.0 - 0.4).collect();
    let model = MolGcnConfig::default().init(f, 12, &device);
    let g = models::mol::MolTensors::new(&x, f, &src, &dst, &membership, 4, &device);
    let expected = models::to_vec(model.forward(&g));
    let bytes = onnx_format::encode(&model.export(vec![]));
    let e = src.len();
    let inputs =
        vec![Value::f32(&[n, f], x), Value::i64(&[2, e], [src, dst].concat()), Value::i64(&[n], membership), Value::i64(&[4], vec![0; 4])];
    let parity = infer::runtime::check_parity(&bytes, Path::new("odd.onnx"), &inputs, 4, "logits", &expected, 1e-4).unwrap();
    assert!(parity.tract_max_abs_diff <= 1e-4 && parity.ort_max_abs_diff <= 1e-4, "{parity:?}");
    check("tox21-graphconv-odd", &bytes, &inputs, "logits");
}

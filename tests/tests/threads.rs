//! tract with shape-specialised plans and 1, 2 or all threads: for several input shapes in a row
//! (plan cache misses and hits), outputs match the symbolic single-thread plan within 1e-5 and are
//! bit-identical over 10 runs and across thread counts. A model with a leading `batch` axis runs
//! its batches in parts: images one by one (one plan for every batch, an image's output the same
//! in any batch), expression profiles in one part per thread (one plan per part size); every
//! `infer` subcommand that runs a model takes `--threads`.

mod common;

use common::*;
use infer::chem::featurize;
use infer::mol::MolBatch;
use infer::runtime::{Backend, Options, Session, Value, max_abs_diff, thread_count};
use models::burn::prelude::*;
use models::gene::{GeneGcnConfig, GeneMlpConfig, MessagePassing};
use models::graph::NormalizedGraph;
use models::mol::MolGcnConfig;
use models::node::NodeGcnConfig;
use models::preprocess::Standardizer;
use std::path::Path;

/// `sets` are run in order (a shape seen twice gets its own plan); `distinct` is the number
/// of different input shapes among them, each seen at least twice. `split`: how the session
/// splits a batch, which decides the plans it holds. The reference is the symbolic plan on one
/// thread; where
/// tract cannot run that plan (a TopK whose k is an expression of the input dims: the sorted
/// message passing), a fresh one-thread session per set, so the cache is still checked.
fn check(name: &str, bytes: &[u8], sets: &[Vec<Value>], output: &str, distinct: usize, split: Split) {
    let origin = Path::new(name);
    let one =
        |symbolic| Session::from_bytes(bytes, origin, Backend::Tract, &Options { threads: 1, symbolic, ..Default::default() }).unwrap();
    let mut s = one(true);
    let reference: Vec<Vec<f32>> = match sets.iter().map(|i| s.run_output(i, output).and_then(|v| v.into_f32())).collect() {
        Ok(r) => {
            assert_eq!(s.shape_plans(), 0, "{name}: the symbolic session specialised");
            r
        }
        Err(e) => {
            assert!(e.to_string().contains("Undetermined symbol"), "{name}: {e}");
            eprintln!("{name}: tract cannot run the symbolic plan ({e}); reference: one fresh session per input set");
            sets.iter().map(|i| one(false).run_output(i, output).unwrap().into_f32().unwrap()).collect()
        }
    };
    let mut per_threads: Vec<Vec<f32>> = Vec::new();
    for threads in [1, 2, 0] {
        let mut s = Session::from_bytes(bytes, origin, Backend::Tract, &Options { threads, ..Default::default() }).unwrap();
        assert_eq!(s.threads, thread_count(threads), "{name}");
        for (i, (inputs, want)) in sets.iter().zip(&reference).enumerate() {
            let got = s.run_output(inputs, output).unwrap().into_f32().unwrap();
            let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs() as f64));
            let diff = max_abs_diff(&got, want);
            assert!(diff <= 1e-5 * scale, "{name}, {threads} threads, input set {i}: {diff:.2e} from the symbolic plan (scale {scale:.1})");
        }
        let t = thread_count(threads);
        let plans = if split == Split::Items {
            1
        } else if split == Split::Parts && t > 1 {
            // a batch of b in k = min(t, b / 2) parts of b / k or b / k + 1 items (one-thread
            // plans), or whole (its own plan) when k < 2
            let mut keys: Vec<(bool, usize)> = sets
                .iter()
                .flat_map(|set| {
                    let b = set[0].shape()[0];
                    let k = t.min(b / 2);
                    if k < 2 { vec![(false, b)] } else { (0..k).map(|i| (true, b / k + usize::from(i < b % k))).collect() }
                })
                .collect();
            keys.sort();
            keys.dedup();
            keys.len()
        } else {
            distinct
        };
        assert_eq!(s.shape_plans(), plans, "{name}, {threads} threads: plans held");
        let first = s.run_output(&sets[0], output).unwrap().into_f32().unwrap();
        for run in 1..10 {
            let out = s.run_output(&sets[0], output).unwrap().into_f32().unwrap();
            let same = out.len() == first.len() && out.iter().zip(&first).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{name}, {threads} threads: run {run} differs by {:.2e}", max_abs_diff(&first, &out));
        }
        per_threads.push(first);
    }
    // the threaded kernels split work on whole tiles and rows, never inside a sum
    for (i, t) in ["2", "all"].iter().enumerate() {
        let same = per_threads[i + 1].iter().zip(&per_threads[0]).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{name}: {t} threads differ from 1 thread by {:.2e}", max_abs_diff(&per_threads[0], &per_threads[i + 1]));
    }
}

/// How tract splits a model's batches.
#[derive(PartialEq, Clone, Copy)]
enum Split {
    /// Not at all (no leading `batch` axis).
    No,
    /// In one part per thread.
    Parts,
    /// Item by item.
    Items,
}

fn images(batch: usize, side: usize, seed: usize) -> Vec<Value> {
    let x: Vec<f32> = (0..batch * 3 * side * side).map(|i| ((i * 7919 + seed * 104729) % 2001) as f32 / 1000.0 - 1.0).collect();
    vec![Value::f32(&[batch, 3, side, side], x)]
}

#[test]
fn spot_model_matches_the_symbolic_plan_at_any_thread_count() {
    let (m, card) = spot_model(&["ERBB2", "GAPDH", "ACTB"], 3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spot.onnx");
    write_spot_model(&path, &m, &card);
    let bytes = std::fs::read(&path).unwrap();
    let side = models::spot::SpotModelConfig::small().image_size;
    // batches of 3, 16 and 5, twice: one image at a time, one plan
    let sets = [images(3, side, 0), images(16, side, 1), images(5, side, 4), images(3, side, 2), images(16, side, 3), images(5, side, 5)];
    check("spot", &bytes, &sets, "expression", 3, Split::Items);
    // an image's output is the same in any batch
    let mut s = Session::from_bytes(&bytes, &path, Backend::Tract, &Options::default()).unwrap();
    let five = s.run_output(&images(5, side, 4), "expression").unwrap().into_f32().unwrap();
    let Value::F32 { data, .. } = &images(5, side, 4)[0] else { unreachable!() };
    let two = Value::f32(&[2, 3, side, side], data[..2 * 3 * side * side].to_vec());
    let alone = s.run_output(&[two], "expression").unwrap().into_f32().unwrap();
    assert!(alone.iter().zip(&five).all(|(a, b)| a.to_bits() == b.to_bits()), "the first 2 images of a batch of 5 differ run alone");

    // a wrong rank is an error from the run, not a panic
    let mut s = Session::from_bytes(&bytes, &path, Backend::Tract, &Options::default()).unwrap();
    let err = s.run(&[Value::f32(&[3, side, side], vec![0.0; 3 * side * side])]).unwrap_err().to_string();
    assert!(err.contains("tract"), "{err}");
}

#[test]
fn gene_models_match_the_symbolic_plan_at_any_thread_count() {
    let device = Device::flex();
    device.seed(7);
    let n = 300;
    let ring: Vec<(u32, u32)> = (0..n as u32).flat_map(|i| [(i, (i + 1) % n as u32), (i, (i + 7) % n as u32)]).collect();
    let graph = NormalizedGraph::gcn(n, &ring);
    let pre = Standardizer { log2: true, floor: 1.0, mean: vec![5.0; n], std: vec![2.0; n] };
    let x = |batch: usize, seed: usize| {
        vec![Value::f32(&[batch, n], (0..batch * n).map(|i| 1.0 + ((i + seed * 31) * 7919 % 2000) as f32).collect())]
    };
    let sets = [x(16, 0), x(5, 1), x(16, 2), x(5, 3)];
    let gcn = GeneGcnConfig::default().init(n, 2, &device);
    check("gene-gcn", &onnx_format::encode(&gcn.export(&pre, &graph, MessagePassing::ScatterNd, vec![])), &sets, "logits", 2, Split::Parts);
    let mlp = GeneMlpConfig::default().init(n, 2, &device);
    check("gene-mlp", &onnx_format::encode(&mlp.export(&pre, vec![])), &sets, "logits", 2, Split::Parts);
}

#[test]
fn cora_gcn_matches_the_symbolic_plan_at_any_thread_count() {
    let d = infer::nodes::read_planetoid(&data("planetoid/derived/cora")).unwrap();
    let (s, t) = d.edge_index();
    let f = d.num_features;
    let whole = vec![Value::f32(&[d.num_nodes, f], d.features.clone()), Value::i64(&[2, s.len()], [s.clone(), t.clone()].concat())];
    // the subgraph on the first 1000 nodes
    let n = 1000;
    let keep: Vec<usize> = (0..s.len()).filter(|&e| (s[e] as usize) < n && (t[e] as usize) < n).collect();
    let (ss, ts): (Vec<i64>, Vec<i64>) = keep.iter().map(|&e| (s[e], t[e])).unzip();
    let sub = vec![Value::f32(&[n, f], d.features[..n * f].to_vec()), Value::i64(&[2, ss.len()], [ss, ts].concat())];
    let device = Device::flex();
    device.seed(7);
    let gcn = NodeGcnConfig::default().init(f, d.num_classes, &device);
    check("cora-gcn", &onnx_format::encode(&gcn.export(vec![])), &[whole.clone(), sub.clone(), whole, sub], "logits", 2, Split::No);
}

/// The first `n` Tox21 molecules that featurize, and the export of an untrained GraphConv.
fn tox21(n: usize) -> (Vec<infer::chem::MolGraph>, Vec<u8>) {
    let table = std::fs::read_to_string(data("tox21/tox21.csv")).unwrap();
    let header: Vec<&str> = table.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "smiles").unwrap();
    let mols = table.lines().skip(1).filter_map(|l| featurize(l.split(',').nth(col)?).ok()).take(n).collect();
    let device = Device::flex();
    device.seed(7);
    let model = MolGcnConfig::default().init(infer::chem::ATOM_FEATURES, 12, &device);
    (mols, onnx_format::encode(&model.export(vec![])))
}

/// The inputs of one batch: `mols[r]`.
fn mol_batch(mols: &[infer::chem::MolGraph], r: std::ops::Range<usize>) -> Vec<Value> {
    MolBatch::new(&mols[r].iter().collect::<Vec<_>>()).unwrap().values()
}

#[test]
fn tox21_graphconv_matches_the_symbolic_plan_at_any_thread_count() {
    let (mols, bytes) = tox21(80);
    let batch = |r| mol_batch(&mols, r);
    check("tox21-graphconv", &bytes, &[batch(0..64), batch(64..80), batch(0..64), batch(64..80)], "logits", 2, Split::No);
}

/// `Session::run_each` (the batches of `infer mol`, one per thread at once) gives each set the
/// output a one-thread session gives it, in the order of the sets: bit for bit on ONNX Runtime,
/// within 1e-5 on tract (a shape's first run takes the symbolic plan, later ones its own plan).
#[test]
fn run_each_runs_batches_side_by_side_in_order() {
    let (mols, bytes) = tox21(90);
    // uneven batches, so a mix-up of their order shows in the shapes too
    let sets: Vec<Vec<Value>> = [0..7, 7..40, 40..41, 41..90, 0..33].into_iter().map(|r| mol_batch(&mols, r)).collect();
    for backend in [Backend::Tract, Backend::Ort] {
        let session =
            |threads| Session::from_bytes(&bytes, Path::new("tox21"), backend, &Options { threads, ..Default::default() }).unwrap();
        let mut one = session(1);
        let want: Vec<Vec<f32>> = sets.iter().map(|s| one.run_output(s, "logits").unwrap().into_f32().unwrap()).collect();
        for threads in [1, 2, 3] {
            let mut s = session(threads);
            for _ in 0..2 {
                let got: Vec<Vec<f32>> = s.run_each_output(&sets, "logits").unwrap().into_iter().map(|v| v.into_f32().unwrap()).collect();
                assert_eq!(got.len(), sets.len());
                for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(g.len(), w.len(), "{backend:?}, {threads} threads: set {k}");
                    let d = max_abs_diff(g, w);
                    let tolerance = if backend == Backend::Ort { 0.0 } else { 1e-5 };
                    assert!(d <= tolerance, "{backend:?}, {threads} threads: set {k} differs from its one-thread run by {d:.2e}");
                }
            }
        }
        assert!(one.run_each(&[]).unwrap().is_empty());
    }
}

#[test]
fn every_model_subcommand_takes_threads() {
    for cmd in ["predict", "nodes", "genes", "mol", "cells", "slide"] {
        let help = ok(std::process::Command::new(bin("infer")).args([cmd, "--help"]));
        assert!(help.contains("--threads <N>"), "infer {cmd} --help:\n{help}");
    }
    // a bad value is refused with a message, before anything runs
    let err = fails(std::process::Command::new(bin("infer")).args(["nodes", "--model", "m.onnx", "--threads", "two"]));
    assert!(err.contains("--threads"), "{err}");
    let (m, card) = spot_model(&["ERBB2"], 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spot.onnx");
    write_spot_model(&path, &m, &card);
    for backend in [Backend::Tract, Backend::Ort] {
        let err = Session::from_file(&path, backend, &Options { threads: 1_000_000, ..Default::default() }).err().unwrap().to_string();
        assert!(err.contains("1000000 threads"), "{err}");
    }
}

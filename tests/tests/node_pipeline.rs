//! Node-level GCN and GAT exported with symbolic `num_nodes`/`num_edges`: one file runs on any
//! graph (other sizes, no edges, isolated nodes, self-loops or not, duplicate edges) on tract and
//! ONNX Runtime with parity to burn; `infer nodes` end to end and its bad inputs.

mod common;

use common::*;
use infer::runtime::{Backend, Options, Session, Value};
use models::burn::prelude::*;
use models::node::{LoopedEdges, NodeGatConfig, NodeGcnConfig};
use onnx_format::card::Family;
use std::path::Path;
use std::process::Command;

const F: usize = 12;
const K: usize = 3;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// A graph: features (sparse-ish non-negative counts), both directions of random edges.
fn graph(n: usize, undirected_edges: usize, seed: u64) -> (Vec<f32>, Vec<i64>, Vec<i64>) {
    let mut r = Lcg(seed);
    let x: Vec<f32> = (0..n * F).map(|_| if r.next().is_multiple_of(3) { (r.next() % 4) as f32 } else { 0.0 }).collect();
    let (mut s, mut d) = (vec![], vec![]);
    for _ in 0..undirected_edges {
        let (a, b) = ((r.next() % n as u64) as i64, (r.next() % n as u64) as i64);
        if a != b {
            s.extend([a, b]);
            d.extend([b, a]);
        }
    }
    (x, s, d)
}

/// (family, exported bytes, burn forward)
fn models() -> Vec<(&'static str, Vec<u8>, Box<dyn Fn(&[f32], usize, &[i64], &[i64]) -> Vec<f32>>)> {
    let device = Device::flex();
    device.seed(3);
    let gcn = NodeGcnConfig::default().init(F, K, &device).valid();
    let gat = NodeGatConfig { heads: 4, hidden: 5, ..Default::default() }.init(F, K, &device).valid();
    let gcn_bytes = with_node_card(gcn.export(vec![]), Family::NodeGcn, K);
    let gat_bytes = with_node_card(gat.export(vec![]), Family::NodeGat, K);
    let fwd = |logits: Tensor<2>| models::to_vec(models::burn::tensor::activation::softmax(logits, 1));
    let dev = device.clone();
    let dev2 = device.clone();
    vec![
        (
            "node-gcn",
            gcn_bytes,
            Box::new(move |x: &[f32], n, s: &[i64], d: &[i64]| {
                let e = LoopedEdges::from_lists(n, s, d, &dev);
                fwd(gcn.forward(Tensor::from_data(TensorData::new(x.to_vec(), [n, F]), &dev), &e))
            }),
        ),
        (
            "node-gat",
            gat_bytes,
            Box::new(move |x: &[f32], n, s: &[i64], d: &[i64]| {
                let e = LoopedEdges::from_lists(n, s, d, &dev2);
                fwd(gat.forward(Tensor::from_data(TensorData::new(x.to_vec(), [n, F]), &dev2), &e))
            }),
        ),
    ]
}

fn run(bytes: &[u8], backend: Backend, x: &[f32], n: usize, s: &[i64], d: &[i64]) -> Vec<f32> {
    let mut sess = Session::from_bytes(bytes, Path::new("node.onnx"), backend, &Options::default()).unwrap();
    let inputs = vec![Value::f32(&[n, F], x.to_vec()), Value::i64(&[2, s.len()], [s, d].concat())];
    sess.run_output(&inputs, "probabilities").unwrap().into_f32().unwrap()
}

#[test]
fn one_export_runs_any_graph_with_parity() {
    let (x, s, d) = graph(300, 900, 1);
    let (x2, s2, d2) = graph(37, 40, 2);
    // isolated nodes: edges only among the first 10 of 60 nodes
    let (x3, s3, d3) = {
        let (x, s, d) = graph(60, 30, 3);
        let keep: Vec<usize> = (0..s.len()).filter(|&i| s[i] < 10 && d[i] < 10).collect();
        (x, keep.iter().map(|&i| s[i]).collect::<Vec<_>>(), keep.iter().map(|&i| d[i]).collect::<Vec<_>>())
    };
    let mut cases: Vec<(&str, Vec<f32>, usize, Vec<i64>, Vec<i64>)> = vec![
        ("300 nodes", x.clone(), 300, s.clone(), d.clone()),
        ("37 nodes", x2, 37, s2, d2),
        ("no edges", x[..20 * F].to_vec(), 20, vec![], vec![]),
        ("isolated nodes", x3, 60, s3, d3),
        ("one node", x[..F].to_vec(), 1, vec![], vec![]),
    ];
    let (mut sl, mut dl) = (s.clone(), d.clone());
    sl.extend([0, 5, 7]);
    dl.extend([0, 5, 7]);
    cases.push(("with self-loops", x.clone(), 300, sl, dl));
    let (mut sd, mut dd) = (s.clone(), d.clone());
    sd.extend([s[0], s[1]]);
    dd.extend([d[0], d[1]]);
    cases.push(("duplicate edges", x.clone(), 300, sd, dd));
    for (family, bytes, burn) in models() {
        let mut plain = None;
        for (label, x, n, s, d) in &cases {
            let want = burn(x, *n, s, d);
            for backend in [Backend::Tract, Backend::Ort] {
                let got = run(&bytes, backend, x, *n, s, d);
                let diff = infer::runtime::max_abs_diff(&got, &want);
                assert!(diff <= 1e-4, "{family} on {label}, {backend:?}: max abs diff {diff:.2e}");
            }
            if *label == "300 nodes" {
                plain = Some(want);
            } else if *label == "with self-loops" {
                // self-loops in the input are ignored: same result as without
                let diff = infer::runtime::max_abs_diff(plain.as_ref().unwrap(), &want);
                assert!(diff < 1e-6, "{family}: self-loops changed the output by {diff:.2e}");
            } else if *label == "duplicate edges" {
                assert!(
                    infer::runtime::max_abs_diff(plain.as_ref().unwrap(), &want) > 0.0,
                    "{family}: a duplicate edge should count as a parallel edge"
                );
            }
        }
    }
}

#[test]
fn node_exports_pass_onnx_checker_and_python_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let (x, s, d) = graph(200, 500, 9);
    for (family, bytes, burn) in models() {
        let path = dir.path().join(format!("{family}.onnx"));
        std::fs::write(&path, &bytes).unwrap();
        let ei: Vec<i64> = [s.clone(), d.clone()].concat();
        let case = serde_json::json!({
            "inputs": {
                "x": {"shape": [200, F], "data": x},
                "edge_index": {"shape": [2, s.len()], "data": ei, "dtype": "int64"},
            },
            "output": "probabilities", "expected": burn(&x, 200, &s, &d), "tolerance": 1e-4,
        });
        let case_path = dir.path().join(format!("{family}.json"));
        std::fs::write(&case_path, serde_json::to_vec(&case).unwrap()).unwrap();
        let report = check_onnx_py(&path, Some(&case_path));
        assert!(report.contains("\"checker\": \"ok\""), "{report}");
    }
}

fn write_graph_files(dir: &Path, n: usize, width: usize, edges: &[(i64, i64)]) -> (std::path::PathBuf, std::path::PathBuf) {
    let (f, e) = (dir.join("features.tsv"), dir.join("edges.tsv"));
    let mut fs = String::from("row\tcol\tvalue\n");
    for i in 0..n {
        fs += &format!("{i}\t{}\t1\n", i % width);
        fs += &format!("{i}\t{}\t2\n", (i * 7) % width);
    }
    std::fs::write(&f, fs).unwrap();
    let es: String = std::iter::once("src\tdst\n".to_string()).chain(edges.iter().map(|(a, b)| format!("{a}\t{b}\n"))).collect();
    std::fs::write(&e, es).unwrap();
    (f, e)
}

#[test]
fn infer_nodes_end_to_end_and_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes, _) = models().into_iter().next().unwrap();
    let model = dir.path().join("gcn.onnx");
    std::fs::write(&model, &bytes).unwrap();
    let out = dir.path().join("nodes.csv");
    let nodes = |f: &Path, e: &Path, extra: &[&str]| {
        let mut c = Command::new(bin("infer"));
        c.arg("nodes").arg("--model").arg(&model).arg("--features").arg(f).arg("--edges").arg(e).args(extra).arg("--out").arg(&out);
        c
    };
    let (f, e) = write_graph_files(dir.path(), 40, F, &[(0, 1), (1, 2), (5, 9), (3, 3)]);
    for backend in ["tract", "ort"] {
        ok(&mut nodes(&f, &e, &["--backend", backend]));
        let csv = std::fs::read_to_string(&out).unwrap();
        assert_eq!(csv.lines().count(), 41, "{csv}");
        assert!(csv.starts_with("node,predicted,p_c0,p_c1,p_c2"));
        std::fs::remove_file(&out).unwrap();
    }
    let bad = |f: &Path, e: &Path, extra: &[&str], needle: &str| {
        let err = fails(&mut nodes(f, e, extra));
        assert!(err.contains(needle), "expected `{needle}` in: {err}");
        assert!(!out.exists());
    };
    let (f2, e2) = write_graph_files(dir.path(), 40, F, &[(0, 40)]);
    bad(&f2, &e2, &[], "out of range");
    let (f3, e3) = write_graph_files(dir.path(), 40, F, &[(-1, 2)]);
    bad(&f3, &e3, &[], "-1");
    let (f4, e4) = write_graph_files(dir.path(), 40, F + 5, &[(0, 1)]);
    bad(&f4, &e4, &[], "feature width mismatch");
    std::fs::write(&f4, "row\tcol\tvalue\n").unwrap();
    bad(&f4, &e4, &[], "no nodes");
    // an expression model is not a node classifier
    let gene = super_gene_model(dir.path());
    let err = fails(
        Command::new(bin("infer"))
            .arg("nodes")
            .arg("--model")
            .arg(&gene)
            .arg("--features")
            .arg(&f)
            .arg("--edges")
            .arg(&e)
            .arg("--out")
            .arg(&out),
    );
    assert!(err.contains("not a node classifier"), "{err}");
    assert!(!out.exists());
}

/// A model file whose card says it is an expression classifier.
fn super_gene_model(dir: &Path) -> std::path::PathBuf {
    let (_, bytes, _) = models().into_iter().next().unwrap();
    let src = dir.join("node.onnx");
    std::fs::write(&src, bytes).unwrap();
    let p = dir.join("gene.onnx");
    rewrite_card(&src, &p, |c| relabel(c, Family::GeneMlp));
    p
}

/// The classifier head's softmax: element-wise over class slices for up to
/// `MAX_SLICED_CLASSES` classes, the Softmax op above; both match a reference on tract and ONNX
/// Runtime, with large, tied and negative logits.
#[test]
fn classifier_softmax_matches_reference_for_few_and_many_classes() {
    use models::export::{Head, Lower, MAX_SLICED_CLASSES};
    use onnx_format::builder::{Dim, Elem};
    for k in [1, 7, MAX_SLICED_CLASSES, MAX_SLICED_CLASSES + 1] {
        let cx = Lower::new("head");
        let x = cx.input("x", Elem::F32, &[Dim::from("rows"), Dim::from(k)]);
        let bytes = onnx_format::encode(&cx.finish_classifier(&x, "rows", k, Head::Softmax, vec![]));
        let rows = 5;
        let logits: Vec<f32> = (0..rows * k).map(|i| [0.0, 3.5, -80.0, 1e3, 3.5][i % 5] + (i / 5) as f32 * 0.25).collect();
        let want: Vec<f32> = logits
            .chunks(k)
            .flat_map(|r| {
                let m = r.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f64> = r.iter().map(|v| ((v - m) as f64).exp()).collect();
                let s: f64 = e.iter().sum();
                e.into_iter().map(move |v| (v / s) as f32)
            })
            .collect();
        for backend in [Backend::Tract, Backend::Ort] {
            let mut sess = Session::from_bytes(&bytes, Path::new("head.onnx"), backend, &Options::default()).unwrap();
            let got = sess.run_output(&[Value::f32(&[rows, k], logits.clone())], "probabilities").unwrap().into_f32().unwrap();
            let diff = infer::runtime::max_abs_diff(&got, &want);
            assert!(diff <= 1e-6, "{k} classes, {backend:?}: max abs diff {diff:e}");
        }
    }
}

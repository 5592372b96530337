//! Our GCN, GAT and GraphConv are the textbook layers: the weights of quickly trained exports are
//! copied into PyTorch Geometric's `GCNConv` / `GATConv`, plain PyTorch versions of both, and
//! DeepChem's GraphConv model in PyTorch (bench/torch_models.py, through `bench torch --check`), and
//! each agrees with ONNX Runtime within 1e-4 on Cora, a random graph and all of Tox21; a GAT whose
//! logits are 5 % off is refused. Needs the torch venv (scripts/setup.sh).

mod common;

use common::*;
use onnx_format::pb::{NodeProto, TensorProto, tensor_proto::DataType};
use std::path::{Path, PathBuf};
use std::process::Command;

const TOLERANCE: f64 = 1e-4;

fn train(dir: &Path, args: &[&str], name: &str) -> PathBuf {
    let out = dir.join(name);
    ok(Command::new(bin("train")).args(args).arg("--out").arg(&out));
    out
}

fn check(gcn: &Path, gat: &Path, mol: &Path) -> Command {
    let mut c = Command::new(bin("bench"));
    c.args(["torch", "--check", "--large-nodes", "2000", "--tolerance", &TOLERANCE.to_string()])
        .arg("--gcn")
        .arg(gcn)
        .arg("--gat")
        .arg(gat)
        .arg("--mol")
        .arg(mol)
        .arg("--data")
        .arg(data("planetoid/derived/cora"))
        .arg("--tox21")
        .arg(data("tox21/tox21.csv"));
    c
}

#[test]
fn pytorch_and_pyg_modules_agree_with_our_exports() {
    let dir = tempfile::tempdir().unwrap();
    let cora = data("planetoid/derived/cora");
    let cora = cora.to_str().unwrap();
    let gcn = train(dir.path(), &["node-gcn", "--seeds", "1", "--epochs", "20", "--data", cora], "gcn.onnx");
    let gat = train(dir.path(), &["node-gat", "--seeds", "1", "--epochs", "10", "--data", cora], "gat.onnx");
    let tox21 = data("tox21/tox21.csv");
    let mol = train(dir.path(), &["mol", "--limit", "600", "--epochs", "2", "--seeds", "1", "--data", tox21.to_str().unwrap()], "mol.onnx");

    let out = ok(&mut check(&gcn, &gat, &mol));
    let line = out.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON report in:\n{out}"));
    let report: serde_json::Value = serde_json::from_str(line).unwrap();
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5, "Cora + random graph for GCN and GAT, then Tox21: {report}");
    for c in cases {
        let kind = c["kind"].as_str().unwrap();
        let impls: &[&str] = if kind == "mol" { &["eager"] } else { &["eager", "pyg"] };
        for name in impls {
            let d = c["max_abs_diff"][name].as_f64().unwrap_or_else(|| panic!("{kind} {name}: no difference in {c}"));
            assert!(d <= TOLERANCE, "{kind} on {}: {name} differs from ONNX Runtime by {d:e}", c["graph"]);
        }
        // the logits are not all near zero, so agreement means something
        assert!(c["ref_max_abs"].as_f64().unwrap() > 0.01, "{c}");
    }

    // logits 5 % off must be refused: the agreement check is not vacuous
    let mut m = onnx_format::decode(&std::fs::read(&gat).unwrap(), "gat").unwrap();
    let graph = m.graph.as_mut().unwrap();
    let at = graph.node.iter().position(|n| n.output.iter().any(|o| o == "logits")).expect("a node makes `logits`");
    for o in graph.node[at].output.iter_mut().filter(|o| *o == "logits") {
        *o = "logits_exact".into();
    }
    graph.initializer.push(TensorProto {
        name: Some("off_by_5_percent".into()),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(1.05f32.to_le_bytes().to_vec()),
        ..Default::default()
    });
    let mul = NodeProto {
        op_type: Some("Mul".into()),
        input: vec!["logits_exact".into(), "off_by_5_percent".into()],
        output: vec!["logits".into()],
        ..Default::default()
    };
    graph.node.insert(at + 1, mul);
    let off = dir.path().join("gat-off.onnx");
    std::fs::write(&off, onnx_format::encode(&m)).unwrap();
    let err = fails(&mut check(&gcn, &off, &mol));
    assert!(err.contains("refusing to time") && err.contains("gat on"), "{err}");
}

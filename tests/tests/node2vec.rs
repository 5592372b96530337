//! `train node2vec` end to end on Zachary's karate club: the two clubs are recovered by k-means
//! on the embeddings; the ONNX lookup table and the word2vec text agree; bad inputs are errors.

mod common;

use common::*;
use infer::runtime::{Backend, Options, Session, Value};
use std::process::Command;

/// The first number after `key` in the text.
fn number_after(text: &str, key: &str) -> f64 {
    let rest = &text[text.find(key).unwrap_or_else(|| panic!("`{key}` not in:\n{text}")) + key.len()..];
    rest.split_whitespace().next().unwrap().trim_end_matches(',').parse().unwrap()
}

#[test]
fn karate_clubs_from_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("node2vec-karate.onnx");
    let log = ok(Command::new(bin("train"))
        .args(["node2vec", "--dim", "16", "--epochs", "5", "--seeds", "3"])
        .arg("--graph")
        .arg(data("karate_club/karate_edges.tsv"))
        .arg("--labels")
        .arg(data("karate_club/karate_nodes.tsv"))
        .arg("--out")
        .arg(&out));
    let acc = number_after(&log, "clustering accuracy");
    assert!(acc >= 0.8, "k-means accuracy {acc} < 0.8:\n{log}");
    let ari = number_after(&log, "ARI");
    assert!(ari > 0.5, "ARI {ari}:\n{log}");

    // word2vec text: header, one row per node
    let w2v = dir.path().join("node2vec-karate.w2v.txt");
    let text = std::fs::read_to_string(&w2v).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "34 16");
    assert_eq!(lines.len(), 35);
    let rows: std::collections::HashMap<String, Vec<f32>> = lines[1..]
        .iter()
        .map(|l| {
            let mut f = l.split(' ');
            let name = f.next().unwrap().to_string();
            (name, f.map(|v| v.parse().unwrap()).collect::<Vec<f32>>())
        })
        .collect();
    assert!(rows.values().all(|r| r.len() == 16));

    // the card names the nodes; the ONNX table gives the same vectors as the text
    let card = onnx_format::read_card(&out).unwrap();
    assert_eq!(card.family, onnx_format::Family::Node2vec);
    assert_eq!(card.outputs[0].name, "embedding");
    let names: Vec<String> = serde_json::from_value(card.training["nodes"].clone()).unwrap();
    assert_eq!(names.len(), 34);
    let ids: Vec<i64> = vec![5, 0, 33, 5];
    for backend in [Backend::Tract, Backend::Ort] {
        let mut s = Session::from_file(&out, backend, &Options::default()).unwrap();
        let got = s.run_output(&[Value::i64(&[ids.len()], ids.clone())], "embedding").unwrap().into_f32().unwrap();
        assert_eq!(got.len(), ids.len() * 16);
        for (r, &i) in ids.iter().enumerate() {
            assert_eq!(&got[r * 16..(r + 1) * 16], rows[&names[i as usize]].as_slice(), "{backend:?} node {i}");
        }
    }
}

#[test]
fn karate_shortcut_and_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k.onnx");
    let log = ok(Command::new(bin("train"))
        .env("BIOEDGE_DATA", data(""))
        .args(["node2vec", "--graph", "karate", "--dim", "8", "--epochs", "5", "--seeds", "1", "--p", "0.5", "--q", "2"])
        .arg("--out")
        .arg(&out));
    assert!(log.contains("node2vec on karate"), "{log}");
    assert!(out.exists() && dir.path().join("k.w2v.txt").exists());
    let t = |extra: &[&str]| {
        let mut c = Command::new(bin("train"));
        c.env("BIOEDGE_DATA", data("")).arg("node2vec").args(extra).arg("--out").arg(dir.path().join("bad.onnx"));
        fails(&mut c)
    };
    assert!(t(&["--graph", "/nonexistent/graph.tsv"]).contains("no such edge list"));
    assert!(t(&["--graph", "karate", "--p", "0"]).contains("p and q must be positive"));
    assert!(t(&["--graph", "karate", "--walk-length", "1"]).contains("walk length"));
    let empty = dir.path().join("empty.tsv");
    std::fs::write(&empty, "src\tdst\n").unwrap();
    assert!(t(&["--graph", empty.to_str().unwrap()]).contains("no nodes"));
    assert!(!dir.path().join("bad.onnx").exists());
}

//! Molecular GraphConv end to end: `train mol` on part of Tox21 → verified ONNX → `infer mol` on
//! tract and ONNX Runtime; invalid SMILES are reported per row and never stop a batch.

mod common;

use common::*;
use infer::chem::featurize;
use infer::mol::MolBatch;
use infer::runtime::{Backend, Options, Session};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A small model trained once (600 molecules, 3 epochs): the tests check plumbing and parity, not accuracy.
fn model() -> &'static (PathBuf, String) {
    static M: OnceLock<(PathBuf, String)> = OnceLock::new();
    M.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("bioedge-mol-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("tox21.onnx");
        let log = ok(Command::new(bin("train"))
            .args(["mol", "--limit", "600", "--epochs", "3", "--seeds", "1"])
            .arg("--data")
            .arg(data("tox21/tox21.csv"))
            .arg("--out")
            .arg(&out));
        (out, log)
    })
}

fn csv(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| l.split(',').map(|s| s.to_string()).collect()).collect()
}

#[test]
fn train_reports_aucs_and_exports_a_checked_model() {
    let (model, log) = model();
    assert!(log.contains("per-task test ROC-AUC") && log.contains("SR-p53"), "{log}");
    let card = onnx_format::read_card(model).unwrap();
    assert_eq!(card.family, onnx_format::Family::MolGraphconv);
    assert_eq!(card.classes.len(), 12);
    assert_eq!(card.classes[0], "NR-AR");
    assert!(card.metrics["parity_tract_max_abs_diff"] < 1e-4 && card.metrics["parity_ort_max_abs_diff"] < 1e-4);
    let auc = card.metrics["test_mean_roc_auc"];
    assert!(auc > 0.5 && auc < 1.0, "test mean AUC {auc}");
    let out = check_onnx_py(model, None);
    assert!(out.contains("\"checker\": \"ok\""), "{out}");
}

#[test]
fn infer_mol_scores_a_csv_and_reports_bad_rows() {
    let (model, _) = model();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "name,smiles\naspirin,CC(=O)Oc1ccccc1C(=O)O\nopen ring,C1CC\nempty,\nunknown,C[Xx]C\nsalt,[Na+].[Cl-]\npentavalent,C(C)(C)(C)(C)C\nphenol,\"c1ccccc1O\"\n").unwrap();
    let mut outs = Vec::new();
    for backend in ["tract", "ort"] {
        let out = dir.path().join(format!("{backend}.csv"));
        let log = ok(Command::new(bin("infer"))
            .args(["mol", "--backend", backend])
            .arg("--model")
            .arg(model)
            .arg("--input")
            .arg(&input)
            .arg("--out")
            .arg(&out));
        assert!(log.contains("3 molecules scored, 4 rejected"), "{log}");
        assert!(log.contains("row 2") && log.contains("unclosed ring"), "{log}");
        outs.push(csv(&out));
    }
    let rows = &outs[0];
    assert_eq!(rows[0][0..3], ["row", "smiles", "NR-AR"]);
    assert_eq!(rows[0].last().unwrap(), "error");
    assert_eq!(rows.len(), 8);
    for (r, valid) in [(1, true), (2, false), (3, false), (4, false), (5, true), (6, false), (7, true)] {
        let probs: Vec<&String> = rows[r][2..14].iter().collect();
        if valid {
            assert!(
                probs.iter().all(|p| {
                    let v: f32 = p.parse().unwrap();
                    (0.0..=1.0).contains(&v)
                }),
                "{:?}",
                rows[r]
            );
            assert!(rows[r][14].is_empty());
        } else {
            assert!(probs.iter().all(|p| p.is_empty()) && !rows[r][14].is_empty(), "{:?}", rows[r]);
        }
    }
    assert!(rows[6][14].contains("valence"), "{:?}", rows[6]);
    for (a, b) in outs[0].iter().zip(&outs[1]).skip(1) {
        for (x, y) in a[2..14].iter().zip(&b[2..14]) {
            if !x.is_empty() {
                assert!((x.parse::<f32>().unwrap() - y.parse::<f32>().unwrap()).abs() < 1e-4, "tract {x} vs ort {y}");
            }
        }
    }
    // --smiles on the command line
    let out = dir.path().join("one.csv");
    ok(Command::new(bin("infer"))
        .args(["mol", "--smiles", "CCO", "--smiles", "c1ccncc1"])
        .arg("--model")
        .arg(model)
        .arg("--out")
        .arg(&out));
    assert_eq!(csv(&out).len(), 3);
}

#[test]
fn bad_inputs_fail_cleanly_without_output() {
    let (model, _) = model();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.csv");
    let input = dir.path().join("bad.csv");
    std::fs::write(&input, "smiles\nC1CC\n((\n").unwrap();
    let err = fails(Command::new(bin("infer")).args(["mol"]).arg("--model").arg(model).arg("--input").arg(&input).arg("--out").arg(&out));
    assert!(err.contains("none of the 2 SMILES"), "{err}");
    let err = fails(
        Command::new(bin("infer"))
            .args(["mol", "--smiles-column", "nope"])
            .arg("--model")
            .arg(model)
            .arg("--input")
            .arg(&input)
            .arg("--out")
            .arg(&out),
    );
    assert!(err.contains("no column `nope`"), "{err}");
    // a model of another family
    let other = dir.path().join("other.onnx");
    rewrite_card(model, &other, |c| relabel(c, onnx_format::Family::GeneGcn));
    let err = fails(Command::new(bin("infer")).args(["mol", "--smiles", "CCO"]).arg("--model").arg(&other).arg("--out").arg(&out));
    assert!(err.contains("`gene-gcn` is not a molecule model (mol-graphconv)"), "{err}");
    assert!(!out.exists());
}

/// One exported file on any batch: a molecule alone and inside a batch of others give the same
/// probabilities, on both runtimes (variable num_atoms, num_edges, num_molecules).
#[test]
fn batch_composition_does_not_change_predictions() {
    let (model, _) = model();
    let smiles = ["CC(=O)Oc1ccccc1C(=O)O", "C", "[Na+].[Cl-]", "c1ccc2ccccc2c1", "CCN(CC)CC", "O=C1NC(=O)C(N1)(c1ccccc1)c1ccccc1"];
    let mols: Vec<_> = smiles.iter().map(|s| featurize(s).unwrap()).collect();
    let refs: Vec<&_> = mols.iter().collect();
    for backend in [Backend::Tract, Backend::Ort] {
        let mut s = Session::from_file(model, backend, &Options::default()).unwrap();
        let all = infer::mol::predict(&mut s, &refs, 64).unwrap();
        assert_eq!(all.len(), smiles.len() * 12);
        for (i, m) in mols.iter().enumerate() {
            let one = s.run_output(&MolBatch::new(&[m]).unwrap().values(), "probabilities").unwrap().into_f32().unwrap();
            for k in 0..12 {
                assert!((one[k] - all[i * 12 + k]).abs() < 1e-5, "{backend:?} {}: {} vs {}", smiles[i], one[k], all[i * 12 + k]);
            }
        }
    }
}

/// `infer mol` hands the model its atoms in the model's own degree order: the outputs are bit for
/// bit those of the batch as built, on both runtimes; the degree clip is the model's.
#[test]
fn degree_order_gives_the_same_outputs() {
    assert_eq!(infer::mol::MAX_DEGREE, models::mol::MAX_DEGREE);
    let (model, _) = model();
    // a hub past the clip (sulfur hexafluoride has degree 6; a carbon ring with 12 substituents is
    // rare, so the clip itself is checked by the constant above), rings, ions, a lone atom
    let smiles = ["CC(=O)Oc1ccccc1C(=O)O", "C", "[Na+].[Cl-]", "FS(F)(F)(F)(F)F", "c1ccc2ccccc2c1", "CCN(CC)CC"];
    let mols: Vec<_> = smiles.iter().map(|s| featurize(s).unwrap()).collect();
    let batch = MolBatch::new(&mols.iter().collect::<Vec<_>>()).unwrap();
    for backend in [Backend::Tract, Backend::Ort] {
        let mut s = Session::from_file(model, backend, &Options::default()).unwrap();
        let built = s.run_output(&batch.values(), "logits").unwrap().into_f32().unwrap();
        let ordered = s.run_output(&batch.clone().in_degree_order().unwrap().values(), "logits").unwrap().into_f32().unwrap();
        assert_eq!(built, ordered, "{backend:?}");
    }
}

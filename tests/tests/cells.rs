//! Cell typing end to end: `train cells` on pbmc68k_reduced → `infer cells` on the legacy and
//! modern h5ad encodings, on new cells with shuffled/missing genes, and bad inputs.

mod common;

use common::*;
use infer::data::{ReadOptions, read_expression};
use std::process::Command;

fn pbmc(name: &str) -> std::path::PathBuf {
    data(&format!("scanpy_pbmc68k_reduced/{name}"))
}

#[test]
fn train_then_label_new_cells() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("cells.onnx");
    let log = ok(Command::new(bin("train"))
        .args(["cells", "--seeds", "1", "--epochs", "40", "--patience", "20"])
        .arg("--h5ad")
        .arg(pbmc("10x_pbmc68k_reduced.h5ad"))
        .arg("--out")
        .arg(&model));
    assert!(log.contains("logistic regression"), "{log}");
    let card = infer::read_card(&model).unwrap();
    assert_eq!(card.family, onnx_format::Family::CellGat);
    assert_eq!(card.classes.len(), 10);
    assert!(card.metrics["parity_ort_max_abs_diff"] <= 1e-4);
    let cells = |input: &std::path::Path, out: &std::path::Path| {
        ok(Command::new(bin("infer")).arg("cells").arg("--model").arg(&model).arg("--input").arg(input).arg("--out").arg(out))
    };
    let (a, b) = (dir.path().join("legacy.csv"), dir.path().join("modern.csv"));
    cells(&pbmc("10x_pbmc68k_reduced.h5ad"), &a);
    cells(&pbmc("pbmc68k_reduced.anndata0.12.h5ad"), &b);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "legacy and modern h5ad disagree");
    assert_eq!(std::fs::read_to_string(&a).unwrap().lines().count(), 701);

    // new cells: every second cell, genes reversed, 20 genes dropped, written in our HDF5 layout
    let m = read_expression(&pbmc("pbmc68k_reduced.anndata0.12.h5ad"), &ReadOptions::default()).unwrap();
    let g = m.genes.len();
    let keep_genes: Vec<usize> = (20..g).rev().collect();
    let cells_kept: Vec<usize> = (0..m.samples.len()).step_by(2).collect();
    let sub = infer::data::ExpressionMatrix {
        samples: cells_kept.iter().map(|&i| m.samples[i].clone()).collect(),
        genes: keep_genes.iter().map(|&j| m.genes[j].clone()).collect(),
        values: cells_kept.iter().flat_map(|&i| keep_genes.iter().map(move |&j| (i, j))).map(|(i, j)| m.values[i * g + j]).collect(),
        labels: None,
    };
    let h5 = dir.path().join("new_cells.h5");
    infer::data::h5::write_hdf5(&h5, &sub).unwrap();
    let c = dir.path().join("new.csv");
    let log = cells(&h5, &c);
    assert!(log.contains("745 of 765 model genes") && log.contains("20 missing"), "{log}");
    assert_eq!(std::fs::read_to_string(&c).unwrap().lines().count(), 351);

    // bad inputs: truncated h5ad, an expression classifier instead of a cell model
    let bytes = std::fs::read(pbmc("10x_pbmc68k_reduced.h5ad")).unwrap();
    let trunc = dir.path().join("truncated.h5ad");
    std::fs::write(&trunc, &bytes[..bytes.len() / 3]).unwrap();
    let out = dir.path().join("never.csv");
    let err = fails(Command::new(bin("infer")).arg("cells").arg("--model").arg(&model).arg("--input").arg(&trunc).arg("--out").arg(&out));
    assert!(err.contains("truncated.h5ad"), "{err}");
    let wrong = dir.path().join("wrong.onnx");
    rewrite_card(&model, &wrong, |c| relabel(c, onnx_format::Family::GeneGcn));
    let err = fails(
        Command::new(bin("infer"))
            .arg("cells")
            .arg("--model")
            .arg(&wrong)
            .arg("--input")
            .arg(pbmc("10x_pbmc68k_reduced.h5ad"))
            .arg("--out")
            .arg(&out),
    );
    assert!(err.contains("not a cell-type classifier"), "{err}");
    assert!(!out.exists());
}

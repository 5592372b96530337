//! Cell typing end to end: `train cells` on pbmc68k_reduced → `infer cells` on the legacy and
//! modern h5ad encodings, on new cells with shuffled/missing genes, and bad inputs.

mod common;

use common::*;
use infer::data::{ReadOptions, read_expression};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn pbmc(name: &str) -> std::path::PathBuf {
    data(&format!("scanpy_pbmc68k_reduced/{name}"))
}

/// A cell-typing GAT trained once per test binary (and its training log).
fn cells_model() -> &'static (PathBuf, String) {
    static M: OnceLock<(PathBuf, String)> = OnceLock::new();
    M.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("bioedge-e2e-cells-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let model = dir.join("cells.onnx");
        let log = ok(Command::new(bin("train"))
            .args(["cells", "--seeds", "1", "--epochs", "40", "--patience", "20"])
            .arg("--h5ad")
            .arg(pbmc("10x_pbmc68k_reduced.h5ad"))
            .arg("--out")
            .arg(&model));
        (model, log)
    })
}

#[test]
fn train_then_label_new_cells() {
    let dir = tempfile::tempdir().unwrap();
    let (model, log) = cells_model();
    assert!(log.contains("logistic regression"), "{log}");
    let card = infer::read_card(model).unwrap();
    assert_eq!(card.family, onnx_format::Family::CellGat);
    assert_eq!(card.classes.len(), 10);
    assert!(card.metrics["parity_ort_max_abs_diff"] <= 1e-4);
    let cells = |input: &std::path::Path, out: &std::path::Path| {
        ok(Command::new(bin("infer")).arg("cells").arg("--model").arg(model).arg("--input").arg(input).arg("--out").arg(out))
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
    let err = fails(Command::new(bin("infer")).arg("cells").arg("--model").arg(model).arg("--input").arg(&trunc).arg("--out").arg(&out));
    assert!(err.contains("truncated.h5ad"), "{err}");
    let wrong = dir.path().join("wrong.onnx");
    rewrite_card(model, &wrong, |c| relabel(c, onnx_format::Family::GeneGcn));
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

/// `infer cells --out X.h5ad`: the input h5ad with `obs["predicted"]`, `obsm["bioedge_probabilities"]`
/// and `uns["bioedge"]` added, everything else equal when anndata reads both; the CSV of the same
/// run agrees; the input is never changed; bad inputs fail with exit code 2 and no output.
#[test]
fn annotated_h5ad_keeps_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = cells_model();
    // the modern pbmc68k_reduced (obsp, raw, varm, uns with nested dicts) plus a layer and uns
    // entries of our own, written by anndata
    let input = dir.path().join("input.h5ad");
    let make = "import anndata, sys, numpy as np; a = anndata.read_h5ad(sys.argv[1]); a.layers['scaled'] = a.X.copy(); \
                a.uns['note'] = 'kept'; a.uns['bioedge_user'] = {'n': 3, 'v': np.arange(4)}; a.write_h5ad(sys.argv[2])";
    ok(Command::new(python()).arg("-c").arg(make).arg(pbmc("pbmc68k_reduced.anndata0.12.h5ad")).arg(&input));
    let before = std::fs::read(&input).unwrap();
    let cells = |input: &Path, out: &Path| {
        let mut c = Command::new(bin("infer"));
        c.arg("cells").arg("--model").arg(model).arg("--input").arg(input).arg("--out").arg(out);
        c
    };
    let (csv, ann) = (dir.path().join("cells.csv"), dir.path().join("annotated.h5ad"));
    ok(&mut cells(&input, &csv));
    ok(&mut cells(&input, &ann));
    assert_eq!(std::fs::read(&input).unwrap(), before, "the input changed");
    let check = r#"
import sys, json, numpy as np, pandas as pd, anndata, scipy.sparse as sp
a, b = anndata.read_h5ad(sys.argv[1]), anndata.read_h5ad(sys.argv[2])
csv = pd.read_csv(sys.argv[3], index_col=0)
def same(x, y, where):
    if isinstance(x, dict):
        assert isinstance(y, dict) and set(x) == set(y), where
        for k in x: same(x[k], y[k], f"{where}/{k}")
    elif isinstance(x, pd.DataFrame):
        pd.testing.assert_frame_equal(x, y)
    elif sp.issparse(x):
        assert (x != y).nnz == 0, where
    elif isinstance(x, np.ndarray):
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), where
    else:
        assert x == y or (x != x and y != y), (where, x, y)
same(a.X, b.X, "X")
pd.testing.assert_frame_equal(a.var, b.var)
pd.testing.assert_frame_equal(a.obs, b.obs.drop(columns=["predicted"]))
assert list(b.obs.columns) == list(a.obs.columns) + ["predicted"]
for part in ["layers", "obsm", "obsp", "varm", "varp"]:
    pa, pb = dict(getattr(a, part)), dict(getattr(b, part))
    if part == "obsm": pb.pop("bioedge_probabilities")
    same(pa, pb, part)
assert a.raw is not None and b.raw is not None
same(a.raw.X, b.raw.X, "raw/X")
pd.testing.assert_frame_equal(a.raw.var, b.raw.var)
ua = dict(a.uns); ub = dict(b.uns); bio = ub.pop("bioedge")
same(ua, ub, "uns")
card = json.loads(bio["model_card"])
assert list(b.obs["predicted"].cat.categories) == card["classes"] == list(bio["classes"])
assert (b.obs["predicted"].astype(str).to_numpy() == csv["predicted"].astype(str).to_numpy()).all()
p = b.obsm["bioedge_probabilities"]
assert p.dtype == np.float32 and p.shape == (b.n_obs, len(card["classes"]))
assert np.abs(p - csv[[f"p_{c}" for c in card["classes"]]].to_numpy()).max() <= 1e-6
print("annotated", b.n_obs, len(a.layers), len(a.uns), len(a.obsm))
"#;
    let said = ok(Command::new(python()).arg("-c").arg(check).arg(&input).arg(&ann).arg(&csv));
    assert!(said.contains("annotated 700 1 "), "{said}");

    let code2 = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // the output is the input (a copy, so the check cannot touch shared data): refused, unchanged
    let copy = dir.path().join("copy.h5ad");
    std::fs::copy(&input, &copy).unwrap();
    let err = code2(&mut cells(&copy, &copy));
    assert!(err.contains("is the input"), "{err}");
    assert_eq!(std::fs::read(&copy).unwrap(), before);
    // an h5ad without X
    let no_x = dir.path().join("no_x.h5ad");
    let drop_x = "import h5py, shutil, sys; shutil.copy(sys.argv[1], sys.argv[2]); f = h5py.File(sys.argv[2], 'r+'); del f['X']; f.close()";
    ok(Command::new(python()).arg("-c").arg(drop_x).arg(&input).arg(&no_x));
    let never = dir.path().join("never.h5ad");
    let err = code2(&mut cells(&no_x, &never));
    assert!(err.contains("no_x.h5ad") && err.contains("'X'"), "{err}");
    // the anndata < 0.7 layout (compound obs): refused before the model runs, with how to convert
    let legacy = pbmc("10x_pbmc68k_reduced.h5ad");
    let legacy_before = std::fs::read(&legacy).unwrap();
    let err = code2(&mut cells(&legacy, &never));
    assert!(err.contains("anndata") && err.contains("write_h5ad"), "{err}");
    assert_eq!(std::fs::read(&legacy).unwrap(), legacy_before);
    // a non-h5ad input with an h5ad output
    let h5 = dir.path().join("cells.csv.h5ad");
    let err = code2(&mut cells(&csv, &h5));
    assert!(err.contains("annotates an .h5ad input"), "{err}");
    let left: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!left.iter().any(|n| n.contains("never") || n.ends_with(".tmp") || n == "cells.csv.h5ad"), "{left:?}");
}

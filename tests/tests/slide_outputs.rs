//! `infer slide` outputs for the tools people already use, read by those tools: the `.h5ad` by
//! anndata, scanpy and squidpy (plots and spatial statistics), the `.geojson` checked as RFC 7946
//! with shapely, both against the CSV of the same run (`tests/py/check_slide_outputs.py`); bad
//! output options fail with exit code 2 and write nothing.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const GENES: [&str; 5] = ["G1", "G2", "G3", "G4", "G5"];

/// A random-init spot model whose card carries per-gene held-out r (as `train spot` writes).
fn write_model(dir: &Path) -> PathBuf {
    let (m, card) = spot_model(&GENES, 5);
    let plain = dir.join("spot-plain.onnx");
    write_spot_model(&plain, &m, &card);
    let path = dir.join("spot.onnx");
    rewrite_card(&plain, &path, |c| c.training = serde_json::json!({"eval_per_gene_pearson_r": [0.1, 0.2, 0.3, null, 0.5]}));
    path
}

fn slide(model: &Path, image: &Path) -> Command {
    let mut c = Command::new(bin("infer"));
    c.arg("slide").arg("--model").arg(model).arg("--image").arg(image);
    c
}

fn check(args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/check_slide_outputs.py");
    let out = ok(Command::new(python()).arg(script).args(args).env("MPLBACKEND", "Agg"));
    let line = out.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON from the checker:\n{out}"));
    serde_json::from_str(line).unwrap()
}

/// The median of column `g` of a slide CSV (a threshold that splits the spots).
fn median(csv: &Path, g: usize) -> f32 {
    let text = std::fs::read_to_string(csv).unwrap();
    let mut v: Vec<f32> = text.lines().skip(1).map(|l| l.split(',').nth(3 + g).unwrap().parse().unwrap()).collect();
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}

#[test]
fn slide_h5ad_and_geojson_read_by_anndata_scanpy_squidpy_shapely() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path());
    let image = data("her2st/C2/5714_HE_BT_C2.jpg");
    let spots = data("her2st/C2/C2_selection.tsv");
    // the CSV first, for a threshold; then all three outputs from one run
    let first = dir.path().join("first.csv");
    ok(slide(&model, &image).arg("--spots").arg(&spots).arg("--out").arg(&first));
    let rule = format!("G2>{}", median(&first, 1));
    let (csv, h5ad, geojson) = (dir.path().join("c2.csv"), dir.path().join("c2.h5ad"), dir.path().join("c2.geojson"));
    let log = ok(slide(&model, &image)
        .arg("--spots")
        .arg(&spots)
        .args(["--classify", &rule, "--top-genes", "3"])
        .arg("--out")
        .arg(&csv)
        .arg("--out")
        .arg(&h5ad)
        .arg("--out")
        .arg(&geojson));
    assert!(log.contains("c2.h5ad") && log.contains("c2.geojson"), "{log}");
    assert_eq!(std::fs::read(&first).unwrap(), std::fs::read(&csv).unwrap(), "the CSV changed with the other outputs");
    let found = check(&[
        csv.as_os_str(),
        image.as_os_str(),
        dir.path().as_os_str(),
        "--h5ad".as_ref(),
        h5ad.as_os_str(),
        "--geojson".as_ref(),
        geojson.as_os_str(),
        "--gene".as_ref(),
        "G2".as_ref(),
        "--classify".as_ref(),
        rule.as_ref(),
        "--top-genes".as_ref(),
        "3".as_ref(),
    ]);
    eprintln!("{found}");
    assert_eq!(found["h5ad"]["shape"], serde_json::json!([187, 5]));
    assert_eq!(found["h5ad"]["library_id"], "5714_HE_BT_C2");
    for col in ["pixel_x", "pixel_y", "array_row", "array_col", "tissue_fraction", "classification"] {
        assert!(found["h5ad"]["obs"].as_array().unwrap().iter().any(|c| c == col), "{col}: {found}");
    }
    assert_eq!(found["h5ad"]["var"], serde_json::json!(["heldout_pearson_r"]));
    assert_eq!(found["geojson"]["features"], 187);
    assert_eq!(found["geojson"]["measurements"], 3);
    let classes = found["geojson"]["classes"].as_object().unwrap();
    assert!(classes.len() == 2, "{found}");
    assert!(found["squidpy"]["moranI"].is_object(), "squidpy did not run: {found}");
    for png in ["scanpy_spatial.png", "squidpy_spatial.png"] {
        let img = infer::image_prep::load_rgb(dir.path().join(png)).unwrap();
        assert!(img.width() > 200 && img.height() > 200, "{png}: {:?}", img.dimensions());
    }
    // known spot 25x13 (array x 25, y 13) at pixel (6930.58, 3510.24)
    let py = "import anndata, sys; a = anndata.read_h5ad(sys.argv[1]); o = a.obs.loc['25x13']; \
              print(int(o.array_row), int(o.array_col), a.obsm['spatial'][a.obs_names.get_loc('25x13')].tolist(), \
              a.var.loc['G5', 'heldout_pearson_r'], sorted(a.obs['classification'].cat.categories))";
    let said = ok(Command::new(python()).arg("-c").arg(py).arg(&h5ad));
    assert!(said.contains("13 25 [6930.580078125, 3510.239990234375] 0.5 ['G2 high', 'G2 low']"), "{said}");
}

#[test]
fn slide_grid_h5ad_on_ihc() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path());
    let image = data("skimage_ihc/ihc.png");
    let (csv, h5ad) = (dir.path().join("g.csv"), dir.path().join("g.h5ad"));
    ok(slide(&model, &image).args(["--grid", "--patch-side", "128"]).arg("--out").arg(&h5ad).arg("--out").arg(&csv));
    let found = check(&[csv.as_os_str(), image.as_os_str(), dir.path().as_os_str(), "--h5ad".as_ref(), h5ad.as_os_str()]);
    assert!(found["h5ad"]["shape"][0].as_u64().unwrap() > 0, "{found}");
    // grid rows/columns are the ids' r<row>c<col>; tissue fraction at least the grid's 0.5
    let py = "import anndata, sys; a = anndata.read_h5ad(sys.argv[1]); \
              assert all(n == f'r{r}c{c}' for n, r, c in zip(a.obs_names, a.obs.array_row, a.obs.array_col)); \
              assert (a.obs.tissue_fraction >= 0.5).all(); print('grid ok', a.uns['bioedge']['spots'])";
    let said = ok(Command::new(python()).arg("-c").arg(py).arg(&h5ad));
    assert!(said.contains("grid ok grid over tissue"), "{said}");
}

#[test]
fn slide_output_options_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path());
    let image = data("skimage_ihc/ihc.png");
    let grid = ["--grid", "--patch-side", "128"];
    let (csv, h5ad, geojson) = (dir.path().join("a.csv"), dir.path().join("a.h5ad"), dir.path().join("a.geojson"));
    let code2 = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!err.contains("panicked"), "{err}");
        err
    };
    let err = code2(slide(&model, &image).args(grid).arg("--out").arg(dir.path().join("a.txt")).arg("--out").arg(&csv));
    assert!(err.contains("a.txt") && err.contains(".geojson"), "{err}");
    let err = code2(slide(&model, &image).args(grid).arg("--out").arg(&csv).arg("--out").arg(&csv));
    assert!(err.contains("twice"), "{err}");
    let err = code2(slide(&model, &image).args(grid).args(["--classify", "G9>1"]).arg("--out").arg(&geojson).arg("--out").arg(&h5ad));
    assert!(err.contains("--classify gene `G9`") && err.contains("G1"), "{err}");
    let err = code2(slide(&model, &image).args(grid).args(["--classify", "G2"]).arg("--out").arg(&geojson));
    assert!(err.contains("GENE>THRESHOLD"), "{err}");
    let err = code2(slide(&model, &image).args(grid).args(["--top-genes", "2"]).arg("--out").arg(&csv));
    assert!(err.contains("--top-genes") && err.contains(".geojson"), "{err}");
    let err = code2(slide(&model, &image).args(grid).arg("--out").arg(&h5ad).arg("--out").arg(&image));
    assert!(err.contains("is the input"), "{err}");
    // spots outside the image: nothing written, no temporary file left
    let spots = dir.path().join("spots.tsv");
    std::fs::write(&spots, "x\ty\tpixel_x\tpixel_y\tselected\n1\t1\t100\t100\t1\n2\t1\t900.5\t100\t1\n").unwrap();
    code2(slide(&model, &image).arg("--spots").arg(&spots).arg("--out").arg(&h5ad).arg("--out").arg(&geojson).arg("--out").arg(&csv));
    let left: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(left.iter().all(|n| n.ends_with(".onnx") || n == "spots.tsv"), "{left:?}");
}

//! `infer slide` outputs for the tools people already use, read by those tools: the `.h5ad` by
//! anndata, scanpy and squidpy (plots and spatial statistics), the `.geojson` checked as RFC 7946
//! with shapely, both against the CSV of the same run (`tests/py/check_slide_outputs.py`); bad
//! output options fail with exit code 2 and write nothing; the heatmap legend, the results folder
//! (`--results-dir`, run metadata, `--skip-existing` / `--overwrite`) and `--summary-json`.

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

/// The heatmap names the gene, model and slide and carries a colour bar with its units and end
/// values: the PNG is the grid (the 512 × 512 image at full size) plus the legend, the legend has
/// ink, and the bar's ends are the colour map's ends.
#[test]
fn slide_heatmap_legend_and_outline() {
    use infer::slide::{HeatmapLayout, viridis};
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path());
    let image = data("skimage_ihc/ihc.png");
    let heat = dir.path().join("heat");
    let csv = dir.path().join("g.csv");
    for outline in [false, true] {
        let mut cmd = slide(&model, &image);
        cmd.args(["--grid", "--patch-side", "128", "--heatmap", "G2", "--heatmap", "G5"]).arg("--heatmap-dir").arg(&heat);
        if outline {
            cmd.arg("--heatmap-outline");
        }
        ok(cmd.arg("--out").arg(&csv));
        let png = infer::image_prep::load_rgb(heat.join("G2.png")).unwrap();
        let l = HeatmapLayout::new(512, 512);
        assert_eq!(png.dimensions(), (l.width, l.height));
        assert!(png.height() > 512 + 50 && png.width() >= 512, "no room for the legend: {:?}", png.dimensions());
        assert_eq!((l.grid.w, l.grid.h), (512, 512));
        let ink = |y0: u32, y1: u32| {
            (y0..y1).flat_map(|y| (0..l.width).map(move |x| (x, y))).filter(|&(x, y)| png.get_pixel(x, y).0 == [20, 20, 20]).count()
        };
        assert!(ink(0, l.grid.y) > 200, "header has no text");
        assert!(ink(l.grid.y + l.grid.h, l.bar.y) > 100, "no units above the bar");
        assert!(ink(l.bar.y + l.bar.h, l.height) > 50, "no values under the bar");
        let mid = l.bar.y + l.bar.h / 2;
        assert_eq!(png.get_pixel(l.bar.x, mid).0, viridis(0.0));
        assert_eq!(png.get_pixel(l.bar.x + l.bar.w - 1, mid).0, viridis(1.0));
        // the outline is black pixels on the grid, present only when asked for
        let black = (l.grid.y..l.grid.y + 512)
            .flat_map(|y| (0..512).map(move |x| (x, y)))
            .filter(|&(x, y)| png.get_pixel(x, y).0 == [0, 0, 0])
            .count();
        assert_eq!(black > 100, outline, "{black} black grid pixels");
    }
    // an outline needs a heatmap
    let out = slide(&model, &image).args(["--grid", "--patch-side", "128", "--heatmap-outline"]).arg("--out").arg(&csv).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

fn json_line(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "--summary-json prints one line on stdout: {text}");
    serde_json::from_str(lines[0]).unwrap()
}

/// `--results-dir`: WSInfer's layout, run metadata written last, a finished slide refused, skipped
/// with `--skip-existing` or redone with `--overwrite`; an unfinished one redone; `--summary-json`
/// one line per run with the exit code.
#[test]
fn slide_results_dir_metadata_skip_overwrite_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path());
    let image = data("skimage_ihc/ihc.png");
    let res = dir.path().join("results");
    let run = |extra: &[&str]| {
        slide(&model, &image)
            .args(["--grid", "--patch-side", "128", "--heatmap", "G2", "--summary-json"])
            .arg("--results-dir")
            .arg(&res)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = json_line(&out.stdout);
    assert_eq!((s["status"].as_str(), s["exit_code"].as_i64(), s["provider"].as_str()), (Some("ok"), Some(0), Some("tract")), "{s}");
    let spots = s["spots"].as_u64().unwrap();
    assert!(spots > 0 && s["genes"] == 5 && s["seconds"]["total"].as_f64().unwrap() > 0.0, "{s}");
    let files = [
        "model-outputs-csv/ihc.csv",
        "model-outputs-geojson/ihc.geojson",
        "model-outputs-h5ad/ihc.h5ad",
        "heatmaps/ihc_G2.png",
        "run_metadata_ihc.json",
    ];
    let listed: Vec<String> = s["outputs"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
    assert_eq!(listed, files.map(|f| res.join(f).display().to_string()), "{s}");
    for f in files {
        assert!(res.join(f).is_file(), "{f}");
    }
    let all: Vec<String> = walk(&res);
    assert!(all.iter().all(|n| !n[res.display().to_string().len()..].contains("/.")), "temporary files left: {all:?}");
    assert_eq!(all.len(), files.len(), "{all:?}");
    // the CSV is the one --out writes
    let plain = dir.path().join("plain.csv");
    ok(slide(&model, &image).args(["--grid", "--patch-side", "128"]).arg("--out").arg(&plain));
    assert_eq!(std::fs::read(&plain).unwrap(), std::fs::read(res.join(files[0])).unwrap());
    let meta_path = res.join("run_metadata_ihc.json");
    let meta_bytes = std::fs::read(&meta_path).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&meta_bytes).unwrap();
    assert_eq!(m["model"]["sha256"], infer::slide_results::sha256_hex(&std::fs::read(&model).unwrap()));
    assert_eq!(m["model"]["card_sha256"].as_str().map(str::len), Some(64), "{m}");
    assert_eq!(m["model"]["file_name"], "spot.onnx");
    assert_eq!(m["tool"]["versions"]["tract"], infer::slide_results::TRACT_VERSION);
    assert_eq!(m["slide"]["stem"], "ihc");
    assert_eq!((m["slide"]["width"].as_u64(), m["slide"]["height"].as_u64()), (Some(512), Some(512)));
    assert_eq!(m["parameters"]["patch_side_px"], 128.0);
    assert_eq!(m["parameters"]["patch_side_from"], "--patch-side");
    assert_eq!(m["parameters"]["batch"], 16);
    assert_eq!(m["parameters"]["heatmaps"], serde_json::json!(["G2"]));
    assert_eq!(m["timings"]["spots"].as_u64(), Some(spots));
    for t in ["read_s", "load_model_s", "predict_s", "write_s", "total_s", "spots_per_s"] {
        assert!(m["timings"][t].as_f64().is_some(), "{t}: {m}");
    }
    assert_eq!(m["outputs"]["csv"], files[0]);
    assert_eq!(m["outputs"]["heatmaps"]["G2"], files[3]);
    assert!(m["started_utc"].as_str().unwrap().ends_with('Z'));

    // again: refused, exit 2, nothing touched; the JSON line says so
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--skip-existing") && err.contains("--overwrite") && !err.contains("panicked"), "{err}");
    let s = json_line(&out.stdout);
    assert_eq!((s["status"].as_str(), s["exit_code"].as_i64()), (Some("error"), Some(2)), "{s}");
    assert_eq!(std::fs::read(&meta_path).unwrap(), meta_bytes);
    // --skip-existing: skipped, exit 0, nothing written
    let out = run(&["--skip-existing"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = json_line(&out.stdout);
    assert_eq!((s["status"].as_str(), s["spots"].as_u64()), (Some("skipped"), Some(spots)), "{s}");
    assert_eq!(s["outputs"], serde_json::json!([]));
    assert_eq!(std::fs::read(&meta_path).unwrap(), meta_bytes);
    // an unfinished run (no metadata): refused without a flag, redone with --skip-existing
    std::fs::remove_file(&meta_path).unwrap();
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unfinished"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["--skip-existing"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_line(&out.stdout)["status"], "ok");
    assert!(meta_path.is_file());
    // --overwrite on ONNX Runtime with 2 threads: redone, the parameters recorded
    let out = run(&["--overwrite", "--backend", "ort", "--threads", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = json_line(&out.stdout);
    assert_eq!(s["provider"], "ort-cpu", "{s}");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    assert_eq!((m["parameters"]["threads"].as_u64(), m["parameters"]["existing"].as_str()), (Some(2), Some("overwrite")), "{m}");
    assert_eq!(m["parameters"]["backend"], "ort");
    // another slide with the same stem is not taken for this one
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::copy(&image, other.join("ihc.png")).unwrap();
    let out = slide(&model, &other.join("ihc.png"))
        .args(["--grid", "--patch-side", "128", "--skip-existing"])
        .arg("--results-dir")
        .arg(&res)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("share the stem"), "{}", String::from_utf8_lossy(&out.stderr));
    // options that do not go together: usage errors, exit 2
    for bad in [
        &["--skip-existing"][..],
        &["--overwrite"],
        &["--results-dir", "x", "--out", "y.csv"],
        &["--results-dir", "x", "--heatmap-dir", "h"],
    ] {
        let out = slide(&model, &image).args(["--grid", "--patch-side", "128"]).args(bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}

/// `--summary-json` on failures: bad input exit 2, a runtime that cannot load exit 3, each with
/// one JSON line naming the error.
#[test]
fn slide_summary_json_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path());
    let image = data("skimage_ihc/ihc.png");
    let csv = dir.path().join("a.csv");
    let spots = dir.path().join("spots.tsv");
    std::fs::write(&spots, "x\ty\tpixel_x\tpixel_y\tselected\n1\t1\t100\t100\t1\n2\t1\t900.5\t100\t1\n").unwrap();
    let out = slide(&model, &image).arg("--spots").arg(&spots).arg("--summary-json").arg("--out").arg(&csv).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let s = json_line(&out.stdout);
    assert_eq!((s["status"].as_str(), s["exit_code"].as_i64()), (Some("error"), Some(2)), "{s}");
    assert!(s["error"].as_str().unwrap().contains("outside"), "{s}");
    let out = slide(&model, &image)
        .args(["--grid", "--patch-side", "128", "--backend", "ort", "--summary-json"])
        .arg("--out")
        .arg(&csv)
        .env("ORT_DYLIB_PATH", dir.path().join("no-such-libonnxruntime.so"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let s = json_line(&out.stdout);
    assert_eq!((s["status"].as_str(), s["exit_code"].as_i64()), (Some("error"), Some(3)), "{s}");
    assert!(!csv.exists());
}

/// Files under `dir`, recursively, as paths.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p.display().to_string()) }
    }
    out
}

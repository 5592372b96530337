//! `infer slide` on a tiled pyramidal TIFF (written by tests/py/make_pyramid.py from a crop of
//! HER2ST C2) gives the same spots and predictions as on the same crop as a PNG.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const GENES: [&str; 5] = ["G1", "G2", "G3", "G4", "G5"];
/// The crop wasm/build.sh uses: 3482×3192 px at (4650, 3250).
const CROP: [&str; 4] = ["4650", "3250", "3482", "3192"];

/// The random-init small spot model of tests/tests/slide.rs.
fn write_model(dir: &Path) -> PathBuf {
    let (m, card) = spot_model(&GENES, 3);
    let path = dir.join("spot.onnx");
    write_spot_model(&path, &m, &card);
    path
}

/// Crop of C2 as `<name>.tif` (tiled pyramid) and, with `png`, `<name>.png`.
fn pyramid(dir: &Path, name: &str, png: bool, extra: &[&str]) -> (PathBuf, PathBuf) {
    let (tif, png_path) = (dir.join(format!("{name}.tif")), dir.join(format!("{name}.png")));
    let mut c = Command::new(python());
    c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("py/make_pyramid.py")).arg(data("her2st/C2/5714_HE_BT_C2.jpg")).arg(&tif).arg("--crop").args(CROP).args(extra);
    if png {
        c.arg("--png").arg(&png_path);
    }
    ok(&mut c);
    (tif, png_path)
}

fn slide(model: &Path, image: &Path, out: &Path) -> Command {
    let mut c = Command::new(bin("infer"));
    c.arg("slide").arg("--model").arg(model).arg("--image").arg(image).arg("--out").arg(out).args(["--batch", "16"]);
    c
}

fn read_csv(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), "id,pixel_x,pixel_y,G1,G2,G3,G4,G5");
    lines.map(|l| l.split(',').map(String::from).collect()).collect()
}

/// Same ids and positions, predictions within 1e-5.
fn assert_same(a: &[Vec<String>], b: &[Vec<String>]) {
    assert_eq!(a.len(), b.len());
    for (ra, rb) in a.iter().zip(b) {
        assert_eq!(ra[..3], rb[..3]);
        for (x, y) in ra[3..].iter().zip(&rb[3..]) {
            let (x, y): (f32, f32) = (x.parse().unwrap(), y.parse().unwrap());
            assert!((x - y).abs() <= 1e-5, "{ra:?} vs {rb:?}");
        }
    }
}

#[test]
fn tiled_tiff_matches_png() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path());
    let (tif, png) = pyramid(dir.path(), "crop", true, &[]);
    let (big, _) = pyramid(dir.path(), "big", false, &["--bigtiff", "--compression", "none", "--tile", "128"]);

    // Grid over tissue, with a heatmap.
    let (a, b, c) = (dir.path().join("png.csv"), dir.path().join("tif.csv"), dir.path().join("big.csv"));
    ok(slide(&model, &png, &a).arg("--grid"));
    let heat = dir.path().join("heat");
    let log = ok(slide(&model, &tif, &b).args(["--grid", "--heatmap", "G2"]).arg("--heatmap-dir").arg(&heat));
    eprintln!("{log}");
    assert!(log.contains("tiled/pyramidal TIFF, levels 3482×3192, 871×798, 218×200"), "{log}");
    ok(slide(&model, &big, &c).arg("--grid"));
    let (ra, rb, rc) = (read_csv(&a), read_csv(&b), read_csv(&c));
    assert!(ra.len() > 20, "{} grid spots", ra.len());
    assert_same(&ra, &rb);
    assert_same(&ra, &rc);
    let bg = infer::image_prep::load_rgb(heat.join("G2.png")).unwrap();
    assert_eq!(bg.dimensions(), (1161, 1064));

    // Spots at the corners and edges: patches padded past the border the same way.
    let spots = dir.path().join("spots.tsv");
    std::fs::write(&spots, "x\ty\tpixel_x\tpixel_y\tselected\n1\t1\t0\t0\t1\n2\t1\t3481.9\t3191.9\t1\n3\t1\t1000.3\t10.7\t1\n4\t1\t1740.5\t1596.5\t1\n5\t1\t3400\t2000.2\t1\n").unwrap();
    let (a, b) = (dir.path().join("png-spots.csv"), dir.path().join("tif-spots.csv"));
    ok(slide(&model, &png, &a).arg("--spots").arg(&spots));
    ok(slide(&model, &tif, &b).arg("--spots").arg(&spots));
    let (ra, rb) = (read_csv(&a), read_csv(&b));
    assert_eq!(ra.len(), 5);
    assert_same(&ra, &rb);
}

#[test]
fn tiled_tiff_truncated_fails_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path());
    let (tif, _) = pyramid(dir.path(), "crop", false, &[]);
    let bytes = std::fs::read(&tif).unwrap();
    let cut = dir.path().join("cut.tif");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = dir.path().join("cut.csv");
    let err = fails(slide(&model, &cut, &out).arg("--grid"));
    assert!(err.contains("cut.tif") && err.contains("truncated"), "{err}");
    assert!(!out.exists());
}

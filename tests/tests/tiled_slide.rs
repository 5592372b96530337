//! `infer slide` on a tiled pyramidal TIFF (written by tests/py/make_pyramid.py from a crop of
//! HER2ST C2) gives the same spots and predictions as on the same crop as a PNG; the same with
//! the pyramid in SubIFDs; JPEG tiles decode as libjpeg-turbo decodes them (within rounding).

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

/// The same model whose card also gives the patch side in microns (200 µm, as `train spot`).
fn write_model_um(dir: &Path) -> PathBuf {
    let (m, mut card) = spot_model(&GENES, 3);
    if let onnx_format::card::Preprocessing::SpotImage(s) = &mut card.preprocessing {
        s.patch_side_um = Some(200.0);
    }
    let path = dir.join("spot-um.onnx");
    write_spot_model(&path, &m, &card);
    path
}

/// Crop of C2 as `<name>.tif` (tiled pyramid) and, with `png`, `<name>.png`.
fn pyramid(dir: &Path, name: &str, png: bool, extra: &[&str]) -> (PathBuf, PathBuf) {
    let (tif, png_path) = (dir.join(format!("{name}.tif")), dir.join(format!("{name}.png")));
    let mut c = Command::new(python());
    c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("py/make_pyramid.py"))
        .arg(data("her2st/C2/5714_HE_BT_C2.jpg"))
        .arg(&tif)
        .arg("--crop")
        .args(CROP)
        .args(extra);
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
    assert!(log.contains("read by tiled TIFF, levels 3482×3192, 871×798, 218×200"), "{log}");
    ok(slide(&model, &big, &c).arg("--grid"));
    let (ra, rb, rc) = (read_csv(&a), read_csv(&b), read_csv(&c));
    assert!(ra.len() > 20, "{} grid spots", ra.len());
    assert_same(&ra, &rb);
    assert_same(&ra, &rc);
    // one reader worker or three (default here: two): the same file, byte for byte
    for (workers, name) in [("1", "w1.csv"), ("3", "w3.csv")] {
        let out = dir.path().join(name);
        ok(slide(&model, &tif, &out).args(["--grid", "--workers", workers]));
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&b).unwrap(), "--workers {workers}");
    }
    let bg = infer::image_prep::load_rgb(heat.join("G2.png")).unwrap();
    // the grid (level 1, 871×798, would be too small: level 0 box-downscaled by 3) plus the legend
    let l = infer::slide::HeatmapLayout::new(1161, 1064);
    assert_eq!(bg.dimensions(), (l.width, l.height));

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

#[test]
fn subifd_pyramid_matches_png() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path());
    let (tif, png) = pyramid(dir.path(), "sub", true, &["--subifds"]);
    let t = infer::tiled::TiledTiff::open(&tif).unwrap();
    let sizes: Vec<_> = t.levels().iter().map(|l| (l.width, l.height, l.sub_ifd)).collect();
    assert_eq!(sizes, [(3482, 3192, false), (871, 798, true), (218, 200, true)]);
    let (a, b) = (dir.path().join("png.csv"), dir.path().join("sub.csv"));
    ok(slide(&model, &png, &a).arg("--grid"));
    let log = ok(slide(&model, &tif, &b).arg("--grid"));
    assert!(log.contains("read by tiled TIFF (2 SubIFD levels), levels 3482×3192, 871×798, 218×200"), "{log}");
    let (ra, rb) = (read_csv(&a), read_csv(&b));
    assert!(ra.len() > 20, "{} grid spots", ra.len());
    assert_same(&ra, &rb);
}

#[test]
fn slide_resolution_sets_patch_side() {
    // 0.4 µm/px recorded in the TIFF and 200 µm in the card: 500 px patches.
    let dir = tempfile::tempdir().unwrap();
    let (model, model_um) = (write_model(dir.path()), write_model_um(dir.path()));
    let (tif, png) = pyramid(dir.path(), "res", true, &["--mpp", "0.4"]);
    let (a, b, c) = (dir.path().join("png.csv"), dir.path().join("tif.csv"), dir.path().join("px.csv"));
    ok(slide(&model, &png, &a).args(["--grid", "--patch-side", "500"]));
    let log = ok(slide(&model_um, &tif, &b).arg("--grid"));
    assert!(log.contains("patch side 500.0 px = 200 µm at 0.4000 µm/px"), "{log}");
    let (ra, rb) = (read_csv(&a), read_csv(&b));
    assert!(ra.len() > 10, "{} grid spots", ra.len());
    assert_same(&ra, &rb);
    // Without µm in the card, the card's pixels (290) are used; a PNG has no resolution.
    let log = ok(slide(&model, &tif, &c).arg("--grid"));
    assert!(log.contains("patch 290 px"), "{log}");
    let log = ok(slide(&model_um, &png, &c).arg("--grid"));
    assert!(log.contains("patch 290 px") && !log.contains("µm/px"), "{log}");
}

#[test]
fn jpeg_tiles_match_libjpeg_decode() {
    let dir = tempfile::tempdir().unwrap();
    let decoded = dir.path().join("decoded.png");
    let (tif, _) = pyramid(dir.path(), "jpeg", false, &["--compression", "jpeg", "--decoded-png", decoded.to_str().unwrap()]);
    let mut t = infer::tiled::TiledTiff::open(&tif).unwrap();
    assert_eq!(t.levels()[0].samples, infer::tiled::Samples::YCbCr);
    assert_eq!(t.levels().len(), 3);
    // zune-jpeg (tiff crate) vs libjpeg-turbo (tifffile): IDCT and chroma upsampling round a little differently.
    let reference = infer::image_prep::load_rgb(&decoded).unwrap();
    let (w, h) = reference.dimensions();
    let ours = t.read_region(0, 0, 0, w, h).unwrap();
    let (mut over2, mut worst, mut signed) = (0usize, 0i32, [0i64; 3]);
    for (p, q) in ours.pixels().zip(reference.pixels()) {
        for c in 0..3 {
            let d = p.0[c] as i32 - q.0[c] as i32;
            over2 += (d.abs() > 2) as usize;
            worst = worst.max(d.abs());
            signed[c] += d as i64;
        }
    }
    let n = (w * h) as f64;
    eprintln!("JPEG tiles: max |diff| {worst}, {over2} samples > 2, mean signed {:?}", signed.map(|s| s as f64 / n));
    assert!(worst <= 8, "max |diff| {worst}");
    assert!((over2 as f64) < 1e-3 * n * 3.0, "{over2} samples differ by more than 2");
    assert!(signed.iter().all(|&s| (s as f64 / n).abs() < 0.5), "bias {signed:?}");
    // And the lower levels decode too (mask and heatmap come from them).
    let (small, f) = t.downscale_level(2, 1024).unwrap();
    assert_eq!((small.dimensions(), f), ((218, 200), 1));
}

/// `infer slide` through OpenSlide (`--features openslide`; scripts/test.sh turns it on).
#[cfg(feature = "openslide")]
mod openslide {
    use super::*;

    #[test]
    fn openslide_svs_and_generic_tiff() {
        let dir = tempfile::tempdir().unwrap();
        let model = write_model(dir.path());
        // An Aperio SVS (JPEG tiles): auto picks OpenSlide, which decodes with libjpeg as tifffile does.
        let decoded = dir.path().join("decoded.png");
        let (svs, _) = pyramid(
            dir.path(),
            "slide",
            false,
            &["--compression", "jpeg", "--aperio", "--mpp", "0.5", "--decoded-png", decoded.to_str().unwrap()],
        );
        let svs_path = dir.path().join("slide.svs");
        std::fs::rename(&svs, &svs_path).unwrap();
        let s = infer::openslide::OpenSlide::open(&svs_path).unwrap();
        assert_eq!(s.vendor(), "aperio");
        assert_eq!(s.mpp(), Some((0.5, 0.5)));
        let (a, b) = (dir.path().join("decoded.csv"), dir.path().join("svs.csv"));
        ok(slide(&model, &decoded, &a).arg("--grid"));
        let heat = dir.path().join("heat");
        let log = ok(slide(&model, &svs_path, &b).args(["--grid", "--heatmap", "G4"]).arg("--heatmap-dir").arg(&heat));
        assert!(log.contains("read by OpenSlide (aperio), levels 3482×3192, 871×798, 218×200"), "{log}");
        let (ra, rb) = (read_csv(&a), read_csv(&b));
        assert!(ra.len() > 20, "{} grid spots", ra.len());
        assert_same(&ra, &rb);
        let l = infer::slide::HeatmapLayout::new(1161, 1064);
        assert_eq!(infer::image_prep::load_rgb(heat.join("G4.png")).unwrap().dimensions(), (l.width, l.height));
        // Aperio's MPP = 0.5 and 200 µm in the card: 400 px patches, as the PNG with --patch-side 400.
        let (a, b) = (dir.path().join("decoded-400.csv"), dir.path().join("svs-400.csv"));
        ok(slide(&model, &decoded, &a).args(["--grid", "--patch-side", "400"]));
        let log = ok(slide(&write_model_um(dir.path()), &svs_path, &b).arg("--grid"));
        assert!(log.contains("patch side 400.0 px = 200 µm at 0.5000 µm/px"), "{log}");
        assert_same(&read_csv(&a), &read_csv(&b));

        // A lossless generic tiled TIFF forced through OpenSlide: same as the PNG of the crop.
        let (tif, png) = pyramid(dir.path(), "crop", true, &[]);
        let (a, b) = (dir.path().join("png.csv"), dir.path().join("os.csv"));
        ok(slide(&model, &png, &a).arg("--grid"));
        let log = ok(slide(&model, &tif, &b).args(["--grid", "--reader", "openslide"]));
        assert!(log.contains("read by OpenSlide (generic-tiff)"), "{log}");
        assert_same(&read_csv(&a), &read_csv(&b));

        // A truncated SVS: a clear error and no output.
        let bytes = std::fs::read(&svs_path).unwrap();
        let cut = dir.path().join("cut.svs");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let out = dir.path().join("cut.csv");
        for reader in ["auto", "openslide"] {
            let err = fails(slide(&model, &cut, &out).args(["--grid", "--reader", reader]));
            assert!(err.contains("cut.svs") && (err.contains("truncated") || err.contains("OpenSlide")), "{reader}: {err}");
            assert!(!out.exists());
        }
    }
}

//! `infer slide` end to end: a random-init small spot model exported with a card, run on the
//! skimage IHC image (grid over tissue) and on HER2ST C2 (its spot file), plus bad inputs.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const GENES: [&str; 5] = ["G1", "G2", "G3", "G4", "G5"];

fn write_model(dir: &Path) -> PathBuf {
    let (m, card) = spot_model(&GENES, 3);
    let path = dir.join("spot.onnx");
    write_spot_model(&path, &m, &card);
    path
}

/// Rows of a slide CSV, header checked.
fn read_csv(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), "id,pixel_x,pixel_y,G1,G2,G3,G4,G5");
    lines
        .map(|l| {
            let f: Vec<String> = l.split(',').map(String::from).collect();
            assert_eq!(f.len(), 8, "{l}");
            assert!(f[1..].iter().all(|v| v.parse::<f32>().unwrap().is_finite()), "{l}");
            f
        })
        .collect()
}

fn slide(model: &Path, image: &Path) -> Command {
    let mut c = Command::new(bin("infer"));
    c.arg("slide").arg("--model").arg(model).arg("--image").arg(image);
    c
}

#[test]
fn slide_grid_ihc_tract_and_ort_agree() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path());
    let ihc = data("skimage_ihc/ihc.png");
    let mut rows = Vec::new();
    for backend in ["tract", "ort"] {
        let out = dir.path().join(format!("{backend}.csv"));
        let log =
            ok(slide(&model, &ihc).args(["--grid", "--patch-side", "128", "--batch", "4", "--backend", backend]).arg("--out").arg(&out));
        eprintln!("{log}");
        let r = read_csv(&out);
        assert!(!r.is_empty() && r.len() <= 16, "{} grid spots", r.len());
        rows.push(r);
    }
    assert_eq!(rows[0].len(), rows[1].len());
    for (a, b) in rows[0].iter().zip(&rows[1]) {
        assert_eq!(a[..3], b[..3]);
        for (x, y) in a[3..].iter().zip(&b[3..]) {
            let (x, y): (f32, f32) = (x.parse().unwrap(), y.parse().unwrap());
            assert!((x - y).abs() < 1e-3, "{a:?} vs {b:?}");
        }
    }
}

#[test]
fn slide_her2st_c2_spots_with_heatmap() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path());
    let out = dir.path().join("c2.csv");
    let heat = dir.path().join("heat");
    let log = ok(slide(&model, &data("her2st/C2/5714_HE_BT_C2.jpg"))
        .arg("--spots")
        .arg(data("her2st/C2/C2_selection.tsv"))
        .args(["--batch", "16", "--heatmap", "G2", "--heatmap", "G5"])
        .arg("--heatmap-dir")
        .arg(&heat)
        .arg("--out")
        .arg(&out));
    eprintln!("{log}");
    let rows = read_csv(&out);
    assert_eq!(rows.len(), 187);
    assert_eq!(rows[0][..3], ["25x13", "6930.58", "3510.24"]);
    for g in ["G2", "G5"] {
        let png = infer::image_prep::load_rgb(heat.join(format!("{g}.png"))).unwrap();
        // the grid (the slide downscaled to at most 1500 px) above the legend
        let grid_h = png.height() - infer::slide::HeatmapLayout::new(png.width(), 0).height;
        assert!(png.width().max(grid_h) <= 1500 && png.width() > 100 && grid_h > 1000, "{:?}", png.dimensions());
    }
}

#[test]
fn slide_bad_inputs_fail_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path());
    let ihc = data("skimage_ihc/ihc.png");
    let out = dir.path().join("bad.csv");
    let heat = dir.path().join("heat");

    // Truncated JPEG copy of C2 (spots are inside, the image is cut).
    let jpg = std::fs::read(data("her2st/C2/5714_HE_BT_C2.jpg")).unwrap();
    let cut = dir.path().join("cut.jpg");
    std::fs::write(&cut, &jpg[..jpg.len() / 2]).unwrap();
    let err = fails(slide(&model, &cut).arg("--spots").arg(data("her2st/C2/C2_selection.tsv")).arg("--out").arg(&out));
    assert!(err.contains("cut.jpg") && err.contains("truncated"), "{err}");
    assert!(!out.exists());

    // Truncated PNG.
    let png = std::fs::read(&ihc).unwrap();
    let cut = dir.path().join("cut.png");
    std::fs::write(&cut, &png[..png.len() / 2]).unwrap();
    let err = fails(slide(&model, &cut).args(["--grid", "--patch-side", "128"]).arg("--out").arg(&out));
    assert!(err.contains("cut.png"), "{err}");
    assert!(!out.exists());

    // Unknown heatmap gene: close spellings listed, nothing written.
    let err = fails(
        slide(&model, &ihc)
            .args(["--grid", "--patch-side", "128", "--heatmap", "G7"])
            .arg("--heatmap-dir")
            .arg(&heat)
            .arg("--out")
            .arg(&out),
    );
    assert!(err.contains("G7") && err.contains("G1"), "{err}");
    assert!(!out.exists() && !heat.exists());

    // Spots outside the 512×512 image.
    let spots = dir.path().join("spots.tsv");
    std::fs::write(&spots, "x\ty\tpixel_x\tpixel_y\tselected\n1\t1\t100\t100\t1\n2\t1\t900.5\t100\t1\n").unwrap();
    let err = fails(slide(&model, &ihc).arg("--spots").arg(&spots).arg("--out").arg(&out));
    assert!(err.contains("outside") && err.contains("2x1"), "{err}");
    assert!(!out.exists());

    // Neither --spots nor --grid.
    fails(slide(&model, &ihc).arg("--out").arg(&out));
    assert!(!out.exists());
}

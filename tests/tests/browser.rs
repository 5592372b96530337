//! The browser page end to end in headless Chromium (`tests/js/browser.mjs`, playwright-core):
//! a random-init two-scale spot model (patches of two spot spacings) dropped on the page and the bundled
//! HER2ST example image give the same grid and clicked-spot predictions as native `infer slide`
//! (tract) within 1e-4; the grid split
//! over 3 Web Workers equals the one-worker grid exactly; bad files and a bad worker count show errors
//! on the page; nothing is requested outside 127.0.0.1; a screenshot goes to out/.
//! Needs scripts/setup.sh (chromium, node packages, wasm32 target, wasm-bindgen); fails without.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const GENES: [&str; 8] = ["ERBB2", "ESR1", "KRT19", "GAPDH", "CD74", "MGP", "COL1A1", "IGKC"];

/// The test model is a random-init two-scale CNN, as the default (`cnn-context`): 448 px patches
/// of two spot spacings (card `patch_span` 2), so the page's grid must step by half the patch side
/// to match `infer slide --grid`.
fn spot_models(dir: &Path) -> (PathBuf, PathBuf) {
    let (m, mut card) = spot_model_of(models::spot::SpotModelConfig::cnn_context(), "two-scale", &GENES, 7);
    let good = dir.join("spot.onnx");
    write_spot_model(&good, &m, &card);
    relabel(&mut card, onnx_format::Family::GeneMlp);
    let bad = dir.join("gene-family.onnx");
    write_spot_model(&bad, &m, &card);
    (good, bad)
}

#[test]
fn browser_page_matches_native_infer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let chromium = std::env::var("BIOEDGE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&chromium).exists(), "{chromium} not found: run scripts/setup.sh (installs Debian chromium)");
    assert!(Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success()), "node not found: run scripts/setup.sh");
    // wasm32 build + page into out/web (incremental; scripts/test.sh has usually just run it)
    let log = ok(Command::new("bash").arg(root.join("wasm/build.sh")));
    eprintln!("{log}");
    let dir = tempfile::tempdir().unwrap();
    let (model, bad) = spot_models(dir.path());
    let shot = root.join("out/browser.png");
    let log = ok(Command::new("node")
        .arg(root.join("tests/js/browser.mjs"))
        .arg("--model")
        .arg(&model)
        .arg("--bad-model")
        .arg(&bad)
        .arg("--infer")
        .arg(bin("infer"))
        .arg("--screenshot")
        .arg(&shot)
        .arg("--tmp")
        .arg(dir.path()));
    eprintln!("{log}");
    assert!(log.contains("browser test passed"), "{log}");
    assert!(shot.is_file());
}

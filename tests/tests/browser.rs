//! The browser page end to end in headless Chromium (`tests/js/browser.mjs`, playwright-core):
//! a random-init spot model dropped on the page and the bundled HER2ST example image give the
//! same grid and clicked-spot predictions as native `infer slide` (tract) within 1e-4; bad files
//! show errors on the page; nothing is requested outside 127.0.0.1; a screenshot goes to out/.
//! Needs scripts/setup.sh (chromium, node packages, wasm32 target, wasm-bindgen); fails without.

mod common;

use common::*;
use infer::image_prep::Preprocess;
use models::burn::prelude::*;
use models::spot::SpotModelConfig;
use onnx_format::card::{ModelCard, TensorSpec, CARD_VERSION};
use std::path::{Path, PathBuf};
use std::process::Command;

const GENES: [&str; 8] = ["ERBB2", "ESR1", "KRT19", "GAPDH", "CD74", "MGP", "COL1A1", "IGKC"];

fn spot_model(dir: &Path) -> (PathBuf, PathBuf) {
    let device = Device::flex();
    device.seed(7);
    let m = SpotModelConfig::small().with_genes(GENES.len()).init(&device);
    let mut prep = Preprocess::default().describe();
    prep["patch_side_px"] = serde_json::json!(290.0);
    let mut card = ModelCard {
        family: "histology-spot".into(),
        version: CARD_VERSION.into(),
        description: "random-init small spot model for the browser test".into(),
        inputs: vec![TensorSpec { name: "image".into(), shape: vec!["batch".into(), "3".into(), "224".into(), "224".into()], dtype: "f32".into(), meaning: "normalized patch".into() }],
        outputs: vec![TensorSpec { name: "expression".into(), shape: vec!["batch".into(), GENES.len().to_string()], dtype: "f32".into(), meaning: "log1p expression".into() }],
        genes: GENES.iter().map(|s| s.to_string()).collect(),
        preprocessing: prep,
        ..Default::default()
    };
    let export = |card: &ModelCard| onnx_format::encode(&m.export(vec![(onnx_format::CARD_KEY.into(), serde_json::to_string(card).unwrap())]));
    let good = dir.join("spot.onnx");
    std::fs::write(&good, export(&card)).unwrap();
    card.family = "gene-mlp".into();
    let bad = dir.join("gene-family.onnx");
    std::fs::write(&bad, export(&card)).unwrap();
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
    let (model, bad) = spot_model(dir.path());
    let shot = root.join("out/browser.png");
    let log = ok(Command::new("node").arg(root.join("tests/js/browser.mjs"))
        .arg("--model").arg(&model).arg("--bad-model").arg(&bad).arg("--infer").arg(bin("infer"))
        .arg("--screenshot").arg(&shot).arg("--tmp").arg(dir.path()));
    eprintln!("{log}");
    assert!(log.contains("browser test passed"), "{log}");
    assert!(shot.is_file());
}

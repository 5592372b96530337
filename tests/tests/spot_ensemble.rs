//! Spot ensembles and test-time augmentation in one ONNX file (`models::spot_ensemble`): parity
//! of burn with tract and ONNX Runtime at batch 2 and 3 from one session (symbolic batch), the
//! onnx checker and Python onnxruntime; the same for the two-scale model (central crop + pooled
//! context branch).

mod common;

use common::*;
use infer::runtime::{Backend, Options, Session, Value};
use models::burn::prelude::*;
use models::spot::{INPUT, OUTPUT, SpotModelConfig};
use models::spot_ensemble::SpotEnsemble;
use std::path::Path;
use std::process::Command;

const SIDE: usize = 32;

/// The `tiny()` config of models/src/spot.rs tests.
fn tiny() -> SpotModelConfig {
    SpotModelConfig { image_size: SIDE, ..SpotModelConfig::tiny() }
}

/// Seeding is process-wide; tests run in parallel, so model creation is serialized.
static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The two-scale `tiny()`: the main branch reads the central 16 px, the context branch the whole
/// 32 px patch pooled 2×.
fn two_scale() -> SpotModelConfig {
    SpotModelConfig { centre: SIDE / 2, context_pool: 2, ..tiny() }
}

fn ensemble_of(cfg: &SpotModelConfig, members: usize, tta: bool, seed: u64) -> (SpotEnsemble, Device) {
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex();
    device.seed(seed);
    let m = (0..members).map(|_| cfg.init(&device)).collect();
    (SpotEnsemble::new(m, tta).unwrap(), device)
}

/// `[n, 3, 32, 32]` real tissue patches (IHC image) preprocessed as in production: with noise, token
/// similarities are nearly tied and `TopK` may pick differently between runtimes.
fn images(n: usize) -> Vec<f32> {
    let img = infer::image_prep::load_rgb(data("skimage_ihc/ihc.png")).unwrap();
    let prep = infer::image_prep::Preprocess { size: SIDE as u32, ..Default::default() };
    (0..n).flat_map(|i| prep.spot(&img, 120.0 + (90 * i % 280) as f32, 150.0 + (70 * i % 230) as f32, 200.0).unwrap()).collect()
}

fn burn_forward(e: &SpotEnsemble, x: &[f32], n: usize, device: &Device) -> Vec<f32> {
    models::to_vec(e.forward(Tensor::from_data(TensorData::new(x.to_vec(), [n, 3, SIDE, SIDE]), device)))
}

#[test]
fn spot_ensemble_parity_tract_ort_dynamic_batch() {
    let cases: Vec<(usize, Vec<f32>)> = [2, 3].iter().map(|&n| (n, images(n))).collect();
    for (cfg, members, tta) in [(tiny(), 1, true), (tiny(), 2, false), (tiny(), 2, true), (two_scale(), 1, false), (two_scale(), 2, true)] {
        let (e, device) = ensemble_of(&cfg, members, tta, 31);
        let members = format!("{members} (centre {})", cfg.centre);
        let bytes = onnx_format::encode(&e.export(vec![]));
        for backend in [Backend::Tract, Backend::Ort] {
            let mut sess = Session::from_bytes(&bytes, Path::new("spot_ensemble.onnx"), backend, &Options::default()).unwrap();
            assert_eq!(sess.inputs, vec![INPUT.to_string()]);
            for (n, x) in &cases {
                let want = burn_forward(&e, x, *n, &device);
                let got = sess.run_output(&[Value::f32(&[*n, 3, SIDE, SIDE], x.clone())], OUTPUT).unwrap().into_f32().unwrap();
                assert_eq!(got.len(), n * 5);
                let diff = infer::runtime::max_abs_diff(&got, &want);
                eprintln!("spot ensemble {members} members, tta {tta}, {backend:?} batch {n}: max abs diff {diff:.2e}");
                assert!(diff <= 1e-4, "{members} members, tta {tta}, {backend:?} batch {n}: max abs diff {diff:.2e}");
            }
        }
    }
}

#[test]
fn spot_ensemble_passes_onnx_checker_and_python_onnxruntime() {
    for cfg in [tiny(), two_scale()] {
        check_with_python(&cfg);
    }
}

fn check_with_python(cfg: &SpotModelConfig) {
    let (e, device) = ensemble_of(cfg, 2, true, 32);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spot_ensemble.onnx");
    std::fs::write(&path, onnx_format::encode(&e.export(vec![]))).unwrap();
    let x = images(2);
    let case = serde_json::json!({
        "inputs": {INPUT: {"shape": [2, 3, SIDE, SIDE], "data": x}},
        "output": OUTPUT, "expected": burn_forward(&e, &x, 2, &device), "tolerance": 1e-4,
    });
    let case_path = dir.path().join("spot_ensemble.json");
    std::fs::write(&case_path, serde_json::to_vec(&case).unwrap()).unwrap();
    let report = check_onnx_py(&path, Some(&case_path));
    assert!(report.contains("\"checker\": \"ok\""), "{report}");
    eprintln!("{report}");
}

/// `infer slide` takes an ensemble with TTA unchanged (same input, output and card as one model):
/// tract and ONNX Runtime agree on every grid spot.
#[test]
fn spot_ensemble_runs_in_infer_slide() {
    let genes = ["G1", "G2", "G3"];
    let (e, mut card) = {
        let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
        let (first, card) = spot_model(&genes, 33);
        let device = Device::flex();
        let second = SpotModelConfig::small().with_genes(genes.len()).init(&device);
        (SpotEnsemble::new(vec![first, second], true).unwrap(), card)
    };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("spot_ensemble.onnx");
    let mut proto = e.export(vec![]);
    card.embed(&mut proto, &[("image", "normalized patch"), ("expression", "log1p expression")]).unwrap();
    std::fs::write(&model, onnx_format::encode(&proto)).unwrap();
    let mut rows: Vec<Vec<Vec<f32>>> = Vec::new();
    for backend in ["tract", "ort"] {
        let out = dir.path().join(format!("{backend}.csv"));
        ok(Command::new(bin("infer"))
            .args(["slide", "--grid", "--patch-side", "128", "--batch", "2", "--backend", backend])
            .arg("--model")
            .arg(&model)
            .arg("--image")
            .arg(data("skimage_ihc/ihc.png"))
            .arg("--out")
            .arg(&out));
        let text = std::fs::read_to_string(&out).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap(), "id,pixel_x,pixel_y,G1,G2,G3");
        rows.push(lines.map(|l| l.split(',').skip(1).map(|v| v.parse::<f32>().unwrap()).collect()).collect());
    }
    assert!(!rows[0].is_empty() && rows[0].len() == rows[1].len());
    for (a, b) in rows[0].iter().zip(&rows[1]) {
        assert_eq!(a[..2], b[..2]);
        assert!(a.iter().zip(b).all(|(x, y)| x.is_finite() && (x - y).abs() < 1e-3), "{a:?} vs {b:?}");
    }
}

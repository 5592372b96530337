//! The TCGN-style spot model (`models::spot`): its ONNX export runs on tract and ONNX Runtime
//! with parity to burn at batch 2 and 3 from one session (symbolic batch), and passes the onnx
//! checker and Python onnxruntime.

mod common;

use common::*;
use infer::runtime::{Backend, Options, Session, Value};
use models::burn::prelude::*;
use models::spot::{INPUT, OUTPUT, SpotModel, SpotModelConfig};
use std::path::Path;
use std::time::Instant;

const GENES: usize = 20;

/// Seeding is process-wide; tests run in parallel, so model creation is serialized.
static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn model() -> (SpotModel, Device) {
    model_of(SpotModelConfig::small())
}

fn model_of(cfg: SpotModelConfig) -> (SpotModel, Device) {
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex();
    device.seed(11);
    (cfg.with_genes(GENES).init(&device), device)
}

/// A batch `[n, 3, 224, 224]` of real tissue patches (IHC image), preprocessed as in production.
/// Real images, not noise: with noise, token similarities are nearly tied and the kNN choice of
/// `TopK` can legitimately differ between runtimes in the last float bit.
fn images(n: usize, _device: &Device) -> Vec<f32> {
    let img = infer::image_prep::load_rgb(data("skimage_ihc/ihc.png")).unwrap();
    let prep = infer::image_prep::Preprocess::default();
    (0..n).flat_map(|i| prep.spot(&img, 120.0 + (90 * i % 280) as f32, 150.0 + (70 * i % 230) as f32, 200.0).unwrap()).collect()
}

fn burn_forward(m: &SpotModel, x: &[f32], n: usize, device: &Device) -> Vec<f32> {
    models::to_vec(m.forward(Tensor::from_data(TensorData::new(x.to_vec(), [n, 3, 224, 224]), device)))
}

#[test]
fn spot_export_parity_tract_ort_dynamic_batch() {
    parity(model());
}

/// The ST-Net-like plain CNN baseline (`--config cnn`: no token graph, no attention).
#[test]
fn spot_cnn_export_parity_tract_ort() {
    let (m, device) = model_of(SpotModelConfig::cnn());
    let ops: Vec<String> = m.export(vec![]).graph.unwrap().node.iter().filter_map(|n| n.op_type.clone()).collect();
    assert!(!ops.iter().any(|o| o == "TopK" || o == "Softmax"), "{ops:?}");
    parity((m, device));
}

fn parity((m, device): (SpotModel, Device)) {
    let bytes = onnx_format::encode(&m.export(vec![]));
    let cases: Vec<(usize, Vec<f32>)> = [2, 3].iter().map(|&n| (n, images(n, &device))).collect();
    for backend in [Backend::Tract, Backend::Ort] {
        let mut sess = Session::from_bytes(&bytes, Path::new("spot.onnx"), backend, &Options::default()).unwrap();
        assert_eq!(sess.inputs, vec![INPUT.to_string()]);
        for (n, x) in &cases {
            let want = burn_forward(&m, x, *n, &device);
            let got = sess.run_output(&[Value::f32(&[*n, 3, 224, 224], x.clone())], OUTPUT).unwrap().into_f32().unwrap();
            assert_eq!(got.len(), n * GENES);
            let diff = infer::runtime::max_abs_diff(&got, &want);
            eprintln!("spot parity {backend:?} batch {n}: max abs diff {diff:.2e}");
            assert!(diff <= 1e-4, "{backend:?} batch {n}: max abs diff {diff:.2e}");
        }
    }
}

#[test]
fn spot_export_passes_onnx_checker_and_python_onnxruntime() {
    let (m, device) = model();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spot.onnx");
    std::fs::write(&path, onnx_format::encode(&m.export(vec![]))).unwrap();
    let x = images(2, &device);
    let case = serde_json::json!({
        "inputs": {INPUT: {"shape": [2, 3, 224, 224], "data": x}},
        "output": OUTPUT, "expected": burn_forward(&m, &x, 2, &device), "tolerance": 1e-4,
    });
    let case_path = dir.path().join("spot.json");
    std::fs::write(&case_path, serde_json::to_vec(&case).unwrap()).unwrap();
    let report = check_onnx_py(&path, Some(&case_path));
    assert!(report.contains("\"checker\": \"ok\""), "{report}");
    eprintln!("{report}");
}

/// Forward time per image of `small()` on CPU (burn, tract, ONNX Runtime); prints only.
#[test]
fn spot_small_cpu_forward_time() {
    let (m, device) = model();
    let bytes = onnx_format::encode(&m.export(vec![]));
    let n = 8;
    let x = images(n, &device);
    burn_forward(&m, &x, n, &device);
    let t = Instant::now();
    burn_forward(&m, &x, n, &device);
    eprintln!("spot small burn(flex): {:.1} ms/image", t.elapsed().as_secs_f64() * 1e3 / n as f64);
    for backend in [Backend::Tract, Backend::Ort] {
        let mut sess = Session::from_bytes(&bytes, Path::new("spot.onnx"), backend, &Options::default()).unwrap();
        let input = [Value::f32(&[n, 3, 224, 224], x.clone())];
        sess.run_output(&input, OUTPUT).unwrap();
        let t = Instant::now();
        sess.run_output(&input, OUTPUT).unwrap();
        eprintln!("spot small {backend:?}: {:.1} ms/image", t.elapsed().as_secs_f64() * 1e3 / n as f64);
    }
}

/// `large()` parity and CPU time (slow: `cargo test --release -p e2e --test spot_model -- --ignored`).
#[test]
#[ignore]
fn spot_large_parity_and_time() {
    let device = Device::flex();
    device.seed(12);
    let m = SpotModelConfig::large().with_genes(GENES).init(&device);
    let bytes = onnx_format::encode(&m.export(vec![]));
    let n = 2;
    let x = images(n, &device);
    let t = Instant::now();
    let want = burn_forward(&m, &x, n, &device);
    eprintln!("spot large burn(flex): {:.1} ms/image", t.elapsed().as_secs_f64() * 1e3 / n as f64);
    for backend in [Backend::Tract, Backend::Ort] {
        let mut sess = Session::from_bytes(&bytes, Path::new("spot.onnx"), backend, &Options::default()).unwrap();
        let input = [Value::f32(&[n, 3, 224, 224], x.clone())];
        sess.run_output(&input, OUTPUT).unwrap();
        let t = Instant::now();
        let got = sess.run_output(&input, OUTPUT).unwrap().into_f32().unwrap();
        let diff = infer::runtime::max_abs_diff(&got, &want);
        eprintln!("spot large {backend:?}: {:.1} ms/image, max abs diff {diff:.2e}", t.elapsed().as_secs_f64() * 1e3 / n as f64);
        assert!(diff <= 1e-4, "{backend:?}: max abs diff {diff:.2e}");
    }
}

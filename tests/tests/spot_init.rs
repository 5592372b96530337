//! Bring-your-own weights for the spot model (`models::spot_init`): a PyTorch twin of our stem
//! (tests/py/spot_stem_torch.py) with seeded random weights, saved as `.pt` (zip, legacy, and in a
//! training checkpoint) and `.safetensors` under PyTorch names, loads with a remap into a
//! `SpotModel` whose stem + patch conv then agree with PyTorch within 1e-4, its Linear head
//! transposed, while every other tensor keeps its init; and our own ONNX export seeds
//! a fresh model that then computes what the exported one did. The PyTorch test needs the torch
//! venv (scripts/setup.sh) and is skipped, saying so, only when that venv is missing.

mod common;

use common::*;
use models::burn::prelude::*;
use models::burn::store::{ModuleSnapshot, bridge};
use models::spot::{SpotModel, SpotModelConfig};
use models::spot_init::{Format, InitOptions, load_init, parse_remap};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const TOLERANCE: f32 = 1e-4;

/// Python with torch: $BIOEDGE_TORCH_PYTHON, else $BIOEDGE_CACHE/torchvenv (as `bench torch`).
fn torch_python() -> PathBuf {
    if let Some(p) = std::env::var_os("BIOEDGE_TORCH_PYTHON") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("BIOEDGE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/bioedge"));
    cache.join("torchvenv/bin/python")
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path).unwrap().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// Every tensor of the model by module path.
fn values(m: &SpotModel) -> BTreeMap<String, Vec<f32>> {
    m.collect(None, None, true)
        .into_iter()
        .map(|t| {
            let name = t.name.clone();
            (name, bridge::into_data(t).unwrap().convert::<f32>().try_into_vec::<f32>().unwrap())
        })
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn pytorch_stem_weights_load_and_match_torch() {
    let python = torch_python();
    if !python.exists() {
        eprintln!("SKIPPED: {} not found (the torch venv: scripts/setup.sh)", python.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = SpotModelConfig::small().with_genes(7);
    let pk = cfg.patch >> cfg.stem_channels.len();
    let stem: Vec<String> = cfg.stem_channels.iter().map(|c| c.to_string()).collect();
    ok(Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("py/spot_stem_torch.py"))
        .arg(dir.path())
        .args(["--stem", &stem.join(","), "--dim", &cfg.dim.to_string(), "--patch-kernel", &pk.to_string()])
        .args(["--size", &cfg.image_size.to_string(), "--genes", &cfg.num_genes.to_string(), "--batch", "2"]));
    let input = read_f32(&dir.path().join("input.f32"));
    let expected = read_f32(&dir.path().join("features.f32"));
    let fc = read_f32(&dir.path().join("fc_weight.f32"));
    let (s, g, d) = (cfg.image_size, cfg.grid(), cfg.dim);
    assert_eq!(expected.len(), 2 * d * g * g);
    let max_abs = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(max_abs > 0.1, "PyTorch features are all near zero ({max_abs}): the comparison would mean nothing");

    let remap = [r"^encoder\.(\d+)\.=stem.$1.", r"^proj\.=patch.", r"^fc\.=head."];
    let opts = InitOptions { remap: remap.iter().map(|r| parse_remap(r).unwrap()).collect(), ..Default::default() };
    let mut ckpt = opts.clone();
    ckpt.remap.insert(0, parse_remap(r"^state_dict\.=").unwrap());
    let files = [
        ("encoder.pt", Format::Pytorch, &opts),
        ("encoder_legacy.pt", Format::Pytorch, &opts),
        ("checkpoint.pt", Format::Pytorch, &ckpt),
        ("encoder.safetensors", Format::Safetensors, &opts),
    ];
    for (file, format, opts) in files {
        let device = Device::flex();
        device.seed(5);
        let fresh = cfg.init(&device);
        let before = values(&fresh);
        let (m, report) = load_init(fresh, &dir.path().join(file), opts).unwrap_or_else(|e| panic!("{file}: {e}"));
        println!("{file}: {report}");
        assert_eq!(report.format, format);
        assert!(report.pytorch_layout, "{file}: {report}");
        assert_eq!(report.unused, ["aux.bias", "aux.weight"], "{file}");

        // stem + patch conv as PyTorch computes them
        let x = Tensor::<4>::from_data(TensorData::new(input.clone(), [2, 3, s, s]), &device);
        let got = models::to_vec(m.stem_features(x.clone()));
        let diff = max_diff(&got, &expected);
        println!("{file}: stem + patch conv differ from PyTorch by {diff:e} (max |feature| {max_abs})");
        assert!(diff <= TOLERANCE, "{file}: stem + patch conv differ from PyTorch by {diff:e}");

        let after = values(&m);
        // the Linear head came through transposed: burn [in, out] is PyTorch's [out, in]ᵀ
        let head = &after["head.weight"];
        for o in 0..cfg.num_genes {
            for i in 0..d {
                assert_eq!(head[i * cfg.num_genes + o], fc[o * d + i], "{file}: head.weight[{i}, {o}]");
            }
        }
        // LayerNorm weight/bias arrived as gamma/beta, and everything else kept its init
        for (name, v) in &after {
            let from_file = name.starts_with("stem.") || name.starts_with("patch.") || name.starts_with("head.");
            assert_eq!(report.loaded.contains(name), from_file, "{file}: {name} in {report}");
            assert_eq!(report.random_init.contains(name), !from_file, "{file}: {name}");
            assert_eq!(v == &before[name], !from_file, "{file}: {name} changed = {}", v != &before[name]);
        }
        assert!(report.loaded.iter().any(|n| n == "stem.1.norm.gamma") && report.loaded.iter().any(|n| n == "stem.0.norm.beta"));
        // the model still runs end to end
        assert_eq!(m.forward(x).dims(), [2, cfg.num_genes]);
    }

    // without the remap nothing matches: a clear error, no panic
    let err = load_init(cfg.init(&Device::flex()), &dir.path().join("encoder.pt"), &InitOptions::default()).unwrap_err().to_string();
    assert!(err.contains("no tensor") && err.contains("encoder.0.conv.weight"), "{err}");
    // a .pt cut short is refused with the file's name
    let bytes = std::fs::read(dir.path().join("encoder.pt")).unwrap();
    let cut = dir.path().join("cut.pt");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_init(cfg.init(&Device::flex()), &cut, &opts).unwrap_err().to_string();
    println!("half a .pt: {err}");
    assert!(err.contains("cut.pt"), "{err}");
}

#[test]
fn onnx_export_seeds_a_fresh_model() {
    let cfg = SpotModelConfig { stem_channels: vec![8, 8], patch: 8, depth: 2, ..SpotModelConfig::tiny() };
    seed_from_own_export(&cfg);
    // the two-scale model: the context branch's tensors map back too
    seed_from_own_export(&SpotModelConfig { centre: 16, context_pool: 2, knn_k: 2, ..cfg });
}

fn seed_from_own_export(cfg: &SpotModelConfig) {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    device.seed(1);
    let trained = cfg.init(&device);
    let path = dir.path().join("spot.onnx");
    std::fs::write(&path, onnx_format::encode(&trained.export(vec![]))).unwrap();

    device.seed(2);
    let fresh = cfg.init(&device);
    let x = Tensor::<4>::random([3, 3, 32, 32], models::burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let want = models::to_vec(trained.forward(x.clone()));
    assert!(max_diff(&want, &models::to_vec(fresh.forward(x.clone()))) > 1e-3, "the two seeds give the same model");

    let opts = InitOptions { allow_partial: false, ..Default::default() };
    let (m, report) = load_init(fresh, &path, &opts).unwrap();
    println!("{report}");
    assert_eq!(report.format, Format::Onnx);
    assert!(!report.pytorch_layout && report.random_init.is_empty());
    assert_eq!(report.loaded_params, report.total_params);
    assert_eq!(values(&m), values(&trained));
    let diff = max_diff(&want, &models::to_vec(m.forward(x)));
    assert!(diff <= 1e-6, "outputs differ by {diff:e}");
}

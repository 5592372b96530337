//! Shared helpers: binaries, data paths, a trained-model fixture built once per test binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// `target/<profile>/` next to this test executable, where `train` and `infer` are built.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let p = dir.join(name);
    assert!(p.exists(), "{} not built: run `cargo build --release --workspace` first (scripts/test.sh does)", p.display());
    p
}

pub fn data(rel: &str) -> PathBuf {
    let root = std::env::var_os("BIOEDGE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    root.join(rel)
}

pub fn python() -> PathBuf {
    std::env::var_os("BIOEDGE_PYTHON").map(PathBuf::from).expect("BIOEDGE_PYTHON not set: run the tests through scripts/test.sh")
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    out
}

pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{:?} failed:\n{}\n{}", cmd, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Expect failure; return stderr.
pub fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(!out.status.success(), "{:?} should have failed", cmd);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "panic instead of an error: {err}");
    err
}

pub struct Models {
    pub dir: PathBuf,
    /// GCN exported with the dense adjacency (auto choice at 300 genes).
    pub gcn: PathBuf,
    /// The same kind of GCN exported with Gather + ScatterND message passing.
    pub gcn_scatter: PathBuf,
    pub mlp: PathBuf,
}

pub fn leukemia() -> (PathBuf, PathBuf) {
    (data("gseapy_leukemia/Leukemia_hgu95av2.trim.txt.gz"), data("gseapy_leukemia/Leukemia.cls"))
}

/// Small GCN and MLP trained once on Leukemia (300 genes, few epochs) for the other tests.
pub fn models() -> &'static Models {
    static M: OnceLock<Models> = OnceLock::new();
    M.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("bioedge-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (expr, cls) = leukemia();
        let graph = data("gene_graphs/genemania.adjlist.gz");
        let mut paths = Vec::new();
        for (fam, name, mp) in [("gene-gcn", "gcn", "auto"), ("gene-gcn", "gcn-scatter", "scatter-nd"), ("gene-mlp", "mlp", "auto")] {
            let out = dir.join(format!("{name}.onnx"));
            ok(Command::new(bin("train"))
                .args([fam, "--genes", "300", "--epochs", "40", "--patience", "15", "--channels", "8", "--num-layer", "2", "--train-size", "24", "--message-passing", mp])
                .arg("--expression").arg(&expr).arg("--cls").arg(&cls).arg("--graph").arg(&graph).arg("--out").arg(&out));
            paths.push(out);
        }
        Models { dir, gcn: paths[0].clone(), gcn_scatter: paths[1].clone(), mlp: paths[2].clone() }
    })
}

/// A random-init small histology spot model (patch side 290 px) and its card, for `infer slide`
/// and browser tests.
pub fn spot_model(genes: &[&str], seed: u64) -> (models::spot::SpotModel, onnx_format::card::ModelCard) {
    use models::burn::prelude::Device;
    use onnx_format::card::{CARD_VERSION, ModelCard, TensorSpec};
    let device = Device::flex();
    device.seed(seed);
    let m = models::spot::SpotModelConfig::small().with_genes(genes.len()).init(&device);
    let mut prep = infer::image_prep::Preprocess::default().describe();
    prep["patch_side_px"] = serde_json::json!(290.0);
    let card = ModelCard {
        family: "histology-spot".into(),
        version: CARD_VERSION.into(),
        description: "random-init small spot model for tests".into(),
        inputs: vec![TensorSpec { name: "image".into(), shape: vec!["batch".into(), "3".into(), "224".into(), "224".into()], dtype: "f32".into(), meaning: "normalized patch".into() }],
        outputs: vec![TensorSpec { name: "expression".into(), shape: vec!["batch".into(), genes.len().to_string()], dtype: "f32".into(), meaning: "log1p expression".into() }],
        genes: genes.iter().map(|s| s.to_string()).collect(),
        preprocessing: prep,
        ..Default::default()
    };
    (m, card)
}

/// Export `m` with `card` to `path`.
pub fn write_spot_model(path: &Path, m: &models::spot::SpotModel, card: &onnx_format::card::ModelCard) {
    let bytes = onnx_format::encode(&m.export(vec![(onnx_format::CARD_KEY.into(), serde_json::to_string(card).unwrap())]));
    std::fs::write(path, bytes).unwrap();
}

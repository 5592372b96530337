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
    cmd.output().expect("spawn")
}

pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{:?} failed:\n{}\n{}", cmd, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Runs `tests/py/check_onnx.py` on `model` (the official onnx checker, and Python onnxruntime
/// against `case` when given); returns its report.
pub fn check_onnx_py(model: &Path, case: Option<&Path>) -> String {
    let mut c = Command::new(python());
    c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("py/check_onnx.py")).arg(model);
    if let Some(case) = case {
        c.arg(case);
    }
    ok(&mut c)
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
        // both message-passing forms of the GCN (auto picks the sparse one for 300 genes)
        for (fam, name, mp) in [("gene-gcn", "gcn", "dense"), ("gene-gcn", "gcn-scatter", "scatter-nd"), ("gene-mlp", "mlp", "auto")] {
            let out = dir.join(format!("{name}.onnx"));
            ok(Command::new(bin("train"))
                .args([
                    fam,
                    "--genes",
                    "300",
                    "--epochs",
                    "40",
                    "--patience",
                    "15",
                    "--channels",
                    "8",
                    "--num-layer",
                    "2",
                    "--train-size",
                    "24",
                    "--message-passing",
                    mp,
                ])
                .arg("--expression")
                .arg(&expr)
                .arg("--cls")
                .arg(&cls)
                .arg("--graph")
                .arg(&graph)
                .arg("--out")
                .arg(&out));
            paths.push(out);
        }
        Models { dir, gcn: paths[0].clone(), gcn_scatter: paths[1].clone(), mlp: paths[2].clone() }
    })
}

/// A random-init small histology spot model (patch side 290 px) and its card, for `infer slide`
/// and browser tests.
pub fn spot_model(genes: &[&str], seed: u64) -> (models::spot::SpotModel, onnx_format::card::ModelCard) {
    spot_model_of(models::spot::SpotModelConfig::small(), "small", genes, seed)
}

/// [`spot_model`] of another config: the card's input size is the config's, and its patch spans
/// the config's spot spacings of 290 px each.
pub fn spot_model_of(
    cfg: models::spot::SpotModelConfig,
    name: &str,
    genes: &[&str],
    seed: u64,
) -> (models::spot::SpotModel, onnx_format::card::ModelCard) {
    use models::burn::prelude::Device;
    use onnx_format::card::{Family, ModelCard, Preprocessing, SpotImage};
    let device = Device::flex();
    device.seed(seed);
    let cfg = cfg.with_genes(genes.len());
    let m = cfg.init(&device);
    let spot = SpotImage {
        image: infer::image_prep::Preprocess { size: cfg.image_size as u32, ..Default::default() }.to_card(),
        patch_side_um: None,
        patch_side_px: [("test".to_string(), 290.0 * cfg.patch_span())].into_iter().collect(),
        patch_side: "fixed for tests".into(),
        patch_span: cfg.patch_span(),
        targets: "log1p expression".into(),
    };
    let about = format!("random-init {name} spot model for tests");
    let mut card = ModelCard::new(Family::SpotExpression, about, Preprocessing::SpotImage(spot));
    card.genes = genes.iter().map(|s| s.to_string()).collect();
    (m, card)
}

/// Export `m` with `card` to `path`.
pub fn write_spot_model(path: &Path, m: &models::spot::SpotModel, card: &onnx_format::card::ModelCard) {
    let mut proto = m.export(vec![]);
    card.clone().embed(&mut proto, &[("image", "normalized patch"), ("expression", "log1p expression")]).unwrap();
    std::fs::write(path, onnx_format::encode(&proto)).unwrap();
}

/// Copy the model at `from` to `to` with its card changed by `edit` (graph inputs/outputs and
/// their meanings kept).
pub fn rewrite_card(from: &Path, to: &Path, edit: impl FnOnce(&mut onnx_format::card::ModelCard)) {
    let mut m = onnx_format::decode(&std::fs::read(from).unwrap(), "m").unwrap();
    let mut card = onnx_format::card_of(&m, "m").unwrap();
    let meanings: Vec<(String, String)> = card.inputs.iter().chain(&card.outputs).map(|s| (s.name.clone(), s.meaning.clone())).collect();
    edit(&mut card);
    let refs: Vec<(&str, &str)> = meanings.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    card.embed(&mut m, &refs).unwrap();
    std::fs::write(to, onnx_format::encode(&m)).unwrap();
}

/// `card` as a well-formed card of another family (for "wrong model family" tests): the
/// family, a preprocessing of its kind, and names where that family needs them.
pub fn relabel(card: &mut onnx_format::card::ModelCard, family: onnx_format::Family) {
    use onnx_format::card::*;
    let text = || "test".to_string();
    card.family = family;
    card.preprocessing = match family.preprocessing_kind() {
        "expression" => {
            Preprocessing::Expression(Expression { log2: false, floor: 1.0, steps: text(), missing_genes: text(), input_units: text() })
        }
        "node-features" => Preprocessing::NodeFeatures(NodeFeatures { row_normalize: true, self_loops: text(), normalization: text() }),
        "lookup" => Preprocessing::Lookup(Lookup { ids: text() }),
        "molecule" => Preprocessing::Molecule(infer::mol::card_preprocessing()),
        "spot-image" => Preprocessing::SpotImage(SpotImage {
            image: infer::image_prep::Preprocess::default().to_card(),
            patch_side_um: None,
            patch_side_px: Default::default(),
            patch_side: text(),
            patch_span: 1.0,
            targets: text(),
        }),
        k => panic!("relabel to {k} not supported"),
    };
    if card.genes.is_empty() {
        card.genes = vec!["G1".into()];
    }
    if card.classes.is_empty() {
        card.classes = vec!["c0".into()];
    }
}

/// A node classifier's export with a node-classifier card (`classes` classes named `c0`, `c1`, ...).
pub fn with_node_card(mut m: onnx_format::pb::ModelProto, family: onnx_format::Family, classes: usize) -> Vec<u8> {
    use onnx_format::card::{ModelCard, NodeFeatures, Preprocessing};
    let prep = NodeFeatures { row_normalize: true, self_loops: "re-added".into(), normalization: "inside".into() };
    let mut card = ModelCard::new(family, "test", Preprocessing::NodeFeatures(prep));
    card.classes = (0..classes).map(|c| format!("c{c}")).collect();
    card.embed(&mut m, &[("x", "features"), ("edge_index", "edges"), ("probabilities", "p"), ("logits", "l")]).unwrap();
    onnx_format::encode(&m)
}

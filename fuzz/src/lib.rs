//! The fuzz targets' bodies, one function per parser, shared by the cargo-fuzz binaries
//! (`fuzz_targets/`, nightly) and the workspace test that replays every committed crash input
//! (`tests/tests/fuzz_regressions.rs`, stable). Inputs go through files where the readers take a
//! path; resource limits are lowered so a declared size the readers accept stays within
//! libFuzzer's malloc limit.

use infer::ModelCard;
use infer::chem;
use infer::data::gmt;
use infer::data::{ReadOptions, read_expression, read_expression_with_report};
use infer::image_prep::{self, Preprocess};
use infer::runtime::{Backend, Options, Session};
use infer::tiled::TiledTiff;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// Every target, by name.
pub const TARGETS: [&str; 12] = ["smiles", "gmt", "table", "cls", "planetoid", "spots", "card", "onnx", "hdf5", "tiff", "image", "mol_csv"];

/// Runs target `name` on `data`; `false` for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    init();
    match name {
        "smiles" => smiles(data),
        "gmt" => gmt(data),
        "table" => table(data),
        "cls" => cls(data),
        "planetoid" => planetoid(data),
        "spots" => spots(data),
        "card" => card(data),
        "onnx" => onnx(data),
        "hdf5" => hdf5(data),
        "tiff" => tiff(data),
        "image" => image(data),
        "mol_csv" => mol_csv(data),
        _ => return false,
    }
    true
}

/// SMILES → featurized molecule: any string is an error or a consistent graph.
pub fn smiles(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(m) = chem::featurize(s) {
        assert_eq!(m.features.len(), m.num_atoms * 75);
        assert_eq!(m.elements.len(), m.num_atoms);
        assert_eq!(m.bond_orders.len(), m.bonds.len());
        assert!(m.bonds.iter().all(|&(i, j)| i < j && (j as usize) < m.num_atoms));
        assert!(m.features.iter().all(|v| v.is_finite()));
        let _ = chem::scaffold_key(&m);
    }
}

/// MSigDB GMT gene sets (plain and gzipped).
pub fn gmt(data: &[u8]) {
    let (name, bytes) = match data.first() {
        Some(b) if b & 1 == 1 => ("sets.gmt.gz", gzip(&data[1..])),
        _ => ("sets.gmt", data.get(1..).unwrap_or_default().to_vec()),
    };
    let p = file(name, &bytes);
    if let Ok((sets, _)) = gmt::read_gmt(&p) {
        let index = gmt::Memberships::new(&sets);
        assert_eq!(index.num_sets(), sets.len());
        let _ = index.sets_of_genes();
    }
}

/// Expression tables by file name: CSV, TSV, GSEA `.txt`/`.gct`, plain or gzipped, with or
/// without a label column.
pub fn table(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else { return };
    let ext = ["csv", "tsv", "txt", "gct"][(sel & 3) as usize];
    let (name, bytes) = if sel & 4 != 0 { (format!("x.{ext}.gz"), gzip(rest)) } else { (format!("x.{ext}"), rest.to_vec()) };
    let p = file(&name, &bytes);
    let opts = ReadOptions { label_column: (sel & 8 != 0).then(|| "label".to_string()), cls: None };
    if let Ok((m, _)) = read_expression_with_report(&p, &opts) {
        m.check_shape().unwrap();
        assert_eq!(m.values.len(), m.samples.len() * m.genes.len());
        if let Some(l) = &m.labels {
            assert_eq!(l.len(), m.samples.len());
        }
    }
}

/// GSEA categorical `.cls` labels.
pub fn cls(data: &[u8]) {
    let p = file("x.cls", data);
    let _ = infer::data::gsea::read_cls(&p);
}

/// Planetoid TSV files (edges, COO features, labels, splits), split from one input at 0xFF.
pub fn planetoid(data: &[u8]) {
    let p = parts(data, 4);
    for (suffix, bytes) in [".edges.tsv", ".features.coo.tsv", ".labels.tsv", ".splits.tsv"].iter().zip(&p) {
        file(&format!("g{suffix}"), bytes);
    }
    let prefix = scratch().join("g");
    if let Ok(d) = infer::nodes::read_planetoid(&prefix) {
        assert_eq!(d.features.len(), d.num_nodes * d.num_features);
        assert_eq!(d.labels.len(), d.num_nodes);
        let (s, t) = d.edge_index();
        assert!(s.iter().chain(&t).all(|&i| i >= 0 && (i as usize) < d.num_nodes));
    }
}

/// Spot files: HER2ST `*_selection.tsv` and Visium `tissue_positions`.
pub fn spots(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else { return };
    if sel & 1 == 0 {
        let p = file("x_selection.tsv", rest);
        if let Ok((spots, _)) = infer::spots::read_spot_file(&p) {
            assert!(spots.iter().all(|s| s.pixel_x.is_finite() && s.pixel_y.is_finite()));
        }
    } else {
        let p = file("tissue_positions.csv", rest);
        let _ = infer::spots::read_visium_positions(&p, 0.5);
    }
}

/// The model card JSON: parse, check, and a round trip of what parses.
pub fn card(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(card) = ModelCard::from_json(s) {
        let _ = card.check();
        let json = serde_json::to_string(&card).unwrap();
        let again = ModelCard::from_json(&json).unwrap();
        assert_eq!(serde_json::to_string(&again).unwrap(), json);
    }
}

/// ONNX bytes: decode, the embedded card, and a tract session load (the `infer` load path).
pub fn onnx(data: &[u8]) {
    init();
    if let Ok(m) = onnx_format::decode(data, "fuzz.onnx") {
        let _ = onnx_format::card_of(&m, "fuzz.onnx");
        let _ = onnx_format::card::graph_io(&m);
    }
    let opts = Options { threads: 1, ..Options::default() };
    let _ = Session::from_bytes(data, Path::new("fuzz.onnx"), Backend::Tract, &opts);
}

/// HDF5 and h5ad files through the readers (the HDF5 C library parses the container).
pub fn hdf5(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else { return };
    let name = if sel & 1 == 0 { "x.h5ad" } else { "x.h5" };
    let p = file(name, rest);
    if let Ok(m) = read_expression(&p, &ReadOptions::default()) {
        assert_eq!(m.values.len(), m.samples.len() * m.genes.len());
    }
    if sel & 1 == 0 {
        let _ = infer::data::h5ad::obs_columns(&p);
        let _ = infer::data::h5ad::read_obsm(&p, "X_pca");
        let _ = infer::data::h5ad::read_obsp(&p, "connectivities");
    }
}

/// The tiled/pyramidal TIFF reader: open, then a region and a downscale of each level.
pub fn tiff(data: &[u8]) {
    let p = file("x.tif", data);
    let Ok(mut t) = TiledTiff::open(&p) else { return };
    for level in 0..t.levels().len().min(4) {
        let _ = t.read_region(level, 0, 0, 64, 64);
        let _ = t.downscale_level(level, 64);
    }
}

/// JPEG/PNG/TIFF decode of a whole image, then a spot crop and the model's tensor.
pub fn image(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else { return };
    let name = ["x.png", "x.jpg", "x.tif", "x.bmp"][(sel & 3) as usize];
    let Ok(img) = image_prep::decode_rgb(rest, Path::new(name)) else { return };
    let (w, h) = img.dimensions();
    let side = 1.0 + (sel >> 2) as f32;
    let prep = Preprocess::default();
    let _ = prep.spot(&img, w as f32 / 2.0, h as f32 / 2.0, side);
    let _ = image_prep::crop_square(&img, -side, h as f32 + side, side * 3.0);
}

/// The `infer mol` input: a SMILES table read row by row, each SMILES featurized.
pub fn mol_csv(data: &[u8]) {
    let p = file("mols.csv", data);
    let Ok(mut r) = infer::mol::TableReader::open(&p) else { return };
    let col = r.header.iter().position(|h| h == "smiles").unwrap_or(0);
    while let Ok(Some(row)) = r.next_row() {
        assert_eq!(row.len(), r.header.len());
        let _ = infer::chem::featurize(&row[col]);
    }
}

static INIT: Once = Once::new();

/// Lowers the resource limits once per process (the readers' checks run against these).
pub fn init() {
    INIT.call_once(|| {
        // libFuzzer's hook aborts on any panic; a panic the code under test catches and reports
        // as an error (bioedge_error::catch_panic around tract) is not a finding
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !infer::error::panic_is_caught() {
                hook(info)
            }
        }));
        // SAFETY: called once, before any reader thread exists.
        unsafe {
            std::env::set_var("BIOEDGE_MAX_VALUES", (1u64 << 24).to_string());
            std::env::set_var("BIOEDGE_MAX_PIXELS", (1u64 << 22).to_string());
            std::env::set_var("BIOEDGE_MAX_SPOTS", (1u64 << 16).to_string());
        }
    });
}

/// A scratch folder of this process (RAM-backed when /dev/shm exists).
pub fn scratch() -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let dir = base.join(
        format!("bioedge-fuzz-{}-{:?}", std::process::id(), std::thread::current().id())
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', ""),
    );
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `data` to `<scratch>/<name>` and returns the path.
pub fn file(name: &str, data: &[u8]) -> PathBuf {
    init();
    let p = scratch().join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// Gzips `data` (so the readers' `.gz` path sees the same bytes).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Splits `data` into `n` parts at the byte 0xFF (missing parts are empty).
pub fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = data.splitn(n, |&b| b == 0xFF).collect();
    v.resize(n, &[]);
    v
}

//! `infer slide --results-dir DIR`: one folder for the results of many slides, WSInfer's layout
//! (`wsinfer run --results-dir`), one file per slide and kind, named by the slide's file stem:
//!
//! ```text
//! DIR/
//! ├── model-outputs-csv/<stem>.csv          id, pixel x/y, one column per gene
//! ├── model-outputs-geojson/<stem>.geojson  QuPath objects
//! ├── model-outputs-h5ad/<stem>.h5ad        AnnData (builds with HDF5, the default)
//! ├── heatmaps/<stem>_<GENE>.png            one per --heatmap GENE
//! └── run_metadata_<stem>.json              written last: the slide is finished
//! ```
//!
//! Each file is written whole or not at all (a temporary file renamed into place); the run
//! metadata comes after every other file of the slide, so its presence marks a finished slide.
//! A second run over the same folder refuses a slide that has results ([`Existing::Refuse`]),
//! unless `--skip-existing` (a finished slide is skipped and an unfinished one redone: a cohort
//! job can simply be run again) or `--overwrite` (everything redone). The metadata
//! ([`run_metadata`]) holds the model's SHA-256 (file and card), the tool and runtime versions,
//! every parameter, the timings and the outputs.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// tract's version (the `tract-onnx` pin of the workspace; a test holds it to `Cargo.lock`).
pub const TRACT_VERSION: &str = "0.23.9";
/// The `ort` crate's version (the workspace pin; a test holds it to `Cargo.lock`).
pub const ORT_CRATE_VERSION: &str = "2.0.0-rc.15";

/// Folder of the CSV outputs.
pub const CSV_DIR: &str = "model-outputs-csv";
/// Folder of the GeoJSON outputs.
pub const GEOJSON_DIR: &str = "model-outputs-geojson";
/// Folder of the AnnData outputs.
pub const H5AD_DIR: &str = "model-outputs-h5ad";
/// Folder of the heatmaps.
pub const HEATMAP_DIR: &str = "heatmaps";

/// What to do with a slide that already has results in the folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Existing {
    /// Stop with an error (exit code 2), nothing written.
    #[default]
    Refuse,
    /// Skip a finished slide (its run metadata exists, for this same slide); redo an unfinished one.
    Skip,
    /// Redo the slide, replacing its files.
    Overwrite,
}

impl Existing {
    /// The option that asks for it.
    pub fn name(self) -> &'static str {
        match self {
            Existing::Refuse => "refuse",
            Existing::Skip => "skip-existing",
            Existing::Overwrite => "overwrite",
        }
    }
}

/// A file name made of letters, digits, `-`, `_` and `.` only (others become `_`).
pub fn safe_name(g: &str) -> String {
    g.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' }).collect()
}

/// Where one slide's results go in a results folder.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultsLayout {
    /// The results folder.
    pub dir: PathBuf,
    /// The slide's file stem (its file name without the last extension).
    pub stem: String,
}

impl ResultsLayout {
    /// The layout for `image` in `dir`.
    pub fn new(dir: &Path, image: &Path) -> Result<ResultsLayout> {
        let stem = image.file_stem().map(|s| s.to_string_lossy().into_owned()).filter(|s| !s.is_empty() && !s.starts_with('.'));
        let stem = stem.ok_or_else(|| Error::Input(format!("{}: no file name to name the results by", image.display())))?;
        Ok(ResultsLayout { dir: dir.to_path_buf(), stem })
    }
    /// `DIR/model-outputs-csv/<stem>.csv`.
    pub fn csv(&self) -> PathBuf {
        self.dir.join(CSV_DIR).join(format!("{}.csv", self.stem))
    }
    /// `DIR/model-outputs-geojson/<stem>.geojson`.
    pub fn geojson(&self) -> PathBuf {
        self.dir.join(GEOJSON_DIR).join(format!("{}.geojson", self.stem))
    }
    /// `DIR/model-outputs-h5ad/<stem>.h5ad`.
    pub fn h5ad(&self) -> PathBuf {
        self.dir.join(H5AD_DIR).join(format!("{}.h5ad", self.stem))
    }
    /// `DIR/heatmaps/<stem>_<GENE>.png` (the gene made file-name safe).
    pub fn heatmap(&self, gene: &str) -> PathBuf {
        self.dir.join(HEATMAP_DIR).join(format!("{}_{}.png", self.stem, safe_name(gene)))
    }
    /// `DIR/run_metadata_<stem>.json`.
    pub fn metadata(&self) -> PathBuf {
        self.dir.join(format!("run_metadata_{}.json", self.stem))
    }
    /// The table outputs of this build: CSV, GeoJSON and (with HDF5) h5ad.
    pub fn outputs(&self) -> Vec<PathBuf> {
        let mut v = vec![self.csv(), self.geojson()];
        if cfg!(feature = "hdf5") {
            v.push(self.h5ad());
        }
        v
    }
    /// `path` relative to the folder (as the metadata lists it).
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.dir).unwrap_or(path).display().to_string()
    }
}

/// What the folder already holds for a slide.
#[derive(Debug, Clone, PartialEq)]
pub enum Prior {
    /// Nothing.
    None,
    /// A finished run: its metadata.
    Finished(serde_json::Value),
    /// Files of an unfinished run (no metadata).
    Partial(Vec<PathBuf>),
}

/// What `layout`'s folder holds for its slide; `files` are the slide's other outputs.
pub fn prior(layout: &ResultsLayout, files: &[PathBuf]) -> Result<Prior> {
    let meta = layout.metadata();
    if std::fs::symlink_metadata(&meta).is_ok() {
        let text = std::fs::read_to_string(&meta).map_err(|e| Error::io(&meta, e))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::format(&meta, format!("not the JSON run metadata infer writes: {e}")))?;
        return Ok(Prior::Finished(v));
    }
    let there: Vec<PathBuf> = files.iter().filter(|p| std::fs::symlink_metadata(p).is_ok()).cloned().collect();
    Ok(if there.is_empty() { Prior::None } else { Prior::Partial(there) })
}

/// An error unless the finished run `meta` was of `image` (two slides of one stem in different
/// folders would share the results' names).
pub fn check_same_slide(meta: &serde_json::Value, image: &Path, metadata: &Path) -> Result<()> {
    let recorded = meta["slide"]["canonical_path"].as_str().unwrap_or("");
    let here = canonical(image);
    if recorded != here {
        return Err(Error::Input(format!(
            "{} is the run metadata of another slide ({}), not {}: two slides share the stem; give them different --results-dir",
            metadata.display(),
            if recorded.is_empty() { "unknown" } else { recorded },
            here
        )));
    }
    Ok(())
}

/// The absolute path of `p` with links resolved (as given when that fails).
pub fn canonical(p: &Path) -> String {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string()
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The model card JSON as stored in the ONNX file (`metadata_props["model_card"]`), if any.
pub fn stored_card(model_bytes: &[u8]) -> Option<String> {
    let m = onnx_format::decode(model_bytes, "").ok()?;
    m.metadata_props.iter().find(|p| p.key.as_deref() == Some(onnx_format::CARD_KEY)).and_then(|p| p.value.clone())
}

/// `t` as ISO 8601 UTC to the second, e.g. `2026-12-03T15:10:00Z`.
pub fn utc_iso(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil from days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// The tool and runtime versions for the run metadata.
pub fn versions(backend: crate::Backend) -> serde_json::Value {
    let mut v = serde_json::json!({
        "bioedge_infer": env!("CARGO_PKG_VERSION"),
        "tract": TRACT_VERSION,
        "ort_crate": ORT_CRATE_VERSION,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    });
    if backend == crate::Backend::Ort {
        // the library actually loaded (its resolved file name carries the version, e.g. libonnxruntime.so.1.31.1)
        v["onnxruntime_library"] = match crate::runtime::ort_library_path() {
            Ok(p) => serde_json::json!(canonical(&p)),
            Err(_) => serde_json::Value::Null,
        };
    }
    v
}

/// The run metadata document: `tool` (name, versions), `model` (path, SHA-256 of the file and
/// of its stored card, family, genes), `slide`, `parameters`, `timings`, `provider`, `outputs`
/// (relative to the folder), `started_utc` / `finished_utc`. Built by [`crate::slide::run`].
pub fn run_metadata(parts: serde_json::Map<String, serde_json::Value>) -> String {
    let mut s = serde_json::to_string_pretty(&serde_json::Value::Object(parts)).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slide_results_layout_names_and_helpers() {
        let l = ResultsLayout::new(Path::new("res"), Path::new("/data/slides/TCGA-01.svs")).unwrap();
        assert_eq!(l.csv(), Path::new("res/model-outputs-csv/TCGA-01.csv"));
        assert_eq!(l.geojson(), Path::new("res/model-outputs-geojson/TCGA-01.geojson"));
        assert_eq!(l.h5ad(), Path::new("res/model-outputs-h5ad/TCGA-01.h5ad"));
        assert_eq!(l.heatmap("HLA-A/B"), Path::new("res/heatmaps/TCGA-01_HLA-A_B.png"));
        assert_eq!(l.metadata(), Path::new("res/run_metadata_TCGA-01.json"));
        assert_eq!(l.relative(&l.csv()), "model-outputs-csv/TCGA-01.csv");
        assert!(ResultsLayout::new(Path::new("res"), Path::new("/")).is_err());
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(utc_iso(std::time::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(utc_iso(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_310_245)), "2026-12-03T15:04:05Z");
        assert_eq!(utc_iso(std::time::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn slide_results_versions_match_cargo_lock() {
        let lock = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock")).unwrap();
        for (name, version) in [("tract-onnx", TRACT_VERSION), ("ort", ORT_CRATE_VERSION)] {
            assert!(lock.contains(&format!("name = \"{name}\"\nversion = \"{version}\"\n")), "{name} {version} is not in Cargo.lock");
        }
    }
}

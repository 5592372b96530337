//! What every `train` subcommand shares: the export step. An export is verified on tract and
//! ONNX Runtime against burn, then exactly the verified graph is written with its card.

use crate::verify::Parity;
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use onnx_format::ModelCard;
use onnx_format::pb::ModelProto;
use std::path::{Path, PathBuf};

/// Arguments every training command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// `cpu`, or `gpu`/`cuda` (build with `--features wgpu`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// The ONNX file to write (with its model card).
    #[arg(long)]
    pub out: PathBuf,
    /// Parity tolerance: max abs difference between burn and tract / ONNX Runtime (default per command).
    #[arg(long)]
    pub tolerance: Option<f64>,
}

impl CommonArgs {
    pub fn tolerance_or(&self, default: f64) -> f64 {
        self.tolerance.unwrap_or(default)
    }
}

/// An export before its card: the bytes the parity checks run on.
pub struct Draft {
    proto: ModelProto,
    bytes: Vec<u8>,
}

impl Draft {
    pub fn new(proto: ModelProto) -> Self {
        let bytes = onnx_format::encode(&proto);
        Self { proto, bytes }
    }

    /// The encoded graph to verify.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Add the card (graph inputs/outputs with `meanings`) to the verified model and write it
    /// atomically to `out`; the graph written is byte-for-byte the one verified. Returns the size.
    pub fn finish(self, card: ModelCard, meanings: &[(&str, &str)], out: &Path) -> Result<usize> {
        let bytes = self.finish_bytes(card, meanings)?;
        onnx_format::write_atomic(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
        Ok(bytes.len())
    }

    /// [`finish`](Self::finish) without the write: the ONNX bytes, for a command that commits
    /// them together with other outputs ([`onnx_format::write_all_atomic`]).
    pub fn finish_bytes(mut self, mut card: ModelCard, meanings: &[(&str, &str)]) -> Result<Vec<u8>> {
        card.tools = tool_versions();
        card.embed(&mut self.proto, meanings).context("model card")?;
        let bytes = onnx_format::encode(&self.proto);
        let graph = |b: &[u8]| onnx_format::decode(b, "export").map(|m| m.graph);
        if graph(&bytes)? != graph(&self.bytes)? {
            bail!("internal error: the graph changed after verification; nothing written");
        }
        Ok(bytes)
    }
}

/// Parity numbers in a card's metrics (`parity_<runtime>_max_abs_diff`, worst case over `checks`).
pub fn record_parity<'a>(card: &mut ModelCard, checks: impl IntoIterator<Item = &'a Parity>) {
    let (mut t, mut o) = (0f64, 0f64);
    for p in checks {
        t = t.max(p.tract_max_abs_diff);
        o = o.max(p.ort_max_abs_diff);
    }
    card.metrics.insert("parity_tract_max_abs_diff".into(), t);
    card.metrics.insert("parity_ort_max_abs_diff".into(), o);
}

/// A progress bar over `len` steps (epochs, batches) with the command's `prefix`.
pub fn progress(len: usize, prefix: impl Into<String>) -> ProgressBar {
    progress_with(len, prefix, "{prefix} [{bar:30}] {pos}/{len} {msg}")
}

/// [`progress`] with another `indicatif` template.
pub fn progress_with(len: usize, prefix: impl Into<String>, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "));
    bar.set_prefix(prefix.into());
    bar
}

/// Tool versions recorded in every model card.
pub fn tool_versions() -> std::collections::BTreeMap<String, String> {
    [
        ("burn", "0.22.1"),
        ("tract-onnx", "0.23.9"),
        ("ort", "2.0.0-rc.15"),
        ("onnxruntime", "1.31.1"),
        ("opset", "18"),
        ("bioedge", env!("CARGO_PKG_VERSION")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

//! ONNX protobuf types (generated from the official `onnx.proto`), a small graph builder used by
//! the exporters, the model card stored in `metadata_props`, and atomic file writes.
#![warn(missing_docs)]

pub mod builder;
pub mod card;

pub mod pb {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

pub use builder::{Dim, GraphBuilder};
pub use card::{CardError, Family, ModelCard};

use prost::Message;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Opset of the default domain used by every exporter.
pub const OPSET: i64 = 18;
/// IR version accepted by ONNX Runtime 1.31 and tract 0.23.
pub const IR_VERSION: i64 = 8;
/// `metadata_props` key holding the model card JSON.
pub const CARD_KEY: &str = "model_card";

/// Errors of reading a model file and its card.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model file could not be read.
    #[error("{path}")]
    Io {
        /// The model file.
        path: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a valid ONNX protobuf.
    #[error("{path}: not an ONNX model")]
    Decode {
        /// The model file (used in messages only).
        path: String,
        /// The protobuf decoding error.
        #[source]
        source: prost::DecodeError,
    },
    /// The model has no model card in its `metadata_props`.
    #[error("{path}: no model card (metadata_props key `{CARD_KEY}`); was it exported by this toolchain?")]
    NoCard {
        /// The model file.
        path: String,
    },
    /// The model card cannot be parsed or does not match the graph.
    #[error("{path}")]
    Card {
        /// The model file.
        path: String,
        /// What is wrong with the card.
        #[source]
        source: CardError,
    },
}

/// Decode a model from bytes; `path` is only used in messages.
pub fn decode(bytes: &[u8], path: &str) -> Result<pb::ModelProto, Error> {
    pb::ModelProto::decode(bytes).map_err(|source| Error::Decode { path: path.into(), source })
}

/// Read the model card of an ONNX file.
pub fn read_card(path: &Path) -> Result<ModelCard, Error> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: p.clone(), source })?;
    card_from_bytes(&bytes, &p)
}

/// Read the model card from ONNX bytes.
pub fn card_from_bytes(bytes: &[u8], path: &str) -> Result<ModelCard, Error> {
    let model = decode(bytes, path)?;
    card_of(&model, path)
}

/// The model card of a decoded model, checked against the model's graph.
pub fn card_of(model: &pb::ModelProto, path: &str) -> Result<ModelCard, Error> {
    let entry =
        model.metadata_props.iter().find(|p| p.key.as_deref() == Some(CARD_KEY)).ok_or_else(|| Error::NoCard { path: path.into() })?;
    let card = ModelCard::from_json(entry.value.as_deref().unwrap_or(""))
        .and_then(|c| c.check_graph(model).map(|()| c))
        .map_err(|source| Error::Card { path: path.into(), source })?;
    Ok(card)
}

/// Write `bytes` to `path` atomically: a temp file in the same folder, then rename. Refuses a
/// `path` that exists and is not a regular file (a symlink, FIFO, device or folder would be
/// replaced by a regular file, or written through).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes)?;
    f.commit()
}

/// A file written in pieces (bounded memory for long outputs) that appears at its path only when
/// [`AtomicFile::commit`] succeeds: it is written to a temp file in the same folder and renamed.
/// Dropped without a commit (an error on the way, a panic), the temp file is removed and `path`
/// is untouched.
pub struct AtomicFile {
    tmp: PathBuf,
    path: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl AtomicFile {
    /// Starts the temp file for `path` (same refusals as [`write_atomic`]).
    pub fn create(path: &Path) -> std::io::Result<Self> {
        check_output_kind(path)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir)?;
        remove_stray_temps(path);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let file = std::fs::File::create(&tmp)?;
        Ok(Self { tmp, path: path.to_path_buf(), file: Some(std::io::BufWriter::new(file)) })
    }

    /// Flushes and syncs the temp file (it is complete on disk); [`commit`](Self::commit) then
    /// only renames. Several outputs synced first and renamed together leave a kill -9 only the
    /// few microseconds of the renames to split them.
    pub fn sync(&mut self) -> std::io::Result<()> {
        let f = self.file.as_mut().expect("not committed yet");
        f.flush()?;
        f.get_ref().sync_all()
    }

    /// Flushes, syncs and renames the temp file onto the path.
    pub fn commit(mut self) -> std::io::Result<()> {
        let file = self.file.take().expect("not committed yet");
        let result = (|| {
            let f = file.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            std::fs::rename(&self.tmp, &self.path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        result
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.as_mut().expect("not committed yet").write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().expect("not committed yet").flush()
    }
}

/// Writes several files so that they appear together: each is written and synced under its temp
/// name first, then the renames run back to back (a kill -9 can only split them in those
/// microseconds); on an error before the renames, none is written.
pub fn write_all_atomic(files: &[(&Path, &[u8])]) -> Result<(), WriteError> {
    fn named(p: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
        move |source| WriteError { path: p.to_path_buf(), source }
    }
    let mut pending = Vec::with_capacity(files.len());
    for (p, bytes) in files {
        let mut f = AtomicFile::create(p).map_err(named(p))?;
        f.write_all(bytes).and_then(|_| f.sync()).map_err(named(p))?;
        pending.push((p, f));
    }
    for (p, f) in pending {
        f.commit().map_err(named(p))?;
    }
    Ok(())
}

/// A failed write of [`write_all_atomic`]: which file, and why.
#[derive(Debug, thiserror::Error)]
#[error("writing {}", path.display())]
pub struct WriteError {
    /// The output that could not be written.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

/// Removes the temp files that an earlier run killed before its commit left for `path`
/// (`.NAME.PID.tmp`, `.NAME.PID.N.tmp`) when that process is gone (Linux: no `/proc/PID`).
pub fn remove_stray_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        let Some(mid) = f.strip_prefix(&prefix).and_then(|r| r.strip_suffix(".tmp")) else { continue };
        let parts: Vec<&str> = mid.split('.').collect();
        if parts.len() > 2 || !parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        if Path::new("/proc/self").exists() && !Path::new("/proc").join(parts[0]).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Before any work: an error (naming `out`) when the output `out` is not a regular file
/// ([`check_output_kind`]) or is one of the `inputs` ([`check_not_an_input`]).
pub fn check_output<'a>(out: &Path, inputs: impl IntoIterator<Item = &'a Path>) -> std::io::Result<()> {
    check_output_kind(out).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", out.display())))?;
    check_not_an_input(out, &inputs.into_iter().collect::<Vec<_>>())
}

/// An error when `path` exists and is not a regular file (symlinks are not followed).
pub fn check_output_kind(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => {
            let kind = if m.file_type().is_symlink() {
                "a symbolic link"
            } else if m.is_dir() {
                "a folder"
            } else {
                "not a regular file (a device, FIFO or socket)"
            };
            Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("output path is {kind}; give a path to a regular file")))
        }
        _ => Ok(()),
    }
}

/// An error when the output `out` is one of the `inputs` (the same file, also through links or
/// another spelling of the path), so a run never writes over what it reads.
pub fn check_not_an_input(out: &Path, inputs: &[&Path]) -> std::io::Result<()> {
    let Ok(o) = std::fs::metadata(out) else { return Ok(()) };
    for i in inputs {
        let same = std::fs::metadata(i).is_ok_and(|m| same_file(&m, &o))
            || std::fs::canonicalize(i).ok().is_some_and(|c| std::fs::canonicalize(out).ok() == Some(c));
        if same {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("output {} is the input {}; nothing written (the input is left as it was)", out.display(), i.display()),
            ));
        }
    }
    Ok(())
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    false
}

/// Encode a model to bytes.
pub fn encode(model: &pb::ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

//! The error type of the edge crates (runtime, io, slide, infer): each message names the file and
//! the problem; wrapped errors keep their source.

use std::path::PathBuf;

/// Everything that can go wrong at the edge. Messages name the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file could be read but its content is wrong (line numbers in `msg` where known).
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error("{path}: HDF5: {msg}")]
    Hdf5 { path: PathBuf, msg: String },
    /// Input values that the model cannot take (shape, NaN, gene overlap, ...).
    #[error("{0}")]
    Input(String),
    #[error("{path}: {msg}")]
    Model { path: PathBuf, msg: String },
    /// A model file that cannot be read or has no valid card (the message names the file).
    #[error(transparent)]
    Onnx(#[from] onnx_format::Error),
    /// The model card does not fit the task (wrong family, inconsistent fields).
    #[error("{path}: {source}")]
    Card {
        path: PathBuf,
        #[source]
        source: onnx_format::CardError,
    },
    #[error("runtime {backend}: {msg}")]
    Runtime { backend: &'static str, msg: String },
    #[error("{0}")]
    Unsupported(String),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub fn card(path: impl Into<PathBuf>, source: onnx_format::CardError) -> Self {
        Error::Card { path: path.into(), source }
    }
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format { path: path.into(), msg: msg.into() }
    }
}

//! The error type of the edge crates (runtime, io, slide, infer): each message names the file and
//! the problem; wrapped errors keep their source.
#![warn(missing_docs)]

use std::path::PathBuf;

/// Resource limits checked before allocating.
pub mod limits;

/// Everything that can go wrong at the edge. Messages name the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file could be read but its content is wrong (line numbers in `msg` where known).
    #[error("{path}: {msg}")]
    Format {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with its content.
        msg: String,
    },
    /// An HDF5 file (or object inside it) that cannot be read.
    #[error("{path}: HDF5: {msg}")]
    Hdf5 {
        /// The HDF5 file concerned.
        path: PathBuf,
        /// What failed, as reported by the HDF5 reader.
        msg: String,
    },
    /// Input values that the model cannot take (shape, NaN, gene overlap, ...).
    #[error("{0}")]
    Input(String),
    /// A model that cannot be loaded or prepared (invalid ONNX, no graph, unusable settings).
    #[error("{path}: {msg}")]
    Model {
        /// The model file.
        path: PathBuf,
        /// What is wrong with the model.
        msg: String,
    },
    /// A model file that cannot be read or has no valid card (the message names the file).
    #[error(transparent)]
    Onnx(#[from] onnx_format::Error),
    /// The model card does not fit the task (wrong family, inconsistent fields).
    #[error("{path}")]
    Card {
        /// The model file whose card is concerned.
        path: PathBuf,
        /// What is wrong with the card.
        #[source]
        source: onnx_format::CardError,
    },
    /// A runtime backend failed to load or run a model.
    #[error("runtime {backend}: {msg}")]
    Runtime {
        /// Name of the backend (`tract` or `ort`).
        backend: &'static str,
        /// The backend's error message.
        msg: String,
    },
    /// A feature or file kind that this build does not support (e.g. a cargo feature not compiled in).
    #[error("{0}")]
    Unsupported(String),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    /// An [`Error::Card`] for the model at `path`.
    pub fn card(path: impl Into<PathBuf>, source: onnx_format::CardError) -> Self {
        Error::Card { path: path.into(), source }
    }
    /// An [`Error::Format`] for `path` with message `msg`.
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format { path: path.into(), msg: msg.into() }
    }
}

/// `e` and its causes, `: `-separated (for places that print one string, like the browser page;
/// each error's own message leaves its cause to the chain, so nothing is printed twice).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Exit code of a panic: a bug, not bad input (`EX_SOFTWARE`).
pub const EXIT_INTERNAL: i32 = 70;

thread_local! {
    static CONTAINED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` and turns a panic inside it into `Err(message)`: for calls into a dependency that
/// can panic on crafted input (tract on a fuzzed ONNX file). The hook of [`report_panics_as_bugs`]
/// stays quiet for such a panic; the caller reports it as an error.
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    let prev = CONTAINED.with(|c| c.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(prev));
    r.map_err(|p| p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default())
}

/// Whether this thread is inside [`catch_panic`] (for panic hooks that would otherwise end the process).
pub fn panic_is_caught() -> bool {
    CONTAINED.with(|c| c.get())
}

/// For binaries: a panic is a bug, so say so, ask for a report and exit with [`EXIT_INTERNAL`];
/// a closed stdout (`infer inspect --json m.onnx | head`) ends the program quietly instead.
pub fn report_panics_as_bugs() {
    std::panic::set_hook(Box::new(|info| {
        if panic_is_caught() {
            return;
        }
        let p = info.payload();
        let msg = p.downcast_ref::<String>().map(String::as_str).or_else(|| p.downcast_ref::<&str>().copied()).unwrap_or("");
        if msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        eprintln!("internal error (a bug in bioedge; please report it with the command line): {info}");
        std::process::exit(EXIT_INTERNAL);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_panic_turns_a_panic_into_its_message() {
        assert_eq!(catch_panic(|| 7), Ok(7));
        let n: Vec<u8> = Vec::new();
        assert!(catch_panic(|| n[3]).unwrap_err().contains("index out of bounds"));
        assert_eq!(catch_panic(|| -> u8 { panic!("bad model") }), Err("bad model".to_string()));
        assert!(!panic_is_caught());
    }
}

//! burn modules for the toolchain's model families, each with its ONNX export beside its forward.
//! Parity tests (burn vs tract vs ONNX Runtime) keep the two equal.
#![warn(missing_docs)]

pub mod cluster;
pub mod early_stop;
pub mod export;
pub mod fit;
pub mod gene;
pub mod gene2vec;
pub mod graph;
pub mod loss;
pub mod metrics;
pub mod mol;
pub mod node;
pub mod node2vec;
pub mod node_fit;
pub mod preprocess;
pub mod spot;
pub mod spot_ensemble;
pub mod spot_init;

pub use burn;

use burn::prelude::*;

/// Errors of the model library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid input: bad shapes, out-of-range indices or settings.
    #[error("{0}")]
    Input(String),
    /// Saving or loading weights failed.
    #[error("{0}")]
    Store(String),
}

/// Result with the model library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// A tensor's values as a flat `Vec<f32>`.
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 tensor")
}

/// Serializes the unit tests that seed or draw from burn's global random generator: run in
/// parallel, one test's draws would shift another's seeded initialization.
#[cfg(test)]
pub(crate) fn test_rng() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The README's examples, compiled and run by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

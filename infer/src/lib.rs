//! Inference for exported models: ONNX Runtime and tract behind one API, readers for expression
//! data and gene graphs, and the preprocessing that the model cards describe. No burn here.

pub mod data;
pub mod error;

pub use error::{Error, Result};

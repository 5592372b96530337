//! Inference for exported models: ONNX Runtime and tract behind one API, readers for expression
//! data and gene graphs, and the preprocessing that the model cards describe. No burn here.

pub mod data;
pub mod error;
pub mod graph;
pub mod image_prep;
pub mod spots;

pub use error::{Error, Result};
pub mod runtime;

pub use runtime::{Backend, Session, Value};
pub mod align;
pub mod classify;
pub mod nodes;
pub mod cells;
pub mod genes;
pub mod chem;
pub mod mol;

pub use onnx_format::{read_card, ModelCard};
pub mod slide;
pub mod tiled;
pub mod wsi;
#[cfg(feature = "openslide")]
pub mod openslide;

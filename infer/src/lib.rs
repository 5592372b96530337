//! Inference for exported models, no burn: the task layer over the edge crates, and their façade.
//!
//! | module | from | job |
//! |---|---|---|
//! | [`runtime`] | `bioedge-runtime` | tract and ONNX Runtime behind one `Session`; parity |
//! | [`data`], [`graph`], [`spots`] | `bioedge-io` | readers: expression tables, gene sets, gene graphs, spatial spots |
//! | [`chem`] | `bioedge-chem` | SMILES → DeepChem atom features |
//! | [`image_prep`], [`wsi`], [`open`], [`tiled`] | `bioedge-slide` | image contract, whole-slide readers, tissue grid |
//! | [`classify`], [`nodes`], [`cells`], [`genes`], [`mol`], [`slide`] | here | one task per `infer` subcommand |
//! | [`slide_outputs`] | here | `infer slide`'s AnnData (scanpy/squidpy) and GeoJSON (QuPath) outputs |
//! | [`slide_results`] | here | `infer slide --results-dir`: WSInfer-style results folder and run metadata |
#![warn(missing_docs)]

pub use bioedge_chem as chem;
pub use bioedge_error as error;
pub use bioedge_error::{Error, Result};
pub use bioedge_io::{data, graph, spots};
pub use bioedge_runtime as runtime;
pub use bioedge_runtime::{Backend, Session, Value};
#[cfg(feature = "openslide")]
pub use bioedge_slide::openslide;
pub use bioedge_slide::{image_prep, macenko, open, stain, tiled, wsi};
pub use onnx_format::{ModelCard, read_card};

pub mod align;
pub mod cells;
pub mod classify;
pub mod genes;
pub mod mol;
pub mod nodes;
pub mod slide;
pub mod slide_outputs;
pub mod slide_results;

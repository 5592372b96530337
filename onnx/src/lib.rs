//! ONNX protobuf types (generated from the official `onnx.proto`), a small graph builder used by
//! the exporters, the model card stored in `metadata_props`, and atomic file writes.
#![warn(missing_docs)]

pub mod atomic;
pub mod builder;
pub mod card;

pub mod pb {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

pub use atomic::{
    AtomicFile, Pending, WriteError, check_not_an_input, check_output, check_output_kind, commit_all, remove_stray_temps, stage,
    write_all_atomic, write_atomic,
};
pub use builder::{Dim, GraphBuilder};
pub use card::{CardError, Family, ModelCard};

use prost::Message;
use std::path::Path;

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

/// Encode a model to bytes.
pub fn encode(model: &pb::ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

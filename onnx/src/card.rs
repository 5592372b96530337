//! The model card: what a model is, what goes in and out, how inputs are preprocessed, where the
//! training data came from, and how well it did. Stored as JSON in `metadata_props`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TensorSpec {
    pub name: String,
    /// Dimensions; symbolic ones by name (e.g. "batch").
    pub shape: Vec<String>,
    pub dtype: String,
    /// What the values mean, with units.
    pub meaning: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ModelCard {
    /// Model family, e.g. `gene-gcn`, `gene-mlp`.
    pub family: String,
    /// Card format version.
    pub version: String,
    pub description: String,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// Gene symbols in model input order (expression models).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub genes: Vec<String>,
    /// Class labels in output order (classifiers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    /// Preprocessing: a human-readable description plus machine-readable parameters.
    pub preprocessing: serde_json::Value,
    /// Hyper-parameters of the architecture.
    pub architecture: serde_json::Value,
    /// Training data provenance (files, sizes, split, seed).
    pub training: serde_json::Value,
    /// Evaluation metrics on held-out data.
    pub metrics: BTreeMap<String, f64>,
    /// Tool versions (crate versions, opset).
    pub tools: BTreeMap<String, String>,
}

pub const CARD_VERSION: &str = "1";

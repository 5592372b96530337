//! The model card: the contract between `train`, `infer` and the browser. What a model is
//! ([`Family`]), what goes in and out (read off the graph itself), how inputs are preprocessed
//! (typed per family: [`Preprocessing`]), where the training data came from and how well it did.
//! Stored as JSON in `metadata_props["model_card"]`; its JSON Schema is `docs/model-card.schema.json`.

use crate::pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the card format written by this build. Cards of a newer version are refused
/// with a clear error; version 1 (free-form preprocessing) must be re-exported.
pub const SCHEMA_VERSION: u32 = 2;

/// Errors of reading or checking a card.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    /// The card's `schema_version` is newer than [`SCHEMA_VERSION`].
    #[error("model card schema {found} is newer than this build reads (≤ {SCHEMA_VERSION}); update bioedge")]
    Newer {
        /// The card's `schema_version`.
        found: u64,
    },
    /// The card has no `schema_version` (a version 1 card, before typed preprocessing).
    #[error(
        "model card schema {found} predates typed cards (this build reads {SCHEMA_VERSION}); re-export the model with this version's `train`"
    )]
    Older {
        /// The card's old `version` field, or "unknown".
        found: String,
    },
    /// The card is not valid JSON or does not match the card's types.
    #[error("model card is not valid JSON or does not match the card's fields")]
    Json(#[from] serde_json::Error),
    /// The model is of another family than the task needs.
    #[error("model family `{found}` is not {what} ({})", names(wanted))]
    WrongFamily {
        /// The card's family.
        found: Family,
        /// What kind of model the task needs, for the message (e.g. "a node classifier").
        what: &'static str,
        /// The families the task accepts.
        wanted: &'static [Family],
    },
    /// The card's inputs/outputs do not match the graph's, or a tensor meaning is missing or unused.
    #[error("model card disagrees with the graph: {0}")]
    Graph(String),
    /// The card is inconsistent (family vs preprocessing, missing genes or classes, bad values).
    #[error("model card: {0}")]
    Invalid(String),
}

fn names(f: &[Family]) -> String {
    f.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
}

/// Model families. The serialized names are the card's `family` strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Gene-graph GCN on expression (Dutil et al. 2018).
    GeneGcn,
    /// MLP baseline on expression.
    GeneMlp,
    /// GCN node classifier (Kipf & Welling).
    NodeGcn,
    /// GAT node classifier (Veličković et al.).
    NodeGat,
    /// GAT cell-type classifier on a PCA + kNN cell graph.
    CellGat,
    /// Node2Vec embedding table.
    Node2vec,
    /// Gene2Vec gene → gene-set encoder.
    Gene2vec,
    /// DeepChem GraphConv on SMILES.
    MolGraphconv,
    /// Histology spot image → gene expression (TCGN-style).
    #[serde(rename = "histology-spot")]
    SpotExpression,
}

impl Family {
    /// Every family, in declaration order.
    pub const ALL: [Family; 9] = [
        Family::GeneGcn,
        Family::GeneMlp,
        Family::NodeGcn,
        Family::NodeGat,
        Family::CellGat,
        Family::Node2vec,
        Family::Gene2vec,
        Family::MolGraphconv,
        Family::SpotExpression,
    ];

    /// The card's `family` string.
    pub fn name(self) -> &'static str {
        match self {
            Family::GeneGcn => "gene-gcn",
            Family::GeneMlp => "gene-mlp",
            Family::NodeGcn => "node-gcn",
            Family::NodeGat => "node-gat",
            Family::CellGat => "cell-gat",
            Family::Node2vec => "node2vec",
            Family::Gene2vec => "gene2vec",
            Family::MolGraphconv => "mol-graphconv",
            Family::SpotExpression => "histology-spot",
        }
    }

    /// The preprocessing kind a card of this family carries.
    pub fn preprocessing_kind(self) -> &'static str {
        match self {
            Family::GeneGcn | Family::GeneMlp => Expression::KIND,
            Family::NodeGcn | Family::NodeGat => NodeFeatures::KIND,
            Family::CellGat => Cells::KIND,
            Family::Node2vec | Family::Gene2vec => Lookup::KIND,
            Family::MolGraphconv => Molecule::KIND,
            Family::SpotExpression => SpotImage::KIND,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Family {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Family::ALL.into_iter().find(|f| f.name() == s).ok_or_else(|| format!("unknown model family `{s}` ({})", names(&Family::ALL)))
    }
}

/// A graph input or output: name, shape and type from the graph, meaning from the trainer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, JsonSchema)]
pub struct TensorSpec {
    /// Tensor name in the graph.
    pub name: String,
    /// Dimensions; symbolic ones by name (e.g. "batch").
    pub shape: Vec<String>,
    /// Element type (e.g. "float32", "int64").
    pub dtype: String,
    /// What the values mean, with units.
    pub meaning: String,
}

/// Per-gene expression standardization, inside the graph (gene GCN and MLP).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct Expression {
    /// `log2(max(x, floor))` before standardizing.
    pub log2: bool,
    /// Lower bound applied before `log2` (input units).
    pub floor: f32,
    /// The steps in words.
    pub steps: String,
    /// How a gene missing from the input is handled.
    pub missing_genes: String,
    /// What the input values must be (units, raw or log-transformed), in words.
    pub input_units: String,
}

/// Node features and graph normalization, inside the graph (node GCN and GAT).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct NodeFeatures {
    /// Features divided by their row sum inside the model.
    pub row_normalize: bool,
    /// Self-loops: what the model does with them.
    pub self_loops: String,
    /// Edge normalization inside the model, in words.
    pub normalization: String,
}

/// A PCA projection: `(x - mean) @ components^T / scale`, components `[n_pcs, genes]` row-major.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct Pca {
    /// Per-gene mean of the training data, subtracted first.
    pub mean: Vec<f32>,
    /// Loadings `[n_pcs, genes]`, row-major.
    pub components: Vec<f32>,
    /// Number of principal components kept.
    pub n_pcs: usize,
    /// Variance along each component (training data).
    pub variance: Vec<f32>,
    /// Coordinates are divided by this (the standard deviation along the first component), so
    /// models see values of order 1 while the relative scale of components is kept.
    pub scale: f32,
}

impl Pca {
    /// Project `x [n, genes]` (row-major) to `[n, n_pcs]`; NaN (a gene missing from the input)
    /// counts as the training mean.
    pub fn transform(&self, x: &[f32]) -> Vec<f32> {
        let g = self.mean.len().max(1);
        let mut out = Vec::with_capacity(x.len() / g * self.n_pcs);
        for row in x.chunks(g) {
            let c: Vec<f32> = row.iter().zip(&self.mean).map(|(v, m)| if v.is_nan() { 0.0 } else { v - m }).collect();
            for comp in self.components.chunks(g) {
                out.push(c.iter().zip(comp).map(|(a, b)| a * b).sum::<f32>() / self.scale);
            }
        }
        out
    }

    fn check(&self, genes: usize) -> Result<(), CardError> {
        if self.mean.len() != genes || self.components.len() != self.n_pcs * genes || self.n_pcs == 0 || !(self.scale > 0.0) {
            return Err(CardError::Invalid(format!(
                "PCA ({} means, {} loadings for {} components, scale {}) does not match its {genes} genes",
                self.mean.len(),
                self.components.len(),
                self.n_pcs,
                self.scale
            )));
        }
        Ok(())
    }
}

/// The cell graph built before the model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct Knn {
    /// Neighbours per cell.
    pub k: usize,
    /// Distance used to find neighbours, in words.
    pub metric: String,
    /// How the directed kNN edges are made symmetric (e.g. "union").
    pub symmetric: String,
    /// Whether and where self-loops are added, in words.
    pub self_loops: String,
}

/// Cells: expression → PCA → kNN graph → GAT (cell typing).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct Cells {
    /// What the expression values must be (as in the training file).
    pub expression: String,
    /// Projection of expression to PCA coordinates.
    pub pca: Pca,
    /// How the cell graph is built from the PCA coordinates.
    pub knn: Knn,
}

/// An id lookup (Node2Vec, Gene2Vec): an id is a position in the card's names.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct Lookup {
    /// What an id indexes.
    pub ids: String,
}

/// SMILES → atom features → one disjoint graph per batch (DeepChem GraphConv).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct Molecule {
    /// The featurizer (`infer::chem`) and its feature layout.
    pub featurizer: String,
    /// Bumped whenever the features change; a model needs the version it was trained with.
    pub featurizer_version: u32,
    /// Features per atom (columns of the atom feature input).
    pub atom_features: usize,
    /// How molecules are combined into one batch, in words.
    pub batching: String,
}

/// Image normalization of a spot patch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct ImageNorm {
    /// Model input side in pixels (the patch is resized to `size × size`).
    pub size: u32,
    /// Per-channel mean (RGB) subtracted after scaling to [0, 1].
    pub mean: [f32; 3],
    /// Per-channel standard deviation (RGB).
    pub std: [f32; 3],
    /// How the patch is cut around the spot, in words.
    pub crop: String,
    /// Resampling used to resize the patch to `size`.
    pub interpolation: String,
    /// Factor from pixel values to [0, 1] (e.g. "1/255").
    pub scale: String,
    /// Tensor layout and element type (e.g. "CHW, f32").
    pub layout: String,
    /// Channel order (e.g. "RGB").
    pub channels: String,
}

/// The spot image contract: which patch around a spot, and how it is normalized.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct SpotImage {
    /// Normalization of the patch into the model input.
    pub image: ImageNorm,
    /// Patch side in microns (used with the slide's recorded resolution).
    pub patch_side_um: Option<f32>,
    /// Patch side in pixels per training section (their mean is used when the slide has no resolution).
    pub patch_side_px: BTreeMap<String, f32>,
    /// How the patch side was chosen, in words.
    pub patch_side: String,
    /// The patch side in spot spacings: a tissue grid steps by the patch side divided by this (1,
    /// the default for cards without it: one patch per grid cell; 2 for a model that also reads
    /// the spot's neighbours).
    #[serde(default = "one")]
    pub patch_span: f32,
    /// What the predicted values are.
    pub targets: String,
}

fn one() -> f32 {
    1.0
}

impl SpotImage {
    /// Mean patch side in pixels over the training sections, if any.
    pub fn mean_side_px(&self) -> Option<f32> {
        let v: Vec<f32> = self.patch_side_px.values().copied().collect();
        let m = v.iter().sum::<f32>() / v.len().max(1) as f32;
        (!v.is_empty()).then_some(m)
    }

    fn check(&self) -> Result<(), CardError> {
        let bad = |m: String| Err(CardError::Invalid(m));
        if !(self.patch_span.is_finite() && self.patch_span > 0.0 && self.patch_span <= 64.0) {
            return bad(format!("patch_span {} out of (0, 64] spot spacings", self.patch_span));
        }
        if self.image.size == 0 || self.image.size > 4096 {
            return bad(format!("image size {} out of 1..=4096", self.image.size));
        }
        if self.image.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) || self.image.mean.iter().any(|m| !m.is_finite()) {
            return bad(format!("image mean {:?} / std {:?} must be finite with std > 0", self.image.mean, self.image.std));
        }
        if let Some(um) = self.patch_side_um.filter(|v| !(v.is_finite() && *v > 0.0)) {
            return bad(format!("patch_side_um {um} is not a length"));
        }
        if let Some((s, v)) = self.patch_side_px.iter().find(|(_, v)| !(v.is_finite() && **v >= 1.0)) {
            return bad(format!("patch_side_px of {s} is {v}, not a side in pixels"));
        }
        Ok(())
    }
}

/// Typed preprocessing, one kind per family group (see [`Family::preprocessing_kind`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Preprocessing {
    /// Gene expression models (`gene-gcn`, `gene-mlp`).
    Expression(Expression),
    /// Node classifiers (`node-gcn`, `node-gat`).
    NodeFeatures(NodeFeatures),
    /// Cell-type classifiers (`cell-gat`).
    Cells(Cells),
    /// Embedding lookups (`node2vec`, `gene2vec`).
    Lookup(Lookup),
    /// Molecule models (`mol-graphconv`).
    Molecule(Molecule),
    /// Spot image models (`histology-spot`).
    SpotImage(SpotImage),
}

/// A typed preprocessing that [`ModelCard::require`] can hand out.
pub trait Prep: Sized {
    /// The `kind` tag.
    const KIND: &'static str;
    /// What a model of these families is, for messages.
    const WHAT: &'static str;
    /// Families that carry it.
    const FAMILIES: &'static [Family];
    /// This kind's data, if `p` is of this kind.
    fn pick(p: &Preprocessing) -> Option<&Self>;
}

macro_rules! prep {
    ($t:ident, $kind:literal, $what:literal, [$($f:ident),+]) => {
        impl Prep for $t {
            const KIND: &'static str = $kind;
            const WHAT: &'static str = $what;
            const FAMILIES: &'static [Family] = &[$(Family::$f),+];
            fn pick(p: &Preprocessing) -> Option<&Self> {
                match p {
                    Preprocessing::$t(x) => Some(x),
                    _ => None,
                }
            }
        }
    };
}
prep!(Expression, "expression", "an expression classifier", [GeneGcn, GeneMlp]);
prep!(NodeFeatures, "node-features", "a node classifier", [NodeGcn, NodeGat]);
prep!(Cells, "cells", "a cell-type classifier", [CellGat]);
prep!(Lookup, "lookup", "an embedding lookup", [Node2vec, Gene2vec]);
prep!(Molecule, "molecule", "a molecule model", [MolGraphconv]);
prep!(SpotImage, "spot-image", "a spot model", [SpotExpression]);

impl Preprocessing {
    /// The `kind` tag of this preprocessing.
    pub fn kind(&self) -> &'static str {
        match self {
            Preprocessing::Expression(_) => Expression::KIND,
            Preprocessing::NodeFeatures(_) => NodeFeatures::KIND,
            Preprocessing::Cells(_) => Cells::KIND,
            Preprocessing::Lookup(_) => Lookup::KIND,
            Preprocessing::Molecule(_) => Molecule::KIND,
            Preprocessing::SpotImage(_) => SpotImage::KIND,
        }
    }
}

/// The model card.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct ModelCard {
    /// Card format version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// What the model is.
    pub family: Family,
    /// One-line description of the model, for people.
    pub description: String,
    /// Graph inputs, as in the ONNX graph (filled by [`ModelCard::embed`]).
    pub inputs: Vec<TensorSpec>,
    /// Graph outputs, as in the ONNX graph.
    pub outputs: Vec<TensorSpec>,
    /// Gene symbols in model input (or output) order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub genes: Vec<String>,
    /// Class labels (or gene sets, tasks) in output order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    /// How inputs are prepared for the model (kind fixed by the family).
    pub preprocessing: Preprocessing,
    /// Hyper-parameters of the architecture.
    pub architecture: serde_json::Value,
    /// Training data provenance (files, sizes, split, seed).
    pub training: serde_json::Value,
    /// Evaluation metrics on held-out data, incl. export parity.
    pub metrics: BTreeMap<String, f64>,
    /// Tool versions (crate versions, opset).
    pub tools: BTreeMap<String, String>,
}

impl ModelCard {
    /// A card with empty io, provenance and metrics.
    pub fn new(family: Family, description: impl Into<String>, preprocessing: Preprocessing) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            family,
            description: description.into(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            genes: Vec::new(),
            classes: Vec::new(),
            preprocessing,
            architecture: serde_json::Value::Null,
            training: serde_json::Value::Null,
            metrics: BTreeMap::new(),
            tools: BTreeMap::new(),
        }
    }

    /// Parse card JSON: schema version first (clear errors for newer and older cards), then
    /// the typed card, then its own consistency.
    pub fn from_json(json: &str) -> Result<Self, CardError> {
        let v: serde_json::Value = serde_json::from_str(json)?;
        match v.get("schema_version").and_then(|x| x.as_u64()) {
            Some(n) if n > SCHEMA_VERSION as u64 => return Err(CardError::Newer { found: n }),
            Some(_) => {}
            None => {
                let old = v.get("version").map(|x| x.to_string().trim_matches('"').to_string()).unwrap_or_else(|| "unknown".into());
                return Err(CardError::Older { found: old });
            }
        }
        let card: ModelCard = serde_json::from_value(v)?;
        card.check()?;
        Ok(card)
    }

    /// Family ↔ preprocessing agreement and per-kind checks.
    pub fn check(&self) -> Result<(), CardError> {
        if self.schema_version > SCHEMA_VERSION {
            return Err(CardError::Newer { found: self.schema_version as u64 });
        }
        let want = self.family.preprocessing_kind();
        if self.preprocessing.kind() != want {
            return Err(CardError::Invalid(format!(
                "family `{}` needs preprocessing `{want}`, the card has `{}`",
                self.family,
                self.preprocessing.kind()
            )));
        }
        match &self.preprocessing {
            Preprocessing::Cells(c) => c.pca.check(self.genes.len())?,
            Preprocessing::SpotImage(s) => s.check()?,
            _ => {}
        }
        let needs_genes =
            matches!(self.family, Family::GeneGcn | Family::GeneMlp | Family::CellGat | Family::Gene2vec | Family::SpotExpression);
        if needs_genes && self.genes.is_empty() {
            return Err(CardError::Invalid("lists no genes".into()));
        }
        let needs_classes =
            matches!(self.family, Family::GeneGcn | Family::GeneMlp | Family::CellGat | Family::MolGraphconv | Family::Gene2vec);
        if needs_classes && self.classes.is_empty() {
            return Err(CardError::Invalid("lists no classes".into()));
        }
        Ok(())
    }

    /// The family must be one of `families`.
    pub fn require_family(&self, what: &'static str, families: &'static [Family]) -> Result<Family, CardError> {
        if families.contains(&self.family) {
            Ok(self.family)
        } else {
            Err(CardError::WrongFamily { found: self.family, what, wanted: families })
        }
    }

    /// The typed preprocessing of a family group, or an error naming the family it has:
    /// `let spot: &SpotImage = card.require()?;`.
    pub fn require<P: Prep>(&self) -> Result<&P, CardError> {
        self.require_family(P::WHAT, P::FAMILIES)?;
        P::pick(&self.preprocessing)
            .ok_or_else(|| CardError::Invalid(format!("family `{}` without `{}` preprocessing", self.family, P::KIND)))
    }

    /// Fill `inputs`/`outputs` from `model`'s graph (name, shape, dtype) with `meanings` by
    /// tensor name, then store the card in `model.metadata_props` (replacing one there).
    /// Every graph input and output needs a meaning, and every meaning a tensor.
    pub fn embed(&mut self, model: &mut pb::ModelProto, meanings: &[(&str, &str)]) -> Result<(), CardError> {
        let (mut inputs, mut outputs) = graph_io(model);
        for spec in inputs.iter_mut().chain(outputs.iter_mut()) {
            spec.meaning = meanings
                .iter()
                .find(|(n, _)| *n == spec.name)
                .map(|(_, m)| m.to_string())
                .ok_or_else(|| CardError::Graph(format!("no meaning given for `{}`", spec.name)))?;
        }
        if let Some((n, _)) = meanings.iter().find(|(n, _)| !inputs.iter().chain(&outputs).any(|s| s.name == *n)) {
            return Err(CardError::Graph(format!("a meaning is given for `{n}`, which is not a graph input or output")));
        }
        self.inputs = inputs;
        self.outputs = outputs;
        self.check()?;
        let json = serde_json::to_string(self)?;
        model.metadata_props.retain(|p| p.key.as_deref() != Some(crate::CARD_KEY));
        model.metadata_props.push(pb::StringStringEntryProto { key: Some(crate::CARD_KEY.into()), value: Some(json) });
        Ok(())
    }

    /// The card's inputs/outputs must be the graph's (names, shapes, dtypes, in order), and a
    /// lookup's table must have a row per name the card lists.
    pub fn check_graph(&self, model: &pb::ModelProto) -> Result<(), CardError> {
        if matches!(self.preprocessing, Preprocessing::Lookup(_))
            && !self.genes.is_empty()
            && let Some(rows) = lookup_rows(model)
            && rows != self.genes.len()
        {
            return Err(CardError::Graph(format!("the card names {} genes, the embedding table has {rows} rows", self.genes.len())));
        }
        let (inputs, outputs) = graph_io(model);
        for (what, card, graph) in [("inputs", &self.inputs, &inputs), ("outputs", &self.outputs, &outputs)] {
            let strip = |v: &[TensorSpec]| v.iter().map(|s| format!("{} {}[{}]", s.name, s.dtype, s.shape.join(", "))).collect::<Vec<_>>();
            let (c, g) = (strip(card), strip(graph));
            if c != g {
                return Err(CardError::Graph(format!("card {what} [{}], graph {what} [{}]", c.join("; "), g.join("; "))));
            }
        }
        Ok(())
    }

    /// The JSON Schema of the card (published as `docs/model-card.schema.json`).
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(ModelCard)).expect("schema is JSON")
    }
}

/// Rows of the table that the graph's first input indexes with a `Gather` (a lookup model), if any.
fn lookup_rows(model: &pb::ModelProto) -> Option<usize> {
    let g = model.graph.as_ref()?;
    let ids = g.input.first()?.name.as_deref()?;
    let gather = g.node.iter().find(|n| n.op_type.as_deref() == Some("Gather") && n.input.get(1).map(String::as_str) == Some(ids))?;
    let table = gather.input.first()?;
    let init = g.initializer.iter().find(|t| t.name.as_ref() == Some(table))?;
    init.dims.first().map(|&d| d as usize)
}

/// Inputs and outputs of a graph as specs (meaning empty); initializers listed as inputs are skipped.
pub fn graph_io(model: &pb::ModelProto) -> (Vec<TensorSpec>, Vec<TensorSpec>) {
    use pb::tensor_shape_proto::dimension::Value as D;
    use pb::type_proto::Value as T;
    let Some(g) = model.graph.as_ref() else { return (Vec::new(), Vec::new()) };
    let inits: std::collections::HashSet<&str> = g.initializer.iter().filter_map(|t| t.name.as_deref()).collect();
    let spec = |v: &pb::ValueInfoProto| {
        let tensor = v.r#type.as_ref().and_then(|t| match &t.value {
            Some(T::TensorType(t)) => Some(t),
            _ => None,
        });
        let dtype = tensor.and_then(|t| t.elem_type).map(dtype_name).unwrap_or("unknown").to_string();
        let shape = tensor
            .and_then(|t| t.shape.as_ref())
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(D::DimValue(n)) => n.to_string(),
                        Some(D::DimParam(p)) => p.clone(),
                        None => "?".into(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        TensorSpec { name: v.name.clone().unwrap_or_default(), shape, dtype, meaning: String::new() }
    };
    let inputs = g.input.iter().filter(|v| !inits.contains(v.name.as_deref().unwrap_or(""))).map(spec).collect();
    let outputs = g.output.iter().map(spec).collect();
    (inputs, outputs)
}

fn dtype_name(code: i32) -> &'static str {
    use pb::tensor_proto::DataType as D;
    match D::try_from(code) {
        Ok(D::Float) => "float32",
        Ok(D::Double) => "float64",
        Ok(D::Int64) => "int64",
        Ok(D::Int32) => "int32",
        Ok(D::Bool) => "bool",
        Ok(D::Uint8) => "uint8",
        Ok(D::Float16) => "float16",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{Dim, Elem, GraphBuilder};

    fn spot() -> SpotImage {
        SpotImage {
            image: ImageNorm {
                size: 224,
                mean: [0.485, 0.456, 0.406],
                std: [0.229, 0.224, 0.225],
                crop: "square".into(),
                interpolation: "bilinear".into(),
                scale: "1/255".into(),
                layout: "CHW".into(),
                channels: "RGB".into(),
            },
            patch_side_um: Some(200.0),
            patch_side_px: [("B1".to_string(), 290.0f32)].into_iter().collect(),
            patch_side: "spot spacing".into(),
            patch_span: 1.0,
            targets: "log1p".into(),
        }
    }

    fn model() -> pb::ModelProto {
        let mut b = GraphBuilder::new("t");
        let x = b.input("image", Elem::F32, &[Dim::from("batch"), Dim::from(3usize)]);
        b.node_to("Identity", &[&x], &["expression"], &[]);
        b.output("expression", Elem::F32, &[Dim::from("batch"), Dim::from(3usize)]);
        b.finish("test", vec![])
    }

    fn card() -> ModelCard {
        let mut c = ModelCard::new(Family::SpotExpression, "test", Preprocessing::SpotImage(spot()));
        c.genes = vec!["ERBB2".into(), "GAPDH".into(), "ACTB".into()];
        c.metrics.insert("r".into(), 0.25);
        c.architecture = serde_json::json!({"dim": 64});
        c
    }

    #[test]
    fn card_round_trips_through_the_graph() {
        let mut m = model();
        let mut c = card();
        c.embed(&mut m, &[("image", "patch"), ("expression", "log1p")]).unwrap();
        assert_eq!(c.inputs[0].shape, vec!["batch", "3"]);
        assert_eq!(c.outputs[0].dtype, "float32");
        let bytes = crate::encode(&m);
        let back = crate::card_from_bytes(&bytes, "t.onnx").unwrap();
        assert_eq!(back, c);
        let spot: &SpotImage = back.require().unwrap();
        assert_eq!(spot.mean_side_px(), Some(290.0));
        let e = back.require::<Expression>().unwrap_err().to_string();
        assert!(e.contains("`histology-spot` is not an expression classifier (gene-gcn, gene-mlp)"), "{e}");
        // every family name round-trips
        for f in Family::ALL {
            assert_eq!(f.name().parse::<Family>().unwrap(), f);
            assert_eq!(serde_json::to_value(f).unwrap(), f.name());
        }
    }

    /// `Family::preprocessing_kind` and the families each `Prep` accepts say the same thing.
    #[test]
    fn card_family_kinds_agree_with_prep_families() {
        fn agree<P: Prep>() {
            for f in Family::ALL {
                assert_eq!(P::FAMILIES.contains(&f), f.preprocessing_kind() == P::KIND, "{f} and {}", P::KIND);
            }
        }
        agree::<Expression>();
        agree::<NodeFeatures>();
        agree::<Cells>();
        agree::<Lookup>();
        agree::<Molecule>();
        agree::<SpotImage>();
    }

    #[test]
    fn card_embed_needs_a_meaning_for_every_tensor() {
        let mut m = model();
        let e = card().embed(&mut m, &[("image", "patch")]).unwrap_err().to_string();
        assert!(e.contains("no meaning given for `expression`"), "{e}");
        let e = card().embed(&mut m, &[("image", "p"), ("expression", "e"), ("logits", "l")]).unwrap_err().to_string();
        assert!(e.contains("`logits`, which is not a graph input"), "{e}");
    }

    #[test]
    fn card_versions_and_mismatches_give_clear_errors() {
        let mut v = serde_json::to_value(card()).unwrap();
        v["schema_version"] = 3.into();
        let e = ModelCard::from_json(&v.to_string()).unwrap_err().to_string();
        assert!(e.contains("schema 3 is newer"), "{e}");
        let old = r#"{"family": "gene-gcn", "version": "1", "preprocessing": {}}"#;
        let e = ModelCard::from_json(old).unwrap_err().to_string();
        assert!(e.contains("schema 1 predates typed cards"), "{e}");
        let mut v = serde_json::to_value(card()).unwrap();
        v["family"] = "gene-gcn".into();
        let e = ModelCard::from_json(&v.to_string()).unwrap_err().to_string();
        assert!(e.contains("needs preprocessing `expression`"), "{e}");
        // a spot card's patch span: absent reads as 1; zero, negative, NaN or huge is refused
        let mut v = serde_json::to_value(card()).unwrap();
        v["preprocessing"].as_object_mut().unwrap().remove("patch_span");
        let spot = ModelCard::from_json(&v.to_string()).unwrap();
        assert_eq!(spot.require::<SpotImage>().unwrap().patch_span, 1.0);
        for bad in [serde_json::json!(0.0), serde_json::json!(-2.0), serde_json::json!(1e9)] {
            v["preprocessing"]["patch_span"] = bad.clone();
            let e = ModelCard::from_json(&v.to_string()).unwrap_err().to_string();
            assert!(e.contains("patch_span"), "{bad}: {e}");
        }
        let mut c = card();
        c.embed(&mut model(), &[("image", "p"), ("expression", "e")]).unwrap();
        c.outputs[0].shape[1] = "4".into();
        let e = c.check_graph(&model()).unwrap_err().to_string();
        assert!(e.contains("disagrees with the graph"), "{e}");
    }

    /// `docs/model-card.schema.json` is the schema of this build (`BIOEDGE_BLESS=1` rewrites it).
    #[test]
    fn card_schema_is_published() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/model-card.schema.json");
        let want = serde_json::to_string_pretty(&ModelCard::json_schema()).unwrap() + "\n";
        if std::env::var_os("BIOEDGE_BLESS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(have == want, "{} is stale: run `BIOEDGE_BLESS=1 cargo test -p onnx-format card_schema`", path.display());
    }
}

//! Readers for expression matrices (samples × genes) and gene graphs.
//! Formats: GSEA `.txt`/`.gct` + `.cls`, CSV/TSV, HDF5 (documented layout), `.h5ad`.

/// A dense expression matrix: `values[s * genes.len() + g]` is sample `s`, gene `g`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpressionMatrix {
    pub samples: Vec<String>,
    pub genes: Vec<String>,
    pub values: Vec<f32>,
    /// One label per sample, when the source has labels.
    pub labels: Option<Vec<String>>,
}

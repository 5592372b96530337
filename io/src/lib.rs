//! Readers for the data the models take: expression tables (GSEA, CSV/TSV, HDF5, h5ad) and gene
//! sets ([`data`]), gene-interaction graphs ([`graph`]), spatial transcriptomics spots with their
//! images ([`spots`]: HER2ST, Space Ranger, Visium h5ad).
#![warn(missing_docs)]

pub mod data;
pub mod graph;
pub mod spots;

use bioedge_error as error;
pub use bioedge_error::{Error, Result};

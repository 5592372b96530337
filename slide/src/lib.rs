//! Spot models on images and whole slides: the image preprocessing contract ([`image_prep`]), slide
//! readers by region ([`wsi`] over tiled TIFFs in [`tiled`] and, with feature `openslide`, vendor
//! formats), JPEGs decoded on several threads ([`jpeg`]), the tissue grid and batched prediction
//! ([`pipeline`]), and heatmap PNGs with their legend ([`heatmap`], text in a built-in bitmap
//! [`font`]), and Reinhard and Macenko stain normalization per slide ([`stain`], [`macenko`]). The browser build uses this
//! crate and the runtime only.
#![warn(missing_docs)]

pub mod font;
pub mod heatmap;
pub mod image_prep;
pub mod jpeg;
pub mod macenko;
pub mod open;
#[cfg(feature = "openslide")]
pub mod openslide;
pub mod pipeline;
pub mod stain;
pub mod tiled;
pub mod wsi;

use bioedge_error as error;
pub use bioedge_error::{Error, Result};

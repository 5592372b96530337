//! Spot models on images and whole slides: the image preprocessing contract ([`image_prep`]), slide
//! readers by region ([`wsi`] over tiled TIFFs in [`tiled`] and, with feature `openslide`, vendor
//! formats), and the tissue grid, batched prediction and heatmaps ([`pipeline`]). The browser build
//! uses this crate and the runtime only.
#![warn(missing_docs)]

pub mod image_prep;
pub mod open;
#[cfg(feature = "openslide")]
pub mod openslide;
pub mod pipeline;
pub mod tiled;
pub mod wsi;

use bioedge_error as error;
pub use bioedge_error::{Error, Result};

//! `infer slide`: predicted expression over a whole histology image or slide.

use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub m: super::ModelArgs,
    #[arg(long)]
    pub image: PathBuf,
    /// HER2ST-style spot file (x y ... pixel_x pixel_y [selected]).
    #[arg(long, conflicts_with = "grid", required_unless_present = "grid")]
    pub spots: Option<PathBuf>,
    /// Regular grid over tissue (step = patch side).
    #[arg(long)]
    pub grid: bool,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Patch side in pixels (default: the card's preprocessing.patch_side_um at the slide's recorded
    /// microns per pixel when both exist, else the card's preprocessing.patch_side_px).
    #[arg(long)]
    pub patch_side: Option<f32>,
    #[arg(long)]
    pub out: PathBuf,
    /// Gene to draw a heatmap PNG for (repeatable).
    #[arg(long)]
    pub heatmap: Vec<String>,
    #[arg(long)]
    pub heatmap_dir: Option<PathBuf>,
    /// How to read the image: auto (OpenSlide for vendor formats when built with it, the
    /// tiled-TIFF reader for tiled/pyramidal TIFFs, else decode whole), tiff, openslide, image.
    #[arg(long, default_value = "auto")]
    pub reader: infer::open::Reader,
}

pub fn run(a: Args) -> Result<()> {
    let Args { m: super::ModelArgs { model, backend }, image, spots, grid: _, batch, patch_side, out, heatmap, heatmap_dir, reader } = a;
    onnx_format::check_output(&out, [model.as_path(), &image].into_iter().chain(spots.as_deref()))?;
    let r = infer::slide::run(&infer::slide::SlideOptions {
        model,
        image,
        spots,
        backend,
        batch,
        patch_side,
        out,
        heatmaps: heatmap,
        heatmap_dir,
        reader,
    })?;
    eprintln!(
        "{} spots × {} genes ({}×{} image, patch {} px) in {:.1}s ({:.1} spots/s, {}); wrote {}",
        r.spots,
        r.genes,
        r.width,
        r.height,
        r.patch_side,
        r.predict_s,
        r.spots as f64 / r.predict_s.max(1e-9),
        r.provider,
        r.written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

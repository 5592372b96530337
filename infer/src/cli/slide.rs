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
    /// Output file, the format from its extension (repeatable): `.csv` (id, pixel x/y, one column
    /// per gene), `.h5ad` (AnnData for scanpy/squidpy: predictions, spot positions, the slide image),
    /// `.geojson` (spot squares with measurements, for QuPath's "Import objects from file").
    #[arg(long, required = true)]
    pub out: Vec<PathBuf>,
    /// Classify spots by one gene's prediction, e.g. `ERBB2>1.5`: "ERBB2 high" / "ERBB2 low" in the
    /// GeoJSON `classification` and the h5ad's `obs["classification"]`.
    #[arg(long, value_name = "GENE>THRESHOLD")]
    pub classify: Option<infer::slide_outputs::ClassifyRule>,
    /// GeoJSON: keep only the N genes whose predictions vary most over the slide as measurements.
    #[arg(long, value_name = "N")]
    pub top_genes: Option<usize>,
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
    let Args {
        m: super::ModelArgs { model, backend },
        image,
        spots,
        grid: _,
        batch,
        patch_side,
        out,
        classify,
        top_genes,
        heatmap,
        heatmap_dir,
        reader,
    } = a;
    for o in &out {
        onnx_format::check_output(o, [model.as_path(), &image].into_iter().chain(spots.as_deref()))?;
    }
    let r = infer::slide::run(&infer::slide::SlideOptions {
        model,
        image,
        spots,
        backend,
        batch,
        patch_side,
        outputs: out,
        classify,
        top_genes,
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

//! `infer slide`: predicted expression over a whole histology image or slide.

use anyhow::Result;
use infer::slide_results::Existing;
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
    /// microns per pixel when both exist, else the card's preprocessing.patch_side_px). The grid
    /// steps by the patch side over the card's preprocessing.patch_span (1 unless the model reads
    /// the spot's neighbours too).
    #[arg(long)]
    pub patch_side: Option<f32>,
    /// Output file, the format from its extension (repeatable): `.csv` (id, pixel x/y, one column
    /// per gene), `.h5ad` (AnnData for scanpy/squidpy: predictions, spot positions, the slide image),
    /// `.geojson` (spot squares with measurements, for QuPath's "Import objects from file").
    #[arg(long, required_unless_present = "results_dir", conflicts_with = "results_dir")]
    pub out: Vec<PathBuf>,
    /// Results folder, WSInfer's layout, files named by the slide's file stem:
    /// model-outputs-csv/STEM.csv, model-outputs-geojson/STEM.geojson, model-outputs-h5ad/STEM.h5ad,
    /// heatmaps/STEM_GENE.png and, written last, run_metadata_STEM.json (model SHA-256, versions,
    /// parameters, timings). A slide with results there is refused unless --skip-existing or --overwrite.
    #[arg(long, value_name = "DIR")]
    pub results_dir: Option<PathBuf>,
    /// With --results-dir: skip a slide whose run metadata is there (finished); redo an unfinished one.
    #[arg(long, requires = "results_dir", conflicts_with = "overwrite")]
    pub skip_existing: bool,
    /// With --results-dir: redo the slide even when it has results there, replacing them.
    #[arg(long, requires = "results_dir")]
    pub overwrite: bool,
    /// Classify spots by one gene's prediction, e.g. `ERBB2>1.5`: "ERBB2 high" / "ERBB2 low" in the
    /// GeoJSON `classification` and the h5ad's `obs["classification"]`.
    #[arg(long, value_name = "GENE>THRESHOLD")]
    pub classify: Option<infer::slide_outputs::ClassifyRule>,
    /// GeoJSON: keep only the N genes whose predictions vary most over the slide as measurements.
    #[arg(long, value_name = "N")]
    pub top_genes: Option<usize>,
    /// Gene to draw a heatmap PNG for (repeatable): the slide with the spots coloured by the
    /// prediction, the gene, model and slide named, a colour bar with units and its end values.
    #[arg(long)]
    pub heatmap: Vec<String>,
    /// Folder of the heatmaps (GENE.png) when there is no --results-dir.
    #[arg(long, conflicts_with = "results_dir")]
    pub heatmap_dir: Option<PathBuf>,
    /// Draw the outline of the tissue mask (Otsu) on the heatmaps.
    #[arg(long, requires = "heatmap")]
    pub heatmap_outline: bool,
    /// Print one JSON line on stdout at the end: status ("ok", "skipped" or "error"), exit_code
    /// (0 done, 2 bad input, 3 runtime failure), slide, spots, genes, seconds (read, load_model,
    /// predict, write, total), spots_per_s, provider, outputs written, metadata; "error" with
    /// the message on failure. A bug (exit code 70) and a usage error found by the argument parser
    /// (exit code 2, before the run) print no line.
    #[arg(long)]
    pub summary_json: bool,
    /// How to read the image: auto (OpenSlide for vendor formats when built with it, the
    /// tiled-TIFF reader for tiled/pyramidal TIFFs, else decode whole), tiff, openslide, image.
    #[arg(long, default_value = "auto")]
    pub reader: infer::open::Reader,
    /// Memory budget in MB (e.g. a cluster job's request): checked against the run's estimated
    /// peak before any work; --batch is lowered to fit, a whole-image decode that cannot fit is
    /// an error (exit 2) suggesting a tiled pyramid. Default: no check.
    #[arg(long)]
    pub memory_mb: Option<u64>,
    /// Threads cropping and preprocessing patches, each with its own slide reader (default: for a
    /// slide read by regions half the cores, at least two; for an image decoded whole a quarter,
    /// at least one; the model runs on the cores left). More help where reading regions is the
    /// slow stage (OpenSlide, network storage).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub workers: u32,
}

pub fn run(a: Args) -> Result<()> {
    let (summary_json, image) = (a.summary_json, a.image.clone());
    let r = run_slide(a);
    if summary_json {
        let line = match &r {
            Ok(s) => s.to_json(&image),
            Err(e) => serde_json::json!({
                "status": "error",
                "exit_code": super::exit_code(e),
                "slide": image.display().to_string(),
                "error": format!("{e:#}"),
            }),
        };
        println!("{line}");
    }
    r.map(|_| ())
}

fn run_slide(a: Args) -> Result<infer::slide::SlideSummary> {
    let Args {
        m: super::ModelArgs { model, backend, threads },
        image,
        spots,
        grid: _,
        batch,
        patch_side,
        out,
        results_dir,
        skip_existing,
        overwrite,
        classify,
        top_genes,
        heatmap,
        heatmap_dir,
        heatmap_outline,
        summary_json: _,
        reader,
        memory_mb,
        workers,
    } = a;
    for o in &out {
        onnx_format::check_output(o, [model.as_path(), &image].into_iter().chain(spots.as_deref()))?;
    }
    let existing = match (skip_existing, overwrite) {
        (true, _) => Existing::Skip,
        (false, true) => Existing::Overwrite,
        (false, false) => Existing::Refuse,
    };
    let r = infer::slide::run(&infer::slide::SlideOptions {
        model,
        image,
        spots,
        backend,
        batch,
        threads,
        patch_side,
        outputs: out,
        classify,
        top_genes,
        heatmaps: heatmap,
        heatmap_dir,
        heatmap_outline,
        results_dir,
        existing,
        reader,
        memory_mb,
        workers: workers as usize,
    })?;
    if !r.skipped {
        eprintln!(
            "{} spots × {} genes ({}×{} image, patch {} px, grid step {} px) in {:.1}s ({:.1} spots/s, {}); wrote {}",
            r.spots,
            r.genes,
            r.width,
            r.height,
            r.patch_side,
            r.grid_step,
            r.predict_s,
            r.spots_per_s(),
            r.provider,
            r.written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(r)
}

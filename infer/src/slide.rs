//! `infer slide`: a spot model over a whole image or slide, at the spots of a spot file or on a
//! grid over tissue; a per-spot CSV and heatmap PNGs, written together at the end. The pieces
//! (tissue mask, grid, batched prediction, heatmaps) are [`bioedge_slide::pipeline`]'s.

pub use bioedge_slide::pipeline::*;

use crate::error::{Error, Result};
use bioedge_runtime::{Backend, Options, Session};
use bioedge_slide::image_prep::{image_dimensions, load_rgb};
use bioedge_slide::open::Reader;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `infer slide` does.
#[derive(Debug, Clone)]
pub struct SlideOptions {
    /// ONNX model file (with its model card).
    pub model: PathBuf,
    /// Image or whole-slide file to predict on.
    pub image: PathBuf,
    /// HER2ST-style spot file; `None` means a grid over tissue.
    pub spots: Option<PathBuf>,
    /// Inference backend.
    pub backend: Backend,
    /// Patches per model run.
    pub batch: usize,
    /// Patch side in pixels; default from the model card (`preprocessing.patch_side_px`).
    pub patch_side: Option<f32>,
    /// Per-spot CSV to write.
    pub out: PathBuf,
    /// Genes to draw a heatmap for.
    pub heatmaps: Vec<String>,
    /// Directory for the heatmap PNGs (needed when `heatmaps` is not empty).
    pub heatmap_dir: Option<PathBuf>,
    /// How the image is read.
    pub reader: Reader,
}

/// What a run did, for the log.
#[derive(Debug, Clone)]
pub struct SlideSummary {
    /// Spots predicted.
    pub spots: usize,
    /// Genes predicted per spot.
    pub genes: usize,
    /// Image width in pixels (level 0).
    pub width: u32,
    /// Image height in pixels (level 0).
    pub height: u32,
    /// Patch side used, in pixels.
    pub patch_side: f32,
    /// Execution provider that ran the model (e.g. `tract`, `ort-cpu`).
    pub provider: String,
    /// Seconds spent cropping + running (after decoding).
    pub predict_s: f64,
    /// Files written: the CSV, then the heatmaps.
    pub written: Vec<PathBuf>,
}

/// Spots from a HER2ST spot file; all must lie inside a `w × h` image.
pub fn file_spots(path: &Path, w: u32, h: u32) -> Result<Vec<SlideSpot>> {
    let (spots, _) = crate::spots::read_spot_file(path)?;
    if spots.is_empty() {
        return Err(Error::format(path, "no selected spots"));
    }
    let outside: Vec<_> =
        spots.iter().filter(|s| !(s.pixel_x >= 0.0 && s.pixel_y >= 0.0 && s.pixel_x < w as f32 && s.pixel_y < h as f32)).collect();
    if let Some(s) = outside.first() {
        return Err(Error::format(
            path,
            format!("{} spot(s) outside the {w}×{h} image, first {} at ({:.1}, {:.1})", outside.len(), s.key, s.pixel_x, s.pixel_y),
        ));
    }
    Ok(spots.into_iter().map(|s| SlideSpot { id: s.key, x: s.pixel_x, y: s.pixel_y }).collect())
}

fn safe_name(g: &str) -> String {
    g.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' }).collect()
}

/// The whole command. Checks everything (card, genes, spot positions, image) before writing;
/// the CSV and heatmaps are written atomically at the end.
pub fn run(o: &SlideOptions) -> Result<SlideSummary> {
    let card = crate::read_card(&o.model)?;
    let (prep, card_side) = card_params(&card, &o.model)?;
    let heat = gene_indices(&o.heatmaps, &card.genes)?;
    if !heat.is_empty() && o.heatmap_dir.is_none() {
        return Err(Error::Input("--heatmap needs --heatmap-dir".into()));
    }
    if let Some(s) = o.patch_side.filter(|s| !(s.is_finite() && *s >= 1.0)) {
        return Err(Error::Input(format!("--patch-side {s} must be >= 1 px")));
    }
    // Whole-slide image: read by regions; anything else is decoded whole.
    let mut slide = bioedge_slide::open::open(&o.image, o.reader)?;
    // Patch side: given; else the card's physical size at the slide's resolution; else the card's pixels.
    let side = match (o.patch_side, card_patch_um(&card), slide.as_ref().and_then(|t| t.mpp())) {
        (Some(s), _, _) => s,
        (None, Some(um), Some((mx, my))) => {
            let mpp = (mx + my) / 2.0;
            let s = (um as f64 / mpp) as f32;
            eprintln!("slide: patch side {s:.1} px = {um} µm at {mpp:.4} µm/px (the slide's resolution)");
            s
        }
        (None, _, _) => card_side.ok_or_else(|| Error::Model {
            path: o.model.clone(),
            msg: "model card has no preprocessing.patch_side_px; pass --patch-side".into(),
        })?,
    };
    if !(side.is_finite() && side >= 1.0) {
        return Err(Error::Input(format!("{}: patch side {side} px is below 1 px", o.image.display())));
    }
    let (w, h) = match &slide {
        Some(t) => t.dimensions(),
        None => image_dimensions(&o.image)?,
    };
    let file = match &o.spots {
        Some(p) => Some(file_spots(p, w, h)?),
        None => None,
    };
    let t0 = Instant::now();
    let img = match &slide {
        Some(t) => {
            let sizes: Vec<String> = t.level_sizes().iter().map(|(w, h)| format!("{w}×{h}")).collect();
            eprintln!("slide: {} read by {}, levels {}; reading regions", o.image.display(), t.kind(), sizes.join(", "));
            None
        }
        None => {
            let img = load_rgb(&o.image)?;
            eprintln!("slide: decoded {} ({}×{}) in {:.1}s", o.image.display(), img.width(), img.height(), t0.elapsed().as_secs_f64());
            Some(img)
        }
    };
    let spots = match (file, &img, &mut slide) {
        (Some(s), _, _) => s,
        (None, Some(img), _) => grid_spots(img, side),
        (None, None, Some(t)) => grid_spots_slide(t.as_mut(), side)?,
        (None, None, None) => unreachable!("either an image or a slide reader"),
    };
    if spots.is_empty() {
        return Err(Error::Input(format!("{}: no tissue spots found on the grid (patch side {side} px)", o.image.display())));
    }
    // Heatmap background now: the slide reader moves to the producer thread below.
    let want_heat = o.heatmap_dir.is_some() && !heat.is_empty();
    let background = match (&img, &mut slide) {
        _ if !want_heat => None,
        (Some(img), _) => Some(downscale(img, HEATMAP_SIDE)).map(|(bg, f)| (bg, f as f32)),
        (None, Some(t)) => Some(slide_overview(t.as_mut(), HEATMAP_SIDE)?).map(|(bg, f)| (bg, f.0)),
        (None, None) => None,
    };
    let source = match (&img, slide) {
        (Some(img), _) => Patches::Image(img),
        (None, Some(t)) => Patches::Slide(t),
        (None, None) => unreachable!("either an image or a slide reader"),
    };
    let mut session = Session::from_file(&o.model, o.backend, &Options::default())?;
    let t1 = Instant::now();
    let values = predict_from(&mut session, source, &spots, side, &prep, o.batch, card.genes.len())?;
    let predict_s = t1.elapsed().as_secs_f64();
    // Render everything before writing anything.
    let mut files: Vec<(PathBuf, Vec<u8>)> = vec![(o.out.clone(), to_csv(&spots, &card.genes, &values).into_bytes())];
    if let (Some(dir), Some((bg, f))) = (o.heatmap_dir.as_ref(), background.as_ref()) {
        let (bg, f) = (bg, *f);
        let k = card.genes.len();
        for &g in &heat {
            let col: Vec<f32> = values.iter().skip(g).step_by(k).copied().collect();
            files.push((dir.join(format!("{}.png", safe_name(&card.genes[g]))), heatmap_png(bg, f, &spots, &col, side)?));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    for (p, bytes) in &files {
        onnx_format::write_atomic(p, bytes).map_err(|e| Error::io(p, e))?;
    }
    Ok(SlideSummary {
        spots: spots.len(),
        genes: card.genes.len(),
        width: w,
        height: h,
        patch_side: side,
        provider: session.provider.clone(),
        predict_s,
        written: files.into_iter().map(|(p, _)| p).collect(),
    })
}

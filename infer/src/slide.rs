//! `infer slide`: a spot model over a whole image or slide, at the spots of a spot file or on a
//! grid over tissue; a per-spot CSV, an AnnData `.h5ad` and a QuPath GeoJSON
//! ([`crate::slide_outputs`]) and heatmap PNGs, all rendered before any is written. The pieces
//! (tissue mask, grid, batched prediction, heatmaps) are [`bioedge_slide::pipeline`]'s.

pub use bioedge_slide::pipeline::*;

#[cfg(feature = "hdf5")]
use crate::data::h5ad_write::{Staged, Value};
use crate::error::{Error, Result};
use crate::slide_outputs::{ClassifyRule, HIRES_SIDE, LOWRES_SIDE, OutputFormat, SpatialImages};
use bioedge_runtime::{Backend, Options, Session};
use bioedge_slide::image_prep::{image_dimensions, load_rgb};
use bioedge_slide::open::Reader;
use image::RgbImage;
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
    /// Files to write, the format from each extension ([`OutputFormat`]): `.csv`, `.h5ad`, `.geojson`.
    pub outputs: Vec<PathBuf>,
    /// Classify spots by one gene's prediction (GeoJSON `classification`, h5ad `obs["classification"]`).
    pub classify: Option<ClassifyRule>,
    /// Keep only the N most variable genes in the GeoJSON measurements.
    pub top_genes: Option<usize>,
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
    /// Files written: the outputs in the order given, then the heatmaps.
    pub written: Vec<PathBuf>,
}

/// Spots from a HER2ST spot file; all must lie inside a `w × h` image.
pub fn file_spots(path: &Path, w: u32, h: u32) -> Result<Vec<SlideSpot>> {
    Ok(file_spots_with_array(path, w, h)?.into_iter().map(|(s, _)| s).collect())
}

/// [`file_spots`] with each spot's array coordinates (array_row, array_col) = the file's (y, x).
pub fn file_spots_with_array(path: &Path, w: u32, h: u32) -> Result<Vec<(SlideSpot, (i64, i64))>> {
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
    Ok(spots.into_iter().map(|s| (SlideSpot { id: s.key, x: s.pixel_x, y: s.pixel_y }, (s.array_y as i64, s.array_x as i64))).collect())
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
    let outputs = check_outputs(o)?;
    let has = |f: OutputFormat| outputs.iter().any(|(_, g)| *g == f);
    let classify = match &o.classify {
        Some(rule) => Some((rule, gene_indices_for("--classify", std::slice::from_ref(&rule.gene), &card.genes)?[0])),
        None => None,
    };
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
        Some(p) => Some(file_spots_with_array(p, w, h)?),
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
    // The tissue mask: for the grid, and for the tissue fraction of each spot in the h5ad.
    let mask = match (&img, &mut slide) {
        _ if file.is_some() && !has(OutputFormat::H5ad) => None,
        (Some(img), _) => Some(TissueMask::of_image(img)),
        (None, Some(t)) => Some(TissueMask::of_slide(t.as_mut())?),
        (None, None) => unreachable!("either an image or a slide reader"),
    };
    let (spots, array): (Vec<SlideSpot>, Vec<(i64, i64)>) = match (file, &mask) {
        (Some(s), _) => s.into_iter().unzip(),
        (None, Some(m)) => {
            let spots = m.grid(side);
            // grid row and column back from the centres ((i + 0.5) × side)
            let array = spots.iter().map(|s| ((s.y / side - 0.5).round() as i64, (s.x / side - 0.5).round() as i64)).collect();
            (spots, array)
        }
        (None, None) => unreachable!("a grid run computes the mask"),
    };
    if spots.is_empty() {
        return Err(Error::Input(format!("{}: no tissue spots found on the grid (patch side {side} px)", o.image.display())));
    }
    // Downscaled copies now: the slide reader moves to the producer thread below.
    let want_heat = o.heatmap_dir.is_some() && !heat.is_empty();
    // (copy, its pixel size in level-0 pixels along x and y)
    let mut overview = |max_side: u32| -> Result<(RgbImage, (f32, f32))> {
        match (&img, &mut slide) {
            (Some(img), _) => Ok(downscale(img, max_side)).map(|(bg, f)| (bg, (f as f32, f as f32))),
            (None, Some(t)) => slide_overview(t.as_mut(), max_side),
            (None, None) => unreachable!("either an image or a slide reader"),
        }
    };
    let background = if want_heat { Some(overview(HEATMAP_SIDE)?).map(|(bg, f)| (bg, f.0)) } else { None };
    let images = if has(OutputFormat::H5ad) {
        // one scale factor per image (scanpy's convention): the mean of x and y, which differ
        // only by the rounding of a pyramid level's size
        let ((hires, fh), (lowres, fl)) = (overview(HIRES_SIDE)?, overview(LOWRES_SIDE)?);
        let scalef = |f: (f32, f32)| 2.0 / (f.0 as f64 + f.1 as f64);
        Some(SpatialImages { hires, hires_scalef: scalef(fh), lowres, lowres_scalef: scalef(fl) })
    } else {
        None
    };
    let source = match (&img, slide) {
        (Some(img), _) => Patches::Image(img),
        (None, Some(t)) => Patches::Slide(t),
        (None, None) => unreachable!("either an image or a slide reader"),
    };
    let mut session = Session::from_file(&o.model, o.backend, &Options::default())?;
    let t1 = Instant::now();
    let k = card.genes.len();
    let values = predict_from(&mut session, source, &spots, side, &prep, o.batch, k)?;
    let predict_s = t1.elapsed().as_secs_f64();
    // Render everything before writing anything (the h5ad into a temporary file beside its output).
    let high = classify.map(|(rule, g)| rule.apply(&values, k, g));
    let classes = classify.zip(high.as_deref()).map(|((rule, _), high)| (rule, high));
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut staged: Vec<Staged> = Vec::new();
    let mut written = Vec::new();
    for (path, format) in &outputs {
        written.push(path.clone());
        match format {
            OutputFormat::Csv => files.push((path.clone(), to_csv(&spots, &card.genes, &values).into_bytes())),
            OutputFormat::GeoJson => {
                let keep = crate::slide_outputs::top_variable_genes(&values, k, o.top_genes.unwrap_or(k));
                let json = crate::slide_outputs::to_geojson(&spots, &card.genes, &values, side, (w, h), &keep, classes);
                files.push((path.clone(), json.into_bytes()));
            }
            OutputFormat::H5ad => {
                let (Some(mask), Some(images)) = (&mask, &images) else { unreachable!("an h5ad run computes the mask and the images") };
                let tissue: Vec<f32> = spots.iter().map(|s| mask.fraction(s.x, s.y, side)).collect();
                let parts =
                    H5adParts { spots: &spots, array: &array, tissue: &tissue, values: &values, side, images, classes, card: &card };
                staged.push(h5ad_output(o, path, &parts, &session.provider)?);
            }
        }
    }
    if let (Some(dir), Some((bg, f))) = (o.heatmap_dir.as_ref(), background.as_ref()) {
        for &g in &heat {
            let col: Vec<f32> = values.iter().skip(g).step_by(k).copied().collect();
            let p = dir.join(format!("{}.png", safe_name(&card.genes[g])));
            written.push(p.clone());
            files.push((p, heatmap_png(bg, *f, &spots, &col, side)?));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    for (p, bytes) in &files {
        onnx_format::write_atomic(p, bytes).map_err(|e| Error::io(p, e))?;
    }
    for s in staged {
        s.commit()?;
    }
    Ok(SlideSummary {
        spots: spots.len(),
        genes: k,
        width: w,
        height: h,
        patch_side: side,
        provider: session.provider.clone(),
        predict_s,
        written,
    })
}

/// The outputs with their formats; an error for an unknown extension, a path given twice, or
/// `--top-genes` / `--classify` with no output that uses them.
fn check_outputs(o: &SlideOptions) -> Result<Vec<(PathBuf, OutputFormat)>> {
    if o.outputs.is_empty() {
        return Err(Error::Input("give at least one --out (.csv, .h5ad or .geojson)".into()));
    }
    let mut out: Vec<(PathBuf, OutputFormat)> = Vec::new();
    for p in &o.outputs {
        let f = OutputFormat::of(p)?;
        #[cfg(not(feature = "hdf5"))]
        if f == OutputFormat::H5ad {
            return Err(no_hdf5());
        }
        if out.iter().any(|(q, _)| q == p) {
            return Err(Error::Input(format!("--out {} is given twice", p.display())));
        }
        out.push((p.clone(), f));
    }
    let has = |f: OutputFormat| out.iter().any(|(_, g)| *g == f);
    if o.top_genes == Some(0) {
        return Err(Error::Input("--top-genes must be at least 1".into()));
    }
    if o.top_genes.is_some() && !has(OutputFormat::GeoJson) {
        return Err(Error::Input("--top-genes applies to a .geojson output; none was given".into()));
    }
    if o.classify.is_some() && !has(OutputFormat::GeoJson) && !has(OutputFormat::H5ad) {
        return Err(Error::Input("--classify applies to .geojson and .h5ad outputs; none was given".into()));
    }
    Ok(out)
}

/// What the h5ad output is made of (besides the run's options).
#[cfg_attr(not(feature = "hdf5"), allow(dead_code))]
struct H5adParts<'a> {
    spots: &'a [SlideSpot],
    array: &'a [(i64, i64)],
    tissue: &'a [f32],
    values: &'a [f32],
    side: f32,
    images: &'a SpatialImages,
    classes: Option<(&'a ClassifyRule, &'a [bool])>,
    card: &'a onnx_format::ModelCard,
}

/// The h5ad output, written to a temporary file beside `path`.
#[cfg(feature = "hdf5")]
fn h5ad_output(o: &SlideOptions, path: &Path, p: &H5adParts, provider: &str) -> Result<Staged> {
    let library_id = o.image.file_stem().map(|s| s.to_string_lossy().into_owned()).filter(|s| !s.is_empty()).unwrap_or("slide".into());
    let a = crate::slide_outputs::to_anndata(&crate::slide_outputs::SlideAnnData {
        spots: p.spots,
        array: p.array,
        tissue: p.tissue,
        values: p.values,
        side: p.side,
        library_id,
        images: p.images,
        classes: p.classes,
        card: p.card,
        run: run_parameters(o, p.side, provider),
    })?;
    crate::data::h5ad_write::stage_h5ad(path, &a)
}

/// Without HDF5 support: the error [`check_outputs`] gives first.
#[cfg(not(feature = "hdf5"))]
fn h5ad_output(_: &SlideOptions, _: &Path, _: &H5adParts, _: &str) -> Result<Staged> {
    Err(no_hdf5())
}

#[cfg(not(feature = "hdf5"))]
fn no_hdf5() -> Error {
    Error::Unsupported("this build of infer has no HDF5 support for .h5ad outputs; rebuild it with `--features hdf5`".into())
}

/// Stand-in for the h5ad writer's temporary file in builds without HDF5 (never made).
#[cfg(not(feature = "hdf5"))]
struct Staged;

#[cfg(not(feature = "hdf5"))]
impl Staged {
    fn commit(self) -> Result<PathBuf> {
        Err(no_hdf5())
    }
}

/// The run's parameters, for `uns["bioedge"]` of the h5ad.
#[cfg(feature = "hdf5")]
fn run_parameters(o: &SlideOptions, side: f32, provider: &str) -> Vec<(String, Value)> {
    let text = |p: &Path| Value::Str(p.display().to_string());
    let mut v = vec![
        ("tool".to_string(), Value::Str(format!("bioedge infer slide {}", env!("CARGO_PKG_VERSION")))),
        ("model".to_string(), text(&o.model)),
        ("image".to_string(), text(&o.image)),
        ("spots".to_string(), o.spots.as_deref().map(text).unwrap_or(Value::Str("grid over tissue".into()))),
        ("patch_side_px".to_string(), Value::F64(side as f64)),
        ("backend".to_string(), Value::Str(o.backend.name().into())),
        ("provider".to_string(), Value::Str(provider.to_string())),
        ("batch".to_string(), Value::I64(o.batch as i64)),
        ("values".to_string(), Value::Str("X holds the model's output per spot (see model_card.outputs)".into())),
    ];
    if let Some(r) = &o.classify {
        v.push(("classify".to_string(), Value::Str(format!("{}>{}", r.gene, r.threshold))));
    }
    v
}

//! `infer slide`: a spot model over a whole image or slide, at the spots of a spot file or on a
//! grid over tissue; a per-spot CSV, an AnnData `.h5ad` and a QuPath GeoJSON
//! ([`crate::slide_outputs`]) and heatmap PNGs with their legend, all rendered before any is
//! written; either at the paths given or in a WSInfer-style results folder with run metadata
//! ([`crate::slide_results`]). The pieces (tissue mask, grid, batched prediction, heatmaps) are
//! [`bioedge_slide::pipeline`]'s.

pub use bioedge_slide::pipeline::*;

#[cfg(feature = "hdf5")]
use crate::data::h5ad_write::{Staged, Value};
use crate::error::{Error, Result};
use crate::slide_outputs::{ClassifyRule, HIRES_SIDE, LOWRES_SIDE, OutputFormat, SpatialImages};
use crate::slide_results::{Existing, Prior, ResultsLayout};
use bioedge_runtime::{Backend, Options, Session};
use bioedge_slide::image_prep::image_dimensions;
use bioedge_slide::jpeg::load_rgb_threads;
use bioedge_slide::open::Reader;
use image::RgbImage;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

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
    /// Threads per model run, tract and ONNX Runtime alike (0: the cores the patch workers leave,
    /// at least one).
    pub threads: usize,
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
    /// Directory for the heatmap PNGs (needed when `heatmaps` is not empty and there is no results folder).
    pub heatmap_dir: Option<PathBuf>,
    /// Draw the outline of the tissue mask on the heatmaps.
    pub heatmap_outline: bool,
    /// A WSInfer-style results folder ([`crate::slide_results`]) instead of `outputs` and `heatmap_dir`.
    pub results_dir: Option<PathBuf>,
    /// What to do when the results folder already has this slide's results.
    pub existing: Existing,
    /// How the image is read.
    pub reader: Reader,
    /// Memory budget in MB ([`memory_plan`]); `None`: no check.
    pub memory_mb: Option<u64>,
    /// Threads cropping and preprocessing patches (each with its own slide reader); 0: by the
    /// cores and the input ([`patch_workers`]).
    pub workers: usize,
}

/// A run's estimated peak memory, in bytes, by part (the rule `--memory-mb` checks).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryPlan {
    /// The process, runtime and buffers that do not scale with the input: 150 MB.
    pub base: u64,
    /// The model: 3 × its file (weights as read, as loaded by the runtime, and the plan).
    pub model: u64,
    /// The image: W × H × 3 when decoded whole (and a tissue mask of W × H / 64 bytes); 64 MB of
    /// region cache per worker thread (each has its own reader) for a slide read by regions.
    pub image: u64,
    /// Per patch in flight: the crop (side² × 3) and the model input (size² × 3 × 4 bytes), times
    /// the batches in memory: one per worker thread and 2 more (queued, in the model).
    pub per_patch: u64,
}

impl MemoryPlan {
    /// The total for `batch` patches per model run.
    pub fn total(&self, batch: usize) -> u64 {
        self.base + self.model + self.image + self.per_patch * batch as u64
    }
}

/// The estimate for a `w × h` image (decoded whole unless `regions`), patches of `side` px fed
/// to a model input of `size` px, a model file of `model_bytes` and `workers` threads cropping.
pub fn memory_plan(w: u32, h: u32, regions: bool, side: f32, size: u32, model_bytes: usize, workers: usize) -> MemoryPlan {
    let px = w as u64 * h as u64;
    let crop = (side.ceil() as u64).pow(2) * 3;
    let workers = workers.max(1) as u64;
    MemoryPlan {
        base: 150 << 20,
        model: 3 * model_bytes as u64,
        image: if regions { workers * (64 << 20) } else { px * 3 + px / 64 },
        per_patch: (workers + 2) * (crop + (size as u64).pow(2) * 3 * 4),
    }
}

/// Threads cropping and preprocessing patches on a machine with `cores` cores. From an image
/// decoded whole (a crop is a copy): a quarter of them, at least one, at most 8. From a slide read
/// by regions (each read decodes tiles): half of them, at least two, at most 8 — they block when
/// they are ahead of the model, so two on two cores cost little when the model is the slow stage
/// and hide the reads when reading is. The model runs on the cores left (at least one).
pub fn patch_workers(cores: usize, regions: bool) -> usize {
    if regions { (cores / 2).clamp(2, 8) } else { (cores / 4).clamp(1, 8) }
}

/// The batch that fits `budget_mb` (at most `batch`), or an error naming what does not fit.
fn fit_memory(plan: &MemoryPlan, batch: usize, budget_mb: u64, image: &Path, regions: bool) -> Result<usize> {
    let budget = budget_mb << 20;
    let mb = |b: u64| b.div_ceil(1 << 20);
    if plan.total(1) > budget {
        let hint = if regions {
            "raise --memory-mb".to_string()
        } else {
            format!(
                "the image decoded whole needs {} MB: convert it to a tiled pyramid (read by regions; e.g. `vips tiffsave in.jpg out.tif --tile --pyramid`) or raise --memory-mb",
                mb(plan.image)
            )
        };
        return Err(Error::Input(format!(
            "{}: this run needs about {} MB with one patch per batch (model {} MB, image {} MB, {} MB fixed), over --memory-mb {budget_mb}; {hint}",
            image.display(),
            mb(plan.total(1)),
            mb(plan.model),
            mb(plan.image),
            mb(plan.base)
        )));
    }
    let fits = ((budget - plan.total(0)) / plan.per_patch.max(1)) as usize;
    if fits < batch {
        eprintln!("slide: --batch {batch} lowered to {fits} to stay within --memory-mb {budget_mb}");
        return Ok(fits.max(1));
    }
    Ok(batch)
}

/// What a run did, for the log and `--summary-json`.
#[derive(Debug, Clone)]
pub struct SlideSummary {
    /// The slide was skipped: the results folder has its finished results (`--skip-existing`);
    /// the counts below are that run's.
    pub skipped: bool,
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
    /// Grid step (spot spacing) in pixels: the patch side over the card's `patch_span`.
    pub grid_step: f32,
    /// Execution provider that ran the model (e.g. `tract`, `ort-cpu`).
    pub provider: String,
    /// Seconds reading: the model card, decoding or opening the slide, tissue mask, overviews.
    pub read_s: f64,
    /// Seconds loading the model into the runtime (on its own thread, while the image is read).
    pub load_s: f64,
    /// Seconds spent cropping + running (after decoding).
    pub predict_s: f64,
    /// Seconds rendering and writing the outputs.
    pub write_s: f64,
    /// Seconds of the whole run.
    pub total_s: f64,
    /// Files written: the outputs in the order given, then the heatmaps, then the run metadata.
    pub written: Vec<PathBuf>,
    /// The run metadata of the slide (results folder only).
    pub metadata: Option<PathBuf>,
}

impl SlideSummary {
    /// Predicted spots per second of prediction.
    pub fn spots_per_s(&self) -> f64 {
        if self.predict_s > 0.0 { self.spots as f64 / self.predict_s } else { 0.0 }
    }

    /// The one-line JSON of `--summary-json` for `image`: `status` `ok` or `skipped`,
    /// `exit_code` 0, counts, `seconds`, `provider`, `outputs` (written now), `metadata`.
    pub fn to_json(&self, image: &Path) -> serde_json::Value {
        let r3 = |v: f64| (v * 1000.0).round() / 1000.0;
        json!({
            "status": if self.skipped { "skipped" } else { "ok" },
            "exit_code": 0,
            "slide": image.display().to_string(),
            "spots": self.spots,
            "genes": self.genes,
            "width": self.width,
            "height": self.height,
            "patch_side_px": self.patch_side,
            "grid_step_px": self.grid_step,
            "provider": self.provider,
            "seconds": {"read": r3(self.read_s), "load_model": r3(self.load_s), "predict": r3(self.predict_s),
                        "write": r3(self.write_s), "total": r3(self.total_s)},
            "spots_per_s": r3(self.spots_per_s()),
            "outputs": self.written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "metadata": self.metadata.as_ref().map(|p| p.display().to_string()),
        })
    }
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

/// The units of a spot model's predictions for the heatmap legend, from its card's `targets`.
fn heatmap_units(card: &onnx_format::ModelCard) -> String {
    let t = card.require::<onnx_format::card::SpotImage>().map(|s| s.targets.trim().to_string()).unwrap_or_default();
    if t.starts_with("log1p") || t.is_empty() { "log1p expression".into() } else { t }
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string())
}

/// What the results folder means for this run: `Ok(Some(summary))` when the slide is skipped.
fn results_prior(o: &SlideOptions, layout: &ResultsLayout, files: &[PathBuf], start: Instant) -> Result<Option<SlideSummary>> {
    let meta = layout.metadata();
    match (crate::slide_results::prior(layout, files)?, o.existing) {
        (Prior::None, _) | (_, Existing::Overwrite) | (Prior::Partial(_), Existing::Skip) => Ok(None),
        (Prior::Finished(m), Existing::Skip) => {
            crate::slide_results::check_same_slide(&m, &o.image, &meta)?;
            eprintln!("slide: {} is finished ({}); skipped (--skip-existing)", o.image.display(), meta.display());
            let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
            Ok(Some(SlideSummary {
                skipped: true,
                spots: n(&m["timings"]["spots"]) as usize,
                genes: n(&m["model"]["genes"]) as usize,
                width: n(&m["slide"]["width"]) as u32,
                height: n(&m["slide"]["height"]) as u32,
                patch_side: m["parameters"]["patch_side_px"].as_f64().unwrap_or(0.0) as f32,
                grid_step: m["parameters"]["grid_step_px"].as_f64().unwrap_or(0.0) as f32,
                provider: m["provider"].as_str().unwrap_or("").to_string(),
                read_s: 0.0,
                load_s: 0.0,
                predict_s: 0.0,
                write_s: 0.0,
                total_s: start.elapsed().as_secs_f64(),
                written: Vec::new(),
                metadata: Some(meta),
            }))
        }
        (Prior::Finished(m), Existing::Refuse) => Err(Error::Input(format!(
            "{} already has the finished results of {} ({}, {}); nothing written. Pass --skip-existing to skip finished slides \
             or --overwrite to redo them",
            layout.dir.display(),
            o.image.display(),
            meta.display(),
            m["finished_utc"].as_str().unwrap_or("time unknown")
        ))),
        (Prior::Partial(there), Existing::Refuse) => Err(Error::Input(format!(
            "{} already has results of {} from an unfinished run (no {}): {}; nothing written. Pass --skip-existing or \
             --overwrite to redo the slide",
            layout.dir.display(),
            o.image.display(),
            file_name(&meta),
            there.iter().map(|p| layout.relative(p)).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Prediction progress on stderr: a bar with spots/s on a terminal, else a line every 2 s and at
/// the end (`slide: DONE/TOTAL patches, RATE/s`).
fn progress_reporter(total: usize) -> impl FnMut(Progress) {
    use std::io::IsTerminal;
    let bar = std::io::stderr().is_terminal().then(|| {
        // cleared when dropped unfinished (an error ends the run)
        let bar = indicatif::ProgressBar::new(total as u64).with_finish(indicatif::ProgressFinish::AndClear);
        let style = indicatif::ProgressStyle::with_template("slide: {bar:40} {pos}/{len} patches, {msg} (ETA {eta})");
        if let Ok(style) = style {
            bar.set_style(style);
        }
        bar
    });
    let mut last: Option<Instant> = None;
    move |p: Progress| {
        let rate = p.done as f64 / p.elapsed_s.max(1e-9);
        match &bar {
            Some(bar) if p.done >= p.total => {
                bar.finish_and_clear();
                eprintln!("slide: {}/{} patches, {rate:.1}/s", p.done, p.total);
            }
            Some(bar) => {
                bar.set_position(p.done as u64);
                bar.set_message(format!("{rate:.1} spots/s"));
            }
            None if p.done >= p.total || last.is_none_or(|t| t.elapsed().as_secs_f64() >= 2.0) => {
                eprintln!("slide: {}/{} patches, {rate:.1}/s", p.done, p.total);
                last = Some(Instant::now());
            }
            None => {}
        }
    }
}

/// The whole command. Checks everything (card, genes, spot positions, image, the results
/// folder) before writing; each output is written atomically at the end, the run metadata last.
pub fn run(o: &SlideOptions) -> Result<SlideSummary> {
    let start = Instant::now();
    let started = SystemTime::now();
    let model_bytes = std::fs::read(&o.model).map_err(|e| Error::io(&o.model, e))?;
    let card = onnx_format::card_from_bytes(&model_bytes, &o.model.display().to_string())?;
    let (prep, card_side) = card_params(&card, &o.model)?;
    let heat = gene_indices(&o.heatmaps, &card.genes)?;
    if o.results_dir.is_some() && (!o.outputs.is_empty() || o.heatmap_dir.is_some()) {
        return Err(Error::Input("--results-dir names every output itself; leave out --out and --heatmap-dir".into()));
    }
    if o.results_dir.is_none() && o.existing != Existing::Refuse {
        return Err(Error::Input(format!("--{} applies to --results-dir", o.existing.name())));
    }
    if !heat.is_empty() && o.heatmap_dir.is_none() && o.results_dir.is_none() {
        return Err(Error::Input("--heatmap needs --heatmap-dir (or --results-dir)".into()));
    }
    if o.heatmap_outline && heat.is_empty() {
        return Err(Error::Input("--heatmap-outline applies to heatmaps; give --heatmap GENE".into()));
    }
    if let Some(s) = o.patch_side.filter(|s| !(s.is_finite() && *s >= 1.0)) {
        return Err(Error::Input(format!("--patch-side {s} must be >= 1 px")));
    }
    let layout = o.results_dir.as_deref().map(|d| ResultsLayout::new(d, &o.image)).transpose()?;
    let given: Vec<PathBuf> = match &layout {
        Some(l) => l.outputs(),
        None => o.outputs.clone(),
    };
    let outputs = check_outputs(o, &given)?;
    let has = |f: OutputFormat| outputs.iter().any(|(_, g)| *g == f);
    let heat_paths: Vec<PathBuf> = heat
        .iter()
        .map(|&g| match (&layout, &o.heatmap_dir) {
            (Some(l), _) => l.heatmap(&card.genes[g]),
            (None, Some(dir)) => dir.join(format!("{}.png", crate::slide_results::safe_name(&card.genes[g]))),
            (None, None) => unreachable!("checked: heatmaps need a folder"),
        })
        .collect();
    if let Some(l) = &layout {
        let inputs: Vec<&Path> = [o.model.as_path(), &o.image].into_iter().chain(o.spots.as_deref()).collect();
        let files: Vec<PathBuf> = given.iter().chain(&heat_paths).cloned().collect();
        for p in files.iter().chain(std::iter::once(&l.metadata())) {
            onnx_format::check_output(p, inputs.iter().copied()).map_err(|e| Error::io(p, e))?;
        }
        if let Some(skipped) = results_prior(o, l, &files, start)? {
            return Ok(skipped);
        }
    }
    let classify = match &o.classify {
        Some(rule) => Some((rule, gene_indices_for("--classify", std::slice::from_ref(&rule.gene), &card.genes)?[0])),
        None => None,
    };
    // Whole-slide image: read by regions; anything else is decoded whole.
    let mut slide = bioedge_slide::open::open(&o.image, o.reader)?;
    let reader_kind = slide.as_ref().map(|t| t.kind()).unwrap_or_else(|| "image (decoded whole)".into());
    let mpp = slide.as_ref().and_then(|t| t.mpp());
    // Patch side: given; else the card's physical size at the slide's resolution; else the card's pixels.
    let (side, side_from) = match (o.patch_side, card_patch_um(&card), mpp) {
        (Some(s), _, _) => (s, "--patch-side"),
        (None, Some(um), Some((mx, my))) => {
            let mpp = (mx + my) / 2.0;
            let s = (um as f64 / mpp) as f32;
            eprintln!("slide: patch side {s:.1} px = {um} µm at {mpp:.4} µm/px (the slide's resolution)");
            (s, "model card patch_side_um at the slide's microns per pixel")
        }
        (None, _, _) => (
            card_side.ok_or_else(|| Error::Model {
                path: o.model.clone(),
                msg: "model card has no preprocessing.patch_side_px; pass --patch-side".into(),
            })?,
            "model card patch_side_px",
        ),
    };
    if !(side.is_finite() && side >= 1.0) {
        return Err(Error::Input(format!("{}: patch side {side} px is below 1 px", o.image.display())));
    }
    // The grid steps by the spot spacing; a model that also reads the neighbours (card
    // `patch_span` 2) crops patches wider than that step, overlapping.
    let step = side / card_patch_span(&card);
    if !(step.is_finite() && step >= 1.0) {
        return Err(Error::Input(format!("{}: grid step {step} px (patch side {side} px) is below 1 px", o.image.display())));
    }
    let (w, h) = match &slide {
        Some(t) => t.dimensions(),
        None => image_dimensions(&o.image)?,
    };
    if o.spots.is_none() {
        // the grid's cells over the whole image bound its spots: checked before any decode
        let cells = (w as f64 / step as f64).ceil() * (h as f64 / step as f64).ceil();
        crate::error::limits::MAX_SPOTS
            .check(cells as u64, format_args!("{}: a grid of {step} px steps over {w} × {h} pixels", o.image.display()))?;
    }
    let file = match &o.spots {
        Some(p) => {
            let f = file_spots_with_array(p, w, h)?;
            crate::error::limits::MAX_SPOTS.check(f.len() as u64, p.display())?;
            Some(f)
        }
        None => None,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut workers = if o.workers > 0 { o.workers } else { patch_workers(cores, slide.is_some()) };
    let batch = match o.memory_mb {
        Some(mb) => {
            let plan = |workers| memory_plan(w, h, slide.is_some(), side, prep.size, model_bytes.len(), workers);
            // fewer worker threads (slide readers) before a smaller batch
            while workers > 1 && plan(workers).total(o.batch) > mb << 20 {
                workers -= 1;
            }
            fit_memory(&plan(workers), o.batch, mb, &o.image, slide.is_some())?
        }
        None => o.batch,
    };
    // from here on `o.batch` is the batch used, so the run's metadata records that one
    let lowered = SlideOptions { batch, ..o.clone() };
    let o = &lowered;
    // The model loads on its own thread while the image is decoded and the mask computed; it
    // runs on the cores the patch workers leave.
    let model_threads = if o.threads > 0 { o.threads } else { cores.saturating_sub(workers).max(1) };
    let loader = {
        let (bytes, path, backend) = (model_bytes.clone(), o.model.clone(), o.backend);
        let options = Options { threads: model_threads, ..Options::default() };
        std::thread::spawn(move || {
            let t = Instant::now();
            Session::from_bytes(&bytes, &path, backend, &options).map(|s| (s, t.elapsed().as_secs_f64()))
        })
    };
    let t0 = Instant::now();
    let img = match &slide {
        Some(t) => {
            let sizes: Vec<String> = t.level_sizes().iter().map(|(w, h)| format!("{w}×{h}")).collect();
            eprintln!("slide: {} read by {}, levels {}; reading regions", o.image.display(), t.kind(), sizes.join(", "));
            None
        }
        None => {
            let img = load_rgb_threads(&o.image, cores)?;
            eprintln!("slide: decoded {} ({}×{}) in {:.2}s", o.image.display(), img.width(), img.height(), t0.elapsed().as_secs_f64());
            Some(img)
        }
    };
    let want_heat = !heat.is_empty();
    // The tissue mask: for the grid, each spot's tissue fraction in the h5ad, the heatmap outline.
    let mask = match (&img, &mut slide) {
        _ if file.is_some() && !has(OutputFormat::H5ad) && !o.heatmap_outline => None,
        (Some(img), _) => Some(TissueMask::of_image(img)),
        (None, Some(t)) => Some(TissueMask::of_slide(t.as_mut())?),
        (None, None) => unreachable!("either an image or a slide reader"),
    };
    let (spots, array): (Vec<SlideSpot>, Vec<(i64, i64)>) = match (file, &mask) {
        (Some(s), _) => s.into_iter().unzip(),
        (None, Some(m)) => {
            let spots = m.grid(step);
            // grid row and column back from the centres ((i + 0.5) × step)
            let array = spots.iter().map(|s| ((s.y / step - 0.5).round() as i64, (s.x / step - 0.5).round() as i64)).collect();
            (spots, array)
        }
        (None, None) => unreachable!("a grid run computes the mask"),
    };
    if spots.is_empty() {
        return Err(Error::Input(format!("{}: no tissue spots found on the grid (step {step} px)", o.image.display())));
    }
    // Downscaled copies now: the slide reader moves to the producer thread below.
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
        (None, Some(t)) => {
            // one reader per worker thread
            let mut readers = vec![t];
            while readers.len() < workers {
                match bioedge_slide::open::open(&o.image, o.reader)? {
                    Some(t) => readers.push(t),
                    None => break,
                }
            }
            Patches::Slide(readers)
        }
        (None, None) => unreachable!("either an image or a slide reader"),
    };
    let read_s = start.elapsed().as_secs_f64();
    let (mut session, load_s) =
        loader.join().map_err(|_| Error::Model { path: o.model.clone(), msg: "loading the model failed (thread panicked)".into() })??;
    let t1 = Instant::now();
    let k = card.genes.len();
    let plan = PredictPlan { side, prep: &prep, batch, genes: k, workers };
    let values = predict_from(&mut session, source, &spots, &plan, &mut progress_reporter(spots.len()))?;
    let predict_s = t1.elapsed().as_secs_f64();
    let t_write = Instant::now();
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
                let json = crate::slide_outputs::to_geojson(&spots, &card.genes, &values, step, (w, h), &keep, classes);
                files.push((path.clone(), json.into_bytes()));
            }
            OutputFormat::H5ad => {
                let (Some(mask), Some(images)) = (&mask, &images) else { unreachable!("an h5ad run computes the mask and the images") };
                let tissue: Vec<f32> = spots.iter().map(|s| mask.fraction(s.x, s.y, step)).collect();
                let parts = H5adParts {
                    spots: &spots,
                    array: &array,
                    tissue: &tissue,
                    values: &values,
                    step,
                    patch_side: side,
                    images,
                    classes,
                    card: &card,
                };
                staged.push(h5ad_output(o, path, &parts, &session.provider)?);
            }
        }
    }
    if let Some((bg, f)) = background.as_ref() {
        let units = heatmap_units(&card);
        let outline = if o.heatmap_outline { mask.as_ref() } else { None };
        for (&g, p) in heat.iter().zip(&heat_paths) {
            let col: Vec<f32> = values.iter().skip(g).step_by(k).copied().collect();
            let text =
                HeatmapText { gene: card.genes[g].clone(), units: units.clone(), model: file_name(&o.model), slide: file_name(&o.image) };
            written.push(p.clone());
            files.push((p.clone(), heatmap_png(bg, *f, &spots, &col, step, &text, outline)?));
        }
    }
    // every output complete on disk under its temp name first, then committed as one unit
    let mut pending = Vec::new();
    for (p, bytes) in &files {
        pending.push(onnx_format::stage(p, bytes).map_err(|e| Error::io(e.path, e.source))?);
    }
    for s in staged {
        pending.push(s.finish()?);
    }
    onnx_format::commit_all(pending).map_err(|e| Error::io(e.path, e.source))?;
    let mut summary = SlideSummary {
        skipped: false,
        spots: spots.len(),
        genes: k,
        width: w,
        height: h,
        patch_side: side,
        grid_step: step,
        provider: session.provider.clone(),
        read_s,
        load_s,
        predict_s,
        write_s: t_write.elapsed().as_secs_f64(),
        total_s: 0.0,
        written,
        metadata: None,
    };
    if let Some(l) = &layout {
        let meta_path = l.metadata();
        summary.total_s = start.elapsed().as_secs_f64();
        let meta = metadata_document(o, l, &model_bytes, &card, &summary, (started, &reader_kind, mpp, side_from), &heat);
        onnx_format::write_atomic(&meta_path, meta.as_bytes()).map_err(|e| Error::io(&meta_path, e))?;
        summary.written.push(meta_path.clone());
        summary.metadata = Some(meta_path);
    }
    summary.write_s = t_write.elapsed().as_secs_f64();
    summary.total_s = start.elapsed().as_secs_f64();
    Ok(summary)
}

/// The run metadata of a slide in a results folder ([`crate::slide_results`]).
fn metadata_document(
    o: &SlideOptions,
    l: &ResultsLayout,
    model_bytes: &[u8],
    card: &onnx_format::ModelCard,
    s: &SlideSummary,
    (started, reader_kind, mpp, side_from): (SystemTime, &str, Option<(f64, f64)>, &str),
    heat: &[usize],
) -> String {
    let r3 = |v: f64| (v * 1000.0).round() / 1000.0;
    let heatmaps: serde_json::Map<String, serde_json::Value> =
        heat.iter().map(|&g| (card.genes[g].clone(), json!(l.relative(&l.heatmap(&card.genes[g]))))).collect();
    let mut outputs = serde_json::Map::new();
    for p in l.outputs() {
        if let Ok(f) = OutputFormat::of(&p) {
            outputs.insert(format!("{f:?}").to_lowercase(), json!(l.relative(&p)));
        }
    }
    outputs.insert("heatmaps".into(), serde_json::Value::Object(heatmaps));
    let size = std::fs::metadata(&o.image).map(|m| m.len()).ok();
    let mut doc = serde_json::Map::new();
    doc.insert("tool".into(), json!({"name": "bioedge infer slide", "versions": crate::slide_results::versions(o.backend)}));
    doc.insert(
        "model".into(),
        json!({
            "path": o.model.display().to_string(),
            "file_name": file_name(&o.model),
            "sha256": crate::slide_results::sha256_hex(model_bytes),
            "card_sha256": crate::slide_results::stored_card(model_bytes).map(|c| crate::slide_results::sha256_hex(c.as_bytes())),
            "family": card.family.name(),
            "genes": card.genes.len(),
        }),
    );
    doc.insert(
        "slide".into(),
        json!({
            "path": o.image.display().to_string(),
            "canonical_path": crate::slide_results::canonical(&o.image),
            "stem": l.stem,
            "bytes": size,
            "width": s.width,
            "height": s.height,
            "reader": reader_kind,
            "mpp": mpp.map(|(x, y)| (x + y) / 2.0),
            "mpp_xy": mpp.map(|(x, y)| [x, y]),
        }),
    );
    doc.insert(
        "parameters".into(),
        json!({
            "backend": o.backend.name(),
            "threads": o.threads,
            "workers": o.workers,
            "batch": o.batch,
            "reader": format!("{:?}", o.reader).to_lowercase(),
            "spots": o.spots.as_ref().map(|p| p.display().to_string()),
            "grid": o.spots.is_none(),
            "patch_side_px": s.patch_side,
            "patch_side_from": side_from,
            "grid_step_px": s.grid_step,
            "classify": o.classify.as_ref().map(|r| format!("{}>{}", r.gene, r.threshold)),
            "top_genes": o.top_genes,
            "heatmaps": o.heatmaps,
            "heatmap_outline": o.heatmap_outline,
            "existing": o.existing.name(),
        }),
    );
    doc.insert("provider".into(), json!(s.provider));
    doc.insert(
        "timings".into(),
        json!({
            "read_s": r3(s.read_s), "load_model_s": r3(s.load_s), "predict_s": r3(s.predict_s), "write_s": r3(s.write_s),
            "total_s": r3(s.total_s), "spots": s.spots, "spots_per_s": r3(s.spots_per_s()),
        }),
    );
    doc.insert("outputs".into(), serde_json::Value::Object(outputs));
    doc.insert("started_utc".into(), json!(crate::slide_results::utc_iso(started)));
    doc.insert("finished_utc".into(), json!(crate::slide_results::utc_iso(SystemTime::now())));
    crate::slide_results::run_metadata(doc)
}

/// The outputs with their formats; an error for an unknown extension, a path given twice, or
/// `--top-genes` / `--classify` with no output that uses them.
fn check_outputs(o: &SlideOptions, paths: &[PathBuf]) -> Result<Vec<(PathBuf, OutputFormat)>> {
    if paths.is_empty() {
        return Err(Error::Input("give at least one --out (.csv, .h5ad or .geojson), or --results-dir".into()));
    }
    let mut out: Vec<(PathBuf, OutputFormat)> = Vec::new();
    for p in paths {
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
    /// Grid step: the spot's cell.
    step: f32,
    /// Patch side the model read.
    patch_side: f32,
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
        side: p.step,
        library_id,
        images: p.images,
        classes: p.classes,
        card: p.card,
        run: run_parameters(o, p.patch_side, p.step, provider),
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
    fn finish(self) -> Result<onnx_format::Pending> {
        Err(no_hdf5())
    }
}

/// The run's parameters, for `uns["bioedge"]` of the h5ad.
#[cfg(feature = "hdf5")]
fn run_parameters(o: &SlideOptions, side: f32, step: f32, provider: &str) -> Vec<(String, Value)> {
    let text = |p: &Path| Value::Str(p.display().to_string());
    let mut v = vec![
        ("tool".to_string(), Value::Str(format!("bioedge infer slide {}", env!("CARGO_PKG_VERSION")))),
        ("model".to_string(), text(&o.model)),
        ("image".to_string(), text(&o.image)),
        ("spots".to_string(), o.spots.as_deref().map(text).unwrap_or(Value::Str("grid over tissue".into()))),
        ("patch_side_px".to_string(), Value::F64(side as f64)),
        ("grid_step_px".to_string(), Value::F64(step as f64)),
        ("backend".to_string(), Value::Str(o.backend.name().into())),
        ("provider".to_string(), Value::Str(provider.to_string())),
        ("batch".to_string(), Value::I64(o.batch as i64)),
        ("threads".to_string(), Value::I64(o.threads as i64)),
        ("values".to_string(), Value::Str("X holds the model's output per spot (see model_card.outputs)".into())),
    ];
    if let Some(r) = &o.classify {
        v.push(("classify".to_string(), Value::Str(format!("{}>{}", r.gene, r.threshold))));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_budget_lowers_the_batch_or_refuses() {
        // a HER2ST-sized JPEG decoded whole: 9,300 × 9,900 × 3 ≈ 263 MB
        let plan = memory_plan(9300, 9900, false, 290.0, 224, 20 << 20, 1);
        assert_eq!(plan.image, 9300 * 9900 * 3 + 9300 * 9900 / 64);
        assert_eq!(plan.per_patch, 3 * (290 * 290 * 3 + 224 * 224 * 12));
        // a batch per worker thread, plus one queued and one in the model
        assert_eq!(memory_plan(9300, 9900, false, 290.0, 224, 20 << 20, 4).per_patch, 6 * (290 * 290 * 3 + 224 * 224 * 12));
        let img = Path::new("slide.jpg");
        assert_eq!(fit_memory(&plan, 16, 4096, img, false).unwrap(), 16);
        let need_one = plan.total(1).div_ceil(1 << 20);
        let b = fit_memory(&plan, 16, need_one + 5, img, false).unwrap();
        assert!((1..16).contains(&b) && plan.total(b) <= (need_one + 5) << 20, "{b}");
        let e = fit_memory(&plan, 16, 300, img, false).unwrap_err().to_string();
        assert!(e.contains("slide.jpg") && e.contains("tiled pyramid") && e.contains("--memory-mb 300"), "{e}");
        // read by regions: the image part is the region cache
        let regions = memory_plan(100_000, 80_000, true, 290.0, 224, 20 << 20, 1);
        assert_eq!(regions.image, 64 << 20);
        assert_eq!(memory_plan(100_000, 80_000, true, 290.0, 224, 20 << 20, 3).image, 3 * (64 << 20));
        assert_eq!((patch_workers(1, false), patch_workers(2, false), patch_workers(16, false), patch_workers(128, false)), (1, 1, 4, 8));
        assert_eq!((patch_workers(1, true), patch_workers(2, true), patch_workers(16, true), patch_workers(128, true)), (2, 2, 8, 8));
        assert_eq!(fit_memory(&regions, 16, 1024, img, true).unwrap(), 16);
    }
}

//! Whole-image inference for spot models: predicted expression at given spot positions or on a
//! regular grid over tissue, batched through the runtime; a per-spot CSV and heatmap PNGs
//! ([`crate::heatmap`]).
//!
//! Tissue mask: the image is box-downscaled so its long side is at most [`MASK_SIDE`] px and
//! converted to grey (Rec. 601 luma); Otsu's threshold splits it and tissue is the darker class
//! (H&E and IHC slides have a bright background). A grid spot is kept when at least
//! [`MIN_TISSUE`] of its patch is tissue.
//!
//! Patches are cropped and preprocessed on worker threads, a whole batch each, handed to the model
//! in order; at most a few batches more than there are workers exist at once.
//!
//! Whole-slide images ([`crate::wsi`]: tiled or pyramidal TIFFs, and vendor formats through
//! OpenSlide) are never decoded whole: the mask and heatmap background come from the smallest
//! level at least [`MASK_SIDE`] / [`HEATMAP_SIDE`] px long (streamed), patches are read from
//! level 0 on demand.

pub use crate::heatmap::{HeatmapLayout, HeatmapText, heatmap_image, heatmap_png};

use crate::image_prep::{Preprocess, crop_square, crop_square_from};
use crate::wsi::SlideReader;
use bioedge_error::{Error, Result};
use bioedge_runtime::{Session, Value};
use image::RgbImage;
use onnx_format::card::SpotImage;
use std::path::Path;
use std::time::Instant;

/// Long side of the low-resolution copy used for the tissue mask.
pub const MASK_SIDE: u32 = 1024;
/// Long side of the heatmap background image.
pub const HEATMAP_SIDE: u32 = 1500;
/// Smallest tissue fraction of a patch for a grid spot to be kept.
pub const MIN_TISSUE: f32 = 0.5;
/// Batches prepared ahead of the model, besides one per worker thread.
const QUEUE: usize = 2;

/// A position to predict at.
#[derive(Debug, Clone, PartialEq)]
pub struct SlideSpot {
    /// Spot name (`r<row>c<col>` for grid spots, the spot key for spots read from a file).
    pub id: String,
    /// Pixel x of the spot centre (level 0).
    pub x: f32,
    /// Pixel y of the spot centre (level 0).
    pub y: f32,
}

/// Preprocessing and patch side (pixels; the mean over the training sections) from a spot model card.
pub fn card_params(card: &onnx_format::ModelCard, model: &Path) -> Result<(Preprocess, Option<f32>)> {
    let spot: &SpotImage = card.require().map_err(|e| Error::card(model, e))?;
    let prep = Preprocess::from_card(&spot.image);
    prep.validate().map_err(|e| Error::Model { path: model.to_path_buf(), msg: e.to_string() })?;
    Ok((prep, spot.mean_side_px()))
}

/// The patch side in spot spacings from a spot model card (1 when the card is not a spot card): a
/// tissue grid steps by the patch side divided by it.
pub fn card_patch_span(card: &onnx_format::ModelCard) -> f32 {
    card.require::<SpotImage>().map_or(1.0, |s| s.patch_span)
}

/// The patch side in microns from a spot model card, if any.
pub fn card_patch_um(card: &onnx_format::ModelCard) -> Option<f32> {
    card.require::<SpotImage>().ok().and_then(|s| s.patch_side_um)
}

/// Levenshtein distance (case-insensitive).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + (ca != cb) as usize).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Index of each requested gene in `genes`; an unknown one is an error listing close spellings.
pub fn gene_indices(wanted: &[String], genes: &[String]) -> Result<Vec<usize>> {
    gene_indices_for("--heatmap", wanted, genes)
}

/// [`gene_indices`] for the command-line option `option` (named in the error).
pub fn gene_indices_for(option: &str, wanted: &[String], genes: &[String]) -> Result<Vec<usize>> {
    wanted
        .iter()
        .map(|w| {
            if let Some(i) = genes.iter().position(|g| g == w) {
                return Ok(i);
            }
            let mut near: Vec<(usize, &String)> =
                genes.iter().map(|g| (edit_distance(w, g), g)).filter(|(d, _)| *d <= 2.max(w.len() / 3)).collect();
            near.sort();
            let near: Vec<&str> = near.iter().take(5).map(|(_, g)| g.as_str()).collect();
            let hint = if near.is_empty() { "no close spellings".to_string() } else { format!("did you mean {}?", near.join(", ")) };
            Err(Error::Input(format!("{option} gene `{w}` is not an output of the model ({} genes); {hint}", genes.len())))
        })
        .collect()
}

/// Box-averaged copy whose long side is at most `max_side`; returns it and the integer factor.
/// The same pixels as [`crate::wsi::BoxSum`]; bands of output rows are summed on all cores.
pub fn downscale(img: &RgbImage, max_side: u32) -> (RgbImage, u32) {
    let (w, h) = img.dimensions();
    let f = w.max(h).div_ceil(max_side.max(1)).max(1);
    if f == 1 {
        return (img.clone(), 1);
    }
    let (sw, sh) = (w.div_ceil(f) as usize, h.div_ceil(f) as usize);
    if sw == 0 || sh == 0 {
        return (RgbImage::new(sw as u32, sh as u32), f);
    }
    let mut out = vec![0u8; sw * sh * 3];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(sh);
    let raw = img.as_raw();
    let (f, w, h) = (f as usize, w as usize, h as usize);
    std::thread::scope(|s| {
        for (band, rows) in out.chunks_mut(sh.div_ceil(threads) * sw * 3).enumerate() {
            let sy0 = band * sh.div_ceil(threads);
            let mut sum = move || {
                let mut acc = vec![0u64; sw * 3];
                for (i, dst) in rows.chunks_mut(sw * 3).enumerate() {
                    let (y0, y1) = ((sy0 + i) * f, ((sy0 + i + 1) * f).min(h));
                    acc.fill(0);
                    for y in y0..y1 {
                        let row = &raw[y * w * 3..(y + 1) * w * 3];
                        for (sx, px) in row.chunks(f * 3).enumerate() {
                            let a = &mut acc[sx * 3..sx * 3 + 3];
                            for p in px.chunks_exact(3) {
                                a[0] += p[0] as u64;
                                a[1] += p[1] as u64;
                                a[2] += p[2] as u64;
                            }
                        }
                    }
                    for (sx, d) in dst.chunks_exact_mut(3).enumerate() {
                        let n = (((sx + 1) * f).min(w) - sx * f) as u64 * (y1 - y0) as u64;
                        for c in 0..3 {
                            d[c] = ((acc[sx * 3 + c] + n / 2) / n) as u8;
                        }
                    }
                }
            };
            // one band runs here: wasm32 (the browser page) cannot spawn threads
            if threads > 1 {
                s.spawn(sum);
            } else {
                sum();
            }
        }
    });
    (RgbImage::from_raw(sw as u32, sh as u32, out).expect("sized above"), f as u32)
}

/// Grey levels (Rec. 601 luma).
pub fn grey(img: &RgbImage) -> Vec<u8> {
    img.pixels().map(|p| ((299 * p.0[0] as u32 + 587 * p.0[1] as u32 + 114 * p.0[2] as u32 + 500) / 1000) as u8).collect()
}

/// Otsu's threshold: the level `t` maximising the between-class variance of `< t` vs `>= t`.
pub fn otsu(values: &[u8]) -> u8 {
    let mut hist = [0u64; 256];
    for &v in values {
        hist[v as usize] += 1;
    }
    let total = values.len() as f64;
    let sum: f64 = hist.iter().enumerate().map(|(i, &c)| i as f64 * c as f64).sum();
    let (mut w0, mut s0, mut best, mut best_t) = (0.0, 0.0, -1.0, 0u8);
    for t in 1..256 {
        w0 += hist[t - 1] as f64;
        s0 += (t - 1) as f64 * hist[t - 1] as f64;
        let w1 = total - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let (m0, m1) = (s0 / w0, (sum - s0) / w1);
        let v = w0 * w1 * (m0 - m1) * (m0 - m1);
        if v > best {
            best = v;
            best_t = t as u8;
        }
    }
    best_t
}

/// Tissue mask on a low-resolution copy: `(mask, width, height, factor)`; `true` = tissue.
pub fn tissue_mask(img: &RgbImage) -> (Vec<bool>, u32, u32, u32) {
    let (small, f) = downscale(img, MASK_SIDE);
    let g = grey(&small);
    let t = otsu(&g);
    (g.iter().map(|&v| v < t).collect(), small.width(), small.height(), f)
}

/// A tissue mask (Otsu on a low-resolution copy, `true` = tissue) and where its pixels lie on
/// level 0 of the image: the tissue grid and each spot's tissue fraction come from it.
#[derive(Debug, Clone, PartialEq)]
pub struct TissueMask {
    /// `width × height` flags, row-major.
    pub mask: Vec<bool>,
    /// Mask width in pixels.
    pub width: u32,
    /// Mask height in pixels.
    pub height: u32,
    /// Size of a mask pixel in level-0 pixels (x, y).
    pub factor: (f32, f32),
    /// Level-0 image size (width, height).
    pub image: (u32, u32),
}

impl TissueMask {
    /// The mask of an image decoded whole ([`tissue_mask`]).
    pub fn of_image(img: &RgbImage) -> TissueMask {
        let (mask, width, height, f) = tissue_mask(img);
        TissueMask { mask, width, height, factor: (f as f32, f as f32), image: img.dimensions() }
    }

    /// The mask of a slide read by regions, from its smallest level at least [`MASK_SIDE`] px long.
    pub fn of_slide(t: &mut dyn SlideReader) -> Result<TissueMask> {
        let (small, factor) = slide_overview(t, MASK_SIDE)?;
        let g = grey(&small);
        let th = otsu(&g);
        Ok(TissueMask {
            mask: g.iter().map(|&v| v < th).collect(),
            width: small.width(),
            height: small.height(),
            factor,
            image: t.dimensions(),
        })
    }

    /// (tissue, all) mask pixels under the square patch of side `side` centred at (`x`, `y`).
    fn counts(&self, x: f32, y: f32, side: f32) -> (usize, usize) {
        let (mw, mh, f) = (self.width, self.height, self.factor);
        // Patch bounds in mask pixels.
        let lo = |v: f32, f: f32| ((v - side / 2.0).max(0.0) / f).floor() as u32;
        let hi = |v: f32, f: f32, m: u32| (((v + side / 2.0) / f).ceil() as u32).min(m);
        let (x0, x1, y0, y1) = (lo(x, f.0).min(mw - 1), hi(x, f.0, mw), lo(y, f.1).min(mh - 1), hi(y, f.1, mh));
        let (mut n, mut t) = (0usize, 0usize);
        for my in y0..y1.max(y0 + 1) {
            for mx in x0..x1.max(x0 + 1) {
                n += 1;
                t += self.mask[(my * mw + mx) as usize] as usize;
            }
        }
        (t, n)
    }

    /// Fraction of the patch of side `side` centred at (`x`, `y`) that is tissue.
    pub fn fraction(&self, x: f32, y: f32, side: f32) -> f32 {
        let (t, n) = self.counts(x, y, side);
        t as f32 / n.max(1) as f32
    }

    /// Grid spots every `step` px whose cell is at least [`MIN_TISSUE`] tissue. Ids are `r<row>c<col>`.
    /// (The step is the spot spacing: the patch side, or less for a model that reads neighbours.)
    pub fn grid(&self, step: f32) -> Vec<SlideSpot> {
        let (w, h) = self.image;
        let mut out = Vec::new();
        let (nx, ny) = ((w as f32 / step).floor().max(1.0) as u32, (h as f32 / step).floor().max(1.0) as u32);
        for r in 0..ny {
            for c in 0..nx {
                let (x, y) = ((c as f32 + 0.5) * step, (r as f32 + 0.5) * step);
                if x >= w as f32 || y >= h as f32 {
                    continue;
                }
                let (t, n) = self.counts(x, y, step);
                if t as f32 >= MIN_TISSUE * n as f32 {
                    out.push(SlideSpot { id: format!("r{r}c{c}"), x, y });
                }
            }
        }
        out
    }
}

/// Grid spots every `step` px whose cell is at least [`MIN_TISSUE`] tissue. Ids are `r<row>c<col>`.
pub fn grid_spots(img: &RgbImage, step: f32) -> Vec<SlideSpot> {
    TissueMask::of_image(img).grid(step)
}

/// Smallest level whose long side is at least `side` px (level 0 if none).
fn level_for(t: &dyn SlideReader, side: u32) -> usize {
    t.level_sizes().iter().rposition(|&(w, h)| w.max(h) >= side).unwrap_or(0)
}

/// Box-downscaled copy of a slide level (long side <= `max_side`) and its factors in level-0 px.
pub fn slide_overview(t: &mut dyn SlideReader, max_side: u32) -> Result<(RgbImage, (f32, f32))> {
    let level = level_for(t, max_side);
    let (img, f) = t.downscale_level(level, max_side)?;
    let ((lw, lh), (w0, h0)) = (t.level_sizes()[level], t.dimensions());
    let fx = (f as f64 * w0 as f64 / lw as f64) as f32;
    let fy = (f as f64 * h0 as f64 / lh as f64) as f32;
    Ok((img, (fx, fy)))
}

/// [`grid_spots`] for a slide read by regions: the mask comes from a low-resolution level.
pub fn grid_spots_slide(t: &mut dyn SlideReader, step: f32) -> Result<Vec<SlideSpot>> {
    Ok(TissueMask::of_slide(t)?.grid(step))
}

/// Where patches come from: a decoded image, or level 0 of a slide read by regions.
pub enum Patches<'a> {
    /// Patches cut from an image decoded whole (shared by the worker threads).
    Image(&'a RgbImage),
    /// Patches read by regions from level 0 of a slide: one reader of the same slide per worker
    /// thread (at least one).
    Slide(Vec<Box<dyn SlideReader>>),
}

/// One worker thread's patch source.
enum Source<'a> {
    Image(&'a RgbImage),
    Slide(Box<dyn SlideReader>),
}

impl Source<'_> {
    /// The patch of [`crop_square`] (same rounding, same edge padding).
    fn crop(&mut self, x: f32, y: f32, side: f32) -> Result<RgbImage> {
        match self {
            Source::Image(img) => crop_square(img, x, y, side),
            Source::Slide(t) => {
                let (w, h) = t.dimensions();
                crop_square_from(w, h, x, y, side, |x0, y0, cw, ch| t.read_region(0, x0, y0, cw, ch))
            }
        }
    }
}

/// Weights of `image::imageops::resize` with `FilterType::Triangle` along one axis of `len` px
/// resized to `new_len`: per output pixel, its first input pixel and the normalized weights,
/// computed in the same f32 operations.
fn triangle_weights(len: u32, new_len: u32) -> Vec<(usize, Vec<f32>)> {
    let ratio = len as f32 / new_len as f32;
    let sratio = if ratio < 1.0 { 1.0 } else { ratio };
    let support = sratio; // the triangle's support (1) × sratio
    (0..new_len)
        .map(|o| {
            let input = (o as f32 + 0.5) * ratio;
            let left = ((input - support).floor() as i64).clamp(0, len as i64 - 1);
            let right = ((input + support).ceil() as i64).clamp(left + 1, len as i64);
            let input = input - 0.5;
            let mut ws: Vec<f32> = (left..right)
                .map(|i| {
                    let x = ((i as f32 - input) / sratio).abs();
                    if x < 1.0 { 1.0 - x } else { 0.0 }
                })
                .collect();
            let mut sum = 0.0f32;
            for w in &ws {
                sum += w;
            }
            for w in ws.iter_mut() {
                *w /= sum;
            }
            (left as usize, ws)
        })
        .collect()
}

/// `image::imageops::resize(img, nw, nh, FilterType::Triangle)` (what [`Preprocess::resize`]
/// calls), byte for byte: the same weights and the same f32 sums in the same order (rows first,
/// then columns), on RGB rows instead of generic pixels, several times faster.
pub fn resize_triangle(img: &RgbImage, nw: u32, nh: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    if (w, h) == (nw, nh) || w == 0 || h == 0 {
        return if (w, h) == (nw, nh) { img.clone() } else { RgbImage::new(nw, nh) };
    }
    let (src, row) = (img.as_raw(), w as usize * 3);
    // rows first: nh × w × 3 sums
    let mut tmp = vec![0f32; nh as usize * row];
    for ((top, ws), dst) in triangle_weights(h, nh).iter().zip(tmp.chunks_exact_mut(row)) {
        for (i, &wt) in ws.iter().enumerate() {
            let line = &src[(top + i) * row..(top + i + 1) * row];
            for (d, &v) in dst.iter_mut().zip(line) {
                *d += v as f32 * wt;
            }
        }
    }
    // then columns, rounded to the nearest level
    let wx = triangle_weights(w, nw);
    let mut out = vec![0u8; nw as usize * nh as usize * 3];
    for (line, dst) in tmp.chunks_exact(row).zip(out.chunks_exact_mut(nw as usize * 3)) {
        for ((left, ws), px) in wx.iter().zip(dst.chunks_exact_mut(3)) {
            let mut t = [0f32; 3];
            for (i, &wt) in ws.iter().enumerate() {
                let p = &line[(left + i) * 3..(left + i) * 3 + 3];
                t[0] += p[0] * wt;
                t[1] += p[1] * wt;
                t[2] += p[2] * wt;
            }
            for c in 0..3 {
                px[c] = t[c].clamp(0.0, 255.0).round() as u8;
            }
        }
    }
    RgbImage::from_raw(nw, nh, out).expect("sized above")
}

/// How [`predict_from`] runs: patch side, preprocessing, batch size, genes per spot and worker threads.
#[derive(Debug, Clone)]
pub struct PredictPlan<'a> {
    /// Patch side in level-0 pixels.
    pub side: f32,
    /// The model's preprocessing.
    pub prep: &'a Preprocess,
    /// Patches per model run.
    pub batch: usize,
    /// Values the model returns per patch.
    pub genes: usize,
    /// Threads cropping and preprocessing (for a slide, at most one per reader).
    pub workers: usize,
}

/// Progress of [`predict_from`], after each batch.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Spots predicted so far.
    pub done: usize,
    /// Spots in all.
    pub total: usize,
    /// Seconds since the first batch was started.
    pub elapsed_s: f64,
}

/// Batch hand-out shared by the worker threads: batch `next` is handed out next, batches below
/// `consumed` went through the model, `stop` ends the workers early.
struct Gate {
    next: usize,
    consumed: usize,
    stop: bool,
}

/// Stops the workers when the model loop ends, however it ends.
struct StopOnDrop<'a>(&'a (std::sync::Mutex<Gate>, std::sync::Condvar));

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        if let Ok(mut g) = self.0.0.lock() {
            g.stop = true;
        }
        self.0.1.notify_all();
    }
}

/// Predicts every spot from a patch source: `[spots × genes]` row-major. Worker threads crop and
/// preprocess whole batches (taken in order, at most `workers + 2` batches in memory); the
/// calling thread runs the model on them in order. `progress` is called after each batch.
pub fn predict_from(
    session: &mut Session,
    source: Patches<'_>,
    spots: &[SlideSpot],
    plan: &PredictPlan<'_>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<f32>> {
    let s = plan.prep.size as usize;
    let mut run = |n: usize, data: Vec<f32>| session.run_output(&[Value::f32(&[n, 3, s, s], data)], "expression")?.into_f32();
    predict_with(source, spots, plan, &mut run, progress)
}

/// [`predict_from`] with the model as a function: `run(n, batch)` gets `n` CHW tensors, one
/// after another, and returns `n × genes` values.
pub fn predict_with(
    source: Patches<'_>,
    spots: &[SlideSpot],
    plan: &PredictPlan<'_>,
    run: &mut dyn FnMut(usize, Vec<f32>) -> Result<Vec<f32>>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<f32>> {
    let PredictPlan { side, prep, genes, .. } = *plan;
    prep.validate()?;
    let batch = plan.batch.max(1);
    let len = prep.tensor_len();
    let n_batches = spots.len().div_ceil(batch);
    let sources: Vec<Source> = match source {
        Patches::Image(img) => (0..plan.workers.clamp(1, n_batches.max(1))).map(|_| Source::Image(img)).collect(),
        Patches::Slide(readers) => readers.into_iter().take(plan.workers.max(1)).map(Source::Slide).collect(),
    };
    if sources.is_empty() {
        return Err(Error::Input("no slide reader for the patches".into()));
    }
    let workers = sources.len();
    let limit = workers + QUEUE; // batches handed out and not through the model yet
    let mut out = Vec::with_capacity(spots.len() * genes);
    let start = Instant::now();
    let gate = (std::sync::Mutex::new(Gate { next: 0, consumed: 0, stop: false }), std::sync::Condvar::new());
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<Vec<f32>>, f64)>();
    let (mut prep_s, mut run_s) = (0.0, 0.0);
    std::thread::scope(|scope| -> Result<()> {
        for mut src in sources {
            let (tx, gate) = (tx.clone(), &gate);
            scope.spawn(move || {
                loop {
                    let b = {
                        let Ok(mut g) = gate.0.lock() else { return };
                        while !g.stop && g.next < n_batches && g.next >= g.consumed + limit {
                            g = match gate.1.wait(g) {
                                Ok(g) => g,
                                Err(_) => return,
                            };
                        }
                        if g.stop || g.next >= n_batches {
                            return;
                        }
                        g.next += 1;
                        g.next - 1
                    };
                    let t = Instant::now();
                    let chunk = &spots[b * batch..((b + 1) * batch).min(spots.len())];
                    let mut data = vec![0f32; chunk.len() * len];
                    let r = chunk.iter().zip(data.chunks_mut(len)).try_for_each(|(sp, dst)| {
                        let crop = src.crop(sp.x, sp.y, side)?;
                        let patch =
                            if crop.dimensions() == (prep.size, prep.size) { crop } else { resize_triangle(&crop, prep.size, prep.size) };
                        prep.normalize_into(&patch, dst).map_err(|e| Error::Input(format!("spot {}: {e}", sp.id)))
                    });
                    if tx.send((b, r.map(|_| data), t.elapsed().as_secs_f64())).is_err() {
                        return; // the model loop ended
                    }
                }
            });
        }
        drop(tx);
        let _stop = StopOnDrop(&gate);
        // batches prepared ahead of the model, by index
        let mut ready: std::collections::BTreeMap<usize, Result<Vec<f32>>> = Default::default();
        for b in 0..n_batches {
            let data = loop {
                if let Some(r) = ready.remove(&b) {
                    break r?;
                }
                let (i, r, busy) = rx.recv().map_err(|_| Error::Input("the patch workers stopped early".into()))?;
                prep_s += busy;
                ready.insert(i, r);
            };
            let n = data.len() / len;
            let t = Instant::now();
            let y = run(n, data)?;
            if y.len() != n * genes {
                return Err(Error::Input(format!(
                    "model returned {} values for {n} patches, expected {} ({genes} genes each)",
                    y.len(),
                    n * genes
                )));
            }
            run_s += t.elapsed().as_secs_f64();
            out.extend_from_slice(&y);
            if let Ok(mut g) = gate.0.lock() {
                g.consumed = b + 1;
            }
            gate.1.notify_all();
            progress(Progress { done: out.len() / genes.max(1), total: spots.len(), elapsed_s: start.elapsed().as_secs_f64() });
        }
        Ok(())
    })?;
    eprintln!("slide: crop+preprocess {prep_s:.1}s on {workers} worker thread(s), model {run_s:.1}s");
    if out.len() != spots.len() * genes {
        return Err(Error::Input("the patch workers stopped early".into()));
    }
    Ok(out)
}

/// CSV: `id,pixel_x,pixel_y,<gene>...`.
pub fn to_csv(spots: &[SlideSpot], genes: &[String], values: &[f32]) -> String {
    let mut s = String::from("id,pixel_x,pixel_y");
    for g in genes {
        s.push(',');
        s.push_str(&csv_field(g));
    }
    s.push('\n');
    for (sp, row) in spots.iter().zip(values.chunks(genes.len())) {
        s += &format!("{},{:.2},{:.2}", csv_field(&sp.id), sp.x, sp.y);
        for v in row {
            s += &format!(",{v:.6}");
        }
        s.push('\n');
    }
    s
}

/// A CSV field, quoted (RFC 4180) when it holds a comma, quote or line break.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// Viridis-like colour map for `t` in [0, 1].
pub fn viridis(t: f32) -> [u8; 3] {
    const STOPS: [[f32; 3]; 5] = [[68.0, 1.0, 84.0], [59.0, 82.0, 139.0], [33.0, 145.0, 140.0], [94.0, 201.0, 98.0], [253.0, 231.0, 37.0]];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 } * 4.0;
    let i = (t.floor() as usize).min(3);
    let f = t - i as f32;
    std::array::from_fn(|c| (STOPS[i][c] * (1.0 - f) + STOPS[i + 1][c] * f).round() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn slide_otsu_bimodal() {
        // Two noisy modes around 60 and 200.
        let mut v = Vec::new();
        for i in 0..2000u32 {
            v.push((60 + (i * 7919 % 21) as i32 - 10) as u8);
            v.push((200 + (i * 104729 % 21) as i32 - 10) as u8);
        }
        let t = otsu(&v);
        assert!((71..=190).contains(&t), "threshold {t}");
        assert!(v.iter().filter(|&&x| x < t).count() == 2000);
        assert_eq!(otsu(&[5, 5, 5]), 0);
    }

    #[test]
    fn slide_grid_keeps_tissue_only() {
        // White 2000×1200 image with a dark square blob [400, 1200) × [200, 1000).
        let img = RgbImage::from_fn(2000, 1200, |x, y| {
            if (400..1200).contains(&x) && (200..1000).contains(&y) { Rgb([120, 60, 140]) } else { Rgb([240, 238, 242]) }
        });
        let spots = grid_spots(&img, 200.0);
        // Patches exactly covering the blob: columns 2..6, rows 1..5.
        assert_eq!(spots.len(), 16, "{spots:?}");
        for s in &spots {
            assert!((400.0..1200.0).contains(&s.x) && (200.0..1000.0).contains(&s.y), "{s:?}");
        }
        assert_eq!(spots[0].id, "r1c2");
        let (m, mw, mh, f) = tissue_mask(&img);
        assert_eq!((mw, mh, f), (1000, 600, 2));
        assert_eq!(m.iter().filter(|&&t| t).count(), 400 * 400);
    }

    #[test]
    fn slide_gene_suggestions_and_viridis() {
        let genes: Vec<String> = ["ERBB2", "ESR1", "GAPDH", "KRT19"].iter().map(|s| s.to_string()).collect();
        assert_eq!(gene_indices(&["KRT19".into(), "ERBB2".into()], &genes).unwrap(), vec![3, 0]);
        let e = gene_indices(&["ERBB3".into()], &genes).unwrap_err().to_string();
        assert!(e.contains("ERBB2") && e.contains("ERBB3"), "{e}");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(viridis(0.0), [68, 1, 84]);
        assert_eq!(viridis(1.0), [253, 231, 37]);
    }

    #[test]
    fn slide_csv_quotes_gene_names() {
        let spots = [SlideSpot { id: "r1c2".into(), x: 1.0, y: 2.0 }];
        let genes: Vec<String> = ["A,B", "say \"x\"", "C\nD", "ERBB2"].iter().map(|s| s.to_string()).collect();
        let csv = to_csv(&spots, &genes, &[0.5, 1.0, 1.5, 2.0]);
        assert_eq!(
            csv,
            "id,pixel_x,pixel_y,\"A,B\",\"say \"\"x\"\"\",\"C\nD\",ERBB2\nr1c2,1.00,2.00,0.500000,1.000000,1.500000,2.000000\n"
        );
    }

    #[test]
    fn slide_resize_matches_image_crate() {
        use image::imageops::{FilterType, resize};
        let mut seed = 7u32;
        let mut noise = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 24) as u8
        };
        for (w, h, nw, nh) in [
            (290, 290, 224, 224),
            (291, 287, 224, 224),
            (100, 100, 224, 224),
            (800, 800, 224, 224),
            (5, 3, 7, 2),
            (1, 1, 4, 4),
            (224, 300, 224, 224),
        ] {
            let img = RgbImage::from_fn(w, h, |_, _| Rgb([noise(), noise(), noise()]));
            assert!(resize_triangle(&img, nw, nh) == resize(&img, nw, nh, FilterType::Triangle), "{w}×{h} → {nw}×{nh}");
        }
        let flat = RgbImage::from_pixel(290, 290, Rgb([255, 0, 17]));
        assert!(resize_triangle(&flat, 224, 224).pixels().all(|p| p.0 == [255, 0, 17]));
    }

    #[test]
    fn slide_workers_keep_spot_order_and_values() {
        let img = RgbImage::from_fn(300, 200, |x, y| Rgb([(x * 3 + y) as u8, (x ^ y) as u8, (x * y % 253) as u8]));
        let prep = Preprocess { size: 16, ..Preprocess::default() };
        // 23 spots, some by the border (edge padding)
        let spots: Vec<SlideSpot> =
            (0..23).map(|i| SlideSpot { id: format!("s{i}"), x: (i * 37 % 300) as f32 + 0.3, y: (i * 53 % 200) as f32 }).collect();
        let want: Vec<f32> = spots.iter().flat_map(|sp| prep.spot(&img, sp.x, sp.y, 30.0).unwrap()).collect();
        // the "model" hands the tensors back: the output is every tensor in spot order
        let len = prep.tensor_len();
        let mut echo = |n: usize, data: Vec<f32>| -> Result<Vec<f32>> {
            assert_eq!(data.len(), n * len);
            Ok(data)
        };
        let dir = tempfile::tempdir().unwrap();
        let tif = dir.path().join("slide.tif");
        crate::tiled::tests::write_tiled(&tif, &[&img], 64);
        for workers in [1, 3] {
            let plan = PredictPlan { side: 30.0, prep: &prep, batch: 4, genes: len, workers };
            let mut seen = Vec::new();
            let got = predict_with(Patches::Image(&img), &spots, &plan, &mut echo, &mut |p| seen.push(p.done)).unwrap();
            assert!(got == want, "image, {workers} workers");
            assert_eq!(seen, [4, 8, 12, 16, 20, 23]);
            let readers: Vec<Box<dyn SlideReader>> =
                (0..workers).map(|_| Box::new(crate::tiled::TiledTiff::open(&tif).unwrap()) as Box<dyn SlideReader>).collect();
            let got = predict_with(Patches::Slide(readers), &spots, &plan, &mut echo, &mut |_| {}).unwrap();
            assert!(got == want, "tiled TIFF, {workers} readers");
        }
        // a spot off the image: its error, in spot order, whichever worker meets it
        let mut bad = spots.clone();
        bad[9].x = 400.0;
        bad[21].y = -1.0;
        let plan = PredictPlan { side: 30.0, prep: &prep, batch: 4, genes: len, workers: 3 };
        let e = predict_with(Patches::Image(&img), &bad, &plan, &mut echo, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("(400.0, "), "{e}");
        // a model error stops the workers
        let mut calls = 0;
        let mut fail = |_: usize, _: Vec<f32>| -> Result<Vec<f32>> {
            calls += 1;
            Err(Error::Input("model failed".into()))
        };
        let e = predict_with(Patches::Image(&img), &spots, &plan, &mut fail, &mut |_| {}).unwrap_err().to_string();
        assert_eq!((e.as_str(), calls), ("model failed", 1));
        // the model's output size is checked
        let mut short = |n: usize, _: Vec<f32>| -> Result<Vec<f32>> { Ok(vec![0.0; n]) };
        let e = predict_with(Patches::Image(&img), &spots, &plan, &mut short, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("model returned 4 values for 4 patches"), "{e}");
    }

    #[test]
    fn slide_downscale_box_matches_box_sum() {
        let img = RgbImage::from_fn(1003, 517, |x, y| Rgb([(x * 7 + y) as u8, (x ^ y) as u8, (x * y % 251) as u8]));
        for side in [1003, 1002, 500, 100, 7, 1] {
            let mut sum = crate::wsi::BoxSum::new(1003, 517, side);
            sum.add(0, 0, 1003, 517, img.as_raw());
            assert!(downscale(&img, side) == sum.finish(), "max side {side}");
        }
    }

    #[test]
    fn slide_downscale_box() {
        let img = RgbImage::from_fn(5, 3, |x, _| Rgb([x as u8 * 10, 0, 0]));
        let (s, f) = downscale(&img, 2);
        assert_eq!((s.dimensions(), f), ((2, 1), 3));
        assert_eq!(s.get_pixel(0, 0).0[0], 10);
        assert_eq!(s.get_pixel(1, 0).0[0], 35);
    }
}

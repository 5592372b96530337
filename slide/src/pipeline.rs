//! Whole-image inference for spot models: predicted expression at given spot positions or on a
//! regular grid over tissue, batched through the runtime; a per-spot CSV and heatmap PNGs
//! ([`crate::heatmap`]).
//!
//! Tissue mask: the image is box-downscaled so its long side is at most [`MASK_SIDE`] px and
//! converted to grey (Rec. 601 luma); Otsu's threshold splits it and tissue is the darker class
//! (H&E and IHC slides have a bright background). A grid spot is kept when at least
//! [`MIN_TISSUE`] of its patch is tissue.
//!
//! Patches are cropped and preprocessed on a producer thread that hands whole batches to the
//! model thread through a bounded channel, so at most a few batches exist at once.
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
/// Batches prepared ahead of the model.
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
pub fn downscale(img: &RgbImage, max_side: u32) -> (RgbImage, u32) {
    let (w, h) = img.dimensions();
    let mut sum = crate::wsi::BoxSum::new(w, h, max_side);
    if sum.factor() == 1 {
        return (img.clone(), 1);
    }
    sum.add(0, 0, w, h, img.as_raw());
    sum.finish()
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

    /// Grid spots (step = patch side) whose patch is at least [`MIN_TISSUE`] tissue. Ids are `r<row>c<col>`.
    pub fn grid(&self, side: f32) -> Vec<SlideSpot> {
        let (w, h) = self.image;
        let mut out = Vec::new();
        let (nx, ny) = ((w as f32 / side).floor().max(1.0) as u32, (h as f32 / side).floor().max(1.0) as u32);
        for r in 0..ny {
            for c in 0..nx {
                let (x, y) = ((c as f32 + 0.5) * side, (r as f32 + 0.5) * side);
                if x >= w as f32 || y >= h as f32 {
                    continue;
                }
                let (t, n) = self.counts(x, y, side);
                if t as f32 >= MIN_TISSUE * n as f32 {
                    out.push(SlideSpot { id: format!("r{r}c{c}"), x, y });
                }
            }
        }
        out
    }
}

/// Grid spots (step = patch side) whose patch is at least [`MIN_TISSUE`] tissue. Ids are `r<row>c<col>`.
pub fn grid_spots(img: &RgbImage, side: f32) -> Vec<SlideSpot> {
    TissueMask::of_image(img).grid(side)
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
pub fn grid_spots_slide(t: &mut dyn SlideReader, side: f32) -> Result<Vec<SlideSpot>> {
    Ok(TissueMask::of_slide(t)?.grid(side))
}

/// Where patches come from: a decoded image, or level 0 of a slide read by regions.
pub enum Patches<'a> {
    /// Patches cut from an image decoded whole.
    Image(&'a RgbImage),
    /// Patches read by regions from level 0 of a slide.
    Slide(Box<dyn SlideReader>),
}

impl Patches<'_> {
    /// The patch of [`crop_square`] (same rounding, same edge padding).
    pub fn crop(&mut self, x: f32, y: f32, side: f32) -> Result<RgbImage> {
        match self {
            Patches::Image(img) => crop_square(img, x, y, side),
            Patches::Slide(t) => {
                let (w, h) = t.dimensions();
                crop_square_from(w, h, x, y, side, |x0, y0, cw, ch| t.read_region(0, x0, y0, cw, ch))
            }
        }
    }
}

/// Predicts every spot from a patch source: `[spots × genes]` row-major. Crops/preprocessing run on
/// a producer thread, batches go through a bounded channel. Progress goes to stderr.
pub fn predict_from(
    session: &mut Session,
    mut source: Patches<'_>,
    spots: &[SlideSpot],
    side: f32,
    prep: &Preprocess,
    batch: usize,
    genes: usize,
) -> Result<Vec<f32>> {
    let batch = batch.max(1);
    let len = prep.tensor_len();
    let s = prep.size as usize;
    let mut out = Vec::with_capacity(spots.len() * genes);
    let n_batches = spots.len().div_ceil(batch);
    let start = Instant::now();
    let mut last = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(usize, Vec<f32>)>>(QUEUE);
        let producer = scope.spawn(move || {
            let mut busy = 0.0;
            for chunk in spots.chunks(batch) {
                let t = Instant::now();
                let mut data = vec![0f32; chunk.len() * len];
                let r = chunk.iter().zip(data.chunks_mut(len)).try_for_each(|(sp, dst)| {
                    let patch = prep.resize(&source.crop(sp.x, sp.y, side)?)?;
                    prep.normalize_into(&patch, dst).map_err(|e| Error::Input(format!("spot {}: {e}", sp.id)))
                });
                busy += t.elapsed().as_secs_f64();
                let msg = r.map(|_| (chunk.len(), data));
                let stop = msg.is_err();
                if tx.send(msg).is_err() || stop {
                    break; // receiver gone (model error) or our own error sent
                }
            }
            busy
        });
        let mut run_s = 0.0;
        for (b, msg) in rx.iter().enumerate() {
            let (n, data) = msg?;
            let t = Instant::now();
            let y = session.run_output(&[Value::f32(&[n, 3, s, s], data)], "expression")?.into_f32()?;
            if y.len() != n * genes {
                return Err(Error::Input(format!(
                    "model returned {} values for {n} patches, expected {} ({genes} genes each)",
                    y.len(),
                    n * genes
                )));
            }
            run_s += t.elapsed().as_secs_f64();
            out.extend_from_slice(&y);
            if last.elapsed().as_secs_f64() >= 2.0 || b + 1 == n_batches {
                let done = out.len() / genes;
                eprintln!("slide: {done}/{} patches, {:.1}/s", spots.len(), done as f64 / start.elapsed().as_secs_f64().max(1e-9));
                last = Instant::now();
            }
        }
        let prep_s = producer.join().unwrap_or(0.0);
        eprintln!("slide: crop+preprocess {prep_s:.1}s (producer thread), model {run_s:.1}s");
        Ok(())
    })?;
    if out.len() != spots.len() * genes {
        return Err(Error::Input("producer stopped early".into()));
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
    fn slide_downscale_box() {
        let img = RgbImage::from_fn(5, 3, |x, _| Rgb([x as u8 * 10, 0, 0]));
        let (s, f) = downscale(&img, 2);
        assert_eq!((s.dimensions(), f), ((2, 1), 3));
        assert_eq!(s.get_pixel(0, 0).0[0], 10);
        assert_eq!(s.get_pixel(1, 0).0[0], 35);
    }
}

//! Heatmap PNGs a person can read on their own: the predicted values of one gene as coloured
//! patch squares over a downscaled copy of the slide (the *grid*), with a header naming the gene,
//! the model and the slide, and a footer holding a colour bar with its units and the values at
//! its ends (the lowest and highest prediction over the slide) and middle; optionally the outline
//! of the tissue mask. Text is drawn with the built-in bitmap font ([`crate::font`]).
//!
//! Layout ([`HeatmapLayout`], fixed for a given grid size so that a reader of the PNG can find
//! the colour bar): the canvas is the grid's width (at least [`MIN_WIDTH`]) by header + grid +
//! footer; the grid sits under the header at the left edge, white around it.

use crate::font::{LINE_H, draw_text, fit, text_width};
use crate::pipeline::{SlideSpot, TissueMask, viridis};
use bioedge_error::{Error, Result};
use image::{Rgb, RgbImage};

/// Narrowest canvas: room for the legend beside a small image.
pub const MIN_WIDTH: u32 = 480;
/// Canvas background (outside the grid).
pub const BACKGROUND: [u8; 3] = [255, 255, 255];
/// Colour of the text and the ticks.
pub const INK: [u8; 3] = [20, 20, 20];
/// Colour of the tissue outline.
pub const OUTLINE: [u8; 3] = [0, 0, 0];

/// What the legend says.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatmapText {
    /// Gene symbol (the title).
    pub gene: String,
    /// Units of the values, under the colour bar (e.g. "log1p expression").
    pub units: String,
    /// The model (file name).
    pub model: String,
    /// The slide (file name).
    pub slide: String,
}

/// A rectangle in canvas pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

/// Where everything goes on a heatmap canvas, from the grid's size alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeatmapLayout {
    /// Canvas width.
    pub width: u32,
    /// Canvas height.
    pub height: u32,
    /// Font scale (image pixels per font pixel) of the body text; the title is one step larger.
    pub scale: u32,
    /// Margin around the legend parts.
    pub margin: u32,
    /// The downscaled slide with the coloured patches.
    pub grid: Rect,
    /// The colour bar: its first column is the colour map at 0 (lowest value), its last at 1.
    pub bar: Rect,
}

impl HeatmapLayout {
    /// The layout around a `grid_w × grid_h` grid.
    pub fn new(grid_w: u32, grid_h: u32) -> HeatmapLayout {
        let width = grid_w.max(MIN_WIDTH);
        let scale = if width >= 1000 { 3 } else { 2 };
        let margin = 4 * scale;
        let line = LINE_H * scale;
        // title (one scale larger), model line, slide line
        let header = margin + LINE_H * (scale + 1) + 2 * line + margin;
        let grid = Rect { x: 0, y: header, w: grid_w, h: grid_h };
        // units line, the bar, ticks (2 font px) and a gap, the values line
        let bar_y = header + grid_h + margin + line;
        let bar = Rect { x: margin, y: bar_y, w: width - 2 * margin, h: 6 * scale };
        let height = bar_y + bar.h + 3 * scale + line + margin;
        HeatmapLayout { width, height, scale, margin, grid, bar }
    }

    /// Characters of body text that fit on one line.
    pub fn line_chars(&self) -> usize {
        ((self.width - 2 * self.margin) / (crate::font::ADVANCE * self.scale)) as usize
    }
}

/// A value for a colour-bar label: 3 significant digits, no exponent for the usual ranges.
pub fn label(v: f32) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) { format!("{v:.2e}") } else { format!("{:.*}", if a >= 100.0 { 0 } else { 2 }, v) }
}

/// `out[i]` = `keep(tissue pixels, all pixels)` over the square of radius `r` around pixel `i`
/// (clipped to the `w × h` grid), by an integral image.
fn box_vote(m: &[bool], w: usize, h: usize, r: usize, keep: impl Fn(usize, usize) -> bool) -> Vec<bool> {
    let mut sum = vec![0u32; (w + 1) * (h + 1)];
    for y in 0..h {
        for x in 0..w {
            sum[(y + 1) * (w + 1) + x + 1] =
                m[y * w + x] as u32 + sum[y * (w + 1) + x + 1] + sum[(y + 1) * (w + 1) + x] - sum[y * (w + 1) + x];
        }
    }
    (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            let (x0, x1, y0, y1) = (x.saturating_sub(r), (x + r + 1).min(w), y.saturating_sub(r), (y + r + 1).min(h));
            let s = sum[y1 * (w + 1) + x1] + sum[y0 * (w + 1) + x0] - sum[y0 * (w + 1) + x1] - sum[y1 * (w + 1) + x0];
            keep(s as usize, (x1 - x0) * (y1 - y0))
        })
        .collect()
}

/// The tissue outline on a `w × h` grid whose pixels are `factor` level-0 pixels: mask pixels
/// sampled at each grid pixel's centre; a 5 × 5 majority vote against Otsu's speckle; a closing
/// (dilation then erosion) over about 2 % of the grid that bridges the pale gaps between tissue
/// pieces; holes filled (background not connected to the grid's border: lumens, fat, stroma
/// paler than the threshold); then the tissue pixels with a non-tissue 4-neighbour.
pub fn outline(mask: &TissueMask, w: u32, h: u32, factor: f32) -> Vec<bool> {
    let (w, h) = (w as usize, h as usize);
    let sampled: Vec<bool> = (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            let mx = (((x as f32 + 0.5) * factor / mask.factor.0) as u32).min(mask.width - 1);
            let my = (((y as f32 + 0.5) * factor / mask.factor.1) as u32).min(mask.height - 1);
            mask.mask[(my * mask.width + mx) as usize]
        })
        .collect();
    let despeckled = box_vote(&sampled, w, h, 2, |s, n| 2 * s > n);
    let r = w.max(h) / 100;
    let mut tissue = if r > 2 {
        let dilated = box_vote(&despeckled, w, h, r, |s, _| s > 0);
        box_vote(&dilated, w, h, r, |s, n| s == n)
    } else {
        despeckled
    };
    // background reachable from the border stays; the rest (holes) becomes tissue
    let mut outside = vec![false; w * h];
    let mut stack: Vec<usize> =
        (0..w * h).filter(|&i| (i % w == 0 || i % w == w - 1 || i / w == 0 || i / w == h - 1) && !tissue[i]).collect();
    for &i in &stack {
        outside[i] = true;
    }
    while let Some(i) = stack.pop() {
        let (x, y) = (i % w, i / w);
        let near = [(x > 0).then(|| i - 1), (x + 1 < w).then(|| i + 1), (y > 0).then(|| i - w), (y + 1 < h).then(|| i + w)];
        for j in near.into_iter().flatten() {
            if !tissue[j] && !outside[j] {
                outside[j] = true;
                stack.push(j);
            }
        }
    }
    for (t, o) in tissue.iter_mut().zip(&outside) {
        *t = !o;
    }
    (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            tissue[i]
                && ((x > 0 && !tissue[i - 1])
                    || (x + 1 < w && !tissue[i + 1])
                    || (y > 0 && !tissue[i - w])
                    || (y + 1 < h && !tissue[i + w]))
        })
        .collect()
}

/// The heatmap canvas: filled squares (side = patch side) coloured by `values` (lowest →
/// highest on the colour map) over `background`, a copy of the slide downscaled by `factor`,
/// with the legend of [`HeatmapLayout`] and, given a tissue mask, its outline.
pub fn heatmap_image(
    background: &RgbImage,
    factor: f32,
    spots: &[SlideSpot],
    values: &[f32],
    side: f32,
    text: &HeatmapText,
    tissue: Option<&TissueMask>,
) -> RgbImage {
    let mut grid = background.clone();
    let (lo, hi) = values.iter().filter(|v| v.is_finite()).fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (0.0, 0.0) };
    let span = if hi > lo { hi - lo } else { 1.0 };
    let half = (side / 2.0 / factor).max(1.0);
    let (w, h) = grid.dimensions();
    for (sp, &v) in spots.iter().zip(values) {
        let col = viridis((v - lo) / span);
        let (cx, cy) = (sp.x / factor, sp.y / factor);
        let x0 = (cx - half).max(0.0) as u32;
        let y0 = (cy - half).max(0.0) as u32;
        let x1 = ((cx + half).ceil() as u32).min(w);
        let y1 = ((cy + half).ceil() as u32).min(h);
        for y in y0..y1 {
            for x in x0..x1 {
                let p = grid.get_pixel_mut(x, y);
                for (v, &k) in p.0.iter_mut().zip(&col) {
                    *v = ((*v as u32 + 3 * k as u32) / 4) as u8;
                }
            }
        }
    }
    if let Some(mask) = tissue {
        let edge = outline(mask, w, h, factor);
        // about 1 px per 500 px of grid
        let t = (w.max(h) / 500).max(1);
        for (i, _) in edge.iter().enumerate().filter(|(_, e)| **e) {
            let (x, y) = (i as u32 % w, i as u32 / w);
            for dy in 0..t {
                for dx in 0..t {
                    if x + dx < w && y + dy < h {
                        grid.put_pixel(x + dx, y + dy, Rgb(OUTLINE));
                    }
                }
            }
        }
    }
    let l = HeatmapLayout::new(w, h);
    let mut img = RgbImage::from_pixel(l.width, l.height, Rgb(BACKGROUND));
    image::imageops::replace(&mut img, &grid, l.grid.x as i64, l.grid.y as i64);
    let (s, m, line) = (l.scale, l.margin, LINE_H * l.scale);
    let n = l.line_chars();
    // header: the gene (larger), the model, the slide
    let title_chars = ((l.width - 2 * m) / (crate::font::ADVANCE * (s + 1))) as usize;
    draw_text(&mut img, m as i64, m as i64, &fit(&text.gene, title_chars), s + 1, INK);
    let y = m + LINE_H * (s + 1);
    draw_text(&mut img, m as i64, y as i64, &fit(&format!("model: {}", text.model), n), s, INK);
    draw_text(&mut img, m as i64, (y + line) as i64, &fit(&format!("slide: {}", text.slide), n), s, INK);
    // footer: units, the bar, ticks at the ends and the middle, the values under them
    let spots_note = format!("{} spots", spots.len());
    let units = fit(&format!("predicted {}", text.units), n.saturating_sub(spots_note.len() + 2));
    draw_text(&mut img, m as i64, (l.bar.y - line) as i64, &units, s, INK);
    draw_text(&mut img, (l.width - m - text_width(&spots_note, s)) as i64, (l.bar.y - line) as i64, &spots_note, s, INK);
    let b = l.bar;
    for i in 0..b.w {
        let c = viridis(i as f32 / (b.w - 1).max(1) as f32);
        for y in b.y..b.y + b.h {
            img.put_pixel(b.x + i, y, Rgb(c));
        }
    }
    let ticks = [(b.x, lo), (b.x + b.w / 2, (lo + hi) / 2.0), (b.x + b.w - 1, hi)];
    let ty = b.y + b.h;
    for (k, &(x, v)) in ticks.iter().enumerate() {
        for y in ty..ty + 2 * s {
            for dx in 0..s.min(2) {
                let px = if k == 2 { x - dx } else { x + dx };
                img.put_pixel(px, y, Rgb(INK));
            }
        }
        let t = label(v);
        let tw = text_width(&t, s);
        let tx = match k {
            0 => x,
            1 => x.saturating_sub(tw / 2),
            _ => (x + 1).saturating_sub(tw),
        };
        draw_text(&mut img, tx as i64, (ty + 3 * s) as i64, &t, s, INK);
    }
    img
}

/// [`heatmap_image`] as PNG bytes.
pub fn heatmap_png(
    background: &RgbImage,
    factor: f32,
    spots: &[SlideSpot],
    values: &[f32],
    side: f32,
    text: &HeatmapText,
    tissue: Option<&TissueMask>,
) -> Result<Vec<u8>> {
    let img = heatmap_image(background, factor, spots, values, side, text, tissue);
    let mut buf = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut buf), image::ImageFormat::Png)
        .map_err(|e| Error::Input(format!("encoding heatmap PNG: {e}")))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> HeatmapText {
        HeatmapText { gene: "ERBB2".into(), units: "log1p expression".into(), model: "spot.onnx".into(), slide: "C2.jpg".into() }
    }

    #[test]
    fn heatmap_legend_bar_and_outline() {
        // grey 300×200 slide, a dark blob [100, 200) × [50, 150) of tissue, 4 spots of 50 px
        let bg = RgbImage::from_fn(300, 200, |x, y| {
            if (100..200).contains(&x) && (50..150).contains(&y) { Rgb([120, 60, 140]) } else { Rgb([240, 240, 240]) }
        });
        let spots: Vec<SlideSpot> = [(125.0, 75.0), (175.0, 75.0), (125.0, 125.0), (175.0, 125.0)]
            .iter()
            .enumerate()
            .map(|(i, &(x, y))| SlideSpot { id: format!("s{i}"), x, y })
            .collect();
        let values = [0.5, 1.0, 1.5, 2.5];
        let mask = TissueMask::of_image(&bg);
        let img = heatmap_image(&bg, 1.0, &spots, &values, 50.0, &text(), Some(&mask));
        let l = HeatmapLayout::new(300, 200);
        assert_eq!(img.dimensions(), (l.width, l.height));
        assert!(l.width >= 300 && l.height > 200 + 60, "{l:?}");
        // the grid is there: the lowest spot has the colour map's start blended over the tissue
        let p = img.get_pixel(l.grid.x + 110, l.grid.y + 60).0;
        let c0 = viridis(0.0);
        assert_eq!(p, std::array::from_fn(|c| ((bg.get_pixel(110, 60).0[c] as u32 + 3 * c0[c] as u32) / 4) as u8));
        // the bar's ends are the colour map's ends
        assert_eq!(img.get_pixel(l.bar.x, l.bar.y + 1).0, viridis(0.0));
        assert_eq!(img.get_pixel(l.bar.x + l.bar.w - 1, l.bar.y + l.bar.h - 1).0, viridis(1.0));
        // text in the header and under the bar
        let inked = |y0: u32, y1: u32| (y0..y1).any(|y| (0..l.width).any(|x| img.get_pixel(x, y).0 == INK));
        assert!(inked(0, l.grid.y), "no header text");
        assert!(inked(l.bar.y + l.bar.h + 2 * l.scale, l.height), "no value labels");
        // the outline runs along the blob's edge (x = 100), not inside it
        assert_eq!(img.get_pixel(l.grid.x + 100, l.grid.y + 100).0, OUTLINE);
        assert_ne!(img.get_pixel(l.grid.x + 150, l.grid.y + 100).0, OUTLINE);
        // a hole in the tissue is filled: no outline around it
        let holed = RgbImage::from_fn(300, 200, |x, y| {
            let blob = (100..200).contains(&x) && (50..150).contains(&y) && !((140..160).contains(&x) && (90..110).contains(&y));
            if blob { Rgb([120, 60, 140]) } else { Rgb([240, 240, 240]) }
        });
        let edge = outline(&TissueMask::of_image(&holed), 300, 200, 1.0);
        assert!(edge[100 * 300 + 100] && !edge[90 * 300 + 140] && !edge[100 * 300 + 140], "hole outlined");
        assert_eq!(label(2.5), "2.50");
        assert_eq!(label(1234.0), "1234");
        assert_eq!(label(1e-5), "1.00e-5");
        // a large grid gets a larger font; no spots draws a legend with 0 values
        assert_eq!(HeatmapLayout::new(1400, 900).scale, 3);
        let e = heatmap_image(&bg, 1.0, &[], &[], 50.0, &text(), None);
        assert_eq!(e.dimensions(), (l.width, l.height));
    }
}

//! Whole-slide images read region by region: one trait over the tiled-TIFF reader
//! ([`crate::tiled`]) and, with the `openslide` feature, OpenSlide ([`crate::openslide`]).

use crate::error::{Error, Result};
use image::RgbImage;
use std::path::Path;

/// Bytes of one strip read by the default [`SlideReader::downscale_level`].
const STRIP_BYTES: u64 = 32 << 20;

/// A multi-resolution image read by regions. Levels are largest (level 0) first.
pub trait SlideReader: Send {
    /// Path of the slide file.
    fn path(&self) -> &Path;
    /// What reads it, for messages (`tiled TIFF`, `OpenSlide (aperio)`).
    fn kind(&self) -> String;
    /// `(width, height)` of every level.
    fn level_sizes(&self) -> Vec<(u32, u32)>;
    /// Level 0 size.
    fn dimensions(&self) -> (u32, u32) {
        self.level_sizes()[0]
    }
    /// Microns per pixel (x, y) at level 0, when the file records a plausible one.
    fn mpp(&self) -> Option<(f64, f64)> {
        None
    }
    /// The `w × h` region at `(x, y)` of `level`, in that level's pixels (it must lie inside).
    fn read_region(&mut self, level: usize, x: u32, y: u32, w: u32, h: u32) -> Result<RgbImage>;
    /// Box-averaged copy of `level` whose long side is at most `max_side`, and the integer
    /// factor; the same pixels as [`crate::pipeline::downscale`] of the whole level. Reads strips.
    fn downscale_level(&mut self, level: usize, max_side: u32) -> Result<(RgbImage, u32)> {
        let (w, h) = *self.level_sizes().get(level).ok_or_else(|| Error::Input(format!("{}: no level {level}", self.path().display())))?;
        let mut sum = BoxSum::new(w, h, max_side);
        let rows = (STRIP_BYTES / (w as u64 * 3)).max(1) as u32;
        let strip = (rows / sum.factor()).max(1) * sum.factor();
        let mut y = 0;
        while y < h {
            let sh = strip.min(h - y);
            let region = self.read_region(level, 0, y, w, sh)?;
            sum.add(0, y, w, sh, region.as_raw());
            y += sh;
        }
        Ok(sum.finish())
    }
}

/// Running box sums for a downscaled copy of a `width × height` image, filled piece by piece.
pub struct BoxSum {
    width: u32,
    height: u32,
    f: u32,
    sw: usize,
    acc: Vec<u64>,
}

impl BoxSum {
    /// Factor: the smallest integer that brings the long side to at most `max_side`.
    pub fn new(width: u32, height: u32, max_side: u32) -> Self {
        let f = width.max(height).div_ceil(max_side.max(1)).max(1);
        let (sw, sh) = (width.div_ceil(f) as usize, height.div_ceil(f) as usize);
        BoxSum { width, height, f, sw, acc: vec![0; sw * sh * 3] }
    }

    /// The downscale factor: one output pixel averages a `factor × factor` box.
    pub fn factor(&self) -> u32 {
        self.f
    }

    /// Adds the RGB8 pixels of the `w × h` piece whose top-left pixel is `(ox, oy)`; parts
    /// outside the image (padded edge tiles) are ignored.
    pub fn add(&mut self, ox: u32, oy: u32, w: u32, h: u32, rgb: &[u8]) {
        let f = self.f;
        for y in 0..h.min(self.height.saturating_sub(oy)) {
            let row = ((oy + y) / f) as usize * self.sw;
            for x in 0..w.min(self.width.saturating_sub(ox)) {
                let a = (row + ((ox + x) / f) as usize) * 3;
                let s = ((y * w + x) * 3) as usize;
                for c in 0..3 {
                    self.acc[a + c] += rgb[s + c] as u64;
                }
            }
        }
    }

    /// The averages (rounded) and the factor.
    pub fn finish(self) -> (RgbImage, u32) {
        let (f, sw) = (self.f, self.sw as u32);
        let sh = self.height.div_ceil(f);
        let mut out = RgbImage::new(sw, sh);
        for (sx, sy, p) in out.enumerate_pixels_mut() {
            let nx = ((sx + 1) * f).min(self.width) - sx * f;
            let ny = ((sy + 1) * f).min(self.height) - sy * f;
            let n = nx as u64 * ny as u64;
            let a = (sy as usize * self.sw + sx as usize) * 3;
            p.0 = [0, 1, 2].map(|c| ((self.acc[a + c] + n / 2) / n) as u8);
        }
        (out, f)
    }
}

/// `(x, y)` microns per pixel if both are within what microscopes produce (0.05–20 µm/px);
/// rejects the 72 or 96 dpi that image tools write by default.
pub fn plausible_mpp(x: f64, y: f64) -> Option<(f64, f64)> {
    let ok = |v: f64| v.is_finite() && (0.05..=20.0).contains(&v);
    (ok(x) && ok(y)).then_some((x, y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wsi_box_sum_matches_pieces() {
        let img = image::RgbImage::from_fn(37, 23, |x, y| image::Rgb([(x * 7 + y) as u8, (x ^ y) as u8, 200]));
        let (whole, f) = crate::pipeline::downscale(&img, 10);
        assert_eq!((whole.dimensions(), f), ((10, 6), 4));
        // The same sums from two horizontal strips.
        let mut s = BoxSum::new(37, 23, 10);
        for (y, h) in [(0, 12), (12, 11)] {
            let strip = image::imageops::crop_imm(&img, 0, y, 37, h).to_image();
            s.add(0, y, 37, h, strip.as_raw());
        }
        assert_eq!(s.finish(), (whole, 4));
    }
}

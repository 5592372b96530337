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

/// Which reader `infer slide` uses for its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reader {
    /// OpenSlide for the vendor formats it recognizes (when built with it), the tiled-TIFF
    /// reader for tiled or multi-level TIFFs, otherwise the whole image is decoded.
    #[default]
    Auto,
    /// The tiled-TIFF reader ([`crate::tiled`]).
    Tiff,
    /// OpenSlide (needs the `openslide` feature).
    OpenSlide,
    /// Decode the whole image (JPEG, PNG, TIFF).
    Image,
}

impl std::str::FromStr for Reader {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Reader::Auto),
            "tiff" => Ok(Reader::Tiff),
            "openslide" => Ok(Reader::OpenSlide),
            "image" => Ok(Reader::Image),
            _ => Err(format!("unknown reader `{s}` (auto, tiff, openslide, image)")),
        }
    }
}

/// Whether this build reads slides with OpenSlide.
pub const HAS_OPENSLIDE: bool = cfg!(feature = "openslide");

/// File extensions of formats that only OpenSlide reads here.
const VENDOR_EXTENSIONS: [&str; 8] = ["svs", "ndpi", "mrxs", "vms", "vmu", "scn", "bif", "svslide"];

/// Whether the file name looks like a vendor whole-slide format (for error hints).
pub fn vendor_extension(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| VENDOR_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

#[cfg(feature = "openslide")]
fn open_openslide(path: &Path) -> Result<Box<dyn SlideReader>> {
    Ok(Box::new(crate::openslide::OpenSlide::open(path)?))
}

#[cfg(not(feature = "openslide"))]
fn open_openslide(path: &Path) -> Result<Box<dyn SlideReader>> {
    Err(Error::Unsupported(format!(
        "{}: this build has no OpenSlide; rebuild infer with `--features openslide` (needs Debian's libopenslide-dev)",
        path.display()
    )))
}

/// The region reader for `path`, or `None` when the image is to be decoded whole.
pub fn open(path: &Path, reader: Reader) -> Result<Option<Box<dyn SlideReader>>> {
    match reader {
        Reader::Image => Ok(None),
        Reader::OpenSlide => open_openslide(path).map(Some),
        Reader::Tiff => Ok(Some(Box::new(crate::tiled::TiledTiff::open(path)?))),
        Reader::Auto => {
            #[cfg(feature = "openslide")]
            if crate::openslide::vendor(path).is_some_and(|v| v != "generic-tiff") {
                return open_openslide(path).map(Some);
            }
            let needs_openslide = vendor_extension(path) && !HAS_OPENSLIDE;
            if !crate::tiled::is_tiff(path) {
                if needs_openslide {
                    return open_openslide(path).map(Some); // the error says how to get OpenSlide
                }
                return Ok(None);
            }
            let hint = |m: String| {
                if needs_openslide { format!("{m} (vendor slide formats need `infer` built with `--features openslide`)") } else { m }
            };
            match crate::tiled::TiledTiff::open(path) {
                Ok(t) if t.is_pyramid_or_tiled() => Ok(Some(Box::new(t))),
                Ok(_) => Ok(None),
                Err(Error::Unsupported(m)) => {
                    eprintln!("slide: {}; decoding the whole image instead", hint(m));
                    Ok(None)
                }
                Err(Error::Format { path, msg }) => Err(Error::Format { msg: hint(msg), path }),
                Err(e) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wsi_reader_names_and_fallbacks() {
        assert_eq!("openslide".parse::<Reader>().unwrap(), Reader::OpenSlide);
        assert!("svs".parse::<Reader>().unwrap_err().contains("auto, tiff, openslide, image"));
        assert!(vendor_extension(Path::new("a/B.SVS")) && !vendor_extension(Path::new("b.tif")));
        assert_eq!(plausible_mpp(0.25, 0.25), Some((0.25, 0.25)));
        assert_eq!(plausible_mpp(25400.0 / 72.0, 25400.0 / 72.0), None);
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("a.png");
        image::RgbImage::new(8, 8).save(&png).unwrap();
        assert!(open(&png, Reader::Auto).unwrap().is_none());
        assert!(open(&png, Reader::Image).unwrap().is_none());
        assert!(open(&png, Reader::Tiff).is_err());
        let e = open(&png, Reader::OpenSlide).err().unwrap().to_string();
        assert!(e.contains("a.png"), "{e}");
        if !HAS_OPENSLIDE {
            assert!(e.contains("--features openslide"), "{e}");
            let mrxs = dir.path().join("s.mrxs");
            std::fs::write(&mrxs, "x").unwrap();
            let e = open(&mrxs, Reader::Auto).err().unwrap().to_string();
            assert!(e.contains("--features openslide"), "{e}");
        }
    }

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

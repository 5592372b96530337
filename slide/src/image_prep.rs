//! The image preprocessing contract for spot models, implemented once and shared by training,
//! `infer slide` and the browser build:
//!
//! 1. crop a square patch of side `s` pixels centred on the spot's pixel coordinate (see
//!    [`crop_square`] for the rules at the image border);
//! 2. resize to `size × size` (224) with bilinear filtering (`image::imageops::resize`,
//!    `FilterType::Triangle`, which antialiases when shrinking, like Pillow's `BILINEAR`);
//! 3. scale to [0, 1] (`v / 255`);
//! 4. normalize per channel with `(v - mean) / std`, timm's IMAGENET_DEFAULT_MEAN/STD;
//! 5. lay out as CHW `f32`, `3 · size · size` values (R plane, then G, then B).

use crate::error::{Error, Result};
use image::imageops::FilterType;
use image::{ImageFormat, ImageReader, Limits, RgbImage};
use std::io::Cursor;
use std::path::Path;

/// timm `IMAGENET_DEFAULT_MEAN`.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// timm `IMAGENET_DEFAULT_STD`.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// Largest image width/height the decoders accept (HER2ST JPEGs are ~9.3k × 9.9k).
pub const MAX_IMAGE_SIDE: u32 = 40_000;
/// Largest allocation the decoders may make, in bytes (4 GiB).
pub const MAX_IMAGE_ALLOC: u64 = 4 << 30;
/// Largest patch side accepted by [`crop_square`], in pixels.
pub const MAX_PATCH_SIDE: f32 = 16_384.0;

/// Preprocessing parameters (the model card records them as [`onnx_format::card::ImageNorm`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    /// Output side in pixels (the model input is `size × size`).
    pub size: u32,
    /// Per-channel mean (RGB) subtracted after scaling to [0, 1].
    pub mean: [f32; 3],
    /// Per-channel standard deviation (RGB) divided by after subtracting the mean.
    pub std: [f32; 3],
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess { size: 224, mean: IMAGENET_MEAN, std: IMAGENET_STD }
    }
}

impl Preprocess {
    /// Values in one CHW tensor: `3 · size · size`.
    pub fn tensor_len(&self) -> usize {
        3 * self.size as usize * self.size as usize
    }

    /// Checks the parameters (size > 0, finite mean, finite positive std).
    pub fn validate(&self) -> Result<()> {
        if self.size == 0 || self.size > 8192 {
            return Err(Error::Input(format!("preprocess size {} is not in 1..=8192", self.size)));
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return Err(Error::Input(format!("preprocess mean {:?} is not finite", self.mean)));
        }
        if self.std.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(Error::Input(format!("preprocess std {:?} must be finite and > 0", self.std)));
        }
        Ok(())
    }

    /// The contract as a model card records it.
    pub fn to_card(&self) -> onnx_format::card::ImageNorm {
        onnx_format::card::ImageNorm {
            size: self.size,
            mean: self.mean,
            std: self.std,
            crop: "square patch centred on the spot, side in pixels from the spot spacing; \
                   edge pixels repeated where it leaves the image; centre outside the image is an error"
                .into(),
            interpolation: "bilinear (image::imageops::FilterType::Triangle, antialiased when shrinking)".into(),
            scale: "1/255".into(),
            layout: "CHW, f32".into(),
            channels: "RGB".into(),
        }
    }

    /// The parameters a model card records.
    pub fn from_card(c: &onnx_format::card::ImageNorm) -> Self {
        Preprocess { size: c.size, mean: c.mean, std: c.std }
    }

    /// Resizes `patch` to `size × size` (bilinear); a patch already that size is copied as is.
    pub fn resize(&self, patch: &RgbImage) -> Result<RgbImage> {
        self.validate()?;
        if patch.width() == 0 || patch.height() == 0 {
            return Err(Error::Input("empty patch".into()));
        }
        if patch.width() == self.size && patch.height() == self.size {
            return Ok(patch.clone());
        }
        Ok(image::imageops::resize(patch, self.size, self.size, FilterType::Triangle))
    }

    /// Scales and normalizes a `size × size` RGB image into `out` (CHW, `tensor_len()` values).
    pub fn normalize_into(&self, img: &RgbImage, out: &mut [f32]) -> Result<()> {
        let n = self.size as usize;
        if img.width() as usize != n || img.height() as usize != n {
            return Err(Error::Input(format!("normalize: image is {}×{}, expected {n}×{n} (resize first)", img.width(), img.height())));
        }
        self.normalize_raw(img.as_raw(), out)
    }

    /// [`Self::normalize_into`] on raw `size × size` RGB bytes (HWC, row-major).
    pub fn normalize_raw(&self, hwc: &[u8], out: &mut [f32]) -> Result<()> {
        self.validate()?;
        let n = self.size as usize;
        if hwc.len() != 3 * n * n {
            return Err(Error::Input(format!("normalize: patch has {} bytes, expected {} ({n}×{n} RGB)", hwc.len(), 3 * n * n)));
        }
        if out.len() != self.tensor_len() {
            return Err(Error::Input(format!("normalize: output has {} values, expected {}", out.len(), self.tensor_len())));
        }
        let plane = n * n;
        let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * self.std[c]));
        let shift: [f32; 3] = std::array::from_fn(|c| self.mean[c] / self.std[c]);
        for (i, px) in hwc.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + i] = px[c] as f32 * scale[c] - shift[c];
            }
        }
        Ok(())
    }

    /// Resizes (if needed), scales and normalizes a patch into a CHW tensor.
    pub fn tensor(&self, patch: &RgbImage) -> Result<Vec<f32>> {
        let resized = self.resize(patch)?;
        let mut out = vec![0.0; self.tensor_len()];
        self.normalize_into(&resized, &mut out)?;
        Ok(out)
    }

    /// Crop around `(x, y)` with side `side` and resize to `size × size`, as RGB (for augmentation
    /// before [`Preprocess::normalize_into`]).
    pub fn crop_resize(&self, img: &RgbImage, x: f32, y: f32, side: f32) -> Result<RgbImage> {
        self.resize(&crop_square(img, x, y, side)?)
    }

    /// The whole contract: crop, resize, scale, normalize → CHW tensor.
    pub fn spot(&self, img: &RgbImage, x: f32, y: f32, side: f32) -> Result<Vec<f32>> {
        self.tensor(&crop_square(img, x, y, side)?)
    }
}

/// Crops a square patch centred on `(x, y)` (pixel coordinates, x to the right, y down).
///
/// The side is `side.round()` pixels (at least 1); the top-left corner is
/// `round(x - side/2), round(y - side/2)`. If the centre lies outside the image (so more than half
/// the patch is off the image along that axis) this is an error; otherwise pixels off the image
/// repeat the nearest edge pixel.
pub fn crop_square(img: &RgbImage, x: f32, y: f32, side: f32) -> Result<RgbImage> {
    let (w, h) = img.dimensions();
    crop_square_from(w, h, x, y, side, |x0, y0, cw, ch| Ok(image::imageops::crop_imm(img, x0, y0, cw, ch).to_image()))
}

/// [`crop_square`] on any `w × h` source: `read(x, y, width, height)` returns the part of the
/// patch that lies on the image (never empty), and pixels off the image repeat its edge. Lets a
/// tiled reader cut the same patches without decoding the whole image.
pub fn crop_square_from(
    w: u32,
    h: u32,
    x: f32,
    y: f32,
    side: f32,
    read: impl FnOnce(u32, u32, u32, u32) -> Result<RgbImage>,
) -> Result<RgbImage> {
    if w == 0 || h == 0 {
        return Err(Error::Input("empty image".into()));
    }
    if !x.is_finite() || !y.is_finite() {
        return Err(Error::Input(format!("patch centre ({x}, {y}) is not finite")));
    }
    if !side.is_finite() || !(0.5..=MAX_PATCH_SIDE).contains(&side) {
        return Err(Error::Input(format!("patch side {side} px is not in 1..={MAX_PATCH_SIDE}")));
    }
    if x < 0.0 || y < 0.0 || x >= w as f32 || y >= h as f32 {
        return Err(Error::Input(format!("patch centre ({x:.1}, {y:.1}) is outside the {w}×{h} image")));
    }
    let s = (side.round() as i64).max(1);
    let left = (x as f64 - s as f64 / 2.0).round() as i64;
    let top = (y as f64 - s as f64 / 2.0).round() as i64;
    // the part on the image, then edge pixels repeated outside it
    let (x0, y0) = (left.max(0), top.max(0));
    let (x1, y1) = ((left + s).min(w as i64), (top + s).min(h as i64));
    let inner = read(x0 as u32, y0 as u32, (x1 - x0) as u32, (y1 - y0) as u32)?;
    if x1 - x0 == s && y1 - y0 == s {
        return Ok(inner);
    }
    let s = s as u32;
    Ok(RgbImage::from_fn(s, s, |px, py| {
        let sx = (left + px as i64).clamp(0, w as i64 - 1) - x0;
        let sy = (top + py as i64).clamp(0, h as i64 - 1) - y0;
        *inner.get_pixel(sx as u32, sy as u32)
    }))
}

fn limits() -> Limits {
    let mut l = Limits::default();
    l.max_image_width = Some(MAX_IMAGE_SIDE);
    l.max_image_height = Some(MAX_IMAGE_SIDE);
    l.max_alloc = Some(MAX_IMAGE_ALLOC);
    l
}

/// A JPEG needs an end-of-image marker (`FF D9`) after its last start-of-scan (`FF DA`); the
/// decoder otherwise fills a truncated file with grey without complaint. Entropy-coded data cannot
/// contain either marker (`FF` is stuffed), and bytes after the EOI are allowed.
fn check_jpeg_complete(bytes: &[u8]) -> std::result::Result<(), String> {
    let sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match sos {
        Some(i) if bytes[i + 2..].windows(2).any(|w| w == [0xFF, 0xD9]) => Ok(()),
        Some(_) => Err("truncated JPEG (no end-of-image marker after the last scan)".into()),
        None => Err("truncated JPEG (no image scan)".into()),
    }
}

/// Decodes an image held in memory (JPEG, PNG or TIFF, format from the content) into RGB 8-bit.
/// `name` is used in error messages (a path, or a file name in the browser).
pub fn decode_rgb(bytes: &[u8], name: &Path) -> Result<RgbImage> {
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| Error::io(name, e))?;
    let Some(format) = reader.format() else {
        return Err(Error::format(name, "not a recognised image (JPEG, PNG or TIFF expected)"));
    };
    if format == ImageFormat::Jpeg {
        check_jpeg_complete(bytes).map_err(|m| Error::format(name, m))?;
    }
    // the pixel budget from the header, before the decoder allocates (a small PNG can declare 30000²)
    let header = ImageReader::with_format(Cursor::new(bytes), format).into_dimensions();
    if let Ok((w, h)) = header {
        crate::error::limits::MAX_PIXELS.check(w as u64 * h as u64, format_args!("{}: a {w} × {h} image decoded whole", name.display()))?;
    }
    reader.limits(limits());
    // a decoder can panic on a crafted file (zune-jpeg overflowed on one found by fuzzing, with
    // overflow checks on): a format error, not a crash
    let img = bioedge_error::catch_panic(|| reader.decode())
        .map_err(|p| Error::format(name, format!("cannot decode {format:?} image (decoder panicked: {p})")))?
        .map_err(|e| Error::format(name, format!("cannot decode {format:?} image: {e}")))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(Error::format(name, "image has no pixels"));
    }
    Ok(img.into_rgb8())
}

/// Reads and decodes an image file into RGB 8-bit (grey and RGBA are converted; alpha dropped).
/// Corrupt or truncated files give an error naming the path.
pub fn load_rgb(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_rgb(&bytes, path)
}

/// Width and height of an image file, from its header only.
pub fn image_dimensions(path: impl AsRef<Path>) -> Result<(u32, u32)> {
    let path = path.as_ref();
    let mut reader = ImageReader::open(path).map_err(|e| Error::io(path, e))?.with_guessed_format().map_err(|e| Error::io(path, e))?;
    reader.limits(limits());
    reader.into_dimensions().map_err(|e| Error::format(path, format!("cannot read image header: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 128]))
    }

    #[test]
    fn spot_prep_tensor_shape_and_range() {
        let p = Preprocess::default();
        let img = gradient(300, 200);
        let t = p.spot(&img, 150.0, 100.0, 90.0).unwrap();
        assert_eq!(t.len(), 3 * 224 * 224);
        let lo = (0.0 - 0.485) / 0.229 - 1e-4;
        let hi = (1.0 - 0.406) / 0.225 + 1e-4;
        assert!(t.iter().all(|v| v.is_finite() && *v >= lo && *v <= hi));
        // Blue plane is constant 128.
        let b = (128.0 / 255.0 - 0.406) / 0.225;
        assert!(t[2 * 224 * 224..].iter().all(|v| (v - b).abs() < 1e-4));
    }

    #[test]
    fn spot_prep_normalize_values() {
        let p = Preprocess { size: 2, ..Preprocess::default() };
        let img = RgbImage::from_pixel(2, 2, Rgb([255, 0, 51]));
        let t = p.tensor(&img).unwrap();
        let r = (1.0 - 0.485) / 0.229;
        let g = (0.0 - 0.456) / 0.224;
        let b = (0.2 - 0.406) / 0.225;
        for i in 0..4 {
            assert!((t[i] - r).abs() < 1e-5);
            assert!((t[4 + i] - g).abs() < 1e-5);
            assert!((t[8 + i] - b).abs() < 1e-5);
        }
    }

    #[test]
    fn spot_prep_crop_inside_and_edge() {
        let img = gradient(100, 80);
        let c = crop_square(&img, 50.0, 40.0, 10.0).unwrap();
        assert_eq!(c.dimensions(), (10, 10));
        assert_eq!(c.get_pixel(0, 0).0, [45, 35, 128]);
        // Near the corner: edge pixels repeated.
        let c = crop_square(&img, 2.0, 3.0, 10.0).unwrap();
        assert_eq!(c.dimensions(), (10, 10));
        assert_eq!(c.get_pixel(0, 0).0, [0, 0, 128]);
        assert_eq!(c.get_pixel(9, 9).0, [6, 7, 128]);
        // Centre off the image: error.
        for (x, y) in [(-1.0, 10.0), (10.0, 80.0), (100.0, 5.0), (f32::NAN, 1.0)] {
            let e = crop_square(&img, x, y, 10.0).unwrap_err();
            assert!(matches!(e, Error::Input(_)), "{e}");
        }
        assert!(crop_square(&img, 5.0, 5.0, 0.0).is_err());
        assert!(crop_square(&img, 5.0, 5.0, 1e9).is_err());
    }

    #[test]
    fn spot_prep_card_round_trip() {
        let p = Preprocess::default();
        let c = p.to_card();
        assert_eq!(c.size, 224);
        assert_eq!(Preprocess::from_card(&c), p);
        let bad = Preprocess { std: [0.0, 1.0, 1.0], ..p };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn spot_prep_decode_png_and_garbage() {
        let img = gradient(20, 10);
        let mut buf = Vec::new();
        image::DynamicImage::ImageRgb8(img.clone()).write_to(&mut Cursor::new(&mut buf), ImageFormat::Png).unwrap();
        let back = decode_rgb(&buf, Path::new("x.png")).unwrap();
        assert_eq!(back, img);
        let e = decode_rgb(&buf[..buf.len() / 2], Path::new("half.png")).unwrap_err();
        assert!(e.to_string().contains("half.png"), "{e}");
        let e = decode_rgb(b"hello world", Path::new("text.jpg")).unwrap_err();
        assert!(e.to_string().contains("text.jpg"), "{e}");
        // JPEG: trailing bytes after the end marker are fine, a cut file is not.
        let mut jpg = Vec::new();
        image::DynamicImage::ImageRgb8(gradient(64, 48)).write_to(&mut Cursor::new(&mut jpg), ImageFormat::Jpeg).unwrap();
        let mut padded = jpg.clone();
        padded.extend_from_slice(b"trailing junk");
        assert_eq!(decode_rgb(&padded, Path::new("a.jpg")).unwrap().dimensions(), (64, 48));
        let e = decode_rgb(&jpg[..jpg.len() - 40], Path::new("cut.jpg")).unwrap_err();
        assert!(e.to_string().contains("cut.jpg"), "{e}");
    }
}

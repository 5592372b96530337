//! Tiled / pyramidal TIFF (and BigTIFF) reader for whole-slide images.
//!
//! Resolution levels are the images of the main IFD chain and of their SubIFD tags (OME-TIFF
//! style pyramids) that are 8-bit RGB (or RGBA, or YCbCr as JPEG tiles decode), chunky, with
//! the aspect ratio of the first one; largest first. A region decodes only the tiles or strips
//! it overlaps; a few decoded chunks are cached.
//!
//! The `tiff` crate decodes images of the main chain only, so each level gets its own decoder
//! over a view of the file whose header points at that level's IFD (`At`).

use crate::error::{Error, Result};
use crate::wsi::{BoxSum, SlideReader};
use image::RgbImage;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use tiff::decoder::{ChunkType, Decoder, DecodingResult, Limits};
use tiff::tags::Tag;
use tiff::{ColorType, TiffError};

/// Most bytes of decoded chunks kept in the cache.
const CACHE_BYTES: usize = 64 << 20;
/// Most IFDs looked at.
const MAX_IFDS: usize = 64;

/// How the decoded samples of a level map to RGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Samples {
    /// Plain RGB.
    Rgb,
    /// Alpha dropped.
    Rgba,
    /// JFIF YCbCr → RGB.
    YCbCr,
}

/// One resolution level.
#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// File offset of its IFD.
    pub ifd: u64,
    /// Listed in a SubIFD tag rather than the main chain.
    pub sub_ifd: bool,
    /// Stored in tiles (else in strips).
    pub tiled: bool,
    /// Tile size, or (image width, rows per strip).
    pub chunk_w: u32,
    /// Tile height, or rows per strip.
    pub chunk_h: u32,
    /// How its samples map to RGB.
    pub samples: Samples,
}

impl Level {
    fn across(&self) -> u32 {
        self.width.div_ceil(self.chunk_w)
    }
    fn chunks(&self) -> u32 {
        self.across() * self.height.div_ceil(self.chunk_h)
    }
    /// Top-left pixel of chunk `idx`.
    fn origin(&self, idx: u32) -> (u32, u32) {
        (idx % self.across() * self.chunk_w, idx / self.across() * self.chunk_h)
    }
}

struct Chunk {
    level: usize,
    index: u32,
    w: u32,
    h: u32,
    /// RGB8, `w × h`.
    rgb: Vec<u8>,
}

/// The file as a `tiff` decoder should see it: the header's first-IFD offset replaced, so the
/// decoder's first image is the IFD we want.
struct At {
    file: BufReader<File>,
    pos: u64,
    head: Vec<u8>,
}

impl Read for At {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            if let Some(&h) = self.head.get((self.pos as usize).saturating_add(i)) {
                *b = h;
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for At {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = self.file.seek(to)?;
        Ok(self.pos)
    }
}

type Dec = Decoder<At>;

/// An open TIFF: its levels, a decoder per level and a small cache of decoded chunks.
pub struct TiledTiff {
    path: PathBuf,
    levels: Vec<Level>,
    /// One per level.
    decs: Vec<Dec>,
    mpp: Option<(f64, f64)>,
    /// Most recently used last.
    cache: Vec<Chunk>,
}

/// Whether the file starts with a TIFF or BigTIFF header.
pub fn is_tiff(path: impl AsRef<Path>) -> bool {
    let mut head = [0u8; 4];
    let ok = File::open(path.as_ref()).and_then(|mut f| f.read_exact(&mut head)).is_ok();
    ok && matches!(&head, b"II*\0" | b"MM\0*" | b"II+\0" | b"MM\0+")
}

fn terr(path: &Path, e: TiffError) -> Error {
    match e {
        TiffError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::format(path, "TIFF: file is truncated (unexpected end of file)")
        }
        e => Error::format(path, format!("TIFF: {e}")),
    }
}

/// A decoder whose first image is the IFD at `ifd` (`None`: the file's own first IFD).
fn decoder(path: &Path, ifd: Option<u64>) -> Result<Dec> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = vec![0u8; 16];
    let n = f.read(&mut head).map_err(|e| Error::io(path, e))?;
    f.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
    head.truncate(n);
    if let Some(off) = ifd {
        let little = head.starts_with(b"II");
        match head.get(2..4) {
            Some([42, 0] | [0, 42]) if n >= 8 => {
                let off = u32::try_from(off).map_err(|_| Error::format(path, "TIFF: IFD offset beyond 4 GiB in a classic TIFF"))?;
                head[4..8].copy_from_slice(&if little { off.to_le_bytes() } else { off.to_be_bytes() });
                head.truncate(8);
            }
            Some([43, 0] | [0, 43]) if n >= 16 => head[8..16].copy_from_slice(&if little { off.to_le_bytes() } else { off.to_be_bytes() }),
            _ => return Err(Error::format(path, "TIFF: not a TIFF or BigTIFF header")),
        }
    } else {
        head.clear();
    }
    let mut limits = Limits::default();
    limits.ifd_value_size = 256 << 20; // tile offset arrays of large slides
    let at = At { file: BufReader::new(f), pos: 0, head };
    Ok(Decoder::new(at).map_err(|e| terr(path, e))?.with_limits(limits))
}

/// Microns per pixel of the decoder's first image: Aperio's `MPP = ` in the ImageDescription,
/// else XResolution / YResolution in pixels per inch or cm; `None` if absent or implausible.
fn resolution(dec: &mut Dec) -> Option<(f64, f64)> {
    use tiff::decoder::ifd::Value;
    if let Ok(Some(d)) = dec.find_tag(Tag::ImageDescription).map(|v| v.and_then(|v| v.into_string().ok()))
        && let Some(v) = d.split('|').find_map(|f| f.trim().strip_prefix("MPP = ")).and_then(|v| v.trim().parse::<f64>().ok())
    {
        return crate::wsi::plausible_mpp(v, v);
    }
    let per_unit = |v: Value| match v {
        Value::Rational(n, d) if d > 0 => Some(n as f64 / d as f64),
        Value::Float(f) => Some(f as f64),
        Value::Double(f) => Some(f),
        _ => None,
    };
    let x = per_unit(dec.find_tag(Tag::XResolution).ok()??)?;
    let y = per_unit(dec.find_tag(Tag::YResolution).ok()??)?;
    let um = match dec.find_tag_unsigned::<u16>(Tag::ResolutionUnit).ok()?.unwrap_or(2) {
        2 => 25_400.0,
        3 => 10_000.0,
        _ => return None,
    };
    crate::wsi::plausible_mpp(um / x, um / y)
}

/// Why the decoder's current image cannot be a level, or its sample layout.
fn describe(dec: &mut Dec) -> std::result::Result<Samples, String> {
    let planar = dec.find_tag_unsigned::<u16>(Tag::PlanarConfiguration).map_err(|e| e.to_string())?;
    if planar == Some(2) {
        return Err("planar configuration 2 (separate colour planes) is not supported; only chunky RGB".into());
    }
    let format = dec.find_tag_unsigned::<u16>(Tag::SampleFormat).map_err(|e| e.to_string())?;
    if format.is_some_and(|f| f != 1) {
        return Err("samples are not unsigned integers; only 8-bit RGB is supported".into());
    }
    match dec.colortype().map_err(|e| e.to_string())? {
        ColorType::RGB(8) => Ok(Samples::Rgb),
        ColorType::RGBA(8) => Ok(Samples::Rgba),
        ColorType::YCbCr(8) => Ok(Samples::YCbCr),
        ColorType::RGB(b) | ColorType::RGBA(b) | ColorType::YCbCr(b) => Err(format!("{b}-bit samples are not supported; only 8-bit RGB")),
        ColorType::Palette(_) => Err("palette colour is not supported; only 8-bit RGB".into()),
        c => Err(format!("colour type {c:?} is not supported; only 8-bit RGB")),
    }
}

impl TiledTiff {
    /// Lists the levels. A first image this reader cannot take is [`Error::Unsupported`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        // IFD offsets: the main chain, each image followed by its SubIFDs.
        let mut dec = decoder(&path, None)?;
        let mpp = resolution(&mut dec);
        let mut ifds: Vec<(u64, bool)> = Vec::new();
        for i in 0..MAX_IFDS {
            if i > 0 {
                if !dec.more_images() {
                    break;
                }
                dec.next_image().map_err(|e| terr(&path, e))?;
            }
            let here = dec.ifd_pointer().ok_or_else(|| Error::format(&path, "TIFF: no IFD"))?;
            ifds.push((here.0, false));
            if let Some(v) = dec.find_tag(Tag::SubIfd).map_err(|e| terr(&path, e))? {
                let subs = v.into_ifd_vec().map_err(|e| terr(&path, e))?;
                ifds.extend(subs.into_iter().map(|p| (p.0, true)));
            }
        }
        ifds.truncate(MAX_IFDS);
        // The walking decoder goes back to image 0 and serves as its level; the others get their own.
        dec.seek_to_image(0).map_err(|e| terr(&path, e))?;
        let mut first = Some(dec);
        let mut found: Vec<(Level, Dec)> = Vec::new();
        for (k, &(ifd, sub_ifd)) in ifds.iter().enumerate() {
            let mut dec = match first.take() {
                Some(d) => d,
                None => decoder(&path, Some(ifd))?,
            };
            let (width, height) = dec.dimensions().map_err(|e| terr(&path, e))?;
            match describe(&mut dec) {
                Ok(samples) => {
                    let tiled = dec.get_chunk_type() == ChunkType::Tile;
                    let (chunk_w, chunk_h) = dec.chunk_dimensions();
                    if width == 0 || height == 0 || chunk_w == 0 || chunk_h == 0 {
                        return Err(Error::format(&path, format!("TIFF image at offset {ifd} has an empty size or chunk size")));
                    }
                    let (chunk_w, chunk_h) = if tiled { (chunk_w, chunk_h) } else { (width, chunk_h.min(height)) };
                    found.push((Level { width, height, ifd, sub_ifd, tiled, chunk_w, chunk_h, samples }, dec));
                }
                Err(msg) if k == 0 => return Err(Error::Unsupported(format!("{}: TIFF ({width}×{height}): {msg}", path.display()))),
                Err(_) => {} // label, macro, masks...
            }
        }
        // Pyramid levels: same aspect ratio as level 0, strictly narrower, largest first.
        let (w0, h0) = (found[0].0.width as f64, found[0].0.height as f64);
        found.retain(|(l, _)| ((l.width as f64 / l.height as f64) / (w0 / h0) - 1.0).abs() < 0.02);
        found.sort_by_key(|(l, _)| std::cmp::Reverse(l.width));
        found.dedup_by(|b, a| b.0.width == a.0.width);
        let (levels, decs) = found.into_iter().unzip();
        Ok(TiledTiff { path, levels, decs, mpp, cache: Vec::new() })
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Levels, largest (level 0) first.
    pub fn levels(&self) -> &[Level] {
        &self.levels
    }

    /// Level 0 size.
    pub fn dimensions(&self) -> (u32, u32) {
        (self.levels[0].width, self.levels[0].height)
    }

    /// Tiled, or more than one level: worth reading region by region.
    pub fn is_pyramid_or_tiled(&self) -> bool {
        self.levels.len() > 1 || self.levels[0].tiled
    }

    /// Decodes chunk `idx` of `level` as RGB8: `(width, height, bytes)`.
    fn load(&mut self, level: usize, idx: u32) -> Result<(u32, u32, Vec<u8>)> {
        let l = self.levels[level].clone();
        let dec = &mut self.decs[level];
        let (w, h) = dec.chunk_data_dimensions(idx);
        // the tile codecs (JPEG in TIFF) can panic on crafted data: a format error
        let chunk = bioedge_error::catch_panic(|| dec.read_chunk(idx))
            .map_err(|p| Error::format(&self.path, format!("TIFF: tile {idx} failed to decode (decoder panicked: {p})")))?;
        let data = match chunk.map_err(|e| terr(&self.path, e))? {
            DecodingResult::U8(v) => v,
            _ => return Err(Error::format(&self.path, "TIFF: chunk did not decode to 8-bit samples")),
        };
        let n = w as usize * h as usize;
        let per = if l.samples == Samples::Rgba { 4 } else { 3 };
        if data.len() < n * per {
            return Err(Error::format(
                &self.path,
                format!("TIFF: chunk {idx} of the IFD at offset {} decoded to {} bytes, expected {}", l.ifd, data.len(), n * per),
            ));
        }
        let rgb = match l.samples {
            Samples::Rgb => {
                let mut d = data;
                d.truncate(n * 3);
                d
            }
            Samples::Rgba => data.chunks_exact(4).take(n).flat_map(|p| [p[0], p[1], p[2]]).collect(),
            Samples::YCbCr => data.chunks_exact(3).take(n).flat_map(|p| ycbcr_to_rgb(p[0], p[1], p[2])).collect(),
        };
        Ok((w, h, rgb))
    }

    /// Position in the cache of chunk `idx` of `level`, decoding it on a miss.
    fn chunk(&mut self, level: usize, idx: u32) -> Result<usize> {
        if let Some(p) = self.cache.iter().position(|c| c.level == level && c.index == idx) {
            let c = self.cache.remove(p);
            self.cache.push(c);
            return Ok(self.cache.len() - 1);
        }
        let (w, h, rgb) = self.load(level, idx)?;
        let l = &self.levels[level];
        // Two rows of chunks across (patches walk the grid row by row), within CACHE_BYTES.
        let bytes = (l.chunk_w as usize * l.chunk_h as usize * 3).max(1);
        let want = (2 * l.across() as usize + 4).max(2 * 512usize.div_ceil(l.chunk_h as usize) + 4);
        let cap = want.min(CACHE_BYTES / bytes).max(1);
        self.cache.retain(|c| c.level == level);
        while self.cache.len() >= cap {
            self.cache.remove(0);
        }
        self.cache.push(Chunk { level, index: idx, w, h, rgb });
        Ok(self.cache.len() - 1)
    }

    /// The `w × h` region at `(x, y)` of `level` (it must lie inside the level).
    pub fn read_region(&mut self, level: usize, x: u32, y: u32, w: u32, h: u32) -> Result<RgbImage> {
        let l = self
            .levels
            .get(level)
            .cloned()
            .ok_or_else(|| Error::Input(format!("{}: no level {level} ({} levels)", self.path.display(), self.levels.len())))?;
        if w == 0 || h == 0 || x as u64 + w as u64 > l.width as u64 || y as u64 + h as u64 > l.height as u64 {
            return Err(Error::Input(format!(
                "{}: region {w}×{h} at ({x}, {y}) is not inside level {level} ({}×{})",
                self.path.display(),
                l.width,
                l.height
            )));
        }
        let mut out = RgbImage::new(w, h);
        let buf: &mut [u8] = &mut out;
        let across = l.across();
        for ty in y / l.chunk_h..=(y + h - 1) / l.chunk_h {
            for tx in x / l.chunk_w..=(x + w - 1) / l.chunk_w {
                let idx = ty * across + tx;
                let p = self.chunk(level, idx)?;
                let c = &self.cache[p];
                let (ox, oy) = l.origin(idx);
                let (x0, x1) = (x.max(ox), (x + w).min(ox + c.w));
                let (y0, y1) = (y.max(oy), (y + h).min(oy + c.h));
                if x0 >= x1 {
                    continue;
                }
                let n = (x1 - x0) as usize * 3;
                for yy in y0..y1 {
                    let src = ((yy - oy) as usize * c.w as usize + (x0 - ox) as usize) * 3;
                    let dst = ((yy - y) as usize * w as usize + (x0 - x) as usize) * 3;
                    buf[dst..dst + n].copy_from_slice(&c.rgb[src..src + n]);
                }
            }
        }
        Ok(out)
    }

    /// [`SlideReader::downscale_level`], chunk by chunk (each decoded once, no cache).
    pub fn downscale_level(&mut self, level: usize, max_side: u32) -> Result<(RgbImage, u32)> {
        let l = self.levels[level].clone();
        let mut sum = BoxSum::new(l.width, l.height, max_side);
        for idx in 0..l.chunks() {
            let (w, h, rgb) = self.load(level, idx)?;
            let (ox, oy) = l.origin(idx);
            sum.add(ox, oy, w, h, &rgb);
        }
        Ok(sum.finish())
    }
}

impl SlideReader for TiledTiff {
    fn path(&self) -> &Path {
        &self.path
    }
    fn kind(&self) -> String {
        let sub = self.levels.iter().filter(|l| l.sub_ifd).count();
        if sub > 0 { format!("tiled TIFF ({sub} SubIFD levels)") } else { "tiled TIFF".into() }
    }
    fn level_sizes(&self) -> Vec<(u32, u32)> {
        self.levels.iter().map(|l| (l.width, l.height)).collect()
    }
    fn mpp(&self) -> Option<(f64, f64)> {
        self.mpp
    }
    fn read_region(&mut self, level: usize, x: u32, y: u32, w: u32, h: u32) -> Result<RgbImage> {
        TiledTiff::read_region(self, level, x, y, w, h)
    }
    fn downscale_level(&mut self, level: usize, max_side: u32) -> Result<(RgbImage, u32)> {
        TiledTiff::downscale_level(self, level, max_side)
    }
}

/// JFIF YCbCr → RGB.
fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let (y, cb, cr) = (y as f32, cb as f32 - 128.0, cr as f32 - 128.0);
    let c = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    [c(y + 1.402 * cr), c(y - 0.344136 * cb - 0.714136 * cr), c(y + 1.772 * cb)]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pipeline::downscale;
    use image::Rgb;
    use std::io::Write;
    use tiff::encoder::{TiffEncoder, colortype};

    fn pattern(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| Rgb([(x * 7 + y) as u8, ((y * 5) ^ x) as u8, (x * y / 3) as u8]))
    }

    /// Writes `levels` as tiled RGB images (Deflate tiles, edge tiles padded) in one TIFF.
    pub(crate) fn write_tiled(path: &Path, levels: &[&RgbImage], tile: u32) {
        let file = std::fs::File::create(path).unwrap();
        let mut enc = TiffEncoder::new(std::io::BufWriter::new(file)).unwrap();
        for img in levels {
            let (w, h) = img.dimensions();
            let mut dir = enc.image_directory().unwrap();
            let (mut offsets, mut counts) = (Vec::new(), Vec::new());
            for ty in 0..h.div_ceil(tile) {
                for tx in 0..w.div_ceil(tile) {
                    let mut raw = vec![0u8; (tile * tile * 3) as usize];
                    for y in 0..tile.min(h - ty * tile) {
                        for x in 0..tile.min(w - tx * tile) {
                            let p = img.get_pixel(tx * tile + x, ty * tile + y).0;
                            raw[((y * tile + x) * 3) as usize..][..3].copy_from_slice(&p);
                        }
                    }
                    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
                    z.write_all(&raw).unwrap();
                    let z = z.finish().unwrap();
                    offsets.push(dir.write_data(z.as_slice()).unwrap() as u32);
                    counts.push(z.len() as u32);
                }
            }
            dir.write_tag(Tag::ImageWidth, w).unwrap();
            dir.write_tag(Tag::ImageLength, h).unwrap();
            dir.write_tag(Tag::BitsPerSample, &[8u16, 8, 8][..]).unwrap();
            dir.write_tag(Tag::Compression, 8u16).unwrap();
            dir.write_tag(Tag::PhotometricInterpretation, 2u16).unwrap();
            dir.write_tag(Tag::SamplesPerPixel, 3u16).unwrap();
            dir.write_tag(Tag::PlanarConfiguration, 1u16).unwrap();
            dir.write_tag(Tag::TileWidth, tile).unwrap();
            dir.write_tag(Tag::TileLength, tile).unwrap();
            dir.write_tag(Tag::TileOffsets, offsets.as_slice()).unwrap();
            dir.write_tag(Tag::TileByteCounts, counts.as_slice()).unwrap();
            dir.finish().unwrap();
        }
    }

    #[test]
    fn tiled_read_region_matches_full_image() {
        let dir = tempfile::tempdir().unwrap();
        let (big, small) = (pattern(300, 200), pattern(75, 50));
        let path = dir.path().join("p.tif");
        write_tiled(&path, &[&big, &small], 64);
        assert!(is_tiff(&path));
        let mut t = TiledTiff::open(&path).unwrap();
        assert_eq!(t.levels().len(), 2);
        assert_eq!((t.levels()[1].width, t.levels()[1].height, t.levels()[1].tiled), (75, 50, true));
        assert!(t.is_pyramid_or_tiled());
        for (x, y, w, h) in [(0, 0, 300, 200), (10, 20, 100, 90), (250, 150, 50, 50), (63, 63, 2, 2), (299, 199, 1, 1)] {
            let r = t.read_region(0, x, y, w, h).unwrap();
            assert_eq!(r, image::imageops::crop_imm(&big, x, y, w, h).to_image(), "region {x},{y} {w}×{h}");
        }
        assert_eq!(t.read_region(1, 0, 0, 75, 50).unwrap(), small);
        assert!(t.read_region(0, 250, 150, 51, 50).is_err());
        for side in [1000, 100, 37] {
            assert_eq!(t.downscale_level(0, side).unwrap(), downscale(&big, side), "side {side}");
        }
        // The image crate decodes the same file to the same level 0.
        assert_eq!(crate::image_prep::load_rgb(&path).unwrap(), big);
    }

    #[test]
    fn tiled_grid_from_low_level_matches_full_image() {
        // Dark blob [400, 1600) × [200, 1000) on white; level 1 is half size, so the mask is
        // built from it (long side 1200 >= MASK_SIDE) instead of level 0.
        use crate::pipeline::{MASK_SIDE, grid_spots, grid_spots_slide};
        let big = RgbImage::from_fn(2400, 1200, |x, y| {
            if (400..1600).contains(&x) && (200..1000).contains(&y) { Rgb([120, 60, 140]) } else { Rgb([240, 238, 242]) }
        });
        let (half, f) = downscale(&big, 1200);
        assert_eq!((half.width(), f), (1200, 2));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob.tif");
        write_tiled(&path, &[&big, &half], 256);
        let mut t = TiledTiff::open(&path).unwrap();
        assert!(t.levels()[1].width >= MASK_SIDE);
        let a = grid_spots_slide(&mut t, 200.0).unwrap();
        assert_eq!(a.len(), 24, "{a:?}");
        assert_eq!(a, grid_spots(&big, 200.0));
    }

    #[test]
    fn tiled_truncated_and_unsupported_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.tif");
        write_tiled(&path, &[&pattern(300, 200)], 64);
        // Tiles first, IFD at the end: cutting the file loses the IFD or the tiles.
        let bytes = std::fs::read(&path).unwrap();
        let cut = dir.path().join("cut.tif");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let e = TiledTiff::open(&cut).and_then(|mut t| t.read_region(0, 0, 0, 300, 200)).expect_err("truncated file read");
        let msg = e.to_string();
        assert!(msg.contains("cut.tif") && msg.contains("TIFF"), "{msg}");
        // A 16-bit grey TIFF.
        let grey = dir.path().join("grey.tif");
        let mut enc = TiffEncoder::new(std::fs::File::create(&grey).unwrap()).unwrap();
        enc.write_image::<colortype::Gray16>(4, 4, &[0u16; 16]).unwrap();
        let e = TiledTiff::open(&grey).err().unwrap();
        assert!(matches!(e, Error::Unsupported(_)), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("grey.tif") && msg.contains("only 8-bit RGB"), "{msg}");
        assert!(!is_tiff(dir.path().join("missing.tif")));
    }
}

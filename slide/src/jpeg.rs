//! JPEG decoding on several threads, for JPEGs whose scan has restart markers at the start of
//! MCU rows (scanners and slide tools often write one restart interval per MCU row).
//!
//! Each restart interval is entropy-coded on its own (the DC predictions reset), so a band of MCU
//! rows is a JPEG by itself: the original headers with the band's height, the band's intervals
//! (restart markers renumbered from 0) and an end marker. Bands are decoded by the same decoder
//! as [`crate::image_prep::decode_rgb`], each straight into its rows of the image. Chroma
//! upsampling looks one row beyond an MCU row, which a band does not have at its ends, so the two
//! MCU rows at each cut between bands are decoded once more from a small band around them: the
//! pixels are the whole-image decode's, byte for byte (tested on HER2ST C2).
//!
//! Anything else (no restart markers, progressive or arithmetic coding, several scans, a file
//! that does not parse, a band that fails) goes to [`crate::image_prep::decode_rgb`], which also
//! gives the errors for corrupt or truncated files.

use crate::error::Result;
use crate::image_prep::{MAX_IMAGE_ALLOC, MAX_IMAGE_SIDE, decode_rgb};
use image::{ImageDecoder, RgbImage};
use std::ops::Range;
use std::path::Path;
use std::sync::Mutex;

/// Bands per thread (uneven bands even out).
const BANDS_PER_THREAD: usize = 2;
/// Fewest MCU rows per band (each cut between bands decodes about four MCU rows again).
const MIN_BAND_ROWS: usize = 16;

/// Reads and decodes an image file into RGB 8-bit like [`crate::image_prep::load_rgb`]; JPEGs
/// with restart markers at MCU rows decode on up to `threads` threads.
pub fn load_rgb_threads(path: impl AsRef<Path>, threads: usize) -> Result<RgbImage> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| crate::Error::io(path, e))?;
    decode_rgb_threads(&bytes, path, threads)
}

/// [`crate::image_prep::decode_rgb`] on up to `threads` threads where the file allows it (same pixels).
pub fn decode_rgb_threads(bytes: &[u8], name: &Path, threads: usize) -> Result<RgbImage> {
    if threads > 1
        && let Some(layout) = Layout::parse(bytes)
        && let Some(img) = layout.decode(bytes, threads)
    {
        return Ok(img);
    }
    decode_rgb(bytes, name)
}

/// What a single-scan sequential JPEG with restart markers looks like.
#[derive(Debug)]
struct Layout {
    width: u32,
    height: u32,
    /// Offset of the SOF's height field.
    sof_height: usize,
    /// End of the SOS header: where the entropy-coded data starts.
    scan: usize,
    /// Each restart interval's entropy-coded bytes (restart markers excluded).
    intervals: Vec<Range<usize>>,
    /// MCUs per restart interval.
    restart: usize,
    /// MCUs across, MCU rows, MCU height in pixels.
    mcus_x: usize,
    mcu_rows: usize,
    mcu_h: usize,
}

fn be16(b: &[u8], i: usize) -> Option<usize> {
    Some(((*b.get(i)? as usize) << 8) | *b.get(i + 1)? as usize)
}

impl Layout {
    /// The layout, or `None` when the file is not one this decoder splits.
    fn parse(b: &[u8]) -> Option<Layout> {
        if b.get(..2)? != [0xFF, 0xD8] {
            return None;
        }
        let (mut i, mut restart, mut sof) = (2usize, 0usize, None);
        // (width, height, offset of height, sampling factors)
        let scan = loop {
            if *b.get(i)? != 0xFF {
                return None;
            }
            let m = *b.get(i + 1)?;
            if m == 0xFF {
                i += 1; // fill byte
                continue;
            }
            let len = be16(b, i + 2)?;
            let seg = b.get(i + 4..i + 2 + len)?;
            match m {
                // baseline / extended sequential, Huffman coded, 8-bit, three components (YCbCr)
                0xC0 | 0xC1 => {
                    let nf = *seg.get(5)? as usize;
                    if seg[0] != 8 || nf != 3 || seg.len() < 6 + 3 * nf {
                        return None;
                    }
                    let factors: Vec<(usize, usize)> =
                        (0..nf).map(|c| ((seg[7 + 3 * c] >> 4) as usize, (seg[7 + 3 * c] & 15) as usize)).collect();
                    sof = Some((be16(seg, 3)?, be16(seg, 1)?, i + 5, factors));
                }
                // other frame types: progressive, lossless, arithmetic coding
                0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return None,
                0xDD => restart = be16(seg, 0)?,
                0xDA => {
                    let (_, _, _, f) = sof.as_ref()?;
                    if *seg.first()? as usize != f.len() {
                        return None; // one component per scan: several scans
                    }
                    break i + 2 + len;
                }
                0xD9 | 0xD0..=0xD7 | 0x01 => return None,
                _ => {}
            }
            i += 2 + len;
        };
        let (width, height, sof_height, factors) = sof?;
        if restart == 0 || width == 0 || height == 0 || factors.iter().any(|&(h, v)| !(1..=4).contains(&h) || !(1..=4).contains(&v)) {
            return None;
        }
        let (mcu_w, mcu_h) = (8 * factors.iter().map(|f| f.0).max()?, 8 * factors.iter().map(|f| f.1).max()?);
        let (mcus_x, mcu_rows) = (width.div_ceil(mcu_w), height.div_ceil(mcu_h));
        // the entropy-coded data: restart markers split it; the end-of-image marker ends it
        let mut intervals = Vec::new();
        let (mut start, mut j) = (scan, scan);
        loop {
            j += b.get(j..)?.iter().position(|&v| v == 0xFF)?;
            match *b.get(j + 1)? {
                0x00 => j += 2,
                0xFF => j += 1,
                0xD0..=0xD7 => {
                    intervals.push(start..j);
                    start = j + 2;
                    j = start;
                }
                0xD9 => {
                    intervals.push(start..j);
                    break;
                }
                _ => return None, // another scan, DNL, or garbage
            }
        }
        if intervals.len() != (mcus_x * mcu_rows).div_ceil(restart) {
            return None;
        }
        Some(Layout { width: width as u32, height: height as u32, sof_height, scan, intervals, restart, mcus_x, mcu_rows, mcu_h })
    }

    /// Whether a restart interval starts at MCU row `r` (or `r` is the end).
    fn boundary(&self, r: usize) -> bool {
        r == 0 || r >= self.mcu_rows || (r * self.mcus_x).is_multiple_of(self.restart)
    }

    /// Where the bands start: MCU rows at interval starts about `n / count` apart, at least 2
    /// apart, with 0 first and the row count last.
    fn cuts(&self, count: usize) -> Vec<usize> {
        let n = self.mcu_rows;
        let mut cuts = vec![0];
        for k in 1..count {
            let last = *cuts.last().unwrap_or(&0);
            if let Some(r) = (k * n / count..n).find(|&r| self.boundary(r))
                && r >= last + 2
                && r + 2 <= n
            {
                cuts.push(r);
            }
        }
        cuts.push(n);
        cuts
    }

    /// The nearest interval starts at or below `r` and at or above `r` (clamped to the image).
    fn around(&self, below: usize, above: usize) -> Range<usize> {
        let lo = (0..=below).rev().find(|&r| self.boundary(r)).unwrap_or(0);
        let hi = (above.min(self.mcu_rows)..=self.mcu_rows).find(|&r| self.boundary(r)).unwrap_or(self.mcu_rows);
        lo..hi
    }

    /// A JPEG of MCU rows `rows` (both ends at interval starts or the image end).
    fn band_file(&self, b: &[u8], rows: &Range<usize>) -> Vec<u8> {
        let first = rows.start * self.mcus_x / self.restart;
        let last = if rows.end >= self.mcu_rows { self.intervals.len() } else { rows.end * self.mcus_x / self.restart };
        let h = (rows.end * self.mcu_h).min(self.height as usize) - rows.start * self.mcu_h;
        let mut out = Vec::with_capacity(self.scan + 2 + self.intervals[first..last].iter().map(|r| r.len() + 2).sum::<usize>());
        out.extend_from_slice(&b[..self.scan]);
        out[self.sof_height] = (h >> 8) as u8;
        out[self.sof_height + 1] = h as u8;
        for (k, r) in self.intervals[first..last].iter().enumerate() {
            if k > 0 {
                out.extend_from_slice(&[0xFF, 0xD0 + ((k - 1) % 8) as u8]);
            }
            out.extend_from_slice(&b[r.clone()]);
        }
        out.extend_from_slice(&[0xFF, 0xD9]);
        out
    }

    /// MCU rows `rows` decoded into `out` (RGB rows of the image's width, exactly `out.len()`
    /// bytes); `None` if they do not decode so.
    fn decode_band(&self, b: &[u8], rows: &Range<usize>, out: &mut [u8]) -> Option<()> {
        let file = self.band_file(b, rows);
        let dec = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(&file)).ok()?;
        if dec.color_type() != image::ColorType::Rgb8 || dec.dimensions().0 != self.width || dec.total_bytes() != out.len() as u64 {
            return None;
        }
        bioedge_error::catch_panic(|| dec.read_image(out)).ok()?.ok()
    }

    /// Pixel rows of MCU rows `0..r`.
    fn px(&self, r: usize) -> usize {
        (r * self.mcu_h).min(self.height as usize)
    }

    /// The image decoded band by band on `threads` threads; `None` when it is too large for the
    /// limits, too small to split, or a band fails (the caller decodes it whole instead).
    ///
    /// Bands decode straight into the image. A band's first and last MCU rows lack the rows
    /// beyond them for chroma upsampling, so the two MCU rows at each cut are then decoded again
    /// from a band reaching two MCU rows past them and copied over.
    fn decode(&self, b: &[u8], threads: usize) -> Option<RgbImage> {
        let (w, h) = (self.width, self.height);
        let px = w as u64 * h as u64;
        if w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE || px * 3 > MAX_IMAGE_ALLOC || px > crate::error::limits::MAX_PIXELS.get() {
            return None;
        }
        let cuts = self.cuts((threads * BANDS_PER_THREAD).min(self.mcu_rows / MIN_BAND_ROWS));
        if cuts.len() < 3 {
            return None;
        }
        let row_bytes = w as usize * 3;
        let mut buf = vec![0u8; px as usize * 3];
        // the bands, each into its rows of the image
        let mut bands = Vec::new();
        let mut rest = buf.as_mut_slice();
        for c in cuts.windows(2) {
            let (part, tail) = rest.split_at_mut((self.px(c[1]) - self.px(c[0])) * row_bytes);
            rest = tail;
            bands.push((c[0]..c[1], part));
        }
        if !on_threads(threads, bands, |(rows, part), _| self.decode_band(b, &rows, part)) {
            return None;
        }
        // the two MCU rows at each cut, from a band around them
        let mut seams = Vec::new();
        let (mut rest, mut at) = (buf.as_mut_slice(), 0);
        for &r in &cuts[1..cuts.len() - 1] {
            let (y0, y1) = (self.px(r - 1), self.px(r + 1));
            let (_, tail) = std::mem::take(&mut rest).split_at_mut((y0 - at) * row_bytes);
            let (part, tail) = tail.split_at_mut((y1 - y0) * row_bytes);
            (rest, at) = (tail, y1);
            seams.push((self.around(r.saturating_sub(2), r + 2), r - 1, part));
        }
        let fixed = on_threads(threads, seams, |(rows, first, part), scratch: &mut Vec<u8>| {
            scratch.resize((self.px(rows.end) - self.px(rows.start)) * row_bytes, 0);
            self.decode_band(b, &rows, scratch)?;
            let skip = (self.px(first) - self.px(rows.start)) * row_bytes;
            part.copy_from_slice(scratch.get(skip..skip + part.len())?);
            Some(())
        });
        if !fixed {
            return None;
        }
        RgbImage::from_raw(w, h, buf)
    }
}

/// Runs `f` on every item on `threads` threads, each with its own scratch buffer; false as soon
/// as one returns `None`.
fn on_threads<T: Send>(threads: usize, items: Vec<T>, f: impl Fn(T, &mut Vec<u8>) -> Option<()> + Sync) -> bool {
    let items = Mutex::new(items);
    let failed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut scratch = Vec::new();
                while !failed.load(std::sync::atomic::Ordering::Relaxed) {
                    let Some(item) = items.lock().ok().and_then(|mut v| v.pop()) else { break };
                    if f(item, &mut scratch).is_none() {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    !failed.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::ImageFormat;
    use std::io::Cursor;

    fn c2() -> Option<Vec<u8>> {
        let data = std::env::var("BIOEDGE_DATA")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
        std::fs::read(data.join("her2st/C2/5714_HE_BT_C2.jpg")).ok()
    }

    #[test]
    fn jpeg_bands_decode_like_the_whole_image() {
        let Some(bytes) = c2() else {
            eprintln!("HER2ST C2 JPEG not found (BIOEDGE_DATA); skipped");
            return;
        };
        let l = Layout::parse(&bytes).expect("C2 has one restart interval per MCU row");
        assert_eq!((l.width, l.height, l.mcu_h, l.mcus_x, l.restart), (9274, 9911, 16, 580, 580));
        let whole = decode_rgb(&bytes, Path::new("C2.jpg")).unwrap();
        for threads in [2, 3] {
            assert!(l.decode(&bytes, threads).unwrap() == whole, "{threads} threads");
        }
        // a cut file: not split, and the whole-image decoder's error
        let cut = &bytes[..bytes.len() / 2];
        assert!(Layout::parse(cut).is_none());
        let e = decode_rgb_threads(cut, Path::new("cut.jpg"), 4).unwrap_err().to_string();
        assert!(e.contains("cut.jpg"), "{e}");
    }

    #[test]
    fn jpeg_without_restart_markers_decodes_whole() {
        let img = RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
        let mut jpg = Vec::new();
        image::DynamicImage::ImageRgb8(img).write_to(&mut Cursor::new(&mut jpg), ImageFormat::Jpeg).unwrap();
        assert!(Layout::parse(&jpg).is_none());
        let got = decode_rgb_threads(&jpg, Path::new("a.jpg"), 4).unwrap();
        assert_eq!(got, decode_rgb(&jpg, Path::new("a.jpg")).unwrap());
    }

    #[test]
    fn jpeg_cuts_sit_on_interval_starts() {
        let l = Layout {
            width: 100,
            height: 100,
            sof_height: 0,
            scan: 0,
            intervals: Vec::new(),
            restart: 6, // two MCU rows of 3
            mcus_x: 3,
            mcu_rows: 13,
            mcu_h: 8,
        };
        for count in 1..8 {
            let cuts = l.cuts(count);
            assert_eq!((cuts[0], cuts[cuts.len() - 1]), (0, 13), "{cuts:?}");
            for c in cuts.windows(2) {
                assert!(c[1] >= c[0] + 2 && l.boundary(c[0]), "{cuts:?}");
            }
            for &r in &cuts[1..cuts.len() - 1] {
                let a = l.around(r - 2, r + 2);
                assert!(l.boundary(a.start) && l.boundary(a.end) && a.start + 2 <= r && a.end >= r + 2, "{a:?} around {r}");
            }
        }
        assert_eq!(l.cuts(3), [0, 4, 8, 13]);
    }
}

//! Vendor whole-slide formats (Aperio SVS, Hamamatsu NDPI/VMS, MIRAX, Leica SCN, Ventana BIF,
//! Philips, generic tiled TIFF) through the OpenSlide C library (feature `openslide`, links
//! `libopenslide`; Debian: `libopenslide-dev`).

use crate::error::{Error, Result};
use crate::wsi::SlideReader;
use image::RgbImage;
use std::ffi::{CStr, CString, c_char};
use std::path::{Path, PathBuf};

#[allow(non_camel_case_types)]
mod ffi {
    use std::ffi::c_char;

    #[repr(C)]
    pub struct openslide_t {
        _private: [u8; 0],
    }

    #[link(name = "openslide")]
    unsafe extern "C" {
        pub fn openslide_detect_vendor(filename: *const c_char) -> *const c_char;
        pub fn openslide_open(filename: *const c_char) -> *mut openslide_t;
        pub fn openslide_get_error(osr: *mut openslide_t) -> *const c_char;
        pub fn openslide_get_level_count(osr: *mut openslide_t) -> i32;
        pub fn openslide_get_level_dimensions(osr: *mut openslide_t, level: i32, w: *mut i64, h: *mut i64);
        pub fn openslide_get_level_downsample(osr: *mut openslide_t, level: i32) -> f64;
        pub fn openslide_get_property_value(osr: *mut openslide_t, name: *const c_char) -> *const c_char;
        pub fn openslide_read_region(osr: *mut openslide_t, dest: *mut u32, x: i64, y: i64, level: i32, w: i64, h: i64);
        pub fn openslide_close(osr: *mut openslide_t);
    }
}

/// Most pixels read by one `openslide_read_region` call.
const MAX_REGION_PX: u64 = 64 << 20;

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Error::Input(format!("{}: path contains a NUL byte", path.display())))
}

/// # Safety
/// `p` is null or a NUL-terminated string that outlives the call.
unsafe fn owned(p: *const c_char) -> Option<String> {
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// The vendor OpenSlide recognizes the file as (`aperio`, `hamamatsu`, `mirax`,
/// `generic-tiff`, ...), or `None`.
pub fn vendor(path: &Path) -> Option<String> {
    let c = c_path(path).ok()?;
    // SAFETY: `c` is a valid C string; the result is a static string or null.
    unsafe { owned(ffi::openslide_detect_vendor(c.as_ptr())) }
}

/// An open slide. OpenSlide handles are thread-safe.
pub struct OpenSlide {
    path: PathBuf,
    osr: *mut ffi::openslide_t,
    vendor: String,
    levels: Vec<(u32, u32)>,
    downsample: Vec<f64>,
}

// SAFETY: OpenSlide documents its handles as safe to use from several threads.
unsafe impl Send for OpenSlide {}

impl OpenSlide {
    /// Opens `path` with OpenSlide; fails if it is not a slide OpenSlide recognizes.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if !path.is_file() {
            let e = std::fs::metadata(&path).err().unwrap_or_else(|| std::io::Error::other("not a file"));
            return Err(Error::io(&path, e));
        }
        let c = c_path(&path)?;
        // SAFETY: valid C string; a null result means "not recognized".
        let osr = unsafe { ffi::openslide_open(c.as_ptr()) };
        if osr.is_null() {
            return Err(Error::format(&path, "OpenSlide does not recognize this file as a slide"));
        }
        let mut s = OpenSlide { path, osr, vendor: String::new(), levels: Vec::new(), downsample: Vec::new() };
        s.vendor = s.property("openslide.vendor").unwrap_or_else(|| "unknown vendor".into());
        s.check()?;
        // SAFETY: `osr` is a live handle not in an error state.
        let n = unsafe { ffi::openslide_get_level_count(s.osr) };
        for level in 0..n.max(0) {
            let (mut w, mut h) = (0i64, 0i64);
            // SAFETY: as above; `w`, `h` are valid out pointers.
            let ds = unsafe {
                ffi::openslide_get_level_dimensions(s.osr, level, &mut w, &mut h);
                ffi::openslide_get_level_downsample(s.osr, level)
            };
            let (Ok(w), Ok(h)) = (u32::try_from(w), u32::try_from(h)) else {
                return Err(Error::format(&s.path, format!("OpenSlide: level {level} has size {w}×{h}")));
            };
            if w == 0 || h == 0 || !(ds.is_finite() && ds > 0.0) {
                return Err(Error::format(&s.path, format!("OpenSlide: level {level} has size {w}×{h}, downsample {ds}")));
            }
            s.levels.push((w, h));
            s.downsample.push(ds);
        }
        s.check()?;
        if s.levels.is_empty() {
            return Err(Error::format(&s.path, "OpenSlide: the slide has no levels"));
        }
        Ok(s)
    }

    /// The handle's error, if it is in an error state (then it is unusable).
    fn check(&self) -> Result<()> {
        // SAFETY: `osr` is a live handle.
        match unsafe { owned(ffi::openslide_get_error(self.osr)) } {
            Some(msg) => Err(Error::format(&self.path, format!("OpenSlide ({}): {msg}", self.vendor))),
            None => Ok(()),
        }
    }

    /// The vendor OpenSlide reports (`openslide.vendor`, e.g. `aperio`).
    pub fn vendor(&self) -> &str {
        &self.vendor
    }

    /// A slide property (`openslide.mpp-x`, `aperio.AppMag`, ...).
    pub fn property(&self, name: &str) -> Option<String> {
        let c = CString::new(name).ok()?;
        // SAFETY: live handle, valid C string; the result lives as long as the handle.
        unsafe { owned(ffi::openslide_get_property_value(self.osr, c.as_ptr())) }
    }

    /// Microns per pixel at level 0, when the slide records it.
    pub fn mpp(&self) -> Option<(f64, f64)> {
        let p = |k: &str| self.property(k).and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite() && *v > 0.0);
        Some((p("openslide.mpp-x")?, p("openslide.mpp-y")?))
    }
}

impl Drop for OpenSlide {
    fn drop(&mut self) {
        // SAFETY: closed once, here.
        unsafe { ffi::openslide_close(self.osr) }
    }
}

/// Premultiplied ARGB → RGB; transparent pixels (outside the scanned area) become white.
fn argb_to_rgb(p: u32) -> [u8; 3] {
    let a = p >> 24;
    let c = [(p >> 16) & 255, (p >> 8) & 255, p & 255];
    match a {
        0 => [255; 3],
        255 => c.map(|v| v as u8),
        a => c.map(|v| ((v * 255 + a / 2) / a).min(255) as u8),
    }
}

impl SlideReader for OpenSlide {
    fn path(&self) -> &Path {
        &self.path
    }
    fn kind(&self) -> String {
        format!("OpenSlide ({})", self.vendor)
    }
    fn level_sizes(&self) -> Vec<(u32, u32)> {
        self.levels.clone()
    }
    fn mpp(&self) -> Option<(f64, f64)> {
        OpenSlide::mpp(self).and_then(|(x, y)| crate::wsi::plausible_mpp(x, y))
    }
    fn read_region(&mut self, level: usize, x: u32, y: u32, w: u32, h: u32) -> Result<RgbImage> {
        let &(lw, lh) = self
            .levels
            .get(level)
            .ok_or_else(|| Error::Input(format!("{}: no level {level} ({} levels)", self.path.display(), self.levels.len())))?;
        if w == 0 || h == 0 || x as u64 + w as u64 > lw as u64 || y as u64 + h as u64 > lh as u64 {
            return Err(Error::Input(format!(
                "{}: region {w}×{h} at ({x}, {y}) is not inside level {level} ({lw}×{lh})",
                self.path.display()
            )));
        }
        if w as u64 * h as u64 > MAX_REGION_PX {
            return Err(Error::Input(format!("{}: region {w}×{h} is too large for one read", self.path.display())));
        }
        let mut buf = vec![0u32; w as usize * h as usize];
        // Level coordinates → level-0 coordinates, as OpenSlide wants them.
        let ds = self.downsample[level];
        let (x0, y0) = ((x as f64 * ds).round() as i64, (y as f64 * ds).round() as i64);
        // SAFETY: live handle; `buf` holds w × h pixels.
        unsafe { ffi::openslide_read_region(self.osr, buf.as_mut_ptr(), x0, y0, level as i32, w as i64, h as i64) };
        self.check()?;
        let mut out = RgbImage::new(w, h);
        for (px, &p) in out.pixels_mut().zip(&buf) {
            px.0 = argb_to_rgb(p);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openslide_argb_unpremultiplied() {
        assert_eq!(argb_to_rgb(0xff10_2030), [0x10, 0x20, 0x30]);
        assert_eq!(argb_to_rgb(0x0000_0000), [255, 255, 255]);
        assert_eq!(argb_to_rgb(0x8040_2000), [128, 64, 0]);
    }

    #[test]
    fn openslide_rejects_non_slides() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notes.txt");
        std::fs::write(&p, "not a slide").unwrap();
        assert!(vendor(&p).is_none());
        let e = OpenSlide::open(&p).err().unwrap().to_string();
        assert!(e.contains("notes.txt") && e.contains("does not recognize"), "{e}");
        assert!(OpenSlide::open(dir.path().join("missing.svs")).is_err());
    }
}

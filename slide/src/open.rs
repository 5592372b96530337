//! Choosing a slide reader for a file: OpenSlide for vendor formats (feature `openslide`), the
//! tiled-TIFF reader for tiled/pyramidal TIFFs, else the image is decoded whole.

use crate::error::{Error, Result};
use crate::wsi::SlideReader;
use std::path::Path;

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
    use crate::wsi::plausible_mpp;

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
}

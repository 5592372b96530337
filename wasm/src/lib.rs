//! In-browser spot prediction. The same preprocessing (`bioedge_slide::image_prep`), tissue grid
//! (`bioedge_slide::pipeline`) and tract backend (`bioedge_runtime::Session`) as `infer slide`, behind a small
//! wasm-bindgen API used by the page's Web Workers (`www/worker.js`). For the grid split over several
//! workers, the worker holding the image cuts the patches ([`Slide::crops`]) and the others predict
//! them ([`SpotModel::predict_crops`]): the same values as [`SpotModel::predict`].

use bioedge_runtime::{Backend, Options, Session, Value};
use bioedge_slide::image_prep::{Preprocess, crop_square, decode_rgb};
use bioedge_slide::pipeline::{card_params, card_patch_span, downscale, grid_spots};
use image::RgbImage;
use std::path::Path;
use wasm_bindgen::prelude::*;

fn js(e: impl std::error::Error) -> JsError {
    JsError::new(&bioedge_error::chain(&e))
}

fn check_side(side: f32) -> Result<(), JsError> {
    if side.is_finite() && side >= 1.0 { Ok(()) } else { Err(JsError::new(&format!("patch side {side} px must be a number >= 1"))) }
}

/// A spot model (family `histology-spot`) loaded from ONNX bytes, run by tract.
#[wasm_bindgen]
pub struct SpotModel {
    session: Session,
    card_json: String,
    genes: Vec<String>,
    prep: Preprocess,
    side: Option<f32>,
    span: f32,
}

#[wasm_bindgen]
impl SpotModel {
    /// Reads the model card (genes, preprocessing, patch side) and builds the tract plan.
    /// `name` (the file name) appears in error messages.
    #[wasm_bindgen(constructor)]
    pub fn new(bytes: &[u8], name: &str) -> Result<SpotModel, JsError> {
        let path = Path::new(name);
        if bytes.is_empty() {
            return Err(JsError::new(&format!("{name}: empty file")));
        }
        let card = onnx_format::card_from_bytes(bytes, name).map_err(js)?;
        let (prep, side) = card_params(&card, path).map_err(js)?;
        let session = Session::from_bytes(bytes, path, Backend::Tract, &Options::default()).map_err(js)?;
        if session.inputs.len() != 1 || !session.outputs.iter().any(|o| o == "expression") {
            return Err(JsError::new(&format!(
                "{name}: expected one input and an `expression` output, found inputs [{}] and outputs [{}]",
                session.inputs.join(", "),
                session.outputs.join(", ")
            )));
        }
        let card_json = serde_json::to_string(&card).map_err(js)?;
        let span = card_patch_span(&card);
        Ok(SpotModel { session, card_json, genes: card.genes, prep, side, span })
    }

    /// The model card as JSON.
    #[wasm_bindgen(js_name = cardJson)]
    pub fn card_json(&self) -> String {
        self.card_json.clone()
    }

    /// Output genes, in output order.
    pub fn genes(&self) -> Vec<String> {
        self.genes.clone()
    }

    /// Patch side in image pixels from the card (`preprocessing.patch_side_px`), if any.
    #[wasm_bindgen(js_name = patchSide)]
    pub fn patch_side(&self) -> Option<f32> {
        self.side
    }

    /// Patch side in spot spacings (card `preprocessing.patch_span`, 1 when absent): the grid
    /// steps by the patch side divided by it.
    #[wasm_bindgen(js_name = patchSpan)]
    pub fn patch_span(&self) -> f32 {
        self.span
    }

    /// Model input side (224).
    #[wasm_bindgen(js_name = inputSize)]
    pub fn input_size(&self) -> u32 {
        self.prep.size
    }

    /// Predicts spots centred at `xy = [x0, y0, x1, y1, ...]` (image pixels) with patch side
    /// `side`, as one batch; returns `[spots × genes]` row-major.
    pub fn predict(&mut self, slide: &Slide, xy: &[f32], side: f32) -> Result<Vec<f32>, JsError> {
        let n = xy.len() / 2;
        if n == 0 || !xy.len().is_multiple_of(2) {
            return Err(JsError::new("predict: expected x, y pairs"));
        }
        check_side(side)?;
        let len = self.prep.tensor_len();
        let mut data = vec![0f32; n * len];
        for (p, dst) in xy.chunks(2).zip(data.chunks_mut(len)) {
            self.prepare(&crop_square(&slide.img, p[0], p[1], side).map_err(js)?, dst)?;
        }
        self.run(data, n)
    }

    /// [`SpotModel::predict`] on patches already cut by [`Slide::crops`] (`crop_side`² RGB bytes each),
    /// so that workers without the image can predict: same preprocessing and model, same values.
    #[wasm_bindgen(js_name = predictCrops)]
    pub fn predict_crops(&mut self, crops: &[u8], crop_side: u32) -> Result<Vec<f32>, JsError> {
        let px = 3 * crop_side as usize * crop_side as usize;
        if px == 0 || crops.is_empty() || !crops.len().is_multiple_of(px) {
            return Err(JsError::new(&format!(
                "predictCrops: {} bytes is not a whole number of {crop_side}×{crop_side} RGB patches",
                crops.len()
            )));
        }
        let (n, len) = (crops.len() / px, self.prep.tensor_len());
        let mut data = vec![0f32; n * len];
        for (c, dst) in crops.chunks(px).zip(data.chunks_mut(len)) {
            let patch = RgbImage::from_raw(crop_side, crop_side, c.to_vec()).ok_or_else(|| JsError::new("predictCrops: bad patch"))?;
            self.prepare(&patch, dst)?;
        }
        self.run(data, n)
    }

    /// The model alone on preprocessed CHW tensors (`n` patches), for benchmarks.
    pub fn run(&mut self, input: Vec<f32>, n: usize) -> Result<Vec<f32>, JsError> {
        let s = self.prep.size as usize;
        if input.len() != n * self.prep.tensor_len() {
            return Err(JsError::new(&format!("run: {} values for {n} patches of 3×{s}×{s}", input.len())));
        }
        let y = self.session.run_output(&[Value::f32(&[n, 3, s, s], input)], "expression").map_err(js)?.into_f32().map_err(js)?;
        if y.len() != n * self.genes.len() {
            return Err(JsError::new(&format!(
                "model returned {} values for {n} patches, expected {} genes each",
                y.len(),
                self.genes.len()
            )));
        }
        Ok(y)
    }

    fn prepare(&self, patch: &RgbImage, dst: &mut [f32]) -> Result<(), JsError> {
        self.prep.normalize_into(&self.prep.resize(patch).map_err(js)?, dst).map_err(js)
    }

    /// The preprocessed CHW tensor of one patch (what `predict` feeds the model).
    pub fn tensor(&self, slide: &Slide, x: f32, y: f32, side: f32) -> Result<Vec<f32>, JsError> {
        self.prep.spot(&slide.img, x, y, side).map_err(js)
    }
}

/// A decoded image (JPEG, PNG or TIFF), decoded by the same code as `infer`.
#[wasm_bindgen]
pub struct Slide {
    img: RgbImage,
}

#[wasm_bindgen]
impl Slide {
    #[wasm_bindgen(constructor)]
    pub fn new(bytes: &[u8], name: &str) -> Result<Slide, JsError> {
        if bytes.is_empty() {
            return Err(JsError::new(&format!("{name}: empty file")));
        }
        let img = decode_rgb(bytes, Path::new(name)).map_err(js)?;
        Ok(Slide { img })
    }

    pub fn width(&self) -> u32 {
        self.img.width()
    }

    pub fn height(&self) -> u32 {
        self.img.height()
    }

    /// Grid spots over tissue (Otsu mask) every `step` px (the patch side over the model's
    /// `patchSpan`): `[x0, y0, x1, y1, ...]`.
    pub fn grid(&self, step: f32) -> Result<Vec<f32>, JsError> {
        check_side(step)?;
        Ok(grid_spots(&self.img, step).iter().flat_map(|s| [s.x, s.y]).collect())
    }

    /// Ids (`r<row>c<col>`, as in `infer slide --grid`) of [`Slide::grid`]'s spots.
    #[wasm_bindgen(js_name = gridIds)]
    pub fn grid_ids(&self, step: f32) -> Result<Vec<String>, JsError> {
        check_side(step)?;
        Ok(grid_spots(&self.img, step).into_iter().map(|s| s.id).collect())
    }

    /// The square patches of side `side` centred at `xy = [x0, y0, ...]`, as [`SpotModel::predict`] cuts
    /// them, concatenated: `round(side)`² RGB bytes each (row-major), for [`SpotModel::predict_crops`].
    pub fn crops(&self, xy: &[f32], side: f32) -> Result<Vec<u8>, JsError> {
        if xy.is_empty() || !xy.len().is_multiple_of(2) {
            return Err(JsError::new("crops: expected x, y pairs"));
        }
        check_side(side)?;
        let mut out = Vec::new();
        for p in xy.chunks(2) {
            out.extend_from_slice(crop_square(&self.img, p[0], p[1], side).map_err(js)?.as_raw());
        }
        Ok(out)
    }

    /// A box-downscaled copy for display (long side at most `max_side`).
    pub fn preview(&self, max_side: u32) -> Preview {
        let (small, factor) = downscale(&self.img, max_side);
        let rgba = small.pixels().flat_map(|p| [p.0[0], p.0[1], p.0[2], 255]).collect();
        Preview { width: small.width(), height: small.height(), factor, rgba }
    }
}

/// RGBA pixels for a canvas.
#[wasm_bindgen]
pub struct Preview {
    pub width: u32,
    pub height: u32,
    /// Image pixels per preview pixel.
    pub factor: u32,
    rgba: Vec<u8>,
}

#[wasm_bindgen]
impl Preview {
    pub fn rgba(&self) -> Vec<u8> {
        self.rgba.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasm_preview_is_rgba() {
        let img = RgbImage::from_pixel(30, 10, image::Rgb([10, 20, 30]));
        let p = Slide { img }.preview(10);
        assert_eq!((p.width, p.height, p.factor), (10, 4, 3));
        assert_eq!(&p.rgba()[..4], &[10, 20, 30, 255]);
    }

    #[test]
    fn wasm_crops_are_predicts_patches() {
        let img = RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8, y as u8, (x * y) as u8]));
        let slide = Slide { img: img.clone() };
        let c = slide.crops(&[10.0, 12.0, 1.0, 29.0], 7.4).unwrap();
        assert_eq!(c.len(), 2 * 7 * 7 * 3);
        assert_eq!(&c[..147], crop_square(&img, 10.0, 12.0, 7.4).unwrap().as_raw().as_slice());
        assert_eq!(&c[147..], crop_square(&img, 1.0, 29.0, 7.4).unwrap().as_raw().as_slice());
    }
}

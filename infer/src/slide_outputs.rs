//! What `infer slide` writes besides its CSV, for the tools biologists and pathologists use:
//!
//! * **AnnData `.h5ad`** (scanpy, squidpy, Seurat via converters): `X` = predicted expression
//!   (float32, spots × genes); `obs` = spot id (index), `pixel_x`, `pixel_y`, `array_row`,
//!   `array_col` (HER2ST array coordinates for a spot file, grid row/column for a grid),
//!   `tissue_fraction`, and `classification` with `--classify`; `var` = gene symbols (+
//!   `heldout_pearson_r` when the model card has per-gene held-out r); `obsm["spatial"]` = pixel
//!   (x, y), float64, level 0; `uns["spatial"][library_id]` = `images` {`hires`, `lowres`: the
//!   slide downscaled to at most [`HIRES_SIDE`] / [`LOWRES_SIDE`] px, uint8 H × W × 3} +
//!   `scalefactors` {`tissue_hires_scalef`, `tissue_lowres_scalef`, `spot_diameter_fullres` = the
//!   grid step, i.e. the spot spacing (the patch side, or half of it for a model whose patch spans
//!   two spacings)}, Space Ranger's layout, so `scanpy.pl.spatial` and `squidpy.pl.spatial_scatter`
//!   draw the predictions over the tissue; `uns["bioedge"]` = the model card (JSON) and the run's
//!   parameters.
//! * **GeoJSON** for QuPath (*File → Import objects from file*): a FeatureCollection, one Feature per
//!   spot whose geometry is its square grid cell (a closed Polygon, level-0 pixel coordinates, clipped
//!   to the image), with QuPath's property names: `objectType: "tile"`, `name` (the spot id),
//!   `measurements` (gene → predicted value; `--top-genes N` keeps the N genes whose predictions
//!   vary most over the slide) and, with `--classify GENE>THRESHOLD`, `classification`
//!   {`name`: "GENE high" / "GENE low", `color`: [r, g, b]}.

#[cfg(feature = "hdf5")]
use crate::data::h5ad_write::{AnnData, Array, ArrayData, Categorical, Column, DataFrame, Value};
use crate::slide::SlideSpot;
use crate::{Error, Result};
use image::RgbImage;
use std::path::Path;

/// Long side (at most) of `uns["spatial"][library]["images"]["hires"]`.
pub const HIRES_SIDE: u32 = 2000;
/// Long side (at most) of `uns["spatial"][library]["images"]["lowres"]`.
pub const LOWRES_SIDE: u32 = 600;

/// Output formats of `infer slide`, chosen by the file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// `.csv`: `id,pixel_x,pixel_y,<gene>...`.
    Csv,
    /// `.h5ad`: AnnData for scanpy / squidpy.
    H5ad,
    /// `.geojson`: a FeatureCollection for QuPath.
    GeoJson,
}

impl OutputFormat {
    /// The format of an output path (by its extension, case-insensitive).
    pub fn of(path: &Path) -> Result<OutputFormat> {
        let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        match ext.as_str() {
            "csv" => Ok(OutputFormat::Csv),
            "h5ad" => Ok(OutputFormat::H5ad),
            "geojson" => Ok(OutputFormat::GeoJson),
            _ => Err(Error::Input(format!(
                "--out {}: unknown output format; the extension picks it: .csv (table), .h5ad (AnnData for scanpy/squidpy), .geojson (QuPath)",
                path.display()
            ))),
        }
    }
}

/// `--classify GENE>THRESHOLD`: spots whose predicted `gene` is above `threshold` are
/// "GENE high", the others "GENE low".
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifyRule {
    /// Gene symbol (a model output).
    pub gene: String,
    /// Threshold on the predicted value (the model's units, e.g. log1p expression).
    pub threshold: f32,
}

impl std::str::FromStr for ClassifyRule {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("`{s}`: expected GENE>THRESHOLD, e.g. ERBB2>1.5");
        let (gene, t) = s.split_once('>').ok_or_else(bad)?;
        let threshold: f32 = t.trim().parse().map_err(|_| bad())?;
        if gene.trim().is_empty() || !threshold.is_finite() {
            return Err(bad());
        }
        Ok(ClassifyRule { gene: gene.trim().to_string(), threshold })
    }
}

impl ClassifyRule {
    /// Class names: (above the threshold, at or below it).
    pub fn names(&self) -> (String, String) {
        (format!("{} high", self.gene), format!("{} low", self.gene))
    }

    /// `true` per spot when column `g` of `values` (`[spots × genes]`) is above the threshold.
    pub fn apply(&self, values: &[f32], genes: usize, g: usize) -> Vec<bool> {
        values.iter().skip(g).step_by(genes).map(|&v| v > self.threshold).collect()
    }
}

/// Colours of the two classes in QuPath: red for high, blue for low.
const HIGH_RGB: [u8; 3] = [220, 40, 40];
const LOW_RGB: [u8; 3] = [40, 80, 220];

/// Indices of the `n` genes whose predictions have the largest variance over the spots, in
/// model order (all genes when `n` ≥ their number).
pub fn top_variable_genes(values: &[f32], genes: usize, n: usize) -> Vec<usize> {
    if n >= genes {
        return (0..genes).collect();
    }
    let spots = values.len() / genes.max(1);
    let var: Vec<f64> = (0..genes)
        .map(|g| {
            let col = values.iter().skip(g).step_by(genes).map(|&v| v as f64);
            let mean = col.clone().sum::<f64>() / spots.max(1) as f64;
            col.map(|v| (v - mean) * (v - mean)).sum::<f64>() / spots.max(1) as f64
        })
        .collect();
    let mut order: Vec<usize> = (0..genes).collect();
    order.sort_by(|&a, &b| var[b].total_cmp(&var[a]).then(a.cmp(&b)));
    let mut keep = order[..n].to_vec();
    keep.sort_unstable();
    keep
}

/// The GeoJSON FeatureCollection: one square per spot (its grid cell, side `side`, clipped to the
/// `width × height` image), measurements for the genes in `keep`, classes from `classes`.
pub fn to_geojson(
    spots: &[SlideSpot],
    genes: &[String],
    values: &[f32],
    side: f32,
    (width, height): (u32, u32),
    keep: &[usize],
    classes: Option<(&ClassifyRule, &[bool])>,
) -> String {
    let k = genes.len();
    let half = side as f64 / 2.0;
    let r2 = |v: f64| (v * 100.0).round() / 100.0;
    let features: Vec<serde_json::Value> = spots
        .iter()
        .enumerate()
        .map(|(i, sp)| {
            let (x0, x1) = (r2((sp.x as f64 - half).max(0.0)), r2((sp.x as f64 + half).min(width as f64)));
            let (y0, y1) = (r2((sp.y as f64 - half).max(0.0)), r2((sp.y as f64 + half).min(height as f64)));
            // counter-clockwise with y up (RFC 7946 §3.1.6), closed
            let ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]];
            let measurements: serde_json::Map<String, serde_json::Value> =
                keep.iter().map(|&g| (genes[g].clone(), serde_json::json!(values[i * k + g] as f64))).collect();
            let mut props = serde_json::json!({"objectType": "tile", "name": sp.id, "measurements": measurements});
            if let Some((rule, high)) = classes {
                let (hi, lo) = rule.names();
                let (name, color) = if high[i] { (hi, HIGH_RGB) } else { (lo, LOW_RGB) };
                props["classification"] = serde_json::json!({"name": name, "color": color});
            }
            serde_json::json!({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": props})
        })
        .collect();
    serde_json::json!({"type": "FeatureCollection", "features": features}).to_string()
}

/// The slide downscaled for `uns["spatial"]`, with each copy's scale factor (its pixels per
/// level-0 pixel).
pub struct SpatialImages {
    /// Long side at most [`HIRES_SIDE`].
    pub hires: RgbImage,
    /// `hires` pixels per level-0 pixel.
    pub hires_scalef: f64,
    /// Long side at most [`LOWRES_SIDE`].
    pub lowres: RgbImage,
    /// `lowres` pixels per level-0 pixel.
    pub lowres_scalef: f64,
}

/// Everything the AnnData file of a slide holds.
#[cfg(feature = "hdf5")]
pub struct SlideAnnData<'a> {
    /// Predicted spots.
    pub spots: &'a [SlideSpot],
    /// (array_row, array_col) per spot.
    pub array: &'a [(i64, i64)],
    /// Tissue fraction of each spot's grid cell.
    pub tissue: &'a [f32],
    /// `[spots × genes]` predictions, row-major.
    pub values: &'a [f32],
    /// The spot's cell side (the grid step) in level-0 pixels.
    pub side: f32,
    /// Key of `uns["spatial"]` (the image file's stem).
    pub library_id: String,
    /// Downscaled slide images.
    pub images: &'a SpatialImages,
    /// `--classify` and its result per spot.
    pub classes: Option<(&'a ClassifyRule, &'a [bool])>,
    /// The model's card (genes, per-gene metrics, stored whole in `uns["bioedge"]`).
    pub card: &'a onnx_format::ModelCard,
    /// Run parameters for `uns["bioedge"]`.
    pub run: Vec<(String, Value)>,
}

#[cfg(feature = "hdf5")]
fn rgb_array(img: &RgbImage) -> Result<Array> {
    Array::new(vec![img.height() as usize, img.width() as usize, 3], ArrayData::U8(img.as_raw().clone()))
}

/// Per-gene held-out Pearson r from the card (`training.eval_per_gene_pearson_r`, written by
/// `train spot`), when it has one number per gene.
pub fn heldout_r(card: &onnx_format::ModelCard) -> Option<Vec<f64>> {
    let v = card.training.get("eval_per_gene_pearson_r")?.as_array()?;
    let r: Vec<f64> = v.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect();
    (r.len() == card.genes.len()).then_some(r)
}

/// The AnnData object of a slide (see the module docs for the layout).
#[cfg(feature = "hdf5")]
pub fn to_anndata(p: &SlideAnnData) -> Result<AnnData> {
    let genes = &p.card.genes;
    let n = p.spots.len();
    let mut obs = vec![
        ("pixel_x".to_string(), Column::F64(p.spots.iter().map(|s| s.x as f64).collect())),
        ("pixel_y".to_string(), Column::F64(p.spots.iter().map(|s| s.y as f64).collect())),
        ("array_row".to_string(), Column::I64(p.array.iter().map(|a| a.0).collect())),
        ("array_col".to_string(), Column::I64(p.array.iter().map(|a| a.1).collect())),
        ("tissue_fraction".to_string(), Column::F32(p.tissue.to_vec())),
    ];
    if let Some((rule, high)) = p.classes {
        let (hi, lo) = rule.names();
        let labels: Vec<&str> = high.iter().map(|&h| if h { hi.as_str() } else { lo.as_str() }).collect();
        obs.push(("classification".to_string(), Column::Categorical(Categorical::from_values(&labels, Some(&[lo.clone(), hi.clone()])))));
    }
    let mut var = Vec::new();
    if let Some(r) = heldout_r(p.card) {
        var.push(("heldout_pearson_r".to_string(), Column::F64(r)));
    }
    let spatial: Vec<f64> = p.spots.iter().flat_map(|s| [s.x as f64, s.y as f64]).collect();
    let scalefactors = Value::Dict(vec![
        ("tissue_hires_scalef".into(), Value::F64(p.images.hires_scalef)),
        ("tissue_lowres_scalef".into(), Value::F64(p.images.lowres_scalef)),
        ("spot_diameter_fullres".into(), Value::F64(p.side as f64)),
    ]);
    let images = Value::Dict(vec![
        ("hires".into(), Value::Array(rgb_array(&p.images.hires)?)),
        ("lowres".into(), Value::Array(rgb_array(&p.images.lowres)?)),
    ]);
    let library = Value::Dict(vec![("images".into(), images), ("scalefactors".into(), scalefactors)]);
    let card_json = serde_json::to_string(p.card).map_err(|e| Error::Input(format!("model card as JSON: {e}")))?;
    let mut bioedge = vec![("model_card".to_string(), Value::Str(card_json))];
    bioedge.extend(p.run.iter().cloned());
    let a = AnnData {
        x: Array::new(vec![n, genes.len()], ArrayData::F32(p.values.to_vec()))?,
        obs: DataFrame { index: p.spots.iter().map(|s| s.id.clone()).collect(), columns: obs },
        var: DataFrame { index: genes.clone(), columns: var },
        obsm: vec![("spatial".into(), Array::new(vec![n, 2], ArrayData::F64(spatial))?)],
        uns: vec![("spatial".into(), Value::Dict(vec![(p.library_id.clone(), library)])), ("bioedge".into(), Value::Dict(bioedge))],
    };
    a.check()?;
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slide_outputs_formats_rules_and_top_genes() {
        assert_eq!(OutputFormat::of(Path::new("a/b.CSV")).unwrap(), OutputFormat::Csv);
        assert_eq!(OutputFormat::of(Path::new("b.h5ad")).unwrap(), OutputFormat::H5ad);
        assert_eq!(OutputFormat::of(Path::new("b.geojson")).unwrap(), OutputFormat::GeoJson);
        assert!(OutputFormat::of(Path::new("b.txt")).unwrap_err().to_string().contains(".geojson"));
        let r: ClassifyRule = "ERBB2>1.5".parse().unwrap();
        assert_eq!((r.gene.as_str(), r.threshold), ("ERBB2", 1.5));
        for bad in ["ERBB2", ">1", "ERBB2>x", "ERBB2>nan"] {
            assert!(bad.parse::<ClassifyRule>().is_err(), "{bad}");
        }
        // 3 spots × 3 genes: gene 1 varies most, then gene 2; gene 0 constant
        let v = [1.0, 0.0, 5.0, 1.0, 10.0, 6.0, 1.0, 20.0, 7.0];
        assert_eq!(top_variable_genes(&v, 3, 2), [1, 2]);
        assert_eq!(top_variable_genes(&v, 3, 1), [1]);
        assert_eq!(top_variable_genes(&v, 3, 9), [0, 1, 2]);
        assert_eq!(r.apply(&v, 3, 2), [true, true, true]);
        let r: ClassifyRule = "G>9".parse().unwrap();
        assert_eq!(r.apply(&v, 3, 1), [false, true, true]);
    }

    #[test]
    fn slide_outputs_geojson_polygons() {
        let spots = [SlideSpot { id: "a".into(), x: 10.0, y: 10.0 }, SlideSpot { id: "b".into(), x: 100.0, y: 50.0 }];
        let genes: Vec<String> = vec!["G1".into(), "G2".into()];
        let rule: ClassifyRule = "G2>0.5".parse().unwrap();
        let high = [false, true];
        let s = to_geojson(&spots, &genes, &[0.25, 0.5, 1.0, 2.0], 40.0, (110, 200), &[1], Some((&rule, &high)));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["type"], "FeatureCollection");
        let f = &v["features"][0];
        assert_eq!(f["geometry"]["coordinates"][0], serde_json::json!([[0.0, 0.0], [30.0, 0.0], [30.0, 30.0], [0.0, 30.0], [0.0, 0.0]]));
        assert_eq!(f["properties"]["measurements"], serde_json::json!({"G2": 0.5}));
        assert_eq!(f["properties"]["classification"]["name"], "G2 low");
        let g = &v["features"][1];
        assert_eq!(g["geometry"]["coordinates"][0][1], serde_json::json!([110.0, 30.0]));
        assert_eq!(g["properties"]["objectType"], "tile");
        assert_eq!(g["properties"]["classification"]["color"], serde_json::json!([220, 40, 40]));
    }
}

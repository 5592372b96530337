//! Spot-level spatial transcriptomics sections: spots with array and pixel coordinates, raw counts
//! (spots × genes), the section's H&E image. Loader for HER2ST (legacy ST arrays), expression
//! normalization (`log1p(count / library_size · 1e4)`), target gene selection and patch extraction
//! through [`bioedge_slide::image_prep`].
//!
//! HER2ST layout, one directory per section (`<dir>/<section>/`):
//! - `<section>.tsv.gz`: counts, spots × genes, first column the spot key `XxY` (array x, y);
//! - `<section>_selection.tsv`: `x y new_x new_y pixel_x pixel_y selected` (tab-separated);
//! - one image (`.jpg`, `.png`, `.tif`).
//!
//! The two tables are joined on `XxY`; spots found in only one of them (and unselected spots) are
//! dropped and counted in [`JoinReport`].
//!
//! Patch size: legacy ST spots are 100 µm wide on a 200 µm centre-to-centre grid (Visium: 55 µm on
//! 100 µm). The spacing in pixels is measured as the median pixel distance between array-neighbouring
//! spots ([`SpotSection::spacing_px`]); the default patch side is [`DEFAULT_SIDE_FACTOR`] × spacing,
//! i.e. the spot plus its surroundings up to half-way to the next spot.

use crate::data::delim::read_delimited;
use crate::data::text::{Lines, split_fields};
use crate::error::{Error, Result};
use bioedge_slide::image_prep::Preprocess;
use image::RgbImage;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Library size after normalization (counts per 10k).
pub const TARGET_SUM: f32 = 1e4;
/// Default patch side as a multiple of the spot spacing (centre-to-centre distance).
pub const DEFAULT_SIDE_FACTOR: f32 = 1.0;
/// Default number of target genes.
pub const DEFAULT_N_GENES: usize = 250;

/// One spot: its key, array coordinates and pixel coordinates in the full-resolution image.
#[derive(Debug, Clone, PartialEq)]
pub struct Spot {
    /// `XxY` for HER2ST, the barcode for Visium.
    pub key: String,
    /// Array x position (Visium: column).
    pub array_x: i32,
    /// Array y position (Visium: row).
    pub array_y: i32,
    /// Pixel x of the spot centre in the section image.
    pub pixel_x: f32,
    /// Pixel y of the spot centre in the section image.
    pub pixel_y: f32,
}

/// Layout of the spot array, which decides who the array neighbours are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grid {
    /// Legacy ST: neighbours differ by 1 in x or y.
    Square,
    /// Visium (x = column, y = row): neighbours at (±2, 0) and (±1, ±1).
    Hex,
    /// Array positions unknown: the spacing is the median nearest-neighbour pixel distance.
    Unknown,
}

impl Grid {
    /// Array-position offsets of a spot's neighbours (none when the positions are unknown).
    pub fn neighbour_steps(self) -> &'static [(i32, i32)] {
        match self {
            Grid::Square => &[(1, 0), (-1, 0), (0, 1), (0, -1)],
            Grid::Hex => &[(2, 0), (-2, 0), (1, 1), (-1, 1), (1, -1), (-1, -1)],
            Grid::Unknown => &[],
        }
    }
}

/// What the join of counts and spot coordinates dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinReport {
    /// Spot keys with counts but no coordinates.
    pub counts_only: Vec<String>,
    /// Spot keys with coordinates but no counts.
    pub coords_only: Vec<String>,
    /// Spots marked `selected = 0` in the spot file.
    pub unselected: usize,
}

impl JoinReport {
    /// Spots dropped in all.
    pub fn dropped(&self) -> usize {
        self.counts_only.len() + self.coords_only.len() + self.unselected
    }
}

/// A section: spots, genes and raw counts (`counts[s * genes.len() + g]`), plus its image.
#[derive(Debug, Clone)]
pub struct SpotSection {
    /// Section name (HER2ST section id, or the directory / file name it was loaded from).
    pub name: String,
    /// Path of the section's H&E image, the one the spot pixel coordinates refer to.
    pub image_path: PathBuf,
    /// Layout of the spot array.
    pub grid: Grid,
    /// The spots, in the order of the rows of `counts`.
    pub spots: Vec<Spot>,
    /// Gene names, in the order of the columns of `counts`.
    pub genes: Vec<String>,
    /// Raw counts, `spots × genes`, row-major (log-normalized values when `normalized`).
    pub counts: Vec<f32>,
    /// `counts` already hold log-normalized values (e.g. an `.h5ad` without raw counts); then
    /// [`SpotSection::log_normalized`] returns them unchanged.
    pub normalized: bool,
    /// What the join of counts and coordinates dropped.
    pub report: JoinReport,
}

/// Expression aligned to a gene list.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    /// The requested genes, in the order of the columns of `values`.
    pub genes: Vec<String>,
    /// `values[s * genes.len() + g]`, log-normalized.
    pub values: Vec<f32>,
    /// Genes of the list that the section lacks (their values are 0).
    pub missing: Vec<String>,
}

/// How [`select_genes_by`] ranks genes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneRanking {
    /// By mean expression.
    Mean,
    /// By variance of expression.
    Variance,
}

/// Row-wise `log1p(count / row_total · TARGET_SUM)`; a row with total 0 stays 0.
pub fn normalize_log1p(counts: &[f32], n_genes: usize) -> Vec<f32> {
    if n_genes == 0 {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(counts.len());
    for row in counts.chunks(n_genes) {
        let total: f64 = row.iter().map(|&v| v as f64).sum();
        let f = if total > 0.0 { TARGET_SUM as f64 / total } else { 0.0 };
        out.extend(row.iter().map(|&v| (v as f64 * f).ln_1p() as f32));
    }
    out
}

impl SpotSection {
    /// Number of spots.
    pub fn n_spots(&self) -> usize {
        self.spots.len()
    }

    /// Number of genes.
    pub fn n_genes(&self) -> usize {
        self.genes.len()
    }

    /// Total counts per spot.
    pub fn library_sizes(&self) -> Vec<f32> {
        let g = self.n_genes().max(1);
        self.counts.chunks(g).map(|r| r.iter().sum()).collect()
    }

    /// All genes, log-normalized over the full library (spots × genes).
    pub fn log_normalized(&self) -> Vec<f32> {
        if self.normalized {
            return self.counts.clone();
        }
        normalize_log1p(&self.counts, self.n_genes())
    }

    /// Log-normalized expression of `genes` (normalized over the full library first); genes the
    /// section lacks are 0 and listed in `missing`.
    pub fn targets(&self, genes: &[String]) -> Targets {
        let index: HashMap<&str, usize> = self.genes.iter().enumerate().map(|(i, g)| (g.as_str(), i)).collect();
        let cols: Vec<Option<usize>> = genes.iter().map(|g| index.get(g.as_str()).copied()).collect();
        let missing = genes.iter().zip(&cols).filter(|(_, c)| c.is_none()).map(|(g, _)| g.clone()).collect();
        let norm = self.log_normalized();
        let ng = self.n_genes();
        let mut values = Vec::with_capacity(self.n_spots() * genes.len());
        for s in 0..self.n_spots() {
            let row = &norm[s * ng..(s + 1) * ng];
            values.extend(cols.iter().map(|c| c.map_or(0.0, |i| row[i])));
        }
        Targets { genes: genes.to_vec(), values, missing }
    }

    /// Median pixel distance between array-neighbouring spots (the centre-to-centre spacing).
    pub fn spacing_px(&self) -> Result<f32> {
        if self.grid == Grid::Unknown {
            return self.nearest_spacing_px();
        }
        let at: HashMap<(i32, i32), usize> = self.spots.iter().enumerate().map(|(i, s)| ((s.array_x, s.array_y), i)).collect();
        // each neighbouring pair once: the steps pointing forward
        let steps = self.grid.neighbour_steps().iter().filter(|&&(dx, dy)| dy > 0 || (dy == 0 && dx > 0));
        let mut d = Vec::new();
        for a in &self.spots {
            for (dx, dy) in steps.clone() {
                if let Some(&j) = at.get(&(a.array_x + dx, a.array_y + dy)) {
                    let b = &self.spots[j];
                    d.push((a.pixel_x - b.pixel_x).hypot(a.pixel_y - b.pixel_y));
                }
            }
        }
        if d.is_empty() {
            return Err(Error::Input(format!("section {}: no array-neighbouring spots, cannot measure the spot spacing", self.name)));
        }
        self.median_spacing(d)
    }

    /// Median over spots of the pixel distance to the nearest other spot.
    fn nearest_spacing_px(&self) -> Result<f32> {
        let d: Vec<f32> = self
            .spots
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                self.spots
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, b)| (a.pixel_x - b.pixel_x).hypot(a.pixel_y - b.pixel_y))
                    .min_by(|x, y| x.total_cmp(y))
            })
            .collect();
        if d.is_empty() {
            return Err(Error::Input(format!("section {}: fewer than two spots, cannot measure the spot spacing", self.name)));
        }
        self.median_spacing(d)
    }

    fn median_spacing(&self, mut d: Vec<f32>) -> Result<f32> {
        d.sort_by(|a, b| a.total_cmp(b));
        let m = d.len();
        let med = if m % 2 == 1 { d[m / 2] } else { 0.5 * (d[m / 2 - 1] + d[m / 2]) };
        if !(med.is_finite() && med > 0.0) {
            return Err(Error::Input(format!("section {}: spot spacing {med} px", self.name)));
        }
        Ok(med)
    }

    /// Patch side in pixels: `factor` × [`SpotSection::spacing_px`].
    pub fn patch_side(&self, factor: f32) -> Result<f32> {
        if !(factor.is_finite() && factor > 0.0) {
            return Err(Error::Input(format!("patch side factor {factor} must be > 0")));
        }
        Ok(self.spacing_px()? * factor)
    }

    /// Checks that every spot centre lies inside a `width × height` image.
    pub fn check_inside(&self, width: u32, height: u32) -> Result<()> {
        let out: Vec<&Spot> = self
            .spots
            .iter()
            .filter(|s| !(s.pixel_x >= 0.0 && s.pixel_y >= 0.0 && s.pixel_x < width as f32 && s.pixel_y < height as f32))
            .collect();
        if let Some(first) = out.first() {
            return Err(Error::Input(format!(
                "section {}: {} spot(s) outside the {width}×{height} image {}, first {} at ({:.1}, {:.1})",
                self.name,
                out.len(),
                self.image_path.display(),
                first.key,
                first.pixel_x,
                first.pixel_y
            )));
        }
        Ok(())
    }
}

/// Top `n` genes by mean log-normalized expression over all spots of `sections` pooled.
pub fn select_genes(sections: &[&SpotSection], n: usize) -> Result<Vec<String>> {
    select_genes_by(sections, n, GeneRanking::Mean)
}

/// Top `n` genes by mean or variance of log-normalized expression over all spots pooled. A gene
/// absent from a section counts as 0 there. Ties go to the gene name, so the order is stable.
pub fn select_genes_by(sections: &[&SpotSection], n: usize, ranking: GeneRanking) -> Result<Vec<String>> {
    if n == 0 {
        return Err(Error::Input("number of target genes must be > 0".into()));
    }
    let mut sum: HashMap<&str, (f64, f64)> = HashMap::new();
    let mut total = 0usize;
    for sec in sections {
        let ng = sec.n_genes();
        let norm = sec.log_normalized();
        for (g, name) in sec.genes.iter().enumerate() {
            let e = sum.entry(name.as_str()).or_default();
            for s in 0..sec.n_spots() {
                let v = norm[s * ng + g] as f64;
                e.0 += v;
                e.1 += v * v;
            }
        }
        total += sec.n_spots();
    }
    if total == 0 || sum.is_empty() {
        return Err(Error::Input("gene selection: no spots or no genes in the training sections".into()));
    }
    let t = total as f64;
    let mut scored: Vec<(&str, f64)> = sum
        .into_iter()
        .map(|(g, (s, s2))| {
            let mean = s / t;
            let score = match ranking {
                GeneRanking::Mean => mean,
                GeneRanking::Variance => (s2 / t - mean * mean).max(0.0),
            };
            (g, score)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    Ok(scored.into_iter().take(n).map(|(g, _)| g.to_string()).collect())
}

/// Highly variable genes as the HisToGene / Hist2ST protocol picks them: the top `n_top` genes of
/// each section by Seurat-flavour normalized dispersion (scanpy's default `highly_variable_genes`:
/// dispersion = variance / mean of the de-logged expression, z-scored within 20 equal-width bins of
/// log mean), pooled over the sections, kept if detected (count > 0) in at least `min_spots` spots
/// of all sections together. Returned by mean log-normalized expression, highest first.
pub fn select_hvg(sections: &[&SpotSection], n_top: usize, min_spots: usize) -> Result<Vec<String>> {
    if n_top == 0 {
        return Err(Error::Input("number of highly variable genes must be > 0".into()));
    }
    let mut union: HashSet<String> = HashSet::new();
    let mut detected: HashMap<&str, usize> = HashMap::new();
    let mut sum: HashMap<&str, f64> = HashMap::new();
    let mut total = 0usize;
    for sec in sections {
        let (ns, ng) = (sec.n_spots(), sec.n_genes());
        if ns == 0 || ng == 0 {
            continue;
        }
        let norm = sec.log_normalized();
        let (mut mean, mut sq, mut lsum, mut det) = (vec![0f64; ng], vec![0f64; ng], vec![0f64; ng], vec![0usize; ng]);
        for s in 0..ns {
            for g in 0..ng {
                let l = norm[s * ng + g] as f64;
                let v = l.exp_m1();
                mean[g] += v;
                sq[g] += v * v;
                lsum[g] += l;
                det[g] += usize::from(sec.counts[s * ng + g] > 0.0);
            }
        }
        for (g, name) in sec.genes.iter().enumerate() {
            *detected.entry(name.as_str()).or_default() += det[g];
            *sum.entry(name.as_str()).or_default() += lsum[g];
        }
        total += ns;
        // (gene, log mean, log dispersion) of the genes with a positive mean and variance
        let mut stats: Vec<(usize, f64, f64)> = Vec::new();
        for g in 0..ng {
            let m = mean[g] / ns as f64;
            let var = if ns > 1 { (sq[g] - ns as f64 * m * m) / (ns - 1) as f64 } else { 0.0 };
            if m > 0.0 && var > 0.0 {
                stats.push((g, m.ln_1p(), (var / m).ln()));
            }
        }
        let (lo, hi) = stats.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), s| (a.min(s.1), b.max(s.1)));
        let bin = |lm: f64| if hi > lo { (((lm - lo) / (hi - lo) * 20.0) as usize).min(19) } else { 0 };
        let mut bins = [(0usize, 0f64, 0f64); 20];
        for s in &stats {
            let b = &mut bins[bin(s.1)];
            b.0 += 1;
            b.1 += s.2;
            b.2 += s.2 * s.2;
        }
        let mut scored: Vec<(usize, f64)> = stats
            .iter()
            .map(|&(g, lm, ld)| {
                let (n, s, s2) = bins[bin(lm)];
                let m = s / n as f64;
                let sd = if n > 1 { ((s2 - n as f64 * m * m) / (n - 1) as f64).max(0.0).sqrt() } else { 0.0 };
                // scanpy: a bin with one gene scores 1; a flat bin scores 0
                let z = if n == 1 {
                    1.0
                } else if sd > 0.0 {
                    (ld - m) / sd
                } else {
                    0.0
                };
                (g, z)
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(sec.genes[a.0].cmp(&sec.genes[b.0])));
        union.extend(scored.into_iter().take(n_top).map(|(g, _)| sec.genes[g].clone()));
    }
    if total == 0 {
        return Err(Error::Input("gene selection: no spots or no genes in the training sections".into()));
    }
    let mut kept: Vec<(String, f64)> = union
        .into_iter()
        .filter(|g| detected.get(g.as_str()).copied().unwrap_or(0) >= min_spots)
        .map(|g| {
            let m = sum.get(g.as_str()).copied().unwrap_or(0.0) / total as f64;
            (g, m)
        })
        .collect();
    if kept.is_empty() {
        return Err(Error::Input(format!("gene selection: no highly variable gene is detected in ≥ {min_spots} spots")));
    }
    kept.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(kept.into_iter().map(|(g, _)| g).collect())
}

/// Preprocessed CHW patches, one per spot, lazily (each item is `prep.tensor_len()` values).
pub fn patch_iter<'a>(
    section: &'a SpotSection,
    image: &'a RgbImage,
    side: f32,
    prep: &'a Preprocess,
) -> impl Iterator<Item = Result<Vec<f32>>> + 'a {
    section.spots.iter().map(move |s| {
        prep.spot(image, s.pixel_x, s.pixel_y, side).map_err(|e| Error::Input(format!("section {} spot {}: {e}", section.name, s.key)))
    })
}

/// All patches of a section; checks every spot first, so an error leaves nothing half done.
pub fn patches(section: &SpotSection, image: &RgbImage, side: f32, prep: &Preprocess) -> Result<Vec<Vec<f32>>> {
    section.check_inside(image.width(), image.height())?;
    patch_iter(section, image, side, prep).collect()
}

fn section_dir(dir: &Path, section: &str) -> Result<PathBuf> {
    if section.is_empty() || section.contains(['/', '\\']) || section.starts_with('.') {
        return Err(Error::Input(format!("bad section name '{section}'")));
    }
    let sub = dir.join(section);
    if sub.is_dir() {
        return Ok(sub);
    }
    if dir.file_name().is_some_and(|n| n == section) && dir.is_dir() {
        return Ok(dir.to_path_buf());
    }
    Err(Error::format(dir, format!("no directory for section '{section}'")))
}

fn find_image(dir: &Path) -> Result<PathBuf> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut found = Vec::new();
    for entry in rd {
        let p = entry.map_err(|e| Error::io(dir, e))?.path();
        let ext = p.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        if matches!(ext.as_str(), "jpg" | "jpeg" | "png" | "tif" | "tiff") {
            found.push(p);
        }
    }
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::format(dir, "no image (.jpg/.png/.tif) in the section directory")),
        _ => Err(Error::format(dir, format!("{} images in the section directory, expected one", found.len()))),
    }
}

fn parse_key(key: &str) -> Option<(i32, i32)> {
    let (x, y) = key.split_once('x')?;
    Some((x.trim().parse().ok()?, y.trim().parse().ok()?))
}

/// Reads a HER2ST spot file (`x y ... pixel_x pixel_y [selected]`, tab-separated). Returns the
/// selected spots and the number of unselected ones.
pub fn read_spot_file(path: &Path) -> Result<(Vec<Spot>, usize)> {
    let mut lines = Lines::open(path)?;
    let fmt = |n: usize, m: String| Error::format(path, format!("line {n}: {m}"));
    let mut header: Option<Vec<String>> = None;
    let mut spots = Vec::new();
    let mut unselected = 0;
    let mut cols = (0, 0, 0, 0, None);
    while let Some((n, line)) = lines.next_line()? {
        if line.trim().is_empty() {
            continue;
        }
        let fields = split_fields(line, '\t').map_err(|m| fmt(n, m))?;
        let Some(h) = &header else {
            let h: Vec<String> = fields.iter().map(|f| f.trim().to_string()).collect();
            let col = |name: &str| h.iter().position(|c| c == name).ok_or_else(|| fmt(n, format!("no column '{name}' in the header")));
            cols = (col("x")?, col("y")?, col("pixel_x")?, col("pixel_y")?, col("selected").ok());
            header = Some(h);
            continue;
        };
        if fields.len() != h.len() {
            return Err(fmt(n, format!("{} fields, header has {}", fields.len(), h.len())));
        }
        let num = |i: usize| -> Result<f64> {
            let s = fields[i].trim();
            s.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| fmt(n, format!("column '{}': '{s}' is not a number", h[i])))
        };
        let int = |i: usize| -> Result<i32> {
            let v = num(i)?;
            if v.fract() != 0.0 || v.abs() > 1e6 {
                return Err(fmt(n, format!("column '{}': {v} is not an array index", h[i])));
            }
            Ok(v as i32)
        };
        if let Some(sel) = cols.4
            && num(sel)? == 0.0
        {
            unselected += 1;
            continue;
        }
        let (ax, ay) = (int(cols.0)?, int(cols.1)?);
        let (px, py) = (num(cols.2)? as f32, num(cols.3)? as f32);
        // a number past f32's range (found by fuzzing) would become an infinite position
        if !px.is_finite() || !py.is_finite() {
            return Err(fmt(n, "pixel position out of range".to_string()));
        }
        spots.push(Spot { key: format!("{ax}x{ay}"), array_x: ax, array_y: ay, pixel_x: px, pixel_y: py });
    }
    if header.is_none() {
        return Err(Error::format(path, "empty spot file"));
    }
    let mut seen = HashSet::new();
    if let Some(d) = spots.iter().find(|s| !seen.insert(s.key.clone())) {
        return Err(Error::format(path, format!("spot {} appears twice", d.key)));
    }
    Ok((spots, unselected))
}

/// Loads HER2ST section `section` ("B4", "C2", ...) from `dir` (the `her2st` directory holding
/// one sub-directory per section, or the section directory itself).
pub fn load_her2st(dir: impl AsRef<Path>, section: &str) -> Result<SpotSection> {
    let sdir = section_dir(dir.as_ref(), section)?;
    let counts_path = [format!("{section}.tsv.gz"), format!("{section}.tsv")]
        .iter()
        .map(|f| sdir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::format(&sdir, format!("no counts file {section}.tsv.gz")))?;
    let spot_path = sdir.join(format!("{section}_selection.tsv"));
    if !spot_path.is_file() {
        return Err(Error::format(&sdir, format!("no spot file {section}_selection.tsv")));
    }
    let image_path = find_image(&sdir)?;

    let mut m = read_delimited(&counts_path, None)?;
    m.check_shape()?;
    m.drop_duplicate_genes();
    if let Some(v) = m.values.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
        return Err(Error::format(&counts_path, format!("count {v} is negative or not finite")));
    }
    let (coords, unselected) = read_spot_file(&spot_path)?;
    let by_key: HashMap<&str, &Spot> = coords.iter().map(|s| (s.key.as_str(), s)).collect();

    let ng = m.genes.len();
    let mut report = JoinReport { unselected, ..Default::default() };
    let mut spots = Vec::new();
    let mut counts = Vec::new();
    let mut count_keys = HashSet::new();
    for (i, key) in m.samples.iter().enumerate() {
        let key = key.trim();
        if parse_key(key).is_none() {
            return Err(Error::format(&counts_path, format!("row {key}: spot key is not XxY")));
        }
        if !count_keys.insert(key.to_string()) {
            return Err(Error::format(&counts_path, format!("spot {key} appears twice")));
        }
        match by_key.get(key) {
            Some(s) => {
                spots.push((*s).clone());
                counts.extend_from_slice(&m.values[i * ng..(i + 1) * ng]);
            }
            None => report.counts_only.push(key.to_string()),
        }
    }
    report.coords_only = coords.iter().filter(|s| !count_keys.contains(&s.key)).map(|s| s.key.clone()).collect();
    if spots.is_empty() {
        return Err(Error::format(&counts_path, format!("no spot keys in common with {}", spot_path.display())));
    }
    Ok(SpotSection { name: section.to_string(), image_path, grid: Grid::Square, spots, genes: m.genes, counts, normalized: false, report })
}

/// Where [`load_spaceranger`] takes the image from.
#[derive(Debug, Clone, PartialEq)]
pub enum VisiumImage {
    /// `spatial/tissue_hires_image.png`, coordinates scaled by `tissue_hires_scalef`.
    Hires,
    /// A full-resolution image (coordinates used as they are).
    FullRes(PathBuf),
}

/// Reads Space Ranger `tissue_positions_list.csv` (no header) or `tissue_positions.csv` (header):
/// `barcode,in_tissue,array_row,array_col,pxl_row_in_fullres,pxl_col_in_fullres`. Returns the
/// in-tissue spots (x = column, y = row; pixels scaled by `scale`) and the count of the others.
pub fn read_visium_positions(path: &Path, scale: f32) -> Result<(Vec<Spot>, usize)> {
    let mut lines = Lines::open(path)?;
    let fmt = |n: usize, m: String| Error::format(path, format!("line {n}: {m}"));
    let mut spots = Vec::new();
    let mut off = 0;
    while let Some((n, line)) = lines.next_line()? {
        if line.trim().is_empty() || line.starts_with("barcode") {
            continue;
        }
        let f = split_fields(line, ',').map_err(|m| fmt(n, m))?;
        if f.len() != 6 {
            return Err(fmt(n, format!("{} fields, expected 6", f.len())));
        }
        let num = |i: usize| -> Result<f64> {
            f[i].trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| fmt(n, format!("field {}: '{}' is not a number", i + 1, f[i])))
        };
        if num(1)? == 0.0 {
            off += 1;
            continue;
        }
        let (row, col) = (num(2)?, num(3)?);
        if row.fract() != 0.0 || col.fract() != 0.0 || row.abs() > 1e6 || col.abs() > 1e6 {
            return Err(fmt(n, format!("array position ({row}, {col}) is not integer")));
        }
        spots.push(Spot {
            key: f[0].trim().to_string(),
            array_x: col as i32,
            array_y: row as i32,
            pixel_x: (num(5)? * scale as f64) as f32,
            pixel_y: (num(4)? * scale as f64) as f32,
        });
    }
    Ok((spots, off))
}

/// Loads a Space Ranger output directory: `filtered_feature_bc_matrix.h5` (raw counts) and
/// `spatial/` (positions, `scalefactors_json.json`, images). Spots are joined on the barcode.
#[cfg(feature = "hdf5")]
pub fn load_spaceranger(dir: impl AsRef<Path>, image: VisiumImage) -> Result<SpotSection> {
    let dir = dir.as_ref();
    let spatial = dir.join("spatial");
    let (image_path, scale) = match image {
        VisiumImage::FullRes(p) => (p, 1.0),
        VisiumImage::Hires => {
            let sf_path = spatial.join("scalefactors_json.json");
            let text = std::fs::read_to_string(&sf_path).map_err(|e| Error::io(&sf_path, e))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::format(&sf_path, format!("bad JSON: {e}")))?;
            let s = v["tissue_hires_scalef"]
                .as_f64()
                .filter(|s| s.is_finite() && *s > 0.0)
                .ok_or_else(|| Error::format(&sf_path, "no positive tissue_hires_scalef"))?;
            (spatial.join("tissue_hires_image.png"), s as f32)
        }
    };
    let pos_path = ["tissue_positions.csv", "tissue_positions_list.csv"]
        .iter()
        .map(|f| spatial.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::format(&spatial, "no tissue_positions.csv / tissue_positions_list.csv"))?;
    let (coords, off) = read_visium_positions(&pos_path, scale)?;
    let counts_path = dir.join("filtered_feature_bc_matrix.h5");
    let mut m = crate::data::h5::read_hdf5(&counts_path)?;
    m.check_shape()?;
    m.drop_duplicate_genes();
    let by_key: HashMap<&str, &Spot> = coords.iter().map(|s| (s.key.as_str(), s)).collect();
    let ng = m.genes.len();
    let mut report = JoinReport { unselected: off, ..Default::default() };
    let (mut spots, mut counts) = (Vec::new(), Vec::new());
    let mut seen = HashSet::new();
    for (i, key) in m.samples.iter().enumerate() {
        seen.insert(key.as_str());
        match by_key.get(key.as_str()) {
            Some(s) => {
                spots.push((*s).clone());
                counts.extend_from_slice(&m.values[i * ng..(i + 1) * ng]);
            }
            None => report.counts_only.push(key.clone()),
        }
    }
    report.coords_only = coords.iter().filter(|s| !seen.contains(s.key.as_str())).map(|s| s.key.clone()).collect();
    if spots.is_empty() {
        return Err(Error::format(&counts_path, "no barcodes in common with the spot positions"));
    }
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(SpotSection { name, image_path, grid: Grid::Hex, spots, genes: m.genes, counts, normalized: false, report })
}

/// Loads a Visium `.h5ad`: spots from `obsm/spatial` (x, y in pixels of the full-resolution
/// image, multiplied by `scale` for a downscaled `image`), expression from `matrix` (`"X"`,
/// `"raw"` or `"layers/<name>"`; say `normalized = true` when it is already log-normalized).
/// Array positions come from obs `array_col`/`array_row` when present (else [`Grid::Unknown`],
/// array coordinates 0); spots with obs `in_tissue` = 0 are dropped.
#[cfg(feature = "hdf5")]
pub fn load_visium_h5ad(
    path: impl AsRef<Path>,
    matrix: &str,
    normalized: bool,
    image: impl AsRef<Path>,
    scale: f32,
) -> Result<SpotSection> {
    use crate::data::h5ad::{obs_columns, read_h5ad_matrix, read_obs_column, read_obsm};
    let path = path.as_ref();
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::Input(format!("coordinate scale {scale} must be > 0")));
    }
    let mut m = read_h5ad_matrix(path, matrix, None)?;
    m.check_shape()?;
    m.drop_duplicate_genes();
    let xy = read_obsm(path, "spatial")?;
    if xy.rows != m.samples.len() || xy.cols < 2 {
        return Err(Error::format(path, format!("obsm/spatial is {}×{}, expected {}×2", xy.rows, xy.cols, m.samples.len())));
    }
    let cols = obs_columns(path)?;
    let int_col = |name: &str| -> Result<Option<Vec<i32>>> {
        if !cols.iter().any(|c| c == name) {
            return Ok(None);
        }
        read_obs_column(path, name)?
            .iter()
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 1e6)
                    .map(|f| f as i32)
                    .ok_or_else(|| Error::format(path, format!("obs {name}: '{v}' is not an integer")))
            })
            .collect::<Result<Vec<i32>>>()
            .map(Some)
    };
    let (ax, ay, in_tissue) = (int_col("array_col")?, int_col("array_row")?, int_col("in_tissue")?);
    let grid = if ax.is_some() && ay.is_some() { Grid::Hex } else { Grid::Unknown };
    let ng = m.genes.len();
    let mut report = JoinReport::default();
    let (mut spots, mut counts) = (Vec::new(), Vec::new());
    for (i, key) in m.samples.iter().enumerate() {
        if in_tissue.as_ref().is_some_and(|t| t[i] == 0) {
            report.unselected += 1;
            continue;
        }
        let (x, y) = (xy.values[i * xy.cols], xy.values[i * xy.cols + 1]);
        if !(x.is_finite() && y.is_finite()) {
            return Err(Error::format(path, format!("spot {key}: spatial ({x}, {y}) is not finite")));
        }
        spots.push(Spot {
            key: key.clone(),
            array_x: ax.as_ref().map_or(0, |a| a[i]),
            array_y: ay.as_ref().map_or(0, |a| a[i]),
            pixel_x: x * scale,
            pixel_y: y * scale,
        });
        counts.extend_from_slice(&m.values[i * ng..(i + 1) * ng]);
    }
    if spots.is_empty() {
        return Err(Error::format(path, "no in-tissue spots"));
    }
    let name = path.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(SpotSection { name, image_path: image.as_ref().to_path_buf(), grid, spots, genes: m.genes, counts, normalized, report })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bioedge_slide::image_prep::{crop_square, image_dimensions, load_rgb};
    use std::sync::OnceLock;

    fn her2st() -> PathBuf {
        crate::data::test_data("her2st")
    }

    fn section(name: &str) -> &'static SpotSection {
        static B4: OnceLock<SpotSection> = OnceLock::new();
        static C2: OnceLock<SpotSection> = OnceLock::new();
        let cell = if name == "B4" { &B4 } else { &C2 };
        cell.get_or_init(|| load_her2st(her2st(), name).unwrap())
    }

    fn c2_image() -> &'static RgbImage {
        static IMG: OnceLock<RgbImage> = OnceLock::new();
        IMG.get_or_init(|| load_rgb(&section("C2").image_path).unwrap())
    }

    fn check_section(name: &str, n_spots: usize, n_genes: usize) {
        let s = section(name);
        assert_eq!(s.n_spots(), n_spots, "{name} spots");
        assert_eq!(s.n_genes(), n_genes, "{name} genes");
        assert_eq!(s.counts.len(), n_spots * n_genes);
        let (w, h) = image_dimensions(&s.image_path).unwrap();
        s.check_inside(w, h).unwrap();
        let spacing = s.spacing_px().unwrap();
        println!(
            "{name}: {} spots, {} genes, image {w}×{h}, spacing {spacing:.1} px, dropped {} \
             (counts only {:?}, coords only {:?}, unselected {})",
            s.n_spots(),
            s.n_genes(),
            s.report.dropped(),
            s.report.counts_only,
            s.report.coords_only,
            s.report.unselected
        );
        assert!(spacing > 150.0 && spacing < 500.0, "{name} spacing {spacing}");
        assert!(s.library_sizes().iter().all(|t| *t > 0.0));
    }

    #[test]
    fn spots_her2st_b4() {
        check_section("B4", 283, 15289);
    }

    #[test]
    fn spots_her2st_c2() {
        check_section("C2", 187, 15706);
    }

    /// A synthetic section: gene `var` alternates 0 / 50 counts (highly variable), `flat` is 10
    /// everywhere, `rare` is seen in one spot only, the rest are small noise around 20.
    fn toy(name: &str, n: usize) -> SpotSection {
        let mut genes = vec!["var".to_string(), "flat".into(), "rare".into()];
        genes.extend((0..30).map(|i| format!("g{i}")));
        let ng = genes.len();
        let mut counts = vec![0f32; n * ng];
        for s in 0..n {
            counts[s * ng] = if s % 2 == 0 { 0.0 } else { 50.0 };
            counts[s * ng + 1] = 10.0;
            counts[s * ng + 2] = if s == 0 { 30.0 } else { 0.0 };
            for g in 3..ng {
                counts[s * ng + g] = 20.0 + ((s * 7 + g * 3) % 5) as f32;
            }
        }
        let spots = (0..n).map(|i| Spot { key: format!("{i}x0"), array_x: i as i32, array_y: 0, pixel_x: 0.0, pixel_y: 0.0 }).collect();
        SpotSection {
            name: name.into(),
            image_path: PathBuf::new(),
            grid: Grid::Square,
            spots,
            genes,
            counts,
            normalized: false,
            report: JoinReport::default(),
        }
    }

    #[test]
    fn spots_hvg_picks_variable_detected_genes() {
        let (a, b) = (toy("A", 40), toy("B", 30));
        let hvg = select_hvg(&[&a, &b], 2, 10).unwrap();
        assert!(hvg.contains(&"var".to_string()), "{hvg:?}");
        // `rare` is highly variable but detected in 2 of 70 spots: dropped by the detection filter
        let all = select_hvg(&[&a, &b], 33, 10).unwrap();
        assert!(!all.contains(&"rare".to_string()), "{all:?}");
        assert!(select_hvg(&[&a, &b], 33, 1).unwrap().contains(&"rare".to_string()));
        assert!(select_hvg(&[&a], 0, 1).is_err());
        assert!(select_hvg(&[&a], 5, 1000).is_err(), "no gene is detected in 1000 spots");
    }

    #[test]
    fn spots_normalize_log1p() {
        let v = normalize_log1p(&[1.0, 3.0, 0.0, 0.0], 2);
        assert!((v[0] - (2500.0f32).ln_1p()).abs() < 1e-4);
        assert!((v[1] - (7500.0f32).ln_1p()).abs() < 1e-4);
        assert_eq!(&v[2..], &[0.0, 0.0]);
    }

    #[test]
    fn spots_gene_selection_and_alignment() {
        let (b4, c2) = (section("B4"), section("C2"));
        let genes = select_genes(&[b4], DEFAULT_N_GENES).unwrap();
        assert_eq!(genes.len(), DEFAULT_N_GENES);
        println!("B4 top genes: {:?}", &genes[..10]);
        let t = c2.targets(&genes);
        println!("C2 lacks {} of {} B4 target genes", t.missing.len(), genes.len());
        assert_eq!(t.values.len(), c2.n_spots() * genes.len());
        assert!(t.missing.len() < genes.len() / 10);
        assert!(t.values.iter().all(|v| v.is_finite() && *v >= 0.0));
        let var = select_genes_by(&[b4, c2], 50, GeneRanking::Variance).unwrap();
        assert_eq!(var.len(), 50);
        let mut fake = c2.clone();
        fake.genes[0] = "NOT_A_GENE".into();
        let t = fake.targets(&["NOT_A_GENE".to_string(), "XYZ_MISSING".to_string()]);
        assert_eq!(t.missing, vec!["XYZ_MISSING".to_string()]);
        assert!(select_genes(&[], 10).is_err());
    }

    #[test]
    fn spots_c2_patches() {
        let s = section("C2");
        let img = c2_image();
        assert_eq!(img.dimensions(), (9274, 9911));
        let side = s.patch_side(DEFAULT_SIDE_FACTOR).unwrap();
        let prep = Preprocess::default();
        let mut few = s.clone();
        few.spots.truncate(3);
        let p = patches(&few, img, side, &prep).unwrap();
        assert_eq!(p.len(), 3);
        let lo = (0.0 - 0.485) / 0.229 - 1e-4;
        let hi = (1.0 - 0.406) / 0.225 + 1e-4;
        for t in &p {
            assert_eq!(t.len(), 3 * 224 * 224);
            assert!(t.iter().all(|v| v.is_finite() && *v >= lo && *v <= hi));
            // H&E tissue is not a flat colour.
            let mean = t.iter().sum::<f32>() / t.len() as f32;
            assert!(t.iter().any(|v| (v - mean).abs() > 0.1));
        }
        // A spot outside the image: clear error, no patches.
        let mut bad = few.clone();
        bad.spots[1].pixel_x = 20_000.0;
        let e = patches(&bad, img, side, &prep).unwrap_err().to_string();
        assert!(e.contains("outside") && e.contains(&bad.spots[1].key), "{e}");
        let e = patch_iter(&bad, img, side, &prep).nth(1).unwrap().unwrap_err().to_string();
        assert!(e.contains("outside") && e.contains("C2"), "{e}");
        // Near the border: edge-padded patch of the requested side.
        let c = crop_square(img, 5.0, 5.0, side).unwrap();
        assert_eq!(c.width(), side.round() as u32);
    }

    #[test]
    fn spots_truncated_jpeg_is_an_error() {
        let src = &section("B4").image_path;
        let bytes = std::fs::read(src).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("truncated.jpg");
        std::fs::write(&p, &bytes[..bytes.len() / 3]).unwrap();
        let e = load_rgb(&p).unwrap_err().to_string();
        println!("{e}");
        assert!(e.contains("truncated.jpg"), "{e}");
        let p2 = dir.path().join("header_only.jpg");
        std::fs::write(&p2, &bytes[..600]).unwrap();
        assert!(load_rgb(&p2).unwrap_err().to_string().contains("header_only.jpg"));
        assert!(load_rgb(dir.path().join("absent.jpg")).is_err());
    }

    #[cfg(feature = "hdf5")]
    #[test]
    fn spots_visium_spaceranger() {
        let dir = crate::data::test_data("squidpy_visium_tiny");
        let s = load_spaceranger(&dir, VisiumImage::Hires).unwrap();
        let img = load_rgb(&s.image_path).unwrap();
        s.check_inside(img.width(), img.height()).unwrap();
        let spacing = s.spacing_px().unwrap();
        println!(
            "visium: {} spots, {} genes, image {:?}, spacing {spacing:.1} px (hires), dropped {}",
            s.n_spots(),
            s.n_genes(),
            img.dimensions(),
            s.report.dropped()
        );
        assert!(s.n_spots() > 50 && s.n_genes() > 10);
        assert!(spacing > 10.0 && spacing < 40.0, "{spacing}");
        let p = patches(&s, &img, s.patch_side(DEFAULT_SIDE_FACTOR).unwrap(), &Preprocess::default()).unwrap();
        assert_eq!(p.len(), s.n_spots());
        assert!(p.iter().all(|t| t.len() == 3 * 224 * 224));
    }

    #[cfg(feature = "hdf5")]
    #[test]
    fn spots_visium_h5ad() {
        let dir = crate::data::test_data("squidpy_visium_tiny");
        let s = load_visium_h5ad(dir.join("test_data.h5ad"), "X", true, dir.join("test_img.jpg"), 1.0).unwrap();
        let img = load_rgb(&s.image_path).unwrap();
        s.check_inside(img.width(), img.height()).unwrap();
        let spacing = s.spacing_px().unwrap();
        println!(
            "visium h5ad: {} spots, {} genes, image {:?}, spacing {spacing:.1} px, grid {:?}",
            s.n_spots(),
            s.n_genes(),
            img.dimensions(),
            s.grid
        );
        assert_eq!((s.n_spots(), s.n_genes()), (49, 1999));
        let genes = select_genes(&[&s], 20).unwrap();
        let t = s.targets(&genes);
        assert!(t.missing.is_empty() && t.values.len() == 49 * 20);
        let side = s.patch_side(DEFAULT_SIDE_FACTOR).unwrap();
        let p = patches(&s, &img, side, &Preprocess::default()).unwrap();
        assert_eq!(p.len(), 49);
    }

    #[test]
    fn spots_bad_inputs() {
        assert!(load_her2st(her2st(), "Z9").is_err());
        assert!(load_her2st(her2st(), "../B4").is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s_selection.tsv");
        std::fs::write(&p, "x\ty\tpixel_x\tpixel_y\tselected\n1\t2\t10.5\tfoo\t1\n").unwrap();
        let e = read_spot_file(&p).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("foo"), "{e}");
        std::fs::write(&p, "x\ty\tpixel_x\tpixel_y\tselected\n1\t2\t10.5\t3\t1\n1\t3\t1\t1\t0\n").unwrap();
        let (s, unsel) = read_spot_file(&p).unwrap();
        assert_eq!((s.len(), unsel, s[0].key.as_str()), (1, 1, "1x2"));
    }
}

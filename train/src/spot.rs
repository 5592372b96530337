//! `train spot`: TCGN-style spot model (H&E patch → expression) on HER2ST sections; evaluation on a
//! held-out section by per-gene Pearson r against a training-mean and a ridge baseline; verified
//! ONNX export with a model card.
//!
//! Targets are log1p-normalized expression, standardized per gene with the training mean/std for
//! the loss; the standardization is folded back into the head (`W·sd`, `b·sd + mu`) before export,
//! so the ONNX output `expression` is log1p-normalized expression (no extra ops).

use crate::pipeline::{Draft, progress_with, record_parity};
use crate::verify;
use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::ProgressBar;
use infer::image_prep::{Preprocess, load_rgb};
use infer::runtime::Value;
use infer::spots::{SpotSection, load_her2st, select_genes};
use models::burn::module::Param;
use models::burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use models::burn::prelude::*;
use models::burn::store::{BurnpackStore, ModuleSnapshot};
use models::metrics::{mean, median, per_gene_r};
use models::spot::{INPUT, OUTPUT, SpotModel, SpotModelConfig};
use models::spot_ensemble::SpotEnsemble;
use models::spot_init::{InitOptions, load_init, parse_remap};
use onnx_format::card::{Family, ModelCard, Preprocessing, SpotImage};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Legacy ST spot centre-to-centre distance assumed for the micron figure in the card.
const ST_SPACING_UM: f32 = 200.0;
/// Most held-out patches used for the parity check (more patches, more chances for a near-tie
/// in the token graph's TopK to pick different neighbours on another runtime).
const PARITY_SPOTS: usize = 64;
/// Genes in the "top expressed" summary.
const TOP: usize = 50;

#[derive(Args, Debug)]
pub struct SpotArgs {
    /// HER2ST directory (one sub-directory per section).
    #[arg(long, default_value = "../shared/data/her2st")]
    pub data: PathBuf,
    /// Training sections, comma-separated.
    #[arg(long, default_value = "B4", value_delimiter = ',')]
    pub train: Vec<String>,
    /// Held-out evaluation section.
    #[arg(long, default_value = "C2")]
    pub eval: String,
    /// Target genes: top N by mean log-normalized expression on the training sections.
    #[arg(long, default_value_t = 250)]
    pub genes: usize,
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cnn-context (default: the plain CNN on the spot plus a pooled context branch on a 2× patch),
    /// cnn (ST-Net-like plain CNN), small (TCGN-style, CPU) or large (TCGN-style, GPU).
    #[arg(long, default_value = "cnn-context")]
    pub config: String,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value = "out/spot-small.onnx")]
    pub out: PathBuf,
    /// Save the weights (burnpack) here after every epoch.
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Start from these weights (a checkpoint of the same config and gene count); the Adam state
    /// saved beside it (`*.optim.bpk`) is restored too when present.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Evaluate on the held-out section every N epochs (median per-gene Pearson r; 0 = only at
    /// the end). Reported only: the weights of the last epoch are exported.
    #[arg(long, default_value_t = 1)]
    pub eval_every: usize,
    /// Use at most this many spots per section (evenly spaced; for quick runs and tests).
    #[arg(long)]
    pub max_spots: Option<usize>,
    #[arg(long, default_value_t = 1e-4)]
    pub tolerance: f64,
    /// Stain jitter σ: each haematoxylin / eosin / DAB optical density is scaled by U(1-σ, 1+σ)
    /// and shifted by U(-σ, σ) (Tellez et al. 2018); 0.2, the default, has the bounds of their 2019
    /// "HED-strong" and beat 0.1 across patients (docs/decisions.md §13); 0 turns it off.
    #[arg(long, default_value_t = 0.2)]
    pub hed_jitter: f32,
    /// Inner validation section (not trained on): the epoch with the best median r there is the
    /// one exported. Without it the last epoch is exported.
    #[arg(long)]
    pub val: Option<String>,
    /// Draw every training section equally often in an epoch (an epoch still has as many steps
    /// as training spots); off: each spot once per epoch.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub balance: bool,
    /// Start from pretrained weights: PyTorch `.pt`/`.pth`, `.safetensors`, burnpack `.bpk` or an
    /// exported `.onnx`; tensors the file lacks (e.g. all but the stem) keep their random init.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// `FROM=TO` regex rename of the `--init` file's tensor names, repeatable (e.g.
    /// `'^encoder\.(\d+)\.=stem.$1.'`).
    #[arg(long, value_parser = remap_arg)]
    pub init_remap: Vec<(String, String)>,
    /// Export the mean over the 8 dihedral views of each patch (test-time augmentation, inside
    /// the ONNX file; 8× the compute per spot).
    #[arg(long)]
    pub tta: bool,
    /// Train this many models (seeds `--seed`, `--seed`+1, …) and export their mean as one model.
    #[arg(long, default_value_t = 1)]
    pub ensemble: usize,
    /// Training loss: `mse`, or `mse-corr` (MSE plus 1 − the mean over genes of each gene's
    /// Pearson r across the batch).
    #[arg(long, value_enum, default_value_t = SpotLoss::Mse)]
    pub loss: SpotLoss,
    /// What the loss compares: per-gene `standardized` targets (training mean and std, folded into
    /// the head at export) or the `raw` log1p-normalized expression.
    #[arg(long, value_enum, default_value_t = TargetScale::Standardized)]
    pub targets: TargetScale,
}

/// The training loss of the spot model.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpotLoss {
    /// Mean squared error.
    Mse,
    /// MSE + (1 − mean over genes of the batch Pearson r).
    MseCorr,
}

impl SpotLoss {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            SpotLoss::Mse => "MSE",
            SpotLoss::MseCorr => "MSE + (1 − mean per-gene Pearson r over the batch)",
        }
    }

    fn value(self, pred: Tensor<2>, target: Tensor<2>) -> Tensor<1> {
        let mse = (pred.clone() - target.clone()).powf_scalar(2.0).mean();
        match self {
            SpotLoss::Mse => mse,
            SpotLoss::MseCorr => mse + (1.0 - batch_corr(pred, target).mean()),
        }
    }
}

/// Per-gene Pearson r between `pred` and `target` `[batch, genes]` over the batch, `[genes]`; a
/// gene constant in the batch gets 0.
fn batch_corr(pred: Tensor<2>, target: Tensor<2>) -> Tensor<1> {
    let g = pred.dims()[1];
    let pc = pred.clone() - pred.mean_dim(0);
    let tc = target.clone() - target.mean_dim(0);
    let num = (pc.clone() * tc.clone()).sum_dim(0);
    let den = (pc.powf_scalar(2.0).sum_dim(0) * tc.powf_scalar(2.0).sum_dim(0) + 1e-8).sqrt();
    (num / den).reshape([g])
}

/// The scale of the targets the loss sees.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetScale {
    /// Per gene, (y − training mean) / training std.
    Standardized,
    /// log1p-normalized expression as it is.
    Raw,
}

impl TargetScale {
    /// `standardized` or `raw`, as on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            TargetScale::Standardized => "standardized",
            TargetScale::Raw => "raw",
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            TargetScale::Standardized => "per-gene standardized targets (training mean/std; folded into the head at export)",
            TargetScale::Raw => "raw log1p-normalized targets",
        }
    }
}

/// A spot model or a mean of them (an ensemble and/or test-time augmentation).
pub(crate) trait Forward {
    /// Normalized images `[B, 3, S, S]` → expression `[B, G]`.
    fn forward(&self, x: Tensor<4>) -> Tensor<2>;
}

impl Forward for SpotModel {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        SpotModel::forward(self, x)
    }
}

impl Forward for SpotEnsemble {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        SpotEnsemble::forward(self, x)
    }
}

/// What `train spot` exports.
enum Exported {
    One(Box<SpotModel>),
    Mean(SpotEnsemble),
}

impl Exported {
    fn model(&self) -> &dyn Forward {
        match self {
            Exported::One(m) => m.as_ref(),
            Exported::Mean(e) => e,
        }
    }

    fn device(&self) -> Device {
        match self {
            Exported::One(m) => m.head.weight.val().device(),
            Exported::Mean(e) => e.members()[0].head.weight.val().device(),
        }
    }

    fn export(&self) -> onnx_format::pb::ModelProto {
        match self {
            Exported::One(m) => m.export(vec![]),
            Exported::Mean(e) => e.export(vec![]),
        }
    }

    fn num_params(&self) -> usize {
        match self {
            Exported::One(m) => m.num_params(),
            Exported::Mean(e) => e.members().iter().map(|m| m.num_params()).sum(),
        }
    }
}

pub(crate) fn remap_arg(s: &str) -> std::result::Result<(String, String), String> {
    parse_remap(s).map_err(|e| e.to_string())
}

/// What one training run needs besides the data.
#[derive(Clone)]
pub(crate) struct Recipe<'a> {
    pub cfg: &'a SpotModelConfig,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    pub hed_jitter: f32,
    pub balance: bool,
    /// Print a progress bar per epoch (off when several runs share the terminal).
    pub bars: bool,
    /// Prefix of the per-epoch log lines.
    pub label: String,
    pub config_name: &'a str,
    pub checkpoint_dir: Option<&'a std::path::Path>,
    pub resume: Option<&'a std::path::Path>,
    pub init: Option<(&'a std::path::Path, &'a InitOptions)>,
    pub loss: SpotLoss,
    pub targets: TargetScale,
}

/// One section's patches (`size × size` RGB, HWC bytes), prepared once.
#[derive(Clone)]
pub(crate) struct Patches {
    pub name: String,
    pub spots_total: usize,
    /// Rows of the section's spots that were kept (`--max-spots`).
    pub rows: Vec<usize>,
    pub images: Vec<Vec<u8>>,
    pub side_px: f32,
}

/// One section's patches and targets (`spots × genes`) for a gene list.
pub(crate) struct Data<'a> {
    pub patches: &'a Patches,
    pub targets: Vec<f32>,
}

impl std::ops::Deref for Data<'_> {
    type Target = Patches;
    fn deref(&self) -> &Patches {
        self.patches
    }
}

impl<'a> Data<'a> {
    /// Targets of `genes` on the kept spots (genes the section lacks are 0, with a note).
    pub fn new(sec: &SpotSection, patches: &'a Patches, genes: &[String], quiet: bool) -> Self {
        let g = genes.len();
        let t = sec.targets(genes);
        if !t.missing.is_empty() && !quiet {
            eprintln!("section {}: {} target gene(s) missing there, taken as 0 (first {})", sec.name, t.missing.len(), t.missing[0]);
        }
        let targets = patches.rows.iter().flat_map(|&r| t.values[r * g..(r + 1) * g].iter().copied()).collect();
        Data { patches, targets }
    }
}

/// Crops (side `side_factor` × the spot spacing) and resizes every kept spot of a section once
/// (RGB, for augmentation).
pub(crate) fn load_patches(sec: &SpotSection, prep: &Preprocess, max_spots: Option<usize>, side_factor: f32) -> Result<Patches> {
    let img = load_rgb(&sec.image_path).with_context(|| format!("section {}", sec.name))?;
    sec.check_inside(img.width(), img.height())?;
    let side = sec.patch_side(side_factor)?;
    let rows = pick(sec.n_spots(), max_spots);
    let mut images = Vec::with_capacity(rows.len());
    for &r in &rows {
        let s = &sec.spots[r];
        let p = prep.crop_resize(&img, s.pixel_x, s.pixel_y, side).with_context(|| format!("section {} spot {}", sec.name, s.key))?;
        images.push(p.into_raw());
    }
    eprintln!("section {}: {} of {} spots, patch side {side:.1} px", sec.name, rows.len(), sec.n_spots());
    Ok(Patches { name: sec.name.clone(), spots_total: sec.n_spots(), rows, images, side_px: side })
}

/// Normalizes one HWC RGB patch into CHW ([`Preprocess::normalize_raw`]).
pub(crate) type Normalize<'a> = &'a dyn Fn(&[u8], &mut [f32]) -> Result<()>;

/// Evenly spaced subset of `0..n` of at most `max` indices.
fn pick(n: usize, max: Option<usize>) -> Vec<usize> {
    match max {
        Some(m) if m < n => (0..m).map(|i| i * n / m).collect(),
        _ => (0..n).collect(),
    }
}

/// Ruifrok & Johnston's H&E-DAB stain vectors (rows: optical density of each stain in R, G, B),
/// as scikit-image's `rgb_from_hed`.
const RGB_FROM_HED: [[f32; 3]; 3] = [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]];

fn inverse3(m: [[f32; 3]; 3]) -> [[f32; 3]; 3] {
    let c = |r: usize, k: usize| {
        m[(r + 1) % 3][(k + 1) % 3] * m[(r + 2) % 3][(k + 2) % 3] - m[(r + 1) % 3][(k + 2) % 3] * m[(r + 2) % 3][(k + 1) % 3]
    };
    let det: f32 = (0..3).map(|k| m[0][k] * c(0, k)).sum();
    let mut inv = [[0f32; 3]; 3];
    for (r, row) in inv.iter_mut().enumerate() {
        for (k, v) in row.iter_mut().enumerate() {
            *v = c(k, r) / det;
        }
    }
    inv
}

/// HED stain jitter of an RGB patch (HWC bytes) in place: per stain, OD × α + β.
#[cfg(test)]
fn hed_jitter(px: &mut [u8], sigma: f32, rng: &mut StdRng) {
    let (a, b) = hed_draw(sigma, rng);
    hed_apply(px, &a, &b);
}

/// The stain scales α and shifts β of [`hed_apply`], drawn in that order.
fn hed_draw(sigma: f32, rng: &mut StdRng) -> ([f32; 3], [f32; 3]) {
    let a: [f32; 3] = std::array::from_fn(|_| 1.0 + rng.random_range(-sigma..sigma));
    let b: [f32; 3] = std::array::from_fn(|_| rng.random_range(-sigma..sigma));
    (a, b)
}

fn hed_apply(px: &mut [u8], a: &[f32; 3], b: &[f32; 3]) {
    let hed_from_rgb = inverse3(RGB_FROM_HED);
    for p in px.chunks_exact_mut(3) {
        let od: [f32; 3] = std::array::from_fn(|c| -((p[c] as f32).max(1.0) / 255.0).ln());
        let hed: [f32; 3] = std::array::from_fn(|k| (0..3).map(|c| od[c] * hed_from_rgb[c][k]).sum::<f32>() * a[k] + b[k]);
        for c in 0..3 {
            let od2: f32 = (0..3).map(|k| hed[k] * RGB_FROM_HED[k][c]).sum();
            p[c] = (255.0 * (-od2).exp()).round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// The random draws of one patch's augmentation: flips, a 90° rotation, ±10 % brightness and
/// contrast, then (when stain jitter is on) the stain scales and shifts. Drawn in this order on
/// the training thread's generator, applied anywhere: the stream does not depend on threads.
#[derive(Clone, Copy, Debug)]
struct Draw {
    fh: bool,
    fv: bool,
    rot: u8,
    bright: f32,
    contrast: f32,
    hed: Option<([f32; 3], [f32; 3])>,
}

impl Draw {
    fn new(hed: f32, rng: &mut StdRng) -> Self {
        let (fh, fv, rot) = (rng.random::<bool>(), rng.random::<bool>(), rng.random_range(0..4u8));
        let bright = rng.random_range(-0.1f32..0.1) * 255.0;
        let contrast = 1.0 + rng.random_range(-0.1f32..0.1);
        let hed = (hed > 0.0).then(|| hed_draw(hed, rng));
        Self { fh, fv, rot, bright, contrast, hed }
    }

    /// The augmented copy of an `n × n` RGB patch (HWC bytes).
    fn apply(&self, src: &[u8], n: usize) -> Vec<u8> {
        let mean = src.iter().map(|&v| v as f32).sum::<f32>() / src.len().max(1) as f32;
        let mut out = vec![0u8; src.len()];
        for y in 0..n {
            for x in 0..n {
                let (sx, sy) = dihedral_source(x, y, n, self.rot, self.fh, self.fv);
                for c in 0..3 {
                    let v = src[(sy * n + sx) * 3 + c] as f32;
                    out[(y * n + x) * 3 + c] = ((v - mean) * self.contrast + mean + self.bright).round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        if let Some((a, b)) = &self.hed {
            hed_apply(&mut out, a, b);
        }
        out
    }
}

/// Source pixel of output pixel (x, y) under a 90° rotation `rot` and flips of an `n × n` patch.
fn dihedral_source(x: usize, y: usize, n: usize, rot: u8, fh: bool, fv: bool) -> (usize, usize) {
    let (mut sx, mut sy) = match rot {
        0 => (x, y),
        1 => (y, n - 1 - x),
        2 => (n - 1 - x, n - 1 - y),
        _ => (n - 1 - y, x),
    };
    if fh {
        sx = n - 1 - sx;
    }
    if fv {
        sy = n - 1 - sy;
    }
    (sx, sy)
}

/// Model predictions (`rows × genes`) for unaugmented patches.
pub(crate) fn predict(
    m: &dyn Forward,
    images: &[Vec<u8>],
    normalize: Normalize,
    prep: &Preprocess,
    device: &Device,
    batch: usize,
) -> Result<Vec<f32>> {
    let (len, s) = (prep.tensor_len(), prep.size as usize);
    let mut out = Vec::new();
    for chunk in images.chunks(batch.max(1)) {
        let mut x = vec![0f32; chunk.len() * len];
        for (i, raw) in chunk.iter().enumerate() {
            normalize(raw, &mut x[i * len..(i + 1) * len])?;
        }
        let t = Tensor::<4>::from_data(TensorData::new(x, [chunk.len(), 3, s, s]), device);
        out.extend(models::to_vec(m.forward(t)));
    }
    Ok(out)
}

/// (median all, mean all, median top-50, mean top-50); genes come ranked by training mean.
pub(crate) fn summarize(r: &[f64]) -> [f64; 4] {
    let top = &r[..r.len().min(TOP)];
    [median(r), mean(r), median(top), mean(top)]
}

/// Colour and texture statistics of an `n × n` RGB patch: per-channel mean and std, saturation
/// mean and std, an 8-bin grey histogram, mean gradient magnitude, fraction of bright pixels.
pub(crate) fn features(src: &[u8], n: usize) -> Vec<f64> {
    let px = n * n;
    let mut f = Vec::with_capacity(18);
    for c in 0..3 {
        let v: Vec<f64> = (0..px).map(|i| src[i * 3 + c] as f64 / 255.0).collect();
        let m = v.iter().sum::<f64>() / px as f64;
        let sd = (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / px as f64).sqrt();
        f.extend([m, sd]);
    }
    let mut grey = vec![0f64; px];
    let mut sat = vec![0f64; px];
    for i in 0..px {
        let (r, g, b) = (src[i * 3] as f64, src[i * 3 + 1] as f64, src[i * 3 + 2] as f64);
        grey[i] = (0.299 * r + 0.587 * g + 0.114 * b) / 255.0;
        let (hi, lo) = (r.max(g).max(b), r.min(g).min(b));
        sat[i] = if hi > 0.0 { (hi - lo) / hi } else { 0.0 };
    }
    let ms = sat.iter().sum::<f64>() / px as f64;
    f.extend([ms, (sat.iter().map(|x| (x - ms) * (x - ms)).sum::<f64>() / px as f64).sqrt()]);
    let mut hist = [0f64; 8];
    for &v in &grey {
        hist[((v * 8.0) as usize).min(7)] += 1.0 / px as f64;
    }
    f.extend(hist);
    let mut grad = 0.0;
    for y in 0..n - 1 {
        for x in 0..n - 1 {
            let i = y * n + x;
            grad += (grey[i + 1] - grey[i]).abs() + (grey[i + n] - grey[i]).abs();
        }
    }
    f.push(grad / ((n - 1) * (n - 1)) as f64);
    f.push(grey.iter().filter(|&&v| v > 220.0 / 255.0).count() as f64 / px as f64);
    f
}

/// Closed-form ridge on standardized features with an intercept (not penalized).
pub(crate) struct Ridge {
    mu: Vec<f64>,
    sd: Vec<f64>,
    ymean: Vec<f64>,
    beta: Vec<f64>, // features × genes
    g: usize,
}

impl Ridge {
    fn fit(x: &[Vec<f64>], y: &[f32], g: usize, rows: &[usize], lambda: f64) -> Result<Ridge> {
        let k = x[0].len();
        let n = rows.len() as f64;
        let mu: Vec<f64> = (0..k).map(|j| rows.iter().map(|&r| x[r][j]).sum::<f64>() / n).collect();
        let sd: Vec<f64> = (0..k)
            .map(|j| (rows.iter().map(|&r| (x[r][j] - mu[j]).powi(2)).sum::<f64>() / n).sqrt())
            .map(|s| if s > 1e-12 { s } else { 1.0 })
            .collect();
        let ymean: Vec<f64> = (0..g).map(|j| rows.iter().map(|&r| y[r * g + j] as f64).sum::<f64>() / n).collect();
        let z = |r: usize, j: usize| (x[r][j] - mu[j]) / sd[j];
        // [XᵀX + λI | XᵀY]
        let w = k + g;
        let mut a = vec![0f64; k * w];
        for &r in rows {
            for i in 0..k {
                let zi = z(r, i);
                for j in 0..k {
                    a[i * w + j] += zi * z(r, j);
                }
                for j in 0..g {
                    a[i * w + k + j] += zi * (y[r * g + j] as f64 - ymean[j]);
                }
            }
        }
        for i in 0..k {
            a[i * w + i] += lambda;
        }
        // Gauss-Jordan with partial pivoting
        for c in 0..k {
            let p = (c..k).max_by(|&i, &j| a[i * w + c].abs().total_cmp(&a[j * w + c].abs())).unwrap();
            if a[p * w + c].abs() < 1e-12 {
                bail!("ridge: singular system (λ = {lambda})");
            }
            for j in 0..w {
                a.swap(c * w + j, p * w + j);
            }
            let d = a[c * w + c];
            for j in 0..w {
                a[c * w + j] /= d;
            }
            for i in 0..k {
                if i != c {
                    let f = a[i * w + c];
                    if f != 0.0 {
                        for j in 0..w {
                            a[i * w + j] -= f * a[c * w + j];
                        }
                    }
                }
            }
        }
        let beta = (0..k).flat_map(|i| a[i * w + k..i * w + w].to_vec()).collect();
        Ok(Ridge { mu, sd, ymean, beta, g })
    }

    pub(crate) fn predict(&self, x: &[Vec<f64>]) -> Vec<f32> {
        let mut out = Vec::with_capacity(x.len() * self.g);
        for row in x {
            for j in 0..self.g {
                let mut v = self.ymean[j];
                for (i, x) in row.iter().enumerate() {
                    v += (x - self.mu[i]) / self.sd[i] * self.beta[i * self.g + j];
                }
                out.push(v as f32);
            }
        }
        out
    }
}

/// λ by median r on a seeded 80/20 split of the training spots, then refit on all of them.
pub(crate) fn ridge_baseline(x: &[Vec<f64>], y: &[f32], g: usize, seed: u64) -> Result<(Ridge, f64)> {
    let n = x.len();
    let mut rows: Vec<usize> = (0..n).collect();
    let mut lambda = 1.0;
    if n >= 10 {
        rows.shuffle(&mut StdRng::seed_from_u64(seed ^ 0x5eed));
        let cut = n * 4 / 5;
        let (fit_rows, val_rows) = rows.split_at(cut);
        let vy: Vec<f32> = val_rows.iter().flat_map(|&r| y[r * g..(r + 1) * g].to_vec()).collect();
        let vx: Vec<Vec<f64>> = val_rows.iter().map(|&r| x[r].clone()).collect();
        let mut best = f64::NEG_INFINITY;
        for l in [1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4] {
            let m = Ridge::fit(x, y, g, fit_rows, l)?;
            let r = median(&per_gene_r(&m.predict(&vx), &vy, g));
            if r > best {
                best = r;
                lambda = l;
            }
        }
    }
    let all: Vec<usize> = (0..n).collect();
    Ok((Ridge::fit(x, y, g, &all, lambda)?, lambda))
}

fn line(label: &str, s: [f64; 4], top: usize) -> String {
    format!("{label:<24} median r {:.4}  mean r {:.4} | top-{top}: median r {:.4}  mean r {:.4}", s[0], s[1], s[2], s[3])
}

/// The training, validation and held-out sections as patches and targets, and their gene list.
struct Prepared<'a> {
    genes: Vec<String>,
    train: Vec<Data<'a>>,
    val: Option<Data<'a>>,
    eval: Data<'a>,
    prep: Preprocess,
}

/// One HWC RGB patch into CHW model input.
pub(crate) fn normalizer(prep: &Preprocess) -> impl Fn(&[u8], &mut [f32]) -> Result<()> + '_ {
    move |raw, out| Ok(prep.normalize_raw(raw, out)?)
}

/// Per-gene standardization of the targets with training statistics.
pub(crate) struct Standardized {
    mu: Vec<f32>,
    sd: Vec<f32>,
    /// `y` standardized, `[spots, genes]`.
    z: Vec<f32>,
}

impl Standardized {
    fn fit(y: &[f32], g: usize, scale: TargetScale) -> Self {
        if scale == TargetScale::Raw {
            return Self { mu: vec![0.0; g], sd: vec![1.0; g], z: y.to_vec() };
        }
        let n = y.len() / g;
        let mu: Vec<f32> = (0..g).map(|j| (0..n).map(|i| y[i * g + j] as f64).sum::<f64>() as f32 / n as f32).collect();
        let sd: Vec<f32> = (0..g)
            .map(|j| ((0..n).map(|i| ((y[i * g + j] - mu[j]) as f64).powi(2)).sum::<f64>() / n as f64).sqrt() as f32)
            .map(|s| if s > 1e-6 { s } else { 1.0 })
            .collect();
        let z: Vec<f32> = y.iter().enumerate().map(|(i, v)| (v - mu[i % g]) / sd[i % g]).collect();
        Self { mu, sd, z }
    }

    /// Fold the standardization into the head: y = (h·W + b)·sd + mu.
    fn fold_into(&self, m: &mut SpotModel) {
        let g = self.mu.len();
        let dev = m.head.weight.val().device();
        let sd_t = Tensor::<1>::from_data(TensorData::new(self.sd.clone(), [g]), &dev);
        let mu_t = Tensor::<1>::from_data(TensorData::new(self.mu.clone(), [g]), &dev);
        let w = m.head.weight.val() * sd_t.clone().reshape([1, g]);
        let b = m.head.bias.as_ref().map(|b| b.val()).unwrap_or_else(|| Tensor::zeros([g], &dev)) * sd_t + mu_t;
        m.head.weight = Param::from_tensor(w);
        m.head.bias = Some(Param::from_tensor(b));
    }
}

/// A trained model (head folded) and its training log.
pub(crate) struct Trained {
    pub model: SpotModel,
    pub epoch_losses: Vec<f64>,
    eval_per_epoch: Vec<serde_json::Value>,
    pub val_per_epoch: Vec<serde_json::Value>,
    /// The epoch whose weights `model` holds.
    pub best_epoch: usize,
    pub seconds: f64,
}

/// The held-out evaluation: predictions and [`summarize`]d per-gene r.
struct Evaluation {
    pred: Vec<f32>,
    /// Held-out Pearson r per gene (constant predictions: 0).
    model_r: Vec<f64>,
    model: [f64; 4],
    ridge: [f64; 4],
    lambda: f64,
}

pub fn run(a: &SpotArgs) -> Result<()> {
    let base = check_args(a)?;
    let device = crate::gene::device(&a.device)?;
    let prep = Preprocess { size: base.image_size as u32, ..Default::default() };
    let load =
        |name: &str| load_her2st(&a.data, name).with_context(|| format!("loading HER2ST section `{name}` from {}", a.data.display()));
    let train_secs: Vec<SpotSection> = train_names(a).iter().map(|s| load(s)).collect::<Result<_>>()?;
    let val_sec = a.val.as_deref().map(load).transpose()?;
    let eval_sec = load(&a.eval)?;
    // genes from every section the run learns from (training and validation), as `spot-cv`
    let refs: Vec<&SpotSection> = train_secs.iter().chain(val_sec.as_ref()).collect();
    let genes = select_genes(&refs, a.genes)?;
    let span = base.patch_span();
    let train_p = train_secs.iter().map(|s| load_patches(s, &prep, a.max_spots, span)).collect::<Result<Vec<_>>>()?;
    let val_p = val_sec.as_ref().map(|s| load_patches(s, &prep, a.max_spots, span)).transpose()?;
    let eval_p = load_patches(&eval_sec, &prep, a.max_spots, span)?;
    let data = Prepared {
        train: train_secs.iter().zip(&train_p).map(|(s, p)| Data::new(s, p, &genes, false)).collect(),
        val: val_sec.as_ref().zip(val_p.as_ref()).map(|(s, p)| Data::new(s, p, &genes, false)),
        eval: Data::new(&eval_sec, &eval_p, &genes, false),
        genes,
        prep,
    };
    if data.train.iter().all(|d| d.images.is_empty()) || data.eval.images.is_empty() {
        bail!("no training or evaluation spots");
    }
    let cfg = base.with_genes(data.genes.len());
    cfg.validate().map_err(|e| anyhow::anyhow!("model config: {e}"))?;
    let init_opts = InitOptions { remap: a.init_remap.clone(), ..Default::default() };
    let recipe = Recipe {
        cfg: &cfg,
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        seed: a.seed,
        hed_jitter: a.hed_jitter,
        balance: a.balance,
        bars: true,
        label: String::new(),
        config_name: &a.config,
        checkpoint_dir: a.checkpoint_dir.as_deref(),
        resume: a.resume.as_deref(),
        init: a.init.as_deref().map(|p| (p, &init_opts)),
        loss: a.loss,
        targets: a.targets,
    };
    let report = (a.eval_every > 0).then_some((a.eval_every, &data.eval));
    let train_refs: Vec<&Data> = data.train.iter().collect();
    let mut members = Vec::new();
    for i in 0..a.ensemble as u64 {
        let r = Recipe {
            seed: a.seed + i,
            label: if a.ensemble > 1 { format!("[member {}/{}] ", i + 1, a.ensemble) } else { String::new() },
            ..recipe.clone()
        };
        members.push(fit(&r, &data.prep, &train_refs, data.val.as_ref(), report, &device)?);
    }
    let exported = if members.len() == 1 && !a.tta {
        Exported::One(Box::new(members[0].model.clone()))
    } else {
        Exported::Mean(SpotEnsemble::new(members.iter().map(|t| t.model.clone()).collect(), a.tta)?)
    };
    let ev = evaluate(a, &exported, &data)?;
    export(a, &cfg, &data, &members, &exported, &ev)
}

/// `small` (CPU), `large` (GPU), `cnn` (the ST-Net-like plain CNN baseline) or `cnn-context` (the
/// same CNN on the spot plus a pooled context branch on the spot and its neighbours).
pub(crate) fn config_by_name(name: &str) -> Result<SpotModelConfig> {
    Ok(match name {
        "small" => SpotModelConfig::small(),
        "large" => SpotModelConfig::large(),
        "cnn" => SpotModelConfig::cnn(),
        "cnn-context" => SpotModelConfig::cnn_context(),
        c => bail!("unknown --config `{c}` (small, large, cnn or cnn-context)"),
    })
}

/// The patch a config reads when its main input spans `side_factor` spot spacings: `2 × the spot
/// spacing`, and for a two-scale model where its branches look.
pub(crate) fn describe_patch(cfg: &SpotModelConfig, side_factor: f32) -> String {
    let side = side_factor * cfg.patch_span();
    if cfg.centre == 0 {
        return format!("{side} × the spot spacing");
    }
    format!(
        "{side} × the spot spacing at {} px; the main branch reads the central {} px ({side_factor} × the spacing), the context branch the whole patch pooled {}× to {} px",
        cfg.image_size,
        cfg.centre,
        cfg.context_pool,
        cfg.image_size / cfg.context_pool
    )
}

/// The model config of `--config`, after checking the arguments.
fn check_args(a: &SpotArgs) -> Result<SpotModelConfig> {
    onnx_format::check_output(&a.out, [])?;
    let base = config_by_name(&a.config)?;
    if a.genes == 0 || a.batch_size == 0 || a.ensemble == 0 {
        bail!("--genes, --batch-size and --ensemble must be positive");
    }
    if a.init.is_some() && a.resume.is_some() {
        bail!("--init and --resume exclude each other (--resume restores a checkpoint of this model)");
    }
    if let Some(p) = &a.init
        && !p.is_file()
    {
        bail!("--init {}: no such file", p.display());
    }
    if !(a.lr.is_finite() && a.lr > 0.0) {
        bail!("--lr must be positive");
    }
    if train_names(a).is_empty() {
        bail!("--train needs at least one section");
    }
    if train_names(a).contains(&a.eval) {
        bail!("evaluation section {} is also a training section; sections are the unit of splitting", a.eval);
    }
    if let Some(v) = &a.val
        && (train_names(a).contains(v) || *v == a.eval)
    {
        bail!("validation section {v} is also a training or the evaluation section");
    }
    if let Some(p) = &a.resume
        && !p.is_file()
    {
        bail!("--resume {}: no such file", p.display());
    }
    Ok(base)
}

fn train_names(a: &SpotArgs) -> Vec<String> {
    a.train.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// Serializes model initialization: burn's random state is per process, so runs on several threads
/// would otherwise draw each other's numbers.
static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A fresh (or resumed) model and its optimizer.
fn init_model(r: &Recipe, ad: &Device) -> Result<(SpotModel, ModuleOptimizer)> {
    let mut model = {
        let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
        ad.seed(r.seed);
        r.cfg.init(ad)
    };
    let mut optim = AdamConfig::new().init();
    if let Some((p, opts)) = r.init {
        let (m, report) = load_init(model, p, opts).map_err(|e| anyhow::anyhow!("--init {}: {e}", p.display()))?;
        eprintln!("{}init: {report}", r.label);
        model = m;
    }
    if let Some(p) = r.resume {
        let res = model.load_from(&mut BurnpackStore::from_file(p)).map_err(|e| anyhow::anyhow!("resume from {}: {e}", p.display()))?;
        if !res.errors.is_empty() || !res.missing.is_empty() {
            bail!(
                "resume from {}: {} tensor error(s), {} missing (different --config or --genes?)",
                p.display(),
                res.errors.len(),
                res.missing.len()
            );
        }
        eprintln!("resumed weights from {}", p.display());
        let op = p.with_extension("optim.bpk");
        if op.exists() {
            optim = optim.load(&op).map_err(|e| anyhow::anyhow!("resume optimizer state from {}: {e}", op.display()))?;
            eprintln!("resumed Adam state from {}", op.display());
        } else {
            eprintln!("no optimizer state at {}: Adam starts fresh", op.display());
        }
    }
    Ok((model, optim))
}

/// One epoch's order of (section, spot) pairs: every spot once, or with `balance` each section
/// equally often (small sections repeat, large ones are subsampled), as many steps as spots.
fn epoch_order(sizes: &[usize], balance: bool, rng: &mut StdRng) -> Vec<(usize, usize)> {
    let total: usize = sizes.iter().sum();
    let live: Vec<usize> = (0..sizes.len()).filter(|&s| sizes[s] > 0).collect();
    let mut order: Vec<(usize, usize)> = if balance && live.len() > 1 {
        let per = total.div_ceil(live.len());
        live.iter()
            .flat_map(|&s| {
                let mut idx: Vec<usize> = (0..sizes[s]).collect();
                idx.shuffle(rng);
                (0..per).map(move |i| (s, idx[i % sizes[s]])).collect::<Vec<_>>()
            })
            .collect()
    } else {
        live.iter().flat_map(|&s| (0..sizes[s]).map(move |i| (s, i))).collect()
    };
    order.shuffle(rng);
    order.truncate(total);
    order
}

/// Median per-gene r of a model on a section (the raw head will do: r ignores the per-gene
/// standardization).
fn median_r(m: &SpotModel, d: &Data, prep: &Preprocess, batch: usize, g: usize) -> Result<f64> {
    let dev = m.head.weight.val().device();
    Ok(median(&per_gene_r(&predict(m, &d.images, &normalizer(prep), prep, &dev, batch)?, &d.targets, g)))
}

/// One training batch: `b` augmented, normalized patches `[b, 3, s, s]` and their standardized
/// targets `[b, genes]`.
struct Batch {
    b: usize,
    x: Vec<f32>,
    t: Vec<f32>,
}

/// What the batch thread of [`fit`] reads: it prepares the batches of every epoch in order
/// (`None` ends an epoch) while the training thread runs the previous step, and spreads each
/// batch's patches over the machine's cores. Its generator makes the same draws in the same order
/// as a single thread would (the epoch's order, then each patch's [`Draw`]), so a seed gives the
/// same model whatever the thread count.
struct Feed<'a> {
    r: &'a Recipe<'a>,
    prep: &'a Preprocess,
    train: &'a [&'a Data<'a>],
    offsets: &'a [usize],
    sizes: &'a [usize],
    targets: &'a [f32],
    genes: usize,
}

impl Feed<'_> {
    fn run(&self, mut rng: StdRng, workers: usize, tx: std::sync::mpsc::SyncSender<Result<Option<Batch>>>) {
        for _ in 0..self.r.epochs {
            let order = epoch_order(self.sizes, self.r.balance, &mut rng);
            for batch in order.chunks(self.r.batch_size) {
                let draws: Vec<Draw> = batch.iter().map(|_| Draw::new(self.r.hed_jitter, &mut rng)).collect();
                if tx.send(self.prepare(batch, &draws, workers).map(Some)).is_err() {
                    return; // the training thread stopped
                }
            }
            if tx.send(Ok(None)).is_err() {
                return;
            }
        }
    }

    fn prepare(&self, batch: &[(usize, usize)], draws: &[Draw], workers: usize) -> Result<Batch> {
        let (b, len, size, g) = (batch.len(), self.prep.tensor_len(), self.prep.size as usize, self.genes);
        let mut x = vec![0f32; b * len];
        let per = b.div_ceil(workers.clamp(1, b.max(1)));
        std::thread::scope(|s| {
            let jobs: Vec<_> = x
                .chunks_mut(per * len)
                .zip(batch.chunks(per).zip(draws.chunks(per)))
                .map(|(xs, (items, ds))| {
                    s.spawn(move || -> Result<()> {
                        for ((out, &(sec, spot)), d) in xs.chunks_mut(len).zip(items).zip(ds) {
                            self.prep.normalize_raw(&d.apply(&self.train[sec].images[spot], size), out)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            jobs.into_iter().try_for_each(|j| j.join().map_err(|_| anyhow::anyhow!("a patch thread panicked"))?)
        })?;
        let mut t = Vec::with_capacity(b * g);
        for &(sec, spot) in batch {
            let row = self.offsets[sec] + spot;
            t.extend_from_slice(&self.targets[row * g..(row + 1) * g]);
        }
        Ok(Batch { b, x, t })
    }
}

/// Adam on the recipe's loss and target scale (default MSE on standardized targets), with augmentation. With a validation section the
/// epoch of best median r there is kept, else the last; `report` (every N epochs, a section)
/// is only printed. Returns the model with the head folded.
pub(crate) fn fit(
    r: &Recipe,
    prep: &Preprocess,
    train: &[&Data],
    val: Option<&Data>,
    report: Option<(usize, &Data)>,
    device: &Device,
) -> Result<Trained> {
    let g = r.cfg.num_genes;
    let y: Vec<f32> = train.iter().flat_map(|d| d.targets.iter().copied()).collect();
    let offsets: Vec<usize> = train.iter().scan(0, |o, d| Some(std::mem::replace(o, *o + d.images.len()))).collect();
    let sizes: Vec<usize> = train.iter().map(|d| d.images.len()).collect();
    let (n, size) = (y.len() / g, prep.size as usize);
    let targets = Standardized::fit(&y, g, r.targets);
    let ad = device.clone().autodiff();
    let (mut model, mut optim) = init_model(r, &ad)?;
    let mut epoch_losses = Vec::new();
    let mut eval_per_epoch = Vec::new();
    let mut val_per_epoch = Vec::new();
    let mut best: Option<(f64, usize, SpotModel)> = None;
    let t0 = std::time::Instant::now();
    let feed = Feed { r, prep, train, offsets: &offsets, sizes: &sizes, targets: &targets.z, genes: g };
    let (tx, rx) = std::sync::mpsc::sync_channel(2);
    let model = std::thread::scope(|scope| -> Result<_> {
        let rx = rx; // dropped on an early return, which stops the feed
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let feed = &feed;
        scope.spawn(move || feed.run(StdRng::seed_from_u64(r.seed), workers, tx));
        for epoch in 1..=r.epochs {
            let bar = if r.bars {
                progress_with(n, format!("spot epoch {epoch}/{}", r.epochs), "{prefix} [{bar:30}] {pos}/{len} spots {msg} ({elapsed})")
            } else {
                ProgressBar::hidden()
            };
            let (mut total, mut seen) = (0.0, 0usize);
            while let Some(Batch { b, x, t }) = rx.recv().context("the batch thread ended")?? {
                let xt = Tensor::<4>::from_data(TensorData::new(x, [b, 3, size, size]), &ad);
                let yt = Tensor::<2>::from_data(TensorData::new(t, [b, g]), &ad);
                let loss = r.loss.value(model.forward(xt), yt);
                let lv = loss.clone().into_scalar::<f32>() as f64;
                if !lv.is_finite() {
                    bail!("training loss is {lv} at epoch {epoch}; try a lower --lr");
                }
                total += lv * b as f64;
                seen += b;
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(r.lr, model, grads);
                bar.inc(b as u64);
                bar.set_message(format!("loss {:.4}", total / seen as f64));
            }
            bar.finish_and_clear();
            let l = total / seen.max(1) as f64;
            epoch_losses.push(l);
            let mut note = String::new();
            if let Some(v) = val {
                let m = model.valid();
                let mr = median_r(&m, v, prep, r.batch_size, g)?;
                val_per_epoch.push(serde_json::json!({"epoch": epoch, "median_r": mr}));
                note = format!("; validation {} median r {mr:.4}", v.name);
                if best.as_ref().is_none_or(|b| mr > b.0) {
                    best = Some((mr, epoch, m));
                }
            }
            // The last epoch is evaluated once, in `evaluate`, with the folded head.
            if let Some((every, d)) = report
                && epoch % every == 0
                && epoch < r.epochs
            {
                let mr = median_r(&model.valid(), d, prep, r.batch_size, g)?;
                eval_per_epoch.push(serde_json::json!({"epoch": epoch, "median_r": mr}));
                note += &format!("; held-out {} median r {mr:.4}", d.name);
            }
            eprintln!(
                "{}epoch {epoch}/{}: train loss {l:.4} ({} on {} targets, {:.0} s){note}",
                r.label,
                r.epochs,
                r.loss.describe(),
                r.targets.name(),
                t0.elapsed().as_secs_f64()
            );
            if let Some(dir) = r.checkpoint_dir {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                let p = dir.join(format!("spot-{}-epoch{epoch}.bpk", r.config_name));
                model
                    .save_into(&mut BurnpackStore::from_file(&p).overwrite(true))
                    .map_err(|e| anyhow::anyhow!("saving checkpoint {}: {e}", p.display()))?;
                let op = p.with_extension("optim.bpk");
                let _ = std::fs::remove_file(&op); // burnpack does not overwrite
                optim.save(&op).map_err(|e| anyhow::anyhow!("saving optimizer state {}: {e}", op.display()))?;
                eprintln!("checkpoint {}", p.display());
            }
        }
        Ok(model)
    })?;
    let seconds = t0.elapsed().as_secs_f64();
    let (mut model, best_epoch) = match best {
        Some((_, e, m)) => (m, e),
        None => (model.valid(), r.epochs),
    };
    targets.fold_into(&mut model);
    Ok(Trained { model, epoch_losses, eval_per_epoch, val_per_epoch, best_epoch, seconds })
}

/// Per-gene r on the held-out section for the model and the ridge baseline; prints the table.
fn evaluate(a: &SpotArgs, t: &Exported, data: &Prepared<'_>) -> Result<Evaluation> {
    let (eval, g, size) = (&data.eval, data.genes.len(), data.prep.size as usize);
    let dev = t.device();
    let ev_bar = ProgressBar::new_spinner();
    ev_bar.set_message(format!("predicting {} held-out spots", eval.images.len()));
    let pred = predict(t.model(), &eval.images, &normalizer(&data.prep), &data.prep, &dev, a.batch_size)?;
    ev_bar.finish_and_clear();
    let model_r = per_gene_r(&pred, &eval.targets, g);
    let fx: Vec<Vec<f64>> = data.train.iter().flat_map(|d| &d.images).map(|i| features(i, size)).collect();
    let ex: Vec<Vec<f64>> = eval.images.iter().map(|i| features(i, size)).collect();
    let y: Vec<f32> = data.train.iter().flat_map(|d| d.targets.iter().copied()).collect();
    let (ridge, lambda) = ridge_baseline(&fx, &y, g, a.seed)?;
    let ridge_r = per_gene_r(&ridge.predict(&ex), &eval.targets, g);
    let (sm, sr) = (summarize(&model_r), summarize(&ridge_r));
    let top = g.min(TOP);
    let n: usize = data.train.iter().map(|d| d.images.len()).sum();
    println!(
        "held-out section {} ({} spots, {g} genes; trained on {}, {n} spots, {} epochs, config {}, {}):",
        eval.name,
        eval.images.len(),
        train_names(a).join("+"),
        a.epochs,
        a.config,
        a.device
    );
    let label = match a.config.as_str() {
        "cnn" => "model (plain CNN)",
        "cnn-context" => "model (two-scale CNN)",
        _ => "model (TCGN-style)",
    };
    println!("  {}", line(label, sm, top));
    if a.ensemble > 1 || a.tta {
        println!("  (the model is the mean of {} member(s){})", a.ensemble, if a.tta { " × 8 dihedral views" } else { "" });
    }
    println!("  {}", line(&format!("ridge baseline (λ={lambda})"), sr, top));
    println!("  {}", line("training-mean baseline", [0.0; 4], top));
    println!("  (training-mean baseline: constant prediction, Pearson r undefined, reported as 0)");
    Ok(Evaluation { pred, model_r, model: sm, ridge: sr, lambda })
}

/// Parity on a few held-out patches, then the verified export with its card.
fn export(a: &SpotArgs, cfg: &SpotModelConfig, data: &Prepared<'_>, members: &[Trained], m: &Exported, ev: &Evaluation) -> Result<()> {
    let (eval, g, size, len) = (&data.eval, data.genes.len(), data.prep.size as usize, data.prep.tensor_len());
    let t = &members[0];
    let k = eval.images.len().min(PARITY_SPOTS);
    let mut px = vec![0f32; k * len];
    for i in 0..k {
        normalizer(&data.prep)(&eval.images[i], &mut px[i * len..(i + 1) * len])?;
    }
    let expected = ev.pred[..k * g].to_vec();
    let draft = Draft::new(m.export());
    let parity = verify::check_values(draft.bytes(), &a.out, &[Value::f32(&[k, 3, size, size], px)], k, OUTPUT, &expected, a.tolerance)
        .context("parity of the export")?;

    let mut metrics = BTreeMap::new();
    for (name, s) in [("model", ev.model), ("ridge", ev.ridge), ("mean_baseline", [0.0; 4])] {
        metrics.insert(format!("{name}_pearson_median"), s[0]);
        metrics.insert(format!("{name}_pearson_mean"), s[1]);
        metrics.insert(format!("{name}_pearson_median_top{TOP}"), s[2]);
        metrics.insert(format!("{name}_pearson_mean_top{TOP}"), s[3]);
    }
    metrics.insert("ridge_lambda".into(), ev.lambda);
    if let Some(l) = t.epoch_losses.last() {
        metrics.insert("final_train_loss".into(), *l);
    }
    let mut eval_per_epoch = t.eval_per_epoch.clone();
    if a.eval_every > 0 && a.epochs > 0 && a.epochs.is_multiple_of(a.eval_every) {
        eval_per_epoch.push(serde_json::json!({"epoch": a.epochs, "median_r": ev.model[0]}));
    }
    let sides: BTreeMap<String, f32> =
        data.train.iter().chain(data.val.as_ref()).chain([eval]).map(|d| (d.name.clone(), d.side_px)).collect();
    let spot = SpotImage {
        image: data.prep.to_card(),
        patch_side_um: Some(ST_SPACING_UM * cfg.patch_span()),
        patch_side_px: sides,
        patch_side: format!(
            "{} (spacing: median pixel distance between array neighbours); legacy ST array: 100 µm spots on a 200 µm grid, so the spot's share spans 200 µm",
            describe_patch(cfg, 1.0)
        ),
        patch_span: cfg.patch_span(),
        targets: "log1p(count / library size × 1e4)".into(),
    };
    let mut card = ModelCard::new(
        Family::SpotExpression,
        if a.config == "cnn" {
            "ST-Net-like plain CNN (He et al. 2020, without pretraining): H&E spot patch → log-normalized expression of the target genes"
        } else if a.config == "cnn-context" {
            "Two-scale plain CNN: the spot at full resolution and its neighbourhood, pooled, through a second CNN (neighbourhood context as in TRIPLEX / Hist2ST) → log-normalized expression of the target genes"
        } else {
            "TCGN-style spot model (Xiao et al. 2024): H&E spot patch → log-normalized expression of the target genes"
        },
        Preprocessing::SpotImage(spot),
    );
    card.genes = data.genes.clone();
    card.architecture = serde_json::to_value(cfg)?;
    card.architecture["parameters"] = serde_json::json!(m.num_params());
    card.architecture["ensemble_members"] = serde_json::json!(members.len());
    card.architecture["test_time_augmentation"] =
        serde_json::json!(if a.tta { "mean over the 8 dihedral views (rotations by 90° and their mirror images)" } else { "none" });
    card.training = serde_json::json!({
        "data": "HER2ST",
        "train_sections": data.train.iter().map(|d| serde_json::json!({"section": d.name, "spots": d.images.len(), "spots_total": d.spots_total})).collect::<Vec<_>>(),
        "eval_section": {"section": eval.name, "spots": eval.images.len(), "spots_total": eval.spots_total},
        "val_section": data.val.as_ref().map(|d| serde_json::json!({"section": d.name, "spots": d.images.len(), "spots_total": d.spots_total})),
        "val_per_epoch": t.val_per_epoch, "exported_epoch": t.best_epoch,
        "epoch_selection": if data.val.is_some() { "best median r on the validation section" } else { "last epoch" },
        "balanced_sections": a.balance && data.train.len() > 1,
        "gene_selection": format!("top {g} by mean log-normalized expression on the training and validation sections"),
        "epochs": a.epochs, "batch_size": a.batch_size, "lr": a.lr, "optimizer": "Adam", "seed": a.seed,
        "config": a.config, "device": a.device, "resumed_from": a.resume.as_ref().map(|p| p.display().to_string()),
        "loss": format!("{} on {}", a.loss.describe(), a.targets.describe()),
        "augmentations": format!(
            "random horizontal/vertical flip, 90° rotation, brightness and contrast ±10 %{} on the RGB patch before normalization",
            if a.hed_jitter > 0.0 { format!(", HED stain jitter σ = {}", a.hed_jitter) } else { String::new() }
        ),
        "members": members.iter().enumerate().map(|(i, m)| serde_json::json!({
            "seed": a.seed + i as u64, "train_loss_per_epoch": m.epoch_losses, "val_per_epoch": m.val_per_epoch,
            "exported_epoch": m.best_epoch, "train_seconds": m.seconds})).collect::<Vec<_>>(),
        "init": a.init.as_ref().map(|p| serde_json::json!({"file": p.display().to_string(), "remap": a.init_remap})),
        "train_loss_per_epoch": t.epoch_losses, "eval_per_epoch": eval_per_epoch, "train_seconds": t.seconds,
        "metric": "per-gene Pearson r over the held-out section's spots; median and mean over all target genes and over the top 50 by training mean; constant predictions count as r = 0",
        "ridge_features": "per-channel RGB mean/std, saturation mean/std, 8-bin grey histogram, mean gradient magnitude, bright-pixel fraction; λ by median r on a seeded 80/20 split of the training spots",
        "parity": parity,
        "eval_per_gene_pearson_r": ev.model_r,
    });
    card.metrics = metrics;
    record_parity(&mut card, [&parity]);
    draft.finish(
        card,
        &[
            (INPUT, "H&E patch centred on the spot, preprocessed as in `preprocessing.image`"),
            (OUTPUT, "predicted log1p(count / library size × 1e4) per gene, in `genes` order"),
        ],
        &a.out,
    )?;
    println!(
        "parity on {k} held-out patches: tract {:.1e}, ort {:.1e}; wrote {} ({g} genes)",
        parity.tract_max_abs_diff,
        parity.ort_max_abs_diff,
        a.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spot_hed_jitter() {
        let inv = inverse3(RGB_FROM_HED);
        for r in 0..3 {
            for c in 0..3 {
                let v: f32 = (0..3).map(|k| RGB_FROM_HED[r][k] * inv[k][c]).sum();
                assert!((v - (r == c) as u8 as f32).abs() < 1e-5);
            }
        }
        let px: Vec<u8> = (1..=255u8).flat_map(|v| [v, v / 2 + 1, 255 - v / 3]).collect();
        let mut rng = StdRng::seed_from_u64(1);
        let mut same = px.clone();
        hed_jitter(&mut same, 1e-9, &mut rng);
        assert!(same.iter().zip(&px).all(|(a, b)| a.abs_diff(*b) <= 1));
        let mut moved = px.clone();
        hed_jitter(&mut moved, 0.1, &mut rng);
        let diff = moved.iter().zip(&px).filter(|(a, b)| a != b).count();
        assert!(diff > px.len() / 2, "{diff} of {} changed", px.len());
    }

    /// The batch thread gives the same batches whatever the number of patch threads, and the
    /// same as a one-thread loop drawing the epoch's order, then each patch's augmentation.
    #[test]
    fn spot_feed_is_the_same_on_any_thread_count() {
        let (size, g) = (16usize, 3usize);
        let images: Vec<Vec<u8>> = (0..7u8).map(|i| (0..size * size * 3).map(|p| (p as u8).wrapping_mul(i + 1)).collect()).collect();
        let patches = Patches { name: "s".into(), spots_total: 7, rows: (0..7).collect(), images, side_px: 16.0 };
        let data = Data { patches: &patches, targets: (0..7 * g).map(|v| v as f32).collect() };
        let cfg = SpotModelConfig::small().with_genes(g);
        let r = Recipe {
            cfg: &cfg,
            epochs: 2,
            batch_size: 3,
            lr: 1e-3,
            seed: 5,
            hed_jitter: 0.05,
            balance: false,
            bars: false,
            label: String::new(),
            config_name: "small",
            checkpoint_dir: None,
            resume: None,
            init: None,
            loss: SpotLoss::Mse,
            targets: TargetScale::Standardized,
        };
        let prep = Preprocess { size: size as u32, ..Default::default() };
        let train = [&data];
        let feed = Feed { r: &r, prep: &prep, train: &train, offsets: &[0], sizes: &[7], targets: &data.targets, genes: g };
        let mut rng = StdRng::seed_from_u64(r.seed);
        let mut serial = Vec::new();
        for _ in 0..r.epochs {
            for batch in epoch_order(&[7], false, &mut rng).chunks(3) {
                let mut x = Vec::new();
                for &(_, spot) in batch {
                    let aug = Draw::new(r.hed_jitter, &mut rng).apply(&patches.images[spot], size);
                    let mut out = vec![0f32; prep.tensor_len()];
                    prep.normalize_raw(&aug, &mut out).unwrap();
                    x.extend(out);
                }
                serial.push(x);
            }
        }
        for workers in [1, 2, 3, 8] {
            let (tx, rx) = std::sync::mpsc::sync_channel(2);
            std::thread::scope(|s| {
                s.spawn(|| feed.run(StdRng::seed_from_u64(r.seed), workers, tx));
                let got: Vec<Vec<f32>> = rx.iter().filter_map(|b| b.unwrap()).map(|b| b.x).collect();
                assert_eq!(got, serial, "{workers} threads");
            });
        }
    }

    /// The correlation term is r per gene over the batch: 1 for a scaled and shifted copy, −1 for
    /// a mirrored one, 0 for a gene constant in the batch; MSE + (1 − mean r) and raw targets
    /// leave the values as they are.
    #[test]
    fn spot_loss_and_target_scale() {
        let dev = Device::flex();
        let t = [1.0f32, 0.0, 5.0, 2.0, 0.0, 6.0, 4.0, 0.0, 7.0];
        // gene 0: 2t + 1; gene 1: t constant; gene 2: prediction constant
        let p = [3.0f32, 1.0, 2.0, 5.0, 2.0, 2.0, 9.0, 3.0, 2.0];
        let tensor = |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [3, 3]), &dev);
        let r: Vec<f32> = batch_corr(tensor(&p), tensor(&t)).into_data().try_to_vec::<f32>().unwrap();
        assert!((r[0] - 1.0).abs() < 1e-5, "{r:?}");
        assert!(r[1].abs() < 1e-5 && r[2].abs() < 1e-5, "constant target or prediction: {r:?}");
        let mirrored = [-1.0f32, 0.0, 5.0, -2.0, 0.0, 5.0, -4.0, 0.0, 5.0];
        let r: Vec<f32> = batch_corr(tensor(&mirrored), tensor(&t)).into_data().try_to_vec::<f32>().unwrap();
        assert!((r[0] + 1.0).abs() < 1e-5, "{r:?}");
        let mse: f32 = SpotLoss::Mse.value(tensor(&p), tensor(&t)).into_scalar();
        let expect = p.iter().zip(&t).map(|(a, b)| (a - b).powi(2)).sum::<f32>() / 9.0;
        assert!((mse - expect).abs() < 1e-4, "{mse} vs {expect}");
        let both: f32 = SpotLoss::MseCorr.value(tensor(&p), tensor(&t)).into_scalar();
        assert!((both - (expect + 1.0 - 1.0 / 3.0)).abs() < 1e-4, "{both}");
        let y = [1.0f32, 2.0, 3.0, 5.0];
        let raw = Standardized::fit(&y, 2, TargetScale::Raw);
        assert_eq!(raw.z, y);
        let z = Standardized::fit(&y, 2, TargetScale::Standardized);
        assert_eq!(z.z, [-1.0, -1.0, 1.0, 1.0]);
    }
}

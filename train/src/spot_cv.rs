//! `train spot-cv`: the histology protocols of the literature on the HER2ST sections with images.
//!
//! Leave-one-section-out (HisToGene / Hist2ST / TCGN): each section is the test set once, the
//! model trains on the others. Leave-one-patient-out: patient C's sections → B4 (the same split as
//! the B4 fold) and B4 → each C section. An inner validation section (never the test section)
//! picks the epoch; genes are chosen on the training sections only. Per fold: the model (one
//! run per seed), the model with 8-view test-time augmentation, the mean over seeds (ensemble),
//! the training-mean baseline and ridge on colour/texture statistics. The report is a Markdown
//! table plus a JSON file with every per-gene r.

use crate::spot::{self, Data, Patches, Recipe, SpotLoss, TargetScale};
use anyhow::{Context, Result, bail};
use clap::Args;
use infer::image_prep::Preprocess;
use infer::macenko::Stains;
use infer::spots::{Grid, SpotSection, load_her2st, select_genes, select_hvg};
use infer::stain::LabStats;
use models::metrics::{mean, median, per_gene_r};
use models::spot::SpotModelConfig;
use models::spot_ensemble::SpotEnsemble;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

/// Genes whose r counts as "well predicted" (HisToGene / Hist2ST report the share above 0.3).
const GOOD_R: f64 = 0.3;

#[derive(Args, Debug)]
pub struct SpotCvArgs {
    /// HER2ST directory (one sub-directory per section).
    #[arg(long, default_value = "../shared/data/her2st")]
    pub data: PathBuf,
    /// Sections taking part (the first letter names the patient).
    #[arg(long, default_value = "B4,C2,C4,C5,C6", value_delimiter = ',')]
    pub sections: Vec<String>,
    /// Protocols: `loso` (leave one section out) and/or `lopo` (leave one patient out).
    #[arg(long, default_value = "loso,lopo", value_delimiter = ',')]
    pub protocol: Vec<String>,
    /// Leave-one-section-out trains on every other section (`all`) or only on the other sections
    /// of the test section's patient (`patient`: a patient with one section has no such fold).
    #[arg(long, default_value = "patient")]
    pub loso_scope: String,
    /// Run only the folds whose test section is listed (all when empty).
    #[arg(long, value_delimiter = ',')]
    pub folds: Vec<String>,
    /// Gene set: `top:N` (top N by mean log expression) or `hvg:N:FRAC` (the top N highly
    /// variable genes of each training section, kept if detected in ≥ FRAC of the training spots).
    #[arg(long, default_value = "top:250")]
    pub genes: String,
    /// One training run per seed; their mean is the ensemble row.
    #[arg(long, default_value = "0,1,2", value_delimiter = ',')]
    pub seeds: Vec<u64>,
    /// Most epochs; the validation section picks the epoch.
    #[arg(long, default_value_t = 12)]
    pub epochs: usize,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// cnn-context (default: the plain CNN on the spot plus a pooled context branch on a 2× patch),
    /// cnn (ST-Net-like plain CNN), small (TCGN-style, CPU) or large (TCGN-style, GPU).
    #[arg(long, default_value = "cnn-context")]
    pub config: String,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Stain jitter σ (as `train spot --hed-jitter`).
    #[arg(long, default_value_t = 0.2)]
    pub hed_jitter: f32,
    /// Stain normalization: `none`; `reinhard` (each section's L*a*b* mean and spread mapped
    /// onto those of the fold's training and validation sections pooled); or `macenko` (each
    /// section's stain vectors and 99th-percentile concentrations, from every 16th pixel of its
    /// patches, mapped onto those estimated on the fold's training and validation sections pooled).
    #[arg(long, default_value = "none")]
    pub stain: String,
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub balance: bool,
    /// Training runs at once (each on its own thread).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Use at most this many spots per section (for quick runs and tests).
    #[arg(long)]
    pub max_spots: Option<usize>,
    /// Side of the model's main input as a multiple of the spot spacing, resized to the model's
    /// input: 1 = the spot (default), 2 = the spot and its ring of array neighbours at half the
    /// resolution (a wider field of view: neighbourhood context in one input). A two-scale
    /// config (`cnn-context`) crops its wider patch around this.
    #[arg(long, default_value_t = 1.0)]
    pub side_factor: f32,
    /// Start every run from these weights (as `train spot --init`).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// `FROM=TO` regex renames of the `--init` file's tensor names, repeatable.
    #[arg(long, value_parser = spot::remap_arg)]
    pub init_remap: Vec<(String, String)>,
    /// Training loss (as `train spot --loss`).
    #[arg(long, value_enum, default_value_t = SpotLoss::Mse)]
    pub loss: SpotLoss,
    /// Target scale (as `train spot --targets`).
    #[arg(long, value_enum, default_value_t = TargetScale::Standardized)]
    pub targets: TargetScale,
    /// Baselines only (no model training).
    #[arg(long)]
    pub baselines_only: bool,
    /// Report directory: REPORT.md and results.json.
    #[arg(long, default_value = "out/spot-cv")]
    pub out_dir: PathBuf,
    /// Internal: run one (fold index, seed) task and write its predictions to `--worker-out`.
    #[arg(long, hide = true, value_parser = parse_task)]
    pub worker: Option<(usize, u64)>,
    #[arg(long, hide = true)]
    pub worker_out: Option<PathBuf>,
}

fn parse_task(s: &str) -> std::result::Result<(usize, u64), String> {
    let (f, seed) = s.split_once(':').ok_or("expected FOLD:SEED")?;
    Ok((f.parse().map_err(|_| "bad fold")?, seed.parse().map_err(|_| "bad seed")?))
}

/// Which genes a fold predicts.
#[derive(Debug, Clone, PartialEq)]
enum GeneSet {
    Top(usize),
    Hvg { n: usize, frac: f64 },
}

impl GeneSet {
    fn parse(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split(':').collect();
        let num = |p: &str| p.parse::<usize>().ok().filter(|&n| n > 0);
        match parts.as_slice() {
            ["top", n] if num(n).is_some() => Ok(GeneSet::Top(num(n).unwrap_or(250))),
            ["hvg", n, f] if num(n).is_some() => {
                let frac: f64 = f.parse().map_err(|_| anyhow::anyhow!("--genes {s}: bad fraction `{f}`"))?;
                if !(0.0..=1.0).contains(&frac) {
                    bail!("--genes {s}: the fraction must be in [0, 1]");
                }
                Ok(GeneSet::Hvg { n: num(n).unwrap_or(1000), frac })
            }
            _ => bail!("--genes `{s}`: expected top:N or hvg:N:FRAC (e.g. top:250, hvg:1000:0.1)"),
        }
    }

    fn select(&self, train: &[&SpotSection]) -> Result<Vec<String>> {
        Ok(match *self {
            GeneSet::Top(n) => select_genes(train, n)?,
            GeneSet::Hvg { n, frac } => {
                let spots: usize = train.iter().map(|s| s.n_spots()).sum();
                select_hvg(train, n, (frac * spots as f64).ceil() as usize)?
            }
        })
    }

    fn describe(&self) -> String {
        match self {
            GeneSet::Top(n) => format!("top {n} by mean log-normalized expression on the training sections"),
            GeneSet::Hvg { n, frac } => format!(
                "top {n} highly variable genes (Seurat dispersion) of each training section, kept if detected in ≥ {:.0} % of the training spots",
                frac * 100.0
            ),
        }
    }
}

/// One split: training, validation (a section, or a share of the training spots) and test sections.
#[derive(Debug, Clone)]
struct Fold {
    protocol: &'static str,
    name: String,
    train: Vec<usize>,
    val: Val,
    test: Vec<usize>,
}

#[derive(Debug, Clone)]
enum Val {
    Section(usize),
    /// Every 5th spot of each training section (after a seeded shuffle), held out of training.
    Spots,
}

fn patient(name: &str) -> char {
    name.chars().next().unwrap_or('?')
}

/// The folds of the protocols over `names` (the LOPO fold C → B4 is the LOSO fold of B4; it runs
/// once and is reported under both).
fn folds(names: &[String], protocols: &[String], only: &[String], all_patients: bool) -> Result<Vec<Fold>> {
    let n = names.len();
    let mut out = Vec::new();
    let wanted = |t: &str| only.is_empty() || only.iter().any(|o| o == t);
    for p in protocols {
        match p.as_str() {
            "loso" => {
                for t in 0..n {
                    if !wanted(&names[t]) {
                        continue;
                    }
                    let rest: Vec<usize> =
                        (1..n).map(|k| (t + k) % n).filter(|&s| all_patients || patient(&names[s]) == patient(&names[t])).collect();
                    if !all_patients && rest.len() < 2 {
                        continue; // no other section of this patient to train and validate on
                    }
                    // validation: the next training section of the test's patient, else the next one
                    let v = rest.iter().copied().find(|&s| patient(&names[s]) == patient(&names[t])).unwrap_or(rest[0]);
                    let train: Vec<usize> = rest.into_iter().filter(|&s| s != v).collect();
                    if train.is_empty() {
                        bail!("leave-one-section-out needs at least 3 sections");
                    }
                    out.push(Fold { protocol: "loso", name: names[t].clone(), train, val: Val::Section(v), test: vec![t] });
                }
            }
            "lopo" => {
                let mut patients: Vec<char> = names.iter().map(|s| patient(s)).collect();
                patients.dedup();
                for &pt in &patients {
                    let test: Vec<usize> = (0..n).filter(|&s| patient(&names[s]) == pt).collect();
                    let train: Vec<usize> = (0..n).filter(|&s| patient(&names[s]) != pt).collect();
                    if train.is_empty() || !test.iter().any(|&t| wanted(&names[t])) {
                        continue;
                    }
                    // a fold identical to a LOSO one (one test section) is taken from there
                    if test.len() == 1 && all_patients && protocols.iter().any(|p| p == "loso") {
                        continue;
                    }
                    let val = if train.len() > 1 { Val::Section(train[0]) } else { Val::Spots };
                    let train = match val {
                        Val::Section(v) => train.into_iter().filter(|&s| s != v).collect(),
                        Val::Spots => train,
                    };
                    let tn: Vec<&str> = train.iter().map(|&s| names[s].as_str()).collect();
                    out.push(Fold { protocol: "lopo", name: format!("{}→{pt}", tn.join("+")), train, val, test });
                }
            }
            other => bail!("unknown --protocol `{other}` (loso or lopo)"),
        }
    }
    if out.is_empty() {
        bail!("no fold to run (check --folds and --sections)");
    }
    Ok(out)
}

/// Per-gene r of one predictor on one test section.
#[derive(Debug, Clone, serde::Serialize)]
struct Scores {
    r: Vec<f64>,
    median: f64,
    mean: f64,
    good: f64,
}

impl Scores {
    fn new(pred: &[f32], truth: &[f32], g: usize) -> Self {
        let r = per_gene_r(pred, truth, g);
        let good = r.iter().filter(|&&v| v > GOOD_R).count() as f64 / g.max(1) as f64;
        Scores { median: median(&r), mean: mean(&r), good, r }
    }
}

/// The sections a fold may learn from: training and the validation section.
fn fit_sections(f: &Fold) -> Vec<usize> {
    f.train.iter().copied().chain(if let Val::Section(v) = f.val { Some(v) } else { None }).collect()
}

/// L*a*b* statistics over every pixel of a section's patches.
fn section_stats(p: &Patches) -> LabStats {
    p.images.iter().fold(LabStats::default(), |s, i| s.merge(&LabStats::of_rgb(i)))
}

/// Every 16th pixel of a section's patches: the sample its Macenko stains are estimated from.
fn stain_sample(p: &Patches) -> Vec<u8> {
    p.images.iter().flat_map(|i| i.chunks_exact(3).step_by(16).flatten().copied()).collect()
}

/// A section's Macenko stains, or an error naming it when it has too little tissue.
fn estimate_stains(px: &[u8], name: &str) -> Result<Stains> {
    Stains::estimate(px, 1)
        .with_context(|| format!("section {name}: too few tissue pixels (optical density > 0.15) to estimate its stains"))
}

/// A section's patches with `map` applied to each (its stain mapped onto a target).
fn normalized(p: &Patches, map: impl Fn(&mut [u8])) -> Patches {
    let mut out = p.clone();
    out.images.iter_mut().for_each(|i| map(i));
    out
}

/// For each kept spot of a section (`rows` into its spots), its kept array neighbours: ±1 in x or
/// y on the legacy ST grid, (±2, 0) and (±1, ±1) on Visium; spots within 1.2 × the spacing when
/// the array positions are unknown.
fn neighbour_lists(sec: &SpotSection, rows: &[usize]) -> Result<Vec<Vec<usize>>> {
    let spot = |i: usize| &sec.spots[rows[i]];
    if sec.grid == Grid::Unknown {
        let reach = 1.2 * sec.spacing_px()?;
        let near = |i: usize, j: usize| (spot(i).pixel_x - spot(j).pixel_x).hypot(spot(i).pixel_y - spot(j).pixel_y) <= reach;
        return Ok((0..rows.len()).map(|i| (0..rows.len()).filter(|&j| j != i && near(i, j)).collect()).collect());
    }
    let steps = sec.grid.neighbour_steps();
    let at: std::collections::HashMap<(i32, i32), usize> = (0..rows.len()).map(|i| ((spot(i).array_x, spot(i).array_y), i)).collect();
    Ok((0..rows.len())
        .map(|i| steps.iter().filter_map(|(dx, dy)| at.get(&(spot(i).array_x + dx, spot(i).array_y + dy)).copied()).collect())
        .collect())
}

/// Each spot's prediction replaced by the mean over it and its neighbours (`[spots, genes]`).
fn neighbour_mean(pred: &[f32], g: usize, nbrs: &[Vec<usize>]) -> Vec<f32> {
    let mut out = vec![0f32; pred.len()];
    for (i, nb) in nbrs.iter().enumerate() {
        let row = &mut out[i * g..(i + 1) * g];
        for &j in std::iter::once(&i).chain(nb) {
            row.iter_mut().zip(&pred[j * g..(j + 1) * g]).for_each(|(o, v)| *o += v);
        }
        let k = (nb.len() + 1) as f32;
        row.iter_mut().for_each(|o| *o /= k);
    }
    out
}

/// The baselines of one fold, per test section.
struct Baseline {
    ridge: Vec<Scores>,
    /// Ridge with each spot's prediction averaged over its neighbours.
    ridge_nb: Vec<Scores>,
    lambda: f64,
}

/// One training run's predictions on the test sections.
#[derive(serde::Serialize, serde::Deserialize)]
struct Run {
    fold: usize,
    seed: u64,
    best_epoch: usize,
    seconds: f64,
    val_curve: Vec<f64>,
    /// Per test section: plain and 8-view predictions.
    pred: Vec<(Vec<f32>, Vec<f32>)>,
}

pub fn run(a: &SpotCvArgs) -> Result<()> {
    let gene_set = GeneSet::parse(&a.genes)?;
    let base = spot::config_by_name(&a.config)?;
    if !["none", "reinhard", "macenko"].contains(&a.stain.as_str()) {
        bail!("unknown --stain `{}` (none, reinhard or macenko)", a.stain);
    }
    let (reinhard, macenko) = (a.stain == "reinhard", a.stain == "macenko");
    if !(a.side_factor.is_finite() && a.side_factor > 0.0) {
        bail!("patch side factor {} must be > 0", a.side_factor);
    }
    if a.seeds.is_empty() || a.jobs == 0 || a.batch_size == 0 || a.epochs == 0 {
        bail!("--seeds, --jobs, --batch-size and --epochs must be non-empty / positive");
    }
    let all_patients = match a.loso_scope.as_str() {
        "all" => true,
        "patient" => false,
        s => bail!("unknown --loso-scope `{s}` (patient or all)"),
    };
    let all_folds = folds(&a.sections, &a.protocol, &a.folds, all_patients)?;
    let device = crate::gene::device(&a.device)?;
    let report_path = a.out_dir.join("REPORT.md");
    let json_path = a.out_dir.join("results.json");
    for p in [&report_path, &json_path] {
        onnx_format::check_output(p, [])?;
    }
    let prep = Preprocess { size: base.image_size as u32, ..Default::default() };
    let patch_factor = a.side_factor * base.patch_span();
    let secs: Vec<SpotSection> = a
        .sections
        .iter()
        .map(|s| load_her2st(&a.data, s).with_context(|| format!("loading HER2ST section `{s}` from {}", a.data.display())))
        .collect::<Result<_>>()?;
    let patches: Vec<Patches> = secs.iter().map(|s| spot::load_patches(s, &prep, a.max_spots, patch_factor)).collect::<Result<_>>()?;
    let stats: Vec<LabStats> = if reinhard { patches.iter().map(section_stats).collect() } else { Vec::new() };
    for (p, st) in patches.iter().zip(&stats) {
        let (m, sd) = (st.mean, st.std());
        eprintln!("section {}: L*a*b* mean {:.1} {:.1} {:.1}, spread {:.1} {:.1} {:.1}", p.name, m[0], m[1], m[2], sd[0], sd[1], sd[2]);
    }
    let samples: Vec<Vec<u8>> = if macenko { patches.iter().map(stain_sample).collect() } else { Vec::new() };
    let stains: Vec<Stains> = samples.iter().zip(&patches).map(|(px, p)| estimate_stains(px, &p.name)).collect::<Result<_>>()?;
    for (p, st) in patches.iter().zip(&stains) {
        let [h, e] = st.vectors;
        eprintln!(
            "section {}: stain vectors H {:.2} {:.2} {:.2}, E {:.2} {:.2} {:.2}; 99th percentile concentrations {:.2} {:.2}",
            p.name, h[0], h[1], h[2], e[0], e[1], e[2], st.max_conc[0], st.max_conc[1]
        );
    }
    // a fold's view of the sections: as loaded, or stain-normalized onto its fitting sections
    let view = |f: &Fold| -> Cow<'_, [Patches]> {
        if macenko {
            let pooled: Vec<u8> = fit_sections(f).iter().flat_map(|&s| samples[s].iter().copied()).collect();
            // the fitting sections each passed the estimate, so their pool does too
            let target = Stains::estimate(&pooled, 1).expect("tissue in the fitting sections");
            return Cow::Owned(patches.iter().zip(&stains).map(|(p, st)| normalized(p, |i| st.map_rgb(&target, i))).collect());
        }
        if !reinhard {
            return Cow::Borrowed(&patches);
        }
        let target = fit_sections(f).iter().fold(LabStats::default(), |t, &s| t.merge(&stats[s]));
        Cow::Owned(patches.iter().zip(&stats).map(|(p, st)| normalized(p, |i| st.map_rgb(&target, i))).collect())
    };

    // genes and ridge see every section the model may learn from (training + validation)
    let fold_genes: Vec<Vec<String>> = all_folds
        .iter()
        .map(|f| {
            gene_set.select(&fit_sections(f).iter().map(|&s| &secs[s]).collect::<Vec<_>>()).with_context(|| format!("fold {}", f.name))
        })
        .collect::<Result<_>>()?;
    if let Some((fi, seed)) = a.worker {
        let out = a.worker_out.as_ref().context("--worker needs --worker-out")?;
        let f = all_folds.get(fi).context("--worker: no such fold")?;
        let r = one_run(a, &base, f, fi, seed, &fold_genes[fi], &secs, &view(f), &prep, &device)?;
        std::fs::write(out, serde_json::to_vec(&r)?).with_context(|| format!("writing {}", out.display()))?;
        return Ok(());
    }
    let nbrs: Vec<Vec<Vec<usize>>> = secs.iter().zip(&patches).map(|(s, p)| neighbour_lists(s, &p.rows)).collect::<Result<_>>()?;
    let size = prep.size as usize;
    let features =
        |ps: &[Patches]| -> Vec<Vec<Vec<f64>>> { ps.iter().map(|p| p.images.iter().map(|i| spot::features(i, size)).collect()).collect() };
    // without normalization every fold sees the same patches: their features are computed once
    let shared_feats = (a.stain == "none").then(|| features(&patches));
    let mut baselines = Vec::new();
    for (f, genes) in all_folds.iter().zip(&fold_genes) {
        let feats: Cow<'_, [Vec<Vec<f64>>]> = match &shared_feats {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(features(&view(f))),
        };
        let fit_secs = fit_sections(f);
        let g = genes.len();
        let x: Vec<Vec<f64>> = fit_secs.iter().flat_map(|&s| feats[s].iter().cloned()).collect();
        let y: Vec<f32> = fit_secs.iter().flat_map(|&s| Data::new(&secs[s], &patches[s], genes, true).targets).collect();
        let (ridge, lambda) = spot::ridge_baseline(&x, &y, g, 0)?;
        let genes = genes.clone();
        let (mut per_test, mut per_test_nb) = (Vec::new(), Vec::new());
        for &t in &f.test {
            let (pred, truth) = (ridge.predict(&feats[t]), Data::new(&secs[t], &patches[t], &genes, true).targets);
            per_test_nb.push(Scores::new(&neighbour_mean(&pred, g, &nbrs[t]), &truth, g));
            per_test.push(Scores::new(&pred, &truth, g));
        }
        eprintln!(
            "fold {} {} ({g} genes): ridge (λ={lambda}) median r {}",
            f.protocol,
            f.name,
            per_test.iter().map(|s| format!("{:.3}", s.median)).collect::<Vec<_>>().join(" ")
        );
        baselines.push(Baseline { ridge: per_test, ridge_nb: per_test_nb, lambda });
    }

    // model runs: (fold, seed) on `jobs` threads
    let tasks: Vec<(usize, u64)> =
        if a.baselines_only { Vec::new() } else { (0..all_folds.len()).flat_map(|f| a.seeds.iter().map(move |&s| (f, s))).collect() };
    let queue = Mutex::new(tasks.clone().into_iter());
    let runs = Mutex::new(Vec::<Run>::new());
    let failed = Mutex::new(None::<anyhow::Error>);
    std::thread::scope(|scope| {
        for _ in 0..a.jobs.min(tasks.len()) {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some((fi, seed)) = next else { break };
                    if failed.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
                        break;
                    }
                    let res = if a.jobs == 1 {
                        one_run(a, &base, &all_folds[fi], fi, seed, &fold_genes[fi], &secs, &view(&all_folds[fi]), &prep, &device)
                    } else {
                        // burn's CPU backend serializes threads and its lazy parameter init draws from
                        // one process-wide generator: parallel runs go to child processes
                        run_child(fi, seed)
                    };
                    match res {
                        Ok(r) => runs.lock().unwrap_or_else(|e| e.into_inner()).push(r),
                        Err(e) => {
                            *failed.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(e.context(format!("fold {} seed {seed}", all_folds[fi].name)));
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    let mut runs = runs.into_inner().unwrap_or_else(|e| e.into_inner());
    runs.sort_by_key(|r| (r.fold, r.seed));
    let patch = spot::describe_patch(&base, a.side_factor);
    let (md, json) = report(a, &gene_set, &patch, &all_folds, &fold_genes, &baselines, &runs, &secs, &patches, &nbrs);
    std::fs::create_dir_all(&a.out_dir).with_context(|| format!("creating {}", a.out_dir.display()))?;
    onnx_format::write_all_atomic(&[(&report_path, md.as_bytes()), (&json_path, serde_json::to_string_pretty(&json)?.as_bytes())])?;
    println!("{md}");
    eprintln!("wrote {} and {}", report_path.display(), json_path.display());
    Ok(())
}

/// Runs one task in a child process of this binary with the same arguments.
fn run_child(fi: usize, seed: u64) -> Result<Run> {
    let tmp = tempfile::Builder::new().prefix("spot-cv-run").suffix(".json").tempfile().context("temporary file")?;
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    args.extend(["--worker".into(), format!("{fi}:{seed}").into(), "--worker-out".into(), tmp.path().as_os_str().to_owned()]);
    let status = std::process::Command::new(std::env::current_exe()?).args(&args).status().context("starting a worker")?;
    if !status.success() {
        bail!("worker for fold {fi} seed {seed} failed ({status})");
    }
    serde_json::from_slice(&std::fs::read(tmp.path())?).context("reading the worker's predictions")
}

#[allow(clippy::too_many_arguments)]
fn one_run(
    a: &SpotCvArgs,
    base: &SpotModelConfig,
    f: &Fold,
    fi: usize,
    seed: u64,
    genes: &[String],
    secs: &[SpotSection],
    patches: &[Patches],
    prep: &Preprocess,
    device: &models::burn::prelude::Device,
) -> Result<Run> {
    let g = genes.len();
    let cfg = base.clone().with_genes(g);
    cfg.validate().map_err(|e| anyhow::anyhow!("model config: {e}"))?;
    let all: Vec<Data> = f.train.iter().map(|&s| Data::new(&secs[s], &patches[s], genes, true)).collect();
    let split = matches!(f.val, Val::Spots).then(|| split_spots(&all, g, seed));
    let (train, val) = match (&f.val, &split) {
        (Val::Section(v), _) => (all, Data::new(&secs[*v], &patches[*v], genes, true)),
        (Val::Spots, Some((kept, held))) => (
            kept.iter().map(|(p, t)| Data { patches: p, targets: t.clone() }).collect(),
            Data { patches: &held.0, targets: held.1.clone() },
        ),
        (Val::Spots, None) => bail!("spot validation without a split"),
    };
    let init_opts = models::spot_init::InitOptions { remap: a.init_remap.clone(), ..Default::default() };
    let recipe = Recipe {
        cfg: &cfg,
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        seed,
        hed_jitter: a.hed_jitter,
        balance: a.balance,
        bars: false,
        label: format!("[{} {} seed {seed}] ", f.protocol, f.name),
        config_name: &a.config,
        checkpoint_dir: None,
        resume: None,
        init: a.init.as_deref().map(|p| (p, &init_opts)),
        loss: a.loss,
        targets: a.targets,
    };
    let refs: Vec<&Data> = train.iter().collect();
    let t = spot::fit(&recipe, prep, &refs, Some(&val), None, device)?;
    let dev = t.model.head.weight.val().device();
    let norm = spot::normalizer(prep);
    let tta_model = SpotEnsemble::new(vec![t.model.clone()], true)?;
    let mut pred = Vec::new();
    for &s in &f.test {
        let imgs = &patches[s].images;
        let plain = spot::predict(&t.model, imgs, &norm, prep, &dev, a.batch_size)?;
        let tta = spot::predict(&tta_model, imgs, &norm, prep, &dev, a.batch_size)?;
        pred.push((plain, tta));
    }
    let val_curve = t.val_per_epoch.iter().filter_map(|v| v["median_r"].as_f64()).collect();
    eprintln!("[{} {} seed {seed}] done in {:.0} s, epoch {} chosen", f.protocol, f.name, t.seconds, t.best_epoch);
    Ok(Run { fold: fi, seed, best_epoch: t.best_epoch, seconds: t.seconds, val_curve, pred })
}

/// Every 5th spot of each section (after a seeded shuffle) goes to validation: (kept per section,
/// validation patches and targets).
#[allow(clippy::type_complexity)]
fn split_spots(data: &[Data], g: usize, seed: u64) -> (Vec<(Patches, Vec<f32>)>, (Patches, Vec<f32>)) {
    let mut kept = Vec::new();
    let (mut vi, mut vt) = (Vec::new(), Vec::new());
    for d in data {
        let mut idx: Vec<usize> = (0..d.images.len()).collect();
        idx.shuffle(&mut StdRng::seed_from_u64(seed ^ 0xa11d));
        let mut held = vec![false; idx.len()];
        idx.iter().step_by(5).for_each(|&i| held[i] = true);
        let keep: Vec<usize> = (0..idx.len()).filter(|&i| !held[i]).collect();
        for i in (0..idx.len()).filter(|&i| held[i]) {
            vi.push(d.images[i].clone());
            vt.extend_from_slice(&d.targets[i * g..(i + 1) * g]);
        }
        let p = Patches {
            name: d.name.clone(),
            spots_total: d.spots_total,
            rows: keep.iter().map(|&i| d.rows[i]).collect(),
            images: keep.iter().map(|&i| d.images[i].clone()).collect(),
            side_px: d.side_px,
        };
        kept.push((p, keep.iter().flat_map(|&i| d.targets[i * g..(i + 1) * g].iter().copied()).collect()));
    }
    let n = vi.len();
    (kept, (Patches { name: "held-out training spots".into(), spots_total: n, rows: (0..n).collect(), images: vi, side_px: 0.0 }, vt))
}

/// Mean and sample standard deviation (0 for one value).
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let m = mean(v);
    let sd = if v.len() > 1 { (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt() } else { 0.0 };
    (m, sd)
}

/// A percentage as mean ± std with one decimal.
fn pct(v: &[f64]) -> String {
    let (m, sd) = mean_sd(v);
    match v.len() {
        0 => "–".into(),
        1 => format!("{m:.1} %"),
        _ => format!("{m:.1} ± {sd:.1} %"),
    }
}

/// mean ± std (population std over seeds; 0 for one value).
fn pm(v: &[f64]) -> String {
    let (m, sd) = mean_sd(v);
    match v.len() {
        0 => "–".into(),
        1 => format!("{m:.3}"),
        _ => format!("{m:.3} ± {sd:.3}"),
    }
}

/// The Markdown report and the JSON with every per-gene r.
#[allow(clippy::too_many_arguments)]
fn report(
    a: &SpotCvArgs,
    gene_set: &GeneSet,
    patch: &str,
    folds: &[Fold],
    genes: &[Vec<String>],
    baselines: &[Baseline],
    runs: &[Run],
    secs: &[SpotSection],
    patches: &[Patches],
    nbrs: &[Vec<Vec<usize>>],
) -> (String, serde_json::Value) {
    let names = &a.sections;
    // scores[fold][predictor] = per test section, per seed (baselines and ensembles: one "seed")
    let predictors = [
        "model",
        "model + neighbour mean",
        "model + TTA",
        "ensemble of seeds",
        "ensemble + TTA",
        "ridge (colour/texture)",
        "ridge + neighbour mean",
        "training mean",
    ];
    let mut table: Vec<BTreeMap<&str, Vec<Vec<Scores>>>> = Vec::new();
    let mut json_folds = Vec::new();
    for (fi, f) in folds.iter().enumerate() {
        let g = genes[fi].len();
        let truths: Vec<Vec<f32>> = f.test.iter().map(|&t| Data::new(&secs[t], &patches[t], &genes[fi], true).targets).collect();
        let fr: Vec<&Run> = runs.iter().filter(|r| r.fold == fi).collect();
        let mut m: BTreeMap<&str, Vec<Vec<Scores>>> = BTreeMap::new();
        for (ti, truth) in truths.iter().enumerate() {
            let nb = &nbrs[f.test[ti]];
            let per_seed = |tta: bool| -> Vec<Scores> {
                fr.iter().map(|r| Scores::new(if tta { &r.pred[ti].1 } else { &r.pred[ti].0 }, truth, g)).collect()
            };
            let ens = |tta: bool| -> Vec<Scores> {
                if fr.is_empty() {
                    return Vec::new();
                }
                let mut sum = vec![0f32; truth.len()];
                for r in &fr {
                    for (s, v) in sum.iter_mut().zip(if tta { &r.pred[ti].1 } else { &r.pred[ti].0 }) {
                        *s += v / fr.len() as f32;
                    }
                }
                vec![Scores::new(&sum, truth, g)]
            };
            m.entry("model").or_default().push(per_seed(false));
            m.entry("model + neighbour mean")
                .or_default()
                .push(fr.iter().map(|r| Scores::new(&neighbour_mean(&r.pred[ti].0, g, nb), truth, g)).collect());
            m.entry("model + TTA").or_default().push(per_seed(true));
            m.entry("ensemble of seeds").or_default().push(ens(false));
            m.entry("ensemble + TTA").or_default().push(ens(true));
            m.entry("ridge (colour/texture)").or_default().push(vec![baselines[fi].ridge[ti].clone()]);
            m.entry("ridge + neighbour mean").or_default().push(vec![baselines[fi].ridge_nb[ti].clone()]);
            let zero = Scores { r: vec![0.0; g], median: 0.0, mean: 0.0, good: 0.0 };
            m.entry("training mean").or_default().push(vec![zero]);
        }
        json_folds.push(serde_json::json!({
            "protocol": f.protocol, "fold": f.name,
            "train": f.train.iter().map(|&s| &names[s]).collect::<Vec<_>>(),
            "validation": match f.val { Val::Section(v) => names[v].clone(), Val::Spots => "every 5th training spot".into() },
            "test": f.test.iter().map(|&s| &names[s]).collect::<Vec<_>>(),
            "genes": genes[fi], "ridge_lambda": baselines[fi].lambda,
            "runs": fr.iter().map(|r| serde_json::json!({"seed": r.seed, "chosen_epoch": r.best_epoch, "train_seconds": r.seconds, "val_median_r": r.val_curve})).collect::<Vec<_>>(),
            "scores": m.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        }));
        table.push(m);
    }

    // a protocol row: per seed (index), the mean over its folds' test sections
    let summarize = |sel: &dyn Fn(&Fold) -> bool, pred: &str, stat: &dyn Fn(&Scores) -> f64| -> Vec<f64> {
        let idx: Vec<usize> = (0..folds.len()).filter(|&i| sel(&folds[i])).collect();
        let n_seeds = idx.iter().flat_map(|&i| table[i][pred].iter().map(|s| s.len())).max().unwrap_or(0);
        (0..n_seeds)
            .filter_map(|k| {
                let v: Vec<f64> = idx.iter().flat_map(|&i| table[i][pred].iter().filter_map(|s| s.get(k)).map(stat)).collect();
                (!v.is_empty()).then(|| mean(&v))
            })
            .collect()
    };
    let is_c = |f: &Fold| f.protocol == "loso" && f.test.iter().all(|&t| patient(&names[t]) == 'C');
    let is_loso = |f: &Fold| f.protocol == "loso";
    let c_to_b = |f: &Fold| f.test.iter().all(|&t| patient(&names[t]) == 'B');
    let b_to_c = |f: &Fold| f.protocol == "lopo" && f.test.iter().all(|&t| patient(&names[t]) == 'C');
    let rows: Vec<(&str, &dyn Fn(&Fold) -> bool)> = vec![
        ("leave-one-section-out, test within patient C", &is_c),
        ("leave-one-section-out, all sections with a fold", &is_loso),
        ("leave-one-patient-out C → B4", &c_to_b),
        ("leave-one-patient-out B4 → C (each C section)", &b_to_c),
    ];
    let mut md = String::new();
    let total_runs = runs.len();
    let secs_per_run = if total_runs > 0 { runs.iter().map(|r| r.seconds).sum::<f64>() / total_runs as f64 } else { 0.0 };
    let _ = writeln!(
        md,
        "Leave-one-section-out trains on {}. Genes: {}. Config {}, ≤ {} epochs (validation section picks the epoch), batch {}, lr {}, loss {} on {} targets, HED σ {}, stain normalization {}, patch side {}, balanced sections {}, seeds {:?}, {} spots max per section; {} training runs, {:.0} s each on average ({} at once).\n",
        if a.loso_scope == "all" { "every other section" } else { "the other sections of the test section's patient" },
        gene_set.describe(),
        a.config,
        a.epochs,
        a.batch_size,
        a.lr,
        a.loss.describe(),
        a.targets.name(),
        a.hed_jitter,
        a.stain,
        patch,
        a.balance,
        a.seeds,
        a.max_spots.map_or("all".to_string(), |m| m.to_string()),
        total_runs,
        secs_per_run,
        a.jobs
    );
    let _ = writeln!(md, "| protocol | predictor | median r | mean r | genes r > {GOOD_R} |\n|---|---|---|---|---|");
    let mut shown: Vec<Vec<usize>> = Vec::new();
    for (label, sel) in &rows {
        // a row over the same folds as one above it is left out
        let which: Vec<usize> = (0..folds.len()).filter(|&i| sel(&folds[i])).collect();
        if which.is_empty() || shown.contains(&which) {
            continue;
        }
        shown.push(which);
        for p in predictors {
            if p.starts_with("ensemble") && a.seeds.len() < 2 {
                continue;
            }
            let med = summarize(*sel, p, &|s| s.median);
            if med.is_empty() {
                continue;
            }
            let _ = writeln!(
                md,
                "| {label} | {p} | {} | {} | {} |",
                pm(&med),
                pm(&summarize(*sel, p, &|s| s.mean)),
                pct(&summarize(*sel, p, &|s| s.good * 100.0))
            );
        }
    }
    let _ = writeln!(md, "\nPer fold (median r; model rows: mean ± std over seeds):\n");
    let _ = writeln!(
        md,
        "| fold | train | validation | test | genes | model | model + neighbour mean | model + TTA | ensemble + TTA | ridge | chosen epochs |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for (fi, f) in folds.iter().enumerate() {
        for (ti, &t) in f.test.iter().enumerate() {
            let col = |p: &str| pm(&table[fi][p][ti].iter().map(|s| s.median).collect::<Vec<_>>());
            let epochs: Vec<String> = runs.iter().filter(|r| r.fold == fi).map(|r| r.best_epoch.to_string()).collect();
            let _ = writeln!(
                md,
                "| {} {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                f.protocol,
                f.name,
                f.train.iter().map(|&s| names[s].as_str()).collect::<Vec<_>>().join("+"),
                match f.val {
                    Val::Section(v) => names[v].clone(),
                    Val::Spots => "20 % of training spots".into(),
                },
                names[t],
                genes[fi].len(),
                col("model"),
                col("model + neighbour mean"),
                col("model + TTA"),
                col("ensemble + TTA"),
                col("ridge (colour/texture)"),
                epochs.join(" ")
            );
        }
    }
    // best-predicted genes within patient C: mean r over the C folds (genes present in all)
    let best_pred = if runs.is_empty() { "ridge (colour/texture)" } else { "ensemble + TTA" };
    let c_folds: Vec<usize> = (0..folds.len()).filter(|&i| is_c(&folds[i])).collect();
    if !c_folds.is_empty() {
        let mut acc: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for &fi in &c_folds {
            for sc in &table[fi][best_pred] {
                if let Some(s) = sc.first() {
                    for (gname, r) in genes[fi].iter().zip(&s.r) {
                        acc.entry(gname.as_str()).or_default().push(*r);
                    }
                }
            }
        }
        let mut best: Vec<(&str, f64)> = acc.iter().filter(|(_, v)| v.len() == c_folds.len()).map(|(g, v)| (*g, mean(v))).collect();
        best.sort_by(|x, y| y.1.total_cmp(&x.1));
        let erbb2 = best.iter().position(|(g, _)| *g == "ERBB2");
        let _ = writeln!(
            md,
            "\nBest-predicted genes, leave-one-section-out within patient C ({best_pred}, mean r over {} folds): {}{}",
            c_folds.len(),
            best.iter().take(20).map(|(g, r)| format!("{g} {r:.2}")).collect::<Vec<_>>().join(", "),
            match erbb2 {
                Some(i) => format!("; ERBB2 ranks {} of {} ({:.2})", i + 1, best.len(), best[i].1),
                None => "; ERBB2 is not among the target genes".into(),
            }
        );
    }
    let json = serde_json::json!({
        "genes": gene_set.describe(), "loso_scope": a.loso_scope, "config": a.config, "epochs_max": a.epochs, "seeds": a.seeds,
        "batch_size": a.batch_size, "lr": a.lr, "loss": a.loss.describe(), "targets": a.targets.describe(), "hed_jitter": a.hed_jitter, "stain": a.stain, "side_factor": a.side_factor, "balanced": a.balance,
        "max_spots": a.max_spots, "metric": "per-gene Pearson r over a test section's spots; constant predictions count as 0",
        "folds": json_folds,
    });
    (md, json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["B4", "C2", "C4", "C5", "C6"].iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn stain_target_never_sees_the_test_section() {
        for all in [true, false] {
            for f in folds(&names(), &["loso".into(), "lopo".into()], &[], all).unwrap() {
                assert!(fit_sections(&f).iter().all(|s| !f.test.contains(s)), "{f:?}");
                assert!(!fit_sections(&f).is_empty());
            }
        }
    }

    #[test]
    fn spot_cv_folds_never_train_or_validate_on_the_test_section() {
        let n = names();
        let f = folds(&n, &["loso".into(), "lopo".into()], &[], true).unwrap();
        // 5 LOSO folds + B4 → C (C → B4 is the LOSO fold of B4)
        assert_eq!(f.len(), 6);
        for fold in &f {
            for t in &fold.test {
                assert!(!fold.train.contains(t));
                if let Val::Section(v) = fold.val {
                    assert_ne!(v, *t);
                    assert!(!fold.train.contains(&v));
                }
            }
        }
        // a C test section validates on another C section
        let c2 = f.iter().find(|x| x.protocol == "loso" && x.name == "C2").unwrap();
        assert!(matches!(c2.val, Val::Section(v) if n[v].starts_with('C')));
        let lopo = f.iter().find(|x| x.protocol == "lopo").unwrap();
        assert_eq!(lopo.test.len(), 4);
        assert!(matches!(lopo.val, Val::Spots));
        assert!(folds(&n, &["loso".into()], &["C9".into()], true).is_err());
        assert!(folds(&n, &["x".into()], &[], true).is_err());
        // patient scope: C folds train on C only, B4 has no LOSO fold, and C → B4 comes from LOPO
        let f = folds(&n, &["loso".into(), "lopo".into()], &[], false).unwrap();
        assert_eq!(f.iter().filter(|x| x.protocol == "loso").count(), 4);
        for x in f.iter().filter(|x| x.protocol == "loso") {
            assert!(x.train.iter().all(|&s| n[s].starts_with('C')), "{x:?}");
        }
        let cb = f.iter().find(|x| x.protocol == "lopo" && x.test == [0]).unwrap();
        assert!(cb.train.iter().all(|&s| n[s].starts_with('C')));
    }

    #[test]
    fn spot_cv_gene_set_parses() {
        assert_eq!(GeneSet::parse("top:250").unwrap(), GeneSet::Top(250));
        assert_eq!(GeneSet::parse("hvg:1000:0.1").unwrap(), GeneSet::Hvg { n: 1000, frac: 0.1 });
        for bad in ["top", "top:0", "hvg:10", "hvg:10:2", "mean:5"] {
            assert!(GeneSet::parse(bad).is_err(), "{bad}");
        }
    }

    /// On HER2ST's square grid an inner spot has its 4 array neighbours and no more; the
    /// neighbour mean averages a spot with them.
    #[test]
    fn spot_cv_neighbours_are_the_array_neighbours() {
        let sec = load_her2st(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/her2st"), "C2").unwrap();
        let rows: Vec<usize> = (0..sec.n_spots()).collect();
        let nb = neighbour_lists(&sec, &rows).unwrap();
        let key = |i: usize| (sec.spots[i].array_x, sec.spots[i].array_y);
        let keys: std::collections::HashSet<(i32, i32)> = rows.iter().map(|&i| key(i)).collect();
        let mut inner = 0;
        for (i, n) in nb.iter().enumerate() {
            let (x, y) = key(i);
            let want: Vec<(i32, i32)> = [(x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)].into_iter().filter(|k| keys.contains(k)).collect();
            let mut got: Vec<(i32, i32)> = n.iter().map(|&j| key(j)).collect();
            got.sort();
            let mut want = want;
            want.sort();
            assert_eq!(got, want, "spot {x}x{y}");
            inner += usize::from(got.len() == 4);
        }
        assert!(inner > sec.n_spots() / 3, "{inner} inner spots of {}", sec.n_spots());
        let pred = [1.0f32, 10.0, 3.0, 20.0, 5.0, 30.0];
        let nbrs = vec![vec![1, 2], vec![0], vec![]];
        assert_eq!(neighbour_mean(&pred, 2, &nbrs), [3.0, 20.0, 2.0, 15.0, 5.0, 30.0]);
    }
}

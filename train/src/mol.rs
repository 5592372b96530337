//! `train mol`: DeepChem's GraphConv on a SMILES table with binary task columns (Tox21): Rust
//! featurizer → burn training with masked, class-balanced binary cross-entropy → per-task test
//! ROC-AUC over seeds → verified ONNX export with the task names in the model card.

use crate::pipeline::{CommonArgs, Draft, progress, record_parity};
use crate::verify::{self, Parity};
use anyhow::{Context, Result, bail};
use clap::Args;
use infer::chem::{ATOM_FEATURES, MolGraph};
use infer::mol::{MolBatch, Table, featurize_rows, smiles_column};
use models::burn::module::Module;
use models::burn::optim::{AdamConfig, GradientsParams};
use models::burn::prelude::*;
use models::early_stop::{Criterion, EarlyStopping};
use models::loss::bce_with_logits;
use models::metrics::{mean_std, nanmean, roc_auc_per_task};
use models::mol::{MolGcn, MolGcnConfig, MolTensors};
use onnx_format::card::{Family, ModelCard, Preprocessing};
use rand::seq::SliceRandom;
use rand::{SeedableRng, rngs::StdRng};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct MolArgs {
    /// CSV/TSV with a SMILES column and 0/1 task columns (empty = missing label).
    #[arg(long, default_value = "../shared/data/tox21/tox21.csv")]
    pub data: PathBuf,
    #[arg(long)]
    pub smiles_column: Option<String>,
    /// Task columns (default: every column but the SMILES one).
    #[arg(long, value_delimiter = ',')]
    pub tasks: Vec<String>,
    /// `random` (80/10/10, as MoleculeNet) or `scaffold` (Bemis–Murcko groups, largest first).
    #[arg(long, default_value = "random")]
    pub split: String,
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    #[arg(long, default_value_t = 40)]
    pub epochs: usize,
    /// Stop after this many epochs without a better validation mean ROC-AUC (best weights kept).
    #[arg(long, default_value_t = 8)]
    pub patience: usize,
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.1)]
    pub dropout: f64,
    #[arg(long, value_delimiter = ',', default_value = "64,64")]
    pub conv: Vec<usize>,
    #[arg(long, default_value_t = 128)]
    pub dense: usize,
    /// Weight positives by negatives/positives per task (DeepChem's balancing transformer).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub balance: bool,
    /// Use only the first N molecules (quick runs and tests).
    #[arg(long)]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub common: CommonArgs,
}

struct Data {
    mols: Vec<MolGraph>,
    /// `[mols, tasks]`, NaN = missing.
    labels: Vec<f32>,
    tasks: Vec<String>,
}

fn load(a: &MolArgs) -> Result<(Data, usize, usize)> {
    let t = Table::read(&a.data)?;
    let sc = smiles_column(&t, a.smiles_column.as_deref(), &a.data)?;
    let tasks: Vec<String> = if a.tasks.is_empty() {
        t.header.iter().enumerate().filter(|(i, _)| *i != sc).map(|(_, h)| h.clone()).collect()
    } else {
        a.tasks.clone()
    };
    let cols: Vec<usize> = tasks.iter().map(|n| t.column(n, &a.data)).collect::<infer::Result<_>>()?;
    if tasks.is_empty() {
        bail!("{}: no task columns", a.data.display());
    }
    let n = a.limit.unwrap_or(usize::MAX).min(t.rows.len());
    let smiles: Vec<String> = (0..n).map(|r| t.get(r, sc).to_string()).collect();
    let (ok, bad) = featurize_rows(&smiles);
    for e in bad.iter().take(5) {
        eprintln!("skipped {e}");
    }
    let mut labels = Vec::with_capacity(ok.len() * tasks.len());
    for (r, _) in &ok {
        for &c in &cols {
            let v = t.get(*r, c).trim();
            labels.push(match v {
                "" => f32::NAN,
                "0" | "0.0" => 0.0,
                "1" | "1.0" => 1.0,
                _ => bail!("{}: row {}: column `{}` = `{v}` (expected 0, 1 or empty)", a.data.display(), r + 1, t.header[c]),
            });
        }
    }
    // a task needs both classes somewhere; with none such there is nothing to learn or score
    let k = tasks.len();
    let usable: Vec<&String> = (0..k)
        .filter(|&j| {
            let col = || labels.iter().skip(j).step_by(k);
            col().any(|&v| v == 1.0) && col().any(|&v| v == 0.0)
        })
        .map(|j| &tasks[j])
        .collect();
    if usable.is_empty() {
        bail!(
            "{}: no task column has both a 0 and a 1 label among the {} readable molecules (tasks: {}); nothing to train",
            a.data.display(),
            ok.len(),
            tasks.join(", ")
        );
    }
    if usable.len() < k {
        eprintln!("note: {} of {k} tasks have a single class and are not scored", k - usable.len());
    }
    let mols = ok.into_iter().map(|(_, g)| g).collect();
    Ok((Data { mols, labels, tasks }, n, bad.len()))
}

/// Train/valid/test rows. Random: seeded shuffle, 80/10/10. Scaffold: groups of one Bemis–Murcko
/// scaffold, largest first, filling train then valid then test (as DeepChem's ScaffoldSplitter).
fn split(d: &Data, how: &str, seed: u64) -> Result<[Vec<usize>; 3]> {
    let n = d.mols.len();
    let (n_train, n_valid) = (n * 8 / 10, n / 10);
    match how {
        "random" => {
            let mut idx: Vec<usize> = (0..n).collect();
            idx.shuffle(&mut StdRng::seed_from_u64(seed));
            Ok([idx[..n_train].to_vec(), idx[n_train..n_train + n_valid].to_vec(), idx[n_train + n_valid..].to_vec()])
        }
        "scaffold" => {
            let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
            for (i, m) in d.mols.iter().enumerate() {
                groups.entry(infer::chem::scaffold_key(m)).or_default().push(i);
            }
            let mut groups: Vec<Vec<usize>> = groups.into_values().collect();
            groups.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));
            let mut out = [Vec::new(), Vec::new(), Vec::new()];
            for g in groups {
                let k = if out[0].len() + g.len() <= n_train {
                    0
                } else if out[1].len() + g.len() <= n_valid {
                    1
                } else {
                    2
                };
                out[k].extend(g);
            }
            Ok(out)
        }
        _ => bail!("unknown split `{how}` (expected random or scaffold)"),
    }
}

fn tensors(d: &Data, rows: &[usize], device: &Device) -> Result<(MolTensors, Vec<f32>)> {
    let mols: Vec<&MolGraph> = rows.iter().map(|&r| &d.mols[r]).collect();
    let b = MolBatch::new(&mols)?;
    let t = d.tasks.len();
    let y: Vec<f32> = rows.iter().flat_map(|&r| d.labels[r * t..(r + 1) * t].iter().copied()).collect();
    Ok((MolTensors::new(&b.features, ATOM_FEATURES, &b.src, &b.dst, &b.membership, b.num_molecules(), device), y))
}

fn predict(model: &MolGcn, d: &Data, rows: &[usize], device: &Device) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(rows.len() * d.tasks.len());
    for chunk in rows.chunks(256) {
        let (g, _) = tensors(d, chunk, device)?;
        out.extend(models::to_vec(model.predict_proba(&g)));
    }
    Ok(out)
}

/// ROC-AUC per task over the labelled rows (NaN where a task has one class only).
fn task_aucs(d: &Data, rows: &[usize], probs: &[f32]) -> Vec<f64> {
    let labels: Vec<f32> = rows.iter().flat_map(|&r| d.labels[r * d.tasks.len()..(r + 1) * d.tasks.len()].iter().copied()).collect();
    roc_auc_per_task(probs, &labels, d.tasks.len())
}

struct Fit {
    model: MolGcn,
    best_epoch: usize,
    epochs_run: usize,
    valid_auc: f64,
}

fn fit(d: &Data, rows: &[Vec<usize>; 3], cfg: &MolGcnConfig, a: &MolArgs, seed: u64, device: &Device) -> Result<Fit> {
    let ad = device.clone().autodiff();
    ad.seed(seed);
    let t = d.tasks.len();
    // balancing weights from the training rows
    let mut w_pos = vec![1.0f32; t];
    if a.balance {
        for (k, w) in w_pos.iter_mut().enumerate() {
            let (mut pos, mut neg) = (0usize, 0usize);
            for &r in &rows[0] {
                match d.labels[r * t + k] {
                    l if l.is_nan() => {}
                    l if l > 0.5 => pos += 1,
                    _ => neg += 1,
                }
            }
            *w = if pos > 0 { neg as f32 / pos as f32 } else { 1.0 };
        }
    }
    let mut model = cfg.init(ATOM_FEATURES, t, &ad);
    let mut optim = AdamConfig::new().init();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut order = rows[0].clone();
    let (mut best, mut best_auc, mut epochs_run) = (model.valid(), f64::NEG_INFINITY, 0);
    let mut stopping = EarlyStopping::new(Criterion::MaxScore, a.patience);
    let bar = progress(a.epochs, format!("mol seed {seed}"));
    for epoch in 1..=a.epochs {
        epochs_run = epoch;
        order.shuffle(&mut rng);
        let mut total = 0.0;
        for chunk in order.chunks(a.batch) {
            let (g, y) = tensors(d, chunk, &ad)?;
            let m = chunk.len();
            let w: Vec<f32> = y
                .iter()
                .enumerate()
                .map(|(i, &l)| {
                    if l.is_nan() {
                        0.0
                    } else if l > 0.5 {
                        w_pos[i % t]
                    } else {
                        1.0
                    }
                })
                .collect();
            let y: Vec<f32> = y.iter().map(|l| if l.is_nan() { 0.0 } else { *l }).collect();
            let wsum: f32 = w.iter().sum::<f32>().max(1.0);
            let yt = Tensor::<2>::from_data(TensorData::new(y, [m, t]), &ad);
            let wt = Tensor::<2>::from_data(TensorData::new(w, [m, t]), &ad);
            let z = model.forward(&g);
            let loss = (bce_with_logits(z, yt) * wt).sum().div_scalar(wsum);
            total += loss.clone().into_scalar::<f32>() as f64 * m as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(a.lr, model, grads);
        }
        let eval = model.valid();
        let auc = nanmean(&task_aucs(d, &rows[1], &predict(&eval, d, &rows[1], device)?));
        bar.set_position(epoch as u64);
        bar.set_message(format!("train loss {:.3} valid AUC {auc:.3}", total / order.len() as f64));
        let v = stopping.update(epoch, f64::NAN, auc);
        if v.keep {
            (best, best_auc) = (eval, auc);
        }
        if v.stop {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(Fit { model: best, best_epoch: stopping.best_epoch, epochs_run, valid_auc: best_auc })
}

pub fn run(a: &MolArgs) -> Result<()> {
    onnx_format::check_output(&a.common.out, [a.data.as_path()])?;
    let device = crate::gene::device(&a.common.device)?;
    let t0 = std::time::Instant::now();
    let (d, rows_read, skipped) = load(a)?;
    if d.mols.len() < 20 {
        bail!("{}: only {} usable molecules", a.data.display(), d.mols.len());
    }
    eprintln!(
        "{}: {} molecules ({} rows, {skipped} SMILES rejected by the featurizer), {} tasks, {:.1} s to featurize",
        a.data.display(),
        d.mols.len(),
        rows_read,
        d.tasks.len(),
        t0.elapsed().as_secs_f64()
    );
    let cfg = MolGcnConfig { conv: a.conv.clone(), dense: a.dense, dropout: a.dropout };
    let mut per_seed = Vec::new();
    let mut first: Option<(Fit, [Vec<usize>; 3], Vec<f64>)> = None;
    for seed in 0..a.seeds.max(1) {
        // the scaffold split is deterministic; the seed still changes the initialization
        let rows = split(&d, &a.split, seed)?;
        let f = fit(&d, &rows, &cfg, a, seed, &device)?;
        let aucs = task_aucs(&d, &rows[2], &predict(&f.model, &d, &rows[2], &device)?);
        let mean = nanmean(&aucs);
        eprintln!("seed {seed}: test mean ROC-AUC {mean:.4} (valid {:.4}, best epoch {} of {})", f.valid_auc, f.best_epoch, f.epochs_run);
        per_seed.push(mean);
        if first.is_none() {
            first = Some((f, rows, aucs));
        }
    }
    let (mean, std) = mean_std(&per_seed);
    let (f, rows, aucs) = first.unwrap();
    // parity on test molecules
    let draft = Draft::new(f.model.export(vec![]));
    let sample: Vec<usize> = rows[2].iter().copied().take(200).collect();
    let mols: Vec<&MolGraph> = sample.iter().map(|&r| &d.mols[r]).collect();
    let batch = MolBatch::new(&mols)?;
    let expected = predict(&f.model, &d, &sample, &device)?;
    let parity: Parity = verify::check_values(
        draft.bytes(),
        &a.common.out,
        &batch.values(),
        sample.len(),
        "probabilities",
        &expected,
        a.common.tolerance_or(1e-4),
    )
    .context("parity of the export")?;
    let single = verify::check_values(
        draft.bytes(),
        &a.common.out,
        &MolBatch::new(&mols[..1])?.values(),
        1,
        "probabilities",
        &expected[..d.tasks.len()],
        a.common.tolerance_or(1e-4),
    )
    .context("parity of the export on one molecule")?;
    let mut metrics = BTreeMap::new();
    metrics.insert("test_mean_roc_auc".into(), mean);
    metrics.insert("test_mean_roc_auc_std".into(), std);
    for (task, auc) in d.tasks.iter().zip(&aucs) {
        if auc.is_finite() {
            metrics.insert(format!("test_roc_auc_seed0/{task}"), *auc);
        }
    }
    let mut card = ModelCard::new(
        Family::MolGraphconv,
        "DeepChem-style GraphConv (per-degree weights, GraphPool, GraphGather) predicting binary task probabilities from a molecular graph",
        Preprocessing::Molecule(infer::mol::card_preprocessing()),
    );
    card.classes = d.tasks.clone();
    card.architecture = serde_json::json!({"config": cfg, "max_degree": models::mol::MAX_DEGREE, "parameters": f.model.num_params()});
    card.training = serde_json::json!({
        "data": a.data.display().to_string(), "molecules": d.mols.len(), "rejected_smiles": skipped, "split": a.split,
        "sizes": [rows[0].len(), rows[1].len(), rows[2].len()], "seeds": a.seeds, "per_seed_test_mean_roc_auc": per_seed,
        "epochs": a.epochs, "patience": a.patience, "batch": a.batch, "lr": a.lr, "balance": a.balance,
        "best_epoch": f.best_epoch, "epochs_run": f.epochs_run, "valid_mean_roc_auc": f.valid_auc, "device": a.common.device,
        "parity": {"molecules": sample.len(), "tract": parity.tract_max_abs_diff, "ort": parity.ort_max_abs_diff},
    });
    card.metrics = metrics;
    record_parity(&mut card, [&parity, &single]);
    draft.finish(
        card,
        &[
            (
                "atom_features",
                "DeepChem ConvMolFeaturizer atom features (infer::chem::featurize); at most 16,777,215 atoms per run (degree counts and bounds in f32, exact below 2^24; infer mol runs 256 molecules at a time)",
            ),
            ("edge_index", "bonds in both directions, atom ids in 0..num_atoms; at most 16,777,215 edges per run (as atom_features)"),
            ("membership", "molecule index of each atom, in 0..num_molecules"),
            ("molecule_sizes", "atoms per molecule; its length sets the number of molecules"),
            ("probabilities", "sigmoid probability per task (order: classes)"),
            ("logits", "logit per task"),
        ],
        &a.common.out,
    )?;
    println!("per-task test ROC-AUC (seed 0):");
    for (task, auc) in d.tasks.iter().zip(&aucs) {
        println!("  {task:<14} {auc:.4}");
    }
    println!(
        "mol-graphconv on {} ({} split): test mean ROC-AUC {mean:.4} ± {std:.4} over {} seeds ({:.0} s); parity on {} molecules: tract {:.1e}, ort {:.1e}; wrote {}",
        a.data.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        a.split,
        per_seed.len(),
        t0.elapsed().as_secs_f64(),
        sample.len(),
        parity.tract_max_abs_diff,
        parity.ort_max_abs_diff,
        a.common.out.display()
    );
    Ok(())
}

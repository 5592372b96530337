//! `train gene2vec`: gene embeddings from gene sets (GMT). A seeded fraction of the (gene, set)
//! memberships is held out, the encoder is trained on the rest, and the embeddings are scored on
//! the held-out memberships (pair similarity and membership recovery). Exports a verified ONNX
//! model (`gene` → `embedding`, `gene_sets`) and the table in word2vec text format.

use crate::pipeline::{CommonArgs, Draft, progress_with, record_parity};
use crate::verify::{self, Parity};
use anyhow::{Context, Result, bail};
use clap::Args;
use infer::data::gmt::{DuplicateSets, Memberships, read_gmts};
use infer::runtime::Value;
use models::gene2vec::{Evaluation, Gene2Vec, Gene2VecConfig, PairStats, Split, evaluate, holdout, word2vec_text};
use onnx_format::card::{Family, Lookup, ModelCard, Preprocessing};
use rand::seq::SliceRandom;
use rand::{SeedableRng, rngs::StdRng};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Which cells carry a loss (`models::gene2vec::Objective`).
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Objective {
    Sampled,
    Full,
}

#[derive(Args, Debug)]
pub struct Gene2VecArgs {
    /// GMT files (MSigDB format); several are merged.
    #[arg(long, num_args = 1.., required = true)]
    pub gmt: Vec<PathBuf>,
    /// A set name defined again with other genes in a later file: error, first (keep the first),
    /// rename (`NAME@file`). Identical repeats are always merged.
    #[arg(long, default_value = "error")]
    pub duplicate_sets: DuplicateSets,
    #[arg(long, default_value_t = 100)]
    pub dim: usize,
    #[arg(long, default_value_t = 15)]
    pub epochs: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Adam's learning rate (hidden bias and output layer; the embedding table too with
    /// --embedding-lr 0).
    #[arg(long, default_value_t = 1e-2)]
    pub lr: f64,
    /// SGD step of the embedding table on each gene's summed gradient; 0: Adam, as the seed.
    #[arg(long, default_value_t = 0.025)]
    pub embedding_lr: f64,
    /// Cells with a loss: `sampled` (memberships + --negatives sampled non-members each, as
    /// word2vec) or `full` (every gene × set cell, as the seed).
    #[arg(long, default_value = "sampled")]
    pub objective: Objective,
    /// Sampled non-member sets per membership (--objective sampled).
    #[arg(long, default_value_t = 5)]
    pub negatives: usize,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Fraction of memberships held out for evaluation (0: train on all, no held-out scores).
    #[arg(long, default_value_t = 0.1)]
    pub holdout: f64,
    /// Non-member sets of each held-out gene masked with it, per held-out membership: the
    /// negatives of the membership-recovery score.
    #[arg(long, default_value_t = 10)]
    pub holdout_negatives: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub common: CommonArgs,
}

fn put_pairs(m: &mut BTreeMap<String, f64>, key: &str, p: &PairStats) {
    for (k, v) in
        [("mean_cosine", p.member_mean_cosine), ("random_mean_cosine", p.random_mean_cosine), ("cosine_ratio", p.ratio), ("auc", p.auc)]
    {
        if v.is_finite() {
            m.insert(format!("{key}_{k}"), v);
        }
    }
}

fn pairs_line(p: &PairStats) -> String {
    format!(
        "ratio {:.3} (mean cosine {:.4} vs random {:.4}), AUC {:.4}, {} pairs",
        p.ratio, p.member_mean_cosine, p.random_mean_cosine, p.auc, p.member_pairs
    )
}

/// Parity checks run on at most this many genes × sets outputs (3 copies: burn, tract, ONNX Runtime).
const PARITY_CELLS: usize = 16 << 20;

pub fn run(a: &Gene2VecArgs) -> Result<()> {
    let tsv = a.common.out.with_extension("tsv");
    for out in [&a.common.out, &tsv] {
        onnx_format::check_output(out, a.gmt.iter().map(|p| p.as_path()))?;
    }
    if !(0.0..1.0).contains(&a.holdout) {
        bail!("--holdout {} must be in [0, 1)", a.holdout);
    }
    let (sets, report) = read_gmts(&a.gmt, a.duplicate_sets)?;
    let data = Memberships::new(&sets);
    let (n, k) = (data.num_genes(), data.num_sets());
    let source = a.gmt.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    let split: Split = holdout(&data.pairs, k, a.holdout, a.holdout_negatives, a.seed);
    let (train, held) = (&split.train, &split.held);
    let held_genes = {
        let mut g: Vec<u32> = held.iter().map(|p| p.0).collect();
        g.dedup();
        g.len()
    };
    eprintln!(
        "{source}: {k} gene sets, {n} genes, {} memberships ({} duplicate genes in a set, {} blank fields, {} repeated sets dropped, {} renamed); held out {} memberships of {held_genes} genes (seed {})",
        data.pairs.len(),
        report.duplicate_genes,
        report.blank_fields,
        report.dropped_sets,
        report.renamed_sets,
        held.len(),
        a.seed
    );
    if a.holdout > 0.0 && held.len() < (a.holdout * data.pairs.len() as f64 * 0.99).floor() as usize {
        eprintln!("note: only {} memberships could be held out (each gene keeps one training membership, each set two)", held.len());
    }

    let cfg = Gene2VecConfig {
        dim: a.dim,
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        weight_decay: a.weight_decay,
        seed: a.seed,
        objective: match a.objective {
            Objective::Sampled => models::gene2vec::Objective::Sampled,
            Objective::Full => models::gene2vec::Objective::Full,
        },
        negatives: a.negatives,
        embedding_lr: a.embedding_lr,
    };
    let device = crate::gene::device(&a.common.device)?;
    let batches = n.div_ceil(a.batch_size.max(1));
    let bar = progress_with(a.epochs * batches, "gene2vec", "{prefix} [{bar:30}] epoch {msg} {per_sec} ETA {eta}");
    let t0 = std::time::Instant::now();
    let mut t_epoch = t0;
    let m = Gene2Vec::fit(n, k, train, &split.masked(), cfg, &device, &mut |st| {
        bar.set_position(((st.epoch - 1) * st.batches + st.batch) as u64);
        if st.batch == 1 || st.epoch_loss.is_some() {
            bar.set_message(format!("{}/{}{}", st.epoch, a.epochs, st.epoch_loss.map(|l| format!(", loss {l:.4}")).unwrap_or_default()));
        }
        if let Some(l) = st.epoch_loss {
            bar.suspend(|| eprintln!("epoch {}/{}: loss {l:.4} ({:.1} s)", st.epoch, a.epochs, t_epoch.elapsed().as_secs_f64()));
            t_epoch = std::time::Instant::now();
        }
    })?;
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let all: Vec<u32> = (0..n as u32).collect();
    let table = m.embeddings();
    let e: Evaluation = evaluate(&table, &m.hidden_bias(), &m.predict_cells(&split.masked()), k, &split, a.seed);

    // the export against burn: every gene in order (evenly spaced genes when genes × sets
    // outputs would pass PARITY_CELLS: memory stays bounded), a shuffled draw with repeats, one gene
    let draft = Draft::new(m.export(vec![]));
    let mut parities: Vec<(String, &str, Parity)> = Vec::new();
    let (label, ordered): (String, Vec<u32>) = if n * k <= PARITY_CELLS {
        ("all genes".into(), all.clone())
    } else {
        let c = (PARITY_CELLS / k).max(1);
        (format!("{c} evenly spaced genes"), (0..c).map(|i| (i * n / c) as u32).collect())
    };
    let mut mixed: Vec<u32> = ordered.iter().chain(ordered.iter().take(n.min(7))).copied().collect();
    mixed.shuffle(&mut StdRng::seed_from_u64(0));
    for (label, ids) in [(label, ordered), ("shuffled with repeats".into(), mixed), ("one gene".into(), vec![(n - 1) as u32])] {
        let input = Value::i64(&[ids.len()], ids.iter().map(|&v| v as i64).collect());
        for (output, expected) in [("embedding", m.embed(&ids)), ("gene_sets", m.predict(&ids))] {
            let p = verify::check_values(
                draft.bytes(),
                &a.common.out,
                std::slice::from_ref(&input),
                ids.len(),
                output,
                &expected,
                a.common.tolerance_or(1e-5),
            )
            .with_context(|| format!("parity of `{output}` on {label}"))?;
            parities.push((label.clone(), output, p));
        }
    }
    let worst = |f: fn(&Parity) -> f64| parities.iter().map(|(_, _, p)| f(p)).fold(0.0, f64::max);
    let (tract_diff, ort_diff) = (worst(|p| p.tract_max_abs_diff), worst(|p| p.ort_max_abs_diff));

    let mut metrics = BTreeMap::new();
    if !held.is_empty() {
        put_pairs(&mut metrics, "heldout_pairs", &e.held_out);
        put_pairs(&mut metrics, "heldout_pairs_matched", &e.held_out_matched);
        put_pairs(&mut metrics, "heldout_pairs_degree_matched", &e.held_out_degree_matched);
        put_pairs(&mut metrics, "preactivation_heldout_pairs", &e.held_out_preactivation);
        put_pairs(&mut metrics, "relu_heldout_pairs", &e.held_out_relu);
        let r = &e.recovery;
        metrics.insert("heldout_membership_auc".into(), r.auc);
        metrics.insert("heldout_membership_set_size_auc".into(), r.set_size_auc);
        for (kk, v) in &r.recall_at {
            metrics.insert(format!("heldout_membership_recall_at_{kk}"), *v);
            metrics.insert(format!("heldout_membership_chance_recall_at_{kk}"), r.chance_recall_at[kk]);
        }
    }
    put_pairs(&mut metrics, "train_pairs", &e.training);
    put_pairs(&mut metrics, "preactivation_train_pairs", &e.training_preactivation);
    put_pairs(&mut metrics, "relu_train_pairs", &e.training_relu);
    if let Some(l) = m.losses.last() {
        metrics.insert("final_train_loss".into(), *l);
    }

    let tsv = a.common.out.with_extension("tsv");
    let mut card = ModelCard::new(
        Family::Gene2vec,
        "Gene2Vec from gene sets: one-hot gene → hidden layer (its weight row is the embedding) → ReLU → sigmoid gene-set memberships, trained with binary cross-entropy on memberships and sampled (or all) non-memberships",
        Preprocessing::Lookup(Lookup { ids: "a gene id is its position in `genes` (symbols as in the GMT files, case kept)".into() }),
    );
    card.genes = data.genes.clone();
    card.classes = data.sets.clone();
    card.architecture = serde_json::json!({
        "layers": "one-hot gene × W1 [genes, dim] (a row lookup) + b1 → ReLU → W2 [dim, sets] + b2 → sigmoid",
        "embedding": "W1[gene]: the hidden pre-activation less the bias b1 shared by all genes (scores of the full pre-activation and of the post-ReLU vector are kept as preactivation_* and relu_* metrics)",
        "num_genes": n, "num_sets": k, "dim": a.dim, "parameters": n * a.dim + a.dim * k + k, "config": m.config,
    });
    card.training = serde_json::json!({
        "gmt": source, "sets": k, "genes": n, "memberships": data.pairs.len(),
        "set_sizes": sets.iter().map(|s| s.genes.len()).collect::<Vec<_>>(),
        "reader": {"duplicate_genes_in_a_set": report.duplicate_genes, "blank_fields": report.blank_fields, "repeated_sets_dropped": report.dropped_sets, "renamed_sets": report.renamed_sets, "duplicate_set_policy": format!("{:?}", a.duplicate_sets)},
        "holdout": {"fraction": a.holdout, "seed": a.seed, "train_memberships": train.len(), "held_out_memberships": held.len(), "held_out_genes": held_genes, "masked_negatives": split.held_negatives.len(), "negatives_per_held_out_membership": a.holdout_negatives,
            "rule": "random memberships held out while the gene keeps ≥ 1 and the set ≥ 2 training memberships (genes in one set are never held out); held-out memberships and, per held-out gene, random non-member sets are masked (no loss)"},
        "loss": match a.objective {
            Objective::Sampled => "binary cross-entropy on logits over each gene's memberships and `negatives` non-member sets per membership drawn by training set size^0.75 (with repeats), averaged over those cells; minibatches of genes; after training, each set's output bias gets log(negatives × P_n(S)) added back (sampling learns membership ÷ the set's sampling rate), so a gene's sets rank by membership",
            Objective::Full => "mean binary cross-entropy on logits over genes × sets (every cell, as the seed); minibatches of genes",
        },
        "optimizer": if a.embedding_lr > 0.0 { "plain SGD on the embedding table (summed gradient of a gene's cells, step embedding_lr); Adam (lr) on the hidden bias and output layer" } else { "Adam (lr) on every weight" },
        "epoch_seconds": m.epoch_seconds,
        "loss_per_epoch": m.losses,
        "evaluation": e,
        "metric_definitions": {
            "heldout_pairs": "for each held-out membership (g, S): g paired with every training member of S; cosine of embeddings; ratio = mean ÷ mean over 100000 random distinct gene pairs; auc = ROC-AUC of these pairs vs the random pairs",
            "heldout_pairs_matched": "the same held-out pairs against one control pair per pair: g with a uniformly random other gene",
            "heldout_pairs_degree_matched": "the same held-out pairs against one control pair per pair (g, h): two random genes with the training set counts of g and h (the nearest count that has genes when none other has it)",
            "train_pairs": "every pair of training members of a set (sampled above 1e6 pairs), against the same random pairs",
            "heldout_membership": "predicted set probabilities on the masked cells of held-out genes; auc = held-out memberships vs masked non-memberships; recall_at_k = held-out memberships in the top k of their gene's masked cells (chance_recall_at_k: a random ranking); set_size_auc ranks sets by training size alone",
        },
        "word2vec_text": tsv.file_name().map(|s| s.to_string_lossy().into_owned()),
        "parity_cases": parities.iter().map(|(l, o, p)| serde_json::json!({"case": l, "output": o, "genes": p.samples, "tract": p.tract_max_abs_diff, "ort": p.ort_max_abs_diff})).collect::<Vec<_>>(),
        "device": a.common.device, "seconds": secs,
    });
    card.metrics = metrics;
    record_parity(&mut card, parities.iter().map(|(_, _, p)| p));
    let gene = format!("gene ids in 0..{n}: positions in `genes`");
    let onnx = draft.finish_bytes(
        card,
        &[
            ("gene", &gene),
            ("embedding", "the gene's embedding: its row of the hidden layer's weights (hidden pre-activation less the shared bias); compare with cosine similarity"),
            ("gene_sets", "probability that the gene belongs to each set in `classes` (independent sigmoids)"),
        ],
    )?;
    // the model and its embedding table appear together or not at all
    onnx_format::write_all_atomic(&[(&a.common.out, &onnx), (&tsv, word2vec_text(&table, a.dim, &data.genes).as_bytes())])?;

    println!(
        "gene2vec: {n} genes, {k} sets, dim {}, {} epochs ({secs:.1} s), final loss {:.4}",
        a.dim,
        a.epochs,
        m.losses.last().copied().unwrap_or(f64::NAN)
    );
    if !held.is_empty() {
        println!("held-out member pairs: {}", pairs_line(&e.held_out));
        println!("held-out member pairs vs the same genes paired at random: {}", pairs_line(&e.held_out_matched));
        println!("held-out member pairs vs degree-matched random pairs: {}", pairs_line(&e.held_out_degree_matched));
    }
    println!("training member pairs: {}", pairs_line(&e.training));
    if !held.is_empty() {
        println!(
            "full pre-activation W1[g] + b1 (reference): held-out {}; training {}",
            pairs_line(&e.held_out_preactivation),
            pairs_line(&e.training_preactivation)
        );
        println!("post-ReLU (reference): held-out {}; training {}", pairs_line(&e.held_out_relu), pairs_line(&e.training_relu));
        let r = &e.recovery;
        println!(
            "held-out membership recovery ({} memberships vs {} masked non-memberships of {} genes): AUC {:.4}, recall@1 {:.4}, recall@3 {:.4}, recall@5 {:.4} (chance {:.3}, {:.3}, {:.3}; set-size baseline AUC {:.4})",
            r.memberships,
            r.negatives,
            r.genes,
            r.auc,
            r.recall_at[&1],
            r.recall_at[&3],
            r.recall_at[&5],
            r.chance_recall_at[&1],
            r.chance_recall_at[&3],
            r.chance_recall_at[&5],
            r.set_size_auc
        );
    }
    println!("parity tract {tract_diff:.1e}, ort {ort_diff:.1e}; wrote {} and {}", a.common.out.display(), tsv.display());
    Ok(())
}

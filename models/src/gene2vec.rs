//! Gene2Vec from gene sets: an encoder from a gene (one-hot) to the sets it belongs to
//! (multi-hot, sigmoid outputs, binary cross-entropy). The hidden layer is the gene's embedding.
//!
//! Network: `p = σ(relu(W1[gene] + b1) W2 + b2)`; `W1[gene]` is the one-hot × W1 product done
//! as a row lookup. The embedding is the gene's row `W1[gene]`: the hidden pre-activation less
//! the bias `b1` that every gene shares (word2vec likewise takes the input weight row). The
//! shared part would otherwise dominate cosine similarity; post-ReLU vectors have exact zeros
//! (a gene with every unit off has no direction). Both alternatives are scored for reference.
//!
//! Export: `gene` int64 `[batch]` → `embedding` `[batch, dim]` (Gather) and `gene_sets`
//! `[batch, num_sets]` (Add, Relu, MatMul, Add, Sigmoid).

use crate::export::{Lower, dims};
use crate::loss::bce_with_logits;
use crate::metrics::roc_auc;
use crate::{Error, Result};
use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};
use onnx_format::builder::{Dim, Elem};
use onnx_format::pb::ModelProto;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which (gene, set) cells carry a loss.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Every cell of the gene's row (the seed): at thousands of sets the all-zero majority
    /// dominates the loss.
    Full,
    /// The gene's memberships plus `negatives` non-member sets per membership, drawn by training
    /// set size^0.75 with repeats (word2vec's negative sampling). The logits then learn
    /// membership ÷ the set's sampling rate; after training `log(negatives × P_n(S))` is added to
    /// each set's output bias, so a gene's sets rank by membership (the embedding is unchanged).
    Sampled,
}

/// Gene2Vec training settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Gene2VecConfig {
    /// Embedding width (hidden units).
    pub dim: usize,
    /// Passes over all genes.
    pub epochs: usize,
    /// Genes per minibatch.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// L2 penalty (Adam's coupled weight decay) on all weights.
    pub weight_decay: f64,
    /// Seed of shuffling, sampling and initialization.
    pub seed: u64,
    /// Which cells carry a loss.
    pub objective: Objective,
    /// Sampled negatives per membership ([`Objective::Sampled`]).
    pub negatives: usize,
    /// Plain SGD step of the embedding table, on the gradient summed over a gene's cells (0: the
    /// table takes Adam's step like the other weights, as the seed had it). A gene's row gets
    /// one update per epoch; Adam's per-coordinate scaling turns that rare update into a near
    /// sign vector and the rows lose their geometry.
    pub embedding_lr: f64,
}

impl Default for Gene2VecConfig {
    fn default() -> Self {
        Self {
            dim: 100,
            epochs: 15,
            batch_size: 64,
            lr: 1e-2,
            weight_decay: 0.0,
            seed: 0,
            objective: Objective::Sampled,
            negatives: 5,
            embedding_lr: 0.025,
        }
    }
}

/// Where training is, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Minibatches done in this epoch.
    pub batch: usize,
    /// Minibatches per epoch.
    pub batches: usize,
    /// The epoch's mean loss, at its last minibatch.
    pub epoch_loss: Option<f64>,
}

/// The Gene2Vec network: gene → hidden embedding → gene-set logits.
#[derive(Module, Debug)]
pub struct Gene2VecNet {
    /// `W1 [num_genes, dim]`: row g is gene g's embedding.
    pub embedding: Embedding,
    /// `b1 [dim]`: the hidden layer's bias, shared by all genes.
    pub hidden_bias: Param<Tensor<1>>,
    /// `W2 [dim, num_sets]`, `b2`.
    pub output: Linear,
}

fn ids(v: &[u32], device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(TensorData::new(v.iter().map(|&i| i as i64).collect::<Vec<_>>(), [v.len()]), device)
}

impl Gene2VecNet {
    /// Glorot-uniform init for both layers, as a Keras `Dense` stack would have it.
    pub fn new(num_genes: usize, dim: usize, num_sets: usize, device: &Device) -> Self {
        let a = (6.0 / (num_genes + dim) as f64).sqrt();
        Self {
            embedding: EmbeddingConfig::new(num_genes, dim).with_initializer(Initializer::Uniform { min: -a, max: a }).init(device),
            hidden_bias: Param::from_tensor(Tensor::zeros([dim], device)),
            output: LinearConfig::new(dim, num_sets).with_initializer(Initializer::XavierUniform { gain: 1.0 }).init(device),
        }
    }

    /// The embeddings `W1[genes]` `[n, dim]`.
    pub fn hidden(&self, genes: Tensor<1, Int>) -> Tensor<2> {
        self.embedding.weight.val().select(0, genes)
    }

    /// Gene-set logits `[n, num_sets]`.
    pub fn logits(&self, genes: Tensor<1, Int>) -> Tensor<2> {
        self.output.forward(relu(self.hidden(genes) + self.hidden_bias.val().unsqueeze_dim(0)))
    }
}

/// A trained Gene2Vec model.
pub struct Gene2Vec {
    /// The training settings used.
    pub config: Gene2VecConfig,
    /// Number of genes (embedding rows).
    pub num_genes: usize,
    /// Number of gene sets (outputs).
    pub num_sets: usize,
    /// Mean training loss per epoch.
    pub losses: Vec<f64>,
    /// Wall-clock seconds per epoch.
    pub epoch_seconds: Vec<f64>,
    model: Gene2VecNet,
    device: Device,
}

impl Gene2Vec {
    /// Trains on memberships `pairs` (gene, set): a membership is a target 1; the other cells of
    /// the gene's row are 0 (all of them, or sampled ones: [`Objective`]), except the cells in
    /// `masked` (held out: no loss at all). Targets are built per minibatch of genes (no genes ×
    /// sets matrix). `on_step` after each minibatch.
    pub fn fit(
        num_genes: usize,
        num_sets: usize,
        pairs: &[(u32, u32)],
        masked: &[(u32, u32)],
        cfg: Gene2VecConfig,
        device: &Device,
        on_step: &mut dyn FnMut(Step),
    ) -> Result<Self> {
        if num_genes == 0 || num_sets == 0 || pairs.is_empty() {
            return Err(Error::Input("no gene-set memberships to train on".into()));
        }
        if cfg.dim == 0 || cfg.batch_size == 0 || !(cfg.lr > 0.0) || !(cfg.embedding_lr >= 0.0) {
            return Err(Error::Input("dim and batch size must be ≥ 1, the learning rate positive and the embedding's not negative".into()));
        }
        if cfg.objective == Objective::Sampled && cfg.negatives == 0 {
            return Err(Error::Input("sampled negatives need --negatives ≥ 1".into()));
        }
        if let Some(&(g, s)) = pairs.iter().chain(masked).find(|&&(g, s)| g as usize >= num_genes || s as usize >= num_sets) {
            return Err(Error::Input(format!("membership ({g}, {s}) out of range {num_genes} genes × {num_sets} sets")));
        }
        let (mut sets_of, mut masked_of) = (vec![Vec::new(); num_genes], vec![Vec::new(); num_genes]);
        let mut size = vec![0f64; num_sets];
        for &(g, s) in pairs {
            sets_of[g as usize].push(s);
            size[s as usize] += 1.0;
        }
        for &(g, s) in masked {
            masked_of[g as usize].push(s);
        }
        let unigram = crate::node2vec::AliasTable::new(&size.iter().map(|c| c.powf(0.75)).collect::<Vec<_>>());
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        device.seed(cfg.seed);
        let ad = device.clone().autodiff();
        let mut model = Gene2VecNet::new(num_genes, cfg.dim, num_sets, &ad);
        let mut adam = AdamConfig::new();
        if cfg.weight_decay > 0.0 {
            adam = adam.with_weight_decay(Some(burn::optim::decay::WeightDecayConfig::new(cfg.weight_decay as f32)));
        }
        let mut opt = adam.init();
        let mut order: Vec<u32> = (0..num_genes as u32).collect();
        let (mut losses, mut epoch_seconds) = (Vec::new(), Vec::new());
        let batches = num_genes.div_ceil(cfg.batch_size);
        for epoch in 1..=cfg.epochs {
            let t0 = std::time::Instant::now();
            order.shuffle(&mut rng);
            let (mut sum, mut done) = (0.0, 0);
            for chunk in order.chunks(cfg.batch_size) {
                let mut y = vec![0f32; chunk.len() * num_sets];
                let mut w = vec![(cfg.objective == Objective::Full) as u8 as f32; chunk.len() * num_sets];
                for (r, &g) in chunk.iter().enumerate() {
                    let row = r * num_sets;
                    for &s in &sets_of[g as usize] {
                        y[row + s as usize] = 1.0;
                        if cfg.objective == Objective::Sampled {
                            w[row + s as usize] += 1.0;
                            for _ in 0..cfg.negatives {
                                w[row + unigram.sample(&mut rng)] += 1.0;
                            }
                        }
                    }
                    for &s in &masked_of[g as usize] {
                        w[row + s as usize] = 0.0;
                    }
                }
                let cells: f32 = w.iter().sum::<f32>().max(1.0);
                let y = Tensor::<2>::from_data(TensorData::new(y, [chunk.len(), num_sets]), &ad);
                let w = Tensor::<2>::from_data(TensorData::new(w, [chunk.len(), num_sets]), &ad);
                let loss = (bce_with_logits(model.logits(ids(chunk, &ad)), y) * w).sum().div_scalar(cells);
                sum += loss.clone().into_scalar::<f32>() as f64;
                done += 1;
                let mut grads = GradientsParams::from_grads(loss.backward(), &model);
                let table = if cfg.embedding_lr > 0.0 { grads.remove::<2>(model.embedding.weight.id) } else { None };
                model = opt.step(cfg.lr, model, grads);
                if let Some(g) = table {
                    // SGD on the summed (not averaged) gradient: the step a gene gets does not shrink with the batch
                    let step = g.mul_scalar(cfg.embedding_lr * cells as f64);
                    model.embedding.weight = model.embedding.weight.map(|t| Tensor::from_inner(t.inner() - step).require_grad());
                }
                let last = done == batches;
                on_step(Step { epoch, batch: done, batches, epoch_loss: last.then(|| sum / done as f64) });
            }
            losses.push(sum / done as f64);
            epoch_seconds.push(t0.elapsed().as_secs_f64());
        }
        let mut model = model.valid();
        if cfg.objective == Objective::Sampled {
            // sampled negatives learn z = log(membership / (k · d_g · P_n(S))): add log(k · P_n(S))
            // back to each set's bias so a gene's sets rank by membership, not by membership / size^0.75
            let total: f64 = size.iter().map(|c| c.powf(0.75)).sum();
            let shift: Vec<f32> =
                size.iter().map(|&c| if c > 0.0 { ((cfg.negatives as f64) * c.powf(0.75) / total).ln() as f32 } else { 0.0 }).collect();
            if let Some(b) = model.output.bias.take() {
                let shift = Tensor::<1>::from_data(TensorData::new(shift, [num_sets]), device);
                model.output.bias = Some(b.map(|t| t + shift));
            }
        }
        Ok(Self { config: cfg, num_genes, num_sets, losses, epoch_seconds, model, device: ad })
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.config.dim
    }

    /// The embedding table `[num_genes, dim]`, row-major.
    pub fn embeddings(&self) -> Vec<f32> {
        crate::to_vec(self.model.embedding.weight.val())
    }

    /// The hidden layer's bias `b1 [dim]`.
    pub fn hidden_bias(&self) -> Vec<f32> {
        crate::to_vec(self.model.hidden_bias.val())
    }

    fn check(&self, genes: &[u32]) {
        assert!(genes.iter().all(|&g| (g as usize) < self.num_genes), "gene id out of range");
    }

    /// burn's embeddings of `genes` `[n, dim]` (what the export's `embedding` reproduces).
    pub fn embed(&self, genes: &[u32]) -> Vec<f32> {
        self.check(genes);
        crate::to_vec(self.model.hidden(ids(genes, &self.device)))
    }

    /// burn's gene-set probabilities `[n, num_sets]` (the export's `gene_sets`).
    pub fn predict(&self, genes: &[u32]) -> Vec<f32> {
        self.check(genes);
        crate::to_vec(sigmoid(self.model.logits(ids(genes, &self.device))))
    }

    /// burn's probabilities of single cells `(gene, set)`, computed 256 genes at a time (no
    /// genes × sets matrix).
    pub fn predict_cells(&self, cells: &[(u32, u32)]) -> Vec<f32> {
        let mut genes: Vec<u32> = cells.iter().map(|c| c.0).collect();
        genes.sort_unstable();
        genes.dedup();
        let mut out = vec![0f32; cells.len()];
        let mut by_gene: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, c) in cells.iter().enumerate() {
            by_gene.entry(c.0).or_default().push(i);
        }
        for chunk in genes.chunks(256) {
            let p = self.predict(chunk);
            for (r, g) in chunk.iter().enumerate() {
                for &i in &by_gene[g] {
                    out[i] = p[r * self.num_sets + cells[i].1 as usize];
                }
            }
        }
        out
    }

    /// ONNX: `gene` int64 `[batch]` → `embedding` `[batch, dim]`, `gene_sets` `[batch, num_sets]`.
    pub fn export(&self, metadata: Vec<(String, String)>) -> ModelProto {
        let cx = Lower::new("gene2vec");
        let gene = cx.input("gene", Elem::I64, &[Dim::from("batch")]);
        let e = cx.embedding(&gene, "embedding_table", &self.model.embedding, "embedding");
        let a = cx.op1("Relu", &cx.bias(&e, "hidden.bias", &self.model.hidden_bias));
        let z = cx.linear(&a, "output", &self.model.output);
        cx.node_to("Sigmoid", &[&z], &["gene_sets"], &[]);
        cx.output("embedding", Elem::F32, &dims("batch", self.dim()));
        cx.output("gene_sets", Elem::F32, &dims("batch", self.num_sets));
        cx.finish(metadata)
    }
}

/// word2vec text format: `N D`, then `name v1 … vD` per row (whitespace in a name becomes `_`).
pub fn word2vec_text(table: &[f32], dim: usize, names: &[String]) -> String {
    let mut s = format!("{} {}\n", names.len(), dim);
    for (i, name) in names.iter().enumerate() {
        s.push_str(&name.split_whitespace().collect::<Vec<_>>().join("_"));
        for v in &table[i * dim..(i + 1) * dim] {
            s.push(' ');
            s.push_str(&v.to_string());
        }
        s.push('\n');
    }
    s
}

/// A split of the memberships for evaluation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Split {
    /// Training memberships `(gene, set)`.
    pub train: Vec<(u32, u32)>,
    /// Held-out memberships: masked in training, the positives of the evaluation.
    pub held: Vec<(u32, u32)>,
    /// Non-memberships of held-out genes, masked in training too: the negatives of the
    /// membership-recovery evaluation (trained zeros would be an unfair comparison).
    pub held_negatives: Vec<(u32, u32)>,
}

impl Split {
    /// Cells without a loss: held-out memberships and negatives.
    pub fn masked(&self) -> Vec<(u32, u32)> {
        self.held.iter().chain(&self.held_negatives).copied().collect()
    }
}

/// Holds out about `fraction` of the memberships, drawn at random (seeded), while the gene
/// keeps ≥ 1 and the set ≥ 2 training memberships (genes in one set are never held out: they
/// would have no training signal). Each held-out gene also gets `negatives` masked
/// non-member sets per held-out membership (fewer when it has fewer). Lists sorted.
pub fn holdout(pairs: &[(u32, u32)], num_sets: usize, fraction: f64, negatives: usize, seed: u64) -> Split {
    let ng = pairs.iter().map(|p| p.0 as usize + 1).max().unwrap_or(0);
    let (mut per_gene, mut per_set) = (vec![0usize; ng], vec![0usize; num_sets]);
    for &(g, s) in pairs {
        per_gene[g as usize] += 1;
        per_set[s as usize] += 1;
    }
    let target = (fraction.clamp(0.0, 1.0) * pairs.len() as f64).round() as usize;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.shuffle(&mut rng);
    let mut held_mask = vec![false; pairs.len()];
    let mut held = 0;
    for i in order {
        if held == target {
            break;
        }
        let (g, s) = (pairs[i].0 as usize, pairs[i].1 as usize);
        if per_gene[g] >= 2 && per_set[s] >= 3 {
            per_gene[g] -= 1;
            per_set[s] -= 1;
            held_mask[i] = true;
            held += 1;
        }
    }
    let pick = |want: bool| -> Vec<(u32, u32)> {
        let mut v: Vec<(u32, u32)> = pairs.iter().zip(&held_mask).filter(|(_, h)| **h == want).map(|(p, _)| *p).collect();
        v.sort_unstable();
        v
    };
    let (train, held) = (pick(false), pick(true));
    let mut sets_of: BTreeMap<u32, (Vec<u32>, usize)> = BTreeMap::new();
    for &(g, _) in &held {
        sets_of.entry(g).or_default().1 += 1;
    }
    for &(g, s) in pairs {
        if let Some(e) = sets_of.get_mut(&g) {
            e.0.push(s);
        }
    }
    let mut held_negatives = Vec::new();
    for (g, (member, h)) in sets_of {
        let mut other: Vec<u32> = (0..num_sets as u32).filter(|s| !member.contains(s)).collect();
        other.shuffle(&mut rng);
        other.truncate(negatives * h);
        other.sort_unstable();
        held_negatives.extend(other.into_iter().map(|s| (g, s)));
    }
    Split { train, held, held_negatives }
}

/// Rows scaled to unit length (a zero row stays zero: cosine 0 with everything).
pub fn normalize_rows(x: &[f32], dim: usize) -> Vec<f32> {
    let mut y = x.to_vec();
    for r in y.chunks_mut(dim) {
        let n = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        if n > 0.0 {
            r.iter_mut().for_each(|v| *v /= n);
        }
    }
    y
}

fn dot(u: &[f32], a: usize, b: usize, d: usize) -> f64 {
    u[a * d..(a + 1) * d].iter().zip(&u[b * d..(b + 1) * d]).map(|(x, y)| (*x as f64) * (*y as f64)).sum()
}

/// Members of each set.
fn members(pairs: &[(u32, u32)], num_sets: usize) -> Vec<Vec<u32>> {
    let mut m = vec![Vec::new(); num_sets];
    for &(g, s) in pairs {
        m[s as usize].push(g);
    }
    m
}

/// Cosine similarity of gene pairs sharing a set vs random gene pairs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PairStats {
    /// Number of member pairs scored.
    pub member_pairs: usize,
    /// Mean cosine similarity of the member pairs.
    pub member_mean_cosine: f64,
    /// Number of random pairs scored.
    pub random_pairs: usize,
    /// Mean cosine similarity of the random pairs.
    pub random_mean_cosine: f64,
    /// member mean ÷ random mean (Gene2Vec's figure; unstable when the random mean is near 0).
    pub ratio: f64,
    /// ROC-AUC of cosine: member pairs vs random pairs.
    pub auc: f64,
}

fn pair_stats(member: &[f64], random: &[f64]) -> PairStats {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (m, r) = (mean(member), mean(random));
    let scores: Vec<f64> = member.iter().chain(random).copied().collect();
    let pos: Vec<bool> = (0..scores.len()).map(|i| i < member.len()).collect();
    PairStats {
        member_pairs: member.len(),
        member_mean_cosine: m,
        random_pairs: random.len(),
        random_mean_cosine: r,
        ratio: m / r,
        auc: roc_auc(&scores, &pos),
    }
}

/// Held-out membership recovery from predicted set probabilities, on masked cells only.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recovery {
    /// Genes with a held-out membership.
    pub genes: usize,
    /// Held-out memberships scored (the positives).
    pub memberships: usize,
    /// Masked non-memberships scored (the negatives).
    pub negatives: usize,
    /// ROC-AUC of the probabilities: held-out memberships vs masked non-memberships.
    pub auc: f64,
    /// Fraction of held-out memberships ranked in the top k of their gene's masked cells.
    pub recall_at: BTreeMap<usize, f64>,
    /// What a random ranking would score.
    pub chance_recall_at: BTreeMap<usize, f64>,
    /// The AUC when sets are ranked by training size alone (a baseline).
    pub set_size_auc: f64,
}

/// All the quality numbers of one embedding.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evaluation {
    /// Held-out memberships `(g, S)`: `g` paired with every training member of `S`, against
    /// random gene pairs.
    pub held_out: PairStats,
    /// The same pairs against a control matched on the held-out gene: `g` with a random gene
    /// (held-out genes are in several sets, which changes their similarity to everything).
    pub held_out_matched: PairStats,
    /// The same pairs against degree-matched random pairs: per pair `(g, h)`, two random genes
    /// with the training degrees (set counts) of `g` and `h`. Member pairs are biased towards
    /// genes in many sets; this control removes what degree alone explains.
    pub held_out_degree_matched: PairStats,
    /// Training memberships: every pair of training members of a set (sampled above a cap).
    pub training: PairStats,
    /// Held-out and training pairs on other vectors, for reference: the full pre-activation
    /// `W1[g] + b1`, and the post-ReLU hidden layer.
    pub held_out_preactivation: PairStats,
    /// Training pairs on the pre-activation `W1[g] + b1`.
    pub training_preactivation: PairStats,
    /// Held-out pairs on the post-ReLU hidden layer.
    pub held_out_relu: PairStats,
    /// Training pairs on the post-ReLU hidden layer.
    pub training_relu: PairStats,
    /// Held-out membership recovery from the predicted set probabilities.
    pub recovery: Recovery,
}

const RANDOM_PAIRS: usize = 100_000;
const MAX_PAIRS: usize = 1_000_000;

/// Two distinct draws from `0..n` (`n ≥ 2`).
fn two(rng: &mut StdRng, n: usize) -> (usize, usize) {
    let a = rng.random_range(0..n);
    let mut b = rng.random_range(0..n - 1);
    if b >= a {
        b += 1;
    }
    (a, b)
}

/// `(g, h)` for every held-out membership `(g, S)` and training member `h ≠ g` of `S`; a uniform
/// sample of `MAX_PAIRS` of them when there are more.
fn held_out_pairs(held: &[(u32, u32)], tm: &[Vec<u32>], rng: &mut StdRng) -> Vec<(usize, usize)> {
    let count = |g: u32, s: u32| tm[s as usize].iter().filter(|&&h| h != g).count();
    let total: usize = held.iter().map(|&(g, s)| count(g, s)).sum();
    if total <= MAX_PAIRS {
        return held
            .iter()
            .flat_map(|&(g, s)| tm[s as usize].iter().filter(move |&&h| h != g).map(move |&h| (g as usize, h as usize)))
            .collect();
    }
    let w: Vec<f64> = held.iter().map(|&(g, s)| count(g, s) as f64).collect();
    let table = crate::node2vec::AliasTable::new(&w);
    (0..MAX_PAIRS)
        .map(|_| {
            let (g, s) = held[table.sample(rng)];
            // the k-th member other than g, without copying the set (a held-out gene is not among
            // its set's training members, so this is the k-th member)
            let members = &tm[s as usize];
            let k = rng.random_range(0..count(g, s));
            (g as usize, *members.iter().filter(|&&h| h != g).nth(k).expect("k < count") as usize)
        })
        .collect()
}

/// Genes grouped by training degree (number of training memberships), for degree-matched draws:
/// a gene of degree `d` is replaced by a random gene of the same degree, or of the nearest degree
/// that has genes when `d` has only the gene itself.
struct ByDegree {
    degree: Vec<usize>,
    genes: BTreeMap<usize, Vec<usize>>,
}

impl ByDegree {
    fn new(train: &[(u32, u32)], n: usize) -> Self {
        let mut degree = vec![0usize; n];
        for &(g, _) in train {
            degree[g as usize] += 1;
        }
        let mut genes: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (g, &d) in degree.iter().enumerate() {
            genes.entry(d).or_default().push(g);
        }
        Self { degree, genes }
    }

    /// A random gene other than `not` with `g`'s degree (or the nearest degree with one).
    fn like(&self, g: usize, not: usize, rng: &mut StdRng) -> usize {
        let d = self.degree[g];
        let usable = |l: &Vec<usize>| l.iter().any(|&x| x != not);
        let below = self.genes.range(..=d).rev().find(|(_, l)| usable(l));
        let above = self.genes.range(d + 1..).find(|(_, l)| usable(l));
        let l = match (below, above) {
            (Some((db, lb)), Some((da, la))) => {
                if d - db <= da - d {
                    lb
                } else {
                    la
                }
            }
            (Some((_, l)), None) | (None, Some((_, l))) => l,
            (None, None) => return not,
        };
        loop {
            let x = l[rng.random_range(0..l.len())];
            if x != not {
                return x;
            }
        }
    }
}

/// Scores embeddings `table [num_genes, dim]` (hidden bias `bias [dim]`) against the split.
/// `masked_probs` are the predicted probabilities of the masked cells, in the order of
/// [`Split::masked`] (held-out memberships, then negatives): no genes × sets matrix is needed.
/// Random pairs are drawn with `seed`.
pub fn evaluate(table: &[f32], bias: &[f32], masked_probs: &[f32], num_sets: usize, split: &Split, seed: u64) -> Evaluation {
    let dim = bias.len();
    let (train, held) = (&split.train, &split.held);
    let n = table.len() / dim;
    let tm = members(train, num_sets);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6e2e_7ec0);
    if n < 2 {
        return Evaluation::default();
    }
    let random: Vec<(usize, usize)> = (0..RANDOM_PAIRS).map(|_| two(&mut rng, n)).collect();
    let held_pairs = held_out_pairs(held, &tm, &mut rng);
    let total: usize = tm.iter().map(|m| m.len() * m.len().saturating_sub(1) / 2).sum();
    let train_pairs: Vec<(usize, usize)> = if total <= MAX_PAIRS {
        tm.iter().flat_map(|m| (0..m.len()).flat_map(move |i| (i + 1..m.len()).map(move |j| (m[i] as usize, m[j] as usize)))).collect()
    } else {
        // uniform over all within-set pairs: a set by its pair count, then two distinct members
        let w: Vec<f64> = tm.iter().map(|m| (m.len() * m.len().saturating_sub(1) / 2) as f64).collect();
        let table = crate::node2vec::AliasTable::new(&w);
        (0..MAX_PAIRS)
            .map(|_| {
                let m = &tm[table.sample(&mut rng)];
                let (a, b) = two(&mut rng, m.len());
                (m[a] as usize, m[b] as usize)
            })
            .collect()
    };
    let matched: Vec<(usize, usize)> = held_pairs
        .iter()
        .map(|&(g, _)| {
            let mut r = rng.random_range(0..n - 1);
            if r >= g {
                r += 1;
            }
            (g, r)
        })
        .collect();
    let deg = ByDegree::new(train, n);
    let degree_matched: Vec<(usize, usize)> = held_pairs
        .iter()
        .map(|&(g, h)| {
            let a = deg.like(g, usize::MAX, &mut rng);
            (a, deg.like(h, a, &mut rng))
        })
        .collect();
    let stats = |x: &[f32]| {
        let u = normalize_rows(x, dim);
        let cos = |p: &[(usize, usize)]| -> Vec<f64> { p.iter().map(|&(a, b)| dot(&u, a, b, dim)).collect() };
        let (r, h) = (cos(&random), cos(&held_pairs));
        (pair_stats(&h, &r), pair_stats(&cos(&train_pairs), &r), pair_stats(&h, &cos(&matched)), pair_stats(&h, &cos(&degree_matched)))
    };
    let (held_out, training, held_out_matched, held_out_degree_matched) = stats(table);
    let pre: Vec<f32> = table.iter().enumerate().map(|(i, v)| v + bias[i % dim]).collect();
    let (held_out_preactivation, training_preactivation, _, _) = stats(&pre);
    let post: Vec<f32> = pre.iter().map(|v| v.max(0.0)).collect();
    let (held_out_relu, training_relu, _, _) = stats(&post);
    Evaluation {
        held_out,
        held_out_matched,
        held_out_degree_matched,
        training,
        held_out_preactivation,
        training_preactivation,
        held_out_relu,
        training_relu,
        recovery: recovery(masked_probs, num_sets, train, split),
    }
}

fn recovery(masked_probs: &[f32], k: usize, train: &[(u32, u32)], split: &Split) -> Recovery {
    let mut size = vec![0f64; k];
    for &(_, s) in train {
        size[s as usize] += 1.0;
    }
    // per held-out gene: its masked cells (set, probability, held-out membership?)
    let mut by_gene: BTreeMap<u32, Vec<(u32, f32, bool)>> = BTreeMap::new();
    let cells = split.held.iter().map(|c| (c, true)).chain(split.held_negatives.iter().map(|c| (c, false)));
    for ((&(g, s), pos), &p) in cells.zip(masked_probs) {
        by_gene.entry(g).or_default().push((s, p, pos));
    }
    let ks = [1usize, 3, 5];
    let (mut hits, mut chance) = ([0f64; 3], [0f64; 3]);
    let (mut scores, mut base, mut pos) = (Vec::new(), Vec::new(), Vec::new());
    for cells in by_gene.values() {
        let mut cand = cells.clone();
        cand.sort_by(|a, b| b.1.total_cmp(&a.1));
        let c = cand.len() as f64;
        for (r, &(s, prob, p)) in cand.iter().enumerate() {
            scores.push(prob as f64);
            base.push(size[s as usize]);
            pos.push(p);
            for (i, &kk) in ks.iter().enumerate() {
                if p {
                    hits[i] += (r < kk) as usize as f64;
                    chance[i] += (kk as f64).min(c) / c;
                }
            }
        }
    }
    let m = split.held.len().max(1) as f64;
    Recovery {
        genes: by_gene.len(),
        memberships: split.held.len(),
        negatives: split.held_negatives.len(),
        auc: roc_auc(&scores, &pos),
        recall_at: ks.iter().zip(hits).map(|(&kk, h)| (kk, h / m)).collect(),
        chance_recall_at: ks.iter().zip(chance).map(|(&kk, h)| (kk, h / m)).collect(),
        set_size_auc: roc_auc(&base, &pos),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdout_keeps_a_training_membership_per_gene() {
        let _rng = crate::test_rng();
        // gene g in sets 0..=(g % 4); 40 genes, 6 sets
        let pairs: Vec<(u32, u32)> = (0..40u32).flat_map(|g| (0..=(g % 4)).map(move |s| (g, s))).collect();
        let sp = holdout(&pairs, 6, 0.3, 1, 1);
        assert_eq!(sp.train.len() + sp.held.len(), pairs.len());
        assert_eq!(sp.held.len(), (0.3 * pairs.len() as f64).round() as usize);
        for &(g, _) in &sp.held {
            assert!(sp.train.iter().any(|p| p.0 == g), "gene {g} lost all training memberships");
        }
        // one masked negative per held-out membership, fewer when the gene has fewer non-member sets
        assert!(sp.held_negatives.len() <= sp.held.len() && sp.held_negatives.len() >= sp.held.len() * 3 / 4);
        assert!(sp.held_negatives.iter().all(|c| !pairs.contains(c) && sp.held.iter().any(|h| h.0 == c.0)));
        assert_eq!(sp.masked().len(), sp.held.len() + sp.held_negatives.len());
        assert_eq!(holdout(&pairs, 6, 0.3, 1, 1), sp);
        assert_ne!(holdout(&pairs, 6, 0.3, 1, 2).held, sp.held);
        // asking for too much: stops where every gene has one training membership left
        let sp = holdout(&pairs, 6, 0.9, 100, 1);
        assert_eq!(sp.train.len(), 40);
        assert_eq!(sp.held.len(), pairs.len() - 40);
        assert_eq!(sp.held.len() + sp.held_negatives.len(), 30 * 5);
        assert_eq!(holdout(&pairs, 6, 0.0, 1, 1).held.len(), 0);
    }

    /// Two blocks of genes with disjoint sets: one set per block is held out for some genes.
    #[test]
    fn learns_sets_and_scores_held_out_pairs() {
        let _rng = crate::test_rng();
        // genes 0..30 in sets 0,1,2 (each gene in two of them), genes 30..60 in sets 3,4,5
        let mut pairs = Vec::new();
        for g in 0..60u32 {
            let base = if g < 30 { 0 } else { 3 };
            pairs.push((g, base + g % 3));
            pairs.push((g, base + (g + 1) % 3));
        }
        pairs.sort();
        let sp = holdout(&pairs, 6, 0.2, 2, 0);
        let (train, held) = (sp.train.clone(), sp.held.clone());
        assert!(!held.is_empty());
        let cfg = Gene2VecConfig { dim: 32, epochs: 150, batch_size: 16, lr: 0.01, ..Default::default() };
        let m = Gene2Vec::fit(60, 6, &train, &sp.masked(), cfg, &Device::flex(), &mut |_| {}).unwrap();
        assert!(m.losses.last().unwrap() < &(m.losses[0] * 0.5), "{:?}", m.losses);
        let all: Vec<u32> = (0..60).collect();
        let (x, p) = (m.embeddings(), m.predict(&all));
        assert_eq!(m.embed(&[5, 0]), [&x[160..192], &x[0..32]].concat());
        assert_eq!(p.len(), 60 * 6);
        // training memberships are predicted
        let fit = train.iter().filter(|&&(g, s)| p[g as usize * 6 + s as usize] > 0.5).count();
        assert_eq!(fit, train.len());
        let masked = sp.masked();
        let mp = m.predict_cells(&masked);
        assert!(masked.iter().zip(&mp).all(|(&(g, s), &v)| v == p[g as usize * 6 + s as usize]));
        let e = evaluate(&x, &m.hidden_bias(), &mp, 6, &sp, 0);
        assert!(e.held_out_degree_matched.member_pairs == e.held_out.member_pairs);
        assert!(e.training.auc > 0.65 && e.training.member_mean_cosine > e.training.random_mean_cosine + 0.2, "{e:?}");
        assert!(e.held_out_degree_matched.auc > 0.6, "{e:?}");
        assert!(e.held_out.member_mean_cosine > e.held_out.random_mean_cosine);
        assert_eq!(e.recovery.memberships, held.len());
        // a held-out set is one of the block's other two sets
        assert!(e.recovery.auc > 0.6 && e.recovery.recall_at[&1] > e.recovery.chance_recall_at[&1], "{:?}", e.recovery);
        let graph = m.export(vec![]).graph.unwrap();
        let ops: Vec<&str> = graph.node.iter().filter_map(|n| n.op_type.as_deref()).collect();
        assert_eq!(ops, ["Gather", "Add", "Relu", "MatMul", "Add", "Sigmoid"]);
        let txt = word2vec_text(&x, 32, &(0..60).map(|i| format!("g {i}")).collect::<Vec<_>>());
        let lines: Vec<&str> = txt.lines().collect();
        assert_eq!((lines[0], lines.len()), ("60 32", 61));
        assert!(lines[1].starts_with("g_0 ") && lines[1].split(" ").count() == 33);
    }

    #[test]
    fn rejects_bad_inputs() {
        let _rng = crate::test_rng();
        let d = Device::flex();
        assert!(Gene2Vec::fit(3, 2, &[], &[], Gene2VecConfig::default(), &d, &mut |_| {}).is_err());
        assert!(Gene2Vec::fit(3, 2, &[(3, 0)], &[], Gene2VecConfig::default(), &d, &mut |_| {}).is_err());
        let cfg = Gene2VecConfig { dim: 0, ..Default::default() };
        assert!(Gene2Vec::fit(3, 2, &[(0, 0)], &[], cfg, &d, &mut |_| {}).is_err());
    }
}

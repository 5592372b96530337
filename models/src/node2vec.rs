//! Node2Vec (Grover & Leskovec 2016): biased second-order random walks on an undirected (optionally
//! weighted) graph, then skip-gram with negative sampling (Mikolov et al. 2013) trained in burn.
//! The export is a lookup table: `node` int64 `[n]` → `embedding` float `[n, dim]` (one Gather).
//!
//! Walk step from `cur` having come from `prev`: the next node `x` is drawn with probability
//! proportional to `w(cur, x) · α(prev, x)`, `α = 1/p` if `x == prev`, `1` if `x` is a neighbour
//! of `prev`, `1/q` otherwise. The first step of a walk is drawn proportional to `w` alone.
//! Sampling is exact: rejection from the first-order (alias-table) proposal, with an exact
//! fallback after a bounded number of tries.

use crate::export::{Lower, dims};
use crate::{Error, Result};
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Initializer};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::activation::log_sigmoid;
use onnx_format::builder::{Dim, Elem};
use onnx_format::pb::ModelProto;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

/// Walker's alias table (Vose's method): O(1) draws from a discrete distribution.
#[derive(Debug, Clone)]
pub struct AliasTable {
    prob: Vec<f64>,
    alias: Vec<u32>,
}

impl AliasTable {
    /// From non-negative weights with a positive sum.
    pub fn new(weights: &[f64]) -> Self {
        let n = weights.len();
        let total: f64 = weights.iter().sum();
        let mut prob: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut alias = vec![0u32; n];
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| prob[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            alias[s] = l as u32;
            prob[l] -= 1.0 - prob[s];
            if prob[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        for i in small.into_iter().chain(large) {
            prob[i] = 1.0;
        }
        Self { prob, alias }
    }

    /// Draw an index with probability proportional to its weight.
    pub fn sample(&self, rng: &mut StdRng) -> usize {
        let i = rng.random_range(0..self.prob.len());
        if rng.random::<f64>() < self.prob[i] { i } else { self.alias[i] as usize }
    }
}

/// An undirected graph as sorted adjacency lists (CSR), with per-node alias tables for
/// weight-proportional neighbour draws.
#[derive(Debug, Clone)]
pub struct WalkGraph {
    /// Number of nodes.
    pub num_nodes: usize,
    offsets: Vec<usize>,
    neighbors: Vec<u32>,
    weights: Vec<f64>,
    alias: Vec<Option<AliasTable>>,
    weighted: bool,
}

impl WalkGraph {
    /// From undirected edges (each listed once or twice; duplicates keep the first weight;
    /// self-loops are dropped) and optional positive finite weights, one per edge.
    pub fn new(num_nodes: usize, edges: &[(u32, u32)], weights: Option<&[f32]>) -> Result<Self> {
        if let Some(w) = weights {
            if w.len() != edges.len() {
                return Err(Error::Input(format!("{} weights for {} edges", w.len(), edges.len())));
            }
            if let Some((i, v)) = w.iter().enumerate().find(|(_, v)| !(v.is_finite() && **v > 0.0)) {
                return Err(Error::Input(format!("edge {i}: weight {v} is not a positive number")));
            }
        }
        let mut adj: Vec<Vec<(u32, f64)>> = vec![Vec::new(); num_nodes];
        for (i, &(a, b)) in edges.iter().enumerate() {
            if a as usize >= num_nodes || b as usize >= num_nodes {
                return Err(Error::Input(format!("edge {i}: ({a}, {b}) out of range 0..{num_nodes}")));
            }
            if a == b {
                continue;
            }
            let w = weights.map_or(1.0, |w| w[i] as f64);
            adj[a as usize].push((b, w));
            adj[b as usize].push((a, w));
        }
        let (mut offsets, mut neighbors, mut ws, mut alias) = (vec![0], Vec::new(), Vec::new(), Vec::new());
        for mut l in adj {
            l.sort_by_key(|&(v, _)| v); // stable: the first weight of a duplicate comes first
            l.dedup_by_key(|&mut (v, _)| v);
            let w: Vec<f64> = l.iter().map(|&(_, w)| w).collect();
            alias.push(if l.is_empty() { None } else { Some(AliasTable::new(&w)) });
            neighbors.extend(l.iter().map(|&(v, _)| v));
            ws.extend(w);
            offsets.push(neighbors.len());
        }
        Ok(Self { num_nodes, offsets, neighbors, weights: ws, alias, weighted: weights.is_some() })
    }

    /// The sorted distinct neighbours of `v`.
    pub fn neighbors(&self, v: u32) -> &[u32] {
        &self.neighbors[self.offsets[v as usize]..self.offsets[v as usize + 1]]
    }

    /// Number of distinct neighbours of `v`.
    pub fn degree(&self, v: u32) -> usize {
        self.neighbors(v).len()
    }

    /// Number of distinct undirected edges (self-loops excluded).
    pub fn num_edges(&self) -> usize {
        self.neighbors.len() / 2
    }

    /// Whether edge weights were given.
    pub fn is_weighted(&self) -> bool {
        self.weighted
    }

    /// Whether `a` and `b` are adjacent.
    pub fn has_edge(&self, a: u32, b: u32) -> bool {
        self.neighbors(a).binary_search(&b).is_ok()
    }

    /// A neighbour of `v` drawn proportional to edge weight; None for an isolated node.
    pub fn first_order(&self, v: u32, rng: &mut StdRng) -> Option<u32> {
        let t = self.alias[v as usize].as_ref()?;
        Some(self.neighbors(v)[t.sample(rng)])
    }

    fn alpha(&self, prev: u32, x: u32, p: f64, q: f64) -> f64 {
        if x == prev {
            1.0 / p
        } else if self.has_edge(x, prev) {
            1.0
        } else {
            1.0 / q
        }
    }

    /// The next node of a walk at `cur`, coming from `prev` (None at the start).
    pub fn step(&self, prev: Option<u32>, cur: u32, p: f64, q: f64, rng: &mut StdRng) -> Option<u32> {
        let Some(prev) = prev else { return self.first_order(cur, rng) };
        let bound = (1.0 / p).max(1.0).max(1.0 / q);
        for _ in 0..64 {
            let x = self.first_order(cur, rng)?;
            if rng.random::<f64>() * bound < self.alpha(prev, x, p, q) {
                return Some(x);
            }
        }
        // exact draw (keeps the distribution exact: the rejection loop's leftover mass)
        let (s, e) = (self.offsets[cur as usize], self.offsets[cur as usize + 1]);
        let w: Vec<f64> = (s..e).map(|i| self.weights[i] * self.alpha(prev, self.neighbors[i], p, q)).collect();
        let mut u = rng.random::<f64>() * w.iter().sum::<f64>();
        for (i, wi) in w.iter().enumerate() {
            if u < *wi {
                return Some(self.neighbors[s + i]);
            }
            u -= wi;
        }
        Some(self.neighbors[e - 1])
    }

    /// One walk of at most `length` nodes from `start` (shorter only at an isolated node).
    pub fn walk(&self, start: u32, length: usize, p: f64, q: f64, rng: &mut StdRng) -> Vec<u32> {
        let mut w = Vec::with_capacity(length);
        if length == 0 {
            return w;
        }
        w.push(start);
        let mut prev = None;
        while w.len() < length {
            let cur = *w.last().unwrap();
            match self.step(prev, cur, p, q, rng) {
                Some(x) => {
                    w.push(x);
                    prev = Some(cur);
                }
                None => break,
            }
        }
        w
    }

    /// `walks_per_node` rounds; each round walks once from every node, in a shuffled order.
    pub fn walks(&self, walks_per_node: usize, length: usize, p: f64, q: f64, rng: &mut StdRng) -> Vec<Vec<u32>> {
        let mut out = Vec::with_capacity(walks_per_node * self.num_nodes);
        let mut order: Vec<u32> = (0..self.num_nodes as u32).collect();
        for _ in 0..walks_per_node {
            order.shuffle(rng);
            for &s in &order {
                out.push(self.walk(s, length, p, q, rng));
            }
        }
        out
    }
}

/// Skip-gram (center, context) pairs: every ordered pair within `window` positions in a walk.
pub fn skipgram_pairs(walks: &[Vec<u32>], window: usize) -> (Vec<u32>, Vec<u32>) {
    let (mut c, mut o) = (Vec::new(), Vec::new());
    for w in walks {
        for i in 0..w.len() {
            let lo = i.saturating_sub(window);
            let hi = (i + window + 1).min(w.len());
            for j in lo..hi {
                if j != i {
                    c.push(w[i]);
                    o.push(w[j]);
                }
            }
        }
    }
    (c, o)
}

/// Node2Vec walk and skip-gram training settings (Grover & Leskovec 2016).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Node2VecConfig {
    /// Embedding width.
    pub dim: usize,
    /// Return parameter: small p → walks backtrack often.
    pub p: f64,
    /// In-out parameter: small q → walks move outward (DFS-like), large q → stay local (BFS-like).
    pub q: f64,
    /// Nodes per walk, the start included.
    pub walk_length: usize,
    /// Walks started from every node.
    pub walks_per_node: usize,
    /// Context size on each side of a node in a walk.
    pub window: usize,
    /// Negative samples per positive pair, drawn from unigram^0.75 over walk occurrences.
    pub negatives: usize,
    /// Passes over all skip-gram pairs (walks are drawn once).
    pub epochs: usize,
    /// Skip-gram pairs per minibatch.
    pub batch_size: usize,
    /// Adam's starting learning rate, decayed linearly to 1e-4 of it over training.
    pub lr: f64,
    /// Seed of the walks, shuffling, negative draws and initialization.
    pub seed: u64,
}

impl Default for Node2VecConfig {
    fn default() -> Self {
        Self {
            dim: 16,
            p: 1.0,
            q: 1.0,
            walk_length: 20,
            walks_per_node: 10,
            window: 5,
            negatives: 5,
            epochs: 5,
            batch_size: 1024,
            lr: 0.01,
            seed: 0,
        }
    }
}

/// The two skip-gram tables: `input` (the node embeddings) and `context`.
#[derive(Module, Debug)]
pub struct SkipGram {
    /// `[num_nodes, dim]` node embeddings (the exported table).
    pub input: Embedding,
    /// `[num_nodes, dim]` context vectors, used only in training.
    pub context: Embedding,
}

fn ids(v: &[u32], device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(TensorData::new(v.iter().map(|&i| i as i64).collect::<Vec<_>>(), [v.len()]), device)
}

impl SkipGram {
    /// word2vec's init: input uniform in ±0.5/dim, context zero.
    pub fn new(n: usize, dim: usize, device: &Device) -> Self {
        let h = 0.5 / dim as f64;
        Self {
            input: EmbeddingConfig::new(n, dim).with_initializer(Initializer::Uniform { min: -h, max: h }).init(device),
            context: EmbeddingConfig::new(n, dim).with_initializer(Initializer::Zeros).init(device),
        }
    }

    /// Mean over the batch of `-log σ(u·v) - Σ_k log σ(-u·v_k)`; `neg` is `[B·K]`, row-major.
    pub fn loss(&self, center: Tensor<1, Int>, context: Tensor<1, Int>, neg: Tensor<1, Int>, k: usize) -> Tensor<1> {
        let b = center.dims()[0];
        let u = self.input.weight.val().select(0, center); // [B, D]
        let d = u.dims()[1];
        let v = self.context.weight.val().select(0, context);
        let pos = log_sigmoid((u.clone() * v).sum_dim(1)).sum();
        let vn = self.context.weight.val().select(0, neg).reshape([b, k, d]);
        let s = (u.unsqueeze_dim::<3>(1) * vn).sum_dim(2); // [B, K, 1]
        let negl = log_sigmoid(s.neg()).sum();
        (pos + negl).div_scalar(b as f64).neg()
    }
}

/// A trained Node2Vec embedding.
pub struct Node2Vec {
    /// The training settings used.
    pub config: Node2VecConfig,
    /// Number of nodes (embedding rows).
    pub num_nodes: usize,
    /// Mean loss per epoch.
    pub losses: Vec<f64>,
    /// Number of skip-gram pairs per epoch.
    pub pairs: usize,
    model: SkipGram,
    device: Device,
}

impl Node2Vec {
    /// Walks on `g`, then skip-gram training; `on_epoch(epoch, mean loss)` after each epoch.
    pub fn fit(g: &WalkGraph, cfg: Node2VecConfig, device: &Device, on_epoch: &mut dyn FnMut(usize, f64)) -> Result<Self> {
        if g.num_nodes == 0 {
            return Err(Error::Input("the graph has no nodes".into()));
        }
        if !(cfg.p > 0.0 && cfg.q > 0.0 && cfg.p.is_finite() && cfg.q.is_finite()) {
            return Err(Error::Input(format!("p and q must be positive numbers (got p = {}, q = {})", cfg.p, cfg.q)));
        }
        if cfg.dim == 0 || cfg.walk_length < 2 || cfg.walks_per_node == 0 || cfg.window == 0 || cfg.batch_size == 0 {
            return Err(Error::Input("dim, walks per node, window and batch size must be ≥ 1 and walk length ≥ 2".into()));
        }
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let walks = g.walks(cfg.walks_per_node, cfg.walk_length, cfg.p, cfg.q, &mut rng);
        let (centers, contexts) = skipgram_pairs(&walks, cfg.window);
        if centers.is_empty() {
            return Err(Error::Input("no skip-gram pairs: the graph has no edges".into()));
        }
        let mut counts = vec![0f64; g.num_nodes];
        for w in &walks {
            for &v in w {
                counts[v as usize] += 1.0;
            }
        }
        let noise = AliasTable::new(&counts.iter().map(|c| c.powf(0.75)).collect::<Vec<_>>());
        device.seed(cfg.seed);
        let ad = device.clone().autodiff();
        let mut model = SkipGram::new(g.num_nodes, cfg.dim, &ad);
        let mut opt = AdamConfig::new().init();
        let k = cfg.negatives;
        let mut order: Vec<usize> = (0..centers.len()).collect();
        let mut losses = Vec::new();
        let total_steps = (cfg.epochs * centers.len().div_ceil(cfg.batch_size)) as f64;
        let mut step = 0usize;
        for epoch in 1..=cfg.epochs {
            order.shuffle(&mut rng);
            let (mut sum, mut batches) = (0.0, 0);
            for chunk in order.chunks(cfg.batch_size) {
                let c: Vec<u32> = chunk.iter().map(|&i| centers[i]).collect();
                let o: Vec<u32> = chunk.iter().map(|&i| contexts[i]).collect();
                let mut neg = Vec::with_capacity(chunk.len() * k);
                for &pos in &o {
                    for _ in 0..k {
                        // word2vec skips a negative equal to the positive context; redraw a few times
                        let mut x = noise.sample(&mut rng) as u32;
                        for _ in 0..8 {
                            if x != pos {
                                break;
                            }
                            x = noise.sample(&mut rng) as u32;
                        }
                        neg.push(x);
                    }
                }
                let loss = if k > 0 {
                    model.loss(ids(&c, &ad), ids(&o, &ad), ids(&neg, &ad), k)
                } else {
                    let u = model.input.weight.val().select(0, ids(&c, &ad));
                    let v = model.context.weight.val().select(0, ids(&o, &ad));
                    log_sigmoid((u * v).sum_dim(1)).mean().neg()
                };
                sum += loss.clone().into_scalar::<f32>() as f64;
                batches += 1;
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                // word2vec's schedule: linear decay to 1e-4 of the start
                let lr = cfg.lr * (1.0 - step as f64 / total_steps).max(1e-4);
                step += 1;
                model = opt.step(lr, model, grads);
            }
            let mean = sum / batches as f64;
            losses.push(mean);
            on_epoch(epoch, mean);
        }
        Ok(Self { config: cfg, num_nodes: g.num_nodes, losses, pairs: centers.len(), model: model.valid(), device: ad })
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.config.dim
    }

    /// The whole input table `[num_nodes, dim]`, row-major.
    pub fn embeddings(&self) -> Vec<f32> {
        crate::to_vec(self.model.input.weight.val())
    }

    /// The burn lookup for node ids (the forward the ONNX export reproduces). Panics on ids
    /// outside `0..num_nodes`.
    pub fn embed(&self, nodes: &[u32]) -> Vec<f32> {
        assert!(nodes.iter().all(|&v| (v as usize) < self.num_nodes), "node id out of range");
        crate::to_vec(self.model.input.weight.val().select(0, ids(nodes, &self.device)))
    }

    /// ONNX: input `node` int64 `[n]` → output `embedding` float `[n, dim]` by Gather on the table.
    pub fn export(&self, metadata: Vec<(String, String)>) -> ModelProto {
        let cx = Lower::new("node2vec");
        let node = cx.input("node", Elem::I64, &[Dim::from("n")]);
        cx.embedding(&node, "embedding_table", &self.model.input, "embedding");
        cx.output("embedding", Elem::F32, &dims("n", self.dim()));
        cx.finish(metadata)
    }

    /// word2vec text format: `N D`, then one line `name v1 … vD` per node (whitespace in a
    /// name becomes `_`). `names` must have one entry per node.
    pub fn to_word2vec_text(&self, names: &[String]) -> String {
        let e = self.embeddings();
        let d = self.dim();
        let mut s = format!("{} {}\n", self.num_nodes, d);
        for i in 0..self.num_nodes {
            let name = names.get(i).map_or_else(|| i.to_string(), |n| n.split_whitespace().collect::<Vec<_>>().join("_"));
            s.push_str(&name);
            for v in &e[i * d..(i + 1) * d] {
                s.push(' ');
                s.push_str(&v.to_string());
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// prev = 0, cur = 1; 1's neighbours: 0 (return), 2 (also adjacent to 0), 3 (not).
    fn triangle_plus_tail(weights: Option<&[f32]>) -> WalkGraph {
        WalkGraph::new(4, &[(0, 1), (0, 2), (1, 2), (1, 3)], weights).unwrap()
    }

    fn step_freq(g: &WalkGraph, p: f64, q: f64, draws: usize) -> [f64; 4] {
        let mut rng = StdRng::seed_from_u64(7);
        let mut f = [0f64; 4];
        for _ in 0..draws {
            f[g.step(Some(0), 1, p, q, &mut rng).unwrap() as usize] += 1.0 / draws as f64;
        }
        f
    }

    #[test]
    fn alias_table_matches_weights() {
        let _rng = crate::test_rng();
        let t = AliasTable::new(&[1.0, 2.0, 0.0, 5.0]);
        let mut rng = StdRng::seed_from_u64(1);
        let mut f = [0f64; 4];
        for _ in 0..80_000 {
            f[t.sample(&mut rng)] += 1.0 / 80_000.0;
        }
        for (got, want) in f.iter().zip([1.0 / 8.0, 2.0 / 8.0, 0.0, 5.0 / 8.0]) {
            assert!((got - want).abs() < 0.01, "{f:?}");
        }
    }

    #[test]
    fn second_order_transition_probabilities() {
        let _rng = crate::test_rng();
        // α: 1/p to 0, 1 to 2, 1/q to 3; p = 2, q = 0.5 → 0.5 : 1 : 2
        let g = triangle_plus_tail(None);
        let f = step_freq(&g, 2.0, 0.5, 70_000);
        for (got, want) in [f[0], f[2], f[3]].iter().zip([0.5 / 3.5, 1.0 / 3.5, 2.0 / 3.5]) {
            assert!((got - want).abs() < 0.01, "{f:?}");
        }
        assert_eq!(f[1], 0.0);
        // weights multiply: w(1,0) = 1, w(1,2) = 3, w(1,3) = 2 → 0.5 : 3 : 4
        let g = triangle_plus_tail(Some(&[1.0, 1.0, 3.0, 2.0]));
        let f = step_freq(&g, 2.0, 0.5, 70_000);
        for (got, want) in [f[0], f[2], f[3]].iter().zip([0.5 / 7.5, 3.0 / 7.5, 4.0 / 7.5]) {
            assert!((got - want).abs() < 0.01, "{f:?}");
        }
        // extreme parameters go through the exact fallback and stay exact: 1e4 : 1 : 1
        let g = triangle_plus_tail(None);
        let f = step_freq(&g, 1e-4, 1.0, 20_000);
        assert!(f[0] > 0.995, "{f:?}");
    }

    /// A cycle of `n` nodes.
    fn cycle(n: u32) -> WalkGraph {
        let e: Vec<(u32, u32)> = (0..n).map(|i| (i, (i + 1) % n)).collect();
        WalkGraph::new(n as usize, &e, None).unwrap()
    }

    fn return_rate(g: &WalkGraph, p: f64, q: f64) -> f64 {
        let mut rng = StdRng::seed_from_u64(3);
        let walks = g.walks(5, 40, p, q, &mut rng);
        let (mut back, mut steps) = (0, 0);
        for w in &walks {
            for t in 2..w.len() {
                steps += 1;
                back += (w[t] == w[t - 2]) as usize;
            }
        }
        back as f64 / steps as f64
    }

    #[test]
    fn p_and_q_bias_walks() {
        let _rng = crate::test_rng();
        // on a cycle there are no common neighbours: return ∝ 1/p, forward ∝ 1/q
        let g = cycle(30);
        assert!((return_rate(&g, 1.0, 1.0) - 0.5).abs() < 0.05);
        assert!(return_rate(&g, 0.01, 1.0) > 0.95);
        assert!(return_rate(&g, 1.0, 0.01) < 0.05);
        // q tiny: walks go around the cycle (many distinct nodes); p tiny: they bounce in place
        let distinct = |p: f64, q: f64| {
            let mut rng = StdRng::seed_from_u64(4);
            let n: usize = (0..50u32)
                .map(|s| {
                    let mut w = g.walk(s % 30, 20, p, q, &mut rng);
                    w.sort();
                    w.dedup();
                    w.len()
                })
                .sum();
            n as f64 / 50.0
        };
        assert!(distinct(1.0, 0.01) > 17.0);
        assert!(distinct(0.01, 1.0) < 4.0);
        assert!(distinct(1.0, 0.01) > distinct(1.0, 1.0));
    }

    #[test]
    fn graph_building_and_walk_edges() {
        let _rng = crate::test_rng();
        assert!(WalkGraph::new(2, &[(0, 2)], None).is_err());
        assert!(WalkGraph::new(2, &[(0, 1)], Some(&[0.0])).is_err());
        assert!(WalkGraph::new(2, &[(0, 1)], Some(&[1.0, 2.0])).is_err());
        // duplicates and self-loops; node 3 isolated
        let g = WalkGraph::new(4, &[(0, 1), (1, 0), (1, 1), (1, 2)], None).unwrap();
        assert_eq!(g.neighbors(1), &[0, 2]);
        assert_eq!(g.num_edges(), 2);
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(g.walk(3, 10, 1.0, 1.0, &mut rng), vec![3]);
        for w in g.walks(3, 10, 0.5, 2.0, &mut rng) {
            assert!(w.windows(2).all(|e| g.has_edge(e[0], e[1])));
        }
        let (c, o) = skipgram_pairs(&[vec![0, 1, 2]], 1);
        assert_eq!((c, o), (vec![0, 1, 1, 2], vec![1, 0, 2, 1]));
    }

    /// Two 6-cliques joined by one edge: the embedding separates them.
    #[test]
    fn embeds_two_communities() {
        let _rng = crate::test_rng();
        let mut e = Vec::new();
        for base in [0u32, 6] {
            for a in 0..6 {
                for b in a + 1..6 {
                    e.push((base + a, base + b));
                }
            }
        }
        e.push((0, 6));
        let g = WalkGraph::new(12, &e, None).unwrap();
        let cfg = Node2VecConfig {
            dim: 8,
            epochs: 3,
            walk_length: 10,
            walks_per_node: 10,
            window: 3,
            batch_size: 256,
            lr: 0.02,
            ..Default::default()
        };
        let m = Node2Vec::fit(&g, cfg, &Device::flex(), &mut |_, _| {}).unwrap();
        assert!(m.losses.last().unwrap() < &m.losses[0]);
        let x = m.embeddings();
        let (labels, _) = crate::cluster::kmeans(&x, 12, 8, 2, 0, 5);
        let truth: Vec<usize> = (0..12).map(|i| i / 6).collect();
        assert!(crate::cluster::adjusted_rand_index(&labels, &truth) > 0.99, "{labels:?}");
        assert_eq!(m.embed(&[3, 0]), [&x[24..32], &x[0..8]].concat());
        let txt = m.to_word2vec_text(&(0..12).map(|i| format!("n {i}")).collect::<Vec<_>>());
        let lines: Vec<&str> = txt.lines().collect();
        assert_eq!(lines[0], "12 8");
        assert_eq!(lines.len(), 13);
        assert!(lines[1].starts_with("n_0 "));
        assert_eq!(lines[1].split(' ').count(), 9);
        let model = m.export(vec![]);
        let graph = model.graph.as_ref().unwrap();
        assert_eq!(graph.node.len(), 1);
        assert_eq!(graph.node[0].op_type.as_deref(), Some("Gather"));
    }
}

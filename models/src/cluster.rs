//! Plain-Rust tools for embeddings: k-means (k-means++ init, restarts), the adjusted Rand index,
//! accuracy under the best cluster-to-class matching, macro F1, and multinomial logistic
//! regression (L2, full-batch Adam). Data are row-major `&[f32]` of `n × d`.

use rand::{Rng, SeedableRng, rngs::StdRng};

fn sq_dist(a: &[f32], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(&x, &c)| (x as f64 - c) * (x as f64 - c)).sum()
}

/// One k-means run from a k-means++ start; returns (labels, inertia).
fn kmeans_once(x: &[f32], n: usize, d: usize, k: usize, rng: &mut StdRng) -> (Vec<usize>, f64) {
    let row = |i: usize| &x[i * d..(i + 1) * d];
    let mut centers: Vec<Vec<f64>> = Vec::with_capacity(k);
    centers.push(row(rng.random_range(0..n)).iter().map(|&v| v as f64).collect());
    let mut best_d: Vec<f64> = (0..n).map(|i| sq_dist(row(i), &centers[0])).collect();
    while centers.len() < k {
        let total: f64 = best_d.iter().sum();
        let pick = if total > 0.0 {
            let mut u = rng.random::<f64>() * total;
            let mut pick = n - 1;
            for (i, &w) in best_d.iter().enumerate() {
                if u < w {
                    pick = i;
                    break;
                }
                u -= w;
            }
            pick
        } else {
            rng.random_range(0..n)
        };
        let c: Vec<f64> = row(pick).iter().map(|&v| v as f64).collect();
        for (i, bd) in best_d.iter_mut().enumerate() {
            *bd = bd.min(sq_dist(row(i), &c));
        }
        centers.push(c);
    }
    let mut labels = vec![usize::MAX; n];
    let mut inertia = 0.0;
    for _ in 0..300 {
        // assign
        let mut changed = false;
        inertia = 0.0;
        for (i, li) in labels.iter_mut().enumerate() {
            let (mut bj, mut bd) = (0, f64::INFINITY);
            for (j, c) in centers.iter().enumerate() {
                let dd = sq_dist(row(i), c);
                if dd < bd {
                    bj = j;
                    bd = dd;
                }
            }
            inertia += bd;
            if *li != bj {
                *li = bj;
                changed = true;
            }
        }
        if !changed {
            break;
        }
        // update; an empty cluster takes the point farthest from its center
        let mut sums = vec![vec![0f64; d]; k];
        let mut counts = vec![0usize; k];
        for i in 0..n {
            counts[labels[i]] += 1;
            for (s, &v) in sums[labels[i]].iter_mut().zip(row(i)) {
                *s += v as f64;
            }
        }
        for j in 0..k {
            if counts[j] > 0 {
                centers[j] = sums[j].iter().map(|s| s / counts[j] as f64).collect();
            } else {
                let far = (0..n)
                    .max_by(|&a, &b| sq_dist(row(a), &centers[labels[a]]).total_cmp(&sq_dist(row(b), &centers[labels[b]])))
                    .unwrap_or(0);
                centers[j] = row(far).iter().map(|&v| v as f64).collect();
            }
        }
    }
    (labels, inertia)
}

/// k-means on `x [n, d]`: k-means++ init, Lloyd iterations (at most 300), `restarts` runs
/// (at least 1) from one seeded generator; the run with the lowest inertia (sum of squared
/// distances to the assigned centers) wins. `k` is clamped to `1..=n`; `n == 0` gives no labels.
/// Panics if `x.len() != n * d`.
pub fn kmeans(x: &[f32], n: usize, d: usize, k: usize, seed: u64, restarts: usize) -> (Vec<usize>, f64) {
    assert_eq!(x.len(), n * d, "kmeans: {} values for {n} × {d}", x.len());
    if n == 0 {
        return (Vec::new(), 0.0);
    }
    let k = k.clamp(1, n);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut best = (Vec::new(), f64::INFINITY);
    for _ in 0..restarts.max(1) {
        let r = kmeans_once(x, n, d, k, &mut rng);
        if r.1 < best.1 {
            best = r;
        }
    }
    best
}

/// Contingency table of two labellings (labels are any `usize`, compacted first).
fn contingency(a: &[usize], b: &[usize]) -> Vec<Vec<u64>> {
    let compact = |v: &[usize]| -> Vec<usize> {
        let mut ids = std::collections::HashMap::new();
        v.iter()
            .map(|x| {
                let l = ids.len();
                *ids.entry(*x).or_insert(l)
            })
            .collect()
    };
    let (ca, cb) = (compact(a), compact(b));
    let ka = ca.iter().max().map_or(0, |m| m + 1);
    let kb = cb.iter().max().map_or(0, |m| m + 1);
    let mut t = vec![vec![0u64; kb]; ka];
    for (&i, &j) in ca.iter().zip(&cb) {
        t[i][j] += 1;
    }
    t
}

/// Adjusted Rand index (Hubert & Arabie 1985) of two labellings of the same items: 1 for equal
/// partitions (whatever the label names), about 0 for independent ones, can be negative.
/// Two trivial partitions that agree (both one cluster, or both all singletons) give 1.
/// Panics if the lengths differ.
pub fn adjusted_rand_index(a: &[usize], b: &[usize]) -> f64 {
    assert_eq!(a.len(), b.len(), "adjusted_rand_index: labellings of different lengths");
    let c2 = |x: u64| (x as f64) * (x as f64 - 1.0) / 2.0;
    let t = contingency(a, b);
    let index: f64 = t.iter().flatten().map(|&x| c2(x)).sum();
    let rows: f64 = t.iter().map(|r| c2(r.iter().sum())).sum();
    let cols: f64 = (0..t.first().map_or(0, |r| r.len())).map(|j| c2(t.iter().map(|r| r[j]).sum())).sum();
    let total = c2(a.len() as u64);
    if total == 0.0 {
        return 1.0;
    }
    let expected = rows * cols / total;
    let max = (rows + cols) / 2.0;
    if max == expected {
        return 1.0;
    }
    (index - expected) / (max - expected)
}

/// Min-cost assignment on a square cost matrix (Hungarian algorithm, O(k³)); `out[row] = col`.
fn hungarian(cost: &[Vec<f64>]) -> Vec<usize> {
    let n = cost.len();
    let (mut u, mut v) = (vec![0.0; n + 1], vec![0.0; n + 1]);
    let (mut p, mut way) = (vec![0usize; n + 1], vec![0usize; n + 1]);
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let (i0, mut delta, mut j1) = (p[j0], f64::INFINITY, 0);
            for j in 1..=n {
                if !used[j] {
                    let cur = cost[i0 - 1][j - 1] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut out = vec![0; n];
    for j in 1..=n {
        if p[j] > 0 {
            out[p[j] - 1] = j - 1;
        }
    }
    out
}

/// Clustering accuracy: the fraction of items whose cluster maps to their class under the
/// one-to-one cluster→class matching that maximizes it (Hungarian algorithm). Clusters left
/// without a class count as wrong. NaN for no items.
pub fn matched_accuracy(pred: &[usize], truth: &[usize]) -> f64 {
    assert_eq!(pred.len(), truth.len(), "matched_accuracy: labellings of different lengths");
    if truth.is_empty() {
        return f64::NAN;
    }
    let t = contingency(pred, truth);
    let m = t.len().max(t.first().map_or(0, |r| r.len()));
    let cost: Vec<Vec<f64>> =
        (0..m).map(|i| (0..m).map(|j| -(t.get(i).and_then(|r| r.get(j)).copied().unwrap_or(0) as f64)).collect()).collect();
    let assign = hungarian(&cost);
    let hits: u64 = (0..t.len()).map(|i| t[i].get(assign[i]).copied().unwrap_or(0)).sum();
    hits as f64 / truth.len() as f64
}

/// Macro-averaged F1 over classes `0..k`; a class with no true and no predicted items scores 0
/// and still counts (scikit-learn's `zero_division=0` with `labels=range(k)`).
pub fn macro_f1(pred: &[usize], truth: &[usize], k: usize) -> f64 {
    assert_eq!(pred.len(), truth.len(), "macro_f1: labellings of different lengths");
    if k == 0 {
        return f64::NAN;
    }
    let (mut tp, mut fp, mut fn_) = (vec![0f64; k], vec![0f64; k], vec![0f64; k]);
    for (&p, &t) in pred.iter().zip(truth) {
        if p == t {
            if t < k {
                tp[t] += 1.0;
            }
        } else {
            if p < k {
                fp[p] += 1.0;
            }
            if t < k {
                fn_[t] += 1.0;
            }
        }
    }
    (0..k)
        .map(|c| {
            let den = 2.0 * tp[c] + fp[c] + fn_[c];
            if den > 0.0 { 2.0 * tp[c] / den } else { 0.0 }
        })
        .sum::<f64>()
        / k as f64
}

/// Multinomial logistic regression on standardized features: minimizes mean cross-entropy
/// + `l2 / 2 · ||W||²` (bias not penalized) with full-batch Adam for `iters` steps.
#[derive(Debug, Clone)]
pub struct LogisticRegression {
    /// L2 strength on the weights.
    pub l2: f64,
    /// Adam learning rate.
    pub lr: f64,
    /// Full-batch Adam steps.
    pub iters: usize,
    /// Standardize each feature with the training mean/std (kept for prediction).
    pub standardize: bool,
    /// Fitted `[d, k]` row-major weights.
    pub weights: Vec<f64>,
    /// Fitted `[k]` bias.
    pub bias: Vec<f64>,
    /// Fitted per-feature mean `[d]` (0 without standardization).
    pub mean: Vec<f64>,
    /// Fitted per-feature standard deviation `[d]` (1 without standardization or for constant features).
    pub std: Vec<f64>,
    /// Number of features.
    pub d: usize,
    /// Number of classes.
    pub k: usize,
}

impl Default for LogisticRegression {
    fn default() -> Self {
        Self { l2: 1e-3, lr: 0.05, iters: 500, standardize: true, weights: vec![], bias: vec![], mean: vec![], std: vec![], d: 0, k: 0 }
    }
}

impl LogisticRegression {
    /// An unfitted model with L2 strength `l2` and the other settings at their defaults.
    pub fn new(l2: f64) -> Self {
        Self { l2, ..Default::default() }
    }

    fn scaled(&self, x: &[f32], i: usize) -> Vec<f64> {
        let r = &x[i * self.d..(i + 1) * self.d];
        r.iter().enumerate().map(|(j, &v)| (v as f64 - self.mean[j]) / self.std[j]).collect()
    }

    fn logits_row(&self, z: &[f64], out: &mut [f64]) {
        out.copy_from_slice(&self.bias);
        for (j, &zj) in z.iter().enumerate() {
            let w = &self.weights[j * self.k..(j + 1) * self.k];
            for (o, &wv) in out.iter_mut().zip(w) {
                *o += zj * wv;
            }
        }
        let m = out.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut s = 0.0;
        for o in out.iter_mut() {
            *o = (*o - m).exp();
            s += *o;
        }
        for o in out.iter_mut() {
            *o /= s;
        }
    }

    /// Fit on `x [n, d]` with labels `y` in `0..k`. Errors on inconsistent sizes or labels.
    pub fn fit(&mut self, x: &[f32], n: usize, d: usize, y: &[usize], k: usize) -> crate::Result<()> {
        if x.len() != n * d || y.len() != n {
            return Err(crate::Error::Input(format!("logistic regression: {} values and {} labels for {n} rows × {d}", x.len(), y.len())));
        }
        if n == 0 || k == 0 {
            return Err(crate::Error::Input("logistic regression: no rows or no classes".into()));
        }
        if let Some(&bad) = y.iter().find(|&&c| c >= k) {
            return Err(crate::Error::Input(format!("logistic regression: label {bad} not in 0..{k}")));
        }
        self.d = d;
        self.k = k;
        self.mean = vec![0.0; d];
        self.std = vec![1.0; d];
        if self.standardize {
            for i in 0..n {
                for j in 0..d {
                    self.mean[j] += x[i * d + j] as f64 / n as f64;
                }
            }
            let mut var = vec![0.0; d];
            for i in 0..n {
                for j in 0..d {
                    var[j] += (x[i * d + j] as f64 - self.mean[j]).powi(2) / n as f64;
                }
            }
            self.std = var.iter().map(|v| if *v > 1e-12 { v.sqrt() } else { 1.0 }).collect();
        }
        let z: Vec<f64> = (0..n).flat_map(|i| self.scaled(x, i)).collect();
        self.weights = vec![0.0; d * k];
        self.bias = vec![0.0; k];
        let np = d * k + k;
        let (mut m1, mut m2) = (vec![0.0; np], vec![0.0; np]);
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
        let mut p = vec![0.0; k];
        for t in 1..=self.iters {
            let mut g = vec![0.0; np];
            for i in 0..n {
                let zi = &z[i * d..(i + 1) * d];
                self.logits_row(zi, &mut p);
                p[y[i]] -= 1.0;
                for (j, &zj) in zi.iter().enumerate() {
                    for c in 0..k {
                        g[j * k + c] += zj * p[c] / n as f64;
                    }
                }
                for c in 0..k {
                    g[d * k + c] += p[c] / n as f64;
                }
            }
            for (gi, w) in g.iter_mut().zip(&self.weights) {
                *gi += self.l2 * w;
            }
            let (c1, c2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
            for i in 0..np {
                m1[i] = b1 * m1[i] + (1.0 - b1) * g[i];
                m2[i] = b2 * m2[i] + (1.0 - b2) * g[i] * g[i];
                let step = self.lr * (m1[i] / c1) / ((m2[i] / c2).sqrt() + eps);
                if i < d * k {
                    self.weights[i] -= step;
                } else {
                    self.bias[i - d * k] -= step;
                }
            }
        }
        Ok(())
    }

    /// Class probabilities `[n, k]` for `x [n, d]` (the fitted `d`). Panics if unfitted or if
    /// `x.len() != n * d`.
    pub fn predict_proba(&self, x: &[f32], n: usize) -> Vec<f32> {
        assert!(self.k > 0, "logistic regression: not fitted");
        assert_eq!(x.len(), n * self.d, "logistic regression: {} values for {n} rows × {}", x.len(), self.d);
        let mut out = Vec::with_capacity(n * self.k);
        let mut p = vec![0.0; self.k];
        for i in 0..n {
            let z = self.scaled(x, i);
            self.logits_row(&z, &mut p);
            out.extend(p.iter().map(|&v| v as f32));
        }
        out
    }

    /// Most probable class per row.
    pub fn predict(&self, x: &[f32], n: usize) -> Vec<usize> {
        crate::metrics::argmax_rows(&self.predict_proba(x, n), self.k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two Gaussian-ish blobs around ±c in `d` dims, `m` points each.
    fn blobs(m: usize, d: usize, c: f32, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..2 * m {
            let cls = i % 2;
            for _ in 0..d {
                let noise: f32 = (0..4).map(|_| rng.random::<f32>() - 0.5).sum();
                x.push(if cls == 0 { -c } else { c } + noise);
            }
            y.push(cls);
        }
        (x, y)
    }

    #[test]
    fn ari_identical_and_permuted() {
        let a = vec![0, 0, 1, 1, 2, 2, 2];
        assert!((adjusted_rand_index(&a, &a) - 1.0).abs() < 1e-12);
        let b: Vec<usize> = a.iter().map(|&l| [7, 3, 5][l]).collect();
        assert!((adjusted_rand_index(&a, &b) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn ari_known_values() {
        // scikit-learn: adjusted_rand_score([0,0,1,1],[0,0,1,2]) = 0.5714285714285715
        assert!((adjusted_rand_index(&[0, 0, 1, 1], &[0, 0, 1, 2]) - 0.5714285714285715).abs() < 1e-12);
        // adjusted_rand_score([0,0,1,1],[0,1,0,1]) = -0.5
        assert!((adjusted_rand_index(&[0, 0, 1, 1], &[0, 1, 0, 1]) + 0.5).abs() < 1e-12);
        // adjusted_rand_score([0,0,0,1,1,1],[0,0,1,1,2,2]) = 0.24242424242424246
        assert!((adjusted_rand_index(&[0, 0, 0, 1, 1, 1], &[0, 0, 1, 1, 2, 2]) - 0.24242424242424246).abs() < 1e-12);
        assert_eq!(adjusted_rand_index(&[0, 0, 0], &[1, 1, 1]), 1.0);
    }

    #[test]
    fn matched_accuracy_and_f1() {
        assert_eq!(matched_accuracy(&[1, 1, 0, 0], &[0, 0, 1, 1]), 1.0);
        assert_eq!(matched_accuracy(&[0, 0, 0, 1], &[0, 0, 1, 1]), 0.75);
        // three clusters, two classes: the extra cluster counts as wrong
        assert_eq!(matched_accuracy(&[0, 0, 1, 2], &[0, 0, 1, 1]), 0.75);
        assert_eq!(macro_f1(&[0, 1, 2], &[0, 1, 2], 3), 1.0);
        // class 0: tp 1 fp 1 fn 0 → 2/3; class 1: tp 0 fn 1 → 0
        assert!((macro_f1(&[0, 0], &[0, 1], 2) - (2.0 / 3.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn kmeans_separates_blobs() {
        let (x, y) = blobs(50, 3, 5.0, 1);
        let (labels, inertia) = kmeans(&x, 100, 3, 2, 0, 5);
        assert_eq!(adjusted_rand_index(&labels, &y), 1.0);
        assert!(inertia > 0.0);
        // same seed, same answer
        assert_eq!(kmeans(&x, 100, 3, 2, 0, 5).0, labels);
        // k = 1: inertia is the total sum of squares; more clusters never fit worse
        let (_, i1) = kmeans(&x, 100, 3, 1, 0, 1);
        assert!(i1 > inertia);
        let (l, _) = kmeans(&x[..9], 3, 3, 10, 0, 2);
        assert_eq!(l.len(), 3);
        assert_eq!(kmeans(&[], 0, 3, 2, 0, 1).0.len(), 0);
    }

    #[test]
    fn logistic_regression_separates() {
        let (x, y) = blobs(40, 4, 1.5, 2);
        let mut lr = LogisticRegression::default();
        lr.fit(&x, 80, 4, &y, 2).unwrap();
        assert_eq!(lr.predict(&x, 80), y);
        let p = lr.predict_proba(&x, 80);
        assert!(p.chunks(2).all(|r| (r[0] + r[1] - 1.0).abs() < 1e-5));
        // three classes on a line, linearly separable one-vs-rest by softmax
        let x3: Vec<f32> = (0..60).map(|i| (i / 20) as f32 * 4.0 + (i % 20) as f32 * 0.1).collect();
        let y3: Vec<usize> = (0..60).map(|i| i / 20).collect();
        let mut m = LogisticRegression { iters: 2000, l2: 0.0, ..Default::default() };
        m.fit(&x3, 60, 1, &y3, 3).unwrap();
        assert_eq!(m.predict(&x3, 60), y3);
        assert!(LogisticRegression::default().fit(&x3, 60, 1, &y3, 2).is_err());
        assert!(LogisticRegression::default().fit(&x3, 61, 1, &y3, 3).is_err());
    }
}

//! Classification metrics: accuracy and ROC-AUC (binary, and macro one-vs-rest).

/// Fraction of `pred == truth`.
pub fn accuracy(pred: &[usize], truth: &[usize]) -> f64 {
    if truth.is_empty() {
        return f64::NAN;
    }
    pred.iter().zip(truth).filter(|(a, b)| a == b).count() as f64 / truth.len() as f64
}

/// ROC-AUC of `scores` for `positive` labels (Mann–Whitney U, ties count one half).
/// NaN when one class is absent.
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // average ranks over ties
    let mut ranks = vec![0f64; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            ranks[idx[k]] = r;
        }
        i = j + 1;
    }
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return f64::NAN;
    }
    let sum_pos: f64 = ranks.iter().zip(positive).filter(|(_, p)| **p).map(|(r, _)| r).sum();
    (sum_pos - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)
}

/// ROC-AUC from class probabilities `probs [n, k]`: class 1 vs 0 when `k == 2`, otherwise the
/// mean over classes present of one-vs-rest AUCs.
pub fn roc_auc_multiclass(probs: &[f32], k: usize, truth: &[usize]) -> f64 {
    let col = |c: usize| -> Vec<f64> { (0..truth.len()).map(|i| probs[i * k + c] as f64).collect() };
    if k == 2 {
        return roc_auc(&col(1), &truth.iter().map(|&t| t == 1).collect::<Vec<_>>());
    }
    let aucs: Vec<f64> =
        (0..k).map(|c| roc_auc(&col(c), &truth.iter().map(|&t| t == c).collect::<Vec<_>>())).filter(|a| !a.is_nan()).collect();
    if aucs.is_empty() { f64::NAN } else { aucs.iter().sum::<f64>() / aucs.len() as f64 }
}

/// Row-wise argmax of `probs [n, k]`.
pub fn argmax_rows(probs: &[f32], k: usize) -> Vec<usize> {
    probs.chunks(k).map(|row| row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0)).collect()
}

/// Mean and sample standard deviation.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let s = if v.len() > 1 { (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
    (m, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_known_values() {
        assert_eq!(roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]), 0.75);
        assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), 0.5);
        assert!(roc_auc(&[0.5, 0.5], &[true, true]).is_nan());
        assert_eq!(roc_auc(&[1.0, 2.0, 3.0], &[false, true, true]), 1.0);
    }

    #[test]
    fn accuracy_and_argmax() {
        let p = [0.2, 0.8, 0.9, 0.1];
        assert_eq!(argmax_rows(&p, 2), vec![1, 0]);
        assert_eq!(accuracy(&[1, 0], &[1, 1]), 0.5);
    }
}

/// ROC-AUC per task of `probs [n, tasks]` against `labels [n, tasks]` (NaN = unlabelled); NaN for
/// a task with one class only.
pub fn roc_auc_per_task(probs: &[f32], labels: &[f32], tasks: usize) -> Vec<f64> {
    (0..tasks)
        .map(|k| {
            let (mut s, mut y) = (Vec::new(), Vec::new());
            for (p, l) in probs.chunks(tasks).zip(labels.chunks(tasks)) {
                if !l[k].is_nan() {
                    s.push(p[k] as f64);
                    y.push(l[k] > 0.5);
                }
            }
            if y.iter().all(|&v| v) || !y.iter().any(|&v| v) { f64::NAN } else { roc_auc(&s, &y) }
        })
        .collect()
}

/// Mean of the finite values.
pub fn nanmean(v: &[f64]) -> f64 {
    let ok: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    ok.iter().sum::<f64>() / ok.len().max(1) as f64
}

/// Pearson r of column `j` of `p` and `t` (`[n, g]`); 0 when either side is constant (r undefined).
pub fn pearson(p: &[f32], t: &[f32], g: usize, j: usize) -> f64 {
    let n = t.len() / g;
    if n < 2 {
        return 0.0;
    }
    let (mut sp, mut st) = (0.0, 0.0);
    for i in 0..n {
        sp += p[i * g + j] as f64;
        st += t[i * g + j] as f64;
    }
    let (mp, mt) = (sp / n as f64, st / n as f64);
    let (mut c, mut vp, mut vt) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (a, b) = (p[i * g + j] as f64 - mp, t[i * g + j] as f64 - mt);
        c += a * b;
        vp += a * a;
        vt += b * b;
    }
    if vp <= 1e-12 || vt <= 1e-12 { 0.0 } else { c / (vp * vt).sqrt() }
}

/// Pearson r of every column (per-gene r).
pub fn per_gene_r(p: &[f32], t: &[f32], g: usize) -> Vec<f64> {
    (0..g).map(|j| pearson(p, t, g, j)).collect()
}

/// Median (0 for no values).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let m = s.len();
    if m % 2 == 1 { s[m / 2] } else { 0.5 * (s[m / 2 - 1] + s[m / 2]) }
}

/// Mean (0 for no values).
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 }
}

#[cfg(test)]
mod more_tests {
    use super::*;

    #[test]
    fn per_task_auc_skips_unlabelled_and_one_class_tasks() {
        let probs = [0.9, 0.1, 0.2, 0.5, 0.8, 0.7];
        let labels = [1.0, f32::NAN, 0.0, 1.0, 1.0, 1.0];
        let a = roc_auc_per_task(&probs, &labels, 2);
        assert_eq!(a[0], 1.0);
        assert!(a[1].is_nan());
        assert_eq!(nanmean(&a), 1.0);
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.1], 1, 0) - 1.0).abs() < 1e-3);
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
    }
}

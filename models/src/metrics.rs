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
    let aucs: Vec<f64> = (0..k)
        .map(|c| roc_auc(&col(c), &truth.iter().map(|&t| t == c).collect::<Vec<_>>()))
        .filter(|a| !a.is_nan())
        .collect();
    if aucs.is_empty() { f64::NAN } else { aucs.iter().sum::<f64>() / aucs.len() as f64 }
}

/// Row-wise argmax of `probs [n, k]`.
pub fn argmax_rows(probs: &[f32], k: usize) -> Vec<usize> {
    probs
        .chunks(k)
        .map(|row| row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0))
        .collect()
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

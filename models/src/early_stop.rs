//! Early stopping, one implementation for every trainer: which epoch's weights to keep, and
//! when to stop after `patience` epochs without improvement.

/// What counts as an improvement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Criterion {
    /// A validation loss lower than the best by more than `min_delta`.
    MinLoss {
        /// Smallest loss decrease that counts as an improvement.
        min_delta: f64,
    },
    /// A higher validation score (e.g. ROC-AUC).
    MaxScore,
    /// GAT's rule (Veličković et al.): the patience counter resets when the loss or the accuracy
    /// is at least as good as its best; the weights are kept when both are.
    LossOrAccuracy,
}

/// Early-stopping state.
#[derive(Debug, Clone)]
pub struct EarlyStopping {
    criterion: Criterion,
    patience: usize,
    best_loss: f64,
    best_score: f64,
    since: usize,
    /// Epoch of the kept weights (0 before any).
    pub best_epoch: usize,
}

/// The verdict on one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Keep this epoch's weights.
    pub keep: bool,
    /// Stop training after this epoch.
    pub stop: bool,
}

impl EarlyStopping {
    /// Fresh state for `criterion`; stops after `patience` epochs without improvement.
    pub fn new(criterion: Criterion, patience: usize) -> Self {
        Self { criterion, patience, best_loss: f64::INFINITY, best_score: f64::NEG_INFINITY, since: 0, best_epoch: 0 }
    }

    /// Record `epoch` with its validation `loss` and `score` (the one the criterion ignores may be NaN).
    pub fn update(&mut self, epoch: usize, loss: f64, score: f64) -> Verdict {
        let (keep, reset) = match self.criterion {
            Criterion::MinLoss { min_delta } => {
                let better = loss < self.best_loss - min_delta;
                if better {
                    self.best_loss = loss;
                }
                (better, better)
            }
            Criterion::MaxScore => {
                let better = score > self.best_score;
                if better {
                    self.best_score = score;
                }
                (better, better)
            }
            Criterion::LossOrAccuracy => {
                let (l, a) = (loss <= self.best_loss, score >= self.best_score);
                if l || a {
                    self.best_loss = self.best_loss.min(loss);
                    self.best_score = self.best_score.max(score);
                }
                (l && a, l || a)
            }
        };
        if keep {
            self.best_epoch = epoch;
        }
        self.since = if reset { 0 } else { self.since + 1 };
        Verdict { keep, stop: self.since >= self.patience }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_stopping_rules() {
        let mut e = EarlyStopping::new(Criterion::MinLoss { min_delta: 1e-6 }, 2);
        let v: Vec<Verdict> = [1.0, 0.5, 0.5, 0.6].iter().enumerate().map(|(i, &l)| e.update(i + 1, l, f64::NAN)).collect();
        assert_eq!(v.iter().map(|v| v.keep).collect::<Vec<_>>(), [true, true, false, false]);
        assert_eq!((v[2].stop, v[3].stop, e.best_epoch), (false, true, 2));
        let mut e = EarlyStopping::new(Criterion::MaxScore, 1);
        assert!(e.update(1, f64::NAN, 0.7).keep);
        assert!(e.update(2, f64::NAN, 0.7).stop);
        // GAT: a better accuracy alone resets the counter but keeps the old weights
        let mut e = EarlyStopping::new(Criterion::LossOrAccuracy, 2);
        assert!(e.update(1, 1.0, 0.5).keep);
        let v = e.update(2, 1.1, 0.6);
        assert!(!v.keep && !v.stop);
        assert!(!e.update(3, 1.2, 0.55).stop);
        assert!(e.update(4, 1.3, 0.55).stop);
        assert_eq!(e.best_epoch, 1);
    }
}

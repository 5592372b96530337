//! `fit` / `predict` for gene-expression classifiers (gene-graph GCN or MLP baseline), in the
//! spirit of the seed's scikit-learn-like API.

use crate::early_stop::{Criterion, EarlyStopping};
use crate::export::Exportable;
use crate::gene::{GeneGcn, GeneGcnConfig, GeneMlp, GeneMlpConfig, MessagePassing};
use crate::graph::{GraphTensors, NormalizedGraph};
use crate::metrics;
use crate::preprocess::Standardizer;
use crate::{Error, Result};
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, decay::WeightDecayConfig};
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use onnx_format::pb::ModelProto;
use rand::seq::SliceRandom;
use rand::{SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

/// Which network to fit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "family", rename_all = "kebab-case")]
pub enum Architecture {
    /// GCN over the gene graph.
    GeneGcn(GeneGcnConfig),
    /// MLP baseline without a graph.
    GeneMlp(GeneMlpConfig),
}

impl Architecture {
    /// The model family, for the model card.
    pub fn family(&self) -> onnx_format::Family {
        match self {
            Architecture::GeneGcn(_) => onnx_format::Family::GeneGcn,
            Architecture::GeneMlp(_) => onnx_format::Family::GeneMlp,
        }
    }
}

/// Minibatch Adam and early-stopping settings of gene-classifier training.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    /// Adam learning rate.
    pub lr: f64,
    /// Adam weight decay (L2) on all weights.
    pub weight_decay: f64,
    /// Maximum number of epochs.
    pub max_epochs: usize,
    /// Stop after this many epochs without a better validation loss.
    pub patience: usize,
    /// Samples per minibatch.
    pub batch_size: usize,
    /// Seed of shuffling, initialization and dropout.
    pub seed: u64,
    /// Apply `log2(max(x, 1))` before standardization.
    pub log2: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self { lr: 1e-3, weight_decay: 1e-4, max_epochs: 200, patience: 30, batch_size: 16, seed: 0, log2: true }
    }
}

/// Expression data for fitting: `values` is `rows × genes`, row-major.
pub struct Samples<'a> {
    /// `[rows, genes]` expression values, row-major.
    pub values: &'a [f32],
    /// Gene names, one per column.
    pub genes: &'a [String],
    /// Class index per row.
    pub labels: &'a [usize],
    /// Class names, indexed by the labels.
    pub classes: &'a [String],
}

/// One epoch's numbers, for progress reporting.
#[derive(Debug, Clone, Serialize)]
pub struct EpochLog {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean training cross-entropy over the epoch's minibatches.
    pub train_loss: f64,
    /// Validation cross-entropy (on the training rows when there is no validation split).
    pub valid_loss: f64,
    /// Validation accuracy, in `[0, 1]`.
    pub valid_accuracy: f64,
    /// Whether this epoch's weights were kept as the best so far.
    pub best: bool,
}

/// A fitted classifier: preprocessing, network, graph, gene and class names.
pub struct GeneClassifier {
    /// The architecture and its settings.
    pub architecture: Architecture,
    /// The training settings used.
    pub train: TrainConfig,
    /// Preprocessing fitted on the training rows.
    pub standardizer: Standardizer,
    /// Gene names in model input order.
    pub genes: Vec<String>,
    /// Class names in output order.
    pub classes: Vec<String>,
    /// The normalized gene graph (GCN only).
    pub graph: Option<NormalizedGraph>,
    /// Epochs actually run (fewer than `max_epochs` after an early stop).
    pub epochs_run: usize,
    /// Epoch whose weights were kept.
    pub best_epoch: usize,
    net: Box<dyn GeneNet>,
    device: Device,
}

trait Classifier {
    fn logits(&self, x: Tensor<2>, g: Option<&GraphTensors>) -> Tensor<2>;
}

/// What a gene export needs beside the weights.
type ExportArgs<'a> = (&'a Standardizer, Option<&'a NormalizedGraph>, Option<MessagePassing>);

/// A fitted network: forward and export.
trait GeneNet: Classifier + for<'a> Exportable<ExportArgs<'a>> + Send {}
impl<T: Classifier + for<'a> Exportable<ExportArgs<'a>> + Send> GeneNet for T {}

impl Exportable<ExportArgs<'_>> for GeneGcn {
    fn to_onnx(&self, (pre, graph, mp): ExportArgs, metadata: Vec<(String, String)>) -> ModelProto {
        let g = graph.expect("gcn graph");
        self.export(pre, g, mp.unwrap_or(MessagePassing::auto(g.num_nodes)), metadata)
    }
}

impl Exportable<ExportArgs<'_>> for GeneMlp {
    fn to_onnx(&self, (pre, _, _): ExportArgs, metadata: Vec<(String, String)>) -> ModelProto {
        self.export(pre, metadata)
    }
}
impl Classifier for GeneGcn {
    fn logits(&self, x: Tensor<2>, g: Option<&GraphTensors>) -> Tensor<2> {
        self.forward(x, g.expect("GCN needs its graph"))
    }
}
impl Classifier for GeneMlp {
    fn logits(&self, x: Tensor<2>, _: Option<&GraphTensors>) -> Tensor<2> {
        self.forward(x)
    }
}

fn rows_tensor(z: &[f32], genes: usize, rows: &[usize], device: &Device) -> Tensor<2> {
    let mut v = Vec::with_capacity(rows.len() * genes);
    for &r in rows {
        v.extend_from_slice(&z[r * genes..(r + 1) * genes]);
    }
    Tensor::from_data(TensorData::new(v, [rows.len(), genes]), device)
}

fn nll(logits: Tensor<2>, labels: &[usize], k: usize, device: &Device) -> Tensor<1> {
    let n = labels.len();
    let mut onehot = vec![0f32; n * k];
    for (i, &l) in labels.iter().enumerate() {
        onehot[i * k + l] = 1.0;
    }
    let onehot = Tensor::<2>::from_data(TensorData::new(onehot, [n, k]), device);
    (log_softmax(logits, 1) * onehot).sum_dim(1).mean().neg()
}

#[allow(clippy::too_many_arguments)]
fn train_loop<M: Classifier + Module + Clone>(
    mut model: M,
    z: &[f32],
    genes: usize,
    labels: &[usize],
    k: usize,
    train_rows: &[usize],
    valid_rows: &[usize],
    g: Option<&GraphTensors>,
    cfg: &TrainConfig,
    device: &Device,
    on_epoch: &mut dyn FnMut(&EpochLog),
) -> (M, usize, usize) {
    let mut optim = AdamConfig::new().with_weight_decay(Some(WeightDecayConfig::new(cfg.weight_decay as f32))).init();
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut order = train_rows.to_vec();
    let monitor = if valid_rows.is_empty() { train_rows } else { valid_rows };
    let monitor_labels: Vec<usize> = monitor.iter().map(|&r| labels[r]).collect();
    let monitor_x = rows_tensor(z, genes, monitor, device);
    let mut stopping = EarlyStopping::new(Criterion::MinLoss { min_delta: 1e-6 }, cfg.patience);
    let (mut best, mut epochs) = (model.clone(), 0);
    for epoch in 1..=cfg.max_epochs {
        epochs = epoch;
        order.shuffle(&mut rng);
        let mut total = 0.0;
        for batch in order.chunks(cfg.batch_size.max(1)) {
            let x = rows_tensor(z, genes, batch, device);
            let y: Vec<usize> = batch.iter().map(|&r| labels[r]).collect();
            let loss = nll(model.logits(x, g), &y, k, device);
            total += loss.clone().into_scalar::<f32>() as f64 * batch.len() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(cfg.lr, model, grads);
        }
        let eval = model.valid();
        let logits = eval.logits(monitor_x.clone(), g);
        let valid_loss = nll(logits.clone(), &monitor_labels, k, device).into_scalar::<f32>() as f64;
        let pred = metrics::argmax_rows(&crate::to_vec(softmax(logits, 1)), k);
        let v = stopping.update(epoch, valid_loss, f64::NAN);
        if v.keep {
            best = model.clone();
        }
        on_epoch(&EpochLog {
            epoch,
            train_loss: total / train_rows.len() as f64,
            valid_loss,
            valid_accuracy: metrics::accuracy(&pred, &monitor_labels),
            best: v.keep,
        });
        if v.stop {
            break;
        }
    }
    (best.valid(), epochs, stopping.best_epoch)
}

impl GeneClassifier {
    /// Fit on `train_rows` of `data`, early-stopping on `valid_rows` (or on the training loss when
    /// empty). `edges` (undirected pairs of gene positions) is required for the GCN.
    #[allow(clippy::too_many_arguments)]
    pub fn fit(
        data: &Samples,
        train_rows: &[usize],
        valid_rows: &[usize],
        edges: Option<&[(u32, u32)]>,
        architecture: Architecture,
        cfg: TrainConfig,
        device: &Device,
        on_epoch: &mut dyn FnMut(&EpochLog),
    ) -> Result<Self> {
        let genes = data.genes.len();
        let k = data.classes.len();
        if genes == 0 || data.values.len() != data.labels.len() * genes {
            return Err(Error::Input(format!(
                "expression has {} values, expected {} samples × {} genes",
                data.values.len(),
                data.labels.len(),
                genes
            )));
        }
        if train_rows.is_empty() {
            return Err(Error::Input("no training samples".into()));
        }
        if let Some(&l) = data.labels.iter().find(|&&l| l >= k) {
            return Err(Error::Input(format!("label index {l} out of range for {k} classes")));
        }
        let standardizer = Standardizer::fit(data.values, genes, train_rows, cfg.log2);
        let z = standardizer.apply(data.values);
        device.seed(cfg.seed);
        let ad = device.clone().autodiff();
        let (net, graph, epochs_run, best_epoch) = match &architecture {
            Architecture::GeneGcn(c) => {
                let edges = edges.ok_or_else(|| Error::Input("the gene GCN needs a gene graph".into()))?;
                let graph = NormalizedGraph::gcn(genes, edges);
                let gt = graph.tensors(&ad);
                let model = c.init(genes, k, &ad);
                let (m, e, b) = train_loop(model, &z, genes, data.labels, k, train_rows, valid_rows, Some(&gt), &cfg, &ad, on_epoch);
                (Box::new(m) as Box<dyn GeneNet>, Some(graph), e, b)
            }
            Architecture::GeneMlp(c) => {
                let model = c.init(genes, k, &ad);
                let (m, e, b) = train_loop(model, &z, genes, data.labels, k, train_rows, valid_rows, None, &cfg, &ad, on_epoch);
                (Box::new(m) as Box<dyn GeneNet>, None, e, b)
            }
        };
        Ok(Self {
            architecture,
            train: cfg,
            standardizer,
            genes: data.genes.to_vec(),
            classes: data.classes.to_vec(),
            graph,
            epochs_run,
            best_epoch,
            net,
            device: ad,
        })
    }

    /// Class probabilities `[rows, classes]` for raw expression `rows × genes` (model gene order;
    /// NaN = missing gene).
    pub fn predict_proba(&self, values: &[f32]) -> Result<Vec<f32>> {
        let genes = self.genes.len();
        if !values.len().is_multiple_of(genes) {
            return Err(Error::Input(format!("{} values is not a multiple of {genes} genes", values.len())));
        }
        let rows = values.len() / genes;
        let z = self.standardizer.apply(values);
        let x = Tensor::<2>::from_data(TensorData::new(z, [rows, genes]), &self.device);
        let g = self.graph.as_ref().map(|g| g.tensors(&self.device));
        let logits = self.net.logits(x, g.as_ref());
        Ok(crate::to_vec(softmax(logits, 1)))
    }

    /// Most probable class per row.
    pub fn predict(&self, values: &[f32]) -> Result<Vec<usize>> {
        Ok(metrics::argmax_rows(&self.predict_proba(values)?, self.classes.len()))
    }

    /// The ONNX model (preprocessing + network + softmax) with the given metadata.
    pub fn export(&self, mp: Option<MessagePassing>, metadata: Vec<(String, String)>) -> ModelProto {
        self.net.to_onnx((&self.standardizer, self.graph.as_ref(), mp), metadata)
    }

    /// Save the network weights (burnpack) for checkpoints.
    pub fn save_weights(&self, path: &std::path::Path) -> Result<()> {
        self.net.save_weights(path)
    }

    /// Number of trained scalar weights.
    pub fn num_params(&self) -> usize {
        self.net.param_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two classes that differ in genes 0 and 1; a ring graph over 6 genes.
    fn toy() -> (Vec<f32>, Vec<String>, Vec<usize>, Vec<String>) {
        let genes: Vec<String> = (0..6).map(|i| format!("G{i}")).collect();
        let mut values = Vec::new();
        let mut labels = Vec::new();
        for i in 0..40 {
            let c = i % 2;
            for g in 0..6 {
                let noise = ((i * 7 + g * 13) % 11) as f32 / 11.0;
                values.push(if g < 2 && c == 1 { 3.0 + noise } else { noise });
            }
            labels.push(c);
        }
        (values, genes, labels, vec!["a".into(), "b".into()])
    }

    #[test]
    fn fit_and_predict_separate_two_classes() {
        let _rng = crate::test_rng();
        let (values, genes, labels, classes) = toy();
        let data = Samples { values: &values, genes: &genes, labels: &labels, classes: &classes };
        let train: Vec<usize> = (0..30).collect();
        let test: Vec<usize> = (30..40).collect();
        let edges: Vec<(u32, u32)> = (0..6).map(|i| (i, (i + 1) % 6)).collect();
        let cfg = TrainConfig { lr: 1e-2, max_epochs: 60, patience: 60, batch_size: 10, log2: false, ..Default::default() };
        for arch in [
            Architecture::GeneGcn(GeneGcnConfig { num_layer: 2, channels: 4, embedding: 8, dropout: 0.0 }),
            Architecture::GeneMlp(GeneMlpConfig { hidden: vec![8], dropout: 0.0 }),
        ] {
            let m = GeneClassifier::fit(&data, &train, &[], Some(&edges), arch, cfg.clone(), &Device::flex(), &mut |_| {}).unwrap();
            let x: Vec<f32> = test.iter().flat_map(|&r| values[r * 6..(r + 1) * 6].iter().copied()).collect();
            let pred = m.predict(&x).unwrap();
            let truth: Vec<usize> = test.iter().map(|&r| labels[r]).collect();
            assert_eq!(pred, truth, "{}", m.architecture.family());
        }
    }

    #[test]
    fn fit_rejects_bad_input() {
        let _rng = crate::test_rng();
        let (values, genes, labels, classes) = toy();
        let data = Samples { values: &values[..10], genes: &genes, labels: &labels, classes: &classes };
        let arch = Architecture::GeneMlp(GeneMlpConfig::default());
        let e = GeneClassifier::fit(&data, &[0], &[], None, arch.clone(), TrainConfig::default(), &Device::flex(), &mut |_| {});
        assert!(e.is_err());
        let data = Samples { values: &values, genes: &genes, labels: &labels, classes: &classes };
        let gcn = Architecture::GeneGcn(GeneGcnConfig::default());
        let e = GeneClassifier::fit(&data, &[0, 1], &[], None, gcn, TrainConfig::default(), &Device::flex(), &mut |_| {});
        assert!(e.err().unwrap().to_string().contains("graph"));
    }
}

//! Full-batch training of node classifiers (GCN, GAT) with early stopping on the validation split.

use crate::early_stop::{Criterion, EarlyStopping};
use crate::export::Exportable;
use crate::metrics;
use crate::node::{LoopedEdges, NodeGat, NodeGatConfig, NodeGcn, NodeGcnConfig};
use crate::{Error, Result};
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, decay::WeightDecayConfig};
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use onnx_format::pb::ModelProto;
use serde::{Deserialize, Serialize};

/// Which node classifier to train, with its settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "family", rename_all = "kebab-case")]
pub enum NodeArchitecture {
    /// Two-layer GCN (Kipf & Welling).
    NodeGcn(NodeGcnConfig),
    /// Two-layer GAT (Veličković et al.).
    NodeGat(NodeGatConfig),
}

/// Optimizer and early-stopping settings of full-batch node training.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeTrainConfig {
    /// Adam learning rate.
    pub lr: f64,
    /// L2 weight-decay coefficient.
    pub weight_decay: f64,
    /// L2 on the first layer only, added to the loss (Kipf & Welling); otherwise Adam's decay on all.
    pub first_layer_decay_only: bool,
    /// Maximum number of training epochs.
    pub epochs: usize,
    /// Stop after this many epochs without a lower validation loss; the best weights are kept.
    pub patience: usize,
    /// GAT's rule instead: an epoch counts as progress when validation accuracy or loss improves,
    /// and weights are kept when both do (Veličković et al.'s reference code).
    pub accuracy_and_loss: bool,
    /// Seed of the device RNG (initialization and dropout).
    pub seed: u64,
}

/// A graph with features and a labelled split.
pub struct NodeData<'a> {
    /// `[num_nodes, num_features]` node features, row-major.
    pub x: &'a [f32],
    /// Number of nodes `N`.
    pub num_nodes: usize,
    /// Features per node `F`.
    pub num_features: usize,
    /// Source node of each edge.
    pub src: &'a [i64],
    /// Target node of each edge.
    pub dst: &'a [i64],
    /// Class index of every node, length `N` (only training and validation rows are read).
    pub labels: &'a [i64],
    /// Number of classes `K`.
    pub num_classes: usize,
    /// Training node indices.
    pub train: &'a [usize],
    /// Validation node indices (early stopping).
    pub val: &'a [usize],
}

/// A trained node classifier with its settings and training record.
pub struct NodeClassifier {
    /// The architecture and its settings.
    pub architecture: NodeArchitecture,
    /// The training settings used.
    pub train: NodeTrainConfig,
    /// Epochs actually run (fewer than `epochs` after an early stop).
    pub epochs_run: usize,
    /// Epoch whose weights were kept.
    pub best_epoch: usize,
    net: Box<dyn Fitted>,
    device: Device,
}

trait NodeNet {
    fn logits(&self, x: Tensor<2>, e: &LoopedEdges) -> Tensor<2>;
    fn penalty(&self) -> Option<Tensor<1>>;
    fn embed(&self, x: Tensor<2>, e: &LoopedEdges) -> Tensor<2>;
}
impl NodeNet for NodeGcn {
    fn logits(&self, x: Tensor<2>, e: &LoopedEdges) -> Tensor<2> {
        self.forward(x, e)
    }
    fn penalty(&self) -> Option<Tensor<1>> {
        Some(self.first_layer_l2())
    }
    fn embed(&self, x: Tensor<2>, e: &LoopedEdges) -> Tensor<2> {
        NodeGcn::embed(self, x, e)
    }
}
impl NodeNet for NodeGat {
    fn logits(&self, x: Tensor<2>, e: &LoopedEdges) -> Tensor<2> {
        self.forward(x, e)
    }
    fn penalty(&self) -> Option<Tensor<1>> {
        None
    }
    fn embed(&self, x: Tensor<2>, e: &LoopedEdges) -> Tensor<2> {
        NodeGat::embed(self, x, e)
    }
}

impl Exportable<()> for NodeGcn {
    fn to_onnx(&self, _: (), metadata: Vec<(String, String)>) -> ModelProto {
        self.export(metadata)
    }
}
impl Exportable<()> for NodeGat {
    fn to_onnx(&self, _: (), metadata: Vec<(String, String)>) -> ModelProto {
        self.export(metadata)
    }
}

/// A fitted network: forward, embedding, export.
trait Fitted: NodeNet + Exportable<()> {}
impl<T: NodeNet + Exportable<()>> Fitted for T {}

fn idx(v: &[usize], device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(TensorData::new(v.iter().map(|&i| i as i64).collect::<Vec<_>>(), [v.len()]), device)
}

fn nll(logits: Tensor<2>, rows: &Tensor<1, Int>, labels: &Tensor<1, Int>, k: usize) -> Tensor<1> {
    let lp = log_softmax(logits.select(0, rows.clone()), 1);
    let n = lp.dims()[0];
    let onehot = labels.clone().one_hot(k).float();
    (lp * onehot).sum().div_scalar(n as f64).neg()
}

fn run<M: NodeNet + Module + Clone>(
    mut model: M,
    d: &NodeData,
    cfg: &NodeTrainConfig,
    device: &Device,
    on_epoch: &mut dyn FnMut(usize, f64, f64, f64),
) -> (M, usize, usize) {
    let decay = if cfg.first_layer_decay_only { None } else { Some(WeightDecayConfig::new(cfg.weight_decay as f32)) };
    let mut optim = AdamConfig::new().with_epsilon(1e-8).with_weight_decay(decay).init();
    let x = Tensor::<2>::from_data(TensorData::new(d.x.to_vec(), [d.num_nodes, d.num_features]), device);
    let e = LoopedEdges::from_lists(d.num_nodes, d.src, d.dst, device);
    let (tr, va) = (idx(d.train, device), idx(d.val, device));
    let lab = |rows: &[usize]| -> Tensor<1, Int> {
        Tensor::from_data(TensorData::new(rows.iter().map(|&r| d.labels[r]).collect::<Vec<i64>>(), [rows.len()]), device)
    };
    let (ytr, yva) = (lab(d.train), lab(d.val));
    let val_truth: Vec<usize> = d.val.iter().map(|&r| d.labels[r] as usize).collect();
    let criterion = if cfg.accuracy_and_loss { Criterion::LossOrAccuracy } else { Criterion::MinLoss { min_delta: 0.0 } };
    let mut stopping = EarlyStopping::new(criterion, cfg.patience);
    let (mut best, mut epochs) = (model.clone(), 0);
    for epoch in 1..=cfg.epochs {
        epochs = epoch;
        let mut loss = nll(model.logits(x.clone(), &e), &tr, &ytr, d.num_classes);
        if cfg.first_layer_decay_only
            && let Some(p) = model.penalty()
        {
            loss = loss + p.mul_scalar(cfg.weight_decay);
        }
        let train_loss = loss.clone().into_scalar::<f32>() as f64;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(cfg.lr, model, grads);
        let eval = model.valid();
        let logits = eval.logits(x.clone(), &e);
        let val_loss = nll(logits.clone(), &va, &yva, d.num_classes).into_scalar::<f32>() as f64;
        let probs = crate::to_vec(softmax(logits.select(0, va.clone()), 1));
        let val_acc = metrics::accuracy(&metrics::argmax_rows(&probs, d.num_classes), &val_truth);
        on_epoch(epoch, train_loss, val_loss, val_acc);
        let v = stopping.update(epoch, val_loss, val_acc);
        if v.keep {
            best = model.clone();
        }
        if v.stop {
            break;
        }
    }
    (best.valid(), epochs, stopping.best_epoch)
}

impl NodeClassifier {
    /// Train on `d` full-batch with Adam, keeping the best weights by the early-stopping rule; `on_epoch` gets `(epoch, train_loss, val_loss, val_accuracy)`.
    pub fn fit(
        d: &NodeData,
        arch: NodeArchitecture,
        cfg: NodeTrainConfig,
        device: &Device,
        on_epoch: &mut dyn FnMut(usize, f64, f64, f64),
    ) -> Result<Self> {
        if d.x.len() != d.num_nodes * d.num_features {
            return Err(Error::Input(format!("features: {} values for {} nodes × {} features", d.x.len(), d.num_nodes, d.num_features)));
        }
        if d.num_classes < 2 {
            return Err(Error::Input(format!("node labels have {} class(es); a classifier needs at least 2", d.num_classes)));
        }
        if d.train.is_empty() || d.val.is_empty() {
            return Err(Error::Input("need training and validation nodes".into()));
        }
        device.seed(cfg.seed);
        let ad = device.clone().autodiff();
        let (net, epochs_run, best_epoch) = match &arch {
            NodeArchitecture::NodeGcn(c) => {
                let (m, e, b) = run(c.init(d.num_features, d.num_classes, &ad), d, &cfg, &ad, on_epoch);
                (Box::new(m) as Box<dyn Fitted>, e, b)
            }
            NodeArchitecture::NodeGat(c) => {
                let (m, e, b) = run(c.init(d.num_features, d.num_classes, &ad), d, &cfg, &ad, on_epoch);
                (Box::new(m) as Box<dyn Fitted>, e, b)
            }
        };
        Ok(Self { architecture: arch, train: cfg, epochs_run, best_epoch, net, device: ad })
    }

    /// Class probabilities `[num_nodes, K]` for a graph.
    pub fn predict_proba(&self, x: &[f32], num_nodes: usize, src: &[i64], dst: &[i64]) -> Vec<f32> {
        let (x, e) = self.graph(x, num_nodes, src, dst);
        crate::to_vec(softmax(self.net.logits(x, &e), 1))
    }

    /// Hidden node representations (first layer output) for clustering.
    pub fn embed(&self, x: &[f32], num_nodes: usize, src: &[i64], dst: &[i64]) -> (Vec<f32>, usize) {
        let (x, e) = self.graph(x, num_nodes, src, dst);
        let h = self.net.embed(x, &e);
        let d = h.dims()[1];
        (crate::to_vec(h), d)
    }

    /// Features `[num_nodes, F]` and looped edges on the model's device.
    fn graph(&self, x: &[f32], num_nodes: usize, src: &[i64], dst: &[i64]) -> (Tensor<2>, LoopedEdges) {
        let f = x.len() / num_nodes.max(1);
        let xt = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [num_nodes, f]), &self.device);
        (xt, LoopedEdges::from_lists(num_nodes, src, dst, &self.device))
    }

    /// The ONNX model of the fitted network (see [`NodeGcn::export`], [`NodeGat::export`]).
    pub fn export(&self, metadata: Vec<(String, String)>) -> ModelProto {
        self.net.to_onnx((), metadata)
    }

    /// The model family, for the model card.
    pub fn family(&self) -> onnx_format::Family {
        match self.architecture {
            NodeArchitecture::NodeGcn(_) => onnx_format::Family::NodeGcn,
            NodeArchitecture::NodeGat(_) => onnx_format::Family::NodeGat,
        }
    }

    /// Number of trained scalar weights.
    pub fn num_params(&self) -> usize {
        self.net.param_count()
    }
}

//! Gene-graph models (Dutil et al. 2018, "Gene Graph Convolutions"): every gene is a node whose
//! input is its expression; graph convolutions over the gene-interaction graph; a readout keeps
//! gene identity (one value per gene) before a small dense classifier. The MLP baseline sees the
//! same genes. Each model has its ONNX export right beside its forward.

use crate::export::{EdgeWeights, Head, Lower, SegmentSum, dims};
use crate::graph::{GraphTensors, NormalizedGraph, propagate};
use crate::preprocess::Standardizer;
use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;
use onnx_format::builder::Elem;
use onnx_format::pb::ModelProto;
use serde::{Deserialize, Serialize};

/// How messages are passed in the exported graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MessagePassing {
    /// Gather by source + a segment sum by destination (`Lower::scatter_add`; the CLI name is historical).
    ScatterNd,
    /// MatMul with the dense normalized adjacency `[N, N]` (small graphs only).
    Dense,
}

impl MessagePassing {
    /// The choice measured by `bench` (see `docs/decisions.md`): dense only for small graphs.
    pub fn auto(num_nodes: usize) -> Self {
        if num_nodes <= DENSE_MAX_NODES { MessagePassing::Dense } else { MessagePassing::ScatterNd }
    }
}

/// Largest graph for which the dense adjacency is used by default.
pub const DENSE_MAX_NODES: usize = 256;

/// Gene-graph GCN settings (Dutil et al. 2018).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GeneGcnConfig {
    /// Graph-convolution layers (the first maps 1 input value per gene to `channels`).
    pub num_layer: usize,
    /// Channels per gene in every graph-convolution layer.
    pub channels: usize,
    /// Width of the dense layer after the per-gene readout.
    pub embedding: usize,
    /// Dropout probability on the readout and the embedding (0 disables).
    pub dropout: f64,
}

impl Default for GeneGcnConfig {
    fn default() -> Self {
        Self { num_layer: 4, channels: 32, embedding: 32, dropout: 0.5 }
    }
}

/// One graph convolution `Â (h W) + b` over the fixed gene graph.
#[derive(Module, Debug)]
pub struct GraphConv {
    weight: Linear,
    bias: Param<Tensor<1>>,
}

impl GraphConv {
    fn new(d_in: usize, d_out: usize, device: &Device) -> Self {
        Self {
            weight: LinearConfig::new(d_in, d_out).with_bias(false).init(device),
            bias: Param::from_tensor(Tensor::zeros([d_out], device)),
        }
    }

    /// `Â (h W) + b` on node-major features `[N, B, C]`.
    pub fn forward(&self, h: Tensor<3>, g: &GraphTensors) -> Tensor<3> {
        let out = propagate(self.weight.forward(h), g);
        let c = out.dims()[2];
        out + self.bias.val().reshape([1, 1, c])
    }

    /// `(Â h) W + b` unless W narrows the channels: the same value, with the messages no wider than
    /// before, and the bias right after a product (tract adds a 32-channel bias element by element
    /// after a gather, but fuses it into the product).
    fn export(&self, cx: &Lower, h: &str, edges: &Edges, name: &str) -> String {
        let [d_in, d_out] = self.weight.weight.dims();
        let out = if d_in <= d_out {
            cx.linear(&edges.propagate(cx, h), name, &self.weight)
        } else {
            edges.propagate(cx, &cx.linear(h, name, &self.weight))
        };
        cx.bias(&out, &format!("{name}.bias"), &self.bias)
    }
}

/// Gene-graph GCN: graph convolutions with ReLU, a per-gene readout to one value, a dense ReLU layer, a linear head.
#[derive(Module, Debug)]
pub struct GeneGcn {
    convs: Vec<GraphConv>,
    node_out: Linear,
    dense: Linear,
    head: Linear,
    dropout: Dropout,
}

impl GeneGcnConfig {
    /// A model for `num_genes` genes and `num_classes` classes.
    pub fn init(&self, num_genes: usize, num_classes: usize, device: &Device) -> GeneGcn {
        let mut convs = Vec::new();
        let mut d_in = 1;
        for _ in 0..self.num_layer {
            convs.push(GraphConv::new(d_in, self.channels, device));
            d_in = self.channels;
        }
        GeneGcn {
            convs,
            node_out: LinearConfig::new(d_in, 1).init(device),
            dense: LinearConfig::new(num_genes, self.embedding).init(device),
            head: LinearConfig::new(self.embedding, num_classes).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
        }
    }
}

impl GeneGcn {
    /// Standardized expression `[B, N]` → class logits `[B, K]`.
    pub fn forward(&self, x: Tensor<2>, g: &GraphTensors) -> Tensor<2> {
        let [b, n] = x.dims();
        let mut h = x.transpose().reshape([n, b, 1]);
        for conv in &self.convs {
            h = relu(conv.forward(h, g));
        }
        let r = self.node_out.forward(h).reshape([n, b]).transpose();
        let r = self.dropout.forward(r);
        let e = self.dropout.forward(relu(self.dense.forward(r)));
        self.head.forward(e)
    }

    /// The ONNX graph of [`Standardizer`] + this forward + softmax.
    pub fn export(&self, pre: &Standardizer, graph: &NormalizedGraph, mp: MessagePassing, metadata: Vec<(String, String)>) -> ModelProto {
        let cx = Lower::new("gene_gcn");
        // [B, N] -> [N, B, 1]
        let mut h = cx.unsqueeze(&cx.transpose(&standardized_input(&cx, pre), &[1, 0]), 2);
        let edges = Edges::new(&cx, graph, mp);
        for (i, conv) in self.convs.iter().enumerate() {
            h = cx.op1("Relu", &conv.export(&cx, &h, &edges, &format!("conv{i}")));
        }
        let r = cx.squeeze(&cx.linear(&h, "node_out", &self.node_out), 2);
        let e = cx.op1("Relu", &cx.linear(&cx.transpose(&r, &[1, 0]), "dense", &self.dense));
        let logits = cx.linear(&e, "head", &self.head);
        cx.finish_classifier(&logits, "batch", self.head.weight.dims()[1], Head::Softmax, metadata)
    }
}

/// Input `expression [batch, genes]`, standardized.
fn standardized_input(cx: &Lower, pre: &Standardizer) -> String {
    let x = cx.input("expression", Elem::F32, &dims("batch", pre.mean.len()));
    pre.export(cx, &x)
}

/// The fixed gene graph in the exported model.
enum Edges {
    /// Gather by source, segment sum by target (`dst` is `[E, 1]`, with a fixed segment layout).
    Sparse { src: String, dst: String, w: String },
    /// The dense adjacency `[N, N]` and N.
    Dense(String, i64),
}

impl Edges {
    fn new(cx: &Lower, g: &NormalizedGraph, mp: MessagePassing) -> Self {
        let (n, e) = (g.num_nodes, g.num_edges());
        match mp {
            MessagePassing::ScatterNd => {
                let dst = cx.init_i64("edge_dst", &[e, 1], g.dst.clone());
                // race-free sums by in-degree bucket: 3–8× the sorted form on both runtimes (decisions §5)
                cx.fixed_segment_layout(&dst, &g.dst, n, SegmentSum::Buckets);
                Edges::Sparse {
                    src: cx.init_i64("edge_src", &[e], g.src.clone()),
                    dst,
                    w: cx.init_f32("edge_weight", &[e, 1, 1], g.weight.clone()),
                }
            }
            MessagePassing::Dense => Edges::Dense(cx.init_f32("adjacency", &[n, n], g.dense()), n as i64),
        }
    }

    /// Message passing on `h [N, B, C]`.
    fn propagate(&self, cx: &Lower, h: &str) -> String {
        match self {
            Edges::Sparse { src, dst, w } => cx.propagate(h, src, dst, Some(EdgeWeights::Plain(w))),
            Edges::Dense(a, n) => {
                let y = cx.op2("MatMul", a, &cx.reshape(h, &[*n, -1]));
                cx.op2("Reshape", &y, &cx.op1("Shape", h))
            }
        }
    }
}

/// MLP baseline settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GeneMlpConfig {
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Dropout probability after each hidden layer (0 disables).
    pub dropout: f64,
}

impl Default for GeneMlpConfig {
    fn default() -> Self {
        Self { hidden: vec![64, 32], dropout: 0.5 }
    }
}

/// MLP baseline: ReLU hidden layers with dropout, then a linear head.
#[derive(Module, Debug)]
pub struct GeneMlp {
    layers: Vec<Linear>,
    head: Linear,
    dropout: Dropout,
}

impl GeneMlpConfig {
    /// A model for `num_genes` input genes and `num_classes` classes.
    pub fn init(&self, num_genes: usize, num_classes: usize, device: &Device) -> GeneMlp {
        let mut layers = Vec::new();
        let mut d = num_genes;
        for &h in &self.hidden {
            layers.push(LinearConfig::new(d, h).init(device));
            d = h;
        }
        GeneMlp { layers, head: LinearConfig::new(d, num_classes).init(device), dropout: DropoutConfig::new(self.dropout).init() }
    }
}

impl GeneMlp {
    /// Standardized expression `[B, N]` → class logits `[B, K]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut h = x;
        for l in &self.layers {
            h = self.dropout.forward(relu(l.forward(h)));
        }
        self.head.forward(h)
    }

    /// The ONNX graph of [`Standardizer`] + this forward + softmax.
    pub fn export(&self, pre: &Standardizer, metadata: Vec<(String, String)>) -> ModelProto {
        let cx = Lower::new("gene_mlp");
        let x = cx.input("expression", Elem::F32, &dims("batch", pre.mean.len()));
        // the standardization folded into the first layer (Standardizer::export_linear)
        let mut h = x.clone();
        for (i, l) in self.layers.iter().enumerate() {
            let name = format!("layer{i}");
            let y = if i == 0 { pre.export_linear(&cx, &x, &name, l) } else { cx.linear(&h, &name, l) };
            h = cx.op1("Relu", &y);
        }
        let logits =
            if self.layers.is_empty() { pre.export_linear(&cx, &x, "head", &self.head) } else { cx.linear(&h, "head", &self.head) };
        cx.finish_classifier(&logits, "batch", self.head.weight.dims()[1], Head::Softmax, metadata)
    }
}

//! Gene-graph models (Dutil et al. 2018, "Gene Graph Convolutions"): every gene is a node whose
//! input is its expression; graph convolutions over the gene-interaction graph; a readout keeps
//! gene identity (one value per gene) before a small dense classifier. The MLP baseline sees the
//! same genes. Each model has its ONNX export right beside its forward.

use crate::graph::{propagate, GraphTensors, NormalizedGraph};
use crate::preprocess::Standardizer;
use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;
use onnx_format::builder::{Attr, Dim, Elem, GraphBuilder};
use onnx_format::pb::ModelProto;
use serde::{Deserialize, Serialize};

/// How messages are passed in the exported graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MessagePassing {
    /// Gather by source + ScatterND-add by destination with `[E, 1]` indices.
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
pub const DENSE_MAX_NODES: usize = 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GeneGcnConfig {
    /// Graph-convolution layers (the first maps 1 input value per gene to `channels`).
    pub num_layer: usize,
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
}

#[derive(Module, Debug)]
pub struct GeneGcn {
    convs: Vec<GraphConv>,
    node_out: Linear,
    dense: Linear,
    head: Linear,
    dropout: Dropout,
}

impl GeneGcnConfig {
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
        let n = graph.num_nodes;
        let mut b = GraphBuilder::new("gene_gcn");
        let x = b.input("expression", Elem::F32, &[Dim::from("batch"), Dim::from(n)]);
        let z = pre.export(&mut b, &x);
        // [B, N] -> [N, B, 1]
        let t = b.transpose(&z, &[1, 0]);
        let ax2 = b.init_i64("axes2", &[1], vec![2]);
        let mut h = b.op2("Unsqueeze", &t, &ax2);
        let edges = match mp {
            MessagePassing::ScatterNd => {
                let e = graph.num_edges();
                let src = b.init_i64("edge_src", &[e], graph.src.clone());
                let dst = b.init_i64("edge_dst", &[e, 1], graph.dst.clone());
                let w = b.init_f32("edge_weight", &[e, 1, 1], graph.weight.clone());
                Edges::Sparse { src, dst, w }
            }
            MessagePassing::Dense => Edges::Dense(b.init_f32("adjacency", &[n, n], graph.dense())),
        };
        for (i, conv) in self.convs.iter().enumerate() {
            let (shape, w) = linear_weight(&conv.weight);
            let wn = b.init_f32(&format!("conv{i}.weight"), &shape, w);
            let hw = b.op2("MatMul", &h, &wn);
            let agg = edges.propagate(&mut b, &hw, n);
            let bias = crate::to_vec(conv.bias.val());
            let bn = b.init_f32(&format!("conv{i}.bias"), &[bias.len()], bias);
            let s = b.op2("Add", &agg, &bn);
            h = b.op1("Relu", &s);
        }
        let r = export_linear(&mut b, &h, "node_out", &self.node_out); // [N, B, 1]
        let r = b.op2("Squeeze", &r, &ax2);
        let r = b.transpose(&r, &[1, 0]);
        let e = export_linear(&mut b, &r, "dense", &self.dense);
        let e = b.op1("Relu", &e);
        let logits = export_linear(&mut b, &e, "head", &self.head);
        finish_classifier(b, &logits, self.head.weight.dims()[1], metadata)
    }
}

enum Edges {
    Sparse { src: String, dst: String, w: String },
    Dense(String),
}

impl Edges {
    /// Message passing on `h [N, B, C]` in ONNX.
    fn propagate(&self, b: &mut GraphBuilder, h: &str, n: usize) -> String {
        match self {
            Edges::Sparse { src, dst, w } => {
                let g = b.node("Gather", &[h, src], &[("axis", Attr::Int(0))]);
                let m = b.op2("Mul", &g, w);
                let shape = b.op1("Shape", h);
                // explicit f32 value: tract defaults ConstantOfShape to f64
                let zeros = b.node("ConstantOfShape", &[&shape], &[("value", Attr::ScalarTensor(0.0))]);
                b.node("ScatterND", &[&zeros, dst, &m], &[("reduction", Attr::Str("add".into()))])
            }
            Edges::Dense(a) => {
                let shape = b.op1("Shape", h);
                let flat_shape = b.init_i64("flat", &[2], vec![n as i64, -1]);
                let flat = b.op2("Reshape", h, &flat_shape);
                let y = b.op2("MatMul", a, &flat);
                b.op2("Reshape", &y, &shape)
            }
        }
    }
}

/// Weight `[in, out]` of a burn `Linear` (burn stores it in this layout).
pub fn linear_weight(l: &Linear) -> (Vec<usize>, Vec<f32>) {
    let w = l.weight.val();
    (w.dims().to_vec(), crate::to_vec(w))
}

/// `x @ W + b` for a burn `Linear`.
pub fn export_linear(b: &mut GraphBuilder, x: &str, name: &str, l: &Linear) -> String {
    let (shape, w) = linear_weight(l);
    let bias = l.bias.as_ref().map(|p| crate::to_vec(p.val()));
    b.linear(x, name, (&shape, w), bias)
}

/// Outputs `logits` and `probabilities` (softmax over classes).
fn finish_classifier(mut b: GraphBuilder, logits: &str, k: usize, metadata: Vec<(String, String)>) -> ModelProto {
    b.node_to("Identity", &[logits], &["logits"], &[]);
    b.node_to("Softmax", &[logits], &["probabilities"], &[("axis", Attr::Int(-1))]);
    b.output("logits", Elem::F32, &[Dim::from("batch"), Dim::from(k)]);
    b.output("probabilities", Elem::F32, &[Dim::from("batch"), Dim::from(k)]);
    b.finish("bioedge-train", metadata)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GeneMlpConfig {
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    pub dropout: f64,
}

impl Default for GeneMlpConfig {
    fn default() -> Self {
        Self { hidden: vec![64, 32], dropout: 0.5 }
    }
}

#[derive(Module, Debug)]
pub struct GeneMlp {
    layers: Vec<Linear>,
    head: Linear,
    dropout: Dropout,
}

impl GeneMlpConfig {
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

    pub fn export(&self, pre: &Standardizer, metadata: Vec<(String, String)>) -> ModelProto {
        let n = pre.mean.len();
        let mut b = GraphBuilder::new("gene_mlp");
        let x = b.input("expression", Elem::F32, &[Dim::from("batch"), Dim::from(n)]);
        let mut h = pre.export(&mut b, &x);
        for (i, l) in self.layers.iter().enumerate() {
            let y = export_linear(&mut b, &h, &format!("layer{i}"), l);
            h = b.op1("Relu", &y);
        }
        let logits = export_linear(&mut b, &h, "head", &self.head);
        finish_classifier(b, &logits, self.head.weight.dims()[1], metadata)
    }
}

//! Node-level GNNs on a graph given at run time: GCN (Kipf & Welling 2017) and GAT (Veličković et
//! al. 2018). Inputs are `x [num_nodes, F]` and `edge_index [2, num_edges]` (row 0 = source, row 1 =
//! target; give both directions for an undirected graph). Self-loops in the input are ignored and
//! one self-loop per node is added, so a graph with or without self-loops gives the same result;
//! duplicate edges count as parallel edges. Feature row-normalization and GCN degree normalization
//! are inside the model and inside its ONNX export, which has symbolic `num_nodes`/`num_edges`.

use crate::export::{EdgeWeights, Head, Lower, dims};
use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;
use burn::tensor::activation::{elu, leaky_relu, relu};
use onnx_format::builder::{Attr, Elem};
use onnx_format::pb::ModelProto;
use serde::{Deserialize, Serialize};

/// Edges with one self-loop per node appended, and a 0/1 mask that drops input self-loops.
#[derive(Debug, Clone)]
pub struct LoopedEdges {
    /// `[E']` source node of each edge, added loops last.
    pub src: Tensor<1, Int>,
    /// `[E']` target node of each edge, added loops last.
    pub dst: Tensor<1, Int>,
    /// 1 for real edges and added loops, 0 for self-loops present in the input.
    pub keep: Tensor<1>,
    /// Number of nodes `N`.
    pub num_nodes: usize,
}

impl LoopedEdges {
    /// Append one self-loop per node to the edges `src -> dst` of a graph with `num_nodes` nodes.
    pub fn new(num_nodes: usize, src: Tensor<1, Int>, dst: Tensor<1, Int>) -> Self {
        let device = src.device();
        let keep = src.clone().not_equal(dst.clone()).float();
        let loops = Tensor::<1, Int>::arange(0..num_nodes as i64, &device);
        Self {
            src: Tensor::cat(vec![src, loops.clone()], 0),
            dst: Tensor::cat(vec![dst, loops], 0),
            keep: Tensor::cat(vec![keep, Tensor::ones([num_nodes], &device)], 0),
            num_nodes,
        }
    }

    /// From host edge lists.
    pub fn from_lists(num_nodes: usize, src: &[i64], dst: &[i64], device: &Device) -> Self {
        let e = src.len();
        Self::new(
            num_nodes,
            Tensor::from_data(TensorData::new(src.to_vec(), [e]), device),
            Tensor::from_data(TensorData::new(dst.to_vec(), [e]), device),
        )
    }

    /// Symmetric GCN weights `keep / sqrt(deg[src] deg[dst])`, degrees counted with the loop.
    pub fn gcn_weights(&self) -> Tensor<1> {
        let device = self.keep.device();
        let deg =
            Tensor::<1>::zeros([self.num_nodes], &device).select_assign(0, self.dst.clone(), self.keep.clone(), IndexingUpdateOp::Add);
        let dinv = deg.powf_scalar(-0.5);
        dinv.clone().select(0, self.src.clone()) * self.keep.clone() * dinv.select(0, self.dst.clone())
    }
}

/// `x / rowsum(x)` with empty rows left at 0 (Kipf's feature normalization).
pub fn row_normalize(x: Tensor<2>) -> Tensor<2> {
    let s = x.clone().sum_dim(1);
    let s = s.clone().mask_fill(s.equal_elem(0.0), 1.0);
    x / s
}

/// `out[dst] += w * h[src]` on `h [N, C]`.
fn scatter_messages(h: Tensor<2>, e: &LoopedEdges, w: Tensor<1>) -> Tensor<2> {
    let [n, c] = h.dims();
    let m = h.select(0, e.src.clone()) * w.unsqueeze_dim::<2>(1);
    Tensor::zeros([n, c], &m.device()).select_assign(0, e.dst.clone(), m, IndexingUpdateOp::Add)
}

/// Two-layer GCN settings (Kipf & Welling 2017).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeGcnConfig {
    /// Hidden units.
    pub hidden: usize,
    /// Dropout rate on each layer's input.
    pub dropout: f64,
    /// Divide each node's features by their sum first.
    pub row_normalize: bool,
}

impl Default for NodeGcnConfig {
    fn default() -> Self {
        Self { hidden: 16, dropout: 0.5, row_normalize: true }
    }
}

/// Two-layer GCN: `relu(Â X W1 + b1)`, then `Â H W2 + b2` with `Â` the normalized adjacency with self-loops.
#[derive(Module, Debug)]
pub struct NodeGcn {
    /// First-layer weights `F → hidden`, no bias.
    pub conv1: Linear,
    /// `[hidden]` first-layer bias, added after propagation.
    pub bias1: Param<Tensor<1>>,
    /// Second-layer weights `hidden → K`, no bias.
    pub conv2: Linear,
    /// `[K]` second-layer bias, added after propagation.
    pub bias2: Param<Tensor<1>>,
    dropout: Dropout,
    row_norm: bool,
}

fn glorot(d_in: usize, d_out: usize, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out).with_bias(false).with_initializer(Initializer::XavierUniform { gain: 1.0 }).init(device)
}

impl NodeGcnConfig {
    /// A model for `features` input features and `classes` classes, Glorot-initialized, zero biases.
    pub fn init(&self, features: usize, classes: usize, device: &Device) -> NodeGcn {
        NodeGcn {
            conv1: glorot(features, self.hidden, device),
            bias1: Param::from_tensor(Tensor::zeros([self.hidden], device)),
            conv2: glorot(self.hidden, classes, device),
            bias2: Param::from_tensor(Tensor::zeros([classes], device)),
            dropout: DropoutConfig::new(self.dropout).init(),
            row_norm: self.row_normalize,
        }
    }
}

impl NodeGcn {
    /// Node features `[N, F]` → class logits `[N, K]`.
    pub fn forward(&self, x: Tensor<2>, e: &LoopedEdges) -> Tensor<2> {
        let x = if self.row_norm { row_normalize(x) } else { x };
        let w = e.gcn_weights();
        let h = scatter_messages(self.conv1.forward(self.dropout.forward(x)), e, w.clone());
        let h = relu(h + self.bias1.val().unsqueeze_dim::<2>(0));
        let h = scatter_messages(self.conv2.forward(self.dropout.forward(h)), e, w);
        h + self.bias2.val().unsqueeze_dim::<2>(0)
    }

    /// The hidden representation `[N, hidden]` (after the first layer's ReLU).
    pub fn embed(&self, x: Tensor<2>, e: &LoopedEdges) -> Tensor<2> {
        let x = if self.row_norm { row_normalize(x) } else { x };
        let h = scatter_messages(self.conv1.forward(x), e, e.gcn_weights());
        relu(h + self.bias1.val().unsqueeze_dim::<2>(0))
    }

    /// `Σ ||W1||² / 2` — Kipf's weight decay applies to the first layer only.
    pub fn first_layer_l2(&self) -> Tensor<1> {
        self.conv1.weight.val().powf_scalar(2.0).sum().mul_scalar(0.5)
    }

    /// The ONNX model: inputs `x [num_nodes, F]`, `edge_index [2, num_edges]`; outputs `logits` and softmax `probabilities` `[num_nodes, K]`.
    pub fn export(&self, metadata: Vec<(String, String)>) -> ModelProto {
        let cx = Lower::new("node_gcn");
        let (x, e) = graph_inputs(&cx, self.conv1.weight.dims()[0]);
        let dinv = e.gcn_norm(&cx);
        let h = e.gcn_propagate(&cx, &first_linear(&cx, &x, "conv1", &self.conv1, self.row_norm), &dinv);
        let h = cx.op1("Relu", &cx.bias(&h, "bias1", &self.bias1));
        let h = e.gcn_propagate(&cx, &cx.linear(&h, "conv2", &self.conv2), &dinv);
        let logits = cx.bias(&h, "bias2", &self.bias2);
        cx.finish_classifier(&logits, "num_nodes", self.bias2.dims()[0], Head::Softmax, metadata)
    }
}

/// Two-layer GAT settings (Veličković et al. 2018).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeGatConfig {
    /// Attention heads in the first layer (outputs concatenated).
    pub heads: usize,
    /// Hidden units per head in the first layer.
    pub hidden: usize,
    /// Attention heads in the output layer (outputs averaged).
    pub out_heads: usize,
    /// Dropout rate on each layer's input and on the attention coefficients.
    pub dropout: f64,
    /// LeakyReLU slope in the attention scores.
    pub negative_slope: f64,
    /// Divide each node's features by their sum first.
    pub row_normalize: bool,
    /// Dropout also on the transformed features that the attention averages (the reference
    /// TensorFlow code does this; PyG does not).
    #[serde(default)]
    pub value_dropout: bool,
}

impl Default for NodeGatConfig {
    fn default() -> Self {
        Self { heads: 8, hidden: 8, out_heads: 1, dropout: 0.6, negative_slope: 0.2, row_normalize: true, value_dropout: false }
    }
}

/// One multi-head graph attention layer.
#[derive(Module, Debug)]
pub struct GatLayer {
    /// Shared per-head projection `D → H·F`, no bias.
    pub linear: Linear,
    /// `[H, F]` attention vector applied to the source node.
    pub att_src: Param<Tensor<2>>,
    /// `[H, F]` attention vector applied to the target node.
    pub att_dst: Param<Tensor<2>>,
    /// `[H·F]` (concat) or `[F]` (mean) output bias.
    pub bias: Param<Tensor<1>>,
    heads: usize,
    out: usize,
    concat: bool,
    negative_slope: f64,
    value_dropout: bool,
}

impl GatLayer {
    fn new(d_in: usize, heads: usize, out: usize, concat: bool, negative_slope: f64, value_dropout: bool, device: &Device) -> Self {
        let init = Initializer::XavierUniform { gain: 1.0 };
        let width = if concat { heads * out } else { out };
        Self {
            linear: glorot(d_in, heads * out, device),
            att_src: init.init_with([heads, out], Some(out), Some(1), device),
            att_dst: init.init_with([heads, out], Some(out), Some(1), device),
            bias: Param::from_tensor(Tensor::zeros([width], device)),
            heads,
            out,
            concat,
            negative_slope,
            value_dropout,
        }
    }

    /// `[N, D]` → `[N, H·F]` (concat) or `[N, F]` (mean over heads).
    pub fn forward(&self, x: Tensor<2>, e: &LoopedEdges, attn_dropout: &Dropout) -> Tensor<2> {
        let [n, _] = x.dims();
        let (h, f) = (self.heads, self.out);
        let hx = self.linear.forward(x).reshape([n, h, f]);
        let a_s = (hx.clone() * self.att_src.val().unsqueeze_dim::<3>(0)).sum_dim(2).reshape([n, h]);
        let a_d = (hx.clone() * self.att_dst.val().unsqueeze_dim::<3>(0)).sum_dim(2).reshape([n, h]);
        let score = leaky_relu(a_s.select(0, e.src.clone()) + a_d.select(0, e.dst.clone()), self.negative_slope);
        // dropped input self-loops get a score of -1e9 (weight 0 after the softmax)
        let keep = e.keep.clone().unsqueeze_dim::<2>(1);
        let score = score * keep.clone() + (keep - 1.0) * 1e9;
        // segment softmax over each target's incoming edges; the max is a detached shift
        let max = Tensor::<2>::full([n, h], -1e30, &score.device()).select_assign(
            0,
            e.dst.clone(),
            score.clone().detach(),
            IndexingUpdateOp::Max,
        );
        let p = (score - max.select(0, e.dst.clone())).exp();
        let denom = Tensor::<2>::zeros([n, h], &p.device()).select_assign(0, e.dst.clone(), p.clone(), IndexingUpdateOp::Add);
        let alpha = attn_dropout.forward(p / denom.select(0, e.dst.clone()));
        let hv = if self.value_dropout { attn_dropout.forward(hx) } else { hx };
        let msg = hv.select(0, e.src.clone()) * alpha.unsqueeze_dim::<3>(2);
        let out = Tensor::<3>::zeros([n, h, f], &msg.device()).select_assign(0, e.dst.clone(), msg, IndexingUpdateOp::Add);
        let out = if self.concat { out.reshape([n, h * f]) } else { out.mean_dim(1).reshape([n, f]) };
        out + self.bias.val().unsqueeze_dim::<2>(0)
    }

    /// `row_norm`: `x` is first divided by its row sums (see [`first_linear`]).
    fn export(&self, cx: &Lower, x: &str, e: &OnnxEdges, name: &str, row_norm: bool) -> String {
        let (h, f) = (self.heads, self.out);
        let flat = first_linear(cx, x, &format!("{name}.linear"), &self.linear, row_norm);
        let hx = cx.reshape(&flat, &[-1, h as i64, f as i64]);
        // both attention scores of every head in one MatMul: `[N, H·F] · [H·F, 2H]`, block-diagonal
        // (column j < H holds head j's att_src, column H + j its att_dst)
        let (a_s, a_d) = (crate::to_vec(self.att_src.val()), crate::to_vec(self.att_dst.val()));
        let mut att = vec![0f32; h * f * 2 * h];
        for (j, i) in (0..h).flat_map(|j| (0..f).map(move |i| (j, i))) {
            att[(j * f + i) * 2 * h + j] = a_s[j * f + i];
            att[(j * f + i) * 2 * h + h + j] = a_d[j * f + i];
        }
        let scores = cx.op2("MatMul", &flat, &cx.floats(&format!("{name}.att"), &[h * f, 2 * h], &att));
        // dropped input self-loops read the source score -1e9 (row N): after the LeakyReLU still
        // ≤ -1e8, so weight 0 after the softmax, as burn's -1e9 mask; kept edges' scores are the
        // same sums (no mask products over [E, H]: 4 row-by-row broadcasts in ONNX Runtime)
        let src_scores = cx.concat(&[&cx.cols(&scores, 0, h), &cx.floats("no_source", &[1, h], &vec![-1e9; h])], 0);
        let s = cx.op2("Add", &cx.rows(&src_scores, &e.kept_src), &cx.rows(&cx.cols(&scores, h, 2 * h), &e.dst));
        let score = cx.node("LeakyRelu", &[&s], &[("alpha", Attr::Float(self.negative_slope as f32))]);
        // softmax over each target's incoming edges, per head
        let nh_shape = cx.concat(&[&e.n_shape, &cx.ints("heads", &[h as i64])], 0);
        let alpha = cx.segment_softmax(&score, &e.dst, &e.dst_col, &nh_shape);
        let out = cx.propagate(&hx, &e.src, &e.dst_col, Some(EdgeWeights::Heads { w: &alpha, heads: h, width: f }));
        let (h, f) = (h as i64, f as i64);
        // one averaged head is a reshape (ONNX Runtime's ReduceMean over Cora's [2708, 1, 7] took 0.4 ms)
        let out = if self.concat || h == 1 { cx.reshape(&out, &[-1, h * f]) } else { cx.reduce("Mean", &out, &[1], false) };
        cx.bias(&out, &format!("{name}.bias"), &self.bias)
    }
}

/// Two-layer GAT: concatenated heads with ELU, then averaged output heads giving class logits.
#[derive(Module, Debug)]
pub struct NodeGat {
    /// Hidden layer: `heads` heads of `hidden` units, concatenated.
    pub layer1: GatLayer,
    /// Output layer: `out_heads` heads of `K` units, averaged.
    pub layer2: GatLayer,
    dropout: Dropout,
    row_norm: bool,
}

impl NodeGatConfig {
    /// A model for `features` input features and `classes` classes, Glorot-initialized, zero biases.
    pub fn init(&self, features: usize, classes: usize, device: &Device) -> NodeGat {
        NodeGat {
            layer1: GatLayer::new(features, self.heads, self.hidden, true, self.negative_slope, self.value_dropout, device),
            layer2: GatLayer::new(
                self.heads * self.hidden,
                self.out_heads,
                classes,
                false,
                self.negative_slope,
                self.value_dropout,
                device,
            ),
            dropout: DropoutConfig::new(self.dropout).init(),
            row_norm: self.row_normalize,
        }
    }
}

impl NodeGat {
    /// Node features `[N, F]` → class logits `[N, K]`.
    pub fn forward(&self, x: Tensor<2>, e: &LoopedEdges) -> Tensor<2> {
        let x = if self.row_norm { row_normalize(x) } else { x };
        let h = self.layer1.forward(self.dropout.forward(x), e, &self.dropout);
        let h = elu(h, 1.0);
        self.layer2.forward(self.dropout.forward(h), e, &self.dropout)
    }

    /// The hidden representation `[N, heads·hidden]` (after the first layer's ELU).
    pub fn embed(&self, x: Tensor<2>, e: &LoopedEdges) -> Tensor<2> {
        let x = if self.row_norm { row_normalize(x) } else { x };
        elu(self.layer1.forward(x, e, &self.dropout), 1.0)
    }

    /// The ONNX model: inputs `x [num_nodes, F]`, `edge_index [2, num_edges]`; outputs `logits` and softmax `probabilities` `[num_nodes, K]`.
    pub fn export(&self, metadata: Vec<(String, String)>) -> ModelProto {
        let cx = Lower::new("node_gat");
        let (x, e) = graph_inputs(&cx, self.layer1.linear.weight.dims()[0]);
        let h = self.layer1.export(&cx, &x, &e, "layer1", self.row_norm);
        // ELU as Relu(x) + exp(min(x, 0)) − 1: ONNX Runtime's Elu rounds differently with the thread count
        let neg = cx.op2("Sub", &cx.op1("Exp", &cx.op2("Min", &h, &cx.scalar("zero", 0.0))), &cx.scalar("one", 1.0));
        let h = cx.op2("Add", &cx.op1("Relu", &h), &neg);
        let logits = self.layer2.export(&cx, &h, &e, "layer2", false);
        cx.finish_classifier(&logits, "num_nodes", self.layer2.bias.dims()[0], Head::Softmax, metadata)
    }
}

/// [`LoopedEdges`] in the exported graph.
struct OnnxEdges {
    src: String,
    dst: String,
    /// `[E', 1]` targets (the segment index of the sums).
    dst_col: String,
    keep: String,
    /// The sources with the dropped input loops sent to row N (i32): the GCN's messages read a
    /// zero row there, the GAT's source scores −1e9.
    kept_src: String,
    /// `[1]` = num_nodes
    n_shape: String,
}

impl OnnxEdges {
    /// [`LoopedEdges::gcn_weights`] as node scalings: each node's `deg^-1/2` (`[N, 1]`); with
    /// the dropped loops' sources at the zero row N, `w_e = d[src]^-1/2 · keep_e · d[dst]^-1/2`
    /// leaves no product per edge (tract cannot size one: the edge count after the sort is a data
    /// value, and it multiplies element by element).
    fn gcn_norm(&self, cx: &Lower) -> String {
        let deg = cx.scatter_add(&self.n_shape, &self.dst_col, &self.keep);
        cx.column(&cx.op2("Pow", &deg, &cx.scalar("minus_half", -0.5)))
    }

    /// `out[dst] += w · h[src]` with the GCN weights: `d^-1/2 · Σ (d^-1/2 · h)[src]`.
    fn gcn_propagate(&self, cx: &Lower, h: &str, dinv: &str) -> String {
        let out = cx.propagate(&cx.op2("Mul", h, dinv), &self.kept_src, &self.dst_col, None);
        cx.op2("Mul", &out, dinv)
    }
}

/// Inputs `x [num_nodes, F]`, `edge_index [2, num_edges]`; loops.
fn graph_inputs(cx: &Lower, f: usize) -> (String, OnnxEdges) {
    let x = cx.input("x", Elem::F32, &dims("num_nodes", f));
    let (src, dst) = cx.edge_index_inputs("edge_index");
    // self-loops as in LoopedEdges::new
    let (n, n_shape) = cx.num_rows(&x);
    let loops = cx.node("Range", &[&cx.index(0), &n, &cx.index(1)], &[]);
    let keep = cx.node("Cast", &[&cx.op1("Not", &cx.op2("Equal", &src, &dst))], &[("to", Attr::Int(1))]);
    let keep = cx.concat(&[&keep, &cx.fill(&n_shape, 1.0)], 0);
    let (input_dst, dst) = (dst.clone(), cx.concat(&[&dst, &loops], 0));
    let src = cx.concat(&[&src, &loops], 0);
    let kept = cx.node("Cast", &[&keep], &[("to", Attr::Int(9))]);
    let kept_src = cx.node("Where", &[&kept, &cx.idx32(&src), &cx.idx32(&n)], &[]);
    let e = OnnxEdges { src, dst_col: cx.column(&dst), dst, keep, kept_src, n_shape };
    cx.looped_segment_layout(&e.dst_col, &input_dst, &e.n_shape);
    (x, e)
}

/// `l(x)`, or with `row_norm` `l(`[`row_normalize`]`(x))` as `(x · W) / rowsum(x) + b`: the
/// `[N, out]` product is divided, not the `[N, F]` input (Cora: F = 1433, out = 16). Measured
/// against a column of ones in W giving the sums from the same MatMul: tract splits that MatMul
/// in two and packs x twice (decisions §2).
fn first_linear(cx: &Lower, x: &str, name: &str, l: &Linear, row_norm: bool) -> String {
    if !row_norm {
        return cx.linear(x, name, l);
    }
    let y = cx.op2("MatMul", x, &cx.param(&format!("{name}.weight"), &l.weight));
    let s = cx.reduce("Sum", x, &[1], true);
    let s = cx.node("Where", &[&cx.op2("Equal", &s, &cx.scalar("zero", 0.0)), &cx.scalar("one", 1.0), &s], &[]);
    let y = cx.op2("Div", &y, &s);
    match &l.bias {
        Some(b) => cx.bias(&y, &format!("{name}.bias"), b),
        None => y,
    }
}

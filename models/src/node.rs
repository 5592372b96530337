//! Node-level GNNs on a graph given at run time: GCN (Kipf & Welling 2017) and GAT (Veličković et
//! al. 2018). Inputs are `x [num_nodes, F]` and `edge_index [2, num_edges]` (row 0 = source, row 1 =
//! target; give both directions for an undirected graph). Self-loops in the input are ignored and
//! one self-loop per node is added, so a graph with or without self-loops gives the same result;
//! duplicate edges count as parallel edges. Feature row-normalization and GCN degree normalization
//! are inside the model and inside its ONNX export, which has symbolic `num_nodes`/`num_edges`.

use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;
use burn::tensor::activation::{elu, leaky_relu, relu};
use onnx_format::builder::{Attr, Dim, Elem, GraphBuilder};
use onnx_format::pb::ModelProto;
use serde::{Deserialize, Serialize};

/// Edges with one self-loop per node appended, and a 0/1 mask that drops input self-loops.
#[derive(Debug, Clone)]
pub struct LoopedEdges {
    pub src: Tensor<1, Int>,
    pub dst: Tensor<1, Int>,
    /// 1 for real edges and added loops, 0 for self-loops present in the input.
    pub keep: Tensor<1>,
    pub num_nodes: usize,
}

impl LoopedEdges {
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
        let deg = Tensor::<1>::zeros([self.num_nodes], &device).select_assign(0, self.dst.clone(), self.keep.clone(), IndexingUpdateOp::Add);
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeGcnConfig {
    pub hidden: usize,
    pub dropout: f64,
    pub row_normalize: bool,
}

impl Default for NodeGcnConfig {
    fn default() -> Self {
        Self { hidden: 16, dropout: 0.5, row_normalize: true }
    }
}

#[derive(Module, Debug)]
pub struct NodeGcn {
    pub conv1: Linear,
    pub bias1: Param<Tensor<1>>,
    pub conv2: Linear,
    pub bias2: Param<Tensor<1>>,
    dropout: Dropout,
    row_norm: bool,
}

fn glorot(d_in: usize, d_out: usize, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out)
        .with_bias(false)
        .with_initializer(Initializer::XavierUniform { gain: 1.0 })
        .init(device)
}

impl NodeGcnConfig {
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

    pub fn export(&self, metadata: Vec<(String, String)>) -> ModelProto {
        let [f, _] = self.conv1.weight.dims();
        let k = self.bias2.dims()[0];
        let mut b = GraphBuilder::new("node_gcn");
        let (x, g) = graph_inputs(&mut b, f, self.row_norm);
        let w = g.gcn_weights(&mut b);
        let w1 = lin_w(&mut b, "conv1", &self.conv1);
        let h = b.op2("MatMul", &x, &w1);
        let h = g.scatter(&mut b, &h, Some(&w));
        let b1 = vec_init(&mut b, "bias1", &self.bias1);
        let h = b.op2("Add", &h, &b1);
        let h = b.op1("Relu", &h);
        let w2 = lin_w(&mut b, "conv2", &self.conv2);
        let h = b.op2("MatMul", &h, &w2);
        let h = g.scatter(&mut b, &h, Some(&w));
        let b2 = vec_init(&mut b, "bias2", &self.bias2);
        let logits = b.op2("Add", &h, &b2);
        finish_nodes(b, &logits, k, metadata)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeGatConfig {
    pub heads: usize,
    pub hidden: usize,
    pub out_heads: usize,
    pub dropout: f64,
    pub negative_slope: f64,
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
    pub linear: Linear,
    /// `[H, F]`
    pub att_src: Param<Tensor<2>>,
    pub att_dst: Param<Tensor<2>>,
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
        let max = Tensor::<2>::full([n, h], -1e30, &score.device()).select_assign(0, e.dst.clone(), score.clone().detach(), IndexingUpdateOp::Max);
        let p = (score - max.select(0, e.dst.clone())).exp();
        let denom = Tensor::<2>::zeros([n, h], &p.device()).select_assign(0, e.dst.clone(), p.clone(), IndexingUpdateOp::Add);
        let alpha = attn_dropout.forward(p / denom.select(0, e.dst.clone()));
        let hv = if self.value_dropout { attn_dropout.forward(hx) } else { hx };
        let msg = hv.select(0, e.src.clone()) * alpha.unsqueeze_dim::<3>(2);
        let out = Tensor::<3>::zeros([n, h, f], &msg.device()).select_assign(0, e.dst.clone(), msg, IndexingUpdateOp::Add);
        let out = if self.concat { out.reshape([n, h * f]) } else { out.mean_dim(1).reshape([n, f]) };
        out + self.bias.val().unsqueeze_dim::<2>(0)
    }

    fn export(&self, b: &mut GraphBuilder, x: &str, g: &OnnxEdges, name: &str) -> String {
        let (h, f) = (self.heads as i64, self.out as i64);
        let lw = lin_w(b, &format!("{name}.linear"), &self.linear);
        let hx = b.op2("MatMul", x, &lw);
        let shape3 = b.init_i64("shape_nhf", &[3], vec![-1, h, f]);
        let hx = b.op2("Reshape", &hx, &shape3);
        let ax2 = b.init_i64("axes2", &[1], vec![2]);
        let mut att = |which: &str, p: &Param<Tensor<2>>| {
            let v = crate::to_vec(p.val());
            let a = b.init_f32(&format!("{name}.{which}"), &[1, h as usize, f as usize], v);
            let m = b.op2("Mul", &hx, &a);
            b.node("ReduceSum", &[&m, &ax2], &[("keepdims", Attr::Int(0))])
        };
        let a_s = att("att_src", &self.att_src);
        let a_d = att("att_dst", &self.att_dst);
        let gs = b.node("Gather", &[&a_s, &g.src], &[("axis", Attr::Int(0))]);
        let gd = b.node("Gather", &[&a_d, &g.dst], &[("axis", Attr::Int(0))]);
        let s = b.op2("Add", &gs, &gd);
        let score = b.node("LeakyRelu", &[&s], &[("alpha", Attr::Float(self.negative_slope as f32))]);
        let keep = b.op2("Unsqueeze", &g.keep, &g.axis1);
        let kept = b.op2("Mul", &score, &keep);
        let one = b.scalar("one", 1.0);
        let big = b.scalar("big", 1e9);
        let km1 = b.op2("Sub", &keep, &one);
        let pen = b.op2("Mul", &km1, &big);
        let score = b.op2("Add", &kept, &pen);
        // segment max / sum over targets, [N, H]
        let nh_shape = {
            let hs = b.init_i64("h", &[1], vec![h]);
            b.node("Concat", &[&g.n_shape, &hs], &[("axis", Attr::Int(0))])
        };
        let neg = b.node("ConstantOfShape", &[&nh_shape], &[("value", Attr::ScalarTensor(-1e30))]);
        let idx = g.expand_dst(b, &score);
        let max = b.node("ScatterElements", &[&neg, &idx, &score], &[("axis", Attr::Int(0)), ("reduction", Attr::Str("max".into()))]);
        let gmax = b.node("Gather", &[&max, &g.dst], &[("axis", Attr::Int(0))]);
        let d = b.op2("Sub", &score, &gmax);
        let p = b.op1("Exp", &d);
        let zeros = b.node("ConstantOfShape", &[&nh_shape], &[("value", Attr::ScalarTensor(0.0))]);
        let denom = b.node("ScatterND", &[&zeros, &g.dst_col, &p], &[("reduction", Attr::Str("add".into()))]);
        let gden = b.node("Gather", &[&denom, &g.dst], &[("axis", Attr::Int(0))]);
        let alpha = b.op2("Div", &p, &gden);
        let alpha = b.op2("Unsqueeze", &alpha, &ax2);
        let hs = b.node("Gather", &[&hx, &g.src], &[("axis", Attr::Int(0))]);
        let msg = b.op2("Mul", &hs, &alpha);
        let hx_shape = b.op1("Shape", &hx);
        let z3 = b.node("ConstantOfShape", &[&hx_shape], &[("value", Attr::ScalarTensor(0.0))]);
        let out = b.node("ScatterND", &[&z3, &g.dst_col, &msg], &[("reduction", Attr::Str("add".into()))]);
        let out = if self.concat {
            let s2 = b.init_i64("shape_nd", &[2], vec![-1, h * f]);
            b.op2("Reshape", &out, &s2)
        } else {
            let ax1 = b.init_i64("axes1", &[1], vec![1]);
            b.node("ReduceMean", &[&out, &ax1], &[("keepdims", Attr::Int(0))])
        };
        let bias = vec_init(b, &format!("{name}.bias"), &self.bias);
        b.op2("Add", &out, &bias)
    }
}

#[derive(Module, Debug)]
pub struct NodeGat {
    pub layer1: GatLayer,
    pub layer2: GatLayer,
    dropout: Dropout,
    row_norm: bool,
}

impl NodeGatConfig {
    pub fn init(&self, features: usize, classes: usize, device: &Device) -> NodeGat {
        NodeGat {
            layer1: GatLayer::new(features, self.heads, self.hidden, true, self.negative_slope, self.value_dropout, device),
            layer2: GatLayer::new(self.heads * self.hidden, self.out_heads, classes, false, self.negative_slope, self.value_dropout, device),
            dropout: DropoutConfig::new(self.dropout).init(),
            row_norm: self.row_normalize,
        }
    }
}

impl NodeGat {
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

    pub fn export(&self, metadata: Vec<(String, String)>) -> ModelProto {
        let [f, _] = self.layer1.linear.weight.dims();
        let k = self.layer2.bias.dims()[0];
        let mut b = GraphBuilder::new("node_gat");
        let (x, g) = graph_inputs(&mut b, f, self.row_norm);
        let h = self.layer1.export(&mut b, &x, &g, "layer1");
        let h = b.node("Elu", &[&h], &[("alpha", Attr::Float(1.0))]);
        let logits = self.layer2.export(&mut b, &h, &g, "layer2");
        finish_nodes(b, &logits, k, metadata)
    }
}

/// ONNX names for the looped edge list.
struct OnnxEdges {
    src: String,
    dst: String,
    /// `[E', 1]` targets for ScatterND.
    dst_col: String,
    keep: String,
    /// `[1]` = num_nodes
    n_shape: String,
    axis1: String,
}

impl OnnxEdges {
    fn gcn_weights(&self, b: &mut GraphBuilder) -> String {
        let zeros = b.node("ConstantOfShape", &[&self.n_shape], &[("value", Attr::ScalarTensor(0.0))]);
        let deg = b.node("ScatterND", &[&zeros, &self.dst_col, &self.keep], &[("reduction", Attr::Str("add".into()))]);
        let mhalf = b.scalar("minus_half", -0.5);
        let dinv = b.op2("Pow", &deg, &mhalf);
        let ds = b.node("Gather", &[&dinv, &self.src], &[("axis", Attr::Int(0))]);
        let dd = b.node("Gather", &[&dinv, &self.dst], &[("axis", Attr::Int(0))]);
        let w = b.op2("Mul", &ds, &self.keep);
        let w = b.op2("Mul", &w, &dd);
        b.op2("Unsqueeze", &w, &self.axis1)
    }

    /// `out[dst] += w * h[src]` on `h [N, C]`; `w` is `[E', 1]`.
    fn scatter(&self, b: &mut GraphBuilder, h: &str, w: Option<&str>) -> String {
        let mut m = b.node("Gather", &[h, &self.src], &[("axis", Attr::Int(0))]);
        if let Some(w) = w {
            m = b.op2("Mul", &m, w);
        }
        let shape = b.op1("Shape", h);
        let zeros = b.node("ConstantOfShape", &[&shape], &[("value", Attr::ScalarTensor(0.0))]);
        b.node("ScatterND", &[&zeros, &self.dst_col, &m], &[("reduction", Attr::Str("add".into()))])
    }

    /// `dst` broadcast to the shape of `like [E', H]` (ScatterElements indices).
    fn expand_dst(&self, b: &mut GraphBuilder, like: &str) -> String {
        let shape = b.op1("Shape", like);
        b.op2("Expand", &self.dst_col, &shape)
    }
}

/// Inputs `x [num_nodes, F]`, `edge_index [2, num_edges]`; optional row normalization; loops.
fn graph_inputs(b: &mut GraphBuilder, f: usize, row_norm: bool) -> (String, OnnxEdges) {
    let x = b.input("x", Elem::F32, &[Dim::from("num_nodes"), Dim::from(f)]);
    let ei = b.input("edge_index", Elem::I64, &[Dim::from(2usize), Dim::from("num_edges")]);
    let x = if row_norm {
        let ax1 = b.init_i64("axes1", &[1], vec![1]);
        let s = b.node("ReduceSum", &[&x, &ax1], &[("keepdims", Attr::Int(1))]);
        let zero = b.scalar("zero", 0.0);
        let one = b.scalar("one", 1.0);
        let is0 = b.op2("Equal", &s, &zero);
        let s = b.node("Where", &[&is0, &one, &s], &[]);
        b.op2("Div", &x, &s)
    } else {
        x
    };
    let i0 = b.init_i64("row0", &[], vec![0]);
    let i1 = b.init_i64("row1", &[], vec![1]);
    let src = b.node("Gather", &[&ei, &i0], &[("axis", Attr::Int(0))]);
    let dst = b.node("Gather", &[&ei, &i1], &[("axis", Attr::Int(0))]);
    let shape = b.op1("Shape", &x);
    let n = b.node("Gather", &[&shape, &i0], &[("axis", Attr::Int(0))]); // scalar
    let axis0 = b.init_i64("axes0", &[1], vec![0]);
    let n_shape = b.op2("Unsqueeze", &n, &axis0);
    let step = b.init_i64("step", &[], vec![1]);
    let loops = b.node("Range", &[&i0, &n, &step], &[]);
    let src_all = b.node("Concat", &[&src, &loops], &[("axis", Attr::Int(0))]);
    let dst_all = b.node("Concat", &[&dst, &loops], &[("axis", Attr::Int(0))]);
    let eq = b.op2("Equal", &src, &dst);
    let ne = b.op1("Not", &eq);
    let keep = b.node("Cast", &[&ne], &[("to", Attr::Int(1))]);
    let ones = b.node("ConstantOfShape", &[&n_shape], &[("value", Attr::ScalarTensor(1.0))]);
    let keep_all = b.node("Concat", &[&keep, &ones], &[("axis", Attr::Int(0))]);
    let axis1 = b.init_i64("axes1", &[1], vec![1]);
    let dst_col = b.op2("Unsqueeze", &dst_all, &axis1);
    (x, OnnxEdges { src: src_all, dst: dst_all, dst_col, keep: keep_all, n_shape, axis1 })
}

fn lin_w(b: &mut GraphBuilder, name: &str, l: &Linear) -> String {
    let (shape, w) = crate::gene::linear_weight(l);
    b.init_f32(&format!("{name}.weight"), &shape, w)
}

fn vec_init(b: &mut GraphBuilder, name: &str, p: &Param<Tensor<1>>) -> String {
    let v = crate::to_vec(p.val());
    b.init_f32(name, &[v.len()], v)
}

fn finish_nodes(mut b: GraphBuilder, logits: &str, k: usize, metadata: Vec<(String, String)>) -> ModelProto {
    b.node_to("Identity", &[logits], &["logits"], &[]);
    b.node_to("Softmax", &[logits], &["probabilities"], &[("axis", Attr::Int(-1))]);
    b.output("logits", Elem::F32, &[Dim::from("num_nodes"), Dim::from(k)]);
    b.output("probabilities", Elem::F32, &[Dim::from("num_nodes"), Dim::from(k)]);
    b.finish("bioedge-train", metadata)
}

//! DeepChem's GraphConv model for molecules: GraphConv (per-degree weights) → batch norm →
//! GraphPool (max over self and neighbours), twice; dense → batch norm → GraphGather (per-molecule
//! sum and max, tanh) → one logit per task. A batch is many molecules in one disjoint graph with a
//! `membership` vector. The ONNX export sits beside the forward.

use crate::export::{Head, Lower, dims};
use burn::module::Param;
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;
use burn::tensor::activation::{relu, sigmoid, tanh};
use onnx_format::builder::{Attr, Dim, Elem};
use onnx_format::pb::ModelProto;
use serde::{Deserialize, Serialize};

/// Atoms of degree 0..=MAX_DEGREE have their own weights (higher degrees use the last set).
pub const MAX_DEGREE: usize = 10;
const DEGREES: usize = MAX_DEGREE + 1;

/// Name of the exported atom-feature input `[num_atoms, F]`.
pub const INPUT_FEATURES: &str = "atom_features";
/// Name of the exported edge input `[2, num_edges]`.
pub const INPUT_EDGES: &str = "edge_index";
/// Name of the exported atom → molecule input `[num_atoms]`.
pub const INPUT_MEMBERSHIP: &str = "membership";
/// Name of the exported per-molecule input `[num_molecules]`; only its length is used.
pub const INPUT_SIZES: &str = "molecule_sizes";

/// DeepChem GraphConv model settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MolGcnConfig {
    /// Graph convolution widths (DeepChem: [64, 64]).
    pub conv: Vec<usize>,
    /// Dense layer before the gather (DeepChem: 128).
    pub dense: usize,
    /// Dropout rate after each graph convolution's batch norm and after the dense layer.
    pub dropout: f64,
}

impl Default for MolGcnConfig {
    fn default() -> Self {
        Self { conv: vec![64, 64], dense: 128, dropout: 0.1 }
    }
}

/// One batch of molecules as a disjoint graph (edges in both directions).
#[derive(Debug, Clone)]
pub struct MolTensors {
    /// `[N, F]` atom features.
    pub x: Tensor<2>,
    /// `[E]` source atom of each directed edge.
    pub src: Tensor<1, Int>,
    /// `[E]` target atom of each directed edge.
    pub dst: Tensor<1, Int>,
    /// `[N]` molecule index of each atom.
    pub membership: Tensor<1, Int>,
    /// Number of molecules `M` in the batch.
    pub num_molecules: usize,
}

impl MolTensors {
    /// From host arrays: `x [atoms, F]` row-major, directed edges, atom → molecule.
    pub fn new(x: &[f32], features: usize, src: &[i64], dst: &[i64], membership: &[i64], num_molecules: usize, device: &Device) -> Self {
        let n = membership.len();
        let i = |v: &[i64]| Tensor::<1, Int>::from_data(TensorData::new(v.to_vec(), [v.len()]), device);
        Self {
            x: Tensor::from_data(TensorData::new(x.to_vec(), [n, features]), device),
            src: i(src),
            dst: i(dst),
            membership: i(membership),
            num_molecules,
        }
    }

    /// One-hot of each atom's degree (edges counted at their target), clipped to MAX_DEGREE: `[N, 11]`.
    fn degree_onehot(&self) -> Tensor<2> {
        let n = self.x.dims()[0];
        let device = self.x.device();
        let e = self.dst.dims()[0];
        let deg = Tensor::<1>::zeros([n], &device).select_assign(0, self.dst.clone(), Tensor::ones([e], &device), IndexingUpdateOp::Add);
        let deg = deg.clamp_max(MAX_DEGREE as f32).unsqueeze_dim::<2>(1).expand([n, DEGREES]);
        let range = Tensor::<1, Int>::arange(0..DEGREES as i64, &device).float().unsqueeze_dim::<2>(0).expand([n, DEGREES]);
        deg.equal(range).float()
    }
}

/// `out[dst] += h[src]`.
fn neighbour_sum(h: Tensor<2>, src: &Tensor<1, Int>, dst: &Tensor<1, Int>) -> Tensor<2> {
    let [n, c] = h.dims();
    let m = h.select(0, src.clone());
    Tensor::zeros([n, c], &m.device()).select_assign(0, dst.clone(), m, IndexingUpdateOp::Add)
}

/// Segment max of `vals [E, C]` into `rows` rows at `idx`, starting from `init [rows, C]`, with
/// gradients through the arg-max elements (ties share). burn's scatter-max backward is wrong with
/// duplicate indices, so the max is detached and the gradient goes through a mask + scatter-add.
fn segment_max(init: Tensor<2>, init_grad: Option<Tensor<2>>, vals: Tensor<2>, idx: &Tensor<1, Int>) -> Tensor<2> {
    let m = init.clone().detach().select_assign(0, idx.clone(), vals.clone().detach(), IndexingUpdateOp::Max);
    let mask = vals.clone().detach().equal(m.clone().select(0, idx.clone())).float();
    let zeros = Tensor::<2>::zeros(m.dims(), &m.device());
    let mut num = zeros.clone().select_assign(0, idx.clone(), vals * mask.clone(), IndexingUpdateOp::Add);
    let mut cnt = zeros.select_assign(0, idx.clone(), mask, IndexingUpdateOp::Add);
    if let Some(h) = init_grad {
        let self_mask = h.clone().detach().equal(m.clone()).float();
        num = num + h * self_mask.clone();
        cnt = cnt + self_mask;
    }
    // a segment with no values keeps `init` (a molecule with no atoms: -1e30, as the export)
    let empty = cnt.clone().equal_elem(0.0);
    (num / cnt.clamp_min(1.0)).mask_where(empty, m)
}

/// DeepChem GraphConv: `relu(x W_self[d] + (Σ_neighbours x) W_rel[d] + b[d])` for an atom of degree d.
#[derive(Module, Debug)]
pub struct GraphConv {
    /// `[in, 11·out]`: the per-degree weights on the atom itself, side by side.
    pub w_self: Param<Tensor<2>>,
    /// `[in, 11·out]`: the per-degree weights on the neighbour sum, side by side.
    pub w_rel: Param<Tensor<2>>,
    /// `[11·out]`: the per-degree biases side by side.
    pub bias: Param<Tensor<1>>,
    out: usize,
}

impl GraphConv {
    fn new(d_in: usize, out: usize, device: &Device) -> Self {
        let init = Initializer::XavierUniform { gain: 1.0 };
        Self {
            w_self: init.init_with([d_in, DEGREES * out], Some(d_in), Some(out), device),
            w_rel: init.init_with([d_in, DEGREES * out], Some(d_in), Some(out), device),
            bias: Param::from_tensor(Tensor::zeros([DEGREES * out], device)),
            out,
        }
    }

    fn forward(&self, x: Tensor<2>, g: &MolTensors, onehot: &Tensor<2>) -> Tensor<2> {
        let n = x.dims()[0];
        let nb = neighbour_sum(x.clone(), &g.src, &g.dst);
        let s = x.matmul(self.w_self.val()) + nb.matmul(self.w_rel.val()) + self.bias.val().unsqueeze_dim::<2>(0);
        let s = s.reshape([n, DEGREES, self.out]) * onehot.clone().unsqueeze_dim::<3>(2);
        relu(s.sum_dim(1).reshape([n, self.out]))
    }

    /// Atoms sorted by degree (`x` `[N, in]`); each degree's rows meet only its own weights, and
    /// their neighbour sums come from the group's neighbour table.
    fn export(&self, cx: &Lower, x: &str, g: &SortedAtoms, name: &str) -> String {
        let d_in = self.w_self.dims()[0];
        let (ws, wr, b) = (self.w_self.val(), self.w_rel.val(), self.bias.val());
        let parts: Vec<String> = g
            .groups
            .iter()
            .enumerate()
            .map(|(d, group)| {
                let cols = d * self.out..(d + 1) * self.out;
                let bias = cx.tensor(&format!("{name}.b{d}"), b.clone().slice([cols.clone()]));
                let own = cx.rows(x, &group.rows);
                let nb = match &group.neighbours {
                    // no neighbours: only the weights on the atom itself
                    Neighbours::None => {
                        let w = cx.tensor(&format!("{name}.w{d}"), ws.clone().slice([0..d_in, cols]));
                        return cx.op2("Add", &cx.op2("MatMul", &own, &w), &bias);
                    }
                    Neighbours::Slots(slots) => {
                        let rows: Vec<String> = slots.iter().map(|slot| cx.rows(x, slot)).collect();
                        cx.node("Sum", &rows.iter().map(String::as_str).collect::<Vec<_>>(), &[])
                    }
                    Neighbours::Tail { src, at } => {
                        // zeros [n, in] that keep the group's row count (tract: no ConstantOfShape of it)
                        let zero = cx.floats("zero_row", &[1, d_in], &vec![0.0; d_in]);
                        let zeros = cx.rows(&zero, &cx.op2("Min", &group.rows, &cx.index(0)));
                        cx.scatter_rows(&zeros, at, &cx.rows(x, src), "add")
                    }
                };
                let w = Tensor::cat(vec![ws.clone().slice([0..d_in, cols.clone()]), wr.clone().slice([0..d_in, cols])], 0);
                let w = cx.tensor(&format!("{name}.w{d}"), w);
                cx.op2("Add", &cx.op2("MatMul", &cx.concat(&[&own, &nb], 1), &w), &bias)
            })
            .collect();
        // the Gather by 0..N gives the result the row count N again (tract sizes the concat symbolically)
        let h = cx.rows(&cx.concat(&parts.iter().map(String::as_str).collect::<Vec<_>>(), 0), &g.rows);
        cx.op1("Relu", &h)
    }
}

/// DeepChem's GraphConv model: one logit per task for each molecule.
#[derive(Module, Debug)]
pub struct MolGcn {
    /// Graph convolutions.
    pub convs: Vec<GraphConv>,
    /// Batch norm after each graph convolution.
    pub norms: Vec<BatchNorm>,
    /// Dense layer before the gather.
    pub dense: Linear,
    /// Batch norm after the dense layer.
    pub dense_norm: BatchNorm,
    /// Linear head `2·dense → tasks` on the gathered sum and max.
    pub out: Linear,
    dropout: Dropout,
}

impl MolGcnConfig {
    /// A model for `features` atom features and `tasks` tasks.
    pub fn init(&self, features: usize, tasks: usize, device: &Device) -> MolGcn {
        let mut convs = Vec::new();
        let mut norms = Vec::new();
        let mut d = features;
        for &w in &self.conv {
            convs.push(GraphConv::new(d, w, device));
            norms.push(BatchNormConfig::new(w).with_epsilon(1e-3).init(device));
            d = w;
        }
        MolGcn {
            convs,
            norms,
            dense: LinearConfig::new(d, self.dense).init(device),
            dense_norm: BatchNormConfig::new(self.dense).with_epsilon(1e-3).init(device),
            out: LinearConfig::new(2 * self.dense, tasks).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
        }
    }
}

impl MolGcn {
    /// Per-molecule task logits `[M, tasks]`.
    pub fn forward(&self, g: &MolTensors) -> Tensor<2> {
        let onehot = g.degree_onehot();
        let mut h = g.x.clone();
        for (conv, norm) in self.convs.iter().zip(&self.norms) {
            h = self.dropout.forward(norm.forward(conv.forward(h, g, &onehot)));
            // GraphPool: max over the atom and its neighbours
            h = segment_max(h.clone(), Some(h.clone()), h.clone().select(0, g.src.clone()), &g.dst);
        }
        let h = self.dropout.forward(self.dense_norm.forward(relu(self.dense.forward(h))));
        let c = h.dims()[1];
        let device = h.device();
        let sum =
            Tensor::<2>::zeros([g.num_molecules, c], &device).select_assign(0, g.membership.clone(), h.clone(), IndexingUpdateOp::Add);
        let max = segment_max(Tensor::full([g.num_molecules, c], -1e30, &device), None, h, &g.membership);
        self.out.forward(tanh(Tensor::cat(vec![sum, max], 1)))
    }

    /// Per-molecule task probabilities `[M, tasks]` (sigmoid of the logits).
    pub fn predict_proba(&self, g: &MolTensors) -> Tensor<2> {
        sigmoid(self.forward(g))
    }

    /// The same network as ONNX: inputs `atom_features [num_atoms, F]`, `edge_index [2, num_edges]`
    /// (both directions), `membership [num_atoms]`, `molecule_sizes [num_molecules]` (its length sets
    /// the number of molecules); outputs `logits` and `probabilities` `[num_molecules, tasks]`.
    pub fn export(&self, metadata: Vec<(String, String)>) -> ModelProto {
        let cx = Lower::new("mol_graphconv");
        let x = cx.input(INPUT_FEATURES, Elem::F32, &dims("num_atoms", self.convs[0].w_self.dims()[0]));
        let (src, dst) = cx.edge_index_inputs(INPUT_EDGES);
        let mem = cx.input(INPUT_MEMBERSHIP, Elem::I64, &[Dim::from("num_atoms")]);
        let sizes = cx.input(INPUT_SIZES, Elem::I64, &[Dim::from("num_molecules")]);
        let sorted = sort_by_degree(&cx, &x, &src, &dst, &mem);
        let mem = sorted.mem.clone();
        let mut h = sorted.x.clone();
        for (i, (conv, norm)) in self.convs.iter().zip(&self.norms).enumerate() {
            let s = conv.export(&cx, &h, &sorted, &format!("conv{i}"));
            h = cx.batch_norm(&s, &format!("norm{i}"), norm);
            h = graph_pool(&cx, &h, &sorted);
        }
        let h = cx.batch_norm(&cx.op1("Relu", &cx.linear(&h, "dense", &self.dense)), "dense_norm", &self.dense_norm);
        // GraphGather: per-molecule sum and max
        let width = cx.ints("dense_width", &[self.dense.weight.dims()[1] as i64]);
        let mc = cx.concat(&[&cx.op1("Shape", &sizes), &width], 0);
        let sum = cx.segment_sum_chunked(&mc, &mem, &h);
        let max = cx.segment_max_chunked(&cx.fill(&mc, -1e30), &mc, &mem, &h);
        let logits = cx.linear(&cx.op1("Tanh", &cx.concat(&[&sum, &max], 1)), "out", &self.out);
        cx.finish_classifier(&logits, "num_molecules", self.out.weight.dims()[1], Head::Sigmoid, metadata)
    }
}

/// GraphPool: each atom's max over itself and its in-neighbours (`h` `[N, C]`, atoms in degree
/// order), from each degree group's neighbour slots (Gathers and one n-ary Max: race-free, parallel;
/// tract's ReduceMax over a middle axis took 81 % of its time).
fn graph_pool(cx: &Lower, h: &str, g: &SortedAtoms) -> String {
    let parts: Vec<String> = g
        .groups
        .iter()
        .map(|group| {
            let own = cx.rows(h, &group.rows);
            match &group.neighbours {
                Neighbours::None => own,
                Neighbours::Slots(slots) => {
                    let rows: Vec<String> = std::iter::once(own.clone()).chain(slots.iter().map(|slot| cx.rows(h, slot))).collect();
                    cx.node("Max", &rows.iter().map(String::as_str).collect::<Vec<_>>(), &[])
                }
                Neighbours::Tail { src, at } => cx.segment_max(&own, at, &cx.rows(h, src)),
            }
        })
        .collect();
    // the Gather by 0..N gives the result the row count N again (as in GraphConv)
    cx.rows(&cx.concat(&parts.iter().map(String::as_str).collect::<Vec<_>>(), 0), &g.rows)
}

/// Where one degree group's atoms find their in-neighbours.
enum Neighbours {
    /// Degree 0.
    None,
    /// Degree 1 ≤ d < MAX_DEGREE: d slots of `[n_d]` source atoms; slot j holds each atom's j-th
    /// in-edge in edge order.
    Slots(Vec<String>),
    /// Degree ≥ MAX_DEGREE (degrees vary): the group's in-edges, sources `[t]` and targets as rows of
    /// the group `[t, 1]` (ScatterElements: rare, so one thread is fine).
    Tail { src: String, at: String },
}

/// One degree's atoms: their rows in degree order (a Range) and their in-neighbours.
struct DegreeGroup {
    rows: String,
    neighbours: Neighbours,
}

/// The batch with its atoms renumbered in degree order (degrees clipped to MAX_DEGREE).
struct SortedAtoms {
    x: String,
    /// `[N, 1]`
    mem: String,
    /// Per degree 0..=MAX_DEGREE.
    groups: Vec<DegreeGroup>,
    /// `0..N`
    rows: String,
}

/// Sorts the atoms by degree (a counting sort: stable), renumbers edges and membership to match, and lays
/// out each degree group's in-neighbours. An atom of degree d has exactly d in-edges, adjacent once
/// the edges are sorted by target, so degree d < MAX_DEGREE reads d slots of `[n_d]` (E in all).
fn sort_by_degree(cx: &Lower, x: &str, src: &str, dst: &str, mem: &str) -> SortedAtoms {
    let (n, n_shape) = cx.num_rows(x);
    let e_shape = cx.op1("Shape", dst);
    let int = |v: &str| cx.node("Cast", &[v], &[("to", Attr::Int(7))]);
    // degree = edges per target (ScatterElements add over E scalars: small, so one thread is fine)
    let attrs = [("axis", Attr::Int(0)), ("reduction", Attr::Str("add".into()))];
    let full = cx.node("ScatterElements", &[&cx.fill(&n_shape, 0.0), dst, &cx.fill(&e_shape, 1.0)], &attrs);
    let deg = cx.op2("Min", &full, &cx.scalar("max_degree", MAX_DEGREE as f32));
    // per-degree counts and bounds in f32 (exact below 2^24; tract keeps integer shape arithmetic symbolic)
    let degrees: Vec<f32> = (0..DEGREES).map(|d| d as f32).collect();
    let onehot =
        cx.node("Cast", &[&cx.op2("Equal", &cx.column(&deg), &cx.floats("degrees", &[1, DEGREES], &degrees))], &[("to", Attr::Int(1))]);
    let counts = cx.reduce("Sum", &onehot, &[0], false);
    let ends = cx.node("CumSum", &[&counts, &cx.index(0)], &[]);
    let starts = cx.op2("Sub", &ends, &counts);
    // each atom's new row: its degree's start + the atoms of its degree before it
    let before = cx.op2("Sub", &cx.node("CumSum", &[&onehot, &cx.index(0)], &[]), &cx.scalar("one", 1.0));
    let inv = int(&cx.reduce("Sum", &cx.op2("Mul", &onehot, &cx.op2("Add", &before, &cx.unsqueeze(&starts, 0))), &[1], false));
    // perm[inv[i]] = i (no reduction: every index is written once)
    let range = cx.node("Range", &[&cx.index(0), &n, &cx.index(1)], &[]);
    let perm = cx.node("ScatterElements", &[&range, &inv, &range], &[("axis", Attr::Int(0))]);
    let (src, dst) = (cx.rows(&inv, src), cx.rows(&inv, dst));
    // edges by target (a stable TopK), and each atom's first in-edge in that order
    let (by_target, order) = cx.sort(&dst);
    let src = cx.rows(&src, &order);
    let full = cx.rows(&full, &perm);
    let first_edge = int(&cx.op2("Sub", &cx.node("CumSum", &[&full, &cx.index(0)], &[]), &full));
    let (starts, ends) = (int(&starts), int(&ends));
    let groups = (0..DEGREES)
        .map(|d| {
            let at = cx.index(d as i64);
            let start = cx.rows(&starts, &at);
            let rows = cx.node("Range", &[&start, &cx.rows(&ends, &at), &cx.index(1)], &[]);
            let neighbours = match d {
                0 => Neighbours::None,
                d if d < MAX_DEGREE => {
                    let first = cx.rows(&first_edge, &rows);
                    Neighbours::Slots((0..d as i64).map(|j| cx.rows(&src, &cx.op2("Add", &first, &cx.index(j)))).collect())
                }
                _ => {
                    // the last edges in target order, from this group's first atom's first in-edge
                    let e = cx.rows(&e_shape, &cx.index(0));
                    let first = cx.rows(&cx.concat(&[&first_edge, &e_shape], 0), &start);
                    let tail = cx.node("Range", &[&first, &e, &cx.index(1)], &[]);
                    let at = cx.column(&cx.op2("Sub", &cx.rows(&by_target, &tail), &start));
                    Neighbours::Tail { src: cx.rows(&src, &tail), at }
                }
            };
            DegreeGroup { rows, neighbours }
        })
        .collect();
    SortedAtoms { x: cx.rows(x, &perm), mem: cx.column(&cx.rows(mem, &perm)), groups, rows: range }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two molecules: a triangle with a tail (4 atoms) and a single atom.
    fn batch(device: &Device) -> MolTensors {
        let f = 6;
        let x: Vec<f32> = (0..5 * f).map(|i| ((i * 37 % 11) as f32) / 11.0 - 0.3).collect();
        let und = [(0, 1), (1, 2), (2, 0), (2, 3)];
        let src: Vec<i64> = und.iter().flat_map(|&(a, b)| [a, b]).collect();
        let dst: Vec<i64> = und.iter().flat_map(|&(a, b)| [b, a]).collect();
        MolTensors::new(&x, f, &src, &dst, &[0, 0, 0, 0, 1], 2, device)
    }

    #[test]
    fn segment_max_matches_and_has_gradients() {
        let _rng = crate::test_rng();
        let device = Device::flex().autodiff();
        let vals = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 5.0, 3.0, 5.0, 2.0, -1.0], [3, 2]), &device).require_grad();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 0, 1], [3]), &device);
        let m = segment_max(Tensor::full([2, 2], -1e30, &device), None, vals.clone(), &idx);
        assert_eq!(crate::to_vec(m.clone()), vec![3.0, 5.0, 2.0, -1.0]);
        let g = m.sum().backward();
        let gv = crate::to_vec(vals.grad(&g).unwrap());
        // ties (5, 5) share the gradient
        assert_eq!(gv, vec![0.0, 0.5, 1.0, 0.5, 1.0, 1.0]);
    }

    #[test]
    fn forward_shapes_and_molecule_independence() {
        let _rng = crate::test_rng();
        let device = Device::flex();
        let m = MolGcnConfig::default().init(6, 3, &device);
        let g = batch(&device);
        let out = m.forward(&g);
        assert_eq!(out.dims(), [2, 3]);
        // the single atom alone gives the same output as inside the batch
        let x1: Vec<f32> = crate::to_vec(g.x.clone().slice([4..5, 0..6]));
        let alone = MolTensors::new(&x1, 6, &[], &[], &[0], 1, &device);
        let a = crate::to_vec(m.forward(&alone));
        let both = crate::to_vec(out);
        for k in 0..3 {
            assert!((a[k] - both[3 + k]).abs() < 1e-5, "{a:?} vs {both:?}");
        }
    }
}

//! The shared ONNX lowering layer. [`Lower`] wraps the graph builder with a cache of small
//! constants; `layers` lowers the burn modules the families share, `graph` the message-passing
//! ops. Each family's `export` mirrors its `forward` with these.

mod graph;
mod layers;

pub use graph::{BUCKET_COST, EdgeWeights, Head, MAX_CHUNK, MAX_SLICED_CLASSES, SegmentSum, degree_buckets};

use burn::module::{Module, Param};
use burn::prelude::*;
use onnx_format::builder::{Attr, Dim, Elem, GraphBuilder};
use onnx_format::pb::ModelProto;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::Path;

/// A graph being lowered. Methods take `&self` so ops nest the way the forward's do
/// (`cx.op1("Relu", &cx.linear(..))`); small constants (axes, shapes, scalars) come from a cache,
/// so one value asked for twice is one initializer. Names are the builder's: the hint and a
/// running count, the same on every export.
pub struct Lower {
    b: RefCell<GraphBuilder>,
    consts: RefCell<BTreeMap<Const, String>>,
    /// Segment layouts by index tensor (`graph`), built once and shared by every sum over it.
    segments: RefCell<BTreeMap<String, graph::Segments>>,
    /// The form of segment sums over index tensors without a layout yet.
    segment_sum: Cell<SegmentSum>,
}

/// A cached constant: element type, shape and values (f32 as bits).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Const {
    F32(Vec<usize>, Vec<u32>),
    I64(Vec<usize>, Vec<i64>),
    I32(Vec<usize>, Vec<i32>),
}

impl Lower {
    /// An empty graph named `graph`.
    pub fn new(graph: &str) -> Self {
        Self {
            b: RefCell::new(GraphBuilder::new(graph)),
            consts: RefCell::default(),
            segments: RefCell::default(),
            segment_sum: Cell::new(SegmentSum::default()),
        }
    }

    fn cached(&self, key: Const, hint: &str) -> String {
        if let Some(name) = self.consts.borrow().get(&key) {
            return name.clone();
        }
        let name = match &key {
            Const::F32(dims, bits) => self.init_f32(hint, dims, bits.iter().map(|&v| f32::from_bits(v)).collect()),
            Const::I64(dims, v) => self.init_i64(hint, dims, v.clone()),
            Const::I32(dims, v) => self.b.borrow_mut().init_i32(hint, dims, v.clone()),
        };
        self.consts.borrow_mut().insert(key, name.clone());
        name
    }

    /// An i64 constant `[v.len()]` (a shape, sizes), cached.
    pub fn ints(&self, hint: &str, v: &[i64]) -> String {
        self.cached(Const::I64(vec![v.len()], v.to_vec()), hint)
    }

    /// Axes for Unsqueeze, Squeeze, Reduce*.
    pub fn axes(&self, v: &[i64]) -> String {
        self.ints("axes", v)
    }

    /// A rank-0 i64 constant, cached.
    pub fn index(&self, v: i64) -> String {
        self.cached(Const::I64(vec![], vec![v]), "index")
    }

    /// A rank-0 i32 constant, cached (index arithmetic with [`Lower::index32`] tensors).
    pub fn index32(&self, v: i32) -> String {
        self.cached(Const::I32(vec![], vec![v]), "index32")
    }

    /// The integer tensor `x` (indices, a Shape) as i32: tract types an INT64 Cast and a Shape as
    /// symbolic dims, whose Gather, Concat and Where take its slow generic paths (decisions §5);
    /// i32 stays a plain integer tensor. Indices up to 2^31 − 1.
    pub fn idx32(&self, x: &str) -> String {
        self.node("Cast", &[x], &[("to", Attr::Int(6))])
    }

    /// A rank-0 f32 constant, cached.
    pub fn scalar(&self, hint: &str, v: f32) -> String {
        self.floats(hint, &[], &[v])
    }

    /// An f32 constant of any shape, cached.
    pub fn floats(&self, hint: &str, dims: &[usize], v: &[f32]) -> String {
        self.cached(Const::F32(dims.to_vec(), v.iter().map(|x| x.to_bits()).collect()), hint)
    }

    /// A weight initializer (never shared).
    pub fn tensor<const D: usize>(&self, name: &str, t: Tensor<D>) -> String {
        let dims = t.dims();
        self.init_f32(name, &dims, crate::to_vec(t))
    }

    /// A parameter's value as a weight initializer (never shared).
    pub fn param<const D: usize>(&self, name: &str, p: &Param<Tensor<D>>) -> String {
        self.tensor(name, p.val())
    }

    /// `x + b` for a bias parameter.
    pub fn bias(&self, x: &str, name: &str, b: &Param<Tensor<1>>) -> String {
        self.op2("Add", x, &self.param(name, b))
    }

    /// `Concat` of `xs` along `axis`.
    pub fn concat(&self, xs: &[&str], axis: i64) -> String {
        self.node("Concat", xs, &[("axis", Attr::Int(axis))])
    }

    /// `Reduce{op}` over constant axes.
    pub fn reduce(&self, op: &str, x: &str, axes: &[i64], keepdims: bool) -> String {
        self.node(&format!("Reduce{op}"), &[x, &self.axes(axes)], &[("keepdims", Attr::Int(keepdims as i64))])
    }

    /// `Unsqueeze` / `Squeeze` at one axis.
    pub fn unsqueeze(&self, x: &str, axis: i64) -> String {
        self.op2("Unsqueeze", x, &self.axes(&[axis]))
    }

    /// `Squeeze` at one axis.
    pub fn squeeze(&self, x: &str, axis: i64) -> String {
        self.op2("Squeeze", x, &self.axes(&[axis]))
    }

    /// `Reshape` to a constant shape (0 = keep, -1 = infer).
    pub fn reshape(&self, x: &str, shape: &[i64]) -> String {
        self.op2("Reshape", x, &self.ints("shape", shape))
    }

    /// `x` as the f32 graph output `name`.
    pub fn output_from(&self, x: &str, name: &str, dims: &[Dim]) {
        self.node_to("Identity", &[x], &[name], &[]);
        self.output(name, Elem::F32, dims);
    }

    /// The finished model with `metadata` as its metadata properties.
    pub fn finish(self, metadata: Vec<(String, String)>) -> ModelProto {
        self.b.into_inner().finish("bioedge-train", metadata)
    }

    // The builder's calls, through the cell.
    /// Declare a graph input; returns its name.
    pub fn input(&self, name: &str, elem: Elem, dims: &[Dim]) -> String {
        self.b.borrow_mut().input(name, elem, dims)
    }
    /// Declare a graph output (produce it with [`Lower::node_to`]).
    pub fn output(&self, name: &str, elem: Elem, dims: &[Dim]) {
        self.b.borrow_mut().output(name, elem, dims)
    }
    /// An f32 initializer of shape `dims` (never shared); returns its unique name.
    pub fn init_f32(&self, name: &str, dims: &[usize], data: Vec<f32>) -> String {
        self.b.borrow_mut().init_f32(name, dims, data)
    }
    /// An i64 initializer of shape `dims` (never shared); returns its unique name.
    pub fn init_i64(&self, name: &str, dims: &[usize], data: Vec<i64>) -> String {
        self.b.borrow_mut().init_i64(name, dims, data)
    }
    /// A node with one output; returns the output name.
    pub fn node(&self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        self.b.borrow_mut().node(op, inputs, attrs)
    }
    /// A node writing to the given output names (for graph outputs).
    pub fn node_to(&self, op: &str, inputs: &[&str], outputs: &[&str], attrs: &[(&str, Attr)]) {
        self.b.borrow_mut().node_to(op, inputs, outputs, attrs)
    }
    /// A node `op(a)` without attributes; returns the output name.
    pub fn op1(&self, op: &str, a: &str) -> String {
        self.b.borrow_mut().op1(op, a)
    }
    /// A node `op(a, b)` without attributes; returns the output name.
    pub fn op2(&self, op: &str, a: &str, b: &str) -> String {
        self.b.borrow_mut().op2(op, a, b)
    }
    /// `Transpose` of `a` with permutation `perm`.
    pub fn transpose(&self, a: &str, perm: &[i64]) -> String {
        self.b.borrow_mut().transpose(a, perm)
    }
}

/// `[rows, cols]` with a symbolic row count.
pub fn dims(rows: &str, cols: usize) -> [Dim; 2] {
    [Dim::from(rows), Dim::from(cols)]
}

/// A fitted network as a classifier holds it (`Box<dyn …>` instead of a `match` over
/// architectures): its ONNX model given `A`, what the export needs beside the weights.
pub trait Exportable<A>: Weights {
    /// The ONNX model for export arguments `args`, with `metadata` as its metadata properties.
    fn to_onnx(&self, args: A, metadata: Vec<(String, String)>) -> ModelProto;
}

/// Weight count and burnpack checkpoint of any module, for trait objects.
pub trait Weights {
    /// Number of scalar weights.
    fn param_count(&self) -> usize;
    /// Save the weights as a burnpack checkpoint at `path`, overwriting it.
    fn save_weights(&self, path: &Path) -> crate::Result<()>;
}

impl<M: Module> Weights for M {
    fn param_count(&self) -> usize {
        self.num_params()
    }

    fn save_weights(&self, path: &Path) -> crate::Result<()> {
        use burn::store::{BurnpackStore, ModuleSnapshot};
        let mut store = BurnpackStore::from_file(path).overwrite(true);
        self.save_into(&mut store).map_err(|e| crate::Error::Store(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_are_shared() {
        let _rng = crate::test_rng();
        let cx = Lower::new("t");
        let a = cx.axes(&[2]);
        assert_eq!(cx.ints("shape", &[2]), a);
        assert_ne!(cx.index(2), a);
        let one = cx.scalar("one", 1.0);
        assert_eq!(cx.scalar("other", 1.0), one);
        assert_ne!(cx.scalar("zero", 0.0), one);
        assert_ne!(cx.floats("one", &[1], &[1.0]), one);
        let g = cx.finish(vec![]).graph.unwrap();
        assert_eq!(g.initializer.len(), 5);
        assert_eq!(g.initializer[0].name.as_deref(), Some(a.as_str()));
    }

    #[test]
    fn exports_are_deterministic() {
        let _rng = crate::test_rng();
        let device = Device::flex();
        let m = crate::gene::GeneMlpConfig { hidden: vec![3], dropout: 0.0 }.init(4, 2, &device);
        let pre = crate::preprocess::Standardizer { log2: true, floor: 1.0, mean: vec![0.0; 4], std: vec![1.0; 4] };
        let a = onnx_format::encode(&m.export(&pre, vec![]));
        assert_eq!(a, onnx_format::encode(&m.export(&pre, vec![])));
    }
}

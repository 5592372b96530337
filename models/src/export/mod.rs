//! The shared ONNX lowering layer. [`Lower`] wraps the graph builder with a cache of small
//! constants; `layers` lowers the burn modules the families share, `graph` the message-passing
//! ops. Each family's `export` mirrors its `forward` with these.

mod graph;
mod layers;

pub use graph::Head;

use burn::module::{Module, Param};
use burn::prelude::*;
use onnx_format::builder::{Attr, Dim, Elem, GraphBuilder};
use onnx_format::pb::ModelProto;
use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::path::Path;

/// A graph being lowered. Derefs to the [`GraphBuilder`]; small constants (axes, shapes,
/// scalars) come from a cache, so one value asked for twice is one initializer. Names are the
/// builder's: the hint and a running count, the same on every export.
pub struct Lower {
    b: GraphBuilder,
    consts: BTreeMap<Const, String>,
}

/// A cached constant: element type, shape and values (f32 as bits).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Const {
    F32(Vec<usize>, Vec<u32>),
    I64(Vec<usize>, Vec<i64>),
}

impl Deref for Lower {
    type Target = GraphBuilder;
    fn deref(&self) -> &GraphBuilder {
        &self.b
    }
}

impl DerefMut for Lower {
    fn deref_mut(&mut self) -> &mut GraphBuilder {
        &mut self.b
    }
}

impl Lower {
    pub fn new(graph: &str) -> Self {
        Self { b: GraphBuilder::new(graph), consts: BTreeMap::new() }
    }

    fn cached(&mut self, key: Const, hint: &str) -> String {
        if let Some(name) = self.consts.get(&key) {
            return name.clone();
        }
        let name = match &key {
            Const::F32(dims, bits) => self.b.init_f32(hint, dims, bits.iter().map(|&v| f32::from_bits(v)).collect()),
            Const::I64(dims, v) => self.b.init_i64(hint, dims, v.clone()),
        };
        self.consts.insert(key, name.clone());
        name
    }

    /// An i64 constant `[v.len()]` (a shape, sizes), cached.
    pub fn ints(&mut self, hint: &str, v: &[i64]) -> String {
        self.cached(Const::I64(vec![v.len()], v.to_vec()), hint)
    }

    /// Axes for Unsqueeze, Squeeze, Reduce*.
    pub fn axes(&mut self, v: &[i64]) -> String {
        self.ints("axes", v)
    }

    /// A rank-0 i64 constant, cached.
    pub fn index(&mut self, v: i64) -> String {
        self.cached(Const::I64(vec![], vec![v]), "index")
    }

    /// A rank-0 f32 constant, cached.
    pub fn scalar(&mut self, hint: &str, v: f32) -> String {
        self.floats(hint, &[], &[v])
    }

    /// An f32 constant of any shape, cached.
    pub fn floats(&mut self, hint: &str, dims: &[usize], v: &[f32]) -> String {
        self.cached(Const::F32(dims.to_vec(), v.iter().map(|x| x.to_bits()).collect()), hint)
    }

    /// A weight initializer (never shared).
    pub fn tensor<const D: usize>(&mut self, name: &str, t: Tensor<D>) -> String {
        let dims = t.dims();
        self.b.init_f32(name, &dims, crate::to_vec(t))
    }

    pub fn param<const D: usize>(&mut self, name: &str, p: &Param<Tensor<D>>) -> String {
        self.tensor(name, p.val())
    }

    /// `x + b` for a bias parameter.
    pub fn bias(&mut self, x: &str, name: &str, b: &Param<Tensor<1>>) -> String {
        let b = self.param(name, b);
        self.op2("Add", x, &b)
    }

    pub fn concat(&mut self, xs: &[&str], axis: i64) -> String {
        self.node("Concat", xs, &[("axis", Attr::Int(axis))])
    }

    /// `x` as the f32 graph output `name`.
    pub fn output_from(&mut self, x: &str, name: &str, dims: &[Dim]) {
        self.b.node_to("Identity", &[x], &[name], &[]);
        self.b.output(name, Elem::F32, dims);
    }

    pub fn finish(self, metadata: Vec<(String, String)>) -> ModelProto {
        self.b.finish("bioedge-train", metadata)
    }
}

/// `[rows, cols]` with a symbolic row count.
pub fn dims(rows: &str, cols: usize) -> [Dim; 2] {
    [Dim::from(rows), Dim::from(cols)]
}

/// A fitted network as a classifier holds it (`Box<dyn …>` instead of a `match` over
/// architectures): its ONNX model given `A`, what the export needs beside the weights.
pub trait Exportable<A>: Weights {
    fn to_onnx(&self, args: A, metadata: Vec<(String, String)>) -> ModelProto;
}

/// Weight count and burnpack checkpoint of any module, for trait objects.
pub trait Weights {
    fn param_count(&self) -> usize;
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
        let mut cx = Lower::new("t");
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
}

//! Graph ops: edge inputs, gathers and scatters by node, segment max / softmax, classifier heads.

use super::{dims, Lower};
use onnx_format::builder::{Attr, Dim, Elem};
use onnx_format::pb::ModelProto;

/// How a classifier turns logits into `probabilities`.
#[derive(Debug, Clone, Copy)]
pub enum Head {
    /// Over the classes (last axis).
    Softmax,
    /// Per task.
    Sigmoid,
}

impl Lower {
    /// Input `name [2, num_edges]` (row 0 = source, row 1 = target) → `(src, dst)`, each `[E]`.
    pub fn edge_index_inputs(&mut self, name: &str) -> (String, String) {
        let ei = self.input(name, Elem::I64, &[Dim::from(2usize), Dim::from("num_edges")]);
        let (i0, i1) = (self.index(0), self.index(1));
        (self.rows(&ei, &i0), self.rows(&ei, &i1))
    }

    /// `x[idx]` along axis 0.
    pub fn rows(&mut self, x: &str, idx: &str) -> String {
        self.node("Gather", &[x, idx], &[("axis", Attr::Int(0))])
    }

    /// The row count of `x`: as a scalar and as a shape `[1]`.
    pub fn num_rows(&mut self, x: &str) -> (String, String) {
        let shape = self.op1("Shape", x);
        let i0 = self.index(0);
        let n = self.rows(&shape, &i0);
        let ax0 = self.axes(&[0]);
        let n_shape = self.op2("Unsqueeze", &n, &ax0);
        (n, n_shape)
    }

    /// `[E]` indices as a column `[E, 1]` (ScatterND's index layout).
    pub fn column(&mut self, idx: &str) -> String {
        let ax1 = self.axes(&[1]);
        self.op2("Unsqueeze", idx, &ax1)
    }

    /// `value` in the runtime `shape`; the f32 value is explicit (tract defaults ConstantOfShape to f64).
    pub fn fill(&mut self, shape: &str, value: f32) -> String {
        self.node("ConstantOfShape", &[shape], &[("value", Attr::ScalarTensor(value))])
    }

    /// Zeros of `shape` with `out[idx[e]] += vals[e]` (ScatterND add; `idx` `[E, 1]`).
    pub fn scatter_add(&mut self, shape: &str, idx: &str, vals: &str) -> String {
        let zeros = self.fill(shape, 0.0);
        self.node("ScatterND", &[&zeros, idx, vals], &[("reduction", Attr::Str("add".into()))])
    }

    /// `out[dst] += w · h[src]`, shaped like `h`; `dst` is `[E, 1]`, `w` broadcasts to the messages.
    pub fn propagate(&mut self, h: &str, src: &str, dst: &str, w: Option<&str>) -> String {
        let mut m = self.rows(h, src);
        if let Some(w) = w {
            m = self.op2("Mul", &m, w);
        }
        let shape = self.op1("Shape", h);
        self.scatter_add(&shape, dst, &m)
    }

    /// `init` with `out[idx[e]] = max(out[idx[e]], vals[e])` (ScatterElements max; `idx` `[E, 1]`).
    pub fn segment_max(&mut self, init: &str, idx: &str, vals: &str) -> String {
        let shape = self.op1("Shape", vals);
        let idx = self.op2("Expand", idx, &shape);
        self.node("ScatterElements", &[init, &idx, vals], &[("axis", Attr::Int(0)), ("reduction", Attr::Str("max".into()))])
    }

    /// Softmax of `score [E, …]` over the edges of each target `dst` (`[E]`, and `[E, 1]` as
    /// `dst_col`); `shape` is the runtime shape of the per-node result. The max is a shift only.
    pub fn segment_softmax(&mut self, score: &str, dst: &str, dst_col: &str, shape: &str) -> String {
        let neg = self.fill(shape, -1e30);
        let max = self.segment_max(&neg, dst_col, score);
        let gmax = self.rows(&max, dst);
        let d = self.op2("Sub", score, &gmax);
        let p = self.op1("Exp", &d);
        let denom = self.scatter_add(shape, dst_col, &p);
        let gden = self.rows(&denom, dst);
        self.op2("Div", &p, &gden)
    }

    /// Outputs `logits` and `probabilities` `[rows, k]`; the finished model.
    pub fn finish_classifier(mut self, logits: &str, rows: &str, k: usize, head: Head, metadata: Vec<(String, String)>) -> ModelProto {
        self.output_from(logits, "logits", &dims(rows, k));
        match head {
            Head::Softmax => self.node_to("Softmax", &[logits], &["probabilities"], &[("axis", Attr::Int(-1))]),
            Head::Sigmoid => self.node_to("Sigmoid", &[logits], &["probabilities"], &[]),
        }
        self.output("probabilities", Elem::F32, &dims(rows, k));
        self.finish(metadata)
    }
}

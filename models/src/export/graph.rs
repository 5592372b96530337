//! Graph ops: edge inputs, gathers and scatters by node, segment max / softmax, classifier heads.

use super::{Lower, dims};
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
    pub fn edge_index_inputs(&self, name: &str) -> (String, String) {
        let ei = self.input(name, Elem::I64, &[Dim::from(2usize), Dim::from("num_edges")]);
        (self.rows(&ei, &self.index(0)), self.rows(&ei, &self.index(1)))
    }

    /// `x[idx]` along axis 0.
    pub fn rows(&self, x: &str, idx: &str) -> String {
        self.node("Gather", &[x, idx], &[("axis", Attr::Int(0))])
    }

    /// The row count of `x`: as a scalar and as a shape `[1]`.
    pub fn num_rows(&self, x: &str) -> (String, String) {
        let n = self.rows(&self.op1("Shape", x), &self.index(0));
        let n_shape = self.unsqueeze(&n, 0);
        (n, n_shape)
    }

    /// `[E]` indices as a column `[E, 1]` (ScatterND's index layout).
    pub fn column(&self, idx: &str) -> String {
        self.unsqueeze(idx, 1)
    }

    /// `value` in the runtime `shape`; the f32 value is explicit (tract defaults ConstantOfShape to f64).
    pub fn fill(&self, shape: &str, value: f32) -> String {
        self.node("ConstantOfShape", &[shape], &[("value", Attr::ScalarTensor(value))])
    }

    /// Zeros of `shape` with `out[idx[e]] += vals[e]` (ScatterND add; `idx` `[E, 1]`).
    pub fn scatter_add(&self, shape: &str, idx: &str, vals: &str) -> String {
        let zeros = self.fill(shape, 0.0);
        self.node("ScatterND", &[&zeros, idx, vals], &[("reduction", Attr::Str("add".into()))])
    }

    /// `out[dst] += w · h[src]`, shaped like `h`; `dst` is `[E, 1]`, `w` broadcasts to the messages.
    pub fn propagate(&self, h: &str, src: &str, dst: &str, w: Option<&str>) -> String {
        let mut m = self.rows(h, src);
        if let Some(w) = w {
            m = self.op2("Mul", &m, w);
        }
        self.scatter_add(&self.op1("Shape", h), dst, &m)
    }

    /// `init` with `out[idx[e]] = max(out[idx[e]], vals[e])` (ScatterElements max; `idx` `[E, 1]`).
    pub fn segment_max(&self, init: &str, idx: &str, vals: &str) -> String {
        let idx = self.op2("Expand", idx, &self.op1("Shape", vals));
        self.node("ScatterElements", &[init, &idx, vals], &[("axis", Attr::Int(0)), ("reduction", Attr::Str("max".into()))])
    }

    /// Softmax of `score [E, …]` over the edges of each target `dst` (`[E]`, and `[E, 1]` as
    /// `dst_col`); `shape` is the runtime shape of the per-node result. The max is a shift only.
    pub fn segment_softmax(&self, score: &str, dst: &str, dst_col: &str, shape: &str) -> String {
        let max = self.segment_max(&self.fill(shape, -1e30), dst_col, score);
        let p = self.op1("Exp", &self.op2("Sub", score, &self.rows(&max, dst)));
        let denom = self.scatter_add(shape, dst_col, &p);
        self.op2("Div", &p, &self.rows(&denom, dst))
    }

    /// Outputs `logits` and `probabilities` `[rows, k]`; the finished model.
    pub fn finish_classifier(self, logits: &str, rows: &str, k: usize, head: Head, metadata: Vec<(String, String)>) -> ModelProto {
        self.output_from(logits, "logits", &dims(rows, k));
        match head {
            Head::Softmax => self.node_to("Softmax", &[logits], &["probabilities"], &[("axis", Attr::Int(-1))]),
            Head::Sigmoid => self.node_to("Sigmoid", &[logits], &["probabilities"], &[]),
        }
        self.output("probabilities", Elem::F32, &dims(rows, k));
        self.finish(metadata)
    }
}

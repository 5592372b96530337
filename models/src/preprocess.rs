//! Expression preprocessing that is part of every exported expression model:
//! optional `log2(max(x, floor))`, then per-gene standardization with training statistics.
//! Missing values (NaN, used by `infer` for genes absent from the input) become 0 = the training mean.

use crate::export::Lower;
use serde::{Deserialize, Serialize};

/// Per-gene standardization with training statistics, optionally after `log2`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Standardizer {
    /// Apply `log2(max(x, floor))` first.
    pub log2: bool,
    /// Lower clamp before `log2`, so zeros stay finite.
    pub floor: f32,
    /// Per-gene training mean (after `log2` when set), length = genes.
    pub mean: Vec<f32>,
    /// Per-gene training standard deviation (1 for constant genes), length = genes.
    pub std: Vec<f32>,
}

impl Standardizer {
    /// Fit on rows of `values` (`rows × genes`, row-major) selected by `rows`.
    pub fn fit(values: &[f32], genes: usize, rows: &[usize], log2: bool) -> Self {
        let mut s = Standardizer { log2, floor: 1.0, mean: vec![0.0; genes], std: vec![1.0; genes] };
        let n = rows.len().max(1) as f64;
        for g in 0..genes {
            let col: Vec<f64> = rows.iter().map(|&r| s.transform(values[r * genes + g]) as f64).collect();
            let mean = col.iter().sum::<f64>() / n;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            s.mean[g] = mean as f32;
            // genes constant in training get unit scale (they carry no signal but must not blow up)
            s.std[g] = if var.sqrt() > 1e-6 { var.sqrt() as f32 } else { 1.0 };
        }
        s
    }

    fn transform(&self, v: f32) -> f32 {
        if self.log2 { v.max(self.floor).log2() } else { v }
    }

    /// Apply to a `rows × genes` matrix.
    pub fn apply(&self, values: &[f32]) -> Vec<f32> {
        let genes = self.mean.len();
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if v.is_nan() {
                    0.0
                } else {
                    let g = i % genes;
                    (self.transform(v) - self.mean[g]) / self.std[g]
                }
            })
            .collect()
    }

    /// The same computation as ONNX nodes on `x [batch, genes]`; returns the output name.
    pub fn export(&self, b: &Lower, x: &str) -> String {
        let genes = self.mean.len();
        let mut y = x.to_string();
        if self.log2 {
            let floor = b.scalar("floor", self.floor);
            let m = b.op2("Max", &y, &floor);
            let l = b.op1("Log", &m);
            let k = b.scalar("inv_ln2", std::f32::consts::LOG2_E);
            y = b.op2("Mul", &l, &k);
        }
        let mean = b.init_f32("gene_mean", &[genes], self.mean.clone());
        let std = b.init_f32("gene_std", &[genes], self.std.clone());
        let c = b.op2("Sub", &y, &mean);
        let z = b.op2("Div", &c, &std);
        let nan = b.op1("IsNaN", x);
        let zero = b.scalar("zero", 0.0);
        b.node("Where", &[&nan, &zero, &z], &[])
    }

    /// `l(standardized x)` as ONNX nodes on `x [batch, genes]` with the standardization folded into
    /// `l`'s weights: `Log(Max(x, floor))` (or `x`) times `W · (1/ln 2) / gene_std`, plus
    /// `b − Σ_g (gene_mean / gene_std) · W_g`; a missing gene (NaN) reads `gene_mean · ln 2`, which the
    /// folded weights map to 0, the training mean. tract 0.23 ran the per-gene Sub and Div
    /// (`[batch, 2000]` against `[2000]`) element by element: 47 % of the gene MLP's time (decisions §4).
    pub fn export_linear(&self, b: &Lower, x: &str, name: &str, l: &burn::nn::Linear) -> String {
        let genes = self.mean.len();
        let [d_in, d_out] = l.weight.dims();
        assert_eq!(d_in, genes, "the first layer takes one input per gene");
        let w = crate::to_vec(l.weight.val());
        let bias = l.bias.as_ref().map_or_else(|| vec![0.0; d_out], |p| crate::to_vec(p.val()));
        let per_unit = if self.log2 { std::f64::consts::LOG2_E } else { 1.0 };
        let mut folded = vec![0f32; genes * d_out];
        let mut shift: Vec<f64> = bias.iter().map(|&v| v as f64).collect();
        for g in 0..genes {
            let (scale, centre) = (per_unit / self.std[g] as f64, self.mean[g] as f64 / self.std[g] as f64);
            for o in 0..d_out {
                let wg = w[g * d_out + o] as f64;
                folded[g * d_out + o] = (wg * scale) as f32;
                shift[o] -= centre * wg;
            }
        }
        let y = if self.log2 { b.op1("Log", &b.op2("Max", x, &b.scalar("floor", self.floor))) } else { x.to_string() };
        let fill: Vec<f32> = self.mean.iter().map(|&m| (m as f64 / per_unit) as f32).collect();
        let y = b.node("Where", &[&b.op1("IsNaN", x), &b.init_f32("gene_fill", &[genes], fill), &y], &[]);
        let y = b.op2("MatMul", &y, &b.init_f32(&format!("{name}.weight"), &[genes, d_out], folded));
        b.op2("Add", &y, &b.init_f32(&format!("{name}.bias"), &[d_out], shift.into_iter().map(|v| v as f32).collect()))
    }

    /// The model card's preprocessing.
    pub fn describe(&self) -> onnx_format::card::Expression {
        onnx_format::card::Expression {
            log2: self.log2,
            floor: self.floor,
            steps: if self.log2 {
                "log2(max(x, floor)), then (x - gene_mean) / gene_std; inside the ONNX graph (an MLP folds it into its first layer)"
            } else {
                "(x - gene_mean) / gene_std; inside the ONNX graph (an MLP folds it into its first layer)"
            }
            .into(),
            missing_genes: "pass NaN: the model imputes the training mean (0 after standardization)".into(),
            input_units: "expression as in the training file (e.g. microarray intensity or counts), not log-transformed when log2 is true"
                .into(),
        }
    }
}

//! Lowerers for the burn layers the families share.

use super::Lower;
use burn::module::{Content, DisplaySettings, ModuleDisplay};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Embedding, LayerNorm, Linear, PaddingConfig2d};
use onnx_format::builder::Attr;

impl Lower {
    /// `x @ W (+ b)`; burn stores `W` as `[in, out]`.
    pub fn linear(&self, x: &str, name: &str, l: &Linear) -> String {
        let y = self.op2("MatMul", x, &self.param(&format!("{name}.weight"), &l.weight));
        match &l.bias {
            Some(b) => self.bias(&y, &format!("{name}.bias"), b),
            None => y,
        }
    }

    /// `LayerNormalization` over the last axis, with the module's epsilon.
    pub fn layer_norm(&self, x: &str, name: &str, ln: &LayerNorm) -> String {
        let g = self.param(&format!("{name}.gamma"), &ln.gamma);
        let beta = match &ln.beta {
            Some(p) => self.param(&format!("{name}.beta"), p),
            None => self.tensor(&format!("{name}.beta"), ln.gamma.val().zeros_like()),
        };
        let eps = Attr::Float(ln_epsilon(ln) as f32);
        self.node("LayerNormalization", &[x, &g, &beta], &[("axis", Attr::Int(-1)), ("epsilon", eps)])
    }

    /// Inference batch norm folded to `x · scale + shift`.
    pub fn batch_norm(&self, x: &str, name: &str, n: &BatchNorm) -> String {
        let (gamma, beta) = (crate::to_vec(n.gamma.val()), crate::to_vec(n.beta.val()));
        let (mean, var) = (crate::to_vec(n.running_mean.value()), crate::to_vec(n.running_var.value()));
        let scale: Vec<f32> = gamma.iter().zip(&var).map(|(g, v)| g / (v + n.epsilon as f32).sqrt()).collect();
        let shift: Vec<f32> = beta.iter().zip(&mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
        let s = self.init_f32(&format!("{name}.scale"), &[scale.len()], scale);
        let t = self.init_f32(&format!("{name}.shift"), &[shift.len()], shift);
        self.op2("Add", &self.op2("Mul", x, &s), &t)
    }

    /// ONNX `Conv` (weights `[out, in, kh, kw]` in both).
    pub fn conv2d(&self, x: &str, name: &str, c: &Conv2d) -> String {
        let mut inputs = vec![x.to_string(), self.param(&format!("{name}.weight"), &c.weight)];
        if let Some(bias) = &c.bias {
            inputs.push(self.param(&format!("{name}.bias"), bias));
        }
        self.conv_node(&inputs, c)
    }

    /// `Conv` then a LayerNorm over its output channels, `[B, C, H, W]` in and out: burn's
    /// `norm(conv(x).permute([0, 2, 3, 1])).permute([0, 3, 1, 2])`, written so that tract runs
    /// every step on its fast paths (decisions §4). tract moves the two transposes of the plain
    /// form off the LayerNorm, which leaves subtractions and products that broadcast over the
    /// channel axis, a middle axis it walks element by element (56 % of the two-scale spot
    /// model's time). Here:
    /// - the mean is folded into the convolution: its weights and bias minus their mean over
    ///   the output channels give outputs already centred over the channels (the mean is linear;
    ///   the subtraction is a graph op on constants, folded by the runtimes at load);
    /// - `1/√(mean(x²) + ε)` per pixel, `[B, 1, H, W]`, is spread over the channels by a `Gather`
    ///   of row 0 (tract removes an `Expand` or `Tile` and broadcasts again);
    /// - gamma and beta are tiled to `[1, C, H, W]` (constants once the plan knows H and W), so the
    ///   products and the sum are same-shape or leading-axis broadcasts.
    pub fn conv_channel_norm(&self, x: &str, name: &str, c: &Conv2d, ln: &LayerNorm) -> String {
        let co = c.weight.val().dims()[0];
        // W − mean over the output channels, as graph ops on the stored weights (the runtimes fold
        // them at load; the file keeps the trained values, which `train --init` reads back)
        let centred = |p: String| self.op2("Sub", &p, &self.reduce("Mean", &p, &[0], true));
        let mut inputs = vec![x.to_string(), centred(self.param(&format!("{name}.weight"), &c.weight))];
        if let Some(bias) = &c.bias {
            inputs.push(centred(self.param(&format!("{name}.bias"), bias)));
        }
        let y = self.conv_node(&inputs, c);
        let ms = self.reduce("Mean", &self.op2("Mul", &y, &y), &[1], true);
        let eps = self.scalar("ln_eps", ln_epsilon(ln) as f32);
        let inv = self.op1("Reciprocal", &self.op1("Sqrt", &self.op2("Add", &ms, &eps)));
        let inv = self.node("Gather", &[&inv, &self.ints("zeros", &vec![0; co])], &[("axis", Attr::Int(1))]);
        let y = self.op2("Mul", &y, &inv);
        // [1, 1, H, W]: the tiling of gamma and beta over the feature map
        let hw = self.node("Slice", &[&self.op1("Shape", &y), &self.ints("from", &[2]), &self.ints("to", &[4])], &[]);
        let reps = self.concat(&[&self.ints("ones", &[1, 1]), &hw], 0);
        let tiled = |p: String| self.op2("Tile", &self.reshape(&p, &[1, co as i64, 1, 1]), &reps);
        let g = tiled(self.param(&format!("{name}.norm.gamma"), &ln.gamma));
        let y = self.op2("Mul", &y, &g);
        match &ln.beta {
            Some(b) => self.op2("Add", &y, &tiled(self.param(&format!("{name}.norm.beta"), b))),
            None => y,
        }
    }

    fn conv_node(&self, inputs: &[String], c: &Conv2d) -> String {
        let pads = match c.padding {
            PaddingConfig2d::Explicit(t, l, b, r) => vec![t as i64, l as i64, b as i64, r as i64],
            PaddingConfig2d::Valid => vec![0; 4],
            PaddingConfig2d::Same => panic!("conv2d export: use explicit padding"),
        };
        let refs: Vec<&str> = inputs.iter().map(|s| s.as_str()).collect();
        let ints = |v: [usize; 2]| Attr::Ints(v.iter().map(|&x| x as i64).collect());
        let attrs = [
            ("kernel_shape", ints(c.kernel_size)),
            ("strides", ints(c.stride)),
            ("dilations", ints(c.dilation)),
            ("group", Attr::Int(c.groups as i64)),
            ("pads", Attr::Ints(pads)),
        ];
        self.node("Conv", &refs, &attrs)
    }

    /// Exact GELU: `0.5·x·(1 + erf(x/√2))`.
    pub fn gelu(&self, x: &str) -> String {
        let e = self.op1("Erf", &self.op2("Div", x, &self.scalar("sqrt2", std::f32::consts::SQRT_2)));
        let e = self.op2("Add", &e, &self.scalar("one", 1.0));
        self.op2("Mul", &self.op2("Mul", x, &e), &self.scalar("half", 0.5))
    }

    /// Rows of the embedding table at `ids`, written to `out`.
    pub fn embedding(&self, ids: &str, name: &str, e: &Embedding, out: &str) -> String {
        let table = self.param(name, &e.weight);
        self.node_to("Gather", &[&table, ids], &[out], &[("axis", Attr::Int(0))]);
        out.to_string()
    }
}

/// A LayerNorm's epsilon (a private field in burn, shown by its module display).
pub fn ln_epsilon(ln: &LayerNorm) -> f64 {
    ln.custom_content(Content::new(DisplaySettings::new()))
        .and_then(|c| c.attributes.into_iter().find(|a| a.name == "epsilon"))
        .and_then(|a| a.value.parse().ok())
        .expect("LayerNorm displays its epsilon")
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LayerNormConfig;
    use burn::prelude::*;

    #[test]
    fn layer_norm_reads_the_module_epsilon() {
        let _rng = crate::test_rng();
        let device = Device::flex();
        for eps in [1e-5, 1e-3, 1.5e-7] {
            assert_eq!(ln_epsilon(&LayerNormConfig::new(4).with_epsilon(eps).init(&device)), eps);
        }
    }
}

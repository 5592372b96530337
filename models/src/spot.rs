//! TCGN-style histology model (Xiao et al. 2024): one H&E spot image `[B, 3, S, S]` (already
//! normalized) → a convolutional stem → patch tokens + position embedding → a graph block (each
//! token linked to its k most similar tokens by cosine similarity, fixed k) → pre-LN transformer
//! encoder blocks → mean pool → LayerNorm → linear head to the genes. The ONNX export (opset 18,
//! symbolic `batch`) is written out beside the forward.

use crate::export::{Lower, dims};
use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{gelu, softmax};
use onnx_format::builder::{Attr, Dim, Elem};
use onnx_format::pb::ModelProto;
use serde::{Deserialize, Serialize};

/// Epsilon of every LayerNorm (burn's default; the export reads each module's own).
pub const LN_EPS: f64 = 1e-5;
/// Floor of the token norm in the cosine similarity.
pub const NORM_EPS: f32 = 1e-6;
/// Name of the exported input.
pub const INPUT: &str = "image";
/// Name of the exported output (`[batch, num_genes]`).
pub const OUTPUT: &str = "expression";

/// Settings of the TCGN-style spot model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SpotModelConfig {
    /// Input side in pixels (square images).
    pub image_size: usize,
    /// Output channels of the stem's 3×3 stride-2 convolutions (each halves the side).
    pub stem_channels: Vec<usize>,
    /// Total downsampling from image to token grid (stem strides × patch conv stride).
    pub patch: usize,
    /// Token width `D`.
    pub dim: usize,
    /// Number of transformer encoder blocks.
    pub depth: usize,
    /// Attention heads per encoder block (must divide `dim`).
    pub heads: usize,
    /// Hidden width of each block's MLP as a multiple of `dim`.
    pub mlp_ratio: usize,
    /// Neighbours per token in the graph block (the token itself is usually among them); 0
    /// leaves the graph block out.
    pub knn_k: usize,
    /// Genes predicted (outputs of the linear head).
    pub num_genes: usize,
}

impl SpotModelConfig {
    /// CPU-trainable: 2 stem convs (16, 32), 14×14 tokens of width 64, 2 blocks of 4 heads.
    pub fn small() -> Self {
        Self {
            image_size: 224,
            stem_channels: vec![16, 32],
            patch: 16,
            dim: 64,
            depth: 2,
            heads: 4,
            mlp_ratio: 2,
            knn_k: 8,
            num_genes: 250,
        }
    }

    /// GPU configuration: 3 stem convs (32, 64, 128), width 256, 6 blocks of 8 heads.
    pub fn large() -> Self {
        Self {
            image_size: 224,
            stem_channels: vec![32, 64, 128],
            patch: 16,
            dim: 256,
            depth: 6,
            heads: 8,
            mlp_ratio: 4,
            knn_k: 8,
            num_genes: 785,
        }
    }

    /// ST-Net-like plain CNN baseline (CPU): 4 stride-2 convs (16, 32, 64, 128), a 1×1 conv to
    /// width 128, mean pool, linear head; no token graph (`knn_k` 0) and no attention (`depth` 0).
    pub fn cnn() -> Self {
        Self {
            image_size: 224,
            stem_channels: vec![16, 32, 64, 128],
            patch: 16,
            dim: 128,
            depth: 0,
            heads: 1,
            mlp_ratio: 1,
            knn_k: 0,
            num_genes: 250,
        }
    }

    /// A few-thousand-parameter model on 32 px images, for tests.
    pub fn tiny() -> Self {
        Self { image_size: 32, stem_channels: vec![8], patch: 4, dim: 16, depth: 1, heads: 2, mlp_ratio: 2, knn_k: 4, num_genes: 5 }
    }

    /// The same configuration predicting `num_genes` genes.
    pub fn with_genes(mut self, num_genes: usize) -> Self {
        self.num_genes = num_genes;
        self
    }

    /// Side of the token grid.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch
    }

    /// Number of tokens `T` (grid side squared).
    pub fn tokens(&self) -> usize {
        self.grid() * self.grid()
    }

    /// Kernel (= stride) of the patch convolution after the stem.
    fn patch_kernel(&self) -> usize {
        self.patch >> self.stem_channels.len()
    }

    /// Check that the sizes fit together (patch, stem stride, heads, `knn_k`, positive counts).
    pub fn validate(&self) -> crate::Result<()> {
        let err = |m: String| Err(crate::Error::Input(m));
        let stem_stride = 1usize << self.stem_channels.len();
        if self.patch == 0 || !self.image_size.is_multiple_of(self.patch) {
            return err(format!("image size {} is not a multiple of patch {}", self.image_size, self.patch));
        }
        if !self.patch.is_multiple_of(stem_stride) || self.patch < stem_stride {
            return err(format!("patch {} is not a multiple of the stem stride {stem_stride}", self.patch));
        }
        if self.heads == 0 || !self.dim.is_multiple_of(self.heads) {
            return err(format!("dim {} is not a multiple of heads {}", self.dim, self.heads));
        }
        if self.knn_k > self.tokens() {
            return err(format!("knn_k {} must be in 0..={} tokens (0: no graph block)", self.knn_k, self.tokens()));
        }
        if self.num_genes == 0 || self.mlp_ratio == 0 {
            return err("num_genes and mlp_ratio must be positive".into());
        }
        Ok(())
    }

    /// A randomly initialized model; panics on an invalid config (see [`Self::validate`]).
    pub fn init(&self, device: &Device) -> SpotModel {
        self.validate().expect("invalid SpotModelConfig");
        let ln = |d: usize| LayerNormConfig::new(d).with_epsilon(LN_EPS).init(device);
        let mut stem = Vec::new();
        let mut c_in = 3;
        for &c in &self.stem_channels {
            stem.push(StemConv {
                conv: Conv2dConfig::new([c_in, c], [3, 3])
                    .with_stride([2, 2])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device),
                norm: ln(c),
            });
            c_in = c;
        }
        let pk = self.patch_kernel();
        let d = self.dim;
        let hidden = d * self.mlp_ratio;
        SpotModel {
            stem,
            patch: Conv2dConfig::new([c_in, d], [pk, pk]).with_stride([pk, pk]).init(device),
            pos: Initializer::Normal { mean: 0.0, std: 0.02 }.init([1, self.tokens(), d], device),
            graph: GraphBlock { norm: ln(d), linear: LinearConfig::new(d, d).init(device), k: self.knn_k },
            blocks: (0..self.depth)
                .map(|_| EncoderBlock {
                    norm1: ln(d),
                    q: LinearConfig::new(d, d).init(device),
                    k: LinearConfig::new(d, d).init(device),
                    v: LinearConfig::new(d, d).init(device),
                    proj: LinearConfig::new(d, d).init(device),
                    norm2: ln(d),
                    fc1: LinearConfig::new(d, hidden).init(device),
                    fc2: LinearConfig::new(hidden, d).init(device),
                    heads: self.heads,
                })
                .collect(),
            norm: ln(d),
            head: LinearConfig::new(d, self.num_genes).init(device),
            image_size: self.image_size,
        }
    }
}

/// 3×3 stride-2 conv → LayerNorm over channels → GELU.
#[derive(Module, Debug)]
pub struct StemConv {
    /// 3×3 stride-2 convolution with padding 1.
    pub conv: Conv2d,
    /// LayerNorm over the output channels.
    pub norm: LayerNorm,
}

/// Mean of each token's k most similar tokens (cosine), through a Linear, added back.
#[derive(Module, Debug)]
pub struct GraphBlock {
    /// LayerNorm before the neighbour search and the mean.
    pub norm: LayerNorm,
    /// `D → D` projection of the neighbour mean.
    pub linear: Linear,
    k: usize,
}

/// Pre-LN transformer block: multi-head self-attention, then a GELU MLP.
#[derive(Module, Debug)]
pub struct EncoderBlock {
    /// LayerNorm before attention.
    pub norm1: LayerNorm,
    /// Query projection `D → D`.
    pub q: Linear,
    /// Key projection `D → D`.
    pub k: Linear,
    /// Value projection `D → D`.
    pub v: Linear,
    /// Attention output projection `D → D`.
    pub proj: Linear,
    /// LayerNorm before the MLP.
    pub norm2: LayerNorm,
    /// MLP expansion `D → D·mlp_ratio`.
    pub fc1: Linear,
    /// MLP projection `D·mlp_ratio → D`.
    pub fc2: Linear,
    heads: usize,
}

/// The TCGN-style spot model: an H&E spot image → predicted expression of each gene.
#[derive(Module, Debug)]
pub struct SpotModel {
    /// Convolutional stem, each halving the image side.
    pub stem: Vec<StemConv>,
    /// Patch convolution (kernel = stride) to the `D`-channel token grid.
    pub patch: Conv2d,
    /// `[1, T, D]` learned position embedding.
    pub pos: Param<Tensor<3>>,
    /// The k-nearest-neighbour graph block.
    pub graph: GraphBlock,
    /// Pre-LN transformer encoder blocks.
    pub blocks: Vec<EncoderBlock>,
    /// LayerNorm after mean pooling.
    pub norm: LayerNorm,
    /// Linear head `D → num_genes`.
    pub head: Linear,
    image_size: usize,
}

impl StemConv {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.conv.forward(x);
        gelu(self.norm.forward(y.permute([0, 2, 3, 1])).permute([0, 3, 1, 2]))
    }

    fn export(&self, cx: &Lower, x: &str, name: &str) -> String {
        let y = cx.transpose(&cx.conv2d(x, name, &self.conv), &[0, 2, 3, 1]);
        let y = cx.layer_norm(&y, &format!("{name}.norm"), &self.norm);
        cx.gelu(&cx.transpose(&y, &[0, 3, 1, 2]))
    }
}

impl GraphBlock {
    /// Indices `[B, T, k]` of each token's k most similar tokens.
    pub fn neighbours(&self, h: Tensor<3>) -> Tensor<3, Int> {
        let norm = h.clone().powf_scalar(2.0).sum_dim(2).sqrt().clamp_min(NORM_EPS);
        let hn = h / norm;
        let sim = hn.clone().matmul(hn.swap_dims(1, 2));
        sim.topk_with_indices(self.k, 2).1
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let h = self.norm.forward(x.clone());
        let idx = self.neighbours(h.clone().detach());
        let idx = idx.reshape([b, t * self.k, 1]).expand([b, t * self.k, d]);
        let nb = h.gather(1, idx).reshape([b, t, self.k, d]).mean_dim(2).reshape([b, t, d]);
        x + self.linear.forward(nb)
    }

    fn export(&self, cx: &Lower, x: &str, t: usize, d: usize, name: &str) -> String {
        let (k, t, d) = (self.k as i64, t as i64, d as i64);
        let h = cx.layer_norm(x, &format!("{name}.norm"), &self.norm);
        // neighbours: TopK of the cosine similarity
        let norm = cx.op1("Sqrt", &cx.reduce("Sum", &cx.op2("Mul", &h, &h), &[2], true));
        let hn = cx.op2("Div", &h, &cx.op2("Max", &norm, &cx.scalar("norm_eps", NORM_EPS)));
        let sim = cx.op2("MatMul", &hn, &cx.transpose(&hn, &[0, 2, 1]));
        let (vals, idx) = (format!("{name}.topk_values"), format!("{name}.topk_indices"));
        cx.node_to(
            "TopK",
            &[&sim, &cx.ints("knn_k", &[k])],
            &[&vals, &idx],
            &[("axis", Attr::Int(-1)), ("largest", Attr::Int(1)), ("sorted", Attr::Int(1))],
        );
        let idx = cx.op2("Expand", &cx.reshape(&idx, &[0, -1, 1]), &cx.ints("knn_expand", &[1, 1, d]));
        let nb = cx.reshape(&cx.node("GatherElements", &[&h, &idx], &[("axis", Attr::Int(1))]), &[0, t, k, d]);
        let nb = cx.reduce("Mean", &nb, &[2], false);
        cx.op2("Add", x, &cx.linear(&nb, &format!("{name}.linear"), &self.linear))
    }
}

impl EncoderBlock {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let (nh, dh) = (self.heads, d / self.heads);
        let h = self.norm1.forward(x.clone());
        let split = |y: Tensor<3>| y.reshape([b, t, nh, dh]).swap_dims(1, 2);
        let q = split(self.q.forward(h.clone()));
        let k = split(self.k.forward(h.clone())).swap_dims(2, 3);
        let v = split(self.v.forward(h));
        let att = softmax(q.matmul(k).mul_scalar(attn_scale(dh)), 3);
        let o = att.matmul(v).swap_dims(1, 2).reshape([b, t, d]);
        let x = x + self.proj.forward(o);
        let m = self.fc2.forward(gelu(self.fc1.forward(self.norm2.forward(x.clone()))));
        x + m
    }

    fn export(&self, cx: &Lower, x: &str, d: usize, name: &str) -> String {
        let (nh, dh) = (self.heads as i64, (d / self.heads) as i64);
        let h = cx.layer_norm(x, &format!("{name}.norm1"), &self.norm1);
        let split = |l: &Linear, which: &str, perm: &[i64]| {
            let y = cx.reshape(&cx.linear(&h, &format!("{name}.{which}"), l), &[0, 0, nh, dh]);
            cx.transpose(&y, perm)
        };
        let q = split(&self.q, "q", &[0, 2, 1, 3]);
        let k = split(&self.k, "k", &[0, 2, 3, 1]);
        let v = split(&self.v, "v", &[0, 2, 1, 3]);
        let s = cx.op2("Mul", &cx.op2("MatMul", &q, &k), &cx.scalar("attn_scale", attn_scale(dh as usize)));
        let att = cx.node("Softmax", &[&s], &[("axis", Attr::Int(-1))]);
        let o = cx.reshape(&cx.transpose(&cx.op2("MatMul", &att, &v), &[0, 2, 1, 3]), &[0, 0, d as i64]);
        let x = cx.op2("Add", x, &cx.linear(&o, &format!("{name}.proj"), &self.proj));
        let m = cx.linear(&cx.layer_norm(&x, &format!("{name}.norm2"), &self.norm2), &format!("{name}.fc1"), &self.fc1);
        let m = cx.linear(&cx.gelu(&m), &format!("{name}.fc2"), &self.fc2);
        cx.op2("Add", &x, &m)
    }
}

fn attn_scale(dh: usize) -> f32 {
    1.0 / (dh as f32).sqrt()
}

impl SpotModel {
    /// Normalized images `[B, 3, S, S]` → expression `[B, num_genes]`.
    pub fn forward(&self, image: Tensor<4>) -> Tensor<2> {
        let h = self.tokens(image);
        let [b, _, d] = h.dims();
        let pooled = h.mean_dim(1).reshape([b, d]);
        self.head.forward(self.norm.forward(pooled))
    }

    /// Token features `[B, T, D]` after the last encoder block.
    pub fn tokens(&self, image: Tensor<4>) -> Tensor<3> {
        let mut x = image;
        for s in &self.stem {
            x = s.forward(x);
        }
        let x = self.patch.forward(x);
        let [b, d, gh, gw] = x.dims();
        let mut h = x.reshape([b, d, gh * gw]).swap_dims(1, 2) + self.pos.val();
        if self.graph.k > 0 {
            h = self.graph.forward(h);
        }
        for blk in &self.blocks {
            h = blk.forward(h);
        }
        h
    }

    /// Input image side `S` in pixels.
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// Number of predicted genes.
    pub fn num_genes(&self) -> usize {
        self.head.weight.dims()[1]
    }

    /// The ONNX graph of [`Self::forward`]: input `image [batch, 3, S, S]`, output
    /// `expression [batch, num_genes]`, opset 18.
    pub fn export(&self, metadata: Vec<(String, String)>) -> ModelProto {
        let cx = Lower::new("spot_tcgn");
        let x = export_input(&cx, self.image_size);
        let y = self.export_into(&cx, &x, "");
        cx.output_from(&y, OUTPUT, &dims("batch", self.num_genes()));
        cx.finish(metadata)
    }

    /// Lowers [`Self::forward`] on `x` (`[N, 3, S, S]`) into `cx` and returns the name of its
    /// `[N, num_genes]` result. Weight and fixed output names start with `prefix`, so several
    /// models can share one graph (constants are shared through `cx`'s cache).
    pub fn export_into(&self, cx: &Lower, x: &str, prefix: &str) -> String {
        let mut x = x.to_string();
        for (i, st) in self.stem.iter().enumerate() {
            x = st.export(cx, &x, &format!("{prefix}stem{i}"));
        }
        let [_, t, d] = self.pos.dims();
        let x = cx.reshape(&cx.conv2d(&x, &format!("{prefix}patch"), &self.patch), &[0, d as i64, -1]);
        let mut h = cx.op2("Add", &cx.transpose(&x, &[0, 2, 1]), &cx.param(&format!("{prefix}pos"), &self.pos));
        if self.graph.k > 0 {
            h = self.graph.export(cx, &h, t, d, &format!("{prefix}graph"));
        }
        for (i, blk) in self.blocks.iter().enumerate() {
            h = blk.export(cx, &h, d, &format!("{prefix}block{i}"));
        }
        let pooled = cx.layer_norm(&cx.reduce("Mean", &h, &[1], false), &format!("{prefix}norm"), &self.norm);
        cx.linear(&pooled, &format!("{prefix}head"), &self.head)
    }

    /// Stem and patch conv output `[B, D, grid, grid]`, before the position embedding (what a
    /// pretrained encoder loaded by `spot_init` computes).
    pub fn stem_features(&self, image: Tensor<4>) -> Tensor<4> {
        let x = self.stem.iter().fold(image, |x, s| s.forward(x));
        self.patch.forward(x)
    }
}

/// Declares the graph input `image [batch, 3, S, S]` in `cx`; returns its name.
pub fn export_input(cx: &Lower, image_size: usize) -> String {
    let s = image_size;
    cx.input(INPUT, Elem::F32, &[Dim::from("batch"), Dim::from(3usize), Dim::from(s), Dim::from(s)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::{AdamConfig, GradientsParams};

    fn tiny() -> SpotModelConfig {
        SpotModelConfig::tiny()
    }

    fn random(shape: [usize; 4], device: &Device) -> Tensor<4> {
        Tensor::random(shape, burn::tensor::Distribution::Normal(0.0, 1.0), device)
    }

    #[test]
    fn spot_shapes_and_dynamic_batch() {
        let _rng = crate::test_rng();
        let device = Device::flex();
        device.seed(1);
        let cfg = SpotModelConfig::small().with_genes(7);
        let m = cfg.init(&device);
        let x = random([3, 3, 224, 224], &device);
        let y = m.forward(x.clone());
        assert_eq!(y.dims(), [3, 7]);
        // each row is independent of the others in the batch
        let y1 = m.forward(x.clone().narrow(0, 1, 1));
        let a = crate::to_vec(y.narrow(0, 1, 1));
        let b = crate::to_vec(y1);
        let diff = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max);
        assert!(diff < 1e-4, "batch row differs by {diff}");
        assert_eq!(m.tokens(x).dims(), [3, 196, 64]);
        assert!(SpotModelConfig::large().validate().is_ok());
        assert!(SpotModelConfig { heads: 5, ..cfg.clone() }.validate().is_err());
        assert!(SpotModelConfig { patch: 2, ..cfg }.validate().is_err());
    }

    #[test]
    fn spot_export_uses_opset18_ops_only() {
        let _rng = crate::test_rng();
        let device = Device::flex();
        device.seed(2);
        let m = tiny().init(&device);
        let p = m.export(vec![]);
        let g = p.graph.as_ref().unwrap();
        let ops: std::collections::BTreeSet<String> = g.node.iter().map(|n| n.op_type.clone().unwrap()).collect();
        for op in &ops {
            assert!(
                [
                    "Conv",
                    "Transpose",
                    "LayerNormalization",
                    "Div",
                    "Erf",
                    "Add",
                    "Mul",
                    "Reshape",
                    "ReduceSum",
                    "Sqrt",
                    "Max",
                    "MatMul",
                    "TopK",
                    "Expand",
                    "GatherElements",
                    "ReduceMean",
                    "Softmax",
                    "Identity"
                ]
                .contains(&op.as_str()),
                "unexpected op {op}"
            );
        }
        assert!(ops.contains("TopK") && !ops.contains("NonZero"));
        assert_eq!(g.output[0].name.as_deref(), Some(OUTPUT));
    }

    #[test]
    fn spot_adam_steps_decrease_mse() {
        let _rng = crate::test_rng();
        let device = Device::flex();
        device.seed(4);
        let ad = device.clone().autodiff();
        let cfg = tiny();
        let mut model = cfg.init(&ad);
        let mut optim = AdamConfig::new().init();
        let x = random([4, 3, 32, 32], &ad);
        let target: Tensor<2> = Tensor::random([4, cfg.num_genes], burn::tensor::Distribution::Normal(1.0, 0.5), &ad);
        let mut losses = Vec::new();
        for _ in 0..5 {
            let y = model.forward(x.clone());
            let loss = (y - target.clone()).powf_scalar(2.0).mean();
            losses.push(crate::to_vec(loss.clone())[0]);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-2, model, grads);
        }
        assert!(losses[4] < losses[0], "loss did not decrease: {losses:?}");
        let _ = model.valid();
    }
}

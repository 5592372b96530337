//! TCGN-style histology model (Xiao et al. 2024): one H&E spot image `[B, 3, S, S]` (already
//! normalized) → a convolutional stem → patch tokens + position embedding → a graph block (each
//! token linked to its k most similar tokens by cosine similarity, fixed k) → pre-LN transformer
//! encoder blocks → mean pool → LayerNorm → linear head to the genes. A two-scale variant
//! (`centre` > 0) reads the spot at full resolution from the centre of a wider patch and the whole
//! patch, average-pooled, through a second convolutional branch (neighbourhood context, as TRIPLEX
//! and Hist2ST use); both feed the head. The ONNX export (opset 18, symbolic `batch`) is written
//! out beside the forward.

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
    /// Two-scale model: side of the central crop of the input that the main branch reads at
    /// full resolution, while a context branch reads the whole input average-pooled by
    /// `context_pool`. 0: one branch on the whole input.
    #[serde(default)]
    pub centre: usize,
    /// Average-pooling factor of the context branch's input (used when `centre` > 0).
    #[serde(default)]
    pub context_pool: usize,
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
            centre: 0,
            context_pool: 0,
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
            centre: 0,
            context_pool: 0,
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
            centre: 0,
            context_pool: 0,
        }
    }

    /// Two-scale plain CNN: a 448 px patch spanning twice the spot spacing; the CNN of
    /// [`Self::cnn`] reads its central 224 px (the spot at full resolution) and a second CNN of
    /// the same shape reads the whole patch pooled 4× to 112 px (the spot and its ring of array
    /// neighbours).
    pub fn cnn_context() -> Self {
        Self { image_size: 448, centre: 224, context_pool: 4, ..Self::cnn() }
    }

    /// A few-thousand-parameter model on 32 px images, for tests.
    pub fn tiny() -> Self {
        Self {
            image_size: 32,
            stem_channels: vec![8],
            patch: 4,
            dim: 16,
            depth: 1,
            heads: 2,
            mlp_ratio: 2,
            knn_k: 4,
            num_genes: 5,
            centre: 0,
            context_pool: 0,
        }
    }

    /// The same configuration predicting `num_genes` genes.
    pub fn with_genes(mut self, num_genes: usize) -> Self {
        self.num_genes = num_genes;
        self
    }

    /// Side of the main branch's input: the central crop, or the whole image.
    pub fn main_side(&self) -> usize {
        if self.centre > 0 { self.centre } else { self.image_size }
    }

    /// Patch side in spot spacings when the main branch spans one spacing.
    pub fn patch_span(&self) -> f32 {
        self.image_size as f32 / self.main_side() as f32
    }

    /// Side of the token grid.
    pub fn grid(&self) -> usize {
        self.main_side() / self.patch
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
        if self.patch == 0 || !self.main_side().is_multiple_of(self.patch) {
            return err(format!("input side {} is not a multiple of patch {}", self.main_side(), self.patch));
        }
        if self.centre > 0 {
            let c = self.context_pool;
            if self.centre > self.image_size || !(self.image_size - self.centre).is_multiple_of(2) {
                return err(format!("centre {} must fit in image size {} with even margins", self.centre, self.image_size));
            }
            if c == 0 || !self.image_size.is_multiple_of(c) || !(self.image_size / c).is_multiple_of(self.patch) {
                return err(format!("context pool {c} must divide image size {} into a multiple of patch {}", self.image_size, self.patch));
            }
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
        let stem = |c_in: &mut usize| {
            let mut convs = Vec::new();
            for &c in &self.stem_channels {
                convs.push(StemConv {
                    conv: Conv2dConfig::new([*c_in, c], [3, 3])
                        .with_stride([2, 2])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .init(device),
                    norm: ln(c),
                });
                *c_in = c;
            }
            convs
        };
        let mut c_in = 3;
        let main_stem = stem(&mut c_in);
        let pk = self.patch_kernel();
        let d = self.dim;
        let hidden = d * self.mlp_ratio;
        let context = (self.centre > 0).then(|| {
            let mut c_in = 3;
            ContextBranch {
                stem: stem(&mut c_in),
                patch: Conv2dConfig::new([c_in, d], [pk, pk]).with_stride([pk, pk]).init(device),
                norm: ln(d),
                pool: self.context_pool,
            }
        });
        let features = if context.is_some() { 2 * d } else { d };
        SpotModel {
            stem: main_stem,
            context,
            centre: self.centre,
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
            head: LinearConfig::new(features, self.num_genes).init(device),
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

/// The context branch of the two-scale model: average pooling of the whole patch, a stem and
/// patch conv of the main branch's shape, mean over the grid, LayerNorm.
#[derive(Module, Debug)]
pub struct ContextBranch {
    /// Convolutional stem, each halving the pooled image's side.
    pub stem: Vec<StemConv>,
    /// Patch convolution (kernel = stride) to `D` channels.
    pub patch: Conv2d,
    /// LayerNorm after the mean over the grid.
    pub norm: LayerNorm,
    pool: usize,
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
    /// Linear head `D → num_genes` (`2D` with a context branch).
    pub head: Linear,
    /// Context branch of the two-scale model.
    pub context: Option<ContextBranch>,
    image_size: usize,
    centre: usize,
}

impl ContextBranch {
    /// The whole patch `[B, 3, S, S]` → context features `[B, D]`.
    fn forward(&self, image: Tensor<4>) -> Tensor<2> {
        let k = self.pool;
        let x = burn::tensor::module::avg_pool2d(image, burn::tensor::ops::AvgPoolOptions::new([k, k]));
        let x = self.patch.forward(self.stem.iter().fold(x, |x, s| s.forward(x)));
        let [b, d, gh, gw] = x.dims();
        self.norm.forward(x.reshape([b, d, gh * gw]).mean_dim(2).reshape([b, d]))
    }

    /// `x` is the whole patch `[B, 3, side, side]`.
    fn export(&self, cx: &Lower, x: &str, side: usize, prefix: &str) -> String {
        let mut x = self.export_pool(cx, x, side);
        for (i, st) in self.stem.iter().enumerate() {
            x = st.export(cx, &x, &format!("{prefix}context.stem{i}"));
        }
        let x = cx.reduce("Mean", &cx.conv2d(&x, &format!("{prefix}context.patch"), &self.patch), &[2, 3], false);
        cx.layer_norm(&x, &format!("{prefix}context.norm"), &self.norm)
    }

    /// The k × k average pool (stride k) of `x` `[B, 3, side, side]`: the k rows of each block
    /// summed over a middle axis, then the k columns by a product with `1/k²` (tract ran
    /// AveragePool element by element: 0.59 of 4.30 ms per image, 0.25 ms this way; decisions §4).
    /// A side that k does not divide keeps AveragePool.
    fn export_pool(&self, cx: &Lower, x: &str, side: usize) -> String {
        let k = self.pool;
        if !side.is_multiple_of(k) {
            let k = k as i64;
            return cx.node("AveragePool", &[x], &[("kernel_shape", Attr::Ints(vec![k, k])), ("strides", Attr::Ints(vec![k, k]))]);
        }
        let (g, k, s) = ((side / k) as i64, k as i64, side as i64);
        let rows = cx.reduce("Sum", &cx.reshape(x, &[-1, 3, g, k, s]), &[3], false);
        let avg = cx.floats("context.pool", &[k as usize, 1], &vec![1.0 / (k * k) as f32; k as usize]);
        cx.reshape(&cx.op2("MatMul", &cx.reshape(&rows, &[-1, 3, g, g, k]), &avg), &[-1, 3, g, g])
    }
}

impl StemConv {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.conv.forward(x);
        gelu(self.norm.forward(y.permute([0, 2, 3, 1])).permute([0, 3, 1, 2]))
    }

    fn export(&self, cx: &Lower, x: &str, name: &str) -> String {
        cx.gelu(&cx.conv_channel_norm(x, name, &self.conv, &self.norm))
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
        let h = self.tokens(image.clone());
        let [b, _, d] = h.dims();
        let pooled = self.norm.forward(h.mean_dim(1).reshape([b, d]));
        match &self.context {
            Some(c) => self.head.forward(Tensor::cat(vec![pooled, c.forward(image)], 1)),
            None => self.head.forward(pooled),
        }
    }

    /// Token features `[B, T, D]` after the last encoder block (of the central crop, in the
    /// two-scale model).
    pub fn tokens(&self, image: Tensor<4>) -> Tensor<3> {
        let mut x = if self.centre > 0 {
            let [b, c, s, _] = image.dims();
            let o = (s - self.centre) / 2;
            image.slice([0..b, 0..c, o..o + self.centre, o..o + self.centre])
        } else {
            image
        };
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
    pub fn export_into(&self, cx: &Lower, input: &str, prefix: &str) -> String {
        let mut x = input.to_string();
        if self.centre > 0 {
            let (o, e) = (((self.image_size - self.centre) / 2) as i64, ((self.image_size + self.centre) / 2) as i64);
            let (starts, ends) = (cx.ints("centre_starts", &[o, o]), cx.ints("centre_ends", &[e, e]));
            x = cx.node("Slice", &[&x, &starts, &ends, &cx.ints("centre_axes", &[2, 3])], &[]);
        }
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
        let features = match &self.context {
            Some(c) => cx.concat(&[&pooled, &c.export(cx, input, self.image_size, prefix)], 1),
            None => pooled,
        };
        cx.linear(&features, &format!("{prefix}head"), &self.head)
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
    fn spot_two_scale_reads_the_centre_and_the_pooled_context() {
        let _rng = crate::test_rng();
        let device = Device::flex();
        device.seed(3);
        let cfg = SpotModelConfig { image_size: 64, centre: 32, context_pool: 2, ..tiny() };
        assert_eq!((cfg.main_side(), cfg.grid(), cfg.patch_span()), (32, 8, 2.0));
        let m = cfg.init(&device);
        assert_eq!(m.head.weight.dims(), [2 * cfg.dim, cfg.num_genes]);
        let x = random([2, 3, 64, 64], &device);
        // the same centre in a blank surround: same main-branch tokens, other prediction
        let centre = x.clone().slice([0..2, 0..3, 16..48, 16..48]);
        let framed = Tensor::<4>::zeros([2, 3, 64, 64], &device).slice_assign([0..2, 0..3, 16..48, 16..48], centre);
        let same = crate::to_vec(m.tokens(x.clone())).iter().zip(crate::to_vec(m.tokens(framed.clone()))).all(|(a, b)| a == &b);
        assert!(same, "the main branch reads only the central crop");
        let (y, z) = (crate::to_vec(m.forward(x)), crate::to_vec(m.forward(framed)));
        assert_eq!(y.len(), 2 * cfg.num_genes);
        assert!(y.iter().zip(&z).any(|(a, b)| (a - b).abs() > 1e-4), "the context branch reads the surround");
        for bad in [
            SpotModelConfig { centre: 33, ..cfg.clone() },
            SpotModelConfig { centre: 80, ..cfg.clone() },
            SpotModelConfig { context_pool: 0, ..cfg.clone() },
            SpotModelConfig { context_pool: 3, ..cfg.clone() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(SpotModelConfig::cnn_context().validate().is_ok());
        // configs saved before the two-scale model still load (one branch)
        let mut old = serde_json::to_value(tiny()).unwrap();
        old.as_object_mut().unwrap().retain(|k, _| k != "centre" && k != "context_pool");
        assert_eq!(serde_json::from_value::<SpotModelConfig>(old).unwrap(), tiny());
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
                    "Identity",
                    // the stems' channel LayerNorms (Lower::conv_channel_norm)
                    "Sub",
                    "Reciprocal",
                    "Gather",
                    "Shape",
                    "Slice",
                    "Concat",
                    "Tile"
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

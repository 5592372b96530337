//! Test-time augmentation and small ensembles of spot models, exported as one ONNX file with the
//! same input and output as a single [`SpotModel`] (`image [batch, 3, S, S]` → `expression
//! [batch, num_genes]`), so every reader of a spot model takes it unchanged.
//!
//! The prediction is the mean over the members and, with `tta`, over the 8 dihedral views of the
//! image (identity, the 3 rotations and their mirror images). The views are stacked on the batch
//! axis (`[8B, 3, S, S]`: flips as `Gather` with a reversed index, the transpose of H and W), each
//! member runs once on the stack, and one `ReduceMean` averages the `members × views` results.

use crate::export::{Lower, dims};
use crate::spot::{OUTPUT, SpotModel, export_input};
use burn::prelude::*;
use onnx_format::builder::Attr;
use onnx_format::pb::ModelProto;

/// Number of dihedral views of a square image.
pub const VIEWS: usize = 8;

/// Spot models averaged, optionally over the 8 dihedral views of the input.
#[derive(Debug)]
pub struct SpotEnsemble {
    members: Vec<SpotModel>,
    tta: bool,
}

impl SpotEnsemble {
    /// An ensemble of `members` (at least one, all with the same image size and gene count);
    /// `tta` adds the mean over the 8 dihedral views.
    pub fn new(members: Vec<SpotModel>, tta: bool) -> crate::Result<Self> {
        let first = members.first().ok_or_else(|| crate::Error::Input("spot ensemble: no members".into()))?;
        let (s, g) = (first.image_size(), first.num_genes());
        for (i, m) in members.iter().enumerate() {
            if m.image_size() != s || m.num_genes() != g {
                return Err(crate::Error::Input(format!(
                    "spot ensemble: member {i} takes {}px images and predicts {} genes, member 0 {s}px and {g} genes",
                    m.image_size(),
                    m.num_genes()
                )));
            }
        }
        Ok(Self { members, tta })
    }

    /// The members.
    pub fn members(&self) -> &[SpotModel] {
        &self.members
    }

    /// Whether predictions are averaged over the 8 dihedral views.
    pub fn tta(&self) -> bool {
        self.tta
    }

    /// Input image side `S` in pixels.
    pub fn image_size(&self) -> usize {
        self.members[0].image_size()
    }

    /// Number of predicted genes.
    pub fn num_genes(&self) -> usize {
        self.members[0].num_genes()
    }

    /// Forward passes per image: members × views.
    pub fn passes(&self) -> usize {
        self.members.len() * if self.tta { VIEWS } else { 1 }
    }

    /// Normalized images `[B, 3, S, S]` → expression `[B, num_genes]`: the mean over members (and views).
    pub fn forward(&self, image: Tensor<4>) -> Tensor<2> {
        let [b, ..] = image.dims();
        let g = self.num_genes();
        let x = if self.tta { dihedral_views(image) } else { image };
        let ys: Vec<Tensor<2>> = self.members.iter().map(|m| m.forward(x.clone())).collect();
        Tensor::cat(ys, 0).reshape([self.passes(), b, g]).mean_dim(0).reshape([b, g])
    }

    /// The ONNX graph of [`Self::forward`], with [`SpotModel::export`]'s input and output
    /// (`image [batch, 3, S, S]` → `expression [batch, num_genes]`, opset 18). Member `i`'s weights
    /// are named `m{i}.…`.
    pub fn export(&self, metadata: Vec<(String, String)>) -> ModelProto {
        let (s, g) = (self.image_size(), self.num_genes());
        let cx = Lower::new("spot_tcgn_ensemble");
        let x = export_input(&cx, s);
        let x = if self.tta { export_views(&cx, &x, s) } else { x };
        let ys: Vec<String> = self.members.iter().enumerate().map(|(i, m)| m.export_into(&cx, &x, &format!("m{i}."))).collect();
        let y = if self.passes() == 1 {
            ys[0].clone()
        } else {
            let refs: Vec<&str> = ys.iter().map(|s| s.as_str()).collect();
            let all = if refs.len() == 1 { ys[0].clone() } else { cx.concat(&refs, 0) };
            cx.reduce("Mean", &cx.reshape(&all, &[self.passes() as i64, -1, g as i64]), &[0], false)
        };
        cx.output_from(&y, OUTPUT, &dims("batch", g));
        cx.finish(metadata)
    }
}

/// The 8 dihedral views of `[B, C, H, W]` images (H = W) stacked on the batch axis, `[8B, C, H, W]`:
/// `x`, `flip_w`, `flip_h`, `flip_h ∘ flip_w` (180°), then the H/W transpose of each of those four.
pub fn dihedral_views(x: Tensor<4>) -> Tensor<4> {
    let x = Tensor::cat(vec![x.clone(), x.flip([3])], 0);
    let x = Tensor::cat(vec![x.clone(), x.flip([2])], 0);
    Tensor::cat(vec![x.clone(), x.swap_dims(2, 3)], 0)
}

/// [`dihedral_views`] in ONNX on `x` (`[B, C, S, S]`): flips as `Gather` with a reversed index.
fn export_views(cx: &Lower, x: &str, s: usize) -> String {
    let rev: Vec<i64> = (0..s as i64).rev().collect();
    let rev = cx.ints("reverse", &rev);
    let flip = |x: &str, axis: i64| cx.node("Gather", &[x, &rev], &[("axis", Attr::Int(axis))]);
    let x = cx.concat(&[x, &flip(x, 3)], 0);
    let x = cx.concat(&[&x, &flip(&x, 2)], 0);
    cx.concat(&[&x, &cx.transpose(&x, &[0, 1, 3, 2])], 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spot::SpotModelConfig;

    fn tiny() -> SpotModelConfig {
        SpotModelConfig::tiny()
    }

    /// A smooth, asymmetric pattern (no near-tied token similarities, unlike noise).
    fn image(b: usize, s: usize, device: &Device) -> Tensor<4> {
        let v: Vec<f32> = (0..b * 3 * s * s)
            .map(|i| {
                let (n, c, y, x) = (i / (3 * s * s), (i / (s * s)) % 3, (i / s) % s, i % s);
                ((0.37 * x as f32 + 0.11 * (c + 1) as f32 * y as f32 + n as f32).sin() + 0.05 * (x * y) as f32 / s as f32) - 0.3
            })
            .collect();
        Tensor::from_data(TensorData::new(v, [b, 3, s, s]), device)
    }

    fn max_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
        crate::to_vec(a).iter().zip(crate::to_vec(b)).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn views_are_the_dihedral_group() {
        let device = Device::flex();
        let x = image(2, 6, &device);
        let v = dihedral_views(x.clone());
        assert_eq!(v.dims(), [16, 3, 6, 6]);
        let rot90 = |t: Tensor<4>| t.swap_dims(2, 3).flip([3]);
        let mut want = Vec::new();
        let mut r = x.clone();
        for _ in 0..4 {
            want.push(r.clone());
            want.push(r.clone().flip([3]));
            r = rot90(r);
        }
        // each view of the stack is one of the 8 transforms, and all 8 appear
        let views: Vec<Vec<f32>> = (0..VIEWS).map(|k| crate::to_vec(v.clone().narrow(0, 2 * k, 2))).collect();
        let want: Vec<Vec<f32>> = want.into_iter().map(crate::to_vec).collect();
        for w in &want {
            assert_eq!(views.iter().filter(|v| *v == w).count(), 1);
        }
    }

    #[test]
    fn tta_is_the_mean_over_the_8_transformed_inputs() {
        let _rng = crate::test_rng();
        let device = Device::flex();
        device.seed(21);
        let m = tiny().init(&device);
        let x = image(3, 32, &device);
        let mut r = x.clone();
        let mut sum: Option<Tensor<2>> = None;
        for _ in 0..4 {
            for t in [r.clone(), r.clone().flip([3])] {
                let y = m.forward(t);
                sum = Some(match sum {
                    Some(s) => s + y,
                    None => y,
                });
            }
            r = r.swap_dims(2, 3).flip([3]);
        }
        let want = sum.unwrap().div_scalar(8.0);
        let single = m.forward(x.clone());
        let e = SpotEnsemble::new(vec![m], true).unwrap();
        assert_eq!(e.passes(), 8);
        let got = e.forward(x);
        assert_eq!(got.dims(), [3, 5]);
        let diff = max_diff(got.clone(), want);
        assert!(diff < 1e-5, "tta vs explicit mean: {diff:.2e}");
        // and the views change the prediction (the model is not invariant)
        assert!(max_diff(got, single) > 1e-4);
    }

    #[test]
    fn ensemble_is_the_member_mean_and_checks_members() {
        let _rng = crate::test_rng();
        let device = Device::flex();
        device.seed(22);
        let (a, b) = (tiny().init(&device), tiny().init(&device));
        let x = image(2, 32, &device);
        let want = (a.forward(x.clone()) + b.forward(x.clone())).div_scalar(2.0);
        let e = SpotEnsemble::new(vec![a, b], false).unwrap();
        assert!(max_diff(e.forward(x), want) < 1e-5);
        let c = tiny().with_genes(6).init(&device);
        let err = SpotEnsemble::new(vec![tiny().init(&device), c], false).unwrap_err().to_string();
        assert!(err.contains("member 1") && err.contains("6 genes"), "{err}");
        let d = SpotModelConfig { image_size: 64, ..tiny() }.init(&device);
        assert!(SpotEnsemble::new(vec![tiny().init(&device), d], true).is_err());
        assert!(SpotEnsemble::new(vec![], true).is_err());
    }

    #[test]
    fn ensemble_export_keeps_the_spot_interface_and_opset18_ops() {
        let _rng = crate::test_rng();
        let device = Device::flex();
        device.seed(23);
        let single = tiny().init(&device).export(vec![]);
        let e = SpotEnsemble::new(vec![tiny().init(&device), tiny().init(&device)], true).unwrap();
        let p = e.export(vec![]);
        assert_eq!(p.opset_import, single.opset_import);
        let (g, gs) = (p.graph.as_ref().unwrap(), single.graph.as_ref().unwrap());
        assert_eq!(g.input, gs.input);
        assert_eq!(g.output, gs.output);
        let ops: std::collections::BTreeSet<String> = g.node.iter().map(|n| n.op_type.clone().unwrap()).collect();
        let single_ops: std::collections::BTreeSet<String> = gs.node.iter().map(|n| n.op_type.clone().unwrap()).collect();
        for op in &ops {
            assert!(single_ops.contains(op) || ["Gather", "Concat"].contains(&op.as_str()), "unexpected op {op}");
        }
        assert!(ops.contains("Gather") && ops.contains("Concat"));
        // every node output and initializer is written once
        let mut names = std::collections::BTreeSet::new();
        for n in g.node.iter().flat_map(|n| n.output.iter()).chain(g.initializer.iter().filter_map(|t| t.name.as_ref())) {
            assert!(names.insert(n.clone()), "{n} written twice");
        }
        assert!(names.contains("m1.graph.topk_indices"));
        // two members: twice the weights of one, constants shared
        let weights = |g: &onnx_format::pb::GraphProto| g.initializer.iter().filter(|t| t.dims.len() > 1).count();
        assert_eq!(weights(g), 2 * weights(gs));
    }
}

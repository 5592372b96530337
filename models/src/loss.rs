//! Training losses shared by the trainers.

use burn::prelude::*;

/// Binary cross-entropy on logits per element, in the stable form `max(z,0) - z·y + log(1 + e^-|z|)`
/// (no overflow for any `z`; `log(1 + e^-|z|)` as written, the expression the Tox21 results were
/// trained with).
pub fn bce_with_logits(z: Tensor<2>, y: Tensor<2>) -> Tensor<2> {
    z.clone().clamp_min(0.0) - z.clone() * y + (z.abs().neg().exp() + 1.0).log()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_bce_matches_the_formula() {
        let d = Device::flex();
        let z = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 2.0, -3.0, 80.0, -80.0, 0.5], [2, 3]), &d);
        let y = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0, 1.0, 1.0, 0.0, 0.0], [2, 3]), &d);
        let got = bce_with_logits(z, y).mean().into_scalar::<f32>() as f64;
        let naive = |z: f64, y: f64| -(y * (1.0 / (1.0 + (-z).exp())).ln() + (1.0 - y) * (1.0 - 1.0 / (1.0 + (-z).exp())).ln());
        // ±80 overflow the naive form in f32 but not the stable one; their terms are ~0
        let want = (naive(0.0, 1.0) + naive(2.0, 0.0) + naive(-3.0, 1.0) + 0.0 + 0.0 + naive(0.5, 0.0)) / 6.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
}

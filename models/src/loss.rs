//! Training losses shared by the trainers.

use burn::prelude::*;
use burn::tensor::activation::relu;

/// Binary cross-entropy on logits per element, in the stable form `max(z,0) - z·y + log(1 + e^-|z|)`.
pub fn bce_with_logits(z: Tensor<2>, y: Tensor<2>) -> Tensor<2> {
    let soft = z.clone().abs().neg().exp().log1p();
    relu(z.clone()) - z * y + soft
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

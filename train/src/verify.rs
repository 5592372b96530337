//! Export verification: the burn forward vs tract vs ONNX Runtime on the same samples
//! ([`infer::runtime::check_parity`]); nothing is written when it fails.

use anyhow::{Context, Result};
pub use infer::runtime::Parity;
use infer::runtime::Value;
pub use infer::runtime::check_parity as check_values;
use std::path::Path;

/// Run `bytes` on both runtimes with input `x [rows, cols]` and compare output `output` with `expected`.
pub fn check(bytes: &[u8], name: &Path, x: &[f32], cols: usize, output: &str, expected: &[f32], tolerance: f64) -> Result<Parity> {
    let rows = x.len() / cols;
    check_values(bytes, name, &[Value::f32(&[rows, cols], x.to_vec())], rows, output, expected, tolerance)
        .context("burn vs the runtimes; nothing written")
}

//! Export verification: the burn forward vs tract vs ONNX Runtime on the same samples.

use anyhow::{Context, Result, bail};
use infer::runtime::{Backend, Options, Session, Value};
use std::path::Path;

/// Max abs differences of `probabilities` against burn, per runtime.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Parity {
    pub samples: usize,
    pub tract_max_abs_diff: f64,
    pub ort_max_abs_diff: f64,
    pub tolerance: f64,
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs() as f64).fold(0.0, f64::max)
}

/// Run `bytes` on both runtimes with input `x [rows, cols]` and compare output `output` with `expected`.
pub fn check(bytes: &[u8], name: &Path, x: &[f32], cols: usize, output: &str, expected: &[f32], tolerance: f64) -> Result<Parity> {
    let rows = x.len() / cols;
    check_values(bytes, name, &[Value::f32(&[rows, cols], x.to_vec())], rows, output, expected, tolerance)
}

/// As [`check`], for any inputs; `samples` is what the report counts (rows, nodes).
pub fn check_values(bytes: &[u8], name: &Path, inputs: &[Value], samples: usize, output: &str, expected: &[f32], tolerance: f64) -> Result<Parity> {
    let mut diffs = [0.0; 2];
    for (i, backend) in [Backend::Tract, Backend::Ort].into_iter().enumerate() {
        let mut s = Session::from_bytes(bytes, name, backend, &Options::default())
            .with_context(|| format!("loading the export in {}", backend.name()))?;
        let got = s.run_output(inputs, output)?.into_f32()?;
        if got.len() != expected.len() {
            bail!("{}: output `{output}` has {} values, burn gave {}", backend.name(), got.len(), expected.len());
        }
        diffs[i] = max_abs_diff(&got, expected);
    }
    let p = Parity { samples, tract_max_abs_diff: diffs[0], ort_max_abs_diff: diffs[1], tolerance };
    if diffs.iter().any(|d| !(*d <= tolerance)) {
        bail!("parity check failed: max |burn - tract| = {:.2e}, max |burn - ort| = {:.2e} > tolerance {tolerance:.0e}; nothing written", diffs[0], diffs[1]);
    }
    Ok(p)
}

//! `bench spot-ensemble`: the cost of test-time augmentation and seed ensembles exported in one
//! ONNX file (`models::spot_ensemble`), ms per spot on tract and ONNX Runtime at the same threads.

use super::session_rate;
use anyhow::{Result, bail};
use clap::Args;
use infer::runtime::{Backend, Options, Value};
use models::burn::prelude::Device;
use models::spot::SpotModelConfig;
use models::spot_ensemble::SpotEnsemble;
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::path::Path;

/// Options of `bench spot-ensemble`.
#[derive(Args)]
pub struct SpotEnsembleArgs {
    /// small or large.
    #[arg(long, default_value = "small")]
    config: String,
    /// Members of the ensemble rows.
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// Spots per run.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Threads of both runtimes (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Seconds per measurement (at least 3 runs).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
}

/// Prints ms per spot of one model, its 8-view TTA, an ensemble and the ensemble with TTA.
pub fn run(a: &SpotEnsembleArgs) -> Result<()> {
    let cfg = match a.config.as_str() {
        "small" => SpotModelConfig::small(),
        "large" => SpotModelConfig::large(),
        c => bail!("unknown --config `{c}` (small or large)"),
    };
    if a.members == 0 || a.batch == 0 {
        bail!("--members and --batch must be positive");
    }
    let device = Device::flex();
    device.seed(5);
    let s = cfg.image_size;
    let mut rng = StdRng::seed_from_u64(7);
    let x: Vec<f32> = (0..a.batch * 3 * s * s).map(|_| rng.random_range(-2.0f32..2.0)).collect();
    let inputs = [Value::f32(&[a.batch, 3, s, s], x)];
    let threads = infer::runtime::thread_count(a.threads);
    let opts = Options { threads: a.threads, ..Default::default() };
    println!(
        "spot {} ({} genes), batch {}, {threads} threads on both runtimes: ms per spot (lower is better); random-init weights",
        a.config, cfg.num_genes, a.batch
    );
    println!("| model | passes/spot | ONNX MB | tract ms | ort ms | tract/ort | tract × single | ort × single |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut single: Option<(f64, f64)> = None;
    for (members, tta) in [(1, false), (1, true), (a.members, false), (a.members, true)] {
        let e = SpotEnsemble::new((0..members).map(|_| cfg.init(&device)).collect(), tta)?;
        let bytes = onnx_format::encode(&e.export(vec![]));
        let name = Path::new("spot_ensemble.onnx");
        let mut ms = [0.0; 2];
        for (i, backend) in [Backend::Tract, Backend::Ort].into_iter().enumerate() {
            ms[i] = 1e3 / (session_rate(&bytes, name, backend, &opts, &inputs, a.seconds)? * a.batch as f64);
        }
        let base = *single.get_or_insert((ms[0], ms[1]));
        let label = match (members, tta) {
            (1, false) => "single".to_string(),
            (1, true) => "single + TTA (8 views)".to_string(),
            (m, false) => format!("{m}-member ensemble"),
            (m, true) => format!("{m}-member ensemble + TTA"),
        };
        println!(
            "| {label} | {} | {:.1} | {:.2} | {:.2} | {:.2}× | {:.2}× | {:.2}× |",
            e.passes(),
            bytes.len() as f64 / 1e6,
            ms[0],
            ms[1],
            ms[0] / ms[1],
            ms[0] / base.0,
            ms[1] / base.1
        );
    }
    Ok(())
}

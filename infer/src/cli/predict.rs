//! `infer predict`: class probabilities for an expression file.

use anyhow::{Context, Result};
use infer::classify::{check_family, classify};
use infer::data::{ReadOptions, read_expression};
use infer::runtime::{Options, Session};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub m: super::ModelArgs,
    #[command(flatten)]
    pub x: super::ExpressionInput,
    /// GSEA .cls labels for the input (optional; only used to report accuracy).
    #[arg(long)]
    pub cls: Option<PathBuf>,
    /// ONNX Runtime with the CUDA execution provider (build with feature `cuda`).
    #[arg(long)]
    pub cuda: bool,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    onnx_format::check_output(&a.out, [a.m.model.as_path(), &a.x.input].into_iter().chain(a.cls.as_deref()))?;
    let card = infer::read_card(&a.m.model)?;
    check_family(&card, &a.m.model)?;
    let m = read_expression(&a.x.input, &ReadOptions { label_column: a.x.label_column, cls: a.cls })?;
    let mut session = Session::from_file(&a.m.model, a.m.backend, &Options { cuda: a.cuda, threads: a.m.threads, ..Default::default() })?;
    let c = classify(&mut session, &card, &m, &a.x.input, a.batch)?;
    eprintln!("{}: {} samples; {}; provider {}", a.x.input.display(), c.samples.len(), c.alignment.summary(), session.provider);
    super::report_accuracy(&c, m.labels.as_deref());
    onnx_format::write_atomic(&a.out, c.to_csv().as_bytes()).with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!("wrote {}", a.out.display());
    Ok(())
}

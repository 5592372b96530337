//! `infer predict`: class probabilities for an expression file.

use anyhow::{Context, Result};
use infer::classify::{check_family, classify_blocks};
use infer::data::{ReadOptions, read_expression_blocks};
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
    let mut blocks = read_expression_blocks(&a.x.input, &ReadOptions { label_column: a.x.label_column, cls: a.cls })?;
    let mut session = Session::from_file(&a.m.model, a.m.backend, &Options { cuda: a.cuda, threads: a.m.threads, ..Default::default() })?;
    // samples stream through in blocks: the CSV grows in a temp file and appears at `out` only
    // when every block went well
    let mut file = onnx_format::AtomicFile::create(&a.out).with_context(|| format!("writing {}", a.out.display()))?;
    // a block as read (stored genes) and as aligned to the model (its genes) both stay within BLOCK_VALUES
    let block_rows = (BLOCK_VALUES / blocks.width().max(card.genes.len()).max(1)).max(1);
    let s = classify_blocks(&mut session, &card, &mut blocks, &a.x.input, (block_rows, a.batch), (&mut file, &a.out))?;
    eprintln!("{}: {} samples; {}; provider {}", a.x.input.display(), s.samples, s.alignment.summary(), session.provider);
    super::print_accuracy(s.correct);
    file.commit().with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!("wrote {}", a.out.display());
    Ok(())
}

/// Values per block of samples: 16 M, 64 MB as f32.
const BLOCK_VALUES: usize = 1 << 24;

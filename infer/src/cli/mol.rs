//! `infer mol`: task probabilities for SMILES with a `mol-graphconv` model.

use anyhow::{Context, Result, bail};
use infer::runtime::{Options, Session};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub m: super::ModelArgs,
    /// SMILES strings (repeatable).
    #[arg(long, required_unless_present = "input", conflicts_with = "input")]
    pub smiles: Vec<String>,
    /// CSV/TSV with a SMILES column.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// SMILES column of --input (default: `smiles`, else the first column).
    #[arg(long)]
    pub smiles_column: Option<String>,
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let Args { m: super::ModelArgs { model, backend }, smiles, input, smiles_column, batch, out } = a;
    onnx_format::check_output(&out, [model.as_path()].into_iter().chain(input.as_deref()))?;
    let card = infer::read_card(&model)?;
    infer::mol::check_family(&card, &model)?;
    let smiles = match &input {
        Some(p) => {
            let t = infer::mol::Table::read(p)?;
            let c = infer::mol::smiles_column(&t, smiles_column.as_deref(), p)?;
            (0..t.rows.len()).map(|r| t.get(r, c).to_string()).collect()
        }
        None => smiles,
    };
    if smiles.is_empty() {
        bail!("no molecules to score");
    }
    let mut session = Session::from_file(&model, backend, &Options::default())?;
    let t0 = std::time::Instant::now();
    let scored = infer::mol::score(&mut session, &card.classes, &smiles, batch)?;
    let secs = t0.elapsed().as_secs_f64();
    for e in scored.errors.iter().take(20) {
        eprintln!("skipped {e}");
    }
    if scored.errors.len() > 20 {
        eprintln!("... and {} more rejected SMILES (see the `error` column)", scored.errors.len() - 20);
    }
    if scored.num_scored() == 0 {
        bail!("none of the {} SMILES could be read; nothing written", smiles.len());
    }
    onnx_format::write_atomic(&out, scored.to_csv().as_bytes()).with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "{} molecules scored, {} rejected, {:.0} molecules/s (featurize + predict, {}); wrote {}",
        scored.num_scored(),
        scored.errors.len(),
        smiles.len() as f64 / secs,
        session.provider,
        out.display()
    );
    Ok(())
}

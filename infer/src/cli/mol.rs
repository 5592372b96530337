//! `infer mol`: task probabilities for SMILES with a `mol-graphconv` model.

use anyhow::{Context, Result, bail};
use infer::runtime::{Options, Session};
use std::io::Write;
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

/// Rows read, scored and written per step with --input: memory stays bounded on any file length.
const CHUNK: usize = 4096;

pub fn run(a: Args) -> Result<()> {
    let Args { m: super::ModelArgs { model, backend, threads }, smiles, input, smiles_column, batch, out } = a;
    onnx_format::check_output(&out, [model.as_path()].into_iter().chain(input.as_deref()))?;
    let card = infer::read_card(&model)?;
    infer::mol::check_family(&card, &model)?;
    let mut reader = match &input {
        Some(p) => {
            let r = infer::mol::TableReader::open(p)?;
            let c = infer::mol::smiles_column_of(&r.header, smiles_column.as_deref(), p)?;
            Some((r, c))
        }
        None => None,
    };
    let mut given = smiles.into_iter();
    let mut next_chunk = || -> Result<Vec<String>> {
        match &mut reader {
            Some((r, c)) => {
                let mut v = Vec::new();
                while v.len() < CHUNK {
                    match r.next_row()? {
                        Some(mut row) => v.push(std::mem::take(&mut row[*c])),
                        None => break,
                    }
                }
                Ok(v)
            }
            None => Ok(given.by_ref().take(CHUNK).collect()),
        }
    };
    let mut session = Session::from_file(&model, backend, &Options { threads, ..Default::default() })?;
    // the table goes to a temp file chunk by chunk and appears at `out` only when all went well
    let mut file = onnx_format::AtomicFile::create(&out).with_context(|| format!("writing {}", out.display()))?;
    file.write_all(infer::mol::csv_header(&card.classes).as_bytes())?;
    let t0 = std::time::Instant::now();
    let (mut rows, mut scored_rows, mut rejected) = (0usize, 0usize, 0usize);
    loop {
        let chunk = next_chunk()?;
        if chunk.is_empty() {
            break;
        }
        let scored = infer::mol::score(&mut session, &card.classes, &chunk, batch)?;
        for e in scored.errors.iter() {
            if rejected < 20 {
                eprintln!("skipped row {}: `{}`: {}", rows + e.row, abbreviate(&e.smiles), e.error);
            }
            rejected += 1;
        }
        file.write_all(scored.csv_rows(rows).as_bytes()).with_context(|| format!("writing {}", out.display()))?;
        scored_rows += scored.num_scored();
        rows += chunk.len();
    }
    let secs = t0.elapsed().as_secs_f64();
    if rejected > 20 {
        eprintln!("... and {} more rejected SMILES (see the `error` column)", rejected - 20);
    }
    if rows == 0 {
        bail!("no molecules to score");
    }
    if scored_rows == 0 {
        bail!("none of the {rows} SMILES could be read; nothing written");
    }
    file.commit().with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "{scored_rows} molecules scored, {rejected} rejected, {:.0} molecules/s (featurize + predict, {}); wrote {}",
        rows as f64 / secs,
        session.provider,
        out.display()
    );
    Ok(())
}

/// A SMILES for a message: long ones cut to their first 60 characters.
fn abbreviate(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}… ({} characters)", &s[..i], s.len()),
        None => s.to_string(),
    }
}

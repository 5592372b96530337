//! `infer cells`: cell types for single-cell data, PCA and kNN graph as the model card says.

use anyhow::{Context, Result};
use infer::data::{ReadOptions, read_expression};
use infer::runtime::{Options, Session};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub m: super::ModelArgs,
    /// Where to write: `.csv` (`sample,predicted,p_<type>...`), or `.h5ad` when the input is an
    /// h5ad file: a copy of the input with `obs["predicted"]`, `obsm["bioedge_probabilities"]` and
    /// `uns["bioedge"]` added (the input itself is never changed).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub x: super::ExpressionInput,
}

pub fn run(a: Args) -> Result<()> {
    onnx_format::check_output(&a.out, [a.m.model.as_path(), &a.x.input])?;
    let h5ad_out = a.out.extension().is_some_and(|e| e.eq_ignore_ascii_case("h5ad"));
    if h5ad_out {
        if infer::data::detect_format(&a.x.input)? != infer::data::Format::H5ad {
            return Err(infer::Error::Input(format!(
                "--out {}: an .h5ad output annotates an .h5ad input, and {} is not one; write a .csv instead",
                a.out.display(),
                a.x.input.display()
            ))
            .into());
        }
        // before the model runs: a layout the annotation cannot be added to is refused now
        #[cfg(feature = "hdf5")]
        infer::data::h5ad_write::annotatable(&a.x.input)?;
    }
    let card = infer::read_card(&a.m.model)?;
    card.require::<onnx_format::card::Cells>().map_err(|e| infer::Error::card(&a.m.model, e))?;
    let m = read_expression(&a.x.input, &ReadOptions { label_column: a.x.label_column, cls: None })?;
    let mut session = Session::from_file(&a.m.model, a.m.backend, &Options { threads: a.m.threads, ..Default::default() })?;
    let (probs, alignment) = infer::cells::classify_cells(&mut session, &card, &a.m.model, &m, &a.x.input)?;
    let c = infer::classify::Classification { samples: m.samples.clone(), classes: card.classes.clone(), probabilities: probs, alignment };
    eprintln!("{}: {} cells; {}; provider {}", a.x.input.display(), c.samples.len(), c.alignment.summary(), session.provider);
    super::report_accuracy(&c, m.labels.as_deref());
    if h5ad_out {
        #[cfg(feature = "hdf5")]
        infer::cells::annotate_h5ad(&a.x.input, &a.out, &a.m.model, &c, &card)?;
    } else {
        onnx_format::write_atomic(&a.out, c.to_csv().as_bytes()).with_context(|| format!("writing {}", a.out.display()))?;
    }
    eprintln!("wrote {}", a.out.display());
    Ok(())
}

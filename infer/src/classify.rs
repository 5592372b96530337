//! Expression classifiers (`gene-gcn`, `gene-mlp`): align, batch, run, write class probabilities.

use crate::align::Alignment;
use crate::data::{ExpressionBlocks, ExpressionMatrix};
use crate::runtime::{Session, Value};
use crate::{Error, Result};
use onnx_format::ModelCard;
use onnx_format::card::Expression;
use std::path::Path;

/// Class probabilities for every sample of an expression matrix.
pub struct Classification {
    /// Sample names, one per row of `probabilities`.
    pub samples: Vec<String>,
    /// Class names from the model card, one per column of `probabilities`.
    pub classes: Vec<String>,
    /// `[samples, classes]`, row-major.
    pub probabilities: Vec<f32>,
    /// How the input's genes were matched to the model's.
    pub alignment: Alignment,
}

/// Check that a model card describes an expression classifier.
pub fn check_family(card: &ModelCard, model: &Path) -> Result<()> {
    card.require::<Expression>().map_err(|e| Error::card(model, e))?;
    Ok(())
}

/// Predict class probabilities for every sample of `m` (read from `input`).
pub fn classify(session: &mut Session, card: &ModelCard, m: &ExpressionMatrix, input: &Path, batch: usize) -> Result<Classification> {
    if m.samples.is_empty() {
        return Err(Error::Input(format!("{}: no samples", input.display())));
    }
    m.check_finite(input)?;
    let alignment = Alignment::new(&card.genes, &m.genes).map_err(|e| Error::Input(format!("{}: {e}", input.display())))?;
    let x = alignment.apply(m);
    let genes = card.genes.len();
    let k = card.classes.len();
    let mut probabilities = Vec::with_capacity(m.samples.len() * k);
    for chunk in x.chunks(batch.max(1) * genes) {
        let rows = chunk.len() / genes;
        let out = session.run_output(&[Value::f32(&[rows, genes], chunk.to_vec())], "probabilities")?;
        if out.shape() != [rows, k] {
            return Err(Error::Input(format!("model returned shape {:?}, expected [{rows}, {k}]", out.shape())));
        }
        probabilities.extend(out.into_f32()?);
    }
    Ok(Classification { samples: m.samples.clone(), classes: card.classes.clone(), probabilities, alignment })
}

/// What [`classify_blocks`] did.
pub struct StreamSummary {
    /// Samples classified.
    pub samples: usize,
    /// How the input's genes were matched to the model's.
    pub alignment: Alignment,
    /// `(correct, total)` of the most probable class, when the input has labels.
    pub correct: Option<(usize, usize)>,
}

/// Classifies an expression file block by block and writes the CSV of [`Classification::to_csv`]
/// to `out` (a temp file of `out_path`) as it goes: memory is bounded by one block of `block_rows`
/// samples, not by the file; the model runs `batch` samples at a time.
pub fn classify_blocks(
    session: &mut Session,
    card: &ModelCard,
    blocks: &mut ExpressionBlocks,
    input: &Path,
    (block_rows, batch): (usize, usize),
    (out, out_path): (&mut dyn std::io::Write, &Path),
) -> Result<StreamSummary> {
    let io_err = |e: std::io::Error| Error::io(out_path, e);
    out.write_all(probabilities_csv_header("sample", &card.classes).as_bytes()).map_err(io_err)?;
    let (mut samples, mut alignment, mut correct) = (0usize, None, None::<(usize, usize)>);
    while let Some(m) = blocks.next_block(block_rows)? {
        m.check_finite_from(input, samples)?;
        samples += m.samples.len();
        let c = classify(session, card, &m, input, batch)?;
        out.write_all(probabilities_csv_rows(&c.samples, &c.classes, &c.probabilities).as_bytes()).map_err(io_err)?;
        if let Some(labels) = &m.labels {
            let (ok, n) = c.correct(labels);
            let (ok0, n0) = correct.unwrap_or((0, 0));
            correct = Some((ok0 + ok, n0 + n));
        }
        alignment.get_or_insert(c.alignment);
    }
    let alignment = alignment.ok_or_else(|| Error::Input(format!("{}: no samples", input.display())))?;
    Ok(StreamSummary { samples, alignment, correct })
}

impl Classification {
    /// CSV: `sample,predicted,<one probability column per class>`.
    pub fn to_csv(&self) -> String {
        probabilities_csv("sample", &self.samples, &self.classes, &self.probabilities)
    }

    /// `(correct, total)` of the most probable class against known labels.
    pub fn correct(&self, labels: &[String]) -> (usize, usize) {
        let k = self.classes.len();
        let correct = labels.iter().zip(self.probabilities.chunks(k)).filter(|(l, row)| self.classes[argmax(row)] == **l).count();
        (correct, labels.len())
    }
}

/// Index of the largest value (0 for an empty row).
pub fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(j, _)| j).unwrap_or(0)
}

/// CSV: `<id_header>,predicted,p_<class>...`, one row per id; `probabilities` is `[ids, classes]`.
pub fn probabilities_csv(id_header: &str, ids: &[String], classes: &[String], probabilities: &[f32]) -> String {
    probabilities_csv_header(id_header, classes) + &probabilities_csv_rows(ids, classes, probabilities)
}

/// The header line of [`probabilities_csv`].
pub fn probabilities_csv_header(id_header: &str, classes: &[String]) -> String {
    let mut s = format!("{id_header},predicted");
    for c in classes {
        s.push(',');
        s.push_str(&csv_field(&format!("p_{c}")));
    }
    s.push('\n');
    s
}

/// The data lines of [`probabilities_csv`].
pub fn probabilities_csv_rows(ids: &[String], classes: &[String], probabilities: &[f32]) -> String {
    let k = classes.len();
    let mut s = String::new();
    for (name, row) in ids.iter().zip(probabilities.chunks(k)) {
        s.push_str(&csv_field(name));
        s.push(',');
        s.push_str(&csv_field(&classes[argmax(row)]));
        for p in row {
            s.push_str(&format!(",{p:.6}"));
        }
        s.push('\n');
    }
    s
}

pub use bioedge_slide::pipeline::csv_field;

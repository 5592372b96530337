//! Readers for expression matrices (samples × genes) and gene graphs.
//! Formats: GSEA `.txt`/`.gct` + `.cls`, CSV/TSV, HDF5 (documented layout), `.h5ad`.

pub mod delim;
pub mod gmt;
pub mod gsea;
#[cfg(feature = "hdf5")]
pub mod h5;
#[cfg(feature = "hdf5")]
pub mod h5ad;
#[cfg(feature = "hdf5")]
pub mod h5ad_write;
#[cfg(feature = "hdf5")]
mod h5util;
pub mod text;

use crate::error::{Error, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A dense expression matrix: `values[s * genes.len() + g]` is sample `s`, gene `g`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpressionMatrix {
    /// Sample names, one per row.
    pub samples: Vec<String>,
    /// Gene names, one per column.
    pub genes: Vec<String>,
    /// `samples × genes` values, row-major.
    pub values: Vec<f32>,
    /// One label per sample, when the source has labels.
    pub labels: Option<Vec<String>>,
}

/// Options for [`read_expression`].
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Column with one label per sample: a CSV/TSV column or an `.h5ad` obs column
    /// (`.h5`: only `labels`, which is read anyway).
    pub label_column: Option<String>,
    /// A `.cls` file whose labels are attached to the matrix (replacing any labels read).
    pub cls: Option<PathBuf>,
}

/// What a reader changed while reading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadReport {
    /// Genes dropped because the same name came earlier (the first occurrence is kept).
    pub dropped_duplicate_genes: usize,
}

/// File formats [`read_expression`] recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// GSEA expression table (`.gct`, or `.txt` with a GSEA header).
    Gsea,
    /// Comma-separated table (`.csv`).
    Csv,
    /// Tab-separated table (`.tsv`, `.tab`, or another `.txt`).
    Tsv,
    /// HDF5 in the documented layout (`.h5`, `.hdf5`).
    Hdf5,
    /// AnnData file (`.h5ad`).
    H5ad,
}

/// Picks the format from the file name (a trailing `.gz` is ignored) and, for `.txt`, the header:
/// `.h5ad`; `.h5`/`.hdf5`; `.csv`; `.tsv`/`.tab`; `.gct`; `.txt` → GSEA when the header starts with
/// `Gene<TAB>NAME` (or `NAME<TAB>Description`), else TSV.
pub fn detect_format(path: &Path) -> Result<Format> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let base = name.strip_suffix(".gz").unwrap_or(&name);
    let ext = base.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    Ok(match ext {
        "h5ad" => Format::H5ad,
        "h5" | "hdf5" => Format::Hdf5,
        "csv" => Format::Csv,
        "tsv" | "tab" => Format::Tsv,
        "gct" => Format::Gsea,
        "txt" => {
            let mut lines = text::Lines::open(path)?;
            let mut gsea = false;
            while let Some((_, line)) = lines.next_line()? {
                if !line.trim().is_empty() {
                    gsea = gsea::is_gsea_header(line);
                    break;
                }
            }
            if gsea { Format::Gsea } else { Format::Tsv }
        }
        _ => {
            return Err(Error::Unsupported(format!(
                "{}: unknown expression format (use .h5ad, .h5, .hdf5, .csv, .tsv, .txt, .gct; .gz allowed for text)",
                path.display()
            )));
        }
    })
}

/// Reads an expression matrix, choosing the reader by [`detect_format`]. Duplicate gene names are
/// dropped (first kept). Values are not checked for NaN: call [`ExpressionMatrix::check_finite`].
pub fn read_expression(path: &Path, opts: &ReadOptions) -> Result<ExpressionMatrix> {
    read_expression_with_report(path, opts).map(|(m, _)| m)
}

/// [`read_expression`] that also says what was dropped.
pub fn read_expression_with_report(path: &Path, opts: &ReadOptions) -> Result<(ExpressionMatrix, ReadReport)> {
    let label = opts.label_column.as_deref();
    let format = detect_format(path)?;
    let (mut m, mut report) = match format {
        Format::Gsea => {
            if let Some(col) = label {
                return Err(Error::Input(format!(
                    "{}: GSEA files have no label column ('{col}'); give labels as a .cls file",
                    path.display()
                )));
            }
            gsea::read_gsea(path)?
        }
        Format::Csv | Format::Tsv => {
            let delim = if format == Format::Csv { ',' } else { '\t' };
            (delim::read_delimited_with(path, delim, label)?, ReadReport::default())
        }
        #[cfg(feature = "hdf5")]
        Format::Hdf5 => {
            if let Some(col) = label.filter(|c| *c != "labels") {
                return Err(Error::Input(format!("{}: HDF5 matrices take labels only from /labels, not '{col}'", path.display())));
            }
            (h5::read_hdf5(path)?, ReadReport::default())
        }
        #[cfg(feature = "hdf5")]
        Format::H5ad => (h5ad::read_h5ad(path, label)?, ReadReport::default()),
        #[cfg(not(feature = "hdf5"))]
        Format::Hdf5 | Format::H5ad => {
            return Err(Error::Unsupported(format!("{}: HDF5 support is not compiled in (feature `hdf5`)", path.display())));
        }
    };
    report.dropped_duplicate_genes += m.drop_duplicate_genes();
    if let Some(cls) = &opts.cls {
        let labels = gsea::read_cls(cls)?;
        if labels.len() != m.samples.len() {
            return Err(Error::format(cls, format!("{} labels, but {} has {} samples", labels.len(), path.display(), m.samples.len())));
        }
        m.labels = Some(labels);
    }
    m.check_shape().map_err(|e| Error::format(path, e.to_string()))?;
    Ok((m, report))
}

/// An expression file read a block of samples at a time, for callers that handle samples
/// independently (`infer predict`): CSV/TSV tables and `.h5ad` files stream, so memory is bounded
/// by the block on any number of samples; GSEA and `.h5` files (stored gene by gene) are read
/// whole and handed out in blocks. Each block is what [`read_expression`] would return for those
/// samples (duplicate genes dropped, `.cls` labels attached, shape checked).
pub struct ExpressionBlocks {
    path: PathBuf,
    source: BlockSource,
    cls: Option<(PathBuf, Vec<String>)>,
    samples: usize,
    report: ReadReport,
}

enum BlockSource {
    Rows(delim::DelimRows),
    #[cfg(feature = "hdf5")]
    H5ad(h5ad::H5adRows),
    Whole(Option<ExpressionMatrix>),
}

/// Opens `path` for [`ExpressionBlocks::next_block`]; the same options and errors as [`read_expression`].
pub fn read_expression_blocks(path: &Path, opts: &ReadOptions) -> Result<ExpressionBlocks> {
    let label = opts.label_column.as_deref();
    let mut report = ReadReport::default();
    let source = match detect_format(path)? {
        f @ (Format::Csv | Format::Tsv) => {
            BlockSource::Rows(delim::DelimRows::open(path, if f == Format::Csv { ',' } else { '\t' }, label)?)
        }
        #[cfg(feature = "hdf5")]
        Format::H5ad => BlockSource::H5ad(h5ad::H5adRows::open(path, label)?),
        _ => {
            let (m, r) = read_expression_with_report(path, &ReadOptions { cls: None, ..opts.clone() })?;
            report = r;
            BlockSource::Whole(Some(m))
        }
    };
    let cls = match &opts.cls {
        Some(c) => Some((c.clone(), gsea::read_cls(c)?)),
        None => None,
    };
    Ok(ExpressionBlocks { path: path.to_path_buf(), source, cls, samples: 0, report })
}

impl ExpressionBlocks {
    /// The next at most `max_rows` samples; `None` after the last.
    pub fn next_block(&mut self, max_rows: usize) -> Result<Option<ExpressionMatrix>> {
        let max_rows = max_rows.max(1);
        let block = match &mut self.source {
            BlockSource::Rows(r) => r.next_block(max_rows)?,
            #[cfg(feature = "hdf5")]
            BlockSource::H5ad(r) => r.next_block(max_rows)?,
            BlockSource::Whole(m) => match m.as_mut() {
                None => None,
                Some(whole) if whole.samples.len() <= max_rows => m.take(),
                Some(whole) => Some(split_rows(whole, max_rows)),
            },
        };
        let Some(mut b) = block else {
            if let Some((cls, labels)) = &self.cls
                && labels.len() != self.samples
            {
                return Err(self.cls_mismatch(cls, labels.len()));
            }
            return Ok(None);
        };
        let dropped = b.drop_duplicate_genes();
        if self.samples == 0 {
            self.report.dropped_duplicate_genes += dropped;
        }
        let (a, n) = (self.samples, b.samples.len());
        self.samples += n;
        if let Some((cls, labels)) = &self.cls {
            if labels.len() < self.samples {
                return Err(self.cls_mismatch(cls, labels.len()));
            }
            b.labels = Some(labels[a..a + n].to_vec());
        }
        b.check_shape().map_err(|e| Error::format(&self.path, e.to_string()))?;
        Ok(Some(b))
    }

    /// Columns per sample as stored (genes, before duplicates are dropped; a label column may count):
    /// what a caller sizes its blocks by.
    pub fn width(&self) -> usize {
        match &self.source {
            BlockSource::Rows(r) => r.width(),
            #[cfg(feature = "hdf5")]
            BlockSource::H5ad(r) => r.width(),
            BlockSource::Whole(m) => m.as_ref().map_or(0, |m| m.genes.len()),
        }
    }

    /// What the reading dropped (known after the first block).
    pub fn report(&self) -> &ReadReport {
        &self.report
    }

    fn cls_mismatch(&self, cls: &Path, labels: usize) -> Error {
        let more = if labels < self.samples { " at least" } else { "" };
        Error::format(cls, format!("{labels} labels, but {} has{more} {} samples", self.path.display(), self.samples))
    }
}

/// Takes the first `n` samples out of `m` (which keeps the rest).
fn split_rows(m: &mut ExpressionMatrix, n: usize) -> ExpressionMatrix {
    let g = m.genes.len();
    let rest = m.values.split_off(n * g);
    let values = std::mem::replace(&mut m.values, rest);
    let rest = m.samples.split_off(n);
    let samples = std::mem::replace(&mut m.samples, rest);
    let labels = m.labels.as_mut().map(|l| {
        let rest = l.split_off(n);
        std::mem::replace(l, rest)
    });
    ExpressionMatrix { samples, genes: m.genes.clone(), values, labels }
}

impl ExpressionMatrix {
    /// Number of samples (rows).
    pub fn n_samples(&self) -> usize {
        self.samples.len()
    }

    /// Number of genes (columns).
    pub fn n_genes(&self) -> usize {
        self.genes.len()
    }

    /// The values of sample `s` (one per gene).
    pub fn row(&self, s: usize) -> &[f32] {
        let g = self.genes.len();
        &self.values[s * g..(s + 1) * g]
    }

    /// Checks that `values` and `labels` have the sizes that `samples` and `genes` imply.
    pub fn check_shape(&self) -> Result<()> {
        let (s, g) = (self.samples.len(), self.genes.len());
        if s.checked_mul(g) != Some(self.values.len()) {
            return Err(Error::Input(format!("matrix has {} values, expected {s} samples × {g} genes", self.values.len())));
        }
        if let Some(l) = &self.labels
            && l.len() != s
        {
            return Err(Error::Input(format!("{} labels for {s} samples", l.len())));
        }
        Ok(())
    }

    /// Number of NaN / infinite values.
    pub fn count_non_finite(&self) -> usize {
        self.values.iter().filter(|v| !v.is_finite()).count()
    }

    /// Error (naming `path`, the sample and gene of the first one, and the count) when any value
    /// is NaN or infinite.
    pub fn check_finite(&self, path: &Path) -> Result<()> {
        self.check_finite_from(path, 0)
    }

    /// [`check_finite`](Self::check_finite) for a block whose first sample is row `first_row` (0-based) of the file.
    pub fn check_finite_from(&self, path: &Path, first_row: usize) -> Result<()> {
        let Some(i) = self.values.iter().position(|v| !v.is_finite()) else {
            return Ok(());
        };
        let g = self.genes.len().max(1);
        let (s, j) = (i / g, i % g);
        let name = |v: &[String], k: usize| v.get(k).cloned().unwrap_or_else(|| "?".into());
        Err(Error::Input(format!(
            "{}: {} non-finite value(s); first is {} at sample '{}' (row {}), gene '{}' (column {})",
            path.display(),
            self.count_non_finite(),
            self.values[i],
            name(&self.samples, s),
            first_row + s + 1,
            name(&self.genes, j),
            j + 1
        )))
    }

    /// Drops genes whose name came earlier (keeps the first); returns how many were dropped.
    pub fn drop_duplicate_genes(&mut self) -> usize {
        let mut seen = HashSet::new();
        let keep: Vec<bool> = self.genes.iter().map(|g| seen.insert(g.as_str())).collect();
        let dropped = keep.iter().filter(|k| !**k).count();
        if dropped == 0 {
            return 0;
        }
        let ng = self.genes.len();
        if self.values.len().is_multiple_of(ng) {
            self.values =
                self.values.chunks_exact(ng).flat_map(|row| row.iter().zip(&keep).filter(|(_, k)| **k).map(|(v, _)| *v)).collect();
        }
        let mut it = keep.iter();
        self.genes.retain(|_| *it.next().unwrap_or(&true));
        dropped
    }
}

/// Writes `text` to `dir/name` for a test and returns the path.
#[cfg(test)]
pub(crate) fn write_test_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Path of a file in the shared test data (`../shared/data` beside the workspace).
#[cfg(test)]
pub(crate) fn test_data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data").join(rel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::write_test_file as write;

    /// Every block of `path` concatenated, read `rows` samples at a time.
    fn blocks(path: &Path, opts: &ReadOptions, rows: usize) -> ExpressionMatrix {
        let mut b = read_expression_blocks(path, opts).unwrap();
        let mut all = b.next_block(rows).unwrap().unwrap();
        assert!(all.samples.len() <= rows);
        while let Some(m) = b.next_block(rows).unwrap() {
            assert!(m.samples.len() <= rows);
            assert_eq!(m.genes, all.genes);
            all.samples.extend(m.samples);
            all.values.extend(m.values);
            if let (Some(a), Some(l)) = (all.labels.as_mut(), m.labels) {
                a.extend(l);
            }
        }
        all
    }

    #[test]
    fn blocks_are_the_whole_file_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let csv = write(dir.path(), "x.csv", "id,G1,label,G2,G1\ns1,1,A,2,9\ns2,3,B,4,9\ns3,5,A,6,9\n\ns4,7,B,8,9\ns5,9,A,1,9\n");
        let with_label = ReadOptions { label_column: Some("label".into()), cls: None };
        let cases = [
            (csv.clone(), with_label.clone()),
            (
                test_data("scanpy_pbmc68k_reduced/pbmc68k_reduced.anndata0.12.h5ad"),
                ReadOptions { label_column: Some("bulk_labels".into()), cls: None },
            ),
            (test_data("squidpy_visium_tiny/test_data.h5ad"), ReadOptions { label_column: Some("leiden".into()), cls: None }),
            (
                test_data("gseapy_leukemia/Leukemia_hgu95av2.trim.txt.gz"),
                ReadOptions { label_column: None, cls: Some(test_data("gseapy_leukemia/Leukemia.cls")) },
            ),
        ];
        for (p, opts) in cases {
            let whole = read_expression(&p, &opts).unwrap();
            for rows in [1, 2, 7, usize::MAX] {
                assert_eq!(blocks(&p, &opts, rows), whole, "{} by {rows}", p.display());
            }
        }
        let mut b = read_expression_blocks(&csv, &with_label).unwrap();
        b.next_block(2).unwrap();
        assert_eq!(b.report().dropped_duplicate_genes, 1);
        // a .cls with fewer labels than samples fails on the block that runs past it; more labels, at the end
        let cls = write(dir.path(), "x.cls", "4 2 1\n# A B\nA B A B\n");
        let mut b = read_expression_blocks(&csv, &ReadOptions { cls: Some(cls), ..with_label.clone() }).unwrap();
        assert!(b.next_block(2).unwrap().is_some());
        assert!(b.next_block(2).unwrap().is_some());
        assert!(b.next_block(2).unwrap_err().to_string().contains("4 labels"));
        let cls = write(dir.path(), "y.cls", "6 2 1\n# A B\nA B A B A B\n");
        let mut b = read_expression_blocks(&csv, &ReadOptions { cls: Some(cls), ..with_label.clone() }).unwrap();
        assert!(b.next_block(4).unwrap().is_some());
        assert!(b.next_block(4).unwrap().is_some());
        assert!(b.next_block(4).unwrap_err().to_string().contains("6 labels"));
        assert!(read_expression_blocks(&write(dir.path(), "h.csv", "id,G1\n"), &ReadOptions::default()).unwrap().next_block(3).is_err());
    }

    #[test]
    fn dispatch_gsea_with_cls() {
        let opts = ReadOptions { label_column: None, cls: Some(test_data("gseapy_leukemia/Leukemia.cls")) };
        let p = test_data("gseapy_leukemia/Leukemia_hgu95av2.trim.txt.gz");
        assert_eq!(detect_format(&p).unwrap(), Format::Gsea);
        let (m, rep) = read_expression_with_report(&p, &opts).unwrap();
        assert_eq!((m.n_samples(), m.n_genes()), (48, 9020));
        assert_eq!(rep.dropped_duplicate_genes, 11548 - 9020);
        let labels = m.labels.unwrap();
        assert_eq!(labels[..24], vec!["ALL".to_string(); 24][..]);
        assert_eq!(labels[24..], vec!["AML".to_string(); 24][..]);
    }

    #[test]
    fn cls_count_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "x.txt", "Gene\tNAME\ts1\ts2\nA\t-\t1\t2\n");
        let cls = write(dir.path(), "x.cls", "3 2 1\n# a b\na b a\n");
        let opts = ReadOptions { label_column: None, cls: Some(cls) };
        let e = read_expression(&p, &opts).unwrap_err().to_string();
        assert!(e.contains("x.cls") && e.contains("3 labels") && e.contains("2 samples"), "{e}");
    }

    #[test]
    fn dispatch_txt_tsv_csv() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "t.txt", "id\tA\tA\tB\ns1\t1\t2\t3\n");
        assert_eq!(detect_format(&p).unwrap(), Format::Tsv);
        let (m, rep) = read_expression_with_report(&p, &ReadOptions::default()).unwrap();
        assert_eq!(m.genes, vec!["A", "B"]);
        assert_eq!(m.values, vec![1.0, 3.0]);
        assert_eq!(rep.dropped_duplicate_genes, 1);

        let p = write(dir.path(), "t.CSV", "id,A,y\ns1,1,u\n");
        let opts = ReadOptions { label_column: Some("y".into()), cls: None };
        let m = read_expression(&p, &opts).unwrap();
        assert_eq!(m.labels, Some(vec!["u".to_string()]));

        let p = write(dir.path(), "t.xlsx", "");
        assert!(matches!(read_expression(&p, &ReadOptions::default()), Err(Error::Unsupported(_))));
        let p = write(dir.path(), "g.txt", "Gene\tNAME\ts1\nA\t-\t1\n");
        let opts = ReadOptions { label_column: Some("y".into()), cls: None };
        assert!(matches!(read_expression(&p, &opts), Err(Error::Input(_))));
    }

    #[test]
    fn check_finite_names_sample_and_gene() {
        let m = ExpressionMatrix {
            samples: vec!["s1".into(), "s2".into()],
            genes: vec!["A".into(), "B".into()],
            values: vec![1.0, 2.0, f32::INFINITY, f32::NAN],
            labels: None,
        };
        assert_eq!(m.count_non_finite(), 2);
        let e = m.check_finite(Path::new("data.csv")).unwrap_err().to_string();
        assert!(e.contains("data.csv") && e.contains("2 non-finite") && e.contains("'s2'") && e.contains("'A'"), "{e}");
        let ok = ExpressionMatrix { values: vec![1.0; 4], ..m.clone() };
        ok.check_finite(Path::new("x")).unwrap();
        assert_eq!(ok.row(1), &[1.0, 1.0]);
        let bad = ExpressionMatrix { values: vec![1.0; 3], ..m };
        assert!(bad.check_shape().is_err());
    }

    #[cfg(feature = "hdf5")]
    #[test]
    fn dispatch_hdf5_formats() {
        let p = test_data("scanpy_pbmc68k_reduced/pbmc68k_reduced.anndata0.12.h5ad");
        let opts = ReadOptions { label_column: Some("bulk_labels".into()), cls: None };
        let m = read_expression(&p, &opts).unwrap();
        assert_eq!((m.n_samples(), m.n_genes()), (700, 765));
        m.check_finite(&p).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let h5 = dir.path().join("m.hdf5");
        h5::write_hdf5(&h5, &m).unwrap();
        let back = read_expression(&h5, &ReadOptions::default()).unwrap();
        assert_eq!(back, m);

        let junk = dir.path().join("junk.h5");
        std::fs::write(&junk, vec![7u8; 10_000]).unwrap();
        let e = read_expression(&junk, &ReadOptions::default()).unwrap_err();
        assert!(matches!(e, Error::Hdf5 { .. }) && e.to_string().contains("junk.h5"), "{e}");
    }
}

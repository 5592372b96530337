//! CSV / TSV expression tables, samples × genes (gzip allowed).
//!
//! Header row: sample-id column name (may be empty), then gene names. Each following row: sample id,
//! then one value per gene. A header with one field fewer than the rows (R `write.table` style)
//! is read as genes only. An optional label column, chosen by name, is taken out of the genes.
//! Simple double-quoted fields are understood; quoted fields cannot span lines.

use super::ExpressionMatrix;
use super::text::{Lines, list_names, parse_value, split_fields};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The delimiter for a file name: `,` for `.csv`/`.csv.gz`, tab otherwise.
pub fn delimiter_for(path: &Path) -> char {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".csv") { ',' } else { '\t' }
}

/// Reads a CSV (`.csv`) or TSV (anything else) table; see [`read_delimited_with`].
pub fn read_delimited(path: &Path, label_column: Option<&str>) -> Result<ExpressionMatrix> {
    read_delimited_with(path, delimiter_for(path), label_column)
}

/// Reads a samples × genes table with the given delimiter.
pub fn read_delimited_with(path: &Path, delim: char, label_column: Option<&str>) -> Result<ExpressionMatrix> {
    let mut rows = DelimRows::open(path, delim, label_column)?;
    rows.next_block(usize::MAX)?.ok_or_else(|| Error::format(path, "no data rows after the header"))
}

/// A samples × genes table read a block of rows at a time: memory stays bounded by the block
/// whatever the number of rows (`infer predict` on a 10M-row file).
pub struct DelimRows {
    lines: Lines,
    path: PathBuf,
    delim: char,
    header: Vec<String>,
    label_column: Option<String>,
    /// Value columns (header without the sample-id column) and the label column's index among
    /// them; set on the first data row (it tells whether the header names the id column).
    layout: Option<(Vec<String>, Option<usize>)>,
    genes: Vec<String>,
    rows: usize,
}

impl DelimRows {
    /// Opens the table and reads its header.
    pub fn open(path: &Path, delim: char, label_column: Option<&str>) -> Result<Self> {
        let mut lines = Lines::open(path)?;
        let mut header = None;
        while let Some((n, line)) = lines.next_line()? {
            if line.trim().is_empty() {
                continue;
            }
            header = Some(split_fields(line, delim).map_err(|m| Error::format(path, format!("line {n}: {m}")))?);
            break;
        }
        let Some(mut header) = header else {
            return Err(Error::format(path, "no header line (empty file)"));
        };
        for h in header.iter_mut() {
            *h = h.trim().to_string();
        }
        let label_column = label_column.map(str::to_string);
        Ok(DelimRows { lines, path: path.to_path_buf(), delim, header, label_column, layout: None, genes: Vec::new(), rows: 0 })
    }

    /// Fields of the header line (about the number of genes).
    pub fn width(&self) -> usize {
        self.header.len()
    }

    /// The next at most `max_rows` rows; `None` after the last row. Every block has the same
    /// genes. A table without any data row is an error (on the first call).
    pub fn next_block(&mut self, max_rows: usize) -> Result<Option<ExpressionMatrix>> {
        let path = self.path.clone();
        let fmt = |line: usize, msg: String| Error::format(&path, format!("line {line}: {msg}"));
        let (mut samples, mut values, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        while samples.len() < max_rows {
            let Some((n, line)) = self.lines.next_line()? else { break };
            if line.trim().is_empty() {
                continue;
            }
            let fields = split_fields(line, self.delim).map_err(|m| fmt(n, m))?;
            if self.layout.is_none() {
                self.layout = Some(layout(&self.header, &fields, self.label_column.as_deref()).map_err(|e| match e {
                    LayoutError::NoColumns => fmt(n, "no value columns".into()),
                    LayoutError::NoLabel(msg) => Error::format(&path, msg),
                })?);
                let (cols, label_idx) = self.layout.as_ref().expect("set above");
                self.genes = cols.iter().enumerate().filter(|(j, _)| Some(*j) != *label_idx).map(|(_, c)| c.clone()).collect();
            }
            let (cols, label_idx) = self.layout.as_ref().expect("set above");
            if fields.len() != cols.len() + 1 {
                return Err(fmt(
                    n,
                    format!("expected {} fields (sample id + {} columns), found {}", cols.len() + 1, cols.len(), fields.len()),
                ));
            }
            let sample = fields[0].trim();
            for (j, f) in fields[1..].iter().enumerate() {
                if Some(j) == *label_idx {
                    labels.push(f.trim().to_string());
                    continue;
                }
                match parse_value(f) {
                    Some(v) => values.push(v),
                    None => {
                        return Err(fmt(
                            n,
                            format!("field {} (sample '{sample}', column '{}'): cannot parse '{}' as a number", j + 2, cols[j], f.trim()),
                        ));
                    }
                }
            }
            samples.push(sample.to_string());
        }
        if samples.is_empty() {
            return if self.rows == 0 { Err(Error::format(&path, "no data rows after the header")) } else { Ok(None) };
        }
        self.rows += samples.len();
        let labels = self.layout.as_ref().and_then(|(_, l)| l.map(|_| labels));
        Ok(Some(ExpressionMatrix { samples, genes: self.genes.clone(), values, labels }))
    }
}

enum LayoutError {
    NoColumns,
    NoLabel(String),
}

/// Value columns and the label column's index among them, from the header and the first data row
/// (a header one field short has no sample-id column name, R `write.table` style).
fn layout(
    header: &[String],
    first: &[String],
    label_column: Option<&str>,
) -> std::result::Result<(Vec<String>, Option<usize>), LayoutError> {
    let cols: Vec<String> = if first.len() == header.len() + 1 { header.to_vec() } else { header[1..].to_vec() };
    if cols.is_empty() {
        return Err(LayoutError::NoColumns);
    }
    let label_idx = match label_column {
        None => None,
        Some(name) => match cols.iter().position(|c| c == name) {
            Some(i) => Some(i),
            None => return Err(LayoutError::NoLabel(format!("label column '{name}' not found; columns: {}", list_names(&cols)))),
        },
    };
    Ok((cols, label_idx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::write_test_file as write;

    #[test]
    fn csv_with_labels_and_quotes() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "x.csv", "id,\"G,1\",label,G2\ns1,1,\"A, b\",2\n\"s2\",3,B,NA\n");
        let m = read_delimited(&p, Some("label")).unwrap();
        assert_eq!(m.samples, vec!["s1", "s2"]);
        assert_eq!(m.genes, vec!["G,1", "G2"]);
        assert_eq!(m.labels, Some(vec!["A, b".to_string(), "B".to_string()]));
        assert_eq!(&m.values[..3], &[1.0, 2.0, 3.0]);
        assert!(m.values[3].is_nan());

        let m = read_delimited(&write(dir.path(), "y.csv", "id,G1\ns1,1\n"), None).unwrap();
        assert_eq!(m.labels, None);
    }

    #[test]
    fn tsv_gz_and_short_header() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.tsv.gz");
        let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&p).unwrap(), Default::default());
        enc.write_all(b"G1\tG2\ns1\t1\t2\ns2\t3\t4\n").unwrap();
        enc.finish().unwrap();
        let m = read_delimited(&p, None).unwrap();
        assert_eq!(m.genes, vec!["G1", "G2"]);
        assert_eq!(m.samples, vec!["s1", "s2"]);
        assert_eq!(m.values, vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn missing_label_column_lists_columns() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "x.tsv", "id\tG1\tG2\ns1\t1\t2\n");
        let e = read_delimited(&p, Some("cell_type")).unwrap_err();
        assert!(matches!(e, Error::Format { .. }));
        let e = e.to_string();
        assert!(e.contains("x.tsv") && e.contains("'cell_type'") && e.contains("G1, G2"), "{e}");
    }

    #[test]
    fn ragged_and_non_numeric() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "r.csv", "id,G1,G2\ns1,1,2\ns2,1\n");
        let e = read_delimited(&p, None).unwrap_err();
        assert!(matches!(e, Error::Format { .. }));
        let e = e.to_string();
        assert!(e.contains("r.csv") && e.contains("line 3") && e.contains("found 2"), "{e}");

        let p = write(dir.path(), "n.csv", "id,G1,G2\ns1,1,x1\n");
        let e = read_delimited(&p, None).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("'x1'") && e.contains("'G2'") && e.contains("'s1'"), "{e}");

        let p = write(dir.path(), "q.csv", "id,G1\n\"s1,1\n");
        let e = read_delimited(&p, None).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("quote"), "{e}");

        let p = write(dir.path(), "h.csv", "id,G1\n");
        assert!(matches!(read_delimited(&p, None), Err(Error::Format { .. })));
    }
}

//! GSEA expression files and `.cls` phenotype labels.
//!
//! * `.txt` (optionally `.gz`): tab-separated, header `Gene<TAB>NAME<TAB>sample1 ...` (any names in
//!   the first two columns); each row is one gene: symbol, description/probe, one value per sample.
//! * `.gct` (v1.2): line 1 `#1.2`, line 2 `<genes><TAB><samples>`, then the same table.
//! * `.cls`: line 1 `<samples> <classes> 1`, line 2 `# NAME1 NAME2 ...`, line 3 one label per
//!   sample, either class names or 0-based indices into the line-2 names.
//!
//! Rows with a gene symbol seen before are dropped (the first occurrence is kept) and counted.
//! Values `NA`, `NaN` and empty cells read as NaN; anything else non-numeric is an error.

use super::text::{Lines, parse_value};
use super::{ExpressionMatrix, ReadReport};
use crate::error::{Error, Result};
use std::collections::HashSet;
use std::path::Path;

/// Reads a GSEA `.txt`/`.gct` expression file (gzip allowed) into samples × genes.
pub fn read_gsea(path: &Path) -> Result<(ExpressionMatrix, ReadReport)> {
    let mut lines = Lines::open(path)?;
    let fmt = |line: usize, msg: String| Error::format(path, format!("line {line}: {msg}"));

    // Header (after the GCT preamble, if any).
    let mut gct_dims: Option<(usize, usize)> = None;
    let header = loop {
        let Some((n, line)) = lines.next_line()? else {
            return Err(Error::format(path, "no header line (empty file)"));
        };
        if line.trim().is_empty() {
            continue;
        }
        let t = line.trim();
        if t.starts_with("#1.3") {
            return Err(fmt(n, "GCT version 1.3 is not supported (use #1.2)".into()));
        }
        if t.starts_with("#1.2") {
            let Some((n2, dims)) = lines.next_line()? else {
                return Err(Error::format(path, "GCT: missing dimension line"));
            };
            let d: Vec<&str> = dims.split_whitespace().collect();
            let parsed = match d.as_slice() {
                [r, c, ..] => r.parse::<usize>().ok().zip(c.parse::<usize>().ok()),
                _ => None,
            };
            match parsed {
                Some(rc) => gct_dims = Some(rc),
                None => {
                    return Err(fmt(n2, format!("GCT: expected '<genes> <samples>', found '{dims}'")));
                }
            }
            continue;
        }
        let mut fields: Vec<String> = line.split('\t').map(|s| s.trim().to_string()).collect();
        while fields.len() > 3 && fields.last().is_some_and(|f| f.is_empty()) {
            fields.pop();
        }
        if fields.len() < 3 {
            return Err(fmt(
                n,
                format!("expected a tab-separated header 'Gene<TAB>NAME<TAB>samples...', found {} column(s)", fields.len()),
            ));
        }
        break fields;
    };
    let samples: Vec<String> = header[2..].to_vec();
    if let Some(i) = samples.iter().position(|s| s.is_empty()) {
        return Err(Error::format(path, format!("header: empty sample name in column {}", i + 3)));
    }
    let ns = samples.len();
    let ncol = ns + 2;

    let mut genes = Vec::new();
    let mut seen = HashSet::new();
    let mut by_gene: Vec<f32> = Vec::new(); // genes × samples while reading
    let mut dropped = 0usize;
    let mut rows = 0usize;
    while let Some((n, line)) = lines.next_line()? {
        if line.trim().is_empty() {
            continue;
        }
        let mut fields: Vec<&str> = line.split('\t').collect();
        while fields.len() > ncol && fields.last().is_some_and(|f| f.trim().is_empty()) {
            fields.pop();
        }
        if fields.len() != ncol {
            return Err(fmt(n, format!("expected {ncol} tab-separated columns (gene, description, {ns} samples), found {}", fields.len())));
        }
        rows += 1;
        let gene = fields[0].trim();
        if gene.is_empty() {
            return Err(fmt(n, "empty gene symbol".into()));
        }
        let start = by_gene.len();
        for (j, f) in fields[2..].iter().enumerate() {
            match parse_value(f) {
                Some(v) => by_gene.push(v),
                None => {
                    return Err(fmt(
                        n,
                        format!("column {} (sample '{}', gene '{gene}'): cannot parse '{}' as a number", j + 3, samples[j], f.trim()),
                    ));
                }
            }
        }
        if seen.insert(gene.to_string()) {
            genes.push(gene.to_string());
        } else {
            by_gene.truncate(start);
            dropped += 1;
        }
    }
    if let Some((r, c)) = gct_dims
        && (r != rows || c != ns)
    {
        return Err(Error::format(path, format!("GCT header says {r} genes × {c} samples, table has {rows} genes × {ns} samples")));
    }
    if genes.is_empty() {
        return Err(Error::format(path, "no gene rows after the header"));
    }
    let ng = genes.len();
    let mut values = vec![0f32; ns * ng];
    for g in 0..ng {
        for s in 0..ns {
            values[s * ng + g] = by_gene[g * ns + s];
        }
    }
    let m = ExpressionMatrix { samples, genes, values, labels: None };
    Ok((m, ReadReport { dropped_duplicate_genes: dropped }))
}

/// True when a header line looks like a GSEA table (`Gene<TAB>NAME` or `NAME<TAB>Description`).
pub fn is_gsea_header(line: &str) -> bool {
    let mut it = line.split('\t').map(|s| s.trim().to_ascii_lowercase());
    let (a, b) = (it.next().unwrap_or_default(), it.next().unwrap_or_default());
    (a == "gene" && b == "name") || (a == "name" && b == "description")
}

/// Reads a categorical `.cls` file; returns one class name per sample.
pub fn read_cls(path: &Path) -> Result<Vec<String>> {
    let mut lines = Lines::open(path)?;
    let mut content: Vec<(usize, String)> = Vec::new();
    while let Some((n, line)) = lines.next_line()? {
        if !line.trim().is_empty() {
            content.push((n, line.trim().to_string()));
        }
    }
    let fmt = |line: usize, msg: String| Error::format(path, format!("line {line}: {msg}"));
    let Some((n1, first)) = content.first() else {
        return Err(Error::format(path, "empty .cls file"));
    };
    if first.to_ascii_lowercase().starts_with("#numeric") {
        return Err(fmt(*n1, "continuous (#numeric) .cls files are not supported".into()));
    }
    let head: Vec<&str> = first.split_whitespace().collect();
    let (n_samples, n_classes) = match head.as_slice() {
        [a, b, ..] => match (a.parse::<usize>(), b.parse::<usize>()) {
            (Ok(a), Ok(b)) => (a, b),
            _ => {
                return Err(fmt(*n1, format!("expected '<samples> <classes> 1', found '{first}'")));
            }
        },
        _ => {
            return Err(fmt(*n1, format!("expected '<samples> <classes> 1', found '{first}'")));
        }
    };
    let Some((n2, second)) = content.get(1) else {
        return Err(Error::format(path, "missing line 2 ('# NAME1 NAME2 ...')"));
    };
    let Some(names) = second.strip_prefix('#') else {
        return Err(fmt(*n2, format!("expected '# NAME1 NAME2 ...', found '{second}'")));
    };
    let names: Vec<String> = names.split_whitespace().map(String::from).collect();
    if names.len() != n_classes {
        return Err(fmt(*n2, format!("line 1 says {n_classes} classes, found {} names", names.len())));
    }
    let labels: Vec<String> = content[2..].iter().flat_map(|(_, l)| l.split_whitespace().map(String::from)).collect();
    let label_line = content.get(2).map_or(3, |(n, _)| *n);
    if labels.len() != n_samples {
        return Err(fmt(label_line, format!("line 1 says {n_samples} samples, found {} labels", labels.len())));
    }
    if labels.iter().all(|l| names.contains(l)) {
        return Ok(labels);
    }
    // Numeric labels: indices into the names.
    let index = |l: &str| l.parse::<usize>().ok().filter(|&k| k < names.len());
    let mut out = Vec::with_capacity(labels.len());
    for (i, l) in labels.iter().enumerate() {
        match index(l) {
            Some(k) => out.push(names[k].clone()),
            None => {
                let bad = labels.iter().position(|l| !names.contains(l) && index(l).is_none());
                let msg = match bad {
                    Some(b) => format!(
                        "label '{}' of sample {} is neither a class name ({}) nor an index below {}",
                        labels[b],
                        b + 1,
                        names.join(", "),
                        names.len()
                    ),
                    None => format!("labels mix class names ('{l}', sample {}) and indices", i + 1),
                };
                return Err(fmt(label_line, msg));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::data::test_data as data;

    const LEUKEMIA: &str = "gseapy_leukemia/Leukemia_hgu95av2.trim.txt.gz";
    const LEUKEMIA_CLS: &str = "gseapy_leukemia/Leukemia.cls";

    #[test]
    fn leukemia_real_file() {
        let (m, rep) = read_gsea(&data(LEUKEMIA)).unwrap();
        assert_eq!(m.samples.len(), 48);
        assert_eq!(m.samples[0], "ALL_1");
        assert_eq!(m.samples[47], "AML_24");
        // 11548 rows, 9020 distinct symbols.
        assert_eq!(m.genes.len() + rep.dropped_duplicate_genes, 11548);
        assert_eq!(m.genes.len(), 9020);
        assert_eq!(m.values.len(), 48 * 9020);
        assert_eq!(m.genes[0], "MAPK3");
        assert_eq!(m.genes[1], "TIE1");
        assert_eq!(m.values[0], 1633.6); // MAPK3, ALL_1
        assert_eq!(m.values[9020 + 1], 159.0); // TIE1, ALL_2
        assert_eq!(m.values[25 * 9020], -220.0); // MAPK3, AML_2
        m.check_finite(&data(LEUKEMIA)).unwrap();

        let labels = read_cls(&data(LEUKEMIA_CLS)).unwrap();
        assert_eq!(labels.len(), 48);
        assert_eq!(labels.iter().filter(|l| *l == "ALL").count(), 24);
        assert_eq!(labels[0], "ALL");
        assert_eq!(labels[47], "AML");
    }

    use crate::data::write_test_file as write;

    #[test]
    fn gct_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "x.gct", "#1.2\n3\t2\nNAME\tDescription\ts1\ts2\nA\tna\t1\t2\nB\tna\t3\tNA\nA\tdup\t5\t6\n");
        let (m, rep) = read_gsea(&p).unwrap();
        assert_eq!(m.genes, vec!["A", "B"]);
        assert_eq!(m.samples, vec!["s1", "s2"]);
        assert_eq!(rep.dropped_duplicate_genes, 1);
        assert_eq!(&m.values[..3], &[1.0, 3.0, 2.0]);
        assert!(m.values[3].is_nan());

        let bad = write(dir.path(), "y.gct", "#1.2\n5\t2\nNAME\tDescription\ts1\ts2\nA\tna\t1\t2\n");
        let e = read_gsea(&bad).unwrap_err().to_string();
        assert!(e.contains("y.gct") && e.contains("5 genes"), "{e}");
    }

    #[test]
    fn malformed_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "r.txt", "Gene\tNAME\ts1\ts2\nA\tx\t1\t2\nB\tx\t1\n");
        let e = read_gsea(&p).unwrap_err();
        assert!(matches!(e, Error::Format { .. }));
        let e = e.to_string();
        assert!(e.contains("r.txt") && e.contains("line 3") && e.contains("found 3"), "{e}");

        let p = write(dir.path(), "n.txt", "Gene\tNAME\ts1\ts2\nA\tx\t1\tabc\n");
        let e = read_gsea(&p).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("'abc'") && e.contains("s2") && e.contains("gene 'A'"), "{e}");

        let p = write(dir.path(), "e.txt", "");
        assert!(matches!(read_gsea(&p), Err(Error::Format { .. })));
        let p = write(dir.path(), "h.txt", "Gene\tNAME\n");
        assert!(matches!(read_gsea(&p), Err(Error::Format { .. })));
    }

    #[test]
    fn trailing_tab_is_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "t.txt", "Gene\tNAME\ts1\ts2\t\r\nA\tx\t1\t2\t\r\n");
        let (m, _) = read_gsea(&p).unwrap();
        assert_eq!(m.samples, vec!["s1", "s2"]);
        assert_eq!(m.values, vec![1.0, 2.0]);
    }

    #[test]
    fn cls_variants() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "a.cls", "4 2 1\n#A B\n1 0 1 1\n");
        assert_eq!(read_cls(&p).unwrap(), vec!["B", "A", "B", "B"]);
        let p = write(dir.path(), "b.cls", "3 2 1\r\n# x y\r\ny\tx y\r\n");
        assert_eq!(read_cls(&p).unwrap(), vec!["y", "x", "y"]);
        let p = write(dir.path(), "c.cls", "3 2 1\n# x y\nx y\n");
        let e = read_cls(&p).unwrap_err().to_string();
        assert!(e.contains("c.cls") && e.contains("3 samples") && e.contains("found 2"), "{e}");
        let p = write(dir.path(), "d.cls", "2 2 1\n# x y\nx z\n");
        let e = read_cls(&p).unwrap_err().to_string();
        assert!(e.contains("'z'") && e.contains("sample 2"), "{e}");
        let p = write(dir.path(), "m.cls", "2 2 1\n# x y\nx 1\n");
        let e = read_cls(&p).unwrap_err().to_string();
        assert!(e.contains("mix"), "{e}");
        let p = write(dir.path(), "e.cls", "2 3 1\n# x y\nx y\n");
        assert!(read_cls(&p).is_err());
        let p = write(dir.path(), "f.cls", "#numeric\n#x\n1 2\n");
        assert!(read_cls(&p).is_err());
    }
}

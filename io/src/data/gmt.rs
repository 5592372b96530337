//! Gene sets in MSigDB's GMT format, and the genes × sets membership table built from them.
//!
//! Each line is `name<TAB>description<TAB>gene<TAB>gene...` (gzip allowed). Tolerated: blank lines,
//! `#` comment lines, `\r\n` endings, a UTF-8 BOM, blank gene fields and trailing tabs (skipped),
//! spaces around fields (trimmed), a gene listed twice in one set (kept once, counted). Errors name
//! the file and line: fewer than 3 fields, an empty set name, a set without genes, and a set name
//! that comes twice (see [`DuplicateSets`] for sets repeated across merged files).

use super::text::Lines;
use crate::error::{Error, Result};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// One gene set as read.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneSet {
    /// Set name (first field).
    pub name: String,
    /// Description (second field).
    pub description: String,
    /// Distinct genes in file order.
    pub genes: Vec<String>,
    /// Where it came from: file and 1-based line.
    pub path: PathBuf,
    /// 1-based line number in `path`.
    pub line: usize,
}

/// What to do when merged files define a set name twice. Within one file a repeated name is
/// always an error; across files a repeat with the same genes is dropped (counted) under every
/// policy, and one with different genes is handled as chosen here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DuplicateSets {
    /// Stop with an error naming both places (default).
    #[default]
    Error,
    /// Keep the first definition, drop later ones (counted).
    First,
    /// Keep both: a later one is renamed `NAME@<file stem>`.
    Rename,
}

impl std::str::FromStr for DuplicateSets {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "error" => Ok(Self::Error),
            "first" => Ok(Self::First),
            "rename" => Ok(Self::Rename),
            _ => Err(format!("unknown duplicate-set policy `{s}` (error, first, rename)")),
        }
    }
}

/// What the reader tolerated or changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GmtReport {
    /// Genes listed again within the same set (kept once).
    pub duplicate_genes: usize,
    /// Empty gene fields (blank cells, trailing tabs).
    pub blank_fields: usize,
    /// Sets dropped as repeats across files (identical, or by [`DuplicateSets::First`]).
    pub dropped_sets: usize,
    /// Sets renamed by [`DuplicateSets::Rename`].
    pub renamed_sets: usize,
}

/// Reads one GMT file.
pub fn read_gmt(path: &Path) -> Result<(Vec<GeneSet>, GmtReport)> {
    let mut report = GmtReport::default();
    let sets = read_one(path, &mut report)?;
    Ok((sets, report))
}

fn read_one(path: &Path, report: &mut GmtReport) -> Result<Vec<GeneSet>> {
    let mut lines = Lines::open(path)?;
    let mut sets = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let fmt = |line: usize, msg: String| Error::format(path, format!("line {line}: {msg}"));
    while let Some((no, line)) = lines.next_line()? {
        let line = if no == 1 { line.trim_start_matches('\u{feff}') } else { line };
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        if fields.len() < 3 {
            return Err(fmt(no, format!("expected `name<TAB>description<TAB>gene...`, found {} field(s)", fields.len())));
        }
        let name = fields[0];
        if name.is_empty() {
            return Err(fmt(no, "empty gene set name".into()));
        }
        if let Some(first) = seen.get(name) {
            return Err(fmt(no, format!("gene set `{name}` is defined again (first on line {first})")));
        }
        let mut genes = Vec::new();
        let mut have = HashSet::new();
        for g in &fields[2..] {
            if g.is_empty() {
                report.blank_fields += 1;
            } else if have.insert(*g) {
                genes.push(g.to_string());
            } else {
                report.duplicate_genes += 1;
            }
        }
        if genes.is_empty() {
            return Err(fmt(no, format!("gene set `{name}` lists no genes")));
        }
        seen.insert(name.to_string(), no);
        sets.push(GeneSet { name: name.to_string(), description: fields[1].to_string(), genes, path: path.to_path_buf(), line: no });
    }
    Ok(sets)
}

/// Reads and merges several GMT files in order; repeated set names follow `policy`.
pub fn read_gmts(paths: &[PathBuf], policy: DuplicateSets) -> Result<(Vec<GeneSet>, GmtReport)> {
    let mut report = GmtReport::default();
    let mut all: Vec<GeneSet> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for path in paths {
        for mut s in read_one(path, &mut report)? {
            if let Some(&i) = index.get(&s.name) {
                let first = &all[i];
                let same = first.genes.iter().collect::<HashSet<_>>() == s.genes.iter().collect::<HashSet<_>>();
                if same || policy == DuplicateSets::First {
                    report.dropped_sets += 1;
                    continue;
                }
                if policy == DuplicateSets::Error {
                    return Err(Error::format(
                        path,
                        format!(
                            "line {}: gene set `{}` is also defined with other genes in {} line {} (choose a policy for repeated sets: first or rename)",
                            s.line,
                            s.name,
                            first.path.display(),
                            first.line
                        ),
                    ));
                }
                let stem = path
                    .file_name()
                    .map(|f| f.to_string_lossy().trim_end_matches(".gz").trim_end_matches(".gmt").to_string())
                    .unwrap_or_default();
                let mut name = format!("{}@{stem}", s.name);
                let mut k = 2;
                while index.contains_key(&name) {
                    name = format!("{}@{stem}#{k}", s.name);
                    k += 1;
                }
                s.name = name;
                report.renamed_sets += 1;
            }
            index.insert(s.name.clone(), all.len());
            all.push(s);
        }
    }
    if all.is_empty() {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::Input(format!("{}: no gene sets", names.join(", "))));
    }
    Ok((all, report))
}

/// Genes × gene sets: the multi-hot membership table of a gene-set collection.
#[derive(Debug, Clone, PartialEq)]
pub struct Memberships {
    /// Every gene in any set, sorted.
    pub genes: Vec<String>,
    /// Set names in reading order.
    pub sets: Vec<String>,
    /// `(gene index, set index)` pairs, sorted, distinct.
    pub pairs: Vec<(u32, u32)>,
}

impl Memberships {
    /// Builds the table from `sets`: genes sorted and distinct, sets in the given order.
    pub fn new(sets: &[GeneSet]) -> Self {
        let mut genes: Vec<String> = sets.iter().flat_map(|s| s.genes.iter().cloned()).collect();
        genes.sort();
        genes.dedup();
        let id: HashMap<&str, u32> = genes.iter().enumerate().map(|(i, g)| (g.as_str(), i as u32)).collect();
        let mut pairs: Vec<(u32, u32)> = sets
            .iter()
            .enumerate()
            .flat_map(|(s, set)| set.genes.iter().map(move |g| (g, s as u32)))
            .map(|(g, s)| (id[g.as_str()], s))
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        Self { genes, sets: sets.iter().map(|s| s.name.clone()).collect(), pairs }
    }

    /// Number of distinct genes.
    pub fn num_genes(&self) -> usize {
        self.genes.len()
    }

    /// Number of sets.
    pub fn num_sets(&self) -> usize {
        self.sets.len()
    }

    /// Set indices of each gene.
    pub fn sets_of_genes(&self) -> Vec<Vec<u32>> {
        let mut v = vec![Vec::new(); self.genes.len()];
        for &(g, s) in &self.pairs {
            v[g as usize].push(s);
        }
        v
    }

    /// The dense multi-hot rows `[genes.len(), num_sets]` of `genes`, from `pairs`.
    pub fn multi_hot(&self, genes: &[u32], pairs: &[(u32, u32)]) -> Vec<f32> {
        let k = self.sets.len();
        let row: HashMap<u32, usize> = genes.iter().enumerate().map(|(i, &g)| (g, i)).collect();
        let mut y = vec![0f32; genes.len() * k];
        for &(g, s) in pairs {
            if let Some(&r) = row.get(&g) {
                y[r * k + s as usize] = 1.0;
            }
        }
        y
    }
}

/// Edit distance, case-insensitive: insertions, deletions, substitutions and swaps of two
/// neighbouring letters (`TP35` → `TP53` is 1) each cost 1.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let mut v = (d[i - 1][j - 1] + (a[i - 1] != b[j - 1]) as usize).min(d[i - 1][j] + 1).min(d[i][j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// Up to `n` names closest to `wanted` in spelling (edit distance ≤ max(2, len/3); a name that
/// starts with `wanted` also counts), closest first, then the longest shared start.
pub fn close_spellings<'a>(wanted: &str, names: &'a [String], n: usize) -> Vec<&'a str> {
    let lw = wanted.to_lowercase();
    let prefix = |g: &str| g.to_lowercase().chars().zip(lw.chars()).take_while(|(a, b)| a == b).count();
    let mut near: Vec<(usize, std::cmp::Reverse<usize>, &String)> = names
        .iter()
        .map(|g| (edit_distance(wanted, g), std::cmp::Reverse(prefix(g)), g))
        .filter(|(d, _, g)| *d <= 2.max(wanted.chars().count() / 3) || (lw.len() >= 3 && g.to_lowercase().starts_with(&lw)))
        .collect();
    near.sort();
    near.into_iter().take(n).map(|(_, _, g)| g.as_str()).collect()
}

/// Index of `wanted` in `genes`: exact, else the one case-insensitive match; an unknown or
/// ambiguous name is an error that lists close spellings.
pub fn find_gene(wanted: &str, genes: &[String]) -> Result<usize> {
    let wanted = wanted.trim();
    if let Some(i) = genes.iter().position(|g| g == wanted) {
        return Ok(i);
    }
    let ci: Vec<usize> =
        (0..genes.len()).filter(|&i| genes[i].eq_ignore_ascii_case(wanted) || genes[i].to_lowercase() == wanted.to_lowercase()).collect();
    match ci.as_slice() {
        [i] => Ok(*i),
        [] => {
            let near = close_spellings(wanted, genes, 5);
            let hint = if near.is_empty() { "no close spellings".to_string() } else { format!("did you mean {}?", near.join(", ")) };
            Err(Error::Input(format!("gene `{wanted}` is not in the model's vocabulary ({} genes); {hint}", genes.len())))
        }
        many => Err(Error::Input(format!(
            "gene `{wanted}` matches {} genes when case is ignored: {}; give the exact spelling",
            many.len(),
            many.iter().map(|&i| genes[i].as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::write_test_file as write;

    #[test]
    fn hallmark_file() {
        let p = super::super::test_data("msigdb_hallmark/h.all.v7.0.symbols.gmt");
        let (sets, rep) = read_gmt(&p).unwrap();
        assert_eq!(sets.len(), 50);
        assert_eq!(sets[0].name, "HALLMARK_TNFA_SIGNALING_VIA_NFKB");
        assert!(sets[0].description.starts_with("http://"));
        assert_eq!(&sets[0].genes[..3], &["JUNB", "CXCL2", "ATF3"]);
        assert_eq!(rep, GmtReport::default());
        let m = Memberships::new(&sets);
        assert_eq!((m.num_genes(), m.num_sets(), m.pairs.len()), (4384, 50, 7322));
        let sizes: Vec<usize> = sets.iter().map(|s| s.genes.len()).collect();
        assert_eq!((*sizes.iter().min().unwrap(), *sizes.iter().max().unwrap()), (32, 200));
    }

    #[test]
    fn tolerates_crlf_blanks_duplicates_bom() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "a.gmt", "\u{feff}S1\thttp://x\tTP53\t\tMDM2\tTP53\t\t\r\n\r\n# comment\r\nS2\t\t CDKN1A \tMDM2\t\r\n");
        let (sets, rep) = read_gmt(&p).unwrap();
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0].name, "S1");
        assert_eq!(sets[0].genes, vec!["TP53", "MDM2"]);
        assert_eq!(sets[1].genes, vec!["CDKN1A", "MDM2"]);
        assert_eq!((sets[0].line, sets[1].line), (1, 4));
        assert_eq!(rep.duplicate_genes, 1);
        assert_eq!(rep.blank_fields, 4);
        let m = Memberships::new(&sets);
        assert_eq!(m.genes, vec!["CDKN1A", "MDM2", "TP53"]);
        assert_eq!(m.pairs, vec![(0, 1), (1, 0), (1, 1), (2, 0)]);
        assert_eq!(m.sets_of_genes(), vec![vec![1], vec![0, 1], vec![0]]);
        assert_eq!(m.multi_hot(&[1, 2], &m.pairs), vec![1.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("few.gmt", "S1\td\tA\nS2\tonly-description\n", "line 2", "found 2 field(s)"),
            ("nogenes.gmt", "S1\td\tA\n\nS2\td\t\t\t\n", "line 3", "lists no genes"),
            ("noname.gmt", "\td\tA\n", "line 1", "empty gene set name"),
            ("dup.gmt", "S1\td\tA\nS2\td\tB\nS1\td\tA\n", "line 3", "first on line 1"),
        ];
        for (name, text, line, msg) in cases {
            let p = write(dir.path(), name, text);
            let e = read_gmt(&p).unwrap_err();
            assert!(matches!(e, Error::Format { .. }), "{e}");
            let e = e.to_string();
            assert!(e.contains(name) && e.contains(line) && e.contains(msg), "{e}");
        }
        let p = write(dir.path(), "empty.gmt", "\n# nothing\n");
        assert!(read_gmts(&[p], DuplicateSets::Error).unwrap_err().to_string().contains("no gene sets"));
        let e = read_gmt(&dir.path().join("missing.gmt")).unwrap_err();
        assert!(matches!(e, Error::Io { .. }) && e.to_string().contains("missing.gmt"));
    }

    #[test]
    fn merged_files_and_repeated_sets() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.gmt", "S1\td\tA\tB\nS2\td\tC\n");
        let same = write(dir.path(), "same.gmt", "S1\tother\tB\tA\nS3\td\tD\n");
        let diff = write(dir.path(), "b.gmt.gz", "");
        {
            use std::io::Write;
            let mut z = flate2::write::GzEncoder::new(std::fs::File::create(&diff).unwrap(), flate2::Compression::default());
            z.write_all(b"S2\td\tC\tE\n").unwrap();
            z.finish().unwrap();
        }
        // an identical repeat is dropped under every policy
        let (sets, rep) = read_gmts(&[a.clone(), same.clone()], DuplicateSets::Error).unwrap();
        assert_eq!(sets.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), vec!["S1", "S2", "S3"]);
        assert_eq!(rep.dropped_sets, 1);
        // a different one: error naming both places, or first, or rename
        let e = read_gmts(&[a.clone(), diff.clone()], DuplicateSets::Error).unwrap_err().to_string();
        assert!(e.contains("b.gmt.gz") && e.contains("line 1") && e.contains("a.gmt line 2") && e.contains("`S2`"), "{e}");
        let (sets, rep) = read_gmts(&[a.clone(), diff.clone()], DuplicateSets::First).unwrap();
        assert_eq!((sets.len(), rep.dropped_sets, sets[1].genes.len()), (2, 1, 1));
        let (sets, rep) = read_gmts(&[a, diff], DuplicateSets::Rename).unwrap();
        assert_eq!(sets[2].name, "S2@b");
        assert_eq!(rep.renamed_sets, 1);
        let m = Memberships::new(&sets);
        assert_eq!(m.sets, vec!["S1", "S2", "S2@b"]);
        assert_eq!(m.genes, vec!["A", "B", "C", "E"]);
        assert_eq!("rename".parse::<DuplicateSets>(), Ok(DuplicateSets::Rename));
        assert!("x".parse::<DuplicateSets>().is_err());
    }

    #[test]
    fn gene_lookup_with_close_spellings() {
        let genes: Vec<String> = ["MDM2", "TP53", "TP63", "TP73", "Tp53i3", "EGFR", "egfr"].iter().map(|s| s.to_string()).collect();
        assert_eq!(find_gene("TP53", &genes).unwrap(), 1);
        assert_eq!(find_gene("tp63", &genes).unwrap(), 2);
        assert_eq!(find_gene("tp53i3", &genes).unwrap(), 4);
        let e = find_gene("TP35", &genes).unwrap_err().to_string();
        assert!(e.contains("`TP35`") && e.contains("did you mean TP53, TP63, TP73"), "{e}");
        assert!(find_gene("Egfr", &genes).unwrap_err().to_string().contains("give the exact spelling"));
        assert!(find_gene("XYZWVUTS", &genes).unwrap_err().to_string().contains("no close spellings"));
        assert_eq!(edit_distance("kitten", "SITTING"), 3);
        assert_eq!(edit_distance("TP35", "tp53"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}

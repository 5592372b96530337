//! Molecules through an exported GraphConv model (`mol-graphconv`): a SMILES table reader,
//! featurized molecules batched into one disjoint graph, task probabilities out.

use crate::chem::{ATOM_FEATURES, MolGraph, SmilesError};
use crate::data::text::{Lines, split_fields};
use crate::runtime::{Session, Value};
use crate::{Error, Result};
use std::path::Path;

/// Atoms of this in-degree and more share the exported GraphConv's last weight set
/// (`models::mol::MAX_DEGREE`; the e2e tests check the two agree).
pub const MAX_DEGREE: usize = 10;

/// Version of the atom features of [`crate::chem`]; bump it whenever they change.
pub const FEATURIZER_VERSION: u32 = 1;

/// The featurizer contract as a model card records it.
pub fn card_preprocessing() -> onnx_format::card::Molecule {
    onnx_format::card::Molecule {
        featurizer: "infer::chem (pure Rust SMILES parser; DeepChem ConvMolFeaturizer 75 atom features: element 44, degree 11, total H 5, implicit valence 7, formal charge, radical electrons, hybridization 5, aromatic)".into(),
        featurizer_version: FEATURIZER_VERSION,
        atom_features: crate::chem::ATOM_FEATURES,
        batching: "molecules as one disjoint graph (infer::mol::MolBatch)".into(),
    }
}

/// Many molecules as one graph: the model's four inputs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MolBatch {
    /// `[atoms, 75]` row-major.
    pub features: Vec<f32>,
    /// Directed edges (each bond both ways).
    pub src: Vec<i64>,
    /// Target atom of each directed edge, paired with `src`.
    pub dst: Vec<i64>,
    /// Molecule index of each atom.
    pub membership: Vec<i64>,
    /// Atoms per molecule.
    pub sizes: Vec<i64>,
}

impl MolBatch {
    /// Molecules with no atom are rejected: the model's per-molecule max needs one.
    pub fn new(mols: &[&MolGraph]) -> Result<Self> {
        let mut b = MolBatch::default();
        let mut offset = 0i64;
        for (m, g) in mols.iter().enumerate() {
            if g.num_atoms == 0 {
                return Err(Error::Input(format!("molecule {m} has no atoms")));
            }
            if g.features.len() != g.num_atoms * ATOM_FEATURES {
                return Err(Error::Input(format!("molecule {m}: {} feature values for {} atoms", g.features.len(), g.num_atoms)));
            }
            b.features.extend_from_slice(&g.features);
            for &(i, j) in &g.bonds {
                let (i, j) = (i as i64 + offset, j as i64 + offset);
                b.src.extend([i, j]);
                b.dst.extend([j, i]);
            }
            b.membership.extend(std::iter::repeat_n(m as i64, g.num_atoms));
            b.sizes.push(g.num_atoms as i64);
            offset += g.num_atoms as i64;
        }
        Ok(b)
    }

    /// The same batch with its atoms in the exported GraphConv's own order (by in-degree clipped
    /// at [`MAX_DEGREE`], ties in batch order) and its edges by target: the model's sorts then
    /// find their keys in order, where ONNX Runtime's TopK is faster (Tox21 model +6–8 %,
    /// decisions §8). The model's outputs are bit for bit those of the batch as built (each
    /// atom keeps its molecule; the model visits atoms and edges in the same order). A batch
    /// whose fields disagree (the fields are public) is an error.
    pub fn in_degree_order(self) -> Result<Self> {
        let n = self.num_atoms();
        let atom = |a: &i64| usize::try_from(*a).is_ok_and(|a| a < n);
        if self.features.len() != n * ATOM_FEATURES || self.src.len() != self.dst.len() || !self.src.iter().chain(&self.dst).all(atom) {
            return Err(Error::Input(format!(
                "molecule batch: {} feature values, {} sources and {} targets for {n} atoms (or an atom index out of range)",
                self.features.len(),
                self.src.len(),
                self.dst.len()
            )));
        }
        let mut degree = vec![0usize; n];
        self.dst.iter().for_each(|&d| degree[d as usize] += 1);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&a| degree[a].min(MAX_DEGREE)); // stable
        let mut new = vec![0i64; n];
        order.iter().enumerate().for_each(|(i, &a)| new[a] = i as i64);
        let mut edges: Vec<(i64, i64)> = self.src.iter().zip(&self.dst).map(|(&s, &d)| (new[s as usize], new[d as usize])).collect();
        edges.sort_by_key(|&(_, d)| d); // stable
        Ok(Self {
            features: order.iter().flat_map(|&a| self.features[a * ATOM_FEATURES..(a + 1) * ATOM_FEATURES].iter().copied()).collect(),
            src: edges.iter().map(|e| e.0).collect(),
            dst: edges.iter().map(|e| e.1).collect(),
            membership: order.iter().map(|&a| self.membership[a]).collect(),
            sizes: self.sizes,
        })
    }

    /// Number of atoms over all molecules.
    pub fn num_atoms(&self) -> usize {
        self.membership.len()
    }

    /// Number of molecules.
    pub fn num_molecules(&self) -> usize {
        self.sizes.len()
    }

    /// Inputs in the exported model's order: atom_features, edge_index, membership, molecule_sizes.
    pub fn values(&self) -> Vec<Value> {
        let e = self.src.len();
        vec![
            Value::f32(&[self.num_atoms(), ATOM_FEATURES], self.features.clone()),
            Value::i64(&[2, e], [self.src.as_slice(), self.dst.as_slice()].concat()),
            Value::i64(&[self.num_atoms()], self.membership.clone()),
            Value::i64(&[self.num_molecules()], self.sizes.clone()),
        ]
    }
}

/// Task probabilities `[mols, tasks]` row-major, `batch` molecules per run; as many batches at
/// once as the session has threads, one per thread ([`Session::run_each`]).
pub fn predict(session: &mut Session, mols: &[&MolGraph], batch: usize) -> Result<Vec<f32>> {
    let batch = batch.max(1);
    let mut out = Vec::new();
    for group in mols.chunks(batch.saturating_mul(session.threads.max(1))) {
        let sets = group.chunks(batch).map(|c| Ok(MolBatch::new(c)?.in_degree_order()?.values())).collect::<Result<Vec<_>>>()?;
        for p in session.run_each_output(&sets, "probabilities")? {
            out.extend(p.into_f32()?);
        }
    }
    Ok(out)
}

/// A delimited table (CSV, or TSV by extension) with a header; fields may be double-quoted.
#[derive(Debug, Clone)]
pub struct Table {
    /// Column names from the first non-blank line.
    pub header: Vec<String>,
    /// Data rows, fields as read (each as long as the header: a ragged row is an error).
    pub rows: Vec<Vec<String>>,
}

/// A delimited table read row by row (bounded memory for long files): the header first, then
/// [`TableReader::next_row`]; blank lines are skipped, a row with another field count than the
/// header is an error.
pub struct TableReader {
    path: std::path::PathBuf,
    delim: char,
    lines: Lines,
    /// Column names from the first non-blank line.
    pub header: Vec<String>,
}

impl TableReader {
    /// Opens `path` (plain or gzipped) and reads its header.
    pub fn open(path: &Path) -> Result<Self> {
        let delim = crate::data::delim::delimiter_for(path);
        let mut lines = Lines::open(path)?;
        while let Some((no, line)) = lines.next_line()? {
            if line.trim().is_empty() {
                continue;
            }
            let header = split_fields(line, delim).map_err(|e| Error::format(path, format!("line {no}: {e}")))?;
            return Ok(Self { path: path.to_path_buf(), delim, lines, header });
        }
        Err(Error::format(path, "empty file (expected a header line)"))
    }

    /// The next data row, or `None` at the end.
    pub fn next_row(&mut self) -> Result<Option<Vec<String>>> {
        while let Some((no, line)) = self.lines.next_line()? {
            if line.trim().is_empty() {
                continue;
            }
            let f = split_fields(line, self.delim).map_err(|e| Error::format(&self.path, format!("line {no}: {e}")))?;
            if f.len() != self.header.len() {
                return Err(Error::format(&self.path, format!("line {no}: {} fields, the header has {}", f.len(), self.header.len())));
            }
            return Ok(Some(f));
        }
        Ok(None)
    }
}

impl Table {
    /// Reads the whole table (plain or gzipped); blank lines are skipped.
    pub fn read(path: &Path) -> Result<Self> {
        let mut r = TableReader::open(path)?;
        let mut rows = Vec::new();
        while let Some(f) = r.next_row()? {
            rows.push(f);
        }
        Ok(Self { header: r.header, rows })
    }

    /// Index of the column named `name`; an error naming `path` and the columns if there is none.
    pub fn column(&self, name: &str, path: &Path) -> Result<usize> {
        column_of(&self.header, name, path)
    }

    /// The column's value on a row (`""` when the row is short).
    pub fn get(&self, row: usize, col: usize) -> &str {
        self.rows[row].get(col).map(|s| s.as_str()).unwrap_or("")
    }
}

/// The SMILES column: the named one, else `smiles`/`SMILES`/`canonical_smiles`, else the first.
pub fn smiles_column(t: &Table, name: Option<&str>, path: &Path) -> Result<usize> {
    smiles_column_of(&t.header, name, path)
}

/// Index of the column named `name` in `header`; an error naming `path` and the columns if there is none.
fn column_of(header: &[String], name: &str, path: &Path) -> Result<usize> {
    header.iter().position(|h| h == name).ok_or_else(|| Error::format(path, format!("no column `{name}` (columns: {})", header.join(", "))))
}

/// [`smiles_column`] on a header.
pub fn smiles_column_of(header: &[String], name: Option<&str>, path: &Path) -> Result<usize> {
    match name {
        Some(n) => column_of(header, n, path),
        None => Ok(header.iter().position(|h| matches!(h.to_lowercase().as_str(), "smiles" | "canonical_smiles")).unwrap_or(0)),
    }
}

/// A featurization failure with its row (1-based data row, as in a spreadsheet minus the header).
#[derive(Debug, Clone)]
pub struct RowError {
    /// 1-based data row.
    pub row: usize,
    /// The SMILES as given.
    pub smiles: String,
    /// Why it could not be featurized.
    pub error: SmilesError,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "row {}: `{}`: {}", self.row, self.smiles, self.error)
    }
}

/// Featurize every SMILES; failures are collected, not fatal.
pub fn featurize_rows(smiles: &[String]) -> (Vec<(usize, MolGraph)>, Vec<RowError>) {
    featurize_rows_from(smiles, 0)
}

/// [`featurize_rows`] on `threads` threads, each a contiguous share of the rows (same result).
pub fn featurize_rows_on(smiles: &[String], threads: usize) -> (Vec<(usize, MolGraph)>, Vec<RowError>) {
    // below ~64 rows a thread costs more than it saves
    let threads = threads.min(smiles.len() / 64).max(1);
    if threads == 1 {
        return featurize_rows(smiles);
    }
    let share = smiles.len().div_ceil(threads);
    let parts: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            smiles.chunks(share).enumerate().map(|(k, rows)| scope.spawn(move || featurize_rows_from(rows, k * share))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for (o, b) in parts {
        ok.extend(o);
        bad.extend(b);
    }
    (ok, bad)
}

/// [`featurize_rows`] of rows numbered from `first` (0-based).
fn featurize_rows_from(smiles: &[String], first: usize) -> (Vec<(usize, MolGraph)>, Vec<RowError>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for (i, s) in smiles.iter().enumerate().map(|(i, s)| (first + i, s)) {
        match crate::chem::featurize(s.trim()) {
            Ok(g) if g.num_atoms > 0 => ok.push((i, g)),
            Ok(_) => bad.push(RowError { row: i + 1, smiles: s.clone(), error: SmilesError::Empty }),
            Err(error) => bad.push(RowError { row: i + 1, smiles: s.clone(), error }),
        }
    }
    (ok, bad)
}

/// Check that a model is a molecular GraphConv export with task names.
pub fn check_family(card: &onnx_format::ModelCard, model: &Path) -> Result<()> {
    let m: &onnx_format::card::Molecule = card.require().map_err(|e| Error::card(model, e))?;
    if m.featurizer_version != FEATURIZER_VERSION || m.atom_features != crate::chem::ATOM_FEATURES {
        return Err(Error::Model {
            path: model.into(),
            msg: format!(
                "trained with featurizer version {} ({} atom features); this build's is version {FEATURIZER_VERSION} ({}): re-train with `train mol`",
                m.featurizer_version,
                m.atom_features,
                crate::chem::ATOM_FEATURES
            ),
        });
    }
    Ok(())
}

/// Predictions for a list of SMILES: per row the task probabilities, or why it was rejected.
#[derive(Debug, Clone)]
pub struct Scored {
    /// Input SMILES, one per row.
    pub smiles: Vec<String>,
    /// Task names, in the order of each row's probabilities.
    pub tasks: Vec<String>,
    /// Per row: the task probabilities, or `None` when the row was rejected.
    pub probabilities: Vec<Option<Vec<f32>>>,
    /// Rejected rows, in row order.
    pub errors: Vec<RowError>,
}

/// The header line of [`Scored::to_csv`].
pub fn csv_header(tasks: &[String]) -> String {
    use crate::classify::csv_field;
    let mut out = String::from("row,smiles");
    for t in tasks {
        out.push(',');
        out.push_str(&csv_field(t));
    }
    out.push_str(",error\n");
    out
}

/// Featurize, batch and predict; invalid SMILES are reported and skipped, never fatal.
pub fn score(session: &mut Session, tasks: &[String], smiles: &[String], batch: usize) -> Result<Scored> {
    let (ok, errors) = featurize_rows_on(smiles, session.threads);
    let mols: Vec<&MolGraph> = ok.iter().map(|(_, g)| g).collect();
    let probs = predict(session, &mols, batch)?;
    let t = tasks.len();
    if probs.len() != mols.len() * t {
        return Err(Error::Input(format!("the model gave {} values for {} molecules × {t} tasks", probs.len(), mols.len())));
    }
    let mut probabilities = vec![None; smiles.len()];
    for (k, (row, _)) in ok.iter().enumerate() {
        probabilities[*row] = Some(probs[k * t..(k + 1) * t].to_vec());
    }
    Ok(Scored { smiles: smiles.to_vec(), tasks: tasks.to_vec(), probabilities, errors })
}

impl Scored {
    /// `row,smiles,<task>...,error`: one line per input row; rejected rows have empty
    /// probabilities and the reason.
    pub fn to_csv(&self) -> String {
        let mut out = csv_header(&self.tasks);
        out.push_str(&self.csv_rows(0));
        out
    }

    /// The CSV lines of the rows without the header, numbered from `first_row + 1` (for outputs
    /// written in chunks).
    pub fn csv_rows(&self, first_row: usize) -> String {
        use crate::classify::csv_field;
        let mut out = String::new();
        let mut errs = self.errors.iter().peekable();
        for (i, (s, p)) in self.smiles.iter().zip(&self.probabilities).enumerate() {
            out.push_str(&format!("{},{}", first_row + i + 1, csv_field(s)));
            match p {
                Some(p) => {
                    for v in p {
                        out.push_str(&format!(",{v:.6}"));
                    }
                    out.push_str(",\n");
                }
                None => {
                    out.push_str(&",".repeat(self.tasks.len()));
                    let why = match errs.peek() {
                        Some(e) if e.row == i + 1 => errs.next().map(|e| e.error.to_string()).unwrap_or_default(),
                        _ => String::new(),
                    };
                    out.push_str(&format!(",{}\n", csv_field(&why)));
                }
            }
        }
        out
    }

    /// Number of rows that got probabilities.
    pub fn num_scored(&self) -> usize {
        self.probabilities.iter().filter(|p| p.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn featurizing_on_threads_keeps_rows_and_errors_in_order() {
        let pool = ["CCO", "c1ccccc1O", "not a smiles", "", "CC(=O)Nc1ccc(O)cc1", "C1CC"];
        let smiles: Vec<String> = (0..400).map(|i| pool[i * 7 % pool.len()].to_string()).collect();
        let (ok1, bad1) = featurize_rows(&smiles);
        let (ok3, bad3) = featurize_rows_on(&smiles, 3);
        let key = |ok: &[(usize, MolGraph)]| ok.iter().map(|(r, g)| (*r, g.features.clone(), g.bonds.clone())).collect::<Vec<_>>();
        assert_eq!(key(&ok1), key(&ok3));
        let rows = |bad: &[RowError]| bad.iter().map(|e| (e.row, e.smiles.clone())).collect::<Vec<_>>();
        assert!(!bad1.is_empty());
        assert_eq!(rows(&bad1), rows(&bad3));
    }

    #[test]
    fn tables_with_quotes_crlf_and_tabs() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let csv = write("t.csv", "h1,h2,h3\r\na,\"b,c\",\"d\"\"e\"\r\n");
        assert_eq!(Table::read(&csv).unwrap().rows[0], vec!["a", "b,c", "d\"e"]);
        let tsv = write("t.tsv", "h1\th2\th3\nx\t\ty\n");
        assert_eq!(Table::read(&tsv).unwrap().rows[0], vec!["x", "", "y"]);
        let bad = write("bad.csv", "smiles\n\"CCO\n");
        assert!(Table::read(&bad).unwrap_err().to_string().contains("line 2"));
    }

    #[test]
    fn batch_offsets_edges_and_membership() {
        let a = crate::chem::featurize("CCO").unwrap();
        let b = crate::chem::featurize("C").unwrap();
        let batch = MolBatch::new(&[&a, &b, &a]).unwrap();
        assert_eq!(batch.num_atoms(), 7);
        assert_eq!(batch.sizes, vec![3, 1, 3]);
        assert_eq!(batch.membership, vec![0, 0, 0, 1, 2, 2, 2]);
        assert_eq!(batch.src.len(), 8);
        assert!(batch.src.iter().zip(&batch.dst).all(|(s, d)| batch.membership[*s as usize] == batch.membership[*d as usize]));
        assert_eq!(batch.values()[1].shape(), &[2, 8]);
    }

    #[test]
    fn degree_order_renumbers_atoms_and_sorts_edges() {
        let a = crate::chem::featurize("CC(C)O").unwrap();
        let b = crate::chem::featurize("C").unwrap();
        let batch = MolBatch::new(&[&a, &b]).unwrap();
        let sorted = batch.clone().in_degree_order().unwrap();
        // degrees 1, 3, 1, 1 and 0: the lone carbon first, the branch carbon last
        assert_eq!(sorted.membership, vec![1, 0, 0, 0, 0]);
        assert_eq!(sorted.features[..ATOM_FEATURES], batch.features[4 * ATOM_FEATURES..]);
        assert_eq!(sorted.features[4 * ATOM_FEATURES..], batch.features[ATOM_FEATURES..2 * ATOM_FEATURES]);
        assert!(sorted.dst.windows(2).all(|w| w[0] <= w[1]));
        let bonds = |b: &MolBatch| {
            let m = |a: i64| (b.membership[a as usize], b.features[a as usize * ATOM_FEATURES..(a as usize + 1) * ATOM_FEATURES].to_vec());
            let mut e: Vec<_> = b.src.iter().zip(&b.dst).map(|(&s, &d)| (m(s), m(d))).collect();
            e.sort_by(|x, y| x.partial_cmp(y).unwrap());
            e
        };
        assert_eq!(bonds(&sorted), bonds(&batch));
        assert_eq!(sorted.sizes, batch.sizes);
        let mut bad = batch.clone();
        bad.dst[0] = 5;
        assert!(bad.in_degree_order().unwrap_err().to_string().contains("out of range"));
        let mut bad = batch;
        bad.src.pop();
        assert!(bad.in_degree_order().is_err());
    }

    #[test]
    fn rows_with_errors_are_reported_and_skipped() {
        let s: Vec<String> = ["CCO", "C1CC", "", "Xx", "c1ccccc1"].iter().map(|s| s.to_string()).collect();
        let (ok, bad) = featurize_rows(&s);
        assert_eq!(ok.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 4]);
        assert_eq!(bad.iter().map(|e| e.row).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert!(bad[0].to_string().contains("row 2") && bad[0].to_string().contains("ring"), "{}", bad[0]);
    }
}

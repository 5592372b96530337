//! AnnData `.h5ad` reader (cells/spots = samples, `var_names` = genes).
//!
//! Both on-disk encodings are read:
//! * modern (anndata ≥ 0.7): `obs`/`var` are groups; attribute `_index` names the index dataset;
//!   categoricals are groups `codes` + `categories` (anndata 0.7: a codes dataset with the
//!   categories in `obs/__categories/<col>`); nullable columns are groups `values` + `mask`.
//! * legacy (anndata < 0.7): `obs`/`var` are compound datasets with an `index` field;
//!   categoricals are integer codes with the categories in `uns/<col>_categories`.
//!
//! `X` may be dense, or a CSR/CSC group (`data`, `indices`, `indptr`; attribute `encoding-type`
//! = `csr_matrix`/`csc_matrix` and `shape`, or legacy `h5sparse_format` = `csr`/`csc` and
//! `h5sparse_shape`). Sparse matrices are densified. Missing categorical codes (-1) read as `NA`.

use super::ExpressionMatrix;
use super::h5util::{
    Column, absent, attr_ints, attr_string, check_indptr, compound_field, compound_fields, dataset, densify, group, h5err, hdf5_error,
    is_dataset, is_group, join, len_1d, open, read_compressed, read_f32, read_i64, read_strings, shape,
};
use super::text::list_names;
use crate::error::{Error, Result};
use hdf5::{Dataset, File, Group};
use std::path::{Path, PathBuf};

/// Reads `X` with `obs_names` as samples and `var_names` as genes; labels from an obs column.
pub fn read_h5ad(path: &Path, label_column: Option<&str>) -> Result<ExpressionMatrix> {
    read_h5ad_matrix(path, "X", label_column)
}

/// Like [`read_h5ad`] for another matrix: `"X"`, `"raw"` (`raw/X` with `raw/var` names;
/// legacy `raw.X`/`raw.var`) or `"layers/<name>"`.
pub fn read_h5ad_matrix(path: &Path, matrix: &str, label_column: Option<&str>) -> Result<ExpressionMatrix> {
    let file = open(path)?;
    let (x_path, var_path) = match matrix {
        "X" => ("X".to_string(), "var"),
        "raw" if file.link_exists("raw/X") => ("raw/X".to_string(), "raw/var"),
        "raw" if file.link_exists("raw.X") => ("raw.X".to_string(), "raw.var"),
        "raw" => return Err(absent(path, &file, "no raw matrix (raw/X or raw.X)")),
        m if m.starts_with("layers/") => (m.to_string(), "var"),
        m => {
            return Err(Error::Input(format!("{}: unknown matrix '{m}' (X, raw, layers/<name>)", path.display())));
        }
    };
    let obs = Frame::open(path, &file, "obs")?;
    let samples = obs.index(path)?;
    let genes = Frame::open(path, &file, var_path)?.index(path)?;
    let (rows, cols, values) = read_matrix(path, &file, &x_path)?;
    if rows != samples.len() || cols != genes.len() {
        return Err(Error::format(
            path,
            format!("{x_path} is {rows} × {cols}, but obs has {} names and {var_path} {}", samples.len(), genes.len()),
        ));
    }
    let labels = match label_column {
        None => None,
        Some(col) => Some(label_values(path, &file, &obs, col, samples.len())?),
    };
    Ok(ExpressionMatrix { samples, genes, values, labels })
}

/// `X` of an `.h5ad` read a block of rows (cells/spots) at a time by HDF5 hyperslab: dense `X`
/// and CSR `X` never sit in memory whole (a CSC `X`, stored by gene, is read whole once). The
/// names (`obs`, `var`) and the label column are read whole.
pub struct H5adRows {
    path: PathBuf,
    samples: Vec<String>,
    genes: Vec<String>,
    labels: Option<Vec<String>>,
    x: RowSource,
    next: usize,
}

enum RowSource {
    Dense(Dataset),
    Csr { data: Dataset, indices: Dataset, indptr: Vec<i64> },
    Whole(Vec<f32>),
}

impl H5adRows {
    /// Opens `X` of `path` with `obs_names`, `var_names` and an optional obs label column.
    pub fn open(path: &Path, label_column: Option<&str>) -> Result<Self> {
        let file = open(path)?;
        let obs = Frame::open(path, &file, "obs")?;
        let samples = obs.index(path)?;
        let genes = Frame::open(path, &file, "var")?.index(path)?;
        let labels = match label_column {
            None => None,
            Some(col) => Some(label_values(path, &file, &obs, col, samples.len())?),
        };
        let (rows, cols, x) = if is_dataset(&file, "X") {
            let ds = dataset(path, &file, "X")?;
            let [r, c] = shape(path, &ds)?[..] else {
                return Err(Error::format(path, "X is not 2-D"));
            };
            (r, c, RowSource::Dense(ds))
        } else if is_group(&file, "X") {
            let g = group(path, &file, "X")?;
            let (rows, cols, csr) = sparse_meta(path, &g)?;
            if csr {
                let data = dataset(path, &g, "data")?;
                let indices = dataset(path, &g, "indices")?;
                let indptr = read_i64(path, &dataset(path, &g, "indptr")?)?;
                check_indptr(path, &g, &indptr, rows, len_1d(path, &data)?, len_1d(path, &indices)?)?;
                (rows, cols, RowSource::Csr { data, indices, indptr })
            } else {
                let c = read_compressed(path, &g, cols, rows)?;
                (rows, cols, RowSource::Whole(densify(path, &c, rows, cols, false)?))
            }
        } else {
            return Err(absent(path, &file, "no matrix 'X'"));
        };
        if rows != samples.len() || cols != genes.len() {
            return Err(Error::format(path, format!("X is {rows} × {cols}, but obs has {} names and var {}", samples.len(), genes.len())));
        }
        Ok(H5adRows { path: path.to_path_buf(), samples, genes, labels, x, next: 0 })
    }

    /// Genes (columns of `X`).
    pub fn width(&self) -> usize {
        self.genes.len()
    }

    /// The next at most `max_rows` rows; `None` after the last.
    pub fn next_block(&mut self, max_rows: usize) -> Result<Option<ExpressionMatrix>> {
        let (a, n) = (self.next, self.samples.len());
        if a >= n {
            return Ok(None);
        }
        let b = a + max_rows.min(n - a);
        let cols = self.genes.len();
        let path = self.path.as_path();
        crate::error::limits::MAX_VALUES.check_dims(&[b - a, cols], format_args!("{}: a block of X", path.display()))?;
        let values = match &self.x {
            RowSource::Dense(ds) => {
                let block = ds.read_slice_2d::<f32, _>((a..b, ..)).map_err(h5err(path, format!("reading rows {a}..{b} of X")))?;
                block.iter().copied().collect()
            }
            RowSource::Csr { data, indices, indptr } => {
                let (s, e) = (indptr[a] as usize, indptr[b] as usize);
                let d = data.read_slice_1d::<f32, _>(s..e).map_err(h5err(path, "reading X/data"))?;
                let idx = indices.read_slice_1d::<i64, _>(s..e).map_err(h5err(path, "reading X/indices"))?;
                let mut out = vec![0f32; (b - a) * cols];
                for r in a..b {
                    for k in indptr[r] as usize - s..indptr[r + 1] as usize - s {
                        let j = idx[k];
                        if j < 0 || j as usize >= cols {
                            return Err(Error::format(path, format!("sparse matrix 'X': index {j} in row {r} is outside 0..{cols}")));
                        }
                        out[(r - a) * cols + j as usize] += d[k];
                    }
                }
                out
            }
            RowSource::Whole(v) => v[a * cols..b * cols].to_vec(),
        };
        self.next = b;
        let labels = self.labels.as_ref().map(|l| l[a..b].to_vec());
        Ok(Some(ExpressionMatrix { samples: self.samples[a..b].to_vec(), genes: self.genes.clone(), values, labels }))
    }
}

/// The obs column `col` as labels, one per sample.
fn label_values(path: &Path, file: &File, obs: &Frame, col: &str, n: usize) -> Result<Vec<String>> {
    let columns = obs.columns(path)?;
    if !columns.iter().any(|c| c == col) {
        return Err(Error::format(path, format!("obs column '{col}' not found; obs columns: {}", list_names(&columns))));
    }
    let l = obs.column(path, file, col)?;
    if l.len() != n {
        return Err(Error::format(path, format!("obs/{col} has {} entries, obs {n}", l.len())));
    }
    Ok(l)
}

/// The obs column names (not the index).
pub fn obs_columns(path: &Path) -> Result<Vec<String>> {
    let file = open(path)?;
    Frame::open(path, &file, "obs")?.columns(path)
}

/// One obs column as text (categoricals decoded, numbers formatted).
pub fn read_obs_column(path: &Path, column: &str) -> Result<Vec<String>> {
    let file = open(path)?;
    let obs = Frame::open(path, &file, "obs")?;
    let columns = obs.columns(path)?;
    if !columns.iter().any(|c| c == column) {
        return Err(Error::format(path, format!("obs column '{column}' not found; obs columns: {}", list_names(&columns))));
    }
    obs.column(path, &file, column)
}

/// A dense row-major matrix: `values[r * cols + c]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseMatrix {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// `rows × cols` values, row-major.
    pub values: Vec<f32>,
}

/// A dense `obsm` array (e.g. `X_pca`, `X_umap`, `spatial`) as `n_obs × k` f32.
pub fn read_obsm(path: &Path, name: &str) -> Result<DenseMatrix> {
    let file = open(path)?;
    let to_array = |rows: usize, cols: usize, values: Vec<f32>| {
        if rows.checked_mul(cols) == Some(values.len()) {
            Ok(DenseMatrix { rows, cols, values })
        } else {
            Err(Error::format(path, format!("obsm/{name}: {} values for {rows} × {cols}", values.len())))
        }
    };
    if is_group(&file, "obsm") {
        let g = group(path, &file, "obsm")?;
        if !is_dataset(&g, name) {
            let names = g.member_names().map_err(h5err(path, "obsm"))?;
            return Err(Error::format(path, format!("no dense obsm/{name}; obsm has: {}", list_names(&names))));
        }
        let ds = dataset(path, &g, name)?;
        return match shape(path, &ds)?.as_slice() {
            [r, c] => {
                let (r, c) = (*r, *c);
                to_array(r, c, read_f32(path, &ds)?)
            }
            [r] => {
                let r = *r;
                to_array(r, 1, read_f32(path, &ds)?)
            }
            s => Err(Error::format(path, format!("obsm/{name} has shape {s:?}, expected 2-D"))),
        };
    }
    if is_dataset(&file, "obsm") {
        let ds = dataset(path, &file, "obsm")?;
        let fields = compound_fields(path, &ds)?;
        if !fields.iter().any(|f| f == name) {
            return Err(Error::format(path, format!("no obsm field '{name}'; obsm has: {}", list_names(&fields))));
        }
        let rows = shape(path, &ds)?.first().copied().unwrap_or(0);
        return match compound_field(path, &ds, name)? {
            Column::Array(v, w) => to_array(rows, w, v),
            Column::Float(v) => to_array(rows, 1, v.into_iter().map(|x| x as f32).collect()),
            Column::Int(v) => to_array(rows, 1, v.into_iter().map(|x| x as f32).collect()),
            _ => Err(Error::format(path, format!("obsm field '{name}' is not numeric"))),
        };
    }
    Err(absent(path, &file, "no obsm"))
}

/// A sparse matrix in CSR form (rows over `indptr`).
#[derive(Debug, Clone, PartialEq)]
pub struct SparseMatrix {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Row offsets into `indices`/`values` (`rows + 1` entries): row `r` is `indptr[r]..indptr[r + 1]`.
    pub indptr: Vec<usize>,
    /// Column index of each stored value.
    pub indices: Vec<u32>,
    /// Stored (non-zero) values.
    pub values: Vec<f32>,
}

/// An `obsp` matrix (e.g. `connectivities`, `distances`): `obsp/<name>`, or legacy
/// `uns/neighbors/<name>`. Returned as CSR.
pub fn read_obsp(path: &Path, name: &str) -> Result<SparseMatrix> {
    let file = open(path)?;
    let modern = format!("obsp/{name}");
    let legacy = format!("uns/neighbors/{name}");
    let loc = if is_group(&file, &modern) {
        modern
    } else if is_group(&file, &legacy) {
        legacy
    } else {
        return Err(Error::format(path, format!("no sparse {modern} (or legacy {legacy})")));
    };
    let g = group(path, &file, &loc)?;
    let (rows, cols, csr) = sparse_meta(path, &g)?;
    let (major, minor) = if csr { (rows, cols) } else { (cols, rows) };
    let c = read_compressed(path, &g, major, minor)?;
    let mut m = SparseMatrix {
        rows: major,
        cols: minor,
        indptr: c.indptr.iter().map(|&p| p as usize).collect(),
        indices: c.indices.iter().map(|&i| i as u32).collect(),
        values: c.data,
    };
    if !csr {
        m = m.transpose();
    }
    Ok(m)
}

impl SparseMatrix {
    /// The transpose, in CSR form.
    pub fn transpose(&self) -> SparseMatrix {
        let mut counts = vec![0usize; self.cols + 1];
        for &j in &self.indices {
            counts[j as usize + 1] += 1;
        }
        for j in 0..self.cols {
            counts[j + 1] += counts[j];
        }
        let indptr = counts.clone();
        let mut next = counts;
        let mut indices = vec![0u32; self.indices.len()];
        let mut values = vec![0f32; self.values.len()];
        for r in 0..self.rows {
            for k in self.indptr[r]..self.indptr[r + 1] {
                let j = self.indices[k] as usize;
                indices[next[j]] = r as u32;
                values[next[j]] = self.values[k];
                next[j] += 1;
            }
        }
        SparseMatrix { rows: self.cols, cols: self.rows, indptr, indices, values }
    }
}

/// (rows, cols, is_csr) of a sparse group.
fn sparse_meta(path: &Path, g: &Group) -> Result<(usize, usize, bool)> {
    let enc = attr_string(path, g, "encoding-type").or_else(|| attr_string(path, g, "h5sparse_format"));
    let csr = match enc.as_deref() {
        Some("csr_matrix" | "csr") => true,
        Some("csc_matrix" | "csc") => false,
        other => {
            return Err(Error::format(path, format!("'{}': not a sparse matrix group (encoding {other:?})", g.name())));
        }
    };
    let dims = attr_ints(g, "shape").or_else(|| attr_ints(g, "h5sparse_shape"));
    match dims.as_deref() {
        Some([r, c]) if *r >= 0 && *c >= 0 => Ok((*r as usize, *c as usize, csr)),
        _ => Err(Error::format(path, format!("'{}': missing or bad 'shape' attribute", g.name()))),
    }
}

/// Dense row-major values of a dense dataset or sparse group.
fn read_matrix(path: &Path, file: &File, loc: &str) -> Result<(usize, usize, Vec<f32>)> {
    if is_dataset(file, loc) {
        let ds = dataset(path, file, loc)?;
        let [r, c] = shape(path, &ds)?[..] else {
            return Err(Error::format(path, format!("{loc} is not 2-D")));
        };
        return Ok((r, c, read_f32(path, &ds)?));
    }
    if is_group(file, loc) {
        let g = group(path, file, loc)?;
        let (rows, cols, csr) = sparse_meta(path, &g)?;
        let (major, minor) = if csr { (rows, cols) } else { (cols, rows) };
        let c = read_compressed(path, &g, major, minor)?;
        return Ok((rows, cols, densify(path, &c, rows, cols, csr)?));
    }
    Err(absent(path, file, format!("no matrix '{loc}'")))
}

/// A dataframe (`obs`, `var`, `raw/var`) in either encoding.
enum Frame {
    Group(Group),
    Compound(hdf5::Dataset),
}

impl Frame {
    fn open(path: &Path, file: &File, name: &str) -> Result<Frame> {
        if is_group(file, name) {
            Ok(Frame::Group(group(path, file, name)?))
        } else if is_dataset(file, name) {
            Ok(Frame::Compound(dataset(path, file, name)?))
        } else {
            Err(absent(path, file, format!("no '{name}' dataframe")))
        }
    }

    fn index_name(&self, path: &Path) -> String {
        match self {
            Frame::Group(g) => {
                attr_string(path, g, "_index").unwrap_or_else(|| if g.link_exists("_index") { "_index".into() } else { "index".into() })
            }
            Frame::Compound(ds) => {
                let fields = compound_fields(path, ds).unwrap_or_default();
                if fields.iter().any(|f| f == "index") { "index".into() } else { "_index".into() }
            }
        }
    }

    fn index(&self, path: &Path) -> Result<Vec<String>> {
        let name = self.index_name(path);
        match self {
            Frame::Group(g) => read_strings(path, &dataset(path, g, &name)?),
            Frame::Compound(ds) => Ok(compound_field(path, ds, &name)?.into_strings()),
        }
    }

    fn columns(&self, path: &Path) -> Result<Vec<String>> {
        let index = self.index_name(path);
        let all = match self {
            Frame::Group(g) => g.member_names().map_err(h5err(path, g.name()))?,
            Frame::Compound(ds) => compound_fields(path, ds)?,
        };
        Ok(all.into_iter().filter(|c| *c != index && c != "__categories").collect())
    }

    fn column(&self, path: &Path, file: &File, col: &str) -> Result<Vec<String>> {
        match self {
            Frame::Group(g) if is_group(g, col) => {
                let cg = group(path, g, col)?;
                if cg.link_exists("codes") && cg.link_exists("categories") {
                    let codes = read_i64(path, &dataset(path, &cg, "codes")?)?;
                    let cats = read_strings(path, &dataset(path, &cg, "categories")?)?;
                    decode(path, &cg.name(), &codes, &cats)
                } else if cg.link_exists("values") && cg.link_exists("mask") {
                    let values = read_strings(path, &dataset(path, &cg, "values")?)?;
                    let mask = read_strings(path, &dataset(path, &cg, "mask")?)?;
                    Ok(values.into_iter().zip(mask).map(|(v, m)| if m == "True" { "NA".into() } else { v }).collect())
                } else {
                    Err(hdf5_error(path, format!("'{}': unsupported column encoding", cg.name())))
                }
            }
            Frame::Group(g) => {
                let ds = dataset(path, g, col)?;
                let cats_path = format!("__categories/{col}");
                if g.link_exists("__categories") && g.link_exists(&cats_path) {
                    let codes = read_i64(path, &ds)?;
                    let cats = read_strings(path, &dataset(path, g, &cats_path)?)?;
                    decode(path, &ds.name(), &codes, &cats)
                } else {
                    read_strings(path, &ds)
                }
            }
            Frame::Compound(ds) => {
                let cats_path = format!("uns/{col}_categories");
                match compound_field(path, ds, col)? {
                    Column::Int(codes) if is_dataset(file, &cats_path) => {
                        let cats = read_strings(path, &dataset(path, file, &cats_path)?)?;
                        decode(path, &join(&ds.name(), col), &codes, &cats)
                    }
                    Column::Array(..) => Err(Error::format(path, format!("{}: '{col}' is an array", ds.name()))),
                    c => Ok(c.into_strings()),
                }
            }
        }
    }
}

fn decode(path: &Path, what: &str, codes: &[i64], cats: &[String]) -> Result<Vec<String>> {
    codes
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if c < 0 {
                Ok("NA".to_string())
            } else {
                cats.get(c as usize)
                    .cloned()
                    .ok_or_else(|| Error::format(path, format!("{what}: code {c} at row {i} but only {} categories", cats.len())))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_data;
    use hdf5::types::VarLenUnicode;

    const LEGACY: &str = "scanpy_pbmc68k_reduced/10x_pbmc68k_reduced.h5ad";
    const MODERN: &str = "scanpy_pbmc68k_reduced/pbmc68k_reduced.anndata0.12.h5ad";

    fn counts(labels: &[String]) -> std::collections::BTreeMap<&str, usize> {
        let mut m = std::collections::BTreeMap::new();
        for l in labels {
            *m.entry(l.as_str()).or_insert(0) += 1;
        }
        m
    }

    #[test]
    fn pbmc_legacy_and_modern_agree() {
        let legacy = read_h5ad(&test_data(LEGACY), Some("bulk_labels")).unwrap();
        let modern = read_h5ad(&test_data(MODERN), Some("bulk_labels")).unwrap();
        assert_eq!(legacy.samples.len(), 700);
        assert_eq!(legacy.genes.len(), 765);
        assert_eq!(legacy.values.len(), 700 * 765);
        assert_eq!(legacy, modern);
        let labels = legacy.labels.as_ref().unwrap();
        let c = counts(labels);
        assert_eq!(c.len(), 10);
        assert_eq!(c["Dendritic"], 240);
        assert_eq!(c["CD14+ Monocyte"], 129);
        assert_eq!(c["CD4+/CD45RA+/CD25- Naive T"], 8);
        // Scaled data: z-scores in about -2.03..28.4.
        let (lo, hi) = legacy.values.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(lo > -2.1 && lo < -2.0 && hi > 28.0 && hi < 28.5, "{lo} {hi}");

        let l1 = read_obs_column(&test_data(LEGACY), "louvain").unwrap();
        let l2 = read_obs_column(&test_data(MODERN), "louvain").unwrap();
        assert_eq!(l1, l2);
        assert_eq!(counts(&l1).len(), 11);
        // Numeric columns agree too.
        assert_eq!(read_obs_column(&test_data(LEGACY), "n_genes").unwrap(), read_obs_column(&test_data(MODERN), "n_genes").unwrap());

        let mut cols = obs_columns(&test_data(MODERN)).unwrap();
        let mut cols_legacy = obs_columns(&test_data(LEGACY)).unwrap();
        cols.sort();
        cols_legacy.sort();
        assert_eq!(cols, cols_legacy);
        assert!(cols.contains(&"bulk_labels".to_string()) && cols.len() == 8, "{cols:?}");
    }

    #[test]
    fn pbmc_raw_obsm_obsp() {
        let legacy = read_h5ad_matrix(&test_data(LEGACY), "raw", None).unwrap();
        let modern = read_h5ad_matrix(&test_data(MODERN), "raw", None).unwrap();
        assert_eq!(legacy, modern);
        assert_eq!(legacy.values.iter().filter(|v| **v != 0.0).count(), 174400);
        assert!(legacy.values.iter().all(|v| *v >= 0.0 && *v < 6.5));

        let a = read_obsm(&test_data(LEGACY), "X_pca").unwrap();
        let b = read_obsm(&test_data(MODERN), "X_pca").unwrap();
        assert_eq!((a.rows, a.cols), (700, 50));
        assert_eq!(a, b);
        let u = read_obsm(&test_data(MODERN), "X_umap").unwrap();
        assert_eq!((u.rows, u.cols), (700, 2));
        assert_eq!(u, read_obsm(&test_data(LEGACY), "X_umap").unwrap());
        let e = read_obsm(&test_data(MODERN), "X_tsne").unwrap_err().to_string();
        assert!(e.contains("X_pca"), "{e}");

        let g1 = read_obsp(&test_data(LEGACY), "connectivities").unwrap();
        let g2 = read_obsp(&test_data(MODERN), "connectivities").unwrap();
        assert_eq!((g1.rows, g1.cols, g1.values.len()), (700, 700, 9992));
        assert_eq!(g1, g2);
        let t = g1.transpose().transpose();
        assert_eq!(t.indptr, g1.indptr);
    }

    #[test]
    fn missing_label_column_lists_obs_columns() {
        for f in [LEGACY, MODERN] {
            let e = read_h5ad(&test_data(f), Some("cell_type")).unwrap_err();
            assert!(matches!(e, Error::Format { .. }));
            let e = e.to_string();
            assert!(e.contains(".h5ad") && e.contains("'cell_type'") && e.contains("bulk_labels") && e.contains("louvain"), "{e}");
        }
    }

    #[test]
    fn visium_csr() {
        let p = test_data("squidpy_visium_tiny/test_data.h5ad");
        let m = read_h5ad(&p, Some("leiden")).unwrap();
        assert_eq!((m.samples.len(), m.genes.len()), (49, 1999));
        assert_eq!(m.values.iter().filter(|v| **v != 0.0).count(), 22372);
        assert_eq!(m.labels.as_ref().unwrap().len(), 49);
        let sp = read_obsm(&p, "spatial").unwrap();
        assert_eq!((sp.rows, sp.cols), (49, 2));
    }

    fn vlen(v: &[&str]) -> Vec<VarLenUnicode> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn str_attr(loc: &hdf5::Location, name: &str, value: &str) {
        let v: VarLenUnicode = value.parse().unwrap();
        loc.new_attr::<VarLenUnicode>().create(name).unwrap().write_scalar(&v).unwrap();
    }

    /// CSC X and the anndata 0.7 `__categories` layout, written here.
    #[test]
    fn csc_and_anndata07_categories() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.h5ad");
        {
            let f = hdf5::File::create(&p).unwrap();
            // 3 cells × 2 genes: [[1,0],[0,2],[3,4]] as CSC.
            let x = f.create_group("X").unwrap();
            str_attr(&x, "encoding-type", "csc_matrix");
            x.new_attr::<i64>().shape(2).create("shape").unwrap().write(&[3i64, 2]).unwrap();
            x.new_dataset_builder().with_data(&[1f64, 3., 2., 4.]).create("data").unwrap();
            x.new_dataset_builder().with_data(&[0i32, 2, 1, 2]).create("indices").unwrap();
            x.new_dataset_builder().with_data(&[0i32, 2, 4]).create("indptr").unwrap();
            let obs = f.create_group("obs").unwrap();
            str_attr(&obs, "_index", "_index");
            obs.new_dataset_builder().with_data(&vlen(&["c1", "c2", "c3"])).create("_index").unwrap();
            obs.new_dataset_builder().with_data(&[1i8, -1, 0]).create("kind").unwrap();
            let cats = obs.create_group("__categories").unwrap();
            cats.new_dataset_builder().with_data(&vlen(&["T", "B"])).create("kind").unwrap();
            obs.new_dataset_builder().with_data(&[0.5f64, 1.0, 2.0]).create("score").unwrap();
            let var = f.create_group("var").unwrap();
            str_attr(&var, "_index", "_index");
            var.new_dataset_builder().with_data(&vlen(&["G1", "G2"])).create("_index").unwrap();
        }
        let m = read_h5ad(&p, Some("kind")).unwrap();
        assert_eq!(m.samples, vec!["c1", "c2", "c3"]);
        assert_eq!(m.genes, vec!["G1", "G2"]);
        assert_eq!(m.values, vec![1., 0., 0., 2., 3., 4.]);
        assert_eq!(m.labels.unwrap(), vec!["B", "NA", "T"]);
        assert_eq!(read_obs_column(&p, "score").unwrap(), vec!["0.5", "1", "2"]);
        assert_eq!(obs_columns(&p).unwrap(), vec!["kind", "score"]);
    }

    #[test]
    fn bad_sparse_is_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.h5ad");
        {
            let f = hdf5::File::create(&p).unwrap();
            let x = f.create_group("X").unwrap();
            str_attr(&x, "encoding-type", "csr_matrix");
            x.new_attr::<i64>().shape(2).create("shape").unwrap().write(&[2i64, 2]).unwrap();
            x.new_dataset_builder().with_data(&[1f32, 2.]).create("data").unwrap();
            x.new_dataset_builder().with_data(&[0i32, 5]).create("indices").unwrap();
            x.new_dataset_builder().with_data(&[0i32, 1, 2]).create("indptr").unwrap();
            for name in ["obs", "var"] {
                let g = f.create_group(name).unwrap();
                str_attr(&g, "_index", "_index");
                g.new_dataset_builder().with_data(&vlen(&["a", "b"])).create("_index").unwrap();
            }
        }
        let e = read_h5ad(&p, None).unwrap_err();
        assert!(matches!(e, Error::Format { .. }), "{e}");
        assert!(e.to_string().contains("outside 0..2"), "{e}");
    }

    /// The three HDF5 2.2 parser bugs that io/hdf5/fixes.cmake fixes, each in a crafted copy of a
    /// small valid file: a clean error, where the unfixed library hangs or allocates without bound
    /// (a read that does not end within a minute fails the test instead of hanging it).
    #[test]
    fn crafted_heaps_are_hdf5_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ok.h5ad");
        let offset = {
            // the oldest file format, as h5py writes: groups with local heaps
            let f = hdf5::File::with_options().with_fapl(|a| a.libver_earliest()).create(&p).unwrap();
            f.new_dataset::<f32>().shape((2, 2)).create("X").unwrap().write_raw(&[1f32, 2., 3., 4.]).unwrap();
            for name in ["obs", "var"] {
                let g = f.create_group(name).unwrap();
                str_attr(&g, "_index", "_index");
                g.new_dataset_builder().with_data(&vlen(&["a", "b"])).create("_index").unwrap();
            }
            f.dataset("obs/_index").unwrap().offset().unwrap() as usize
        };
        let good = std::fs::read(&p).unwrap();
        assert_eq!(read_h5ad(&p, None).unwrap().genes, ["a", "b"]);
        let find = |sig: &[u8]| good.windows(4).position(|w| w == sig).unwrap();
        let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
        let read = |name: &str, bytes: Vec<u8>| {
            let q = dir.path().join(name);
            std::fs::write(&q, bytes).unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || tx.send(read_h5ad(&q, None).map(|_| ())).unwrap());
            let r = rx.recv_timeout(std::time::Duration::from_secs(60));
            r.unwrap_or_else(|_| panic!("{name}: no answer in 60 s: an HDF5 built without io/hdf5/fixes.cmake?"))
        };

        // 1. a local heap (the root group's link names) whose free list points back to itself
        let mut b = good.clone();
        let heap = find(b"HEAP");
        let (size, head) = (u64_at(&b, heap + 8) as usize, u64_at(&b, heap + 16));
        let data = u64_at(&b, heap + 24) as usize;
        let block = if head == 1 { size - 16 } else { head as usize };
        b[heap + 16..heap + 24].copy_from_slice(&(block as u64).to_le_bytes());
        b[data + block..data + block + 8].copy_from_slice(&(block as u64).to_le_bytes());
        b[data + block + 8..data + block + 16].copy_from_slice(&16u64.to_le_bytes());
        let e = read("freelist.h5ad", b).unwrap_err().to_string();
        assert!(e.contains("bad heap free list (it loops)"), "{e}");

        // 2. a global heap (the strings) whose first object has index 0 (free space) and size 0 ...
        let mut b = good.clone();
        let gcol = find(b"GCOL");
        b[gcol + 16..gcol + 18].copy_from_slice(&0u16.to_le_bytes());
        b[gcol + 24..gcol + 32].copy_from_slice(&0u64.to_le_bytes());
        let e = read("gheap.h5ad", b).unwrap_err().to_string();
        assert!(e.contains("global heap free space smaller than its header"), "{e}");
        // ... and one whose size, aligned and with its header, wraps around to 0 (2^64 - 20)
        let mut b = good.clone();
        b[gcol + 24..gcol + 32].copy_from_slice(&(u64::MAX - 19).to_le_bytes());
        let e = read("gheap-wrap.h5ad", b).unwrap_err().to_string();
        assert!(e.contains("global heap object larger than the heap"), "{e}");

        // 3. a variable-length string that declares 2^31 - 1 bytes in a heap object of 1
        let mut b = good;
        b[offset..offset + 4].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        let e = read("vlen.h5ad", b).unwrap_err().to_string();
        assert!(e.contains("variable-length sequence of 2147483647 elements in a heap object of 1 bytes"), "{e}");
    }

    /// Variable-length strings that are not UTF-8 (a fuzzer's find: hdf5-metno hands them out as
    /// `&str` unchecked, and formatting one panicked) are an error naming the dataset.
    #[test]
    fn invalid_utf8_names_are_hdf5_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("utf8.h5ad");
        {
            let f = hdf5::File::create(&p).unwrap();
            f.new_dataset::<f32>().shape((2, 2)).create("X").unwrap().write_raw(&[1f32, 2., 3., 4.]).unwrap();
            for (name, ids) in [("obs", ["cell-one", "cell-two"]), ("var", ["gene-one", "gene-two"])] {
                let g = f.create_group(name).unwrap();
                str_attr(&g, "_index", "_index");
                g.new_dataset_builder().with_data(&vlen(&ids)).create("_index").unwrap();
            }
        }
        let mut b = std::fs::read(&p).unwrap();
        let at = b.windows(8).position(|w| w == b"gene-two").unwrap();
        b[at + 5..at + 7].copy_from_slice(&[0xff, 0xfe]);
        std::fs::write(&p, b).unwrap();
        let e = read_h5ad(&p, None).unwrap_err();
        assert!(matches!(e, Error::Hdf5 { .. }), "{e}");
        assert!(e.to_string().contains("reading '/var/_index' as strings: string 1 is not valid UTF-8"), "{e}");
    }

    #[test]
    fn corrupt_h5ad_is_hdf5_error() {
        let dir = tempfile::tempdir().unwrap();
        let full = std::fs::read(test_data(LEGACY)).unwrap();
        for (i, len) in [100usize, full.len() / 3, full.len() - 1000].into_iter().enumerate() {
            let p = dir.path().join(format!("cut{i}.h5ad"));
            std::fs::write(&p, &full[..len]).unwrap();
            let e = read_h5ad(&p, Some("bulk_labels")).unwrap_err();
            assert!(matches!(e, Error::Hdf5 { .. }), "{e}");
            assert!(e.to_string().contains(&format!("cut{i}.h5ad")), "{e}");
        }
        let p = dir.path().join("junk.h5ad");
        std::fs::write(&p, b"not an hdf5 file at all").unwrap();
        assert!(matches!(read_h5ad(&p, None), Err(Error::Hdf5 { .. })));
    }
}

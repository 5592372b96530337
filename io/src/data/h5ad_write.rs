//! AnnData `.h5ad` writer, following the anndata on-disk specification as anndata ≥ 0.8 writes it
//! (so anndata, scanpy and squidpy read the files with no extra code):
//!
//! | element | HDF5 | `encoding-type` / `encoding-version` |
//! |---|---|---|
//! | the file | root group | `anndata` / `0.1.0` |
//! | `obs`, `var` | group; attribute `_index` names the index dataset, `column-order` lists the columns | `dataframe` / `0.2.0` |
//! | strings (index, string columns, string lists) | 1-D variable-length UTF-8 dataset | `string-array` / `0.2.0` |
//! | numbers, booleans, images | dataset (row-major) | `array` / `0.2.0` |
//! | categorical column | group: `codes` (int8/16/32, -1 = missing), `categories` (string-array), attribute `ordered` | `categorical` / `0.2.0` |
//! | `obsm`, `uns`, nested dicts, `layers`, `obsp`, `varm`, `varp` | group | `dict` / `0.1.0` |
//! | a number or a string in `uns` | scalar dataset | `numeric-scalar` / `string`, `0.2.0` |
//!
//! Encoding attributes are scalar variable-length UTF-8 strings, as h5py writes them; an empty
//! `column-order` is an empty float64 array, as anndata writes it. Arrays of 64 KiB and more are
//! chunked and Deflate-compressed when the HDF5 library has the filter.
//!
//! Files are written all-or-nothing: [`write_h5ad`] writes a temporary file next to the output
//! ([`Staged`]) and renames it into place. [`add_to_h5ad`] adds obs columns, obsm arrays and uns
//! entries to an existing file (in anndata ≥ 0.8 layout), leaving everything else as it was.

use super::h5util::{attr_string, h5err, hdf5_error, is_group, len_1d};
use crate::error::{Error, Result};
use hdf5::types::VarLenUnicode;
use hdf5::{Group, H5Type, Location};
use std::path::{Path, PathBuf};

/// The values of a dense array, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayData {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 64-bit floats.
    F64(Vec<f64>),
    /// 64-bit integers.
    I64(Vec<i64>),
    /// Bytes (e.g. RGB images).
    U8(Vec<u8>),
}

impl ArrayData {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            ArrayData::F32(v) => v.len(),
            ArrayData::F64(v) => v.len(),
            ArrayData::I64(v) => v.len(),
            ArrayData::U8(v) => v.len(),
        }
    }

    /// `true` when there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A dense n-dimensional array (`encoding-type` `array`).
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values, row-major.
    pub data: ArrayData,
}

impl Array {
    /// An array; an error when the number of values does not fit the shape.
    pub fn new(shape: Vec<usize>, data: ArrayData) -> Result<Array> {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if n != Some(data.len()) {
            return Err(Error::Input(format!("h5ad array of shape {shape:?} given {} values", data.len())));
        }
        Ok(Array { shape, data })
    }

    /// Rows (the first dimension; 1 for a scalar).
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }
}

/// A categorical column: integer codes into a list of categories (pandas `Categorical`).
#[derive(Debug, Clone, PartialEq)]
pub struct Categorical {
    /// Index into `categories` per row; -1 = missing.
    pub codes: Vec<i32>,
    /// The categories, in order.
    pub categories: Vec<String>,
    /// Whether the categories are ordered.
    pub ordered: bool,
}

impl Categorical {
    /// Codes for `values`: categories are `order` when given (all of them, used or not; a value
    /// not among them is missing), else the distinct values sorted.
    pub fn from_values<S: AsRef<str>>(values: &[S], order: Option<&[String]>) -> Categorical {
        let categories: Vec<String> = match order {
            Some(o) => o.to_vec(),
            None => {
                let set: std::collections::BTreeSet<&str> = values.iter().map(|v| v.as_ref()).collect();
                set.into_iter().map(String::from).collect()
            }
        };
        let pos: std::collections::HashMap<&str, i32> = categories.iter().enumerate().map(|(i, c)| (c.as_str(), i as i32)).collect();
        let codes = values.iter().map(|v| pos.get(v.as_ref()).copied().unwrap_or(-1)).collect();
        Categorical { codes, categories, ordered: false }
    }
}

/// One column of a dataframe (`obs` or `var`).
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 64-bit floats.
    F64(Vec<f64>),
    /// 64-bit integers.
    I64(Vec<i64>),
    /// Booleans.
    Bool(Vec<bool>),
    /// Strings (`string-array`).
    Str(Vec<String>),
    /// A categorical column.
    Categorical(Categorical),
}

impl Column {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Column::F32(v) => v.len(),
            Column::F64(v) => v.len(),
            Column::I64(v) => v.len(),
            Column::Bool(v) => v.len(),
            Column::Str(v) => v.len(),
            Column::Categorical(c) => c.codes.len(),
        }
    }

    /// `true` when the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A dataframe: a string index and named columns, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DataFrame {
    /// Row names (`obs_names` / `var_names`).
    pub index: Vec<String>,
    /// Columns, in order; each as long as the index.
    pub columns: Vec<(String, Column)>,
}

/// A value of `uns` (unstructured annotation).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string (`string`).
    Str(String),
    /// A float (`numeric-scalar`).
    F64(f64),
    /// An integer (`numeric-scalar`).
    I64(i64),
    /// A boolean (`numeric-scalar`).
    Bool(bool),
    /// A list of strings (`string-array`).
    Strings(Vec<String>),
    /// An array (`array`).
    Array(Array),
    /// A nested dictionary (`dict`), entries in order.
    Dict(Vec<(String, Value)>),
}

/// What [`write_h5ad`] writes: `X` (dense, `obs × var`), `obs`, `var`, `obsm`, `uns`; `layers`,
/// `obsp`, `varm` and `varp` are written empty.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnData {
    /// The data matrix, `[n_obs, n_vars]`.
    pub x: Array,
    /// Observations (cells, spots).
    pub obs: DataFrame,
    /// Variables (genes).
    pub var: DataFrame,
    /// Per-observation arrays, each with `n_obs` rows (e.g. `spatial`).
    pub obsm: Vec<(String, Array)>,
    /// Unstructured annotation.
    pub uns: Vec<(String, Value)>,
}

impl AnnData {
    /// Checks that the parts agree in size (X is obs × var, columns and obsm rows match).
    pub fn check(&self) -> Result<()> {
        let (n_obs, n_var) = (self.obs.index.len(), self.var.index.len());
        if self.x.shape != [n_obs, n_var] {
            return Err(Error::Input(format!("h5ad: X has shape {:?}, obs × var is [{n_obs}, {n_var}]", self.x.shape)));
        }
        check_frame("obs", &self.obs)?;
        check_frame("var", &self.var)?;
        for (name, a) in &self.obsm {
            if a.shape.is_empty() || a.rows() != n_obs {
                return Err(Error::Input(format!("h5ad: obsm/{name} has shape {:?}, needs {n_obs} rows", a.shape)));
            }
        }
        Ok(())
    }
}

fn check_frame(what: &str, f: &DataFrame) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (name, c) in &f.columns {
        if c.len() != f.index.len() {
            return Err(Error::Input(format!("h5ad: {what}/{name} has {} rows, {what} has {}", c.len(), f.index.len())));
        }
        if name == INDEX || name.is_empty() || name.contains('/') || !seen.insert(name.as_str()) {
            return Err(Error::Input(format!("h5ad: {what} column name `{name}` is empty, reserved, repeated or holds a '/'")));
        }
    }
    Ok(())
}

/// Name of the index dataset of the dataframes written here.
const INDEX: &str = "_index";
/// Arrays at least this large (bytes) are chunked and compressed.
const COMPRESS_BYTES: usize = 64 * 1024;

/// A file written under a temporary name next to its destination (`.NAME.PID.N.tmp` in the same
/// folder, so the rename is atomic), renamed into place by [`Staged::commit`]. Dropped without a
/// commit, the temporary file is removed.
#[derive(Debug)]
pub struct Staged(onnx_format::Pending);

impl Staged {
    /// A temporary path for `dest` (its folder is created; nothing is written yet).
    pub fn new(dest: &Path) -> Result<Staged> {
        onnx_format::Pending::beside(dest).map(Staged).map_err(|e| Error::io(dest, e))
    }

    /// A temporary copy of `src` for `dest`, to be edited and then committed (`src` is only read).
    pub fn copy_of(src: &Path, dest: &Path) -> Result<Staged> {
        let s = Staged::new(dest)?;
        std::fs::copy(src, s.path()).map_err(|e| Error::io(src, e))?;
        Ok(s)
    }

    /// The temporary file's path.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// The destination.
    pub fn dest(&self) -> &Path {
        self.0.dest()
    }

    /// Flushes the temporary file to disk (then [`commit`](Self::commit) only renames).
    pub fn sync(&self) -> Result<()> {
        std::fs::File::open(self.path()).and_then(|f| f.sync_all()).map_err(|e| Error::io(self.path(), e))
    }

    /// Flushes the temporary file to disk and renames it to the destination.
    pub fn commit(self) -> Result<PathBuf> {
        let dest = self.dest().to_path_buf();
        onnx_format::commit_all(vec![self.finish()?]).map_err(|e| Error::io(e.path, e.source))?;
        Ok(dest)
    }

    /// Flushes the temporary file to disk: it waits, as an [`onnx_format::Pending`], to be renamed
    /// with the run's other outputs by [`onnx_format::commit_all`].
    pub fn finish(self) -> Result<onnx_format::Pending> {
        self.sync()?;
        Ok(self.0)
    }
}

/// Writes `a` to `path` all-or-nothing (a temporary file in the same folder, then a rename).
pub fn write_h5ad(path: &Path, a: &AnnData) -> Result<()> {
    stage_h5ad(path, a)?.commit().map(|_| ())
}

/// Writes `a` to a temporary file for `path` and returns it uncommitted, so several outputs can
/// be rendered before any is put in place.
pub fn stage_h5ad(path: &Path, a: &AnnData) -> Result<Staged> {
    a.check()?;
    let staged = Staged::new(path)?;
    let file = hdf5::File::create(staged.path()).map_err(h5err(path, "cannot create"))?;
    let w = Writer { path };
    w.anndata(&file, a)?;
    file.close().map_err(h5err(path, "closing"))?;
    Ok(staged)
}

/// Adds elements to the h5ad file at `file_path` (opened read-write): obs columns (a column of
/// the same name is replaced and keeps its place in `column-order`), obsm arrays and uns entries
/// (same names replaced). Everything else in the file is left as it was. The file must be in the
/// anndata ≥ 0.8 layout (`obs` a dataframe group of encoding 0.2.0); older layouts are refused
/// with a message saying how to convert them. Errors name `shown` (the file the user gave).
pub fn add_to_h5ad(
    file_path: &Path,
    shown: &Path,
    obs: &[(String, Column)],
    obsm: &[(String, Array)],
    uns: &[(String, Value)],
) -> Result<()> {
    let n_obs = check_modern(shown, &crate::data::h5util::open(file_path)?)?;
    let frame = DataFrame { index: vec![String::new(); n_obs], columns: obs.to_vec() };
    check_frame("obs", &frame)?;
    for (name, a) in obsm {
        if a.shape.is_empty() || a.rows() != n_obs {
            return Err(Error::Input(format!(
                "{}: obsm/{name} has shape {:?}, the file has {n_obs} observations",
                shown.display(),
                a.shape
            )));
        }
    }
    let file = hdf5::File::open_rw(file_path).map_err(h5err(shown, "cannot open for writing"))?;
    let w = Writer { path: shown };
    let g = file.group("obs").map_err(h5err(shown, "obs"))?;
    let mut order = column_order(shown, &g)?;
    for (name, c) in obs {
        w.replace(&g, name)?;
        w.column(&g, name, c)?;
        if !order.contains(name) {
            order.push(name.clone());
        }
    }
    if !obs.is_empty() {
        g.delete_attr("column-order").map_err(h5err(shown, "obs: removing column-order"))?;
        w.string_list_attr(&g, "column-order", &order)?;
    }
    for (group_name, entries) in [
        ("obsm", obsm.iter().map(|(n, a)| (n, Value::Array(a.clone()))).collect::<Vec<_>>()),
        ("uns", uns.iter().map(|(n, v)| (n, v.clone())).collect()),
    ] {
        if entries.is_empty() {
            continue;
        }
        let g = if is_group(&file, group_name) {
            file.group(group_name).map_err(h5err(shown, group_name))?
        } else if file.link_exists(group_name) {
            return Err(hdf5_error(shown, format!("'{group_name}' is not a group (anndata < 0.7 layout?)")));
        } else {
            w.dict(&file, group_name)?
        };
        for (name, v) in entries {
            w.replace(&g, name)?;
            w.value(&g, name, &v)?;
        }
    }
    file.close().map_err(h5err(shown, "closing"))?;
    Ok(())
}

/// The number of observations of the h5ad file at `path` when [`add_to_h5ad`] can annotate it
/// (anndata ≥ 0.8 layout); otherwise an error saying how to convert it.
pub fn annotatable(path: &Path) -> Result<usize> {
    check_modern(path, &crate::data::h5util::open(path)?)
}

/// The number of observations of a file in the anndata ≥ 0.8 layout; an error naming what to do
/// for anything else.
fn check_modern(path: &Path, file: &hdf5::File) -> Result<usize> {
    let convert = "re-save it with anndata ≥ 0.8 first (python -c \"import anndata, sys; anndata.read_h5ad(sys.argv[1]).write_h5ad(sys.argv[2])\" IN OUT)";
    if !is_group(file, "obs") {
        return Err(Error::format(path, format!("obs is not a group (the anndata < 0.7 layout); {convert}")));
    }
    let g = file.group("obs").map_err(h5err(path, "obs"))?;
    let (kind, version) = (attr_string(path, &g, "encoding-type"), attr_string(path, &g, "encoding-version"));
    if kind.as_deref() != Some("dataframe") || version.as_deref() != Some("0.2.0") {
        return Err(Error::format(
            path,
            format!(
                "obs is a dataframe of encoding {} {} (anndata < 0.8 layout), not dataframe 0.2.0; {convert}",
                kind.as_deref().unwrap_or("?"),
                version.as_deref().unwrap_or("?")
            ),
        ));
    }
    let index = attr_string(path, &g, "_index").ok_or_else(|| Error::format(path, "obs has no _index attribute"))?;
    let ds = g.dataset(&index).map_err(h5err(path, format!("obs index '{index}'")))?;
    len_1d(path, &ds)
}

/// The `column-order` attribute of a dataframe group (empty when absent or an empty array).
fn column_order(path: &Path, g: &Group) -> Result<Vec<String>> {
    let Ok(a) = g.attr("column-order") else { return Ok(Vec::new()) };
    if a.get_shape().map(|s| s.iter().product::<usize>()).unwrap_or(0) == 0 {
        return Ok(Vec::new());
    }
    crate::data::h5util::attr_strings(path, &a)
}

fn vlen(path: &Path, what: &str, s: &str) -> Result<VarLenUnicode> {
    s.parse().map_err(|_| hdf5_error(path, format!("{what}: string `{}` holds a NUL character", s.escape_debug())))
}

/// Writes elements; errors name `path`.
struct Writer<'a> {
    path: &'a Path,
}

impl Writer<'_> {
    fn err(&self, what: impl std::fmt::Display) -> impl Fn(hdf5::Error) -> Error + '_ {
        h5err(self.path, what)
    }

    fn str_attr(&self, loc: &Location, name: &str, value: &str) -> Result<()> {
        let v = vlen(self.path, name, value)?;
        loc.new_attr::<VarLenUnicode>().create(name).and_then(|a| a.write_scalar(&v)).map_err(self.err(format!("attribute {name}")))
    }

    fn encoding(&self, loc: &Location, kind: &str, version: &str) -> Result<()> {
        self.str_attr(loc, "encoding-type", kind)?;
        self.str_attr(loc, "encoding-version", version)
    }

    fn string_list_attr(&self, loc: &Location, name: &str, values: &[String]) -> Result<()> {
        let err = self.err(format!("attribute {name}"));
        if values.is_empty() {
            // as anndata writes an empty column-order
            return loc.new_attr::<f64>().shape(0).create(name).map(|_| ()).map_err(err);
        }
        let v: Vec<VarLenUnicode> = values.iter().map(|s| vlen(self.path, name, s)).collect::<Result<_>>()?;
        loc.new_attr::<VarLenUnicode>().shape(v.len()).create(name).and_then(|a| a.write_raw(&v)).map_err(err)
    }

    /// Removes `name` from `g` if present.
    fn replace(&self, g: &Group, name: &str) -> Result<()> {
        if g.link_exists(name) {
            g.unlink(name).map_err(self.err(format!("replacing '{}/{name}'", g.name())))?;
        }
        Ok(())
    }

    fn dict(&self, parent: &Group, name: &str) -> Result<Group> {
        let g = parent.create_group(name).map_err(self.err(format!("creating group '{name}'")))?;
        self.encoding(&g, "dict", "0.1.0")?;
        Ok(g)
    }

    fn strings(&self, g: &Group, name: &str, values: &[String]) -> Result<()> {
        let v: Vec<VarLenUnicode> = values.iter().map(|s| vlen(self.path, name, s)).collect::<Result<_>>()?;
        let ds = g
            .new_dataset::<VarLenUnicode>()
            .shape(v.len())
            .create(name)
            .and_then(|ds| ds.write_raw(&v).map(|_| ds))
            .map_err(self.err(format!("writing '{}/{name}'", g.name())))?;
        self.encoding(&ds, "string-array", "0.2.0")
    }

    fn raw<T: H5Type>(&self, g: &Group, name: &str, shape: &[usize], data: &[T]) -> Result<hdf5::Dataset> {
        let mut b = g.new_dataset::<T>();
        let bytes = std::mem::size_of_val(data);
        if bytes >= COMPRESS_BYTES && !shape.is_empty() && shape.iter().all(|&d| d > 0) && hdf5::filters::deflate_available() {
            // chunks of about 256 KiB: whole trailing dimensions, a slab of the first
            let row: usize = shape[1..].iter().product::<usize>() * std::mem::size_of::<T>();
            let rows = (256 * 1024 / row.max(1)).clamp(1, shape[0]);
            let mut chunk = shape.to_vec();
            chunk[0] = rows;
            b = b.chunk(chunk).deflate(4);
        }
        b.shape(shape.to_vec())
            .create(name)
            .and_then(|ds| ds.write_raw(data).map(|_| ds))
            .map_err(self.err(format!("writing '{}/{name}'", g.name())))
    }

    fn array(&self, g: &Group, name: &str, a: &Array) -> Result<()> {
        let ds = match &a.data {
            ArrayData::F32(v) => self.raw(g, name, &a.shape, v)?,
            ArrayData::F64(v) => self.raw(g, name, &a.shape, v)?,
            ArrayData::I64(v) => self.raw(g, name, &a.shape, v)?,
            ArrayData::U8(v) => self.raw(g, name, &a.shape, v)?,
        };
        self.encoding(&ds, "array", "0.2.0")
    }

    fn column(&self, g: &Group, name: &str, c: &Column) -> Result<()> {
        let n = [c.len()];
        let ds = match c {
            Column::F32(v) => self.raw(g, name, &n, v)?,
            Column::F64(v) => self.raw(g, name, &n, v)?,
            Column::I64(v) => self.raw(g, name, &n, v)?,
            Column::Bool(v) => self.raw(g, name, &n, v)?,
            Column::Str(v) => return self.strings(g, name, v),
            Column::Categorical(cat) => return self.categorical(g, name, cat),
        };
        self.encoding(&ds, "array", "0.2.0")
    }

    fn categorical(&self, parent: &Group, name: &str, c: &Categorical) -> Result<()> {
        if let Some(&bad) = c.codes.iter().find(|&&k| k < -1 || k >= c.categories.len() as i32) {
            return Err(Error::Input(format!("h5ad: categorical {name}: code {bad} outside -1..{}", c.categories.len())));
        }
        let g = parent.create_group(name).map_err(self.err(format!("creating '{}/{name}'", parent.name())))?;
        self.encoding(&g, "categorical", "0.2.0")?;
        g.new_attr::<bool>().create("ordered").and_then(|a| a.write_scalar(&c.ordered)).map_err(self.err("attribute ordered"))?;
        let n = [c.codes.len()];
        // the smallest signed type that holds the codes, as pandas does
        let ds = match c.categories.len() {
            k if k < i8::MAX as usize => self.raw(&g, "codes", &n, &c.codes.iter().map(|&k| k as i8).collect::<Vec<_>>())?,
            k if k < i16::MAX as usize => self.raw(&g, "codes", &n, &c.codes.iter().map(|&k| k as i16).collect::<Vec<_>>())?,
            _ => self.raw(&g, "codes", &n, &c.codes)?,
        };
        self.encoding(&ds, "array", "0.2.0")?;
        self.strings(&g, "categories", &c.categories)
    }

    fn dataframe(&self, parent: &Group, name: &str, f: &DataFrame) -> Result<()> {
        let g = parent.create_group(name).map_err(self.err(format!("creating group '{name}'")))?;
        self.encoding(&g, "dataframe", "0.2.0")?;
        self.str_attr(&g, "_index", INDEX)?;
        let order: Vec<String> = f.columns.iter().map(|(n, _)| n.clone()).collect();
        self.string_list_attr(&g, "column-order", &order)?;
        self.strings(&g, INDEX, &f.index)?;
        for (n, c) in &f.columns {
            self.column(&g, n, c)?;
        }
        Ok(())
    }

    fn scalar<T: H5Type>(&self, g: &Group, name: &str, v: &T) -> Result<()> {
        let ds = g
            .new_dataset::<T>()
            .create(name)
            .and_then(|ds| ds.write_scalar(v).map(|_| ds))
            .map_err(self.err(format!("writing '{}/{name}'", g.name())))?;
        self.encoding(&ds, "numeric-scalar", "0.2.0")
    }

    fn value(&self, g: &Group, name: &str, v: &Value) -> Result<()> {
        match v {
            Value::Str(s) => {
                let s = vlen(self.path, name, s)?;
                let ds = g
                    .new_dataset::<VarLenUnicode>()
                    .create(name)
                    .and_then(|ds| ds.write_scalar(&s).map(|_| ds))
                    .map_err(self.err(format!("writing '{}/{name}'", g.name())))?;
                self.encoding(&ds, "string", "0.2.0")
            }
            Value::F64(x) => self.scalar(g, name, x),
            Value::I64(x) => self.scalar(g, name, x),
            Value::Bool(x) => self.scalar(g, name, x),
            Value::Strings(s) => self.strings(g, name, s),
            Value::Array(a) => self.array(g, name, a),
            Value::Dict(entries) => {
                let d = self.dict(g, name)?;
                for (k, v) in entries {
                    if k.is_empty() || k.contains('/') {
                        return Err(Error::Input(format!("h5ad: uns key `{k}` under '{name}' is empty or holds a '/'")));
                    }
                    self.value(&d, k, v)?;
                }
                Ok(())
            }
        }
    }

    fn anndata(&self, file: &hdf5::File, a: &AnnData) -> Result<()> {
        self.encoding(file, "anndata", "0.1.0")?;
        self.array(file, "X", &a.x)?;
        self.dataframe(file, "obs", &a.obs)?;
        self.dataframe(file, "var", &a.var)?;
        let obsm = self.dict(file, "obsm")?;
        for (n, arr) in &a.obsm {
            self.array(&obsm, n, arr)?;
        }
        self.value(file, "uns", &Value::Dict(a.uns.clone()))?;
        for empty in ["layers", "obsp", "varm", "varp"] {
            self.dict(file, empty)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::h5ad::{read_h5ad, read_obs_column, read_obsm};

    fn sample() -> AnnData {
        AnnData {
            x: Array::new(vec![2, 3], ArrayData::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5])).unwrap(),
            obs: DataFrame {
                index: vec!["s1".into(), "s2".into()],
                columns: vec![
                    ("pixel_x".into(), Column::F64(vec![10.5, 20.0])),
                    ("kind".into(), Column::Categorical(Categorical::from_values(&["b", "a"], None))),
                    ("note".into(), Column::Str(vec!["é".into(), "x,y".into()])),
                ],
            },
            var: DataFrame { index: vec!["G1".into(), "G2".into(), "G3".into()], columns: vec![] },
            obsm: vec![("spatial".into(), Array::new(vec![2, 2], ArrayData::F64(vec![10.5, 1.0, 20.0, 2.0])).unwrap())],
            uns: vec![
                ("name".into(), Value::Str("run".into())),
                (
                    "nested".into(),
                    Value::Dict(vec![("img".into(), Value::Array(Array::new(vec![1, 2, 3], ArrayData::U8(vec![0; 6])).unwrap()))]),
                ),
            ],
        }
    }

    #[test]
    fn h5ad_round_trip_through_our_reader() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.h5ad");
        write_h5ad(&p, &sample()).unwrap();
        let m = read_h5ad(&p, Some("kind")).unwrap();
        assert_eq!(m.samples, ["s1", "s2"]);
        assert_eq!(m.genes, ["G1", "G2", "G3"]);
        assert_eq!(m.values, [1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
        assert_eq!(m.labels.unwrap(), ["b", "a"]);
        assert_eq!(read_obs_column(&p, "note").unwrap(), ["é", "x,y"]);
        assert_eq!(read_obsm(&p, "spatial").unwrap().values, [10.5, 1.0, 20.0, 2.0]);
        // nothing else left in the folder
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn h5ad_add_columns_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.h5ad");
        write_h5ad(&p, &sample()).unwrap();
        let out = dir.path().join("b.h5ad");
        let s = Staged::copy_of(&p, &out).unwrap();
        let pred = Column::Categorical(Categorical::from_values(&["T", "B"], Some(&["B".into(), "T".into(), "NK".into()])));
        let probs = Array::new(vec![2, 3], ArrayData::F32(vec![0.1, 0.8, 0.1, 0.7, 0.2, 0.1])).unwrap();
        add_to_h5ad(
            s.path(),
            &p,
            &[("predicted".into(), pred.clone()), ("kind".into(), pred)],
            &[("p".into(), probs)],
            &[("bioedge".into(), Value::Str("{}".into()))],
        )
        .unwrap();
        s.commit().unwrap();
        assert_eq!(read_obs_column(&out, "predicted").unwrap(), ["T", "B"]);
        assert_eq!(read_obs_column(&out, "kind").unwrap(), ["T", "B"]);
        assert_eq!(read_obs_column(&out, "note").unwrap(), ["é", "x,y"]);
        assert_eq!(read_obsm(&out, "p").unwrap().cols, 3);
        let f = hdf5::File::open(&out).unwrap();
        assert_eq!(column_order(&out, &f.group("obs").unwrap()).unwrap(), ["pixel_x", "kind", "note", "predicted"]);
        drop(f);
        // wrong row count: refused, file untouched
        let before = std::fs::read(&out).unwrap();
        let e = add_to_h5ad(&out, &out, &[("x".into(), Column::F32(vec![1.0]))], &[], &[]).unwrap_err().to_string();
        assert!(e.contains("1 rows"), "{e}");
        assert_eq!(std::fs::read(&out).unwrap(), before);
    }

    #[test]
    fn h5ad_bad_parts_are_errors() {
        let mut a = sample();
        a.x = Array::new(vec![3, 2], ArrayData::F32(vec![0.0; 6])).unwrap();
        assert!(a.check().unwrap_err().to_string().contains("X has shape"));
        assert!(Array::new(vec![2, 2], ArrayData::U8(vec![0; 3])).is_err());
        let mut a = sample();
        a.obs.columns.push(("_index".into(), Column::F32(vec![0.0; 2])));
        assert!(a.check().is_err());
        let dir = tempfile::tempdir().unwrap();
        let mut a = sample();
        a.obs.index[0] = "nul\0".into();
        let p = dir.path().join("nul.h5ad");
        assert!(write_h5ad(&p, &a).unwrap_err().to_string().contains("NUL"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "temporary file left behind");
        assert_eq!(Categorical::from_values(&["b", "z"], Some(&["a".into(), "b".into()])).codes, [1, -1]);
    }
}

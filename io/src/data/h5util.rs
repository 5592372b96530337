//! HDF5 helpers shared by the `.h5` and `.h5ad` readers: typed reads that accept the many
//! string/number encodings found in real files, and errors that name the file.

use crate::error::{Error, Result};
use hdf5::types::{CompoundField, CompoundType, FloatSize, IntSize, TypeDescriptor as TD, VarLenAscii, VarLenUnicode};
use hdf5::{Attribute, Dataset, Datatype, Group, Location};
use std::path::Path;

pub(crate) fn h5err(path: &Path, what: impl std::fmt::Display) -> impl Fn(hdf5::Error) -> Error + '_ {
    let what = what.to_string();
    move |e| Error::Hdf5 { path: path.to_path_buf(), msg: if what.is_empty() { e.to_string() } else { format!("{what}: {e}") } }
}

pub(crate) fn hdf5_error(path: &Path, msg: impl Into<String>) -> Error {
    Error::Hdf5 { path: path.to_path_buf(), msg: msg.into() }
}

/// Opens a file read-only; a missing file is an I/O error, anything HDF5 rejects an HDF5 error.
pub(crate) fn open(path: &Path) -> Result<hdf5::File> {
    std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    hdf5::File::open(path).map_err(h5err(path, "cannot open as HDF5"))
}

pub(crate) fn is_group(g: &Group, name: &str) -> bool {
    g.link_exists(name) && matches!(g.loc_type_by_name(name), Ok(hdf5::LocationType::Group))
}

pub(crate) fn is_dataset(g: &Group, name: &str) -> bool {
    g.link_exists(name) && matches!(g.loc_type_by_name(name), Ok(hdf5::LocationType::Dataset))
}

pub(crate) fn dataset(path: &Path, g: &Group, name: &str) -> Result<Dataset> {
    g.dataset(name).map_err(h5err(path, format!("dataset '{}'", join(&g.name(), name))))
}

pub(crate) fn group(path: &Path, g: &Group, name: &str) -> Result<Group> {
    g.group(name).map_err(h5err(path, format!("group '{}'", join(&g.name(), name))))
}

/// The error for a member that is not there: `msg` as a format error, unless the group cannot
/// even be listed (a damaged file), where it is the HDF5 error that made the member look absent.
pub(crate) fn absent(path: &Path, g: &Group, msg: impl Into<String>) -> Error {
    match g.member_names() {
        Err(e) => h5err(path, format!("group '{}'", g.name()))(e),
        Ok(_) => Error::format(path, msg),
    }
}

pub(crate) fn join(parent: &str, name: &str) -> String {
    if parent.ends_with('/') { format!("{parent}{name}") } else { format!("{parent}/{name}") }
}

pub(crate) fn shape(path: &Path, ds: &Dataset) -> Result<Vec<usize>> {
    ds.get_shape().map_err(h5err(path, format!("shape of '{}'", ds.name())))
}

/// Length of a 1-D dataset (error for any other rank).
pub(crate) fn len_1d(path: &Path, ds: &Dataset) -> Result<usize> {
    match shape(path, ds)?.as_slice() {
        [n] => Ok(*n),
        s => Err(hdf5_error(path, format!("'{}': expected a 1-D dataset, shape is {s:?}", ds.name()))),
    }
}

pub(crate) fn descriptor(path: &Path, ds: &Dataset) -> Result<TD> {
    ds.dtype().and_then(|t| t.to_descriptor()).map_err(h5err(path, format!("datatype of '{}'", ds.name())))
}

/// The declared size of `ds` against [`MAX_VALUES`](crate::error::limits::MAX_VALUES), before reading it.
pub(crate) fn check_size(path: &Path, ds: &Dataset) -> Result<usize> {
    crate::error::limits::MAX_VALUES.check_dims(&shape(path, ds)?, format_args!("{}: dataset '{}'", path.display(), ds.name()))
}

/// Reads a whole dataset (any numeric type) as f32, in row-major order.
pub(crate) fn read_f32(path: &Path, ds: &Dataset) -> Result<Vec<f32>> {
    check_size(path, ds)?;
    ds.read_raw::<f32>().map_err(h5err(path, format!("reading '{}' as numbers", ds.name())))
}

/// Reads a whole dataset (any integer type) as i64.
pub(crate) fn read_i64(path: &Path, ds: &Dataset) -> Result<Vec<i64>> {
    check_size(path, ds)?;
    ds.read_raw::<i64>().map_err(h5err(path, format!("reading '{}' as integers", ds.name())))
}

/// Reads raw bytes with an explicit memory type (for types only known at run time).
fn read_bytes(path: &Path, ds: &Dataset, mem: &Datatype, n_bytes: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n_bytes];
    let rc = hdf5::sync::sync(|| unsafe {
        hdf5_sys::h5d::H5Dread(
            ds.id(),
            mem.id(),
            hdf5_sys::h5s::H5S_ALL,
            hdf5_sys::h5s::H5S_ALL,
            hdf5_sys::h5p::H5P_DEFAULT,
            buf.as_mut_ptr().cast(),
        )
    });
    if rc < 0 {
        return Err(hdf5_error(path, format!("reading '{}' failed", ds.name())));
    }
    Ok(buf)
}

fn fixed_strings(bytes: &[u8], width: usize, n: usize) -> Vec<String> {
    if width == 0 {
        return vec![String::new(); n];
    }
    bytes
        .chunks(width)
        .map(|c| {
            let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
            String::from_utf8_lossy(&c[..end]).trim_end().to_string()
        })
        .collect()
}

fn fmt_f64(v: f64) -> String {
    if v.is_nan() { "NA".to_string() } else { v.to_string() }
}

/// Reads a 1-D dataset as strings: string datasets of any kind, and numbers/booleans as text.
/// Variable-length strings (`t`: `VarLenUnicode` or `VarLenAscii`) of a dataset or attribute
/// (`what` names it in errors). hdf5-metno hands their bytes out as `&str` without checking them;
/// bytes that are not UTF-8 (a damaged or crafted file) are an error here, as in h5py.
fn varlen_strings(path: &Path, c: &hdf5::Container, t: &TD, what: &str) -> Result<Vec<String>> {
    let utf8 = |(i, b): (usize, &[u8])| {
        String::from_utf8(b.to_vec()).map_err(|_| hdf5_error(path, format!("{what}: string {i} is not valid UTF-8")))
    };
    match t {
        TD::VarLenUnicode => {
            c.read_raw::<VarLenUnicode>().map_err(h5err(path, what))?.iter().map(|s| s.as_bytes()).enumerate().map(utf8).collect()
        }
        _ => c.read_raw::<VarLenAscii>().map_err(h5err(path, what))?.iter().map(|s| s.as_bytes()).enumerate().map(utf8).collect(),
    }
}

pub(crate) fn read_strings(path: &Path, ds: &Dataset) -> Result<Vec<String>> {
    let n = len_1d(path, ds)?;
    check_size(path, ds)?;
    let name = ds.name();
    let what = format!("reading '{name}' as strings");
    let err = || h5err(path, &what);
    match descriptor(path, ds)? {
        t @ (TD::VarLenUnicode | TD::VarLenAscii) => varlen_strings(path, ds, &t, &what),
        t @ (TD::FixedAscii(w) | TD::FixedUnicode(w)) => {
            let mem = Datatype::from_descriptor(&t).map_err(err())?;
            Ok(fixed_strings(&read_bytes(path, ds, &mem, n * w)?, w, n))
        }
        TD::Integer(_) | TD::Unsigned(_) => Ok(read_i64(path, ds)?.iter().map(|v| v.to_string()).collect()),
        TD::Float(_) => Ok(ds.read_raw::<f64>().map_err(err())?.into_iter().map(fmt_f64).collect()),
        TD::Boolean => Ok(ds.read_raw::<bool>().map_err(err())?.iter().map(|b| if *b { "True" } else { "False" }.to_string()).collect()),
        t => Err(hdf5_error(path, format!("'{name}': cannot read type {t:?} as strings"))),
    }
}

/// One field of a compound dataset (legacy AnnData `obs`/`var`/`obsm`).
pub(crate) enum Column {
    Str(Vec<String>),
    Int(Vec<i64>),
    Float(Vec<f64>),
    Bool(Vec<bool>),
    /// Fixed-size array per row: (values row-major, width).
    Array(Vec<f32>, usize),
}

impl Column {
    pub(crate) fn into_strings(self) -> Vec<String> {
        match self {
            Column::Str(v) => v,
            Column::Int(v) => v.iter().map(|x| x.to_string()).collect(),
            Column::Float(v) => v.into_iter().map(fmt_f64).collect(),
            Column::Bool(v) => v.iter().map(|b| if *b { "True" } else { "False" }.to_string()).collect(),
            Column::Array(_, w) => vec![format!("<array of {w}>")],
        }
    }
}

/// Names of the fields of a compound dataset.
pub(crate) fn compound_fields(path: &Path, ds: &Dataset) -> Result<Vec<String>> {
    match descriptor(path, ds)? {
        TD::Compound(c) => Ok(c.fields.into_iter().map(|f| f.name).collect()),
        _ => Err(hdf5_error(path, format!("'{}' is not a compound dataset", ds.name()))),
    }
}

/// Reads one field of a 1-D compound dataset.
pub(crate) fn compound_field(path: &Path, ds: &Dataset, field: &str) -> Result<Column> {
    let n = len_1d(path, ds)?;
    let TD::Compound(ct) = descriptor(path, ds)? else {
        return Err(hdf5_error(path, format!("'{}' is not a compound dataset", ds.name())));
    };
    let Some(f) = ct.fields.iter().find(|f| f.name == field) else {
        let names: Vec<String> = ct.fields.iter().map(|f| f.name.clone()).collect();
        return Err(hdf5_error(path, format!("'{}' has no field '{field}'; fields: {}", ds.name(), names.join(", "))));
    };
    let mem_ty = match &f.ty {
        t @ (TD::FixedAscii(_) | TD::FixedUnicode(_) | TD::Boolean) => t.clone(),
        TD::Integer(_) | TD::Unsigned(_) => TD::Integer(IntSize::U8),
        TD::Float(_) => TD::Float(FloatSize::U8),
        TD::FixedArray(inner, w) if matches!(**inner, TD::Float(_) | TD::Integer(_) | TD::Unsigned(_)) => {
            TD::FixedArray(Box::new(TD::Float(FloatSize::U4)), *w)
        }
        t => {
            return Err(hdf5_error(path, format!("'{}': field '{field}' has unsupported type {t:?}", ds.name())));
        }
    };
    let size = mem_ty.size();
    let mem = Datatype::from_descriptor(&TD::Compound(CompoundType {
        fields: vec![CompoundField { name: field.to_string(), ty: mem_ty.clone(), offset: 0, index: 0 }],
        size,
    }))
    .map_err(h5err(path, format!("'{}': field '{field}'", ds.name())))?;
    let bytes = read_bytes(path, ds, &mem, n * size)?;
    Ok(match mem_ty {
        TD::FixedAscii(w) | TD::FixedUnicode(w) => Column::Str(fixed_strings(&bytes, w, n)),
        TD::Boolean => Column::Bool(bytes.iter().map(|&b| b != 0).collect()),
        TD::Integer(_) => Column::Int(bytes.chunks_exact(8).map(|c| i64::from_ne_bytes(c.try_into().unwrap_or([0; 8]))).collect()),
        TD::Float(_) => Column::Float(bytes.chunks_exact(8).map(|c| f64::from_ne_bytes(c.try_into().unwrap_or([0; 8]))).collect()),
        TD::FixedArray(_, w) => {
            Column::Array(bytes.chunks_exact(4).map(|c| f32::from_ne_bytes(c.try_into().unwrap_or([0; 4]))).collect(), w)
        }
        _ => unreachable!("mem_ty is one of the types above"),
    })
}

/// The strings of a string attribute (variable-length or fixed, any shape).
pub(crate) fn attr_strings(path: &Path, a: &Attribute) -> Result<Vec<String>> {
    let what = format!("attribute '{}'", a.name());
    let err = || h5err(path, &what);
    let desc = a.dtype().and_then(|t| t.to_descriptor()).map_err(err())?;
    let n = a.get_shape().map_err(err())?.iter().product::<usize>();
    match desc {
        t @ (TD::VarLenUnicode | TD::VarLenAscii) => varlen_strings(path, a, &t, &what),
        t @ (TD::FixedAscii(w) | TD::FixedUnicode(w)) => {
            let mem = Datatype::from_descriptor(&t).map_err(err())?;
            let mut buf = vec![0u8; n * w];
            let rc = hdf5::sync::sync(|| unsafe { hdf5_sys::h5a::H5Aread(a.id(), mem.id(), buf.as_mut_ptr().cast()) });
            if rc < 0 {
                return Err(hdf5_error(path, format!("reading attribute '{}' failed", a.name())));
            }
            Ok(fixed_strings(&buf, w, n))
        }
        t => Err(hdf5_error(path, format!("attribute '{}' is not a string ({t:?})", a.name()))),
    }
}

/// A string attribute (scalar or first element of an array); `None` when absent or not a string.
pub(crate) fn attr_string(path: &Path, loc: &Location, name: &str) -> Option<String> {
    let a = loc.attr(name).ok()?;
    attr_strings(path, &a).ok()?.into_iter().next()
}

/// An integer array attribute; `None` when absent or not integers.
pub(crate) fn attr_ints(loc: &Location, name: &str) -> Option<Vec<i64>> {
    let a = loc.attr(name).ok()?;
    a.read_raw::<i64>().ok()
}

/// Compressed sparse matrix as stored: `indptr` runs over the major axis.
pub(crate) struct Compressed {
    pub data: Vec<f32>,
    pub indices: Vec<i64>,
    pub indptr: Vec<i64>,
}

/// Reads `data`, `indices`, `indptr` of a sparse group and checks them against the shape
/// (`major` = length of the axis `indptr` runs over, `minor` = the other one).
pub(crate) fn read_compressed(path: &Path, g: &Group, major: usize, minor: usize) -> Result<Compressed> {
    let data = read_f32(path, &dataset(path, g, "data")?)?;
    let indices = read_i64(path, &dataset(path, g, "indices")?)?;
    let indptr = read_i64(path, &dataset(path, g, "indptr")?)?;
    check_indptr(path, g, &indptr, major, data.len(), indices.len())?;
    let gname = g.name();
    let bad = |msg: String| Error::format(path, format!("sparse matrix '{gname}': {msg}"));
    if let Some(i) = indices.iter().position(|&i| i < 0 || i as usize >= minor) {
        return Err(bad(format!("index {} at position {i} is outside 0..{minor}", indices[i])));
    }
    Ok(Compressed { data, indices, indptr })
}

/// Checks a sparse group's `indptr` (over `major` rows or columns) against the lengths of its
/// `data` (`nd`) and `indices` (`ni`).
pub(crate) fn check_indptr(path: &Path, g: &Group, indptr: &[i64], major: usize, nd: usize, ni: usize) -> Result<()> {
    let gname = g.name();
    let bad = |msg: String| Error::format(path, format!("sparse matrix '{gname}': {msg}"));
    if nd != ni {
        return Err(bad(format!("data has {nd} entries, indices {ni}")));
    }
    if indptr.len() != major + 1 {
        return Err(bad(format!("indptr has {} entries, expected {}", indptr.len(), major + 1)));
    }
    if indptr[0] != 0 || indptr.windows(2).any(|w| w[1] < w[0]) || indptr[major] as usize != nd {
        return Err(bad(format!("indptr is not 0..={nd} non-decreasing")));
    }
    Ok(())
}

/// Dense row-major `rows × cols` from a compressed matrix; `csr` says whether `indptr` runs over rows.
pub(crate) fn densify(path: &Path, c: &Compressed, rows: usize, cols: usize, csr: bool) -> Result<Vec<f32>> {
    let total = crate::error::limits::MAX_VALUES.check_dims(&[rows, cols], format_args!("{}: sparse matrix densified", path.display()))?;
    let mut out = vec![0f32; total];
    let major = if csr { rows } else { cols };
    for m in 0..major {
        for k in c.indptr[m] as usize..c.indptr[m + 1] as usize {
            let j = c.indices[k] as usize;
            let (r, col) = if csr { (m, j) } else { (j, m) };
            out[r * cols + col] += c.data[k];
        }
    }
    Ok(out)
}

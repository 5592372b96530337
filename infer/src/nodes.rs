//! Node-classification data: a general Planetoid-style loader (edges, sparse features, labels,
//! splits as plain TSV) and edge-index validation for node models.

use crate::data::text::Lines;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// A graph with node features, labels and a split.
#[derive(Debug, Clone)]
pub struct NodeDataset {
    /// Dataset name (file name of the prefix).
    pub name: String,
    /// Number of nodes.
    pub num_nodes: usize,
    /// Feature width per node.
    pub num_features: usize,
    /// Dense `[num_nodes, num_features]`, row-major.
    pub features: Vec<f32>,
    /// Class index per node, -1 = unlabeled.
    pub labels: Vec<i64>,
    /// Number of classes: largest label + 1.
    pub num_classes: usize,
    /// Undirected edges, each once (`a < b`), no self-loops.
    pub edges: Vec<(u32, u32)>,
    /// Training nodes.
    pub train: Vec<usize>,
    /// Validation nodes.
    pub val: Vec<usize>,
    /// Test nodes.
    pub test: Vec<usize>,
}

fn file(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn first_existing(prefix: &Path, suffixes: &[&str]) -> Result<PathBuf> {
    suffixes.iter().map(|s| file(prefix, s)).find(|p| p.exists()).ok_or_else(|| Error::format(file(prefix, suffixes[0]), "not found"))
}

/// Rows of a TSV, each split on tabs/whitespace; `#` lines are comments. The first other line
/// is a header when its first field is not an integer (a header may also sit in a comment, as
/// in `# 2708 nodes x 1433 features; row col value`: then the first line is data).
fn rows(path: &Path, min_cols: usize) -> Result<Vec<(usize, Vec<String>)>> {
    let mut lines = Lines::open(path)?;
    let mut out = Vec::new();
    let mut first = true;
    while let Some((no, line)) = lines.next_line()? {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if std::mem::take(&mut first) && line.split_whitespace().next().is_some_and(|f| f.parse::<i64>().is_err()) {
            continue;
        }
        let f: Vec<String> = line.split_whitespace().map(String::from).collect();
        if f.len() < min_cols {
            return Err(Error::format(path, format!("line {no}: expected {min_cols} columns, found {}", f.len())));
        }
        out.push((no, f));
    }
    Ok(out)
}

fn int(path: &Path, no: usize, s: &str) -> Result<i64> {
    s.parse().map_err(|_| Error::format(path, format!("line {no}: `{s}` is not an integer")))
}

/// Every file [`read_planetoid`] may read for `prefix` (whether it exists or not).
pub fn planetoid_files(prefix: &Path) -> Vec<PathBuf> {
    [".edges.tsv", ".features.coo.tsv.gz", ".features.coo.tsv", ".labels.tsv", ".splits.tsv"].iter().map(|s| file(prefix, s)).collect()
}

/// Load `<prefix>.edges.tsv` (src dst), `<prefix>.features.coo.tsv[.gz]` (row col value),
/// `<prefix>.labels.tsv` (node label, -1 = none) and `<prefix>.splits.tsv` (node train|val|test).
pub fn read_planetoid(prefix: &Path) -> Result<NodeDataset> {
    let name = prefix.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let lp = file(prefix, ".labels.tsv");
    let mut labels = Vec::new();
    for (no, r) in rows(&lp, 2)? {
        let node = int(&lp, no, &r[0])?;
        if node != labels.len() as i64 {
            return Err(Error::format(&lp, format!("line {no}: nodes must be listed in order 0..n, found {node}")));
        }
        labels.push(int(&lp, no, &r[1])?);
    }
    let n = labels.len();
    if n == 0 {
        return Err(Error::format(&lp, "no nodes"));
    }
    // class ids index the output columns: a huge one (found by fuzzing: i64::MAX overflowed) is an error
    let max_label = labels.iter().copied().max().unwrap_or(-1);
    if max_label >= MAX_CLASSES {
        return Err(Error::format(&lp, format!("class id {max_label} is too large (at most {})", MAX_CLASSES - 1)));
    }
    let num_classes = (max_label + 1).max(0) as usize;
    let ep = file(prefix, ".edges.tsv");
    let edges = undirected(&read_edges(&ep, n)?);
    let fp = first_existing(prefix, &[".features.coo.tsv.gz", ".features.coo.tsv"])?;
    let (features, num_features) = read_coo_features(&fp, n)?;
    let sp = file(prefix, ".splits.tsv");
    let (mut train, mut val, mut test) = (Vec::new(), Vec::new(), Vec::new());
    for (no, r) in rows(&sp, 2)? {
        let node = check_node(&sp, no, int(&sp, no, &r[0])?, n)? as usize;
        match r[1].as_str() {
            "train" => train.push(node),
            "val" | "valid" | "validation" => val.push(node),
            "test" => test.push(node),
            o => return Err(Error::format(&sp, format!("line {no}: unknown split `{o}` (train, val, test)"))),
        }
    }
    for (split, nodes) in [("train", &train), ("val", &val), ("test", &test)] {
        if let Some(&u) = nodes.iter().find(|&&u| labels[u] < 0) {
            return Err(Error::format(&sp, format!("{split} node {u} has no label")));
        }
    }
    Ok(NodeDataset { name, num_nodes: n, num_features, features, labels, num_classes, edges, train, val, test })
}

fn check_node(path: &Path, no: usize, v: i64, n: usize) -> Result<u32> {
    if v < 0 || v as usize >= n {
        return Err(Error::format(path, format!("line {no}: node {v} out of range 0..{n}")));
    }
    Ok(v as u32)
}

/// Sparse features as `row col value` lines (header first) into a dense `[n, F]` matrix;
/// F = largest column + 1.
pub fn read_coo_features(path: &Path, n: usize) -> Result<(Vec<f32>, usize)> {
    read_coo_features_opt(path, Some(n)).map(|(f, w, _)| (f, w))
}

/// As [`read_coo_features`]; without `n`, the node count is the largest row + 1. Returns
/// `(features, width, n)`.
pub fn read_coo_features_opt(path: &Path, n: Option<usize>) -> Result<(Vec<f32>, usize, usize)> {
    let coo = rows(path, 3)?;
    let n = match n {
        Some(n) => n,
        None => coo.iter().filter_map(|(_, r)| r[0].parse::<i64>().ok()).max().map_or(0, |m| (m + 1).max(0) as usize),
    };
    if n == 0 {
        return Err(Error::format(path, "no nodes (empty feature file)"));
    }
    if n > u32::MAX as usize {
        return Err(Error::Input(format!("{n} nodes: node ids must fit in 32 bits (at most {})", u32::MAX)));
    }
    let mut num_features = 0;
    let mut triples = Vec::with_capacity(coo.len());
    for (no, r) in coo {
        let row = check_node(path, no, int(path, no, &r[0])?, n)?;
        let col = int(path, no, &r[1])?;
        if col < 0 {
            return Err(Error::format(path, format!("line {no}: negative feature index {col}")));
        }
        let v: f32 = r[2].parse().map_err(|_| Error::format(path, format!("line {no}: `{}` is not a number", r[2])))?;
        if !v.is_finite() {
            return Err(Error::format(path, format!("line {no}: non-finite feature value {v}")));
        }
        num_features = num_features.max(col as usize + 1);
        triples.push((row as usize, col as usize, v));
    }
    let values = crate::error::limits::MAX_VALUES.check_dims(&[n, num_features], format_args!("{}: nodes × features", path.display()))?;
    let mut features = vec![0f32; values];
    for (r, c, v) in triples {
        features[r * num_features + c] = v;
    }
    Ok((features, num_features, n))
}

/// Directed edges `src dst` (header first); ids must be in `0..n`.
pub fn read_edges(path: &Path, n: usize) -> Result<Vec<(u32, u32)>> {
    let mut edges = Vec::new();
    for (no, r) in rows(path, 2)? {
        let a = check_node(path, no, int(path, no, &r[0])?, n)?;
        let b = check_node(path, no, int(path, no, &r[1])?, n)?;
        edges.push((a, b));
    }
    Ok(edges)
}

/// Each undirected pair once (`a < b`), self-loops dropped.
pub fn undirected(edges: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut e: Vec<(u32, u32)> = edges.iter().filter(|(a, b)| a != b).map(|&(a, b)| (a.min(b), a.max(b))).collect();
    e.sort_unstable();
    e.dedup();
    e
}

impl NodeDataset {
    /// Both directions of every edge: `(src, dst)`.
    pub fn edge_index(&self) -> (Vec<i64>, Vec<i64>) {
        directed(&self.edges)
    }
}

/// Undirected pairs as directed edges: all pairs as given, then all reversed (the order `infer
/// nodes` has always used).
pub fn both_directions(edges: &[(u32, u32)]) -> (Vec<i64>, Vec<i64>) {
    let (mut src, mut dst): (Vec<i64>, Vec<i64>) = edges.iter().map(|&(a, b)| (a as i64, b as i64)).unzip();
    let (s2, d2) = (dst.clone(), src.clone());
    src.extend(s2);
    dst.extend(d2);
    (src, dst)
}

/// Undirected pairs as directed edges, interleaved: `a→b` then `b→a` for each pair.
pub fn directed(edges: &[(u32, u32)]) -> (Vec<i64>, Vec<i64>) {
    let mut src = Vec::with_capacity(2 * edges.len());
    let mut dst = Vec::with_capacity(2 * edges.len());
    for &(a, b) in edges {
        src.extend([a as i64, b as i64]);
        dst.extend([b as i64, a as i64]);
    }
    (src, dst)
}

/// The edges in target order, stable (the edges into one target keep their order); as given when
/// already in that order. Every node model sorts its edges by target (TopK) and ONNX Runtime's
/// TopK runs ~5× faster on keys already in order (decisions §5), so `classify_nodes` feeds them so.
/// A counting sort, O(E + n); targets must be in `0..n` ([`check_edges`]).
pub fn target_order(src: &[i64], dst: &[i64], n: usize) -> (Vec<i64>, Vec<i64>) {
    if dst.windows(2).all(|w| w[0] <= w[1]) {
        return (src.to_vec(), dst.to_vec());
    }
    let mut next = vec![0usize; n + 1];
    dst.iter().for_each(|&d| next[d as usize + 1] += 1);
    for v in 0..n {
        next[v + 1] += next[v];
    }
    let (mut s, mut t) = (vec![0i64; src.len()], vec![0i64; dst.len()]);
    for (&a, &b) in src.iter().zip(dst) {
        let slot = &mut next[b as usize];
        (s[*slot], t[*slot]) = (a, b);
        *slot += 1;
    }
    (s, t)
}

/// Check an edge list against the node count before a model sees it.
pub fn check_edges(num_nodes: usize, src: &[i64], dst: &[i64]) -> Result<()> {
    if num_nodes == 0 {
        return Err(Error::Input("empty graph: no nodes".into()));
    }
    if src.len() != dst.len() {
        return Err(Error::Input(format!("edge_index rows differ in length: {} sources, {} targets", src.len(), dst.len())));
    }
    for (i, (&s, &d)) in src.iter().zip(dst).enumerate() {
        for (what, v) in [("source", s), ("target", d)] {
            if v < 0 {
                return Err(Error::Input(format!("edge {i}: negative {what} node id {v}")));
            }
            if v as usize >= num_nodes {
                return Err(Error::Input(format!("edge {i}: {what} node id {v} out of range (graph has {num_nodes} nodes)")));
            }
        }
    }
    Ok(())
}

/// Check that a model card describes a node classifier.
pub fn check_node_family(card: &onnx_format::ModelCard, model: &Path) -> Result<()> {
    card.require::<onnx_format::card::NodeFeatures>().map_err(|e| Error::card(model, e))?;
    Ok(())
}

/// Class probabilities `[n, K]` of a node classifier, after checking the inputs against the card.
#[allow(clippy::too_many_arguments)]
pub fn classify_nodes(
    session: &mut crate::runtime::Session,
    card: &onnx_format::ModelCard,
    model: &Path,
    x: &[f32],
    n: usize,
    width: usize,
    src: &[i64],
    dst: &[i64],
) -> Result<Vec<f32>> {
    check_node_family(card, model)?;
    let want: usize = card
        .inputs
        .iter()
        .find(|i| i.name == "x")
        .and_then(|i| i.shape.get(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Model { path: model.into(), msg: "model card does not give the feature width of input `x`".into() })?;
    if width > want {
        return Err(Error::Input(format!("feature width mismatch: the model takes {want} features per node, the input has {width}")));
    }
    check_edges(n, src, dst)?;
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::Input("node features contain NaN or infinite values".into()));
    }
    // pad missing trailing feature columns (sparse files need not mention the last ones)
    let x: Vec<f32> = if width == want {
        x.to_vec()
    } else {
        x.chunks(width.max(1)).flat_map(|r| r.iter().copied().chain(std::iter::repeat_n(0.0, want - width))).collect()
    };
    let (src, dst) = target_order(src, dst, n);
    let e = src.len();
    let inputs = vec![crate::runtime::Value::f32(&[n, want], x), crate::runtime::Value::i64(&[2, e], [src, dst].concat())];
    session.run_output(&inputs, "probabilities")?.into_f32()
}

/// Largest number of node classes a Planetoid label file may declare.
const MAX_CLASSES: i64 = 1 << 16;

#[cfg(test)]
mod tests {
    use super::*;

    fn cora() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/planetoid/derived/cora")
    }

    #[test]
    fn target_order_is_a_stable_counting_sort() {
        let (src, dst) = (vec![0, 1, 2, 3, 4, 5], vec![2, 0, 2, 1, 0, 2]);
        assert_eq!(target_order(&src, &dst, 3), (vec![1, 4, 3, 0, 2, 5], vec![0, 0, 1, 2, 2, 2]));
        let (s, t) = target_order(&src, &[0, 0, 1, 1, 2, 2], 3);
        assert_eq!((s, t), (src.clone(), vec![0, 0, 1, 1, 2, 2]));
        assert_eq!(target_order(&[], &[], 4), (vec![], vec![]));
    }

    #[test]
    fn cora_counts() {
        let d = read_planetoid(&cora()).unwrap();
        assert_eq!((d.num_nodes, d.num_features, d.num_classes), (2708, 1433, 7));
        assert_eq!(d.edges.len(), 5278);
        assert_eq!((d.train.len(), d.val.len(), d.test.len()), (140, 500, 1000));
        assert_eq!(d.edge_index().0.len(), 2 * 5278);
    }

    #[test]
    fn bad_edges() {
        assert!(check_edges(3, &[0, 1], &[1, 2]).is_ok());
        assert!(check_edges(3, &[0, 3], &[1, 2]).unwrap_err().to_string().contains("out of range"));
        assert!(check_edges(3, &[-1], &[1]).unwrap_err().to_string().contains("negative"));
        assert!(check_edges(0, &[], &[]).unwrap_err().to_string().contains("empty"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g");
        std::fs::write(file(&p, ".labels.tsv"), "node\tlabel\n0\t1\n1\t0\n").unwrap();
        std::fs::write(file(&p, ".edges.tsv"), "src\tdst\n0\t5\n").unwrap();
        std::fs::write(file(&p, ".features.coo.tsv"), "row\tcol\tvalue\n0\t0\t1\n").unwrap();
        std::fs::write(file(&p, ".splits.tsv"), "node\tsplit\n0\ttrain\n").unwrap();
        let e = read_planetoid(&p).unwrap_err().to_string();
        assert!(e.contains("g.edges.tsv") && e.contains("out of range"), "{e}");
    }

    /// The shipped Cora features put their header in a comment: the first line is data.
    #[test]
    fn header_in_a_comment_keeps_the_first_row() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.tsv");
        std::fs::write(&p, "# 2 nodes x 3 features; row\tcol\tvalue\n0\t2\t1\n1\t0\t0.5\n").unwrap();
        let (f, w) = read_coo_features(&p, 2).unwrap();
        assert_eq!((f, w), (vec![0.0, 0.0, 1.0, 0.5, 0.0, 0.0], 3));
        std::fs::write(&p, "row col value\n0\t2\t1\n").unwrap();
        assert_eq!(read_coo_features(&p, 1).unwrap(), (vec![0.0, 0.0, 1.0], 3));
        std::fs::write(&p, "# header in comment\nrow col value\n0\t2\t1\n").unwrap();
        assert_eq!(read_coo_features(&p, 1).unwrap(), (vec![0.0, 0.0, 1.0], 3));
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/planetoid/derived/cora.features.coo.tsv.gz");
        let (f, w) = read_coo_features(&shipped, 2708).unwrap();
        assert_eq!(w, 1433);
        assert_eq!(f[19], 1.0, "the first triple (0, 19, 1) is read");
        assert_eq!(f.iter().filter(|&&v| v != 0.0).count(), 49216, "nnz as the file's comment says");
    }
}

//! Gene graphs: networkx adjacency lists and simple edge lists (gzip allowed for both).
//!
//! * adjlist (`.adjlist`, `.adjlist.gz`): `#` starts a comment (to the end of the line); each
//!   line is a node followed by its neighbours, whitespace-separated. An undirected edge may be
//!   listed on one or both of its nodes' lines.
//! * edge list (`.tsv`, `.txt`, `.edgelist`, ...): two columns `a b`, optionally a third weight,
//!   tab- or whitespace-separated; `#` lines are comments. The first line is taken as a header
//!   when its weight field is not a number or its first two fields are column names like
//!   `src dst`, `source target`, `from to`, `gene1 gene2`, `gene_a gene_b`, `node1 node2`.
//!
//! Edges are undirected: duplicates are merged (the first weight is kept) and self-loops dropped;
//! both are counted in [`GraphReport`]. Nodes are numbered in order of first appearance.

use crate::data::text::Lines;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

/// An undirected graph over named genes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GeneGraph {
    /// Node (gene) names; a node's id is its index here.
    pub nodes: Vec<String>,
    /// Undirected edges, each once, `a < b`, sorted.
    pub edges: Vec<(u32, u32)>,
    /// One weight per edge, when the source has weights.
    pub weights: Option<Vec<f32>>,
}

/// What was merged or dropped while reading a graph.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphReport {
    /// Self-loop edges dropped.
    pub self_loops: usize,
    /// Edge mentions beyond the first (e.g. the same edge listed on both nodes' lines).
    pub duplicate_edges: usize,
}

impl GeneGraph {
    /// Number of nodes.
    pub fn n_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Number of (undirected) edges.
    pub fn n_edges(&self) -> usize {
        self.edges.len()
    }

    /// Node name → node id.
    pub fn node_index(&self) -> HashMap<&str, u32> {
        self.nodes.iter().enumerate().map(|(i, n)| (n.as_str(), i as u32)).collect()
    }

    /// Edges between positions in `genes` (the data's gene order): `(i, j)` with `i < j` for
    /// each graph edge whose two genes are both in `genes`; a repeated gene name uses its first
    /// position. Sorted.
    pub fn induced(&self, genes: &[String]) -> Vec<(u32, u32)> {
        let mut pos: HashMap<&str, u32> = HashMap::new();
        for (i, g) in genes.iter().enumerate() {
            pos.entry(g.as_str()).or_insert(i as u32);
        }
        let node_pos: Vec<Option<u32>> = self.nodes.iter().map(|n| pos.get(n.as_str()).copied()).collect();
        let mut out: Vec<(u32, u32)> = self
            .edges
            .iter()
            .filter_map(|&(a, b)| {
                let (i, j) = (node_pos[a as usize]?, node_pos[b as usize]?);
                Some((i.min(j), i.max(j)))
            })
            .collect();
        out.sort_unstable();
        out
    }
}

/// Reads a graph, choosing the format by name: `*.adjlist[.gz]` → adjlist, anything else →
/// edge list.
pub fn read_graph(path: &Path) -> Result<(GeneGraph, GraphReport)> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    if name.strip_suffix(".gz").unwrap_or(&name).ends_with(".adjlist") { read_adjlist(path) } else { read_edge_list(path) }
}

struct Builder {
    nodes: Vec<String>,
    ids: HashMap<String, u32>,
    edges: HashMap<(u32, u32), f32>,
    order: Vec<(u32, u32)>,
    report: GraphReport,
}

impl Builder {
    fn new() -> Self {
        Builder { nodes: Vec::new(), ids: HashMap::new(), edges: HashMap::new(), order: Vec::new(), report: GraphReport::default() }
    }

    fn node(&mut self, path: &Path, name: &str) -> Result<u32> {
        if let Some(&id) = self.ids.get(name) {
            return Ok(id);
        }
        let id = u32::try_from(self.nodes.len()).map_err(|_| Error::format(path, "more than 2^32 nodes"))?;
        self.nodes.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        Ok(id)
    }

    fn edge(&mut self, a: u32, b: u32, w: f32) {
        if a == b {
            self.report.self_loops += 1;
            return;
        }
        let key = (a.min(b), a.max(b));
        match self.edges.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => self.report.duplicate_edges += 1,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(w);
                self.order.push(key);
            }
        }
    }

    fn finish(mut self, weighted: bool) -> (GeneGraph, GraphReport) {
        self.order.sort_unstable();
        let weights = weighted.then(|| self.order.iter().map(|k| self.edges[k]).collect());
        (GeneGraph { nodes: self.nodes, edges: self.order, weights }, self.report)
    }
}

/// Reads a networkx adjacency list (see the module docs).
pub fn read_adjlist(path: &Path) -> Result<(GeneGraph, GraphReport)> {
    let mut lines = Lines::open(path)?;
    let mut b = Builder::new();
    while let Some((_, line)) = lines.next_line()? {
        let line = line.split('#').next().unwrap_or("");
        let mut tokens = line.split_whitespace();
        let Some(first) = tokens.next() else { continue };
        let u = b.node(path, first)?;
        for t in tokens {
            let v = b.node(path, t)?;
            b.edge(u, v, 1.0);
        }
    }
    Ok(b.finish(false))
}

const HEADER_NAMES: &[(&str, &str)] =
    &[("src", "dst"), ("source", "target"), ("from", "to"), ("gene1", "gene2"), ("gene_a", "gene_b"), ("node1", "node2")];

/// Reads an edge list (see the module docs).
pub fn read_edge_list(path: &Path) -> Result<(GeneGraph, GraphReport)> {
    let mut lines = Lines::open(path)?;
    let mut b = Builder::new();
    let mut columns: Option<usize> = None;
    let mut first = true;
    while let Some((n, line)) = lines.next_line()? {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = if t.contains('\t') { t.split('\t').map(str::trim).collect() } else { t.split_whitespace().collect() };
        let is_first = std::mem::replace(&mut first, false);
        if is_first {
            let (a, c) = (fields[0].to_ascii_lowercase(), fields.get(1).map(|s| s.to_ascii_lowercase()));
            let named = c.is_some_and(|c| HEADER_NAMES.iter().any(|(x, y)| *x == a && *y == c));
            let text_weight = fields.get(2).is_some_and(|w| w.parse::<f32>().is_err());
            if named || text_weight {
                continue;
            }
        }
        let want = *columns.get_or_insert(fields.len());
        if !(2..=3).contains(&want) {
            return Err(Error::format(path, format!("line {n}: expected 2 or 3 columns (node, node[, weight]), found {want}")));
        }
        if fields.len() != want {
            return Err(Error::format(path, format!("line {n}: expected {want} columns, found {}", fields.len())));
        }
        if fields[0].is_empty() || fields[1].is_empty() {
            return Err(Error::format(path, format!("line {n}: empty node name")));
        }
        let w = match fields.get(2) {
            None => 1.0,
            Some(w) => {
                w.parse::<f32>().map_err(|_| Error::format(path, format!("line {n}, column 3: cannot parse weight '{w}' as a number")))?
            }
        };
        let (u, v) = (b.node(path, fields[0])?, b.node(path, fields[1])?);
        b.edge(u, v, w);
    }
    Ok(b.finish(columns == Some(3)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_data;

    #[test]
    fn genemania_counts() {
        let (g, rep) = read_adjlist(&test_data("gene_graphs/genemania.adjlist.gz")).unwrap();
        assert_eq!(g.n_nodes(), 16300);
        assert_eq!(g.n_edges(), 264657);
        assert_eq!(rep.self_loops, 0);
        assert!(g.edges.iter().all(|&(a, b)| a < b));
        assert!(g.edges.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(g.nodes[0], "ADGRL2");
        assert!(g.weights.is_none());
    }

    #[test]
    fn genemania_induced_on_leukemia_genes() {
        let (g, _) = read_graph(&test_data("gene_graphs/genemania.adjlist.gz")).unwrap();
        let (m, _) = crate::data::gsea::read_gsea(&test_data("gseapy_leukemia/Leukemia_hgu95av2.trim.txt.gz")).unwrap();
        let idx = g.node_index();
        let overlap = m.genes.iter().filter(|x| idx.contains_key(x.as_str())).count();
        assert_eq!(overlap, 7930); // as stated in gseapy_leukemia/SOURCE.txt
        let e = g.induced(&m.genes);
        assert!(!e.is_empty() && e.len() < g.n_edges());
        assert!(e.iter().all(|&(a, b)| a < b && (b as usize) < m.genes.len()));
        // Every induced edge is a graph edge.
        let set: std::collections::HashSet<(u32, u32)> = g.edges.iter().copied().collect();
        for &(i, j) in e.iter().take(1000) {
            let (a, b) = (idx[m.genes[i as usize].as_str()], idx[m.genes[j as usize].as_str()]);
            assert!(set.contains(&(a.min(b), a.max(b))));
        }
    }

    #[test]
    fn small_adjlist() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.adjlist");
        std::fs::write(&p, "# comment\nA B C # trailing\nB A A\nC C\nD\n\n").unwrap();
        let (g, rep) = read_graph(&p).unwrap();
        assert_eq!(g.nodes, vec!["A", "B", "C", "D"]);
        assert_eq!(g.edges, vec![(0, 1), (0, 2)]);
        assert_eq!(rep, GraphReport { self_loops: 1, duplicate_edges: 2 });
        let genes: Vec<String> = ["C", "X", "A", "B", "A"].iter().map(|s| s.to_string()).collect();
        assert_eq!(g.induced(&genes), vec![(0, 2), (2, 3)]);
    }

    #[test]
    fn karate_edge_list() {
        let (g, rep) = read_graph(&test_data("karate_club/karate_edges.tsv")).unwrap();
        assert_eq!((g.n_nodes(), g.n_edges()), (34, 78));
        assert_eq!(rep, GraphReport::default());
        let w = g.weights.as_ref().unwrap();
        assert_eq!(w.len(), 78);
        assert!(w.iter().all(|&x| (1.0..=7.0).contains(&x)));
        assert_eq!(g.nodes[0], "0");
        assert_eq!(g.edges[0], (0, 1));
        assert_eq!(w[0], 4.0);
    }

    #[test]
    fn edge_list_errors_and_headers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.tsv");
        std::fs::write(&p, "source\ttarget\nA\tB\nB\tA\nC\tC\n").unwrap();
        let (g, rep) = read_edge_list(&p).unwrap();
        assert_eq!(g.nodes, vec!["A", "B", "C"]);
        assert_eq!(g.edges, vec![(0, 1)]);
        assert_eq!(rep, GraphReport { self_loops: 1, duplicate_edges: 1 });

        std::fs::write(&p, "A\tB\t1\nB\tC\n").unwrap();
        let e = read_edge_list(&p).unwrap_err();
        assert!(matches!(e, Error::Format { .. }));
        assert!(e.to_string().contains("line 2") && e.to_string().contains("e.tsv"), "{e}");

        std::fs::write(&p, "A\tB\t1\nB\tC\tx\n").unwrap();
        let e = read_edge_list(&p).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("'x'"), "{e}");

        std::fs::write(&p, "A\n").unwrap();
        let e = read_edge_list(&p).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("found 1"), "{e}");
    }
}

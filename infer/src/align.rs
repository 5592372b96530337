//! Align an input's genes to a model's gene list by symbol.

use crate::data::ExpressionMatrix;
use crate::{Error, Result};
use std::collections::{HashMap, HashSet};

/// How the input's columns map onto the model's genes.
#[derive(Debug, Clone)]
pub struct Alignment {
    /// For each model gene, the input column that feeds it (None = missing).
    pub index: Vec<Option<usize>>,
    /// Model genes found in the input.
    pub matched: usize,
    /// Model genes absent from the input.
    pub missing: Vec<String>,
    /// Input genes the model does not use.
    pub extra: usize,
}

fn key(s: &str) -> String {
    s.trim().to_ascii_uppercase()
}

impl Alignment {
    /// Match by symbol (case-insensitive); error when nothing overlaps, or when a gene the
    /// model uses comes twice in the input (which column feeds it would be a silent guess:
    /// collapse probes to genes first). Repeats of genes the model does not use are ignored.
    pub fn new(model_genes: &[String], input_genes: &[String]) -> Result<Self> {
        let mut pos: HashMap<String, usize> = HashMap::with_capacity(input_genes.len());
        let mut repeated: HashSet<String> = HashSet::new();
        for (i, g) in input_genes.iter().enumerate() {
            if let std::collections::hash_map::Entry::Vacant(e) = pos.entry(key(g)) {
                e.insert(i);
            } else {
                repeated.insert(key(g));
            }
        }
        if let Some(g) = model_genes.iter().find(|g| repeated.contains(&key(g))) {
            let cols: Vec<String> =
                input_genes.iter().enumerate().filter(|(_, x)| key(x) == key(g)).map(|(i, x)| format!("{} (`{x}`)", i + 1)).collect();
            return Err(Error::Input(format!(
                "gene `{g}` of the model comes {} times in the input, gene columns {}: which one feeds the model would be a guess; \
                 keep one column per gene (e.g. average or pick the probes of a gene) and run again",
                cols.len(),
                cols.join(", ")
            )));
        }
        let index: Vec<Option<usize>> = model_genes.iter().map(|g| pos.get(&key(g)).copied()).collect();
        let matched = index.iter().filter(|i| i.is_some()).count();
        if matched == 0 {
            let show: Vec<&str> = input_genes.iter().take(5).map(|s| s.as_str()).collect();
            return Err(Error::Input(format!(
                "no gene of the input matches the model's {} genes (input genes start with: {}; model genes start with: {})",
                model_genes.len(),
                show.join(", "),
                model_genes.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        let missing = model_genes.iter().zip(&index).filter(|(_, i)| i.is_none()).map(|(g, _)| g.clone()).collect();
        Ok(Self { index, matched, missing, extra: input_genes.len() - matched.min(input_genes.len()) })
    }

    /// Rows × model genes, in model order; missing genes are NaN (the models impute them).
    pub fn apply(&self, m: &ExpressionMatrix) -> Vec<f32> {
        let n = m.genes.len();
        let mut out = Vec::with_capacity(m.samples.len() * self.index.len());
        for row in m.values.chunks(n) {
            out.extend(self.index.iter().map(|i| i.map_or(f32::NAN, |c| row[c])));
        }
        out
    }

    /// One line for the user.
    pub fn summary(&self) -> String {
        format!(
            "{} of {} model genes found in the input ({} missing, imputed with the training mean; {} extra input genes ignored)",
            self.matched,
            self.index.len(),
            self.missing.len(),
            self.extra
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reorders_fills_and_ignores() {
        let model: Vec<String> = ["A", "B", "C"].iter().map(|s| s.to_string()).collect();
        let m = ExpressionMatrix {
            samples: vec!["s1".into(), "s2".into()],
            genes: vec!["c".into(), "X".into(), "A".into()],
            values: vec![3., 9., 1., 30., 90., 10.],
            labels: None,
        };
        let a = Alignment::new(&model, &m.genes).unwrap();
        assert_eq!(a.matched, 2);
        assert_eq!(a.missing, vec!["B".to_string()]);
        assert_eq!(a.extra, 1);
        let v = a.apply(&m);
        assert_eq!(v[0], 1.);
        assert!(v[1].is_nan());
        assert_eq!(v[2], 3.);
        assert_eq!(v[3], 10.);
    }

    #[test]
    fn no_overlap_is_an_error() {
        let e = Alignment::new(&["A".into()], &["Z".into()]).unwrap_err().to_string();
        assert!(e.contains("no gene"), "{e}");
    }

    #[test]
    fn a_model_gene_twice_is_an_error_other_repeats_are_not() {
        let model: Vec<String> = ["A", "B"].iter().map(|s| s.to_string()).collect();
        let input: Vec<String> = ["a", "X", "X", "B", "A"].iter().map(|s| s.to_string()).collect();
        let e = Alignment::new(&model, &input).unwrap_err().to_string();
        assert!(e.contains("gene `A`") && e.contains("2 times") && e.contains("1 (`a`), 5 (`A`)"), "{e}");
        let input: Vec<String> = ["A", "X", "x", "B"].iter().map(|s| s.to_string()).collect();
        let a = Alignment::new(&model, &input).unwrap();
        assert_eq!((a.matched, a.extra), (2, 2));
    }
}

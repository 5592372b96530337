//! Queries on an exported gene embedding (Gene2Vec): nearest genes by cosine similarity.

use crate::runtime::{Session, Value};
use crate::{Error, Result};

/// Every gene's `embedding` from the model (`n` genes, in chunks): `(dim, rows)`.
pub fn embeddings(session: &mut Session, n: usize) -> Result<(usize, Vec<f32>)> {
    let mut x = Vec::new();
    for lo in (0..n).step_by(1024) {
        let ids: Vec<i64> = (lo as i64..(lo + 1024).min(n) as i64).collect();
        x.extend(session.run_output(&[Value::i64(&[ids.len()], ids)], "embedding")?.into_f32()?);
    }
    if x.is_empty() || x.len() % n != 0 {
        return Err(Error::Input(format!("`embedding` gave {} values for {n} genes", x.len())));
    }
    Ok((x.len() / n, x))
}

/// The other genes by cosine similarity to gene `i`, most similar first (ties by id):
/// `(dim, [(cosine, gene)])`.
pub fn nearest(session: &mut Session, n: usize, i: usize) -> Result<(usize, Vec<(f64, usize)>)> {
    let (d, x) = embeddings(session, n)?;
    let norm = |r: usize| x[r * d..(r + 1) * d].iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
    let ni = norm(i);
    let mut sims: Vec<(f64, usize)> = (0..n)
        .filter(|&j| j != i)
        .map(|j| {
            let dot: f64 = x[i * d..(i + 1) * d].iter().zip(&x[j * d..(j + 1) * d]).map(|(a, b)| *a as f64 * *b as f64).sum();
            let den = ni * norm(j);
            (if den > 0.0 { dot / den } else { 0.0 }, j)
        })
        .collect();
    sims.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    Ok((d, sims))
}

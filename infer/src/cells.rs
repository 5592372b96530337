//! Single-cell preprocessing shared by training and inference: PCA (fit in training, stored in
//! the model card, applied here at inference) and a symmetric kNN cell graph on PCA coordinates.

use crate::{Error, Result};

pub use onnx_format::card::Pca;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Jacobi eigen-decomposition of a small symmetric matrix `[m, m]`: (eigenvalues, eigenvectors as columns).
fn jacobi(mut a: Vec<f64>, m: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0; m * m];
    for i in 0..m {
        v[i * m + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..m).flat_map(|i| (0..m).filter(move |&j| j != i).map(move |j| (i, j))).map(|(i, j)| a[i * m + j].powi(2)).sum();
        if off < 1e-22 {
            break;
        }
        for p in 0..m {
            for q in p + 1..m {
                let apq = a[p * m + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * m + q] - a[p * m + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                for k in 0..m {
                    let (akp, akq) = (a[k * m + p], a[k * m + q]);
                    a[k * m + p] = c * akp - s * akq;
                    a[k * m + q] = s * akp + c * akq;
                }
                for k in 0..m {
                    let (apk, aqk) = (a[p * m + k], a[q * m + k]);
                    a[p * m + k] = c * apk - s * aqk;
                    a[q * m + k] = s * apk + c * aqk;
                }
                for k in 0..m {
                    let (vkp, vkq) = (v[k * m + p], v[k * m + q]);
                    v[k * m + p] = c * vkp - s * vkq;
                    v[k * m + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..m).map(|i| a[i * m + i]).collect(), v)
}

/// Fit on `x [n, g]` (row-major): block power iteration on the covariance, then Rayleigh–Ritz.
/// Deterministic; components are sign-fixed (largest |loading| positive).
pub fn fit_pca(x: &[f32], n: usize, g: usize, n_pcs: usize) -> Result<Pca> {
    if n_pcs == 0 {
        return Err(Error::Input("the number of principal components must be at least 1".into()));
    }
    if n < 2 || g == 0 || x.len() != n * g {
        return Err(Error::Input(format!("PCA needs at least 2 cells and 1 gene, got {n} × {g} ({} values)", x.len())));
    }
    let k = n_pcs.min(g).min(n - 1);
    let mean: Vec<f64> = (0..g).map(|j| (0..n).map(|i| x[i * g + j] as f64).sum::<f64>() / n as f64).collect();
    let xc: Vec<f64> = (0..n * g).map(|t| x[t] as f64 - mean[t % g]).collect();
    // covariance [g, g]
    let mut cov = vec![0.0; g * g];
    for i in 0..n {
        let row = &xc[i * g..(i + 1) * g];
        for a in 0..g {
            let ra = row[a];
            if ra == 0.0 {
                continue;
            }
            let c = &mut cov[a * g..(a + 1) * g];
            for b in 0..g {
                c[b] += ra * row[b];
            }
        }
    }
    cov.iter_mut().for_each(|c| *c /= (n - 1) as f64);
    // block power iteration with a few extra vectors
    let m = (k + 10).min(g);
    let mut q: Vec<Vec<f64>> = (0..m).map(|c| (0..g).map(|j| (((j * 7919 + c * 104729) % 1000) as f64 / 1000.0) - 0.5).collect()).collect();
    for _ in 0..60 {
        let z: Vec<Vec<f64>> = q.iter().map(|v| (0..g).map(|a| dot(&cov[a * g..(a + 1) * g], v)).collect()).collect();
        q = gram_schmidt(z);
    }
    // Rayleigh–Ritz on span(q)
    let cq: Vec<Vec<f64>> = q.iter().map(|v| (0..g).map(|a| dot(&cov[a * g..(a + 1) * g], v)).collect()).collect();
    let mut t = vec![0.0; m * m];
    for i in 0..m {
        for j in 0..m {
            t[i * m + j] = dot(&q[i], &cq[j]);
        }
    }
    let (vals, vecs) = jacobi(t, m);
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| vals[b].total_cmp(&vals[a]));
    let mut components = Vec::with_capacity(k * g);
    let mut variance = Vec::with_capacity(k);
    for &o in order.iter().take(k) {
        let mut comp: Vec<f64> = (0..g).map(|j| (0..m).map(|i| vecs[i * m + o] * q[i][j]).sum()).collect();
        let norm = dot(&comp, &comp).sqrt().max(1e-300);
        let big = comp.iter().copied().fold(0.0f64, |acc, v| if v.abs() > acc.abs() { v } else { acc });
        let sign = if big < 0.0 { -1.0 } else { 1.0 };
        comp.iter_mut().for_each(|c| *c *= sign / norm);
        components.extend(comp.iter().map(|&c| c as f32));
        variance.push(vals[o] as f32);
    }
    let scale = variance.first().map(|v| v.sqrt()).filter(|s| *s > 0.0).unwrap_or(1.0);
    Ok(Pca { mean: mean.iter().map(|&m| m as f32).collect(), components, n_pcs: k, variance, scale })
}

fn gram_schmidt(mut vs: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
    for i in 0..vs.len() {
        for j in 0..i {
            let d = dot(&vs[i], &vs[j]);
            let vj = vs[j].clone();
            vs[i].iter_mut().zip(&vj).for_each(|(a, b)| *a -= d * b);
        }
        let norm = dot(&vs[i], &vs[i]).sqrt();
        if norm > 1e-300 {
            vs[i].iter_mut().for_each(|a| *a /= norm);
        }
    }
    vs
}

/// Symmetric kNN graph on rows of `x [n, d]` (Euclidean, no self-edges): an edge when either
/// cell is among the other's `k` nearest; both directions listed. Brute force, O(n² d).
pub fn knn_graph(x: &[f32], n: usize, d: usize, k: usize) -> (Vec<i64>, Vec<i64>) {
    let mut pairs = std::collections::BTreeSet::new();
    for i in 0..n {
        let xi = &x[i * d..(i + 1) * d];
        let mut dist: Vec<(f32, usize)> = (0..n)
            .filter(|&j| j != i)
            .map(|j| (xi.iter().zip(&x[j * d..(j + 1) * d]).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(), j))
            .collect();
        let kk = k.min(dist.len());
        if kk == 0 {
            continue;
        }
        dist.select_nth_unstable_by(kk - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for &(_, j) in &dist[..kk] {
            pairs.insert((i.min(j), i.max(j)));
        }
    }
    let mut src = Vec::with_capacity(2 * pairs.len());
    let mut dst = Vec::with_capacity(2 * pairs.len());
    for (a, b) in pairs {
        src.extend([a as i64, b as i64]);
        dst.extend([b as i64, a as i64]);
    }
    (src, dst)
}

/// Cell-type probabilities for an expression matrix, following the model card: align genes,
/// project with the stored PCA, build the kNN graph, run the model.
pub fn classify_cells(
    session: &mut crate::runtime::Session,
    card: &onnx_format::ModelCard,
    model: &std::path::Path,
    m: &crate::data::ExpressionMatrix,
    input: &std::path::Path,
) -> Result<(Vec<f32>, crate::align::Alignment)> {
    let cells: &onnx_format::card::Cells = card.require().map_err(|e| Error::card(model, e))?;
    let (pca, k) = (&cells.pca, cells.knn.k);
    let n = m.samples.len();
    if n == 0 {
        return Err(Error::Input(format!("{}: no cells", input.display())));
    }
    m.check_finite(input)?;
    let alignment = crate::align::Alignment::new(&card.genes, &m.genes).map_err(|e| Error::Input(format!("{}: {e}", input.display())))?;
    let z = pca.transform(&alignment.apply(m));
    let (src, dst) = knn_graph(&z, n, pca.n_pcs, k);
    let inputs = vec![crate::runtime::Value::f32(&[n, pca.n_pcs], z), crate::runtime::Value::i64(&[2, src.len()], [src, dst].concat())];
    Ok((session.run_output(&inputs, "probabilities")?.into_f32()?, alignment))
}

/// Writes `out`: a copy of the h5ad file `input` (anndata ≥ 0.8 layout) with the cell types added
/// — `obs["predicted"]` (categorical over the card's classes, in class order),
/// `obsm["bioedge_probabilities"]` (cells × classes, float32, columns in `uns["bioedge"]["classes"]`
/// order) and `uns["bioedge"]` (the model card as JSON, the classes, the model path). Same-named
/// entries are replaced; everything else is copied unchanged. The copy is made beside `out` under a
/// temporary name and renamed into place, so `out` appears complete or not at all; `input` is only
/// read.
#[cfg(feature = "hdf5")]
pub fn annotate_h5ad(
    input: &std::path::Path,
    out: &std::path::Path,
    model: &std::path::Path,
    c: &crate::classify::Classification,
    card: &onnx_format::ModelCard,
) -> Result<()> {
    use crate::data::h5ad_write::{Array, ArrayData, Categorical, Column, Staged, Value, add_to_h5ad, annotatable};
    let n = annotatable(input)?;
    let k = c.classes.len();
    if n != c.samples.len() || c.probabilities.len() != n * k {
        return Err(Error::Input(format!("{}: {n} cells in obs, {} classified", input.display(), c.samples.len())));
    }
    let predicted: Vec<&str> = c.probabilities.chunks(k).map(|row| c.classes[crate::classify::argmax(row)].as_str()).collect();
    let obs = vec![("predicted".to_string(), Column::Categorical(Categorical::from_values(&predicted, Some(&c.classes))))];
    let obsm = vec![("bioedge_probabilities".to_string(), Array::new(vec![n, k], ArrayData::F32(c.probabilities.clone()))?)];
    let card_json = serde_json::to_string(card).map_err(|e| Error::Input(format!("model card as JSON: {e}")))?;
    let uns = vec![(
        "bioedge".to_string(),
        Value::Dict(vec![
            ("tool".into(), Value::Str(format!("bioedge infer cells {}", env!("CARGO_PKG_VERSION")))),
            ("model".into(), Value::Str(model.display().to_string())),
            ("classes".into(), Value::Strings(c.classes.clone())),
            ("genes_matched".into(), Value::Str(c.alignment.summary())),
            ("model_card".into(), Value::Str(card_json)),
        ]),
    )];
    let staged = Staged::copy_of(input, out)?;
    add_to_h5ad(staged.path(), input, &obs, &obsm, &uns)?;
    staged.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pca_recovers_a_planted_direction() {
        // points along (1, 1, 0) with small noise in z
        let n = 50;
        let x: Vec<f32> = (0..n)
            .flat_map(|i| {
                let t = i as f32 - 25.0;
                [t, t, ((i * 37) % 7) as f32 * 0.01]
            })
            .collect();
        let p = fit_pca(&x, n, 3, 2).unwrap();
        let c0 = &p.components[..3];
        assert!(
            (c0[0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-3
                && (c0[1] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-3
                && c0[2].abs() < 1e-3,
            "{c0:?}"
        );
        assert!(p.variance[0] > 100.0 * p.variance[1]);
        let z = p.transform(&x[..3]);
        let want = -24.5 * 2f32.sqrt() / p.scale; // mean of t is -0.5
        assert!((z[0] - want).abs() < 1e-3, "{z:?} vs {want}");
    }

    #[test]
    fn knn_is_symmetric_without_self_loops() {
        let x = [0.0f32, 0.1, 0.2, 5.0, 5.1];
        let (s, d) = knn_graph(&x, 5, 1, 1);
        assert!(s.iter().zip(&d).all(|(a, b)| a != b));
        let set: std::collections::HashSet<(i64, i64)> = s.iter().copied().zip(d.iter().copied()).collect();
        assert!(set.contains(&(0, 1)) && set.contains(&(1, 0)) && set.contains(&(3, 4)));
        assert!(!set.contains(&(2, 3)));
    }
}

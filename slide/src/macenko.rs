//! Macenko stain normalization (Macenko et al. 2009, as staintools / TIAToolbox apply it): each
//! pixel's optical density `−ln(I / 255)` is split into haematoxylin and eosin concentrations by
//! the slide's two stain vectors (the extremes of the tissue pixels' angles in the plane of the two
//! largest principal axes of their optical densities), each concentration is scaled so that its 99th
//! percentile matches the target's, and the pixel is rebuilt with the target's stain vectors.

/// Optical densities above this in every channel count as tissue (Macenko's β).
const BETA: f32 = 0.15;
/// The stain vectors are the α-th and (100 − α)-th percentile angles (Macenko's α, in %).
const ALPHA: f32 = 1.0;

/// A slide's stains: unit haematoxylin and eosin vectors in optical density, and the 99th
/// percentile of each concentration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stains {
    /// `[haematoxylin, eosin]`, each a unit vector of RGB optical densities (all ≥ 0).
    pub vectors: [[f32; 3]; 2],
    /// 99th percentile of the haematoxylin and eosin concentrations.
    pub max_conc: [f32; 2],
}

fn od(p: &[u8]) -> [f32; 3] {
    std::array::from_fn(|c| -((p[c].max(1) as f32) / 255.0).ln())
}

fn dot(a: &[f32; 3], b: &[f32; 3]) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn unit(v: [f32; 3]) -> [f32; 3] {
    let n = dot(&v, &v).sqrt().max(1e-12);
    v.map(|x| x / n)
}

/// The `q`-th percentile (0–100) of `v` (sorted in place; nearest rank).
fn percentile(v: &mut [f32], q: f32) -> f32 {
    v.sort_unstable_by(f32::total_cmp);
    let i = ((q / 100.0) * (v.len() - 1) as f32).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Eigenvectors of the symmetric 3×3 `a` as columns, by eigenvalue, largest first (cyclic Jacobi).
fn eigen_sym3(mut a: [[f64; 3]; 3]) -> ([f64; 3], [[f64; 3]; 3]) {
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _ in 0..50 {
        let off = a[0][1].abs() + a[0][2].abs() + a[1][2].abs();
        if off < 1e-15 {
            break;
        }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            if a[p][q].abs() < 1e-300 {
                continue;
            }
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let t = if theta == 0.0 { 1.0 } else { t };
            let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
            for k in 0..3 {
                let (akp, akq) = (a[k][p], a[k][q]);
                a[k][p] = c * akp - s * akq;
                a[k][q] = s * akp + c * akq;
            }
            for k in 0..3 {
                let (apk, aqk) = (a[p][k], a[q][k]);
                a[p][k] = c * apk - s * aqk;
                a[q][k] = s * apk + c * aqk;
            }
            for row in &mut v {
                let (vp, vq) = (row[p], row[q]);
                row[p] = c * vp - s * vq;
                row[q] = s * vp + c * vq;
            }
        }
    }
    let mut order = [0, 1, 2];
    order.sort_by(|&i, &j| a[j][j].total_cmp(&a[i][i]));
    let vals = order.map(|i| a[i][i]);
    let vecs = std::array::from_fn(|r| order.map(|i| v[r][i]));
    (vals, vecs)
}

impl Stains {
    /// The stains of a slide from its pixels (interleaved RGB bytes); every `stride`-th pixel is
    /// used. None when fewer than 100 of them are tissue (optical density > 0.15 in each channel).
    pub fn estimate(px: &[u8], stride: usize) -> Option<Self> {
        let tissue: Vec<[f32; 3]> = px.chunks_exact(3).step_by(stride.max(1)).map(od).filter(|d| d.iter().all(|&v| v > BETA)).collect();
        if tissue.len() < 100 {
            return None;
        }
        // the plane of the two largest principal axes (of the uncentred second moments, as
        // staintools' np.cov is centred: centred here too)
        let n = tissue.len() as f64;
        let mean: [f64; 3] = std::array::from_fn(|c| tissue.iter().map(|d| d[c] as f64).sum::<f64>() / n);
        let mut cov = [[0.0f64; 3]; 3];
        for d in &tissue {
            for i in 0..3 {
                for j in 0..3 {
                    cov[i][j] += (d[i] as f64 - mean[i]) * (d[j] as f64 - mean[j]);
                }
            }
        }
        let (_, vecs) = eigen_sym3(cov);
        // the two axes, signed so that they point into positive optical densities
        let axis = |k: usize| {
            let e: [f32; 3] = std::array::from_fn(|r| vecs[r][k] as f32);
            if e.iter().sum::<f32>() < 0.0 { e.map(|x| -x) } else { e }
        };
        let (e1, e2) = (axis(0), axis(1));
        let mut angles: Vec<f32> = tissue.iter().map(|d| dot(d, &e2).atan2(dot(d, &e1))).collect();
        let lo = percentile(&mut angles, ALPHA);
        let hi = percentile(&mut angles, 100.0 - ALPHA);
        let at = |phi: f32| unit(std::array::from_fn(|c| e1[c] * phi.cos() + e2[c] * phi.sin())).map(|x| x.max(0.0));
        let (a, b) = (at(lo), at(hi));
        // haematoxylin absorbs more red than eosin
        let vectors = if a[0] > b[0] { [a, b] } else { [b, a] };
        let mut s = Self { vectors, max_conc: [1.0, 1.0] };
        let conc: Vec<[f32; 2]> = tissue.iter().map(|d| s.concentrations(d)).collect();
        s.max_conc = std::array::from_fn(|k| percentile(&mut conc.iter().map(|c| c[k]).collect::<Vec<_>>(), 99.0).max(1e-6));
        Some(s)
    }

    /// Least-squares haematoxylin and eosin concentrations of one optical density.
    fn concentrations(&self, d: &[f32; 3]) -> [f32; 2] {
        let [h, e] = &self.vectors;
        let (hh, he, ee) = (dot(h, h), dot(h, e), dot(e, e));
        let (hd, ed) = (dot(h, d), dot(e, d));
        let det = hh * ee - he * he;
        if det.abs() < 1e-12 {
            return [hd / hh.max(1e-12), 0.0];
        }
        [(ee * hd - he * ed) / det, (hh * ed - he * hd) / det]
    }

    /// Maps RGB pixels (interleaved bytes) in place from these stains onto `target`'s: each
    /// concentration scaled by the ratio of the 99th percentiles, rebuilt with the target's
    /// vectors, rounded and clamped.
    pub fn map_rgb(&self, target: &Self, px: &mut [u8]) {
        let scale: [f32; 2] = std::array::from_fn(|k| target.max_conc[k] / self.max_conc[k]);
        for p in px.chunks_exact_mut(3) {
            let c = self.concentrations(&od(p));
            for ch in 0..3 {
                let d = c[0] * scale[0] * target.vectors[0][ch] + c[1] * scale[1] * target.vectors[1][ch];
                p[ch] = (255.0 * (-d).exp()).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Beer–Lambert pixels from stain vectors and concentrations on a fixed pattern.
    fn slide(h: [f32; 3], e: [f32; 3], scale: f32) -> Vec<u8> {
        let (h, e) = (unit(h), unit(e));
        (0..20_000)
            .flat_map(|i| {
                let ch = scale * (0.2 + 1.2 * ((i * 37 % 101) as f32 / 100.0));
                let ce = scale * (0.2 + 1.0 * ((i * 53 % 97) as f32 / 96.0));
                (0..3).map(move |c| (255.0 * (-(ch * h[c] + ce * e[c])).exp()).round() as u8).collect::<Vec<_>>()
            })
            .collect()
    }

    const H: [f32; 3] = [0.65, 0.70, 0.29];
    const E: [f32; 3] = [0.07, 0.99, 0.11];

    #[test]
    fn eigenvectors_of_a_diagonal_and_a_rotated_matrix() {
        let (vals, _) = eigen_sym3([[1.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 2.0]]);
        assert_eq!(vals, [3.0, 2.0, 1.0]);
        let a = [[2.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 0.5]];
        let (vals, vecs) = eigen_sym3(a);
        assert!((vals[0] - 3.0).abs() < 1e-12 && (vals[1] - 1.0).abs() < 1e-12 && (vals[2] - 0.5).abs() < 1e-12, "{vals:?}");
        // A v = λ v for the first column
        let v: [f64; 3] = std::array::from_fn(|r| vecs[r][0]);
        for r in 0..3 {
            assert!(((0..3).map(|c| a[r][c] * v[c]).sum::<f64>() - 3.0 * v[r]).abs() < 1e-12);
        }
    }

    #[test]
    fn recovers_the_stain_vectors_of_a_synthetic_slide() {
        let s = Stains::estimate(&slide(H, E, 1.0), 1).unwrap();
        for (got, want) in s.vectors.iter().zip([unit(H), unit(E)]) {
            let cos = dot(got, &want);
            // within 8° (the extreme angles of mixed pixels lean towards the other stain)
            assert!(cos > 0.99, "{got:?} vs {want:?}: cos {cos}");
        }
        // a blank (white) slide has no tissue
        assert!(Stains::estimate(&vec![250u8; 3000], 1).is_none());
    }

    #[test]
    fn maps_a_slide_onto_the_target_stains() {
        // the same tissue pattern, stained lighter and with another eosin: mapped onto the target
        // it comes back close to the target's pixels
        let target = slide(H, E, 1.0);
        let mut src = slide([0.60, 0.75, 0.28], [0.15, 0.95, 0.25], 0.6);
        let (s, t) = (Stains::estimate(&src, 1).unwrap(), Stains::estimate(&target, 1).unwrap());
        let before: f64 = src.iter().zip(&target).map(|(a, b)| (*a as f64 - *b as f64).abs()).sum::<f64>() / src.len() as f64;
        s.map_rgb(&t, &mut src);
        let after: f64 = src.iter().zip(&target).map(|(a, b)| (*a as f64 - *b as f64).abs()).sum::<f64>() / src.len() as f64;
        assert!(after < 0.25 * before && after < 6.0, "mean |difference| {before:.1} before, {after:.1} after");
        // onto its own stains it is close to the identity
        let mut same = target.clone();
        t.map_rgb(&t, &mut same);
        let err = same.iter().zip(&target).map(|(a, b)| (*a as i32 - *b as i32).abs()).max().unwrap();
        assert!(err <= 2, "max |difference| {err}");
    }
}

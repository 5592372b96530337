//! Reinhard stain normalization (Reinhard et al. 2001, as staintools / TIAToolbox apply it): each
//! pixel's CIE L*a*b* channels are standardized with the statistics of its slide and given the
//! target's mean and spread. Statistics are per slide (a section's spots), not per patch, so the
//! colour differences between spots of one slide — the signal — survive; only the slide's overall
//! stain is moved onto the target.

/// Running mean and spread of the L*a*b* channels over a set of pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LabStats {
    /// Pixels counted.
    pub n: u64,
    /// Mean of L*, a*, b*.
    pub mean: [f64; 3],
    /// Sum of squared deviations from the mean (Welford).
    pub m2: [f64; 3],
}

impl LabStats {
    /// Statistics of RGB pixels (interleaved bytes, 3 per pixel).
    pub fn of_rgb(px: &[u8]) -> Self {
        let mut s = Self::default();
        s.add_rgb(px);
        s
    }

    /// Adds RGB pixels (interleaved bytes, 3 per pixel).
    pub fn add_rgb(&mut self, px: &[u8]) {
        for p in px.chunks_exact(3) {
            let lab = rgb_to_lab([p[0], p[1], p[2]]);
            self.n += 1;
            let n = self.n as f64;
            for c in 0..3 {
                let d = lab[c] as f64 - self.mean[c];
                self.mean[c] += d / n;
                self.m2[c] += d * (lab[c] as f64 - self.mean[c]);
            }
        }
    }

    /// The statistics of the union of two pixel sets (Chan et al.).
    pub fn merge(&self, o: &Self) -> Self {
        if self.n == 0 {
            return *o;
        }
        if o.n == 0 {
            return *self;
        }
        let n = (self.n + o.n) as f64;
        let (a, b) = (self.n as f64, o.n as f64);
        let mut out = Self { n: self.n + o.n, ..Self::default() };
        for c in 0..3 {
            let d = o.mean[c] - self.mean[c];
            out.mean[c] = self.mean[c] + d * b / n;
            out.m2[c] = self.m2[c] + o.m2[c] + d * d * a * b / n;
        }
        out
    }

    /// Standard deviation per channel (population).
    pub fn std(&self) -> [f64; 3] {
        std::array::from_fn(|c| if self.n == 0 { 0.0 } else { (self.m2[c] / self.n as f64).sqrt() })
    }

    /// Maps RGB pixels (interleaved bytes) in place from these statistics onto `target`'s: per
    /// L*a*b* channel, `(x − μ) / σ · σ_target + μ_target`, back to sRGB, rounded and clamped.
    /// A channel with no spread here keeps its offset only.
    pub fn map_rgb(&self, target: &Self, px: &mut [u8]) {
        let (s, t) = (self.std(), target.std());
        let scale: [f32; 3] = std::array::from_fn(|c| if s[c] > 1e-6 { (t[c] / s[c]) as f32 } else { 1.0 });
        let (m, tm) = (self.mean.map(|v| v as f32), target.mean.map(|v| v as f32));
        for p in px.chunks_exact_mut(3) {
            let lab = rgb_to_lab([p[0], p[1], p[2]]);
            let out = lab_to_rgb(std::array::from_fn(|c| (lab[c] - m[c]) * scale[c] + tm[c]));
            p.copy_from_slice(&out);
        }
    }
}

// sRGB (D65) ↔ CIE XYZ ↔ L*a*b*, as scikit-image's rgb2lab / lab2rgb
const XYZ_FROM_RGB: [[f32; 3]; 3] = [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]];
const RGB_FROM_XYZ: [[f32; 3]; 3] = [[3.240481, -1.537151, -0.498536], [-0.969256, 1.87599, 0.041556], [0.055648, -0.204043, 1.057311]];
const WHITE: [f32; 3] = [0.95047, 1.0, 1.08883];

fn to_linear(v: u8) -> f32 {
    let v = v as f32 / 255.0;
    if v > 0.04045 { ((v + 0.055) / 1.055).powf(2.4) } else { v / 12.92 }
}

fn to_srgb(v: f32) -> u8 {
    let v = if v > 0.0031308 { 1.055 * v.max(0.0).powf(1.0 / 2.4) - 0.055 } else { 12.92 * v };
    (v * 255.0).round().clamp(0.0, 255.0) as u8
}

/// One sRGB pixel to L*a*b* (L* in 0–100).
pub fn rgb_to_lab(p: [u8; 3]) -> [f32; 3] {
    let l = p.map(to_linear);
    let f = |k: usize| {
        let t = (0..3).map(|c| XYZ_FROM_RGB[k][c] * l[c]).sum::<f32>() / WHITE[k];
        if t > 0.008856 { t.cbrt() } else { 7.787 * t + 16.0 / 116.0 }
    };
    let (fx, fy, fz) = (f(0), f(1), f(2));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// One L*a*b* pixel to sRGB (rounded, clamped to the gamut).
pub fn lab_to_rgb(lab: [f32; 3]) -> [u8; 3] {
    let fy = (lab[0] + 16.0) / 116.0;
    let f = [fy + lab[1] / 500.0, fy, fy - lab[2] / 200.0];
    let xyz: [f32; 3] = std::array::from_fn(|k| {
        let t = f[k];
        WHITE[k] * if t > 0.206_893 { t * t * t } else { (t - 16.0 / 116.0) / 7.787 }
    });
    std::array::from_fn(|c| to_srgb((0..3).map(|k| RGB_FROM_XYZ[c][k] * xyz[k]).sum()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_round_trip_and_known_values() {
        // white, black and pure red as scikit-image gives them
        let w = rgb_to_lab([255, 255, 255]);
        assert!((w[0] - 100.0).abs() < 0.01 && w[1].abs() < 0.01 && w[2].abs() < 0.01, "{w:?}");
        assert!(rgb_to_lab([0, 0, 0])[0].abs() < 1e-4);
        let r = rgb_to_lab([255, 0, 0]);
        assert!((r[0] - 53.24).abs() < 0.05 && (r[1] - 80.09).abs() < 0.05 && (r[2] - 67.20).abs() < 0.05, "{r:?}");
        for p in [[0u8, 0, 0], [255, 255, 255], [200, 120, 180], [30, 60, 90], [140, 70, 160]] {
            assert_eq!(lab_to_rgb(rgb_to_lab(p)), p);
        }
    }

    #[test]
    fn merged_statistics_equal_the_pooled_ones() {
        let a: Vec<u8> = (0..300).map(|i| (i * 37 % 256) as u8).collect();
        let b: Vec<u8> = (0..600).map(|i| (i * 91 % 256) as u8).collect();
        let (sa, sb) = (LabStats::of_rgb(&a), LabStats::of_rgb(&b));
        let pooled = LabStats::of_rgb(&[a, b].concat());
        let m = sa.merge(&sb);
        assert_eq!(m.n, pooled.n);
        for c in 0..3 {
            assert!((m.mean[c] - pooled.mean[c]).abs() < 1e-9 && (m.std()[c] - pooled.std()[c]).abs() < 1e-9);
        }
    }

    #[test]
    fn mapping_moves_a_slide_onto_the_target() {
        // a pinkish "slide" mapped onto a purplish target takes the target's statistics
        let src: Vec<u8> = (0..3000).flat_map(|i| [200 + (i % 40) as u8, 120 + (i % 25) as u8, 170 + (i % 30) as u8]).collect();
        let dst: Vec<u8> = (0..3000).flat_map(|i| [130 + (i % 50) as u8, 80 + (i % 35) as u8, 160 + (i % 45) as u8]).collect();
        let (s, t) = (LabStats::of_rgb(&src), LabStats::of_rgb(&dst));
        let mut px = src.clone();
        s.map_rgb(&t, &mut px);
        let got = LabStats::of_rgb(&px);
        for c in 0..3 {
            assert!((got.mean[c] - t.mean[c]).abs() < 1.0, "channel {c}: mean {} vs {}", got.mean[c], t.mean[c]);
            assert!((got.std()[c] - t.std()[c]).abs() < 0.1 * t.std()[c] + 0.5, "channel {c}: std {} vs {}", got.std()[c], t.std()[c]);
        }
        // onto its own statistics it is the identity (up to the round trip)
        let mut same = src.clone();
        s.map_rgb(&s, &mut same);
        assert_eq!(same, src);
    }
}

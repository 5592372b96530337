//! The readers' resource budget, in one place. Declared sizes (HDF5 dataset shapes, a sparse
//! matrix's `shape` attribute, node counts, image dimensions) are checked against these limits
//! **before** anything is allocated, so a crafted or mistaken file gives a clear error instead of
//! an abort or an unbounded allocation. Each limit can be raised with an environment variable.

use crate::{Error, Result};

/// One resource limit.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// What is counted.
    pub unit: &'static str,
    /// What it bounds.
    pub what: &'static str,
    /// The environment variable that raises (or lowers) it.
    pub env: &'static str,
    /// The default.
    pub default: u64,
}

/// Numbers in one matrix or dataset read into memory (2^30: 4 GiB as f32).
pub const MAX_VALUES: Limit = Limit {
    unit: "values",
    what: "numbers in one matrix or dataset read into memory (dense expression matrices, densified sparse ones, HDF5 datasets, node features)",
    env: "BIOEDGE_MAX_VALUES",
    default: 1 << 30,
};

/// Pixels of an image decoded whole (2^28 = 268 M: 16384 × 16384; 805 MB as RGB).
pub const MAX_PIXELS: Limit = Limit {
    unit: "pixels",
    what: "pixels of an image decoded whole (JPEG/PNG/plain TIFF; tiled and pyramidal slides are read by region instead)",
    env: "BIOEDGE_MAX_PIXELS",
    default: 1 << 28,
};

/// Spots (patches) of one slide run: a grid's cells over the whole image, or a spot file's rows
/// (2^20 = 1,048,576: a 100k × 80k-pixel slide in 90-pixel patches).
pub const MAX_SPOTS: Limit = Limit {
    unit: "spots",
    what: "patches of one `infer slide` run (grid cells over the whole image, or spot file rows); a tiny --patch-side is the usual cause",
    env: "BIOEDGE_MAX_SPOTS",
    default: 1 << 20,
};

/// Every limit, for documentation (README's limits table) and `infer inspect`-style listings.
pub const ALL: [Limit; 3] = [MAX_VALUES, MAX_PIXELS, MAX_SPOTS];

impl Limit {
    /// The limit in force: the environment variable when set to a number, else the default.
    pub fn get(&self) -> u64 {
        std::env::var(self.env).ok().and_then(|v| v.trim().replace('_', "").parse().ok()).unwrap_or(self.default)
    }

    /// `Ok` when `n` is within the limit, else an input error naming `what` (e.g. the file and
    /// dataset), the size, the limit and how to raise it.
    pub fn check(&self, n: u64, what: impl std::fmt::Display) -> Result<()> {
        let limit = self.get();
        if n <= limit {
            return Ok(());
        }
        Err(Error::Input(format!(
            "{what}: {n} {} is over the limit of {limit} {} ({}; raise it with {}=N if the machine has the memory)",
            self.unit, self.unit, self.what, self.env
        )))
    }

    /// [`Limit::check`] on a product of declared dimensions (overflow counts as over).
    pub fn check_dims(&self, dims: &[usize], what: impl std::fmt::Display) -> Result<usize> {
        let n = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64)).unwrap_or(u64::MAX);
        self.check(n, format_args!("{what} ({})", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" × ")))?;
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_products_without_overflow() {
        assert_eq!(MAX_VALUES.check_dims(&[700, 1000], "m").unwrap(), 700_000);
        let e = MAX_VALUES.check_dims(&[700, 1 << 40], "x.h5ad: X").unwrap_err().to_string();
        assert!(
            e.contains("x.h5ad: X (700 × 1099511627776)")
                && e.contains("over the limit of 1073741824 values")
                && e.contains("BIOEDGE_MAX_VALUES"),
            "{e}"
        );
        assert!(MAX_VALUES.check_dims(&[usize::MAX, 3], "y").is_err());
        assert!(MAX_PIXELS.check(30_000 * 30_000, "big.png").unwrap_err().to_string().contains("BIOEDGE_MAX_PIXELS"));
    }
}

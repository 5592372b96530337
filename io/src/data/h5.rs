//! Expression matrices in HDF5 (`.h5` / `.hdf5`).
//!
//! Our layout (written by [`write_hdf5`], read by [`read_hdf5`]):
//!
//! | path       | type                                 | shape                    |
//! |------------|--------------------------------------|--------------------------|
//! | `/X`       | float32 or float64, row-major        | `[n_samples, n_genes]`   |
//! | `/genes`   | strings (UTF-8)                      | `[n_genes]`              |
//! | `/samples` | strings (UTF-8)                      | `[n_samples]`            |
//! | `/labels`  | strings (UTF-8), optional            | `[n_samples]`            |
//!
//! Strings may be variable-length (as written here, and by h5py for `str`) or fixed-length
//! (numpy `S`), ASCII or UTF-8. The root attribute `format = "infer-expression"` marks files
//! written here; the reader does not require it.
//!
//! The reader also takes 10x Genomics feature-barcode matrices (Cell Ranger / Space Ranger
//! `filtered_feature_bc_matrix.h5`: group `/matrix` with `data`, `indices`, `indptr`, `shape`,
//! `barcodes`, `features/name`; or the v2 layout with one group per genome and `gene_names`).
//! Barcodes become samples, feature names genes.

use super::ExpressionMatrix;
use super::h5util::{
    Compressed, dataset, densify, group, h5err, hdf5_error, is_dataset, is_group, open, read_compressed, read_i64, read_strings, shape,
};
use crate::error::{Error, Result};
use hdf5::types::VarLenUnicode;
use std::path::Path;

/// Reads the layout above (or a 10x matrix). `/labels` becomes `labels` when present.
pub fn read_hdf5(path: &Path) -> Result<ExpressionMatrix> {
    let file = open(path)?;
    if !is_dataset(&file, "X") {
        if let Some(g) = tenx_group(&file) {
            return read_10x(path, &g);
        }
        return Err(Error::format(path, "no dataset '/X' (expected /X, /genes, /samples[, /labels])"));
    }
    let x = dataset(path, &file, "X")?;
    let genes = read_strings(path, &dataset(path, &file, "genes")?)?;
    let samples = read_strings(path, &dataset(path, &file, "samples")?)?;
    let (ns, ng) = (samples.len(), genes.len());
    match shape(path, &x)?.as_slice() {
        [r, c] if *r == ns && *c == ng => {}
        [r, c] if *r == ng && *c == ns => {
            return Err(Error::format(path, format!("/X is {r} × {c} = genes × samples; expected samples × genes ({ns} × {ng})")));
        }
        s => {
            return Err(Error::format(path, format!("/X has shape {s:?}, expected [{ns}, {ng}] (/samples × /genes)")));
        }
    }
    let values = super::h5util::read_f32(path, &x)?;
    let labels = if is_dataset(&file, "labels") {
        let l = read_strings(path, &dataset(path, &file, "labels")?)?;
        if l.len() != ns {
            return Err(Error::format(path, format!("/labels has {} entries, /samples {ns}", l.len())));
        }
        Some(l)
    } else {
        None
    };
    Ok(ExpressionMatrix { samples, genes, values, labels })
}

fn tenx_group(file: &hdf5::File) -> Option<hdf5::Group> {
    if is_group(file, "matrix") {
        return file.group("matrix").ok();
    }
    // v2: one group per genome holding gene_names.
    let names = file.member_names().ok()?;
    names.iter().find(|n| is_group(file, n) && file.group(n).is_ok_and(|g| g.link_exists("gene_names"))).and_then(|n| file.group(n).ok())
}

fn read_10x(path: &Path, g: &hdf5::Group) -> Result<ExpressionMatrix> {
    let dims = read_i64(path, &dataset(path, g, "shape")?)?;
    let [n_features, n_barcodes] = dims.as_slice() else {
        return Err(Error::format(path, format!("{}/shape should have 2 entries, has {}", g.name(), dims.len())));
    };
    let (nf, nb) = (usize::try_from(*n_features).unwrap_or(0), usize::try_from(*n_barcodes).unwrap_or(0));
    let samples = read_strings(path, &dataset(path, g, "barcodes")?)?;
    let genes = if is_group(g, "features") {
        read_strings(path, &dataset(path, &group(path, g, "features")?, "name")?)?
    } else {
        read_strings(path, &dataset(path, g, "gene_names")?)?
    };
    if samples.len() != nb || genes.len() != nf {
        return Err(Error::format(
            path,
            format!("{}: shape says {nf} features × {nb} barcodes, found {} names and {} barcodes", g.name(), genes.len(), samples.len()),
        ));
    }
    // Stored CSC over features × barcodes = CSR over barcodes × features.
    let c: Compressed = read_compressed(path, g, nb, nf)?;
    let values = densify(path, &c, nb, nf, true)?;
    Ok(ExpressionMatrix { samples, genes, values, labels: None })
}

fn vlen_strings(path: &Path, what: &str, v: &[String]) -> Result<Vec<VarLenUnicode>> {
    v.iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse::<VarLenUnicode>().map_err(|e| Error::Input(format!("{}: {what}[{i}] cannot be written: {e}", path.display())))
        })
        .collect()
}

/// Writes `m` in the layout above (X as float32). Overwrites an existing file.
pub fn write_hdf5(path: &Path, m: &ExpressionMatrix) -> Result<()> {
    m.check_shape()?;
    let (ns, ng) = (m.samples.len(), m.genes.len());
    let err = |what: &str| h5err(path, what.to_string());
    let file = hdf5::File::create(path).map_err(err("cannot create"))?;
    file.new_dataset::<f32>().shape((ns, ng)).create("X").and_then(|x| x.write_raw(&m.values)).map_err(err("writing /X"))?;
    let genes = vlen_strings(path, "genes", &m.genes)?;
    file.new_dataset_builder().with_data(&genes).create("genes").map_err(err("writing /genes"))?;
    let samples = vlen_strings(path, "samples", &m.samples)?;
    file.new_dataset_builder().with_data(&samples).create("samples").map_err(err("writing /samples"))?;
    if let Some(labels) = &m.labels {
        let labels = vlen_strings(path, "labels", labels)?;
        file.new_dataset_builder().with_data(&labels).create("labels").map_err(err("writing /labels"))?;
    }
    let tag: VarLenUnicode = "infer-expression".parse().map_err(|_| hdf5_error(path, "attribute"))?;
    file.new_attr::<VarLenUnicode>().create("format").and_then(|a| a.write_scalar(&tag)).map_err(err("writing attribute format"))?;
    file.close().map_err(err("closing"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_data;

    fn sample() -> ExpressionMatrix {
        ExpressionMatrix {
            samples: vec!["s1".into(), "s2".into(), "s3".into()],
            genes: vec!["TP53".into(), "BRCA1".into()],
            values: vec![1.0, 2.0, 3.0, 4.0, 5.5, -6.0],
            labels: Some(vec!["a".into(), "b".into(), "a".into()]),
        }
    }

    #[test]
    fn roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.h5");
        let m = sample();
        write_hdf5(&p, &m).unwrap();
        assert_eq!(read_hdf5(&p).unwrap(), m);
        let mut nolab = m.clone();
        nolab.labels = None;
        write_hdf5(&p, &nolab).unwrap();
        assert_eq!(read_hdf5(&p).unwrap(), nolab);
    }

    #[test]
    fn fixed_strings_and_f64() {
        // Written the way h5py writes numpy 'S' arrays and float64.
        use hdf5::types::FixedAscii;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.h5");
        {
            let f = hdf5::File::create(&p).unwrap();
            let x = f.new_dataset::<f64>().shape((2, 2)).create("X").unwrap();
            x.write_raw(&[1.0f64, 2.0, 3.0, 4.0]).unwrap();
            let g: Vec<FixedAscii<5>> = ["A", "BCDEF"].iter().map(|s| FixedAscii::from_ascii(s).unwrap()).collect();
            f.new_dataset_builder().with_data(&g).create("genes").unwrap();
            let s: Vec<FixedAscii<3>> = ["x", "yy"].iter().map(|s| FixedAscii::from_ascii(s).unwrap()).collect();
            f.new_dataset_builder().with_data(&s).create("samples").unwrap();
        }
        let m = read_hdf5(&p).unwrap();
        assert_eq!(m.genes, vec!["A", "BCDEF"]);
        assert_eq!(m.samples, vec!["x", "yy"]);
        assert_eq!(m.values, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m.labels, None);
    }

    #[test]
    fn wrong_shape_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.h5");
        {
            let f = hdf5::File::create(&p).unwrap();
            let x = f.new_dataset::<f32>().shape((2, 3)).create("X").unwrap();
            x.write_raw(&[0f32; 6]).unwrap();
            let g: Vec<VarLenUnicode> = ["a", "b"].iter().map(|s| s.parse().unwrap()).collect();
            f.new_dataset_builder().with_data(&g).create("genes").unwrap();
            let s: Vec<VarLenUnicode> = ["a", "b", "c"].iter().map(|s| s.parse().unwrap()).collect();
            f.new_dataset_builder().with_data(&s).create("samples").unwrap();
        }
        let e = read_hdf5(&p).unwrap_err().to_string();
        assert!(e.contains("t.h5") && e.contains("genes × samples"), "{e}");

        let p2 = dir.path().join("empty.h5");
        hdf5::File::create(&p2).unwrap();
        let e = read_hdf5(&p2).unwrap_err().to_string();
        assert!(e.contains("empty.h5") && e.contains("/X"), "{e}");

        let e = read_hdf5(&dir.path().join("nope.h5")).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
    }

    #[test]
    fn corrupt_files_are_hdf5_errors() {
        let dir = tempfile::tempdir().unwrap();
        // Random bytes.
        let p = dir.path().join("random.h5");
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let bytes: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(&p, &bytes).unwrap();
        let e = read_hdf5(&p).unwrap_err();
        assert!(matches!(e, Error::Hdf5 { .. }), "{e}");
        assert!(e.to_string().contains("random.h5"), "{e}");

        // Truncated copies of a valid file, at several lengths.
        let good = dir.path().join("good.h5");
        let m = ExpressionMatrix {
            samples: (0..50).map(|i| format!("s{i}")).collect(),
            genes: (0..40).map(|i| format!("g{i}")).collect(),
            values: (0..2000).map(|i| i as f32).collect(),
            labels: None,
        };
        write_hdf5(&good, &m).unwrap();
        let full = std::fs::read(&good).unwrap();
        for frac in [0.1, 0.5, 0.9, 0.99] {
            let p = dir.path().join(format!("trunc{frac}.h5"));
            std::fs::write(&p, &full[..(full.len() as f64 * frac) as usize]).unwrap();
            let e = read_hdf5(&p).unwrap_err();
            assert!(matches!(e, Error::Hdf5 { .. }), "{frac}: {e}");
            assert!(e.to_string().contains("trunc"), "{e}");
        }
    }

    #[test]
    fn tenx_space_ranger_fixture() {
        let p = test_data("squidpy_visium_tiny/filtered_feature_bc_matrix.h5");
        let m = read_hdf5(&p).unwrap();
        assert_eq!(m.samples.len(), 100);
        assert_eq!(m.genes.len(), 100);
        assert_eq!(m.values.len(), 100 * 100);
        let nnz = m.values.iter().filter(|v| **v != 0.0).count();
        assert!(nnz > 0 && nnz <= 656, "{nnz}");
        assert!(m.samples[0].ends_with("-1"), "{}", m.samples[0]);
    }
}

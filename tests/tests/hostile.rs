//! Hostile use: outputs that would destroy inputs or are not regular files, a closed stdout, exit
//! codes. Every case ends in a clear error (or a quiet, correct exit), never a panic, and leaves
//! the inputs byte for byte as they were. (Issue 17 grows this file to every case it lists.)

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `cmd`, expects exit code `code` and no panic; returns stderr.
fn exits(cmd: &mut Command, code: i32) -> String {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{cmd:?}: {err}");
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{err}");
    err
}

fn copy(from: &Path, dir: &Path, name: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::copy(from, &p).unwrap();
    p
}

#[test]
fn outputs_never_overwrite_inputs() {
    let m = models();
    let dir = tempfile::tempdir().unwrap();
    let (expr, cls) = leukemia();
    let input = copy(&expr, dir.path(), "expr.txt.gz");
    let model = copy(&m.gcn, dir.path(), "gcn.onnx");
    let before = (std::fs::read(&input).unwrap(), std::fs::read(&model).unwrap());
    let predict = |out: &Path| {
        let mut c = Command::new(bin("infer"));
        c.arg("predict").arg("--model").arg(&model).arg("--input").arg(&input).arg("--cls").arg(&cls).arg("--out").arg(out);
        c
    };
    // the input itself, the model, another spelling of the input's path, a hard link to it
    let other_spelling = dir.path().join(".").join("expr.txt.gz");
    let hard = dir.path().join("hard.txt.gz");
    std::fs::hard_link(&input, &hard).unwrap();
    for out in [&input, &model, &other_spelling, &hard] {
        let err = exits(&mut predict(out), 2);
        assert!(err.contains("is the input"), "{err}");
    }
    // a symbolic link to the input, a FIFO, a device, a folder: not regular files
    let link = dir.path().join("link.csv");
    std::os::unix::fs::symlink(&input, &link).unwrap();
    let fifo = dir.path().join("fifo.csv");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for (out, what) in [
        (link.as_path(), "symbolic link"),
        (fifo.as_path(), "not a regular file"),
        (Path::new("/dev/full"), "not a regular file"),
        (dir.path(), "folder"),
    ] {
        let err = exits(&mut predict(out), 2);
        assert!(err.contains(what), "{}: {err}", out.display());
    }
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(!std::fs::metadata(&fifo).unwrap().is_file());
    assert_eq!((std::fs::read(&input).unwrap(), std::fs::read(&model).unwrap()), before);
    // a regular new file works
    exits(&mut predict(&dir.path().join("preds.csv")), 0);
    // train: the output must not be the gene-set file it reads
    let gmt = copy(&data("msigdb_hallmark/h.all.v7.0.symbols.gmt"), dir.path(), "sets.gmt");
    let gmt_before = std::fs::read(&gmt).unwrap();
    let err = exits(Command::new(bin("train")).args(["gene2vec", "--epochs", "1"]).arg("--gmt").arg(&gmt).arg("--out").arg(&gmt), 2);
    assert!(err.contains("is the input"), "{err}");
    // ... nor the word2vec text written beside it (`--out sets.onnx` writes `sets.tsv`)
    let gmt_tsv = copy(&gmt, dir.path(), "sets2.tsv");
    let err = exits(
        Command::new(bin("train"))
            .args(["gene2vec", "--epochs", "1"])
            .arg("--gmt")
            .arg(&gmt_tsv)
            .arg("--out")
            .arg(dir.path().join("sets2.onnx")),
        2,
    );
    assert!(err.contains("is the input"), "{err}");
    assert_eq!(std::fs::read(&gmt).unwrap(), gmt_before);
    assert_eq!(std::fs::read(&gmt_tsv).unwrap(), gmt_before);
}

#[test]
fn closed_stdout_and_exit_codes() {
    let m = models();
    // `infer inspect --json ... | head -c 10`: a quiet exit, no panic message
    let mut child =
        Command::new(bin("infer")).args(["inspect", "--json"]).arg(&m.gcn).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take()); // the reader goes away before the card is printed
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
    // bad input: 2
    let dir = tempfile::tempdir().unwrap();
    let not_onnx = dir.path().join("x.onnx");
    std::fs::write(&not_onnx, b"not a model").unwrap();
    let err = exits(Command::new(bin("infer")).arg("inspect").arg(&not_onnx), 2);
    assert!(err.contains("not an ONNX model"), "{err}");
    // a missing file names the file and its cause once
    let err = exits(Command::new(bin("infer")).arg("inspect").arg(dir.path().join("missing.onnx")), 2);
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}

#[test]
fn huge_or_zero_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let feats = dir.path().join("f.tsv");
    std::fs::write(&feats, "row\tcol\tvalue\n0\t3\t1\n1\t0\t1\n").unwrap();
    let edges = dir.path().join("e.tsv");
    std::fs::write(&edges, "src\tdst\n0\t1\n").unwrap();
    let gcn = dir.path().join("gcn.onnx");
    let device = models::burn::prelude::Device::flex();
    let m = models::node::NodeGcnConfig::default().init(4, 2, &device);
    std::fs::write(&gcn, with_node_card(m.export(vec![]), onnx_format::Family::NodeGcn, 2)).unwrap();
    let out = dir.path().join("n.csv");
    for (n, want) in [("4611686018427387904", "32 bits"), ("1000000000000", "32 bits"), ("1000000000", "over the limit")] {
        let mut c = Command::new(bin("infer"));
        c.args(["nodes", "--num-nodes", n])
            .arg("--model")
            .arg(&gcn)
            .arg("--features")
            .arg(&feats)
            .arg("--edges")
            .arg(&edges)
            .arg("--out")
            .arg(&out);
        let err = exits(&mut c, 2);
        assert!(err.contains(want), "{n}: {err}");
    }
    assert!(!out.exists());
    let h5ad = data("scanpy_pbmc68k_reduced/10x_pbmc68k_reduced.h5ad");
    let mut c = Command::new(bin("train"));
    c.args(["cells", "--n-pcs", "0", "--seeds", "1"]).arg("--h5ad").arg(&h5ad).arg("--out").arg(dir.path().join("c.onnx"));
    let err = exits(&mut c, 2);
    assert!(err.contains("at least 1"), "{err}");
}

#[test]
fn one_class_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let cora = data("planetoid/derived/cora");
    let prefix = dir.path().join("one");
    for suffix in [".edges.tsv", ".features.coo.tsv.gz", ".splits.tsv"] {
        std::fs::copy(format!("{}{suffix}", cora.display()), format!("{}{suffix}", prefix.display())).unwrap();
    }
    let labels = std::fs::read_to_string(format!("{}.labels.tsv", cora.display())).unwrap();
    let one: Vec<String> = labels
        .lines()
        .enumerate()
        .map(|(i, l)| if i == 0 { l.to_string() } else { format!("{}\t0", l.split('\t').next().unwrap()) })
        .collect();
    std::fs::write(format!("{}.labels.tsv", prefix.display()), one.join("\n") + "\n").unwrap();
    let out = dir.path().join("m.onnx");
    let err = exits(Command::new(bin("train")).args(["node-gcn", "--seeds", "1"]).arg("--data").arg(&prefix).arg("--out").arg(&out), 2);
    assert!(err.contains("at least 2"), "{err}");
    assert!(!out.exists());
    // the output may not be one of the dataset's files either
    let labels = format!("{}.labels.tsv", prefix.display());
    let before = std::fs::read(&labels).unwrap();
    let err = exits(Command::new(bin("train")).args(["node-gcn", "--seeds", "1"]).arg("--data").arg(&prefix).arg("--out").arg(&labels), 2);
    assert!(err.contains("is the input"), "{err}");
    assert_eq!(std::fs::read(&labels).unwrap(), before);
}

#[test]
fn a_card_naming_more_genes_than_the_table_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("g.onnx");
    let mut c = Command::new(bin("train"));
    c.args(["gene2vec", "--epochs", "1", "--holdout", "0"])
        .arg("--gmt")
        .arg(data("msigdb_hallmark/h.all.v7.0.symbols.gmt"))
        .arg("--out")
        .arg(&model);
    exits(&mut c, 0);
    let bad = dir.path().join("more-genes.onnx");
    rewrite_card(&model, &bad, |c| c.genes.extend(["EXTRA1".to_string(), "EXTRA2".to_string()]));
    for backend in ["tract", "ort"] {
        let err = exits(Command::new(bin("infer")).args(["genes", "--similar", "TP53", "--backend", backend]).arg("--model").arg(&bad), 2);
        assert!(err.contains("the card names 4386 genes, the embedding table has 4384 rows"), "{err}");
    }
}

/// Molecules: a ragged row, task columns with no usable labels, a SMILES far over the length
/// limit; each a clear error (or a rejected row), no model or table written for the bad runs.
#[test]
fn ragged_unlabelled_and_huge_molecules() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.onnx");
    let train = |csv: &Path| {
        let mut c = Command::new(bin("train"));
        c.args(["mol", "--seeds", "1", "--epochs", "1", "--conv", "8", "--dense", "8"]).arg("--data").arg(csv).arg("--out").arg(&out);
        c
    };
    let ragged = dir.path().join("ragged.csv");
    std::fs::write(&ragged, "smiles,a,b\nCCO,1,0\nCCN\nCCC,0,1\n").unwrap();
    let err = exits(&mut train(&ragged), 2);
    assert!(err.contains("ragged.csv") && err.contains("line 3") && err.contains("1 fields, the header has 3"), "{err}");
    assert!(!out.exists());
    let unlabelled = dir.path().join("unlabelled.csv");
    let rows: String = ["CCO", "CCN", "c1ccccc1", "CC(=O)O"].iter().map(|s| format!("{s},,1\n")).collect();
    std::fs::write(&unlabelled, format!("smiles,a,b\n{rows}")).unwrap();
    let err = exits(&mut train(&unlabelled), 2);
    assert!(err.contains("no task column has both a 0 and a 1"), "{err}");
    assert!(!out.exists());
    // a model from 40 Tox21 rows, then a 1,000,000-character SMILES among good ones
    let tox = std::fs::read_to_string(data("tox21/tox21.csv")).unwrap();
    let small = dir.path().join("small.csv");
    std::fs::write(&small, tox.lines().take(41).collect::<Vec<_>>().join("\n") + "\n").unwrap();
    let _ = exits(&mut train(&small), 0);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, format!("smiles\nCCO\n{}\nc1ccccc1\n", "C".repeat(1_000_000))).unwrap();
    let table = dir.path().join("scores.csv");
    let err = exits(Command::new(bin("infer")).arg("mol").arg("--model").arg(&out).arg("--input").arg(&input).arg("--out").arg(&table), 0);
    assert!(err.contains("1000000 characters is over the limit"), "{err}");
    let scores = std::fs::read_to_string(&table).unwrap();
    assert_eq!(scores.lines().count(), 4, "{}", &scores[..scores.len().min(500)]);
    assert!(scores.contains("over the limit"));
}

/// Declared sizes are checked before allocating (bioedge_error::limits): a CSR h5ad whose
/// `shape` says 700 × 2^40 (was an abort), and a PNG whose header declares 30000 × 30000 pixels
/// (was a 2.7 GB decode); both a clear error naming the limit and how to raise it.
#[test]
fn declared_sizes_over_the_limits_are_refused() {
    let m = models();
    let dir = tempfile::tempdir().unwrap();
    let h5ad = dir.path().join("huge.h5ad");
    let script = r#"
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "w")
f.attrs["encoding-type"] = "anndata"; f.attrs["encoding-version"] = "0.1.0"
x = f.create_group("X"); x.attrs["encoding-type"] = "csr_matrix"; x.attrs["encoding-version"] = "0.1.0"
x.attrs["shape"] = np.array([700, 2**40], dtype=np.int64)
x["data"] = np.ones(3, np.float32); x["indices"] = np.array([0, 1, 2]); x["indptr"] = np.array([0] * 700 + [3])
for name, n in [("obs", 700), ("var", 3)]:
    g = f.create_group(name); g.attrs["encoding-type"] = "dataframe"; g.attrs["encoding-version"] = "0.2.0"
    g.attrs["_index"] = "_index"; g.attrs["column-order"] = np.array([], dtype="S")
    g.create_dataset("_index", data=np.array([f"{name}{i}" for i in range(n)], dtype=h5py.string_dtype()))
"#;
    ok(Command::new(python()).arg("-c").arg(script).arg(&h5ad));
    let before = std::fs::read(&h5ad).unwrap();
    let out = dir.path().join("p.csv");
    // read whole (train cells densifies X): the limit
    let onnx = dir.path().join("c.onnx");
    let err = exits(Command::new(bin("train")).arg("cells").arg("--h5ad").arg(&h5ad).arg("--out").arg(&onnx), 2);
    assert!(err.contains("700 × 1099511627776") && err.contains("over the limit") && err.contains("BIOEDGE_MAX_VALUES"), "{err}");
    assert!(!onnx.exists());
    // streamed (infer predict reads X by blocks of rows): the shape does not match the gene names
    let err =
        exits(Command::new(bin("infer")).arg("predict").arg("--model").arg(&m.gcn).arg("--input").arg(&h5ad).arg("--out").arg(&out), 2);
    assert!(err.contains("700 × 1099511627776") && err.contains("var 3"), "{err}");
    assert!(!out.exists());
    assert_eq!(std::fs::read(&h5ad).unwrap(), before);

    // a PNG header declaring 30000 × 30000 RGB (no pixel data needed: the check reads the header)
    fn chunk(kind: &[u8], body: &[u8]) -> Vec<u8> {
        let mut c = (body.len() as u32).to_be_bytes().to_vec();
        c.extend(kind);
        c.extend(body);
        c.extend(crc32(&[kind, body].concat()).to_be_bytes());
        c
    }
    fn crc32(b: &[u8]) -> u32 {
        let mut c = !0u32;
        for &x in b {
            c ^= x as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
    let mut ihdr = 30000u32.to_be_bytes().to_vec();
    ihdr.extend(30000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let png: Vec<u8> =
        [b"\x89PNG\r\n\x1a\n".to_vec(), chunk(b"IHDR", &ihdr), chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00]), chunk(b"IEND", &[])].concat();
    let bomb = dir.path().join("bomb.png");
    std::fs::write(&bomb, &png).unwrap();
    let (sm, card) = spot_model(&["ERBB2", "CD24"], 1);
    let model = dir.path().join("spot.onnx");
    write_spot_model(&model, &sm, &card);
    let out = dir.path().join("s.csv");
    let mut c = Command::new(bin("infer"));
    c.arg("slide").arg("--model").arg(&model).arg("--image").arg(&bomb).arg("--grid").arg("--out").arg(&out);
    let err = exits(&mut c, 2);
    assert!(err.contains("30000 × 30000") && err.contains("BIOEDGE_MAX_PIXELS"), "{err}");
    assert!(!out.exists());
}

/// `infer slide --memory-mb`: a budget the whole-image decode cannot fit is refused before any
/// work (exit 2, a hint to convert to a tiled pyramid); a tight one lowers the batch.
#[test]
fn slide_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (sm, card) = spot_model(&["ERBB2", "CD24"], 1);
    let model = dir.path().join("spot.onnx");
    write_spot_model(&model, &sm, &card);
    let image = data("her2st/B4/BT10737_D2_HE.jpg");
    let spots = data("her2st/B4/B4_selection.tsv");
    let out = dir.path().join("s.csv");
    let run = |mb: &str| {
        let mut c = Command::new(bin("infer"));
        c.arg("slide").arg("--model").arg(&model).arg("--image").arg(&image).arg("--spots").arg(&spots);
        c.args(["--batch", "64", "--memory-mb", mb]).arg("--out").arg(&out);
        c
    };
    let err = exits(&mut run("200"), 2);
    assert!(err.contains("--memory-mb 200") && err.contains("tiled pyramid"), "{err}");
    assert!(!out.exists());
    // the decode (≈ 267 MB) fits in 500 MB with room for fewer than 64 patches in flight
    let err = exits(&mut run("500"), 0);
    assert!(err.contains("--batch 64 lowered to"), "{err}");
    assert!(out.exists());
    // the run's metadata records the batch it used, not the one asked for
    let used: usize = err.split("--batch 64 lowered to ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    let res = dir.path().join("res");
    let mut c = Command::new(bin("infer"));
    c.arg("slide").arg("--model").arg(&model).arg("--image").arg(&image).arg("--spots").arg(&spots);
    c.args(["--batch", "64", "--memory-mb", "500"]).arg("--results-dir").arg(&res);
    exits(&mut c, 0);
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(res.join("run_metadata_BT10737_D2_HE.json")).unwrap()).unwrap();
    assert_eq!(meta["parameters"]["batch"], used, "{meta}");
}

/// `--patch-side 1` on a HER2ST JPEG: 86 M grid cells, refused before decoding (MAX_SPOTS).
#[test]
fn a_tiny_patch_side_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (sm, card) = spot_model(&["ERBB2", "CD24"], 1);
    let model = dir.path().join("spot.onnx");
    write_spot_model(&model, &sm, &card);
    let out = dir.path().join("g.csv");
    let mut c = Command::new(bin("infer"));
    c.arg("slide").arg("--model").arg(&model).arg("--image").arg(data("her2st/B4/BT10737_D2_HE.jpg"));
    c.args(["--grid", "--patch-side", "1"]).arg("--out").arg(&out);
    let err = exits(&mut c, 2);
    assert!(err.contains("a grid of 1 px steps over 9272 × 9923 pixels") && err.contains("BIOEDGE_MAX_SPOTS"), "{err}");
    assert!(!out.exists());
}

/// `infer predict` streams: a million samples (one model gene given, the other 299 imputed) run
/// in blocks, so the peak memory stays far below the ~1.2 GB the aligned matrix would take whole;
/// the output has every row, in order.
#[test]
fn predict_streams_a_million_samples_in_bounded_memory() {
    let m = models();
    let dir = tempfile::tempdir().unwrap();
    let gene = infer::read_card(&m.mlp).unwrap().genes[0].clone();
    let n = 1_000_000;
    let mut csv = format!("id,{gene}\n");
    for i in 0..n {
        csv.push_str(&format!("s{i},{}\n", 100 + i % 1000));
    }
    let input = dir.path().join("big.csv");
    std::fs::write(&input, csv).unwrap();
    let out = dir.path().join("p.csv");
    // the peak resident memory of the child, from Python's resource module
    let script = "import resource, subprocess, sys\nr = subprocess.run(sys.argv[1:])\nprint(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\nsys.exit(r.returncode)";
    let o = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(bin("infer"))
        .args(["predict", "--model"])
        .arg(&m.mlp)
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let peak_kb: u64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    assert!(peak_kb < 400_000, "peak {peak_kb} KB");
    let text = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), n + 1);
    assert!(rows[1].starts_with("s0,") && rows[n].starts_with(&format!("s{},", n - 1)));
}

/// The commit journals (`.bioedge-commit.PID.journal`) in `dir`.
fn journals(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".bioedge-commit.") && n.ends_with(".journal"))
        .collect()
}

/// Runs `cmd` to completion once (timing it), then again killed with SIGKILL at several points of
/// that time: each time the `outs` are all there or none is, or (a kill inside the renames of the
/// commit) some are and the run's journal is beside the first, and the next write into that folder
/// puts the rest in place; a complete run afterwards leaves no temp file in their folders (a
/// killed run's are removed by the next).
fn all_or_none_across_kill_9(cmd: &dyn Fn() -> Command, outs: &[std::path::PathBuf]) {
    let t0 = std::time::Instant::now();
    assert!(cmd().stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap().success());
    let full = t0.elapsed();
    let temps = || -> Vec<String> {
        let mut dirs: Vec<&Path> = outs.iter().map(|o| o.parent().unwrap()).collect();
        dirs.dedup();
        dirs.iter()
            .flat_map(|p| std::fs::read_dir(p).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    };
    for frac in [0.3, 0.6, 0.8, 0.9, 0.95, 0.99] {
        for o in outs {
            let _ = std::fs::remove_file(o);
        }
        let mut child = cmd().stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(full.mul_f64(frac));
        let _ = child.kill();
        child.wait().unwrap();
        let present: Vec<bool> = outs.iter().map(|o| o.exists()).collect();
        if !(present.iter().all(|p| *p) || present.iter().all(|p| !*p)) {
            let dir = outs[0].parent().unwrap();
            assert_eq!(journals(dir).len(), 1, "killed at {frac} of the run: {present:?} and no journal");
            onnx_format::remove_stray_temps(&dir.join("next-output"));
            assert!(outs.iter().all(|o| o.exists()) && journals(dir).is_empty(), "killed at {frac}: the journal was not finished");
        }
    }
    assert!(cmd().stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap().success());
    assert!(outs.iter().all(|o| o.exists()));
    assert_eq!(temps(), Vec::<String>::new());
}

/// `infer slide` with four outputs (CSV, h5ad, GeoJSON, a heatmap) killed with SIGKILL at several
/// points of its run: all outputs or none (they are complete on disk under temp names before the
/// renames), and the next run removes the dead run's temp files.
#[test]
fn slide_outputs_all_or_none_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (sm, card) = spot_model(&["ERBB2", "CD24"], 1);
    let model = dir.path().join("spot.onnx");
    write_spot_model(&model, &sm, &card);
    let d = dir.path();
    let outs = [d.join("o.csv"), d.join("o.h5ad"), d.join("o.geojson"), d.join("hm").join("ERBB2.png")];
    let cmd = || {
        let mut c = Command::new(bin("infer"));
        c.arg("slide").arg("--model").arg(&model).arg("--image").arg(data("her2st/B4/BT10737_D2_HE.jpg"));
        c.arg("--spots").arg(data("her2st/B4/B4_selection.tsv"));
        for o in &outs[..3] {
            c.arg("--out").arg(o);
        }
        c.args(["--heatmap", "ERBB2", "--heatmap-dir"]).arg(d.join("hm"));
        c
    };
    all_or_none_across_kill_9(&cmd, &outs);

    // a kill inside the renames, made certain by the test hook (exit right after the first
    // rename): one output is in place, the journal beside it; the next run that writes into the
    // folder (another command) first puts the dead run's other outputs in place
    let reference = std::fs::read(&outs[2]).unwrap();
    for o in &outs {
        std::fs::remove_file(o).unwrap();
    }
    let status = cmd().env(onnx_format::atomic::EXIT_IN_COMMIT_VAR, "1").stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
    assert_eq!(status.code(), Some(137));
    assert_eq!(outs.iter().filter(|o| o.exists()).count(), 1);
    assert_eq!(journals(d).len(), 1);
    let mut other = Command::new(bin("infer"));
    other.arg("slide").arg("--model").arg(&model).arg("--image").arg(data("her2st/B4/BT10737_D2_HE.jpg"));
    other.arg("--spots").arg(data("her2st/B4/B4_selection.tsv")).arg("--out").arg(d.join("other.csv"));
    assert!(other.stdout(Stdio::null()).status().unwrap().success());
    assert!(outs.iter().all(|o| o.exists()), "{outs:?}");
    assert_eq!(std::fs::read(&outs[2]).unwrap(), reference);
    assert!(journals(d).is_empty());
}

/// `train gene2vec` writes the model and its embedding table (`.tsv`) together.
#[test]
fn gene2vec_outputs_all_or_none_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let outs = [dir.path().join("g.onnx"), dir.path().join("g.tsv")];
    let cmd = || {
        let mut c = Command::new(bin("train"));
        c.args(["gene2vec", "--dim", "32", "--epochs", "2", "--seed", "0", "--gmt"]).arg(data("msigdb_hallmark/h.all.v7.0.symbols.gmt"));
        c.arg("--out").arg(&outs[0]);
        c
    };
    all_or_none_across_kill_9(&cmd, &outs);
}

/// `train node2vec` writes the model and its word2vec text together.
#[test]
fn node2vec_outputs_all_or_none_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let outs = [dir.path().join("k.onnx"), dir.path().join("k.w2v.txt")];
    let cmd = || {
        let mut c = Command::new(bin("train"));
        c.env("BIOEDGE_DATA", data("")).args(["node2vec", "--graph", "karate", "--dim", "8", "--epochs", "20", "--seeds", "1"]);
        c.arg("--out").arg(&outs[0]);
        c
    };
    all_or_none_across_kill_9(&cmd, &outs);
}

/// `train gene-compare` writes its table, summary and plot together.
#[test]
fn gene_compare_outputs_all_or_none_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (expr, cls) = leukemia();
    let d = dir.path().join("cmp");
    let outs = [d.join("results.csv"), d.join("summary.json"), d.join("gcn_vs_mlp.svg")];
    let cmd = || {
        let mut c = Command::new(bin("train"));
        c.args(["gene-compare", "--sizes", "10", "--seeds", "1", "--epochs", "3", "--genes", "300", "--channels", "8", "--num-layer", "2"]);
        c.arg("--expression").arg(&expr).arg("--cls").arg(&cls).arg("--graph").arg(data("gene_graphs/genemania.adjlist.gz"));
        c.arg("--out-dir").arg(&d);
        c
    };
    all_or_none_across_kill_9(&cmd, &outs);
}

/// `train spot-cv` writes its report and JSON together.
#[test]
fn spot_cv_outputs_all_or_none_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("cv");
    let outs = [d.join("REPORT.md"), d.join("results.json")];
    let cmd = || {
        let mut c = Command::new(bin("train"));
        c.args(["spot-cv", "--config", "small"]);
        c.args(["--sections", "B4,C2,C4", "--loso-scope", "all", "--folds", "B4", "--seeds", "0", "--epochs", "1"]);
        c.args(["--max-spots", "8", "--genes", "top:10", "--jobs", "1"]).arg("--data").arg(data("her2st")).arg("--out-dir").arg(&d);
        c
    };
    all_or_none_across_kill_9(&cmd, &outs);
}

/// Models a user could be handed: truncated, with an unknown operator, a dangling or cyclic edge,
/// initializers whose declared shape does not match their data, a broken card, an unknown opset.
/// Through both runtimes, each is a clear error naming the model, with exit code 2 (bad input: a
/// retry cannot help): no panic, no abort, no output written.
#[test]
fn crafted_models_are_refused_by_both_runtimes() {
    use onnx_format::pb;
    let m = models();
    let dir = tempfile::tempdir().unwrap();
    let (expr, cls) = leukemia();
    let bytes = std::fs::read(&m.gcn).unwrap();
    let base = onnx_format::decode(&bytes, "gcn.onnx").unwrap();
    let edit = |f: &dyn Fn(&mut pb::ModelProto)| {
        let mut m = base.clone();
        f(&mut m);
        onnx_format::encode(&m)
    };
    // an edit of the largest float initializer (the first layer's weights)
    let edit_big = |f: &dyn Fn(&mut pb::TensorProto)| {
        edit(&|m| {
            let g = m.graph.as_mut().unwrap();
            let size = |t: &pb::TensorProto| t.raw_data.as_ref().map_or(t.float_data.len() * 4, |r| r.len());
            f(g.initializer.iter_mut().max_by_key(|t| size(t)).unwrap())
        })
    };
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for frac in [0.01, 0.3, 0.6, 0.999] {
        cases.push((format!("truncated at {frac}"), bytes[..(bytes.len() as f64 * frac) as usize].to_vec()));
    }
    cases.push(("unknown operator".into(), edit(&|m| m.graph.as_mut().unwrap().node[2].op_type = Some("NoSuchOp".into()))));
    cases.push(("dangling input".into(), edit(&|m| m.graph.as_mut().unwrap().node[2].input[0] = "nowhere".into())));
    cases.push((
        "cycle".into(),
        edit(&|m| {
            let g = m.graph.as_mut().unwrap();
            let last = g.node.last().unwrap().output[0].clone();
            g.node[2].input[0] = last;
        }),
    ));
    cases.push((
        "short initializer".into(),
        edit_big(&|t| match &mut t.raw_data {
            Some(r) => r.truncate(r.len() / 2),
            None => t.float_data.truncate(t.float_data.len() / 2),
        }),
    ));
    cases.push(("huge declared initializer".into(), edit_big(&|t| t.dims = vec![1 << 40, 1 << 40])));
    cases.push(("negative dimension".into(), edit_big(&|t| t.dims = vec![-3, 7])));
    cases.push(("initializer of another type".into(), edit_big(&|t| t.data_type = Some(7)))); // int64, with float data
    cases.push(("unknown opset".into(), edit(&|m| m.opset_import.iter_mut().for_each(|o| o.version = Some(9999)))));
    cases.push(("no graph".into(), edit(&|m| m.graph = None)));
    cases.push(("broken card".into(), edit(&|m| m.metadata_props.iter_mut().for_each(|p| p.value = Some("{\"family\":".into())))));
    cases.push(("no card".into(), edit(&|m| m.metadata_props.clear())));
    for (i, (what, model_bytes)) in cases.iter().enumerate() {
        let model = dir.path().join(format!("crafted{i}.onnx"));
        std::fs::write(&model, model_bytes).unwrap();
        for backend in ["tract", "ort"] {
            let out_csv = dir.path().join(format!("crafted{i}-{backend}.csv"));
            let mut c = Command::new(bin("infer"));
            c.args(["predict", "--backend", backend]).arg("--model").arg(&model).arg("--input").arg(&expr).arg("--cls").arg(&cls);
            let err = exits(c.arg("--out").arg(&out_csv), 2);
            assert!(err.contains(&format!("crafted{i}.onnx")), "{what} ({backend}): the error names the model: {err}");
            assert!(!out_csv.exists(), "{what} ({backend})");
            // tract alone would run a model of a future opset; both refuse what ONNX Runtime refuses
            assert!(what != "unknown opset" || err.contains("opset 9999; the runtimes support opsets 1 to 26"), "{err}");
            assert!(what != "broken card" || err.matches("EOF while parsing").count() == 1, "the cause once: {err}");
        }
    }
}

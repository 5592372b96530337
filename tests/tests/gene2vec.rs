//! `train gene2vec` end to end on the MSigDB hallmark sets: held-out memberships score above
//! chance (and an untrained model does not), the export runs on tract and ONNX Runtime, the
//! word2vec text matches it, `infer genes` lists neighbours and sets, bad inputs are clean errors.

mod common;

use common::*;
use infer::runtime::{Backend, Options, Session, Value};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

fn hallmark() -> std::path::PathBuf {
    data("msigdb_hallmark/h.all.v7.0.symbols.gmt")
}

/// The line starting with `prefix`.
fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no line `{prefix}` in:\n{text}"))
}

/// The first number after `key` in the text.
fn number_after(text: &str, key: &str) -> f64 {
    let rest = &text[text.find(key).unwrap_or_else(|| panic!("`{key}` not in:\n{text}")) + key.len()..];
    rest.split_whitespace().next().unwrap().trim_end_matches([',', ';', ')']).parse().unwrap()
}

fn train(out: &Path, epochs: usize) -> String {
    ok(Command::new(bin("train"))
        .args(["gene2vec", "--dim", "100", "--epochs", &epochs.to_string(), "--holdout", "0.1", "--seed", "0"])
        .arg("--gmt")
        .arg(hallmark())
        .arg("--out")
        .arg(out))
}

fn infer_genes(model: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin("infer"));
    c.arg("genes").arg("--model").arg(model).args(args);
    c
}

#[test]
fn hallmark_embeddings_export_and_queries() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g2v.onnx");
    let log = train(&out, 15);
    let held = line(&log, "held-out member pairs: ratio");
    let (member, random, auc) = (number_after(held, "mean cosine"), number_after(held, "vs random"), number_after(held, "AUC"));
    assert!(member > random + 0.05 && auc > 0.6, "held-out pairs: mean cosine {member} vs {random}, AUC {auc}:\n{log}");
    let matched = number_after(line(&log, "held-out member pairs vs the same genes"), "AUC");
    assert!(matched > 0.6, "held-out vs matched control AUC {matched}:\n{log}");
    let degree = number_after(line(&log, "held-out member pairs vs degree-matched"), "AUC");
    assert!(degree > 0.6, "held-out vs degree-matched control AUC {degree}:\n{log}");
    let train_auc = number_after(line(&log, "training member pairs"), "AUC");
    assert!(train_auc > 0.85, "training pairs AUC {train_auc}:\n{log}");
    let rec = line(&log, "held-out membership recovery");
    let (rec_auc, r1, c1) = (number_after(rec, "AUC"), number_after(rec, "recall@1"), number_after(rec, "chance"));
    let size_auc = number_after(rec, "set-size baseline AUC");
    assert!(
        rec_auc > size_auc + 0.05 && r1 > 2.0 * c1,
        "recovery AUC {rec_auc} (set size {size_auc}), recall@1 {r1} (chance {c1}):\n{log}"
    );

    // the card: vocabulary, set names, metrics
    let card = onnx_format::read_card(&out).unwrap();
    assert_eq!(card.family, onnx_format::Family::Gene2vec);
    assert_eq!((card.genes.len(), card.classes.len()), (4384, 50));
    assert_eq!(card.outputs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["embedding", "gene_sets"]);
    assert!((card.metrics["heldout_pairs_auc"] - auc).abs() < 1e-4);
    assert!(card.metrics["parity_ort_max_abs_diff"] <= 1e-5);

    // word2vec text = the ONNX lookup, on both runtimes; probabilities agree across runtimes
    let text = std::fs::read_to_string(dir.path().join("g2v.tsv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "4384 100");
    assert_eq!(lines.len(), 4385);
    let rows: HashMap<&str, Vec<f32>> = lines[1..]
        .iter()
        .map(|l| {
            let mut f = l.split(' ');
            (f.next().unwrap(), f.map(|v| v.parse().unwrap()).collect::<Vec<f32>>())
        })
        .collect();
    let tp53 = card.genes.iter().position(|g| g == "TP53").unwrap() as i64;
    let ids = vec![tp53, 0, 4383, tp53];
    let mut probs = Vec::new();
    for backend in [Backend::Tract, Backend::Ort] {
        let mut s = Session::from_file(&out, backend, &Options::default()).unwrap();
        let outs = s.run(&[Value::i64(&[ids.len()], ids.clone())]).unwrap();
        let mut outs = outs.into_iter();
        let emb = outs.next().unwrap().into_f32().unwrap();
        for (r, &i) in ids.iter().enumerate() {
            assert_eq!(&emb[r * 100..(r + 1) * 100], rows[card.genes[i as usize].as_str()].as_slice(), "{backend:?} gene {i}");
        }
        let p = outs.next().unwrap().into_f32().unwrap();
        assert_eq!(p.len(), 4 * 50);
        assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
        probs.push(p);
    }
    assert!(probs[0].iter().zip(&probs[1]).all(|(a, b)| (a - b).abs() <= 1e-5));
    // onnx.checker (full) and Python onnxruntime agree
    let case = dir.path().join("case.json");
    let json = serde_json::json!({"inputs": {"gene": {"shape": [ids.len()], "data": ids, "dtype": "int64"}}, "output": "gene_sets", "expected": probs[0], "tolerance": 1e-5});
    std::fs::write(&case, json.to_string()).unwrap();
    let py = check_onnx_py(&out, Some(&case));
    assert!(py.contains("\"checker\": \"ok\"") && py.contains("max_abs_diff"), "{py}");

    // infer genes --similar: neighbours with cosines, the same on both runtimes, any case
    let listing = |args: &[&str]| -> Vec<(String, f64)> {
        let o = ok(&mut infer_genes(&out, args));
        o.lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f[1].to_string(), f[2].parse().unwrap())
            })
            .collect()
    };
    let near = listing(&["--similar", "TP53", "--top", "8"]);
    assert_eq!(near.len(), 8);
    assert!(near.iter().all(|(g, c)| g != "TP53" && (-1.0..=1.0).contains(c) && card.genes.contains(g)));
    assert!(near.windows(2).all(|w| w[0].1 >= w[1].1), "{near:?}");
    assert_eq!(
        listing(&["--similar", "tp53", "--top", "8", "--backend", "ort"]).iter().map(|x| &x.0).collect::<Vec<_>>(),
        near.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    // TP53's nearest neighbours share a gene set with it far more often than random genes
    let (sets, _) = infer::data::gmt::read_gmt(&hallmark()).unwrap();
    let tp53_sets: Vec<&infer::data::gmt::GeneSet> = sets.iter().filter(|s| s.genes.iter().any(|g| g == "TP53")).collect();
    let shared = near.iter().filter(|(g, _)| tp53_sets.iter().any(|s| s.genes.contains(g))).count();
    assert!(shared >= 4, "{shared}/8 neighbours share a set with TP53: {near:?}");

    // --sets: probabilities, TP53's own sets first
    let top = listing(&["--sets", "TP53", "--top", "3"]);
    assert_eq!(top.len(), 3);
    assert!(tp53_sets.iter().any(|s| s.name == top[0].0), "{top:?}");

    // unknown gene: close spellings; not a gene2vec model: clear error
    let e = fails(&mut infer_genes(&out, &["--similar", "TP35"]));
    assert!(e.contains("`TP35`") && e.contains("did you mean TP53"), "{e}");
    let e = fails(&mut infer_genes(&out, &["--sets", "NOTAGENE123"]));
    assert!(e.contains("not in the model's vocabulary"), "{e}");
    let e = fails(&mut infer_genes(&out, &[]));
    assert!(e.contains("--similar"), "{e}");
}

/// With no training, the pair scores sit at chance and membership recovery at the set-size
/// prior (the set biases' correction for sampled negatives is that prior): the thresholds above
/// measure learning.
#[test]
fn untrained_model_scores_at_chance() {
    let dir = tempfile::tempdir().unwrap();
    let log = train(&dir.path().join("untrained.onnx"), 0);
    let auc = number_after(line(&log, "held-out member pairs: ratio"), "AUC");
    let degree = number_after(line(&log, "held-out member pairs vs degree-matched"), "AUC");
    assert!(degree < 0.53, "untrained: degree-matched {degree}:\n{log}");
    let train_auc = number_after(line(&log, "training member pairs"), "AUC");
    let rec_line = line(&log, "held-out membership recovery");
    let (rec, size_auc) = (number_after(rec_line, "AUC"), number_after(rec_line, "set-size baseline AUC"));
    assert!(
        auc < 0.53 && train_auc < 0.53 && (rec - size_auc).abs() < 0.03,
        "untrained: held-out {auc}, training {train_auc}, recovery {rec} (set size {size_auc}):\n{log}"
    );
}

#[test]
fn malformed_gmt_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bad.onnx");
    let run = |files: &[&Path], extra: &[&str]| {
        let mut c = Command::new(bin("train"));
        c.args(["gene2vec", "--epochs", "1"]).arg("--gmt").args(files).args(extra).arg("--out").arg(&out);
        c
    };
    let bad = dir.path().join("bad.gmt");
    std::fs::write(&bad, "S1\tdesc\tTP53\tMDM2\r\nS2\tonly-a-description\r\n").unwrap();
    let e = fails(&mut run(&[&bad], &[]));
    assert!(e.contains("bad.gmt: line 2") && e.contains("found 2 field(s)"), "{e}");
    // the same set name with other genes in a second file
    let a = dir.path().join("a.gmt");
    let b = dir.path().join("b.gmt");
    std::fs::write(&a, "S1\td\tTP53\tMDM2\tCDKN1A\n").unwrap();
    std::fs::write(&b, "S1\td\tEGFR\tERBB2\n").unwrap();
    let e = fails(&mut run(&[&a, &b], &[]));
    assert!(e.contains("b.gmt: line 1") && e.contains("`S1`") && e.contains("a.gmt line 1"), "{e}");
    let e = fails(&mut run(&[&a], &["--holdout", "1.5"]));
    assert!(e.contains("--holdout"), "{e}");
    assert!(!out.exists() && !dir.path().join("bad.tsv").exists());
    // renamed, it trains
    let log = ok(&mut run(&[&a, &b], &["--duplicate-sets", "rename", "--dim", "4", "--holdout", "0"]));
    assert!(log.contains("2 gene sets, 5 genes") && log.contains("1 renamed"), "{log}");
    assert_eq!(onnx_format::read_card(&out).unwrap().classes, ["S1", "S1@b"]);
}

/// GO Biological Process (6,036 sets) merged with the hallmark sets: the scale where the seed's
/// objective collapsed (held-out pairs below random). A short run already ranks held-out
/// co-members above degree-matched random pairs and recovers memberships better than set size.
#[test]
fn go_bp_and_hallmark_embeddings_beat_degree_matched_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("go.onnx");
    let go = data("go_bp_enrichr/GO_Biological_Process_2021.gmt");
    let log = ok(Command::new(bin("train"))
        .args(["gene2vec", "--epochs", "6", "--seed", "0", "--gmt"])
        .arg(hallmark())
        .arg(&go)
        .arg("--out")
        .arg(&out));
    assert!(log.contains("6086 gene sets, 15209 genes"), "{log}");
    let degree = number_after(line(&log, "held-out member pairs vs degree-matched"), "AUC");
    assert!(degree > 0.72, "held-out vs degree-matched AUC {degree}:\n{log}");
    let rec = line(&log, "held-out membership recovery");
    let (rec_auc, size_auc) = (number_after(rec, "AUC"), number_after(rec, "set-size baseline AUC"));
    assert!(rec_auc > size_auc + 0.03, "recovery AUC {rec_auc} vs set size {size_auc}:\n{log}");
    let card = onnx_format::read_card(&out).unwrap();
    assert_eq!(card.training["epoch_seconds"].as_array().unwrap().len(), 6);

    // neighbours of TP53 with the sets they share with it (from the GMT files)
    let o = ok(infer_genes(&out, &["--similar", "TP53", "--top", "10", "--gmt"]).arg(&go).arg(hallmark()));
    assert!(o.contains("rank\tgene\tcosine\tshared_sets\tsmallest_shared_set"), "{o}");
    let rows: Vec<Vec<&str>> = o.lines().filter(|l| l.starts_with(|c: char| c.is_ascii_digit())).map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 10);
    let sharing = rows.iter().filter(|r| r[3].parse::<usize>().unwrap() > 0).count();
    assert!(sharing >= 7, "{sharing}/10 neighbours of TP53 share a set with it:\n{o}");
    assert!(rows.iter().all(|r| (r[3] == "0") == (r[4] == "-")), "{o}");
}

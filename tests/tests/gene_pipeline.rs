//! Gene-graph GCN and MLP: train → export → infer, checked against Python onnx/onnxruntime, and
//! every bad input fails cleanly (message, non-zero exit, no output file).

mod common;

use common::*;
use infer::data::{ExpressionMatrix, ReadOptions, read_expression};
use infer::runtime::{Backend, Options, Session, Value};
use std::path::Path;
use std::process::Command;

fn read_csv(p: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(p).unwrap().lines().map(|l| l.split(',').map(String::from).collect()).collect()
}

fn probs(p: &Path) -> Vec<(String, Vec<f64>)> {
    read_csv(p).into_iter().skip(1).map(|r| (r[0].clone(), r[2..].iter().map(|v| v.parse().unwrap()).collect())).collect()
}

fn leukemia_matrix() -> ExpressionMatrix {
    let (expr, cls) = leukemia();
    read_expression(&expr, &ReadOptions { cls: Some(cls), ..Default::default() }).unwrap()
}

fn predict(model: &Path, input: &Path, extra: &[&str], out: &Path) -> String {
    ok(Command::new(bin("infer")).arg("predict").arg("--model").arg(model).arg("--input").arg(input).args(extra).arg("--out").arg(out))
}

#[test]
fn exports_pass_onnx_checker_and_match_python_onnxruntime() {
    let m = models();
    let data = leukemia_matrix();
    for model in [&m.gcn, &m.gcn_scatter, &m.mlp] {
        let card = infer::read_card(model).unwrap();
        let a = infer::align::Alignment::new(&card.genes, &data.genes).unwrap();
        let x = a.apply(&data);
        let n = data.samples.len();
        let mut s = Session::from_file(model, Backend::Tract, &Options::default()).unwrap();
        let expected = s.run_output(&[Value::f32(&[n, card.genes.len()], x.clone())], "probabilities").unwrap().into_f32().unwrap();
        let case = serde_json::json!({
            "inputs": {"expression": {"shape": [n, card.genes.len()], "data": x}},
            "output": "probabilities", "expected": expected, "tolerance": 1e-4,
        });
        let case_path = model.with_extension("case.json");
        std::fs::write(&case_path, serde_json::to_vec(&case).unwrap()).unwrap();
        let report = check_onnx_py(model, Some(&case_path));
        assert!(report.contains("\"checker\": \"ok\""), "{report}");
        assert!(report.contains("\"opset\": 18"), "{report}");
    }
}

#[test]
fn card_describes_the_model() {
    let m = models();
    let card = infer::read_card(&m.gcn).unwrap();
    assert_eq!(card.family, onnx_format::Family::GeneGcn);
    assert_eq!(card.genes.len(), 300);
    assert_eq!(card.classes, vec!["ALL".to_string(), "AML".to_string()]);
    assert!(card.metrics["test_roc_auc"] > 0.5, "{:?}", card.metrics);
    assert!(card.metrics["parity_tract_max_abs_diff"] <= 1e-4);
    assert!(card.metrics["parity_ort_max_abs_diff"] <= 1e-4);
    assert_eq!(card.architecture["message_passing"], "dense");
    let scatter = infer::read_card(&m.gcn_scatter).unwrap();
    assert_eq!(scatter.architecture["message_passing"], "scatter-nd");
    assert!(infer::read_card(&m.mlp).unwrap().architecture.get("message_passing").is_none());
    let out = ok(Command::new(bin("infer")).arg("inspect").arg(&m.gcn));
    for needle in ["gene-gcn", "opset 18", "genes:        300", "ALL, AML", "test_roc_auc", "tract-onnx"] {
        assert!(out.contains(needle), "inspect lacks `{needle}`:\n{out}");
    }
}

#[test]
fn tract_and_ort_agree_and_predict_the_leukemia_classes() {
    let m = models();
    let (expr, cls) = leukemia();
    for model in [&m.gcn, &m.gcn_scatter, &m.mlp] {
        let a = m.dir.join("tract.csv");
        let b = m.dir.join("ort.csv");
        let log = predict(model, &expr, &["--cls", cls.to_str().unwrap(), "--backend", "tract"], &a);
        assert!(log.contains("accuracy against the input's labels"), "{log}");
        predict(model, &expr, &["--backend", "ort"], &b);
        let (pa, pb) = (probs(&a), probs(&b));
        assert_eq!(pa.len(), 48);
        for ((sa, va), (sb, vb)) in pa.iter().zip(&pb) {
            assert_eq!(sa, sb);
            for (x, y) in va.iter().zip(vb) {
                assert!((x - y).abs() <= 1e-5, "{sa}: tract {x} vs ort {y}");
            }
        }
        // the training data itself is classified well above chance
        let correct = read_csv(&a).iter().skip(1).filter(|r| r[0][..3] == r[1][..]).count();
        assert!(correct >= 40, "{}: only {correct}/48 correct", model.display());
    }
}

fn write_tsv(m: &ExpressionMatrix, order: &[usize], drop_genes: usize, extra: bool, path: &Path) {
    let g = m.genes.len();
    let cols: Vec<usize> = order.iter().copied().skip(drop_genes).collect();
    let mut s = String::from("sample");
    for &c in &cols {
        s += &format!("\t{}", m.genes[c]);
    }
    if extra {
        s += "\tNOT_A_GENE";
    }
    s += "\n";
    for (i, name) in m.samples.iter().enumerate() {
        s += name;
        for &c in &cols {
            s += &format!("\t{}", m.values[i * g + c]);
        }
        if extra {
            s += "\t1.0";
        }
        s += "\n";
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn gene_order_does_not_matter_and_missing_genes_are_reported() {
    let m = models();
    let data = leukemia_matrix();
    let card = infer::read_card(&m.gcn).unwrap();
    let n = data.genes.len();
    let forward: Vec<usize> = (0..n).collect();
    let mut shuffled: Vec<usize> = (0..n).rev().collect();
    shuffled.rotate_left(1234);
    let (a, b, c) = (m.dir.join("fwd.tsv"), m.dir.join("shuf.tsv"), m.dir.join("miss.tsv"));
    write_tsv(&data, &forward, 0, false, &a);
    write_tsv(&data, &shuffled, 0, true, &b);
    // drop some of the model's genes
    let model_cols: std::collections::HashSet<&str> = card.genes.iter().map(|s| s.as_str()).collect();
    let keep: Vec<usize> = (0..n).filter(|&i| !model_cols.contains(data.genes[i].as_str()) || i % 10 != 0).collect();
    write_tsv(&data, &keep, 0, false, &c);
    for model in [&m.gcn, &m.mlp] {
        let (pa, pb, pc) = (m.dir.join("pa.csv"), m.dir.join("pb.csv"), m.dir.join("pc.csv"));
        predict(model, &a, &[], &pa);
        let log = predict(model, &b, &[], &pb);
        assert!(log.contains("1 extra input genes ignored") || log.contains("extra input genes ignored"), "{log}");
        assert_eq!(std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap(), "shuffled gene order changed predictions");
        let log = predict(model, &c, &[], &pc);
        assert!(log.contains("missing, imputed"), "{log}");
        assert!(!log.contains(" 0 missing"), "{log}");
        assert_eq!(probs(&pc).len(), 48);
    }
}

#[test]
fn other_formats_give_the_same_predictions() {
    let m = models();
    let data = leukemia_matrix();
    let h5 = m.dir.join("leukemia.h5");
    infer::data::h5::write_hdf5(&h5, &data).unwrap();
    let tsv = m.dir.join("leukemia.tsv");
    write_tsv(&data, &(0..data.genes.len()).collect::<Vec<_>>(), 0, false, &tsv);
    let (expr, _) = leukemia();
    let outs: Vec<_> = [&expr, &h5, &tsv]
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let o = m.dir.join(format!("fmt{i}.csv"));
            predict(&m.gcn, input, &[], &o);
            probs(&o)
        })
        .collect();
    for o in &outs[1..] {
        for ((_, a), (_, b)) in outs[0].iter().zip(o) {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() < 1e-5);
            }
        }
    }
}

/// A bad run: non-zero exit, a message naming `needle`, and no output file.
fn bad(args: &[&std::ffi::OsStr], envs: &[(&str, &str)], needle: &str) {
    let out = models().dir.join(format!("bad-{}.csv", needle.len()));
    let _ = std::fs::remove_file(&out);
    let mut cmd = Command::new(bin("infer"));
    cmd.arg("predict").args(args).arg("--out").arg(&out);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let err = fails(&mut cmd);
    assert!(err.contains(needle), "expected `{needle}` in:\n{err}");
    assert!(!out.exists(), "{} left behind", out.display());
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

#[test]
fn bad_inputs_fail_cleanly() {
    let m = models();
    let dir = &m.dir;
    let gcn = m.gcn.as_os_str();
    // NaN in the input
    let nan = dir.join("nan.tsv");
    std::fs::write(&nan, "sample\tMAPK3\tTIE1\ns1\t1.0\tNaN\n").unwrap();
    bad(&[os("--model"), gcn, os("--input"), nan.as_os_str()], &[], "TIE1");
    // no gene overlap
    let none = dir.join("none.tsv");
    std::fs::write(&none, "sample\tFOO\tBAR\ns1\t1.0\t2.0\n").unwrap();
    bad(&[os("--model"), gcn, os("--input"), none.as_os_str()], &[], "no gene");
    // wrong shape: a ragged row
    let ragged = dir.join("ragged.tsv");
    std::fs::write(&ragged, "sample\tMAPK3\tTIE1\ns1\t1.0\n").unwrap();
    bad(&[os("--model"), gcn, os("--input"), ragged.as_os_str()], &[], "ragged.tsv");
    // corrupt and truncated HDF5
    let corrupt = dir.join("corrupt.h5");
    std::fs::write(&corrupt, b"\x89HDF\r\n\x1a\nthis is not really hdf5").unwrap();
    bad(&[os("--model"), gcn, os("--input"), corrupt.as_os_str()], &[], "corrupt.h5");
    let good = dir.join("trunc-src.h5");
    infer::data::h5::write_hdf5(&good, &leukemia_matrix()).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let trunc = dir.join("truncated.h5");
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    bad(&[os("--model"), gcn, os("--input"), trunc.as_os_str()], &[], "truncated.h5");
    // not an ONNX file / unknown family
    let (expr, _) = leukemia();
    bad(&[os("--model"), nan.as_os_str(), os("--input"), expr.as_os_str()], &[], "nan.tsv");
    let other = dir.join("other-family.onnx");
    rewrite_card(&m.gcn, &other, |c| relabel(c, onnx_format::Family::SpotExpression));
    bad(&[os("--model"), other.as_os_str(), os("--input"), expr.as_os_str()], &[], "histology-spot");
    // ONNX Runtime library missing
    bad(
        &[os("--model"), gcn, os("--input"), expr.as_os_str(), os("--backend"), os("ort")],
        &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")],
        "ORT_DYLIB_PATH",
    );
}

#[test]
fn runtime_rejects_wrong_input_shapes_without_panicking() {
    let m = models();
    for (backend, model) in
        [(Backend::Tract, &m.gcn), (Backend::Ort, &m.gcn), (Backend::Tract, &m.gcn_scatter), (Backend::Ort, &m.gcn_scatter)]
    {
        let mut s = Session::from_file(model, backend, &Options::default()).unwrap();
        let r = s.run(&[Value::f32(&[2, 7], vec![0.0; 14])]);
        assert!(r.is_err(), "{backend:?} accepted a [2, 7] input for {}", model.display());
    }
}

#[test]
fn train_rejects_bad_arguments_without_output() {
    let m = models();
    let (expr, cls) = leukemia();
    let graph = data("gene_graphs/genemania.adjlist.gz");
    let out = m.dir.join("never.onnx");
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (vec!["--genes".into(), "lots".into()], "--genes"),
        (vec!["--train-size".into(), "45".into()], "no test samples"),
        (vec!["--graph".into(), m.dir.join("missing.adjlist").into()], "missing.adjlist"),
        (vec!["--cls".into(), data("tox21/tox21.csv").into()], "tox21.csv"),
    ];
    for (args, needle) in cases {
        let mut base: Vec<(std::ffi::OsString, std::ffi::OsString)> = vec![
            ("--epochs".into(), "2".into()),
            ("--genes".into(), "100".into()),
            ("--expression".into(), expr.clone().into()),
            ("--cls".into(), cls.clone().into()),
            ("--graph".into(), graph.clone().into()),
        ];
        for (k, v) in &mut base {
            if *k == args[0] {
                *v = args[1].clone();
            }
        }
        if !base.iter().any(|(k, _)| *k == args[0]) {
            base.push((args[0].clone(), args[1].clone()));
        }
        let mut cmd = Command::new(bin("train"));
        cmd.arg("gene-gcn");
        for (k, v) in base {
            cmd.arg(k).arg(v);
        }
        cmd.arg("--out").arg(&out);
        let err = fails(&mut cmd);
        assert!(err.contains(needle), "expected `{needle}` in: {err}");
        assert!(!out.exists());
    }
}

/// `train gene-gcn` on each documented input format (issue 17: the bundled `.cls` used to be
/// applied to any `--expression`, so no other format could be trained): the same 48 samples and
/// classes from TSV, CSV, HDF5 and h5ad (written by Python anndata); a file without labels is a
/// clear error, not the Leukemia labels.
#[test]
fn train_gene_gcn_on_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let data = leukemia_matrix();
    let labels = data.labels.clone().unwrap();
    let g = data.genes.len();
    let table = |sep: &str| {
        let mut s = format!("sample{sep}{}{sep}label\n", data.genes.join(sep));
        for (i, name) in data.samples.iter().enumerate() {
            let row: Vec<String> = data.values[i * g..(i + 1) * g].iter().map(|v| v.to_string()).collect();
            s += &format!("{name}{sep}{}{sep}{}\n", row.join(sep), labels[i]);
        }
        s
    };
    let (tsv, csv, h5, h5ad) = (dir.path().join("x.tsv"), dir.path().join("x.csv"), dir.path().join("x.h5"), dir.path().join("x.h5ad"));
    std::fs::write(&tsv, table("\t")).unwrap();
    std::fs::write(&csv, table(",")).unwrap();
    infer::data::h5::write_hdf5(&h5, &data).unwrap();
    let script = "import sys, anndata, numpy as np, pandas as pd\n\
        rows = [l.rstrip('\\n').split('\\t') for l in open(sys.argv[1])]\n\
        X = np.array([[float(v) for v in r[1:-1]] for r in rows[1:]], dtype=np.float32)\n\
        obs = pd.DataFrame({'cell_type': pd.Categorical([r[-1] for r in rows[1:]])}, index=[r[0] for r in rows[1:]])\n\
        anndata.AnnData(X=X, obs=obs, var=pd.DataFrame(index=rows[0][1:-1])).write_h5ad(sys.argv[2])\n";
    ok(Command::new(python()).arg("-c").arg(script).arg(&tsv).arg(&h5ad));
    let train = |input: &Path, extra: &[&str], out: &Path| {
        let mut c = Command::new(bin("train"));
        c.args(["gene-gcn", "--epochs", "2", "--genes", "100"]).arg("--expression").arg(input).args(extra);
        c.arg("--graph").arg(common::data("gene_graphs/genemania.adjlist.gz")).arg("--out").arg(out);
        c
    };
    let cases: [(&Path, &[&str]); 4] = [
        (&tsv, &["--label-column", "label"]),
        (&csv, &["--label-column", "label"]),
        (&h5ad, &["--label-column", "cell_type"]),
        (&h5, &[]), // `/labels` in the file
    ];
    for (input, extra) in cases {
        let out = dir.path().join(format!("{}.onnx", input.extension().unwrap().to_string_lossy()));
        let log = ok(&mut train(input, extra, &out));
        assert!(log.contains("48 samples") && log.contains("\"ALL\", \"AML\""), "{}: {log}", input.display());
        assert_eq!(infer::read_card(&out).unwrap().classes, ["ALL", "AML"]);
    }
    // no labels in the file and none given: an error naming the file, no output
    let nolabel = dir.path().join("nolabel.tsv");
    write_tsv(&data, &(0..g).collect::<Vec<_>>(), 0, false, &nolabel);
    let out = dir.path().join("nolabel.onnx");
    let e = fails(&mut train(&nolabel, &[], &out));
    assert!(e.contains("nolabel.tsv") && e.contains("no labels"), "{e}");
    assert!(!out.exists());
}

/// The gene MLP folds its standardization into the first layer's weights: on inputs with missing
/// genes (NaN) and genes far from zero, tract and ONNX Runtime match burn's forward on the
/// standardized values (missing → 0, the training mean), with hidden layers and without.
#[test]
fn folded_standardization_matches_burn_with_missing_genes() {
    use models::burn::prelude::*;
    use models::gene::GeneMlpConfig;
    use models::preprocess::Standardizer;
    let (genes, batch) = (300, 12);
    let device = Device::flex();
    device.seed(3);
    for log2 in [true, false] {
        let pre = Standardizer {
            log2,
            floor: 1.0,
            mean: (0..genes).map(|g| 2.0 + (g % 17) as f32 * 0.7).collect(),
            std: (0..genes).map(|g| 0.3 + (g % 5) as f32 * 0.4).collect(),
        };
        let x: Vec<f32> = (0..batch * genes)
            .map(|i| if i % 13 == 5 { f32::NAN } else { 0.5 + ((i * 7919) % 3000) as f32 * if log2 { 1.0 } else { 0.01 } })
            .collect();
        let z = pre.apply(&x);
        for hidden in [vec![16, 8], vec![]] {
            let model = GeneMlpConfig { hidden: hidden.clone(), dropout: 0.0 }.init(genes, 3, &device);
            let want = models::to_vec(models::burn::tensor::activation::softmax(
                model.forward(Tensor::from_data(TensorData::new(z.clone(), [batch, genes]), &device)),
                1,
            ));
            let bytes = onnx_format::encode(&model.export(&pre, vec![]));
            for backend in [Backend::Tract, Backend::Ort] {
                let mut s = Session::from_bytes(&bytes, Path::new("mlp"), backend, &Options::default()).unwrap();
                let got = s.run_output(&[Value::f32(&[batch, genes], x.clone())], "probabilities").unwrap().into_f32().unwrap();
                let d = infer::runtime::max_abs_diff(&got, &want);
                assert!(d <= 1e-5, "{backend:?}, log2 {log2}, hidden {hidden:?}: {d:.2e}");
            }
        }
    }
}

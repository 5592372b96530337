//! `train spot`: a tiny HER2ST run (B4 → C2, 24 spots, 1 epoch, 20 genes) exports a carded ONNX
//! file and prints the held-out metrics; an unknown section fails cleanly with no output.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

fn her2st() -> std::path::PathBuf {
    data("her2st")
}

#[test]
fn spot_train_tiny_run_exports_card_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spot.onnx");
    let ck = dir.path().join("ck");
    let t = std::time::Instant::now();
    let log = ok(Command::new(bin("train"))
        .args(["spot", "--train", "B4", "--eval", "C2", "--max-spots", "24", "--epochs", "1", "--genes", "20", "--config", "small"])
        .arg("--data")
        .arg(her2st())
        .arg("--out")
        .arg(&out)
        .arg("--checkpoint-dir")
        .arg(&ck));
    eprintln!("{log}\n({:.1} s)", t.elapsed().as_secs_f64());
    assert!(out.is_file(), "no ONNX written");
    assert!(ck.join("spot-small-epoch1.bpk").is_file(), "no checkpoint");
    assert!(ck.join("spot-small-epoch1.optim.bpk").is_file(), "no optimizer state beside the checkpoint");
    for want in [
        "held-out section C2",
        "model (TCGN-style)",
        "ridge baseline",
        "training-mean baseline",
        "median r",
        "top-20",
        "parity on 24 held-out patches",
    ] {
        assert!(log.contains(want), "missing `{want}` in output:\n{log}");
    }
    let card = onnx_format::read_card(&out).unwrap();
    assert_eq!(card.family, onnx_format::Family::SpotExpression);
    assert_eq!(card.genes.len(), 20);
    assert_eq!(card.outputs[0].name, "expression");
    assert_eq!(card.outputs[0].shape, vec!["batch".to_string(), "20".to_string()]);
    let spot: &onnx_format::card::SpotImage = card.require().unwrap();
    assert_eq!(spot.image.size, 224);
    assert!(card.metrics.contains_key("model_pearson_median"));
    assert!(card.metrics["parity_ort_max_abs_diff"] <= 1e-4);
    assert_eq!(card.training["train_sections"][0]["section"], "B4");
    // held-out evaluation after every epoch (--eval-every 1 by default)
    let per_epoch = card.training["eval_per_epoch"].as_array().unwrap();
    assert_eq!(per_epoch.len(), 1);
    // the last epoch is evaluated once, by the final evaluation
    assert_eq!(per_epoch[0]["median_r"].as_f64().unwrap(), card.metrics["model_pearson_median"]);

    // resume from the checkpoint (weights + Adam state), writing checkpoints over the old ones
    let out2 = dir.path().join("spot2.onnx");
    let log = ok(Command::new(bin("train"))
        .args(["spot", "--train", "B4", "--eval", "C2", "--max-spots", "24", "--epochs", "1", "--genes", "20", "--config", "small"])
        .arg("--data")
        .arg(her2st())
        .arg("--out")
        .arg(&out2)
        .arg("--resume")
        .arg(ck.join("spot-small-epoch1.bpk"))
        .arg("--checkpoint-dir")
        .arg(&ck));
    assert!(log.contains("resumed weights") && log.contains("resumed Adam state") && out2.is_file(), "{log}");

    // the trained model's card drives `infer slide` (preprocessing and patch side) on a real section
    let text = infer_c2(&out, &dir.path().join("c2.csv"), &[]);
    assert_eq!(text.lines().next().unwrap().split(',').count(), 3 + 20);
}

/// `infer slide` with `model` on every HER2ST C2 spot, writing `csv`; its text (a header and one row per spot).
fn infer_c2(model: &Path, csv: &Path, args: &[&str]) -> String {
    let c2 = her2st().join("C2");
    let log = ok(Command::new(bin("infer"))
        .arg("slide")
        .args(args)
        .arg("--model")
        .arg(model)
        .arg("--image")
        .arg(c2.join("5714_HE_BT_C2.jpg"))
        .arg("--spots")
        .arg(c2.join("C2_selection.tsv"))
        .arg("--out")
        .arg(csv));
    eprintln!("{log}");
    let text = std::fs::read_to_string(csv).unwrap();
    assert_eq!(text.lines().count(), 188, "one row per C2 spot plus the header");
    text
}

#[test]
fn spot_train_bad_inputs_fail_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spot.onnx");
    let run = |extra: &[&str]| {
        fails(
            Command::new(bin("train"))
                .args(["spot", "--max-spots", "8", "--epochs", "1", "--genes", "5"])
                .arg("--data")
                .arg(her2st())
                .arg("--out")
                .arg(&out)
                .args(extra),
        )
    };
    let e = run(&["--train", "Z9", "--eval", "C2"]);
    assert!(e.contains("Z9"), "{e}");
    let e = run(&["--train", "B4", "--eval", "B4"]);
    assert!(e.contains("also a training section"), "{e}");
    let e = run(&["--train", "B4", "--eval", "C2", "--config", "huge"]);
    assert!(e.contains("huge"), "{e}");
    let e = run(&["--train", "B4", "--eval", "C2", "--resume", "/nonexistent/ck.bpk"]);
    assert!(e.contains("no such file"), "{e}");
    let e = run(&["--train", "B4", "--eval", "C2", "--val", "C2"]);
    assert!(e.contains("validation section C2"), "{e}");
    let junk = dir.path().join("junk.pt");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    let e = run(&["--train", "B4", "--eval", "C2", "--init", junk.to_str().unwrap()]);
    assert!(e.contains("--init") && e.contains("junk.pt"), "{e}");
    let e = run(&["--train", "B4", "--eval", "C2", "--init-remap", "no-equals-sign"]);
    assert!(e.contains("init-remap"), "{e}");
    assert!(!out.exists(), "output written despite the error");
}

/// `--ensemble 2 --tta`: two seeds and the 8 dihedral views exported as one model that matches
/// burn on both runtimes; the validation section picks each member's epoch; `--init` seeds a new
/// run from one member of that file.
#[test]
fn spot_train_ensemble_tta_validation_and_init() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ens.onnx");
    let base = [
        "spot",
        "--train",
        "C4",
        "--val",
        "C5",
        "--eval",
        "C2",
        "--max-spots",
        "12",
        "--epochs",
        "2",
        "--genes",
        "10",
        "--config",
        "small",
    ];
    let log =
        ok(Command::new(bin("train")).args(base).args(["--ensemble", "2", "--tta"]).arg("--data").arg(her2st()).arg("--out").arg(&out));
    assert!(log.contains("mean of 2 member(s) × 8 dihedral views"), "{log}");
    assert!(log.contains("validation C5 median r"), "{log}");
    let card = onnx_format::read_card(&out).unwrap();
    assert_eq!(card.architecture["ensemble_members"], 2);
    assert!(card.architecture["test_time_augmentation"].as_str().unwrap().contains("8 dihedral"));
    assert!(card.metrics["parity_tract_max_abs_diff"] <= 1e-4 && card.metrics["parity_ort_max_abs_diff"] <= 1e-4);
    assert_eq!(card.training["val_section"]["section"], "C5");
    let members = card.training["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    for m in members {
        assert_eq!(m["val_per_epoch"].as_array().unwrap().len(), 2);
        let e = m["exported_epoch"].as_u64().unwrap();
        assert!((1..=2).contains(&e));
    }
    // seed a new run from member 0 of the ensemble file
    let out2 = dir.path().join("init.onnx");
    let log = ok(Command::new(bin("train"))
        .args(base)
        .args(["--init-remap", r"^m0\.=", "--init-remap", r"^m1\.=unused.m1."])
        .arg("--init")
        .arg(&out)
        .arg("--data")
        .arg(her2st())
        .arg("--out")
        .arg(&out2));
    assert!(log.contains("init: loaded"), "{log}");
    assert!(onnx_format::read_card(&out2).unwrap().training["init"]["file"].as_str().unwrap().ends_with("ens.onnx"));
}

/// The GPU path: burn's wgpu backend trains the large config and the export matches it. Runs on
/// any Vulkan device; scripts/test.sh builds with `--features train/wgpu,e2e/wgpu` and setup.sh
/// installs Mesa's lavapipe (Vulkan on the CPU), so it runs without a GPU too.
#[cfg(feature = "wgpu")]
#[test]
fn spot_train_large_on_wgpu() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("large.onnx");
    let log = ok(Command::new(bin("train"))
        .args([
            "spot",
            "--train",
            "B4",
            "--eval",
            "C2",
            "--max-spots",
            "8",
            "--epochs",
            "1",
            "--genes",
            "10",
            "--batch-size",
            "4",
            "--config",
            "large",
            "--device",
            "gpu",
        ])
        .arg("--data")
        .arg(her2st())
        .arg("--out")
        .arg(&out)
        .env("XDG_RUNTIME_DIR", dir.path()));
    eprintln!("{log}");
    assert!(log.contains("config large, gpu") && log.contains("parity on 8 held-out patches"), "{log}");
    let card = onnx_format::read_card(&out).unwrap();
    assert_eq!(card.training["device"], "gpu");
    assert_eq!(card.training["config"], "large");
    assert!(card.metrics["parity_tract_max_abs_diff"] <= 1e-4 && card.metrics["parity_ort_max_abs_diff"] <= 1e-4);
}

/// `train spot-cv` on a few spots: the report has every protocol row and predictor, the JSON holds
/// per-gene r for each fold, and two child processes give the same numbers as one process.
#[test]
fn spot_cv_protocols_report_and_determinism() {
    let dir = tempfile::tempdir().unwrap();
    let run = |jobs: &str, out: &str| {
        ok(Command::new(bin("train"))
            .args([
                "spot-cv",
                "--config",
                "small",
                "--sections",
                "B4,C2,C4",
                "--loso-scope",
                "all",
                "--folds",
                "B4,C2",
                "--seeds",
                "0,1",
                "--epochs",
                "2",
                "--max-spots",
                "16",
                "--genes",
                "top:30",
            ])
            .args(["--jobs", jobs])
            .arg("--data")
            .arg(her2st())
            .arg("--out-dir")
            .arg(dir.path().join(out)))
    };
    let log = run("1", "one");
    for want in [
        "leave-one-section-out, test within patient C",
        "leave-one-patient-out C → B4",
        "leave-one-section-out, all sections with a fold",
        "leave-one-patient-out B4 → C",
        "| model + TTA |",
        "| model + neighbour mean |",
        "| ensemble + TTA |",
        "| ridge (colour/texture) |",
        "| ridge + neighbour mean |",
        "| training mean | 0.000",
        "Best-predicted genes",
    ] {
        assert!(log.contains(want), "missing `{want}` in:\n{log}");
    }
    let read = |out: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.path().join(out).join("results.json")).unwrap()).unwrap()
    };
    let one = read("one");
    let folds = one["folds"].as_array().unwrap();
    // LOSO B4 and C2, and B4 → C (tested on both C sections)
    assert_eq!(folds.len(), 3);
    for f in folds {
        let test = f["test"].as_array().unwrap();
        assert!(!f["train"].as_array().unwrap().iter().any(|s| test.contains(s)), "{f}");
        assert_ne!(f["validation"], test[0]);
        let model = f["scores"]["model"].as_array().unwrap();
        assert_eq!(model.len(), test.len());
        assert_eq!(model[0].as_array().unwrap().len(), 2, "one score per seed");
        assert_eq!(model[0][0]["r"].as_array().unwrap().len(), f["genes"].as_array().unwrap().len());
    }
    assert_eq!(folds[2]["protocol"], "lopo");
    assert_eq!(folds[2]["test"].as_array().unwrap().len(), 2);
    run("2", "two");
    let scores = |v: &serde_json::Value| v["folds"].as_array().unwrap().iter().map(|f| f["scores"].clone()).collect::<Vec<_>>();
    assert_eq!(scores(&one), scores(&read("two")), "child processes changed the results");
    // a bad gene set fails before any work, with no report
    let err = fails(Command::new(bin("train")).args(["spot-cv", "--genes", "hvg:10"]).arg("--out-dir").arg(dir.path().join("bad")));
    assert!(err.contains("hvg:N:FRAC"), "{err}");
    assert!(!dir.path().join("bad").exists());
}

/// `--loss mse-corr --targets raw`: the run says what it optimized, the card records it, the model
/// differs from the default recipe's, and the export still matches burn.
#[test]
fn spot_train_loss_and_target_scale() {
    let dir = tempfile::tempdir().unwrap();
    let train = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let log = ok(Command::new(bin("train"))
            .args(["spot", "--train", "B4", "--eval", "C2", "--max-spots", "24", "--epochs", "1", "--genes", "20", "--config", "cnn"])
            .args(extra)
            .arg("--data")
            .arg(her2st())
            .arg("--out")
            .arg(&out));
        (log, onnx_format::read_card(&out).unwrap())
    };
    let (log, card) = train("corr.onnx", &["--loss", "mse-corr", "--targets", "raw"]);
    assert!(log.contains("MSE + (1 − mean per-gene Pearson r over the batch) on raw targets"), "{log}");
    let loss = card.training["loss"].as_str().unwrap();
    assert!(loss.contains("Pearson") && loss.contains("raw log1p"), "{loss}");
    assert!(card.metrics["parity_ort_max_abs_diff"] <= 1e-4 && card.metrics["parity_tract_max_abs_diff"] <= 1e-4);
    let (_, plain) = train("plain.onnx", &[]);
    assert!(plain.training["loss"].as_str().unwrap().starts_with("MSE on per-gene standardized"));
    assert_ne!(card.metrics["model_pearson_median"], plain.metrics["model_pearson_median"]);
    let err = fails(Command::new(bin("train")).args(["spot", "--loss", "pearson"]).arg("--out").arg(dir.path().join("bad.onnx")));
    assert!(err.contains("mse-corr"), "{err}");
    assert!(!dir.path().join("bad.onnx").exists());
}

/// `train spot-cv --baselines-only` on 24 spots of B4, C2 and C4 (every section a test fold) with
/// `args`, into `dir/name`: the log and results.json.
fn spot_cv_baselines(dir: &Path, name: &str, args: &[&str]) -> (String, serde_json::Value) {
    let log = ok(Command::new(bin("train"))
        .args(["spot-cv", "--sections", "B4,C2,C4", "--loso-scope", "all", "--baselines-only", "--max-spots", "24", "--genes", "top:30"])
        .args(args)
        .arg("--data")
        .arg(her2st())
        .arg("--out-dir")
        .arg(dir.join(name)));
    let json = serde_json::from_slice(&std::fs::read(dir.join(name).join("results.json")).unwrap()).unwrap();
    (log, json)
}

/// The ridge baseline's scores of each fold in a spot-cv results.json.
fn ridge_scores(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v["folds"].as_array().unwrap().iter().map(|f| f["scores"]["ridge (colour/texture)"].clone()).collect()
}

/// `--stain reinhard` and `--stain macenko`: every section's L*a*b* statistics (or stain vectors)
/// are logged, the report and JSON say the stain was normalized, and the baselines change (they
/// see the normalized patches); an unknown method fails before any work.
#[test]
fn spot_cv_reinhard_and_macenko_stain_normalization() {
    let dir = tempfile::tempdir().unwrap();
    let run = |stain: &str| spot_cv_baselines(dir.path(), stain, &["--stain", stain]);
    let (log, json) = run("reinhard");
    for s in ["B4", "C2", "C4"] {
        assert!(log.contains(&format!("section {s}: L*a*b* mean")), "no statistics of {s} in:\n{log}");
    }
    assert!(log.contains("stain normalization reinhard"), "{log}");
    assert_eq!(json["stain"], "reinhard");
    let (_, plain) = run("none");
    assert_eq!(plain["stain"], "none");
    assert!(ridge_scores(&json).iter().all(|r| r.is_array()), "no ridge scores: {json}");
    assert_ne!(ridge_scores(&json), ridge_scores(&plain), "normalization did not reach the baselines");
    let (log, macenko) = run("macenko");
    for s in ["B4", "C2", "C4"] {
        let line = log.lines().find(|l| l.starts_with(&format!("section {s}: stain vectors H "))).unwrap_or_else(|| panic!("{log}"));
        // haematoxylin absorbs more red than eosin; eosin most in green
        let v: Vec<f32> = line.split([' ', ',', ';']).filter_map(|w| w.parse().ok()).collect();
        assert!(v.len() >= 8 && v[0] > v[3] && v[4] >= v[3] && v[4] >= v[5], "{line}");
    }
    assert_eq!(macenko["stain"], "macenko");
    assert_ne!(ridge_scores(&macenko), ridge_scores(&plain), "Macenko did not reach the baselines");
    assert_ne!(ridge_scores(&macenko), ridge_scores(&json));
    let err = fails(Command::new(bin("train")).args(["spot-cv", "--stain", "vahadane"]).arg("--out-dir").arg(dir.path().join("bad")));
    assert!(err.contains("--stain `vahadane`"), "{err}");
    assert!(!dir.path().join("bad").exists());
}

/// `--side-factor 2`: each patch spans twice the spot spacing (the spot and its ring of array
/// neighbours, resized to the same input), logged and recorded; the baselines see the wider patches.
#[test]
fn spot_cv_wider_field_of_view() {
    let dir = tempfile::tempdir().unwrap();
    let run = |factor: &str| {
        let (log, json) = spot_cv_baselines(dir.path(), factor, &["--side-factor", factor]);
        let side: f64 = log
            .lines()
            .find_map(|l| l.strip_prefix("section B4: 24 of 283 spots, patch side ")?.strip_suffix(" px")?.parse().ok())
            .unwrap_or_else(|| panic!("no patch side for B4 in:\n{log}"));
        (side, json)
    };
    let (one, plain) = run("1");
    let (two, wide) = run("2");
    assert!((two / one - 2.0).abs() < 0.01, "patch side {one} px, then {two} px");
    assert_eq!(wide["side_factor"], 2.0);
    assert_eq!(plain["side_factor"], 1.0);
    assert_ne!(ridge_scores(&wide), ridge_scores(&plain), "the wider patches did not reach the baselines");
    let err = fails(
        Command::new(bin("train"))
            .args(["spot-cv", "--side-factor", "0"])
            .arg("--data")
            .arg(her2st())
            .arg("--out-dir")
            .arg(dir.path().join("bad")),
    );
    assert!(err.contains("patch side factor 0 must be > 0"), "{err}");
    assert!(!dir.path().join("bad").exists());
}

/// The two-scale model (`--config cnn-context`): a patch of twice the spot spacing at 448 px, the
/// spot read at full resolution from its centre and the whole patch pooled through a context
/// branch. It is the default `--config`. Its card carries the wider patch, and `infer slide` runs it
/// on both runtimes.
#[test]
fn spot_train_two_scale_model_runs_in_infer_slide() {
    let dir = tempfile::tempdir().unwrap();
    let train = |config: &[&str], name: &str, label: &str| {
        let out = dir.path().join(format!("{name}.onnx"));
        let log = ok(Command::new(bin("train"))
            .args(["spot", "--train", "B4", "--eval", "C2", "--max-spots", "24", "--epochs", "1", "--genes", "20"])
            .args(config)
            .arg("--data")
            .arg(her2st())
            .arg("--out")
            .arg(&out));
        assert!(log.contains("parity on 24 held-out patches") && log.contains(label), "{log}");
        let card = onnx_format::read_card(&out).unwrap();
        (out, card)
    };
    let (plain_model, plain) = train(&["--config", "cnn"], "cnn", "model (plain CNN)");
    // no --config: the default is the two-scale model
    let (model, card) = train(&[], "default", "model (two-scale CNN)");
    assert_eq!(card.training["config"], "cnn-context");
    let (p, c): (&onnx_format::card::SpotImage, &onnx_format::card::SpotImage) = (plain.require().unwrap(), card.require().unwrap());
    assert_eq!((p.image.size, c.image.size), (224, 448));
    let ratio = c.patch_side_px["C2"] / p.patch_side_px["C2"];
    assert!((ratio - 2.0).abs() < 1e-3, "patch side ratio {ratio}");
    assert_eq!(card.architecture["centre"], 224);
    assert_eq!(card.architecture["context_pool"], 4);
    assert!(c.patch_side.contains("context branch"), "{}", c.patch_side);

    let mut rows: Vec<Vec<Vec<f32>>> = Vec::new();
    for backend in ["tract", "ort"] {
        let text = infer_c2(&model, &dir.path().join(format!("{backend}.csv")), &["--backend", backend, "--batch", "4"]);
        rows.push(text.lines().skip(1).map(|l| l.split(',').skip(1).map(|v| v.parse::<f32>().unwrap()).collect()).collect());
    }
    for (a, b) in rows[0].iter().zip(&rows[1]) {
        assert!(a.iter().zip(b).all(|(x, y)| x.is_finite() && (x - y).abs() < 1e-3), "{a:?} vs {b:?}");
    }
    // The grid steps by the spot spacing, not the (2×) patch side: the same spots as the plain
    // CNN's grid, with patches twice as wide; the GeoJSON squares are the grid cells.
    let grid = |m: &Path, name: &str| {
        let (csv, geo) = (dir.path().join(format!("{name}.grid.csv")), dir.path().join(format!("{name}.geojson")));
        let out = ok(Command::new(bin("infer"))
            .args(["slide", "--grid", "--backend", "ort", "--summary-json", "--model"])
            .arg(m)
            .arg("--image")
            .arg(her2st().join("C2/5714_HE_BT_C2.jpg"))
            .arg("--out")
            .arg(&csv)
            .arg("--out")
            .arg(&geo));
        let summary: serde_json::Value = serde_json::from_str(out.lines().rev().find(|l| l.starts_with('{')).unwrap()).unwrap();
        let ids: Vec<String> =
            std::fs::read_to_string(&csv).unwrap().lines().skip(1).map(|l| l.split(',').next().unwrap().to_string()).collect();
        let geo: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&geo).unwrap()).unwrap();
        let ring = &geo["features"][0]["geometry"]["coordinates"][0];
        let width = ring[1][0].as_f64().unwrap() - ring[0][0].as_f64().unwrap();
        (summary, ids, width)
    };
    let (s1, ids1, w1) = grid(&plain_model, "plain");
    let (s2, ids2, w2) = grid(&model, "context");
    assert!(ids1.len() > 100 && ids1 == ids2, "{} vs {} grid spots", ids1.len(), ids2.len());
    let f = |s: &serde_json::Value, k: &str| s[k].as_f64().unwrap();
    assert!((f(&s2, "patch_side_px") / f(&s1, "patch_side_px") - 2.0).abs() < 1e-3, "{s1} {s2}");
    assert!(
        (f(&s2, "grid_step_px") - f(&s1, "grid_step_px")).abs() < 1e-3 && (f(&s1, "grid_step_px") - f(&s1, "patch_side_px")).abs() < 1e-3
    );
    assert!((w1 - w2).abs() < 0.05 && (w1 - f(&s1, "grid_step_px")).abs() < 0.05, "GeoJSON squares {w1} and {w2}");
}

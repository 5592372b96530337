//! The cohort workflow (workflows/slides: Snakemake, one `infer slide` job per slide, a cohort
//! step): on the local executor over nine slides built from the HER2ST sections — whole JPEGs
//! with spot files and on a grid, a tiled pyramid TIFF, an Aperio SVS with JPEG tiles, a PNG, a
//! truncated JPEG and one slide whose first attempt fails with a runtime error — and on a
//! single-node Slurm cluster started by workflows/slides/slurm_local.sh (root, slurm-wlm + munge).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const GENES: [&str; 5] = ["G1", "G2", "G3", "G4", "G5"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The random-init small spot model of the slide tests, with 200 µm patches in the card (a slide
/// that records its resolution gets patch side 200 / mpp; the others the card's 290 px).
fn write_model(dir: &Path) -> PathBuf {
    let (m, mut card) = spot_model(&GENES, 3);
    if let onnx_format::card::Preprocessing::SpotImage(s) = &mut card.preprocessing {
        s.patch_side_um = Some(200.0);
    }
    let path = dir.join("spot.onnx");
    write_spot_model(&path, &m, &card);
    path
}

/// `tests/py/make_pyramid.py SRC OUT --crop ...` (tifffile), with `extra` arguments.
fn make_pyramid(src: &Path, out: &Path, crop: [&str; 4], extra: &[&str]) {
    ok(Command::new(python()).arg(repo().join("tests/py/make_pyramid.py")).arg(src).arg(out).arg("--crop").args(crop).args(extra));
}

fn snakemake(dir: &Path, profile: &str, config: &Path) -> Command {
    let mut c = Command::new(python());
    c.args(["-m", "snakemake", "-s"])
        .arg(repo().join("workflows/slides/Snakefile"))
        .arg("--workflow-profile")
        .arg(repo().join("workflows/slides/profiles").join(profile))
        .arg("--directory")
        .arg(dir)
        .arg("--configfile")
        .arg(config);
    c
}

fn write_config(dir: &Path, model: &Path, manifest: &Path, infer: &Path) -> PathBuf {
    let cfg = serde_json::json!({
        "model": model, "manifest": manifest, "results": dir.join("results"), "infer": infer,
        "threads": 1, "batch": 16,
    });
    let p = dir.join("config.json");
    std::fs::write(&p, cfg.to_string()).unwrap();
    p
}

fn tsv(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| l.split('\t').map(String::from).collect()).collect()
}

/// The CSV of a slide in either layout of the workflow (`--results-dir` or `--out`).
fn slide_csv(results: &Path, sample: &str) -> PathBuf {
    let d = results.join("slides").join(sample);
    let own = d.join(format!("{sample}.csv"));
    if own.exists() {
        return own;
    }
    let dir = d.join("model-outputs-csv");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    assert_eq!(found.len(), 1, "{}", dir.display());
    found.pop().unwrap()
}

/// Slides of the cohort: (sample, slide, spot file).
struct Cohort {
    rows: Vec<(String, PathBuf, Option<PathBuf>)>,
}

impl Cohort {
    fn manifest(&self, path: &Path) {
        let mut s = String::from("slide\tsample\tspots\n");
        for (id, slide, spots) in &self.rows {
            s += &format!("{}\t{id}\t{}\n", slide.display(), spots.as_ref().map(|p| p.display().to_string()).unwrap_or_default());
        }
        std::fs::write(path, s).unwrap();
    }
}

/// Small slides made from crops of C2 and C4: a Deflate tiled pyramid TIFF, an Aperio SVS with
/// JPEG tiles (0.5 µm/px recorded: 400 px patches from the card's 200 µm), a PNG.
fn crops(dir: &Path) -> Vec<(String, PathBuf, Option<PathBuf>)> {
    let (tif, png, svs_tif, svs) = (dir.join("pyramid.tif"), dir.join("crop.png"), dir.join("aperio.tif"), dir.join("aperio.svs"));
    make_pyramid(&data("her2st/C2/5714_HE_BT_C2.jpg"), &tif, ["4650", "3250", "3482", "3192"], &["--png", png.to_str().unwrap()]);
    make_pyramid(
        &data("her2st/C4/5714_HE_BT_D2.jpg"),
        &svs_tif,
        ["3000", "3000", "4000", "3500"],
        &["--compression", "jpeg", "--aperio", "--mpp", "0.5"],
    );
    std::fs::rename(&svs_tif, &svs).unwrap();
    vec![("C2-pyramid".into(), tif, None), ("C2-crop-png".into(), png, None), ("C4-svs".into(), svs, None)]
}

#[test]
fn cohort_local_executor() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = write_model(d);
    let her2st = |sec: &str, img: &str| data(&format!("her2st/{sec}/{img}"));
    let mut rows: Vec<(String, PathBuf, Option<PathBuf>)> = vec![
        ("B4".into(), her2st("B4", "BT10737_D2_HE.jpg"), Some(her2st("B4", "B4_selection.tsv"))),
        ("C2".into(), her2st("C2", "5714_HE_BT_C2.jpg"), Some(her2st("C2", "C2_selection.tsv"))),
        ("C4-grid".into(), her2st("C4", "5714_HE_BT_D2.jpg"), None),
        ("C5-grid".into(), her2st("C5", "5714_HE_BT_E1.jpg"), None),
        ("C6-flaky".into(), her2st("C6", "5714_HE_BT_E2.jpg"), None),
    ];
    rows.extend(crops(d));
    // A truncated JPEG: exit code 2, recorded in failed.tsv, not retried.
    let jpg = std::fs::read(her2st("C5", "5714_HE_BT_E1.jpg")).unwrap();
    let cut = d.join("cut.jpg");
    std::fs::write(&cut, &jpg[..jpg.len() / 2]).unwrap();
    rows.push(("C5-truncated".into(), cut.clone(), None));
    let cohort = Cohort { rows };
    let manifest = d.join("manifest.tsv");
    cohort.manifest(&manifest);

    // `infer` behind a wrapper whose first run on C6 fails with exit code 3 (a runtime error):
    // the job is retried and the second attempt succeeds.
    let flaky = d.join("flaky-infer.sh");
    std::fs::write(
        &flaky,
        format!(
            "#!/bin/sh\ncase \"$*\" in *5714_HE_BT_E2.jpg*) if [ ! -e '{m}' ]; then touch '{m}'; echo 'error: runtime tract: simulated' >&2; exit 3; fi;; esac\nexec '{infer}' \"$@\"\n",
            m = d.join("flaky.marker").display(),
            infer = bin("infer").display()
        ),
    )
    .unwrap();
    ok(Command::new("chmod").arg("+x").arg(&flaky));
    let config = write_config(d, &model, &manifest, &flaky);
    let results = d.join("results");

    let t0 = std::time::Instant::now();
    let log = ok(snakemake(d, "local", &config).args(["--cores", "2"]));
    eprintln!("{log}\nfirst run: {:.1} s", t0.elapsed().as_secs_f64());

    // Every good slide is done; the truncated JPEG is in failed.tsv with exit code 2.
    let failed = tsv(&results.join("cohort/failed.tsv"));
    assert_eq!(failed[0], ["sample", "slide", "exit_code", "kind", "attempts", "error", "log"]);
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(failed[1][..3], ["C5-truncated".to_string(), cut.display().to_string(), "2".into()]);
    assert!(failed[1][3].contains("bad input") && failed[1][5].contains("truncated"), "{failed:?}");
    assert_eq!(failed[1][4], "1", "bad input is not retried");
    let slides = tsv(&results.join("cohort/slides.tsv"));
    let col = |name: &str| slides[0].iter().position(|c| c == name).unwrap_or_else(|| panic!("no column {name}"));
    assert_eq!(slides.len(), 1 + cohort.rows.len());
    for r in &slides[1..] {
        let want = if r[0] == "C5-truncated" { "failed" } else { "ok" };
        assert_eq!(r[col("status")], want, "{r:?}");
    }
    let row = |s: &str| slides.iter().find(|r| r[0] == s).unwrap();
    // the flaky slide: done on its second attempt, both attempts in its .attempts.log
    assert_eq!(row("C6-flaky")[col("attempt")], "2");
    let flaky_log = std::fs::read_to_string(results.join("logs/slides/C6-flaky.attempts.log")).unwrap();
    assert!(flaky_log.contains("attempt 1/3 exit 3 (runtime error)") && flaky_log.contains("attempt 2/3 exit 0 (ok)"), "{flaky_log}");
    // spot files give their spot count; the SVS's recorded 0.5 µm/px gives 400 px patches and mm²
    assert_eq!(row("C2")[col("n_spots")], "187");
    assert_eq!(row("C4-svs")[col("patch_side_px")], "400");
    assert_eq!(row("C4-svs")[col("grid_step_px")], "400", "a plain model's grid steps by its patch side");
    assert_eq!(row("C4-svs")[col("mpp")], "0.5");
    let mm2: f64 = row("C4-svs")[col("tissue_area_mm2")].parse().unwrap();
    let frac: f64 = row("C4-svs")[col("tissue_fraction")].parse().unwrap();
    assert!(mm2 > 0.1 && mm2 <= 2.0 * 1.75 + 1e-6 && frac > 0.0 && frac <= 1.0, "{mm2} mm², {frac}");

    // Predictions equal a direct `infer slide` per slide (the same CSV, byte for byte); the cohort
    // means are the means of those CSVs.
    let means = tsv(&results.join("cohort/expression_mean.tsv"));
    assert_eq!(means[0], ["sample", "G1", "G2", "G3", "G4", "G5"]);
    for (id, slide, spots) in cohort.rows.iter().filter(|r| r.0 != "C5-truncated") {
        let direct = d.join(format!("direct-{id}.csv"));
        let mut c = Command::new(bin("infer"));
        c.arg("slide").arg("--model").arg(&model).arg("--image").arg(slide).args(["--batch", "16"]).arg("--out").arg(&direct);
        match spots {
            Some(s) => c.arg("--spots").arg(s),
            None => c.arg("--grid"),
        };
        ok(&mut c);
        let (a, b) = (std::fs::read_to_string(&direct).unwrap(), std::fs::read_to_string(slide_csv(&results, id)).unwrap());
        assert!(a == b, "{id}: the workflow's CSV differs from a direct infer slide");
        let rows: Vec<Vec<f64>> = a.lines().skip(1).map(|l| l.split(',').skip(3).map(|v| v.parse().unwrap()).collect()).collect();
        let m = means.iter().find(|r| &r[0] == id).unwrap();
        for g in 0..GENES.len() {
            let mean = rows.iter().map(|r| r[g]).sum::<f64>() / rows.len() as f64;
            let got: f64 = m[1 + g].parse().unwrap();
            assert!((mean - got).abs() < 1e-4, "{id} {}: {mean} vs {got}", GENES[g]);
        }
        assert_eq!(row(id)[col("n_spots")], rows.len().to_string());
    }

    // The cohort h5ad: obs = the 8 slides that worked, var = the genes, quantile layers.
    let check = r#"
import sys, anndata, numpy as np
a = anndata.read_h5ad(sys.argv[1])
assert a.shape == (8, 5), a.shape
assert list(a.var_names) == ["G1", "G2", "G3", "G4", "G5"]
assert "C5-truncated" not in a.obs_names and "C6-flaky" in a.obs_names
for k in ["q10", "q50", "q90", "sd"]:
    assert a.layers[k].shape == (8, 5), k
assert (a.layers["q10"] <= a.layers["q50"] + 1e-6).all() and (a.layers["q50"] <= a.layers["q90"] + 1e-6).all()
assert (a.obs["n_spots"] > 0).all() and set(a.obs["status"]) == {"ok"}
assert abs(a.obs.loc["C4-svs", "patch_side_px"] - 400) < 1e-6 and a.obs.loc["C4-svs", "tissue_area_mm2"] > 0
assert list(a.uns["bioedge_cohort"]["failed_samples"]) == ["C5-truncated"]
print("cohort.h5ad ok", a.obs[["n_spots", "tissue_fraction", "qc_flags"]].to_string())
"#;
    eprintln!("{}", ok(Command::new(python()).arg("-c").arg(check).arg(results.join("cohort/cohort.h5ad"))));
    let png = std::fs::read(results.join("cohort/summary.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);

    // A second run does nothing (the bad slide is recorded, not retried).
    let log = ok(snakemake(d, "local", &config).args(["--cores", "2"]));
    assert!(log.contains("Nothing to be done"), "{log}");
}

/// Stops the test's Slurm cluster when dropped (also when the test fails).
struct Slurm {
    env: Vec<(&'static str, String)>,
}

impl Slurm {
    fn script(&self, what: &str) -> String {
        let mut c = Command::new("bash");
        c.arg(repo().join("workflows/slides/slurm_local.sh")).arg(what);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        ok(&mut c)
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        eprintln!("{}", self.script("stop"));
    }
}

#[test]
fn cohort_on_slurm() {
    for b in ["slurmctld", "slurmd", "munged", "sbatch"] {
        assert!(
            Command::new("sh").arg("-c").arg(format!("command -v {b}")).output().unwrap().status.success(),
            "{b} not found: run scripts/setup.sh (slurm-wlm, munge)"
        );
    }
    let uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    if uid.trim() != "0" {
        eprintln!("cohort_on_slurm: SKIPPED, slurmd must run as root (workflows/slides/slurm_local.sh)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = write_model(d);
    let cohort = Cohort { rows: crops(d) };
    let manifest = d.join("manifest.tsv");
    cohort.manifest(&manifest);
    let config = write_config(d, &model, &manifest, &bin("infer"));
    let results = d.join("results");

    // Its own directory and ports, so that a cluster started by hand keeps running. With slurmdbd
    // and MariaDB installed (not by setup.sh: the executor does not need them), accounting too.
    let state = d.join("slurm");
    let has = |b: &str| Command::new("sh").arg("-c").arg(format!("command -v {b}")).output().unwrap().status.success();
    let accounting = has("slurmdbd") && has("mariadbd");
    let slurm = Slurm {
        env: vec![
            ("BIOEDGE_SLURM_DIR", state.display().to_string()),
            ("BIOEDGE_SLURM_PORT", "6917".into()),
            ("BIOEDGE_SLURM_ACCOUNTING", if accounting { "slurmdbd" } else { "none" }.into()),
        ],
    };
    let t0 = std::time::Instant::now();
    eprintln!("{}", slurm.script("start"));
    let conf = state.join("slurm.conf");
    let t1 = std::time::Instant::now();
    let log = ok(snakemake(d, "slurm", &config).env("SLURM_CONF", &conf));
    eprintln!("{log}\nslurm start {:.1} s, workflow {:.1} s", (t1 - t0).as_secs_f64(), t1.elapsed().as_secs_f64());

    // Each slide ran as its own Slurm job, which squeue still lists (MinJobAge 1 h) as COMPLETED.
    let slides = tsv(&results.join("cohort/slides.tsv"));
    let col = |name: &str| slides[0].iter().position(|c| c == name).unwrap();
    assert_eq!(slides.len(), 4, "{slides:?}");
    let queue = ok(Command::new("squeue").env("SLURM_CONF", &conf).args(["-h", "-t", "all", "-o", "%i %T %C %m"]));
    eprintln!("squeue:\n{queue}");
    for r in &slides[1..] {
        assert_eq!(r[col("status")], "ok", "{r:?}");
        let job = &r[col("slurm_job_id")];
        assert!(!job.is_empty(), "{r:?}: not run by Slurm");
        assert!(queue.lines().any(|l| l.starts_with(&format!("{job} COMPLETED "))), "job {job} not COMPLETED in squeue:\n{queue}");
    }
    assert_eq!(tsv(&results.join("cohort/failed.tsv")).len(), 1);
    // and the job completion log (jobcomp/filetxt) has them with exit code 0
    let jobcomp = std::fs::read_to_string(state.join("jobcomp.log")).unwrap();
    for r in &slides[1..] {
        let job = &r[col("slurm_job_id")];
        assert!(
            jobcomp
                .lines()
                .any(|l| l.starts_with(&format!("JobId={job} ")) && l.contains("JobState=COMPLETED") && l.contains("ExitCode=0:0")),
            "{jobcomp}"
        );
    }
    // sacct: every job COMPLETED with slurmdbd; without it sacct says accounting is disabled
    let sacct = run(Command::new("sacct").env("SLURM_CONF", &conf).args(["-X", "-n", "-P", "-o", "JobID,State,ExitCode"]));
    let (out, err) = (String::from_utf8_lossy(&sacct.stdout), String::from_utf8_lossy(&sacct.stderr));
    eprintln!("sacct (accounting: {accounting}):\n{out}{err}");
    if accounting {
        for r in &slides[1..] {
            let job = &r[col("slurm_job_id")];
            assert!(out.lines().any(|l| l == format!("{job}|COMPLETED|0:0")), "job {job} not COMPLETED in sacct:\n{out}{err}");
        }
    } else {
        assert!(err.contains("accounting storage is disabled"), "{out}{err}");
    }
    drop(slurm);
}

#[test]
fn cohort_runtime_failure_is_retried_then_listed() {
    // A slide whose every attempt exits 3: tried 1 + retries times, the workflow fails (after the
    // other slide is done, --keep-going) and its onerror handler lists the slide in failed.tsv.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = write_model(d);
    for name in ["good.png", "bad.png"] {
        std::fs::copy(data("skimage_ihc/ihc.png"), d.join(name)).unwrap();
    }
    let manifest = d.join("manifest.tsv");
    std::fs::write(&manifest, "slide\tsample\ngood.png\tgood\nbad.png\tbad\n").unwrap();
    let wrapper = d.join("failing-infer.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \"$*\" in *bad.png*) echo 'error: runtime tract: simulated' >&2; exit 3;; esac\nexec '{}' \"$@\"\n",
            bin("infer").display()
        ),
    )
    .unwrap();
    ok(Command::new("chmod").arg("+x").arg(&wrapper));
    let config = write_config(d, &model, &manifest, &wrapper);
    let out = run(snakemake(d, "local", &config).args(["--cores", "2", "--config", "retries=1"]));
    let log = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{log}");
    let results = d.join("results");
    let failed = tsv(&results.join("cohort/failed.tsv"));
    assert_eq!(failed.len(), 2, "{failed:?}\n{log}");
    assert_eq!(
        failed[1][..5],
        ["bad".to_string(), d.join("bad.png").display().to_string(), "3".into(), "runtime error".into(), "2".into()]
    );
    assert_eq!(failed[1][5], "error: runtime tract: simulated");
    let attempts = std::fs::read_to_string(results.join("logs/slides/bad.attempts.log")).unwrap();
    assert!(attempts.contains("attempt 1/2 exit 3") && attempts.contains("attempt 2/2 exit 3"), "{attempts}");
    // the good slide finished; the cohort step waits for a rerun
    assert!(std::fs::read_to_string(results.join("slides/good/status.json")).unwrap().contains("\"ok\""));
    assert!(!results.join("cohort/cohort.h5ad").exists());
}

/// A run killed (SIGKILL to snakemake and its jobs) after its first slide: after
/// `snakemake --unlock`, the next run finishes the others and does not redo the finished slide.
#[test]
fn killed_run_resumes_without_redoing_finished_slides() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = write_model(d);
    let her2st = |sec: &str, img: &str| data(&format!("her2st/{sec}/{img}"));
    let cohort = Cohort {
        rows: vec![
            ("B4".into(), her2st("B4", "BT10737_D2_HE.jpg"), Some(her2st("B4", "B4_selection.tsv"))),
            ("C4-grid".into(), her2st("C4", "5714_HE_BT_D2.jpg"), None),
            ("C5-grid".into(), her2st("C5", "5714_HE_BT_E1.jpg"), None),
            ("C6-grid".into(), her2st("C6", "5714_HE_BT_E2.jpg"), None),
        ],
    };
    let manifest = d.join("manifest.tsv");
    cohort.manifest(&manifest);
    let config = write_config(d, &model, &manifest, &bin("infer"));
    let results = d.join("results");
    let finished = || -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(results.join("slides"))
            .map(|it| it.flatten().map(|e| e.path()).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .flat_map(|s| std::fs::read_dir(s).map(|it| it.flatten().map(|e| e.path()).collect::<Vec<_>>()).unwrap_or_default())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("run_metadata_")))
            .collect();
        v.sort();
        v
    };
    // one slide at a time, killed as soon as snakemake has recorded the first as done (a job
    // killed before that is incomplete and rightly redone)
    let log_path = d.join("first-run.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut child = snakemake(d, "local", &config)
        .args(["--cores", "1"])
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !std::fs::read_to_string(&log_path).unwrap_or_default().contains("1 of 6 steps") {
        assert!(t0.elapsed().as_secs() < 300, "no slide finished in 5 minutes");
        assert!(
            child.try_wait().unwrap().is_none(),
            "snakemake ended before it was killed:\n{}",
            std::fs::read_to_string(&log_path).unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // the whole process group: snakemake and the job it runs (`--` so the negative id is a group)
    ok(Command::new("kill").args(["-s", "KILL", "--", &format!("-{}", child.id())]));
    let _ = child.wait();
    let done = finished();
    assert!(!done.is_empty() && done.len() < 4, "{done:?}");
    let stamps: Vec<(PathBuf, std::time::SystemTime)> =
        done.iter().map(|p| (p.clone(), std::fs::metadata(p).unwrap().modified().unwrap())).collect();
    assert!(!results.join("cohort/slides.tsv").exists());
    // resume: unlock (snakemake's lock outlived the kill), run again
    ok(snakemake(d, "local", &config).arg("--unlock"));
    let log = ok(snakemake(d, "local", &config).args(["--cores", "2"]));
    assert_eq!(finished().len(), 4, "{log}");
    for (p, t) in &stamps {
        assert_eq!(std::fs::metadata(p).unwrap().modified().unwrap(), *t, "{} was redone:\n{log}", p.display());
    }
    let slides = tsv(&results.join("cohort/slides.tsv"));
    assert_eq!(slides.len(), 5, "{slides:?}");
    let status = slides[0].iter().position(|c| c == "status").unwrap();
    assert!(slides[1..].iter().all(|r| r[status] == "ok"), "{slides:?}");
}

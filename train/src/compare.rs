//! `train gene-compare`: GCN vs MLP at small training sizes over several seeds (the paper's figure).

use crate::gene::{DataArgs, FitArgs, fit_eval, load_task};
use anyhow::{Context, Result};
use clap::Args;
use models::metrics::mean_std;
use onnx_format::Family;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Training sizes, comma-separated.
    #[arg(long, default_value = "10,20,30")]
    pub sizes: String,
    /// Seeds per size (0..N).
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    /// Folder for results (JSON, CSV, SVG plot).
    #[arg(long, default_value = "out/gene-compare")]
    pub out_dir: PathBuf,
}

pub fn run(d: &DataArgs, f: &FitArgs, c: &CompareArgs) -> Result<()> {
    let task = load_task(d)?;
    let sizes: Vec<usize> =
        c.sizes.split(',').map(|s| s.trim().parse().with_context(|| format!("bad --sizes `{}`", c.sizes))).collect::<Result<_>>()?;
    let families = [Family::GeneGcn, Family::GeneMlp];
    let mut rows = Vec::new();
    let mut csv = String::from("family,train_size,seed,test_accuracy,test_roc_auc,best_epoch\n");
    let total = sizes.len() * c.seeds as usize * families.len();
    let mut done = 0;
    for &size in &sizes {
        for seed in 0..c.seeds {
            for fam in families {
                let mut f = f.clone();
                f.train_size = size;
                f.seed = seed;
                let t0 = std::time::Instant::now();
                let o = fit_eval(&task, d, &f, fam, false)?;
                done += 1;
                let (acc, auc) = (o.metrics["test_accuracy"], o.metrics["test_roc_auc"]);
                eprintln!("[{done}/{total}] {fam} n={size} seed={seed}: acc {acc:.3} auc {auc:.3} ({:.1} s)", t0.elapsed().as_secs_f64());
                writeln!(csv, "{fam},{size},{seed},{acc:.4},{auc:.4},{}", o.metrics["best_epoch"])?;
                rows.push((fam, size, acc, auc));
            }
        }
    }
    let mut summary = Vec::new();
    println!("| train samples | GCN ROC-AUC | MLP ROC-AUC | GCN accuracy | MLP accuracy |");
    println!("|---|---|---|---|---|");
    for &size in &sizes {
        let stat = |fam: Family, auc: bool| {
            let v: Vec<f64> = rows.iter().filter(|r| r.0 == fam && r.1 == size).map(|r| if auc { r.3 } else { r.2 }).collect();
            mean_std(&v)
        };
        let (ga, ma, gc, mc) =
            (stat(Family::GeneGcn, true), stat(Family::GeneMlp, true), stat(Family::GeneGcn, false), stat(Family::GeneMlp, false));
        println!(
            "| {size} | {:.3} ± {:.3} | {:.3} ± {:.3} | {:.3} ± {:.3} | {:.3} ± {:.3} |",
            ga.0, ga.1, ma.0, ma.1, gc.0, gc.1, mc.0, mc.1
        );
        summary.push(serde_json::json!({"train_size": size, "gcn_auc": ga, "mlp_auc": ma, "gcn_acc": gc, "mlp_acc": mc}));
    }
    std::fs::create_dir_all(&c.out_dir)?;
    let json =
        serde_json::json!({ "seeds": c.seeds, "valid_size": f.valid_size, "genes": d.genes, "summary": summary, "fit": format!("{f:?}") });
    let (json, svg) = (serde_json::to_string_pretty(&json)?, plot(&sizes, &summary));
    onnx_format::write_all_atomic(&[
        (&c.out_dir.join("results.csv"), csv.as_bytes()),
        (&c.out_dir.join("summary.json"), json.as_bytes()),
        (&c.out_dir.join("gcn_vs_mlp.svg"), svg.as_bytes()),
    ])?;
    eprintln!("wrote {}/{{results.csv,summary.json,gcn_vs_mlp.svg}}", c.out_dir.display());
    Ok(())
}

/// Mean test ROC-AUC ± std against training size, one line per model.
fn plot(sizes: &[usize], summary: &[serde_json::Value]) -> String {
    let (w, h, l, r, t, b) = (560.0, 360.0, 60.0, 20.0, 30.0, 50.0);
    let (xmin, xmax) = (*sizes.first().unwrap_or(&0) as f64, *sizes.last().unwrap_or(&1) as f64);
    let x = |v: f64| l + (v - xmin) / (xmax - xmin).max(1.0) * (w - l - r);
    let y = |v: f64| t + (1.0 - (v - 0.4) / 0.6) * (h - t - b);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    s += &format!("<text x=\"{}\" y=\"18\" text-anchor=\"middle\">Leukemia ALL/AML: test ROC-AUC vs training samples</text>\n", w / 2.0);
    for i in 0..=6 {
        let v = 0.4 + i as f64 * 0.1;
        let (x2, yy, tx, ty) = (w - r, y(v), l - 6.0, y(v) + 4.0);
        s += &format!(
            "<line x1=\"{l}\" x2=\"{x2}\" y1=\"{yy}\" y2=\"{yy}\" stroke=\"#ddd\"/><text x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\">{v:.1}</text>\n"
        );
    }
    for &n in sizes {
        s += &format!("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{n}</text>\n", x(n as f64), h - b + 18.0);
    }
    s += &format!("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">training samples</text>\n", (l + w - r) / 2.0, h - 10.0);
    for (key, color, label, dy) in [("gcn_auc", "#c0392b", "gene-graph GCN", 0.0), ("mlp_auc", "#2c6fbb", "MLP", 16.0)] {
        let pts: Vec<(f64, f64, f64)> = sizes
            .iter()
            .zip(summary)
            .map(|(&n, v)| (n as f64, v[key][0].as_f64().unwrap_or(0.0), v[key][1].as_f64().unwrap_or(0.0)))
            .collect();
        let path: Vec<String> = pts.iter().map(|(n, m, _)| format!("{:.1},{:.1}", x(*n), y(*m))).collect();
        s += &format!("<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n", path.join(" "));
        for (n, m, sd) in &pts {
            s += &format!(
                "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\" stroke=\"{color}\"/><circle cx=\"{0:.1}\" cy=\"{3:.1}\" r=\"3\" fill=\"{color}\"/>\n",
                x(*n),
                y((m - sd).max(0.4)),
                y((m + sd).min(1.0)),
                y(*m)
            );
        }
        s += &format!("<text x=\"{}\" y=\"{}\" fill=\"{color}\">{label}</text>\n", w - r - 120.0, h - b - 30.0 + dy);
    }
    s + "</svg>\n"
}

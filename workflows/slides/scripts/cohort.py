"""The cohort step of workflows/slides/Snakefile.

    cohort.py aggregate --results R --samples A,B,...   # every table, the cohort h5ad, the plot, failed.tsv
    cohort.py failed --results R --samples A,B,...      # failed.tsv only (the workflow's onerror handler)

Per slide it reads R/slides/<sample>/status.json (written by run_slide.py, with infer's
--summary-json line: image size, patch side), the slide's h5ad (X, obs tissue_fraction, var
names; or its CSV when there is no h5ad) in either layout (<sample>.h5ad, or
model-outputs-h5ad/<stem>.h5ad of --results-dir), and R/logs/slides/<sample>.log (the same
numbers from older builds without --summary-json, µm/px when infer printed it).

Columns of cohort/slides.tsv (and obs of cohort/cohort.h5ad):
  sample, slide, status (ok / failed), n_spots, n_genes, width, height (level-0 px), patch_side_px,
  grid_step_px (the spot spacing: the patch side, or less for a model that reads the neighbours),
  mpp (µm/px when the slide records it and the card has µm), tissue_area_px (Σ over spots of the
  spot's tissue fraction × its grid cell's area), tissue_area_mm2 (when mpp is known), tissue_fraction
  (tissue_area_px / (width × height): the share of the slide covered by predicted tissue spots),
  mean_spot_tissue (mean tissue fraction of the spots), qc_flags, wall_s (infer's wall time),
  attempt, host, slurm_job_id.
QC flags (comma-separated, "ok" when none): few_spots (n_spots < --min-spots), little_tissue
(tissue_fraction < --min-tissue-fraction), partial_spots (median spot tissue fraction < 0.5),
nonfinite (NaN/inf predictions), outlier (median over genes of the robust z score — (mean −
cohort median) / (1.4826 × MAD) — above --outlier-z; with ≥ 5 slides).
"""

import argparse
import csv
import glob
import json
import math
import os
import re
import sys

EXIT_LINE = re.compile(r"^bioedge-cohort: attempt (\d+)/(\d+) exit (-?\d+) \((.*)\) after")
SUMMARY_LINE = re.compile(r"(\d+) spots × (\d+) genes \((\d+)×(\d+) image, patch ([0-9.]+) px(?:, grid step ([0-9.]+) px)?\)")
MPP_LINE = re.compile(r"at ([0-9.]+) µm/px")
FAILED_COLUMNS = ["sample", "slide", "exit_code", "kind", "attempts", "error", "log"]


def read_log(path):
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return None


def last_error(lines):
    body = [l for l in lines if l.strip() and not l.startswith(("bioedge-cohort:", "$ "))]
    errs = [l for l in body if l.lower().startswith(("error", "internal error"))]
    return (errs or body or [""])[-1]


def read_status(results, sample):
    p = os.path.join(results, "slides", sample, "status.json")
    try:
        with open(p) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def failure_of(results, sample, status, retries):
    """A failed.tsv row for `sample`, or None when it did not fail (or never ran)."""
    log = os.path.join(results, "logs", "slides", f"{sample}.log")
    if status is not None:
        if status.get("status") == "ok":
            return None
        return {
            "sample": sample,
            "slide": status.get("slide", ""),
            "exit_code": status.get("exit_code", ""),
            "kind": status.get("kind", "") + " (not retried)",
            "attempts": status.get("attempt", 1),
            "error": status.get("error", ""),
            "log": log,
        }
    lines = read_log(log)
    if not lines:  # never started: sbatch refused it, or the workflow stopped before it
        kind = "not run (empty log: submission failed or the workflow stopped first; see Snakemake's log)"
        return {"sample": sample, "slide": "", "exit_code": "", "kind": kind, "attempts": 0, "error": "", "log": ""}
    exits = [m for m in map(EXIT_LINE.match, lines) if m]
    slide = next((l.split(" --image ", 1)[1].split(" --", 1)[0] for l in lines if l.startswith("$ ") and " --image " in l), "")
    if exits:
        m = exits[-1]
        attempt, code, kind = int(m.group(1)), int(m.group(3)), m.group(4)
        if code == 0:
            return None
        if attempt <= retries:
            kind += f" (attempt {attempt} of {retries + 1}; the rest did not run)"
    else:  # the wrapper itself was killed: Slurm's time or memory limit, or a lost node
        hist = read_log(log[: -len(".log")] + ".attempts.log") or []
        attempt = max(1, sum(1 for l in hist + lines if l.startswith("bioedge-cohort: sample")))
        code, kind = "", "killed (no exit line: time or memory limit? see the Slurm log)"
    return {"sample": sample, "slide": slide, "exit_code": code, "kind": kind, "attempts": attempt, "error": last_error(lines), "log": log}


def write_tsv(path, columns, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow([clean(r.get(c, "")) for c in columns])
    os.replace(tmp, path)


def clean(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return str(v if v is not None else "").replace("\t", " ").replace("\n", " ")


def write_failed(results, samples, retries):
    rows = [r for s in samples if (r := failure_of(results, s, read_status(results, s), retries))]
    os.makedirs(os.path.join(results, "cohort"), exist_ok=True)
    write_tsv(os.path.join(results, "cohort", "failed.tsv"), FAILED_COLUMNS, rows)
    return rows


def first(*patterns):
    """The first existing file matching one of `patterns` (globs), or None."""
    for p in patterns:
        hits = sorted(glob.glob(p))
        if hits:
            return hits[0]
    return None


def find_key(v, key):
    """The value of the first `key` anywhere in a JSON document."""
    if isinstance(v, dict):
        if key in v:
            return v[key]
        v = list(v.values())
    if isinstance(v, list):
        for x in v:
            r = find_key(x, key)
            if r is not None:
                return r
    return None


def load_slide(results, sample, status):
    """(info dict, genes, X spots × genes, per-spot tissue fraction or None)."""
    import numpy as np

    d = os.path.join(results, "slides", sample)
    info = {k: status.get(k) for k in ("slide", "wall_s", "attempt", "host", "slurm_job_id")}
    lines = read_log(os.path.join(results, "logs", "slides", f"{sample}.log")) or []
    for l in lines:
        if m := SUMMARY_LINE.search(l):
            info.update(width=int(m.group(3)), height=int(m.group(4)), patch_side_px=float(m.group(5)))
            info["grid_step_px"] = float(m.group(6) or m.group(5))
        if "µm/px" in l and (m := MPP_LINE.search(l)):
            info["mpp"] = float(m.group(1))
    s = status.get("summary") or {}  # infer slide --summary-json, in newer builds
    for ours, theirs in (("width", "width"), ("height", "height"), ("patch_side_px", "patch_side_px"), ("grid_step_px", "grid_step_px")):
        v = s.get(theirs)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            info[ours] = v
    if info.get("mpp") is None:
        for meta in glob.glob(os.path.join(d, "run_metadata_*.json")):  # --results-dir
            with open(meta) as f:
                v = find_key(json.load(f), "mpp")
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                info["mpp"] = float(v)
    h5ad = first(os.path.join(d, f"{sample}.h5ad"), os.path.join(d, "model-outputs-h5ad", "*.h5ad"))
    csv_path = first(os.path.join(d, f"{sample}.csv"), os.path.join(d, "model-outputs-csv", "*.csv"))
    tissue = None
    if h5ad:
        import h5py

        with h5py.File(h5ad, "r") as f:
            x = f["X"][()]
            var = f["var"]
            genes = [g.decode() if isinstance(g, bytes) else str(g) for g in var[var.attrs["_index"]][()]]
            if "tissue_fraction" in f["obs"]:
                tissue = f["obs"]["tissue_fraction"][()].astype(float)
    else:
        import pandas as pd

        if not csv_path:
            sys.exit(f"{d}: neither an h5ad nor a CSV output")
        t = pd.read_csv(csv_path)
        genes = list(t.columns[3:])
        x = t.iloc[:, 3:].to_numpy(dtype=np.float32)
    return info, genes, np.asarray(x, dtype=np.float64), tissue


def aggregate(a):
    import numpy as np

    results, samples = a.results, a.samples
    qs = [float(q) for q in a.quantiles.split(",")]
    qnames = [f"q{round(q * 100):02d}" for q in qs]
    failed = write_failed(results, samples, a.retries)
    failed_names = {r["sample"] for r in failed}
    rows, means, stats_rows, layers = [], [], [], {n: [] for n in ["sd"] + qnames}
    genes = None
    for s in samples:
        st = read_status(results, s)
        if s in failed_names or st is None:
            continue
        info, g, x, tissue = load_slide(results, s, st)
        if genes is None:
            genes = g
        elif g != genes:
            sys.exit(f"{s}: its genes differ from the first slide's (one model per cohort)")
        n = x.shape[0]
        flags = []
        if n < a.min_spots:
            flags.append("few_spots")
        if not np.isfinite(x).all():
            flags.append("nonfinite")
        side = info.get("grid_step_px") or info.get("patch_side_px")
        row = dict(sample=s, status="ok", n_spots=n, n_genes=x.shape[1], **info)
        if tissue is not None and side:
            area = float(tissue.sum()) * side * side
            row["tissue_area_px"] = area
            row["mean_spot_tissue"] = float(tissue.mean()) if n else float("nan")
            if info.get("mpp"):
                row["tissue_area_mm2"] = area * info["mpp"] ** 2 / 1e6
            if info.get("width") and info.get("height"):
                row["tissue_fraction"] = area / (info["width"] * info["height"])
                if row["tissue_fraction"] < a.min_tissue_fraction:
                    flags.append("little_tissue")
            if n and float(np.median(tissue)) < 0.5:
                flags.append("partial_spots")
        m = np.nanmean(x, axis=0) if n else np.full(x.shape[1], np.nan)
        sd = np.nanstd(x, axis=0) if n else np.full(x.shape[1], np.nan)
        q = np.nanquantile(x, qs, axis=0) if n else np.full((len(qs), x.shape[1]), np.nan)
        means.append(m)
        layers["sd"].append(sd)
        for i, name in enumerate(qnames):
            layers[name].append(q[i])
        for j, gene in enumerate(genes):
            stats_rows.append(dict(sample=s, gene=gene, n_spots=n, mean=m[j], sd=sd[j], **{name: q[i][j] for i, name in enumerate(qnames)}))
        row["qc_flags"] = flags
        rows.append(row)
    genes = genes or []
    M = np.array(means) if means else np.zeros((0, len(genes)))
    if len(rows) >= 5 and M.size:
        med = np.nanmedian(M, axis=0)
        mad = 1.4826 * np.nanmedian(np.abs(M - med), axis=0)
        ok = mad > 1e-12
        if ok.any():
            z = np.abs((M[:, ok] - med[ok]) / mad[ok])
            score = np.nanmedian(z, axis=1)
            for r, sc in zip(rows, score):
                r["outlier_score"] = float(sc)
                if sc > a.outlier_z:
                    r["qc_flags"].append("outlier")
    for r in rows:
        r["qc_flags"] = ",".join(r["qc_flags"]) or "ok"
    fail_rows = [dict(sample=f["sample"], slide=f["slide"], status="failed", qc_flags=f"failed: {f['kind']}") for f in failed]
    columns = ["sample", "slide", "status", "n_spots", "n_genes", "width", "height", "patch_side_px", "grid_step_px", "mpp", "tissue_area_px", "tissue_area_mm2",
               "tissue_fraction", "mean_spot_tissue", "outlier_score", "qc_flags", "wall_s", "attempt", "host", "slurm_job_id"]
    out = os.path.join(results, "cohort")
    write_tsv(os.path.join(out, "slides.tsv"), columns, rows + fail_rows)
    write_tsv(os.path.join(out, "expression_stats.tsv"), ["sample", "gene", "n_spots", "mean", "sd"] + qnames, stats_rows)
    write_tsv(os.path.join(out, "expression_mean.tsv"), ["sample"] + genes, [dict(sample=r["sample"], **dict(zip(genes, m))) for r, m in zip(rows, means)])
    write_h5ad(os.path.join(out, "cohort.h5ad"), rows, columns, genes, M, layers, qs, fail_rows, a)
    plot(os.path.join(out, "summary.png"), rows, fail_rows, genes, M)
    print(f"cohort: {len(rows)} slides ok, {len(failed)} failed, {len(genes)} genes; {sum(r['qc_flags'] != 'ok' for r in rows)} flagged by QC")


def write_h5ad(path, rows, columns, genes, M, layers, qs, fail_rows, a):
    import anndata
    import numpy as np
    import pandas as pd

    obs = pd.DataFrame([{c: r.get(c) for c in columns if c != "sample"} for r in rows], index=pd.Index([r["sample"] for r in rows], name="sample"))
    for c in obs.columns:
        if c in ("slide", "status", "qc_flags", "host", "slurm_job_id"):
            obs[c] = obs[c].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)).astype(str)
        else:
            obs[c] = pd.to_numeric(obs[c], errors="coerce").astype(float)
            if c in ("n_spots", "n_genes", "width", "height", "attempt") and obs[c].notna().all():
                obs[c] = obs[c].astype(np.int64)
    var = pd.DataFrame(index=pd.Index(genes, name="gene"))
    ad = anndata.AnnData(
        X=M.astype(np.float32),
        obs=obs,
        var=var,
        layers={k: np.array(v, dtype=np.float32).reshape(len(rows), len(genes)) for k, v in layers.items()},
    )
    ad.uns["bioedge_cohort"] = {
        "X": "mean predicted expression per slide (the model's units, e.g. log1p); layers: sd and quantiles over the slide's spots",
        "quantiles": list(qs),
        "qc": {"min_spots": a.min_spots, "min_tissue_fraction": a.min_tissue_fraction, "outlier_z": a.outlier_z},
        "failed_samples": [r["sample"] for r in fail_rows],
    }
    tmp = path + ".tmp.h5ad"
    ad.write_h5ad(tmp)
    os.replace(tmp, path)


def plot(path, rows, fail_rows, genes, M):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [r["sample"] for r in rows]
    n = len(names)
    fig, ax = plt.subplots(3, 1, figsize=(min(6 + 0.3 * n, 40), 11), gridspec_kw={"height_ratios": [1, 1, 2]}, constrained_layout=True)
    colours = ["tab:green" if r["qc_flags"] == "ok" else "tab:orange" for r in rows]
    x = np.arange(n)
    ax[0].bar(x, [r["n_spots"] for r in rows], color=colours)
    ax[0].set_ylabel("spots")
    title = f"{n} slides ok (orange: QC flag)"
    if fail_rows:
        title += f"; {len(fail_rows)} failed: " + ", ".join(r["sample"] for r in fail_rows[:10]) + (" ..." if len(fail_rows) > 10 else "")
    ax[0].set_title(title)
    ax[1].bar(x, [r.get("tissue_fraction", float("nan")) or 0 for r in rows], color=colours)
    ax[1].set_ylabel("tissue fraction")
    top = []
    if n and len(genes):
        v = np.nanvar(M, axis=0) if n > 1 else np.nanmean(M, axis=0)
        top = list(np.argsort(-np.nan_to_num(v, nan=-1))[:30])
        Z = M[:, top]
        if n > 1:
            Z = (Z - np.nanmean(Z, axis=0)) / (np.nanstd(Z, axis=0) + 1e-9)
        im = ax[2].imshow(Z.T, aspect="auto", cmap="RdBu_r", interpolation="nearest")
        ax[2].set_yticks(range(len(top)), [genes[j] for j in top], fontsize=7)
        fig.colorbar(im, ax=ax[2], label="mean prediction, z over slides" if n > 1 else "mean prediction")
    ax[2].set_title(f"slide means of the {len(top)} most variable genes")
    for a_ in ax:
        if n <= 80:
            a_.set_xticks(x, names, rotation=90, fontsize=7)
        else:
            a_.set_xticks([])
        a_.set_xlim(-0.5, n - 0.5)
    fig.savefig(path + ".tmp.png", dpi=100)
    os.replace(path + ".tmp.png", path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["aggregate", "failed"])
    ap.add_argument("--results", required=True)
    ap.add_argument("--samples", required=True)
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--quantiles", default="0.1,0.25,0.5,0.75,0.9")
    ap.add_argument("--min-spots", type=int, default=20)
    ap.add_argument("--min-tissue-fraction", type=float, default=0.05)
    ap.add_argument("--outlier-z", type=float, default=3.5)
    a = ap.parse_args()
    a.samples = [s for s in a.samples.split(",") if s]
    if a.mode == "failed":
        rows = write_failed(a.results, a.samples, a.retries)
        for r in rows:
            print(f"failed: {r['sample']}: exit {r['exit_code']} ({r['kind']}): {r['error']}", file=sys.stderr)
    else:
        aggregate(a)


if __name__ == "__main__":
    main()

"""Summary of a scripts/gpu.sh log: steps/s, loss curves, accuracies, parity, ratios.

usage: summary.py GPU_LOG [SUMMARY_JSON]
Reads the tagged lines `[step] <unix time> <text>` and the `=== run|meta` markers that gpu.sh
writes; works on a partial log too (a step killed by its timeout still gives the epochs it did).
"""
import json
import re
import sys
from statistics import median

log = sys.argv[1]
out = sys.argv[2] if len(sys.argv) > 2 else None

runs, meta, smi, config, skipped = {}, {}, [], {}, []
for line in open(log, errors="replace"):
    line = line.rstrip("\n")
    if m := re.match(r"=== meta (\S+) (\{.*\})$", line):
        (config if m[1] == "config" else meta.setdefault(m[1], {})).update(json.loads(m[2]))
    elif m := re.match(r"=== run (\S+) start ([\d.]+): (.*)$", line):
        runs[m[1]] = {"start": float(m[2]), "command": m[3], "lines": []}
    elif m := re.match(r"=== run (\S+) end ([\d.]+) rc=(\d+)", line):
        runs[m[1]].update(end=float(m[2]), rc=int(m[3]))
    elif m := re.match(r"=== skip (\S+):", line):
        skipped.append(m[1])
    elif m := re.match(r"\[smi\] ([\d.]+), (\d+), (\d+)", line):
        smi.append((float(m[1]), int(m[2]), int(m[3])))
    elif (m := re.match(r"\[(\S+)\] ([\d.]+) (.*)$", line)) and m[1] in runs:
        runs[m[1]]["lines"].append((float(m[2]), m[3]))


def gpu_load(r):
    s = [x for x in smi if r["start"] <= x[0] <= r.get("end", float("inf"))]
    if not s:
        return None
    return {"samples": len(s), "util_max_pct": max(x[1] for x in s), "util_median_pct": median(x[1] for x in s), "mem_max_mib": max(x[2] for x in s)}


def spot(name, r):
    md = meta.get(name, {})
    spe = md.get("steps_per_epoch")
    res = {k: md.get(k) for k in ("device", "batch", "config", "genes", "spots", "steps_per_epoch")}
    epochs, t_train0 = [], None
    for t, text in r["lines"]:
        if m := re.match(r"section B4: (\d+) of", text):
            res["spots"] = int(m[1])
            spe = res["steps_per_epoch"] = -(-int(m[1]) // md["batch"])
        if text.startswith("section C2:"):
            t_train0 = t  # data ready: training starts
        if m := re.match(r"epoch (\d+)/(\d+): train loss ([\d.eE+-]+|NaN|inf)", text):
            epochs.append((int(m[1]), t, float(m[3])))
        if m := re.match(r"\s*model \(TCGN-style\)\s+median r ([-\d.]+)\s+mean r ([-\d.]+)", text):
            res["heldout_median_r"], res["heldout_mean_r"] = float(m[1]), float(m[2])
        if m := re.match(r"parity on (\d+) held-out patches: tract ([\d.e+-]+), ort ([\d.e+-]+)", text):
            res["parity"] = {"patches": int(m[1]), "tract": float(m[2]), "ort": float(m[3])}
        if m := re.match(r"error: (.*)", text):
            res["error"] = m[1]
    res["epochs_done"] = len(epochs)
    res["loss_per_epoch"] = [round(e[2], 5) for e in epochs]
    res["steps_done"] = len(epochs) * spe if spe else None
    if spe and len(epochs) >= 2:
        # steady state: epochs 2.. (epoch 1 holds shader compilation and autotuning)
        dt = epochs[-1][1] - epochs[0][1]
        res["steps_per_s"] = round(spe * (len(epochs) - 1) / dt, 3)
        res["images_per_s"] = round(res["steps_per_s"] * md["batch"], 2)
        res["s_per_step"] = round(dt / (spe * (len(epochs) - 1)), 4)
    if spe and epochs and t_train0:
        res["first_epoch_s"] = round(epochs[0][1] - t_train0, 2)
    res["wall_s"] = round(r.get("end", r["lines"][-1][0] if r["lines"] else r["start"]) - r["start"], 1)
    res["rc"] = r.get("rc")
    res["gpu_load"] = gpu_load(r)
    return res


def cora(name, r):
    res = {"device": meta.get(name, {}).get("device"), "seeds": []}
    prev = None
    for t, text in r["lines"]:
        if re.match(r"\S+: \d+ nodes, \d+ features", text):
            prev = t  # data loaded: seed 0 starts
        if m := re.search(r"seed (\d+): test accuracy ([\d.]+) \((\d+) epochs", text):
            s = {"seed": int(m[1]), "test_accuracy": float(m[2]), "epochs": int(m[3])}
            if prev is not None:  # time since the previous seed's result / epochs: ms per epoch (train + validation)
                s["ms_per_epoch"] = round((t - prev) * 1000 / int(m[3]), 2)
            prev = t
            res["seeds"].append(s)
        if m := re.search(r"test accuracy ([\d.]+) ± ([\d.]+) % over (\d+) seeds \((\d+) s\).*tract ([\d.e+-]+), ort ([\d.e+-]+)", text):
            res.update(accuracy_pct=float(m[1]), std_pct=float(m[2]), train_s=int(m[4]), parity={"tract": float(m[5]), "ort": float(m[6])})
        if m := re.match(r"error: (.*)", text):
            res["error"] = m[1]
    # seed 0 holds the device's warm-up (shader compilation): the median over the later seeds
    ms = [s["ms_per_epoch"] for s in res["seeds"][1:]] or [s["ms_per_epoch"] for s in res["seeds"][:1] if "ms_per_epoch" in s]
    res["ms_per_epoch"] = round(median(ms), 2) if ms else None
    res["rc"], res["gpu_load"] = r.get("rc"), gpu_load(r)
    return res


def torch_run(name, r):
    for _, text in r["lines"]:
        if text.startswith("{"):
            d = json.loads(text)
            d["rc"], d["gpu_load"] = r.get("rc"), gpu_load(r)
            return d
    return {"rc": r.get("rc"), "error": (r["lines"][-1][1] if r["lines"] else "no output")}


def cv_run(name, r):
    # `train spot-cv`: its tables are in REPORT.md beside the log; here the time, the GPU load and
    # the report's protocol table (header and rows)
    rows = [text for _, text in r["lines"] if text.startswith(("| protocol |", "| leave-one-"))]
    errors = [m[1] for _, text in r["lines"] if (m := re.match(r"error: (.*)", text))]
    wall = round(r.get("end", r["lines"][-1][0] if r["lines"] else r["start"]) - r["start"], 1)
    return {"rc": r.get("rc"), "wall_s": wall, "gpu_load": gpu_load(r), "rows": rows, "errors": errors}


summary = {"config": config, "skipped": skipped, "spot": {}, "cora": {}, "torch": {}, "cv": {}}
for name, r in runs.items():
    if name.startswith("spot-"):
        summary["spot"][name] = spot(name, r)
    elif name.startswith("cora-"):
        summary["cora"][name] = cora(name, r)
    elif name.startswith("torch-"):
        summary["torch"][name] = torch_run(name, r)
    elif name.startswith("cv-"):
        summary["cv"][name] = cv_run(name, r)

ratios = {}
sp = summary["spot"]
for name, g in sp.items():
    if g.get("device") != "gpu" or not g.get("steps_per_s"):
        continue
    b = g["batch"]
    c = sp.get(f"spot-cpu-b{b}", {})
    if c.get("steps_per_s"):
        ratios[f"spot b{b}: wgpu / cpu (flex) steps/s"] = round(g["steps_per_s"] / c["steps_per_s"], 2)
    for att in ("sdpa", "math"):
        t = summary["torch"].get(f"torch-cuda-b{b}-{att}", {})
        if t.get("steps_per_s"):
            ratios[f"spot b{b}: PyTorch CUDA ({att}) / burn wgpu steps/s"] = round(t["steps_per_s"] / g["steps_per_s"], 2)
cg, cc = summary["cora"].get("cora-gcn-gpu", {}), summary["cora"].get("cora-gcn-cpu", {})
if cg.get("ms_per_epoch") and cc.get("ms_per_epoch"):
    ratios["cora gcn: cpu / wgpu ms per epoch"] = round(cc["ms_per_epoch"] / cg["ms_per_epoch"], 2)
summary["ratios"] = ratios

print(f"config: {json.dumps(config)}" + (f"; skipped (out of time): {skipped}" if skipped else ""))
for name, s in sp.items():
    print(
        f"{name:<16} rc={s['rc']} {s['epochs_done']} epochs x {s['steps_per_epoch']} steps (batch {s['batch']}): "
        f"{s.get('steps_per_s', '-')} steps/s ({s.get('images_per_s', '-')} img/s), first epoch {s.get('first_epoch_s', '-')} s, "
        f"held-out median r {s.get('heldout_median_r', '-')}, parity {s.get('parity', '-')}"
    )
    print(f"{'':<16} loss per epoch {s['loss_per_epoch']}; GPU load {s['gpu_load']}" + (f"; error: {s['error']}" if "error" in s else ""))
for name, c in summary["cora"].items():
    print(
        f"{name:<16} rc={c['rc']} accuracy {c.get('accuracy_pct', '-')} ± {c.get('std_pct', '-')} % ({len(c['seeds'])} seeds), "
        f"{c.get('ms_per_epoch', '-')} ms/epoch, parity {c.get('parity', '-')}; GPU load {c['gpu_load']}" + (f"; error: {c['error']}" if "error" in c else "")
    )
for name, t in summary["torch"].items():
    sps = t.get("steps_per_s")
    print(f"{name:<16} rc={t.get('rc')} {round(sps, 3) if sps else '-'} steps/s, params {t.get('parameters', '-')}, peak {t.get('peak_mem_mib', '-')} MiB" + (f"; error: {t['error']}" if "error" in t else ""))
for name, c in summary["cv"].items():
    print(f"{name:<16} rc={c['rc']} {c['wall_s']} s; GPU load {c['gpu_load']}" + (f"; errors: {c['errors']}" if c["errors"] else ""))
    for row in c["rows"]:
        print(f"{'':<16} {row}")
for k, v in ratios.items():
    print(f"ratio {k}: {v}")
if out:
    with open(out, "w") as f:
        json.dump(summary, f, indent=1)
    print(f"wrote {out}")

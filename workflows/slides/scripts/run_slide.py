"""One slide of the cohort workflow: run `infer slide`, keep its output in the job's log, and
record the outcome.

    run_slide.py --outdir DIR --log LOG --sample ID --attempt N --attempts M -- INFER ARGS...

Exit codes of `infer` (infer/src/cli/mod.rs, error/src/lib.rs) and what this does with them:

* 0: outputs written; `DIR/status.json` says `ok` (with infer's `--summary-json` line, when
  the build has that flag, under `summary`).
* 2, bad input (unreadable or truncated image, spots outside it, wrong model...): the same
  input fails the same way every time, so it is not retried. The job *succeeds* with
  `DIR/status.json` saying `failed` (exit code, error line): the slide is listed in
  `failed.tsv`, the rest of the cohort goes on, and a later run does not try it again — until the
  slide file changes (Snakemake reruns a job whose input is newer than its output) or its
  directory is deleted.
* 3 (runtime: the ONNX backend failed), 70 (internal error: a bug), a signal (killed, e.g. out
  of memory: -9 / 137) or anything else: possibly transient, so the job fails with that code and
  Snakemake retries it (`retries` of the rule; memory grows with the attempt). After the last
  attempt the job stays failed; with `--keep-going` the other slides go on and the workflow's
  `onerror` handler writes `failed.tsv` from the logs.

LOG holds the last attempt (Snakemake empties a job's log before retrying it): a header line,
infer's stderr then stdout, and a closing `bioedge-cohort: attempt N/M exit CODE (KIND) after S s`
line that `cohort.py failed` reads. LOG without `.log` + `.attempts.log` keeps every attempt
(the first attempt starts it afresh).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

KINDS = {0: "ok", 2: "bad input", 3: "runtime error", 70: "internal error"}


def kind(code: int) -> str:
    if code in KINDS:
        return KINDS[code]
    if code < 0 or code > 128:
        return f"killed by signal {-code if code < 0 else code - 128}"
    return "error"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--sample", required=True)
    ap.add_argument("--slide", required=True)
    ap.add_argument("--attempt", type=int, default=1)
    ap.add_argument("--attempts", type=int, default=1)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    os.makedirs(os.path.dirname(a.log) or ".", exist_ok=True)
    os.makedirs(a.outdir, exist_ok=True)
    with open(a.log, "w") as log:
        host = os.uname().nodename
        job = os.environ.get("SLURM_JOB_ID")
        log.write(
            f"bioedge-cohort: sample {a.sample} attempt {a.attempt}/{a.attempts} on {host}"
            + (f" (Slurm job {job})" if job else "")
            + f" at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n$ {subprocess.list2cmdline(cmd)}\n"
        )
        log.flush()
        t0 = time.time()
        # stderr (progress, errors) straight into the log; stdout (the --summary-json line) kept
        # apart, then appended
        with tempfile.TemporaryFile("w+") as out:
            try:
                code = subprocess.call(cmd, stdout=out, stderr=log)
            except OSError as e:  # the binary is missing: nothing a retry would change
                log.write(f"error: cannot run {cmd[0]}: {e}\n")
                code = 2
            wall = time.time() - t0
            out.seek(0)
            stdout = out.read()
        log.write(stdout)
        summary = summary_line(stdout)
        log.write(f"bioedge-cohort: attempt {a.attempt}/{a.attempts} exit {code} ({kind(code)}) after {wall:.1f} s\n")
    # Snakemake empties the job's log before a retry: every attempt is kept in <log>.attempts too
    with open(a.log) as f, open(attempts_log(a.log), "w" if a.attempt <= 1 else "a") as hist:
        hist.write(f.read())
    if code not in (0, 2):
        return code if 0 < code < 256 else 1
    status = {
        "sample": a.sample,
        "slide": a.slide,
        "status": "ok" if code == 0 else "failed",
        "exit_code": code,
        "kind": kind(code),
        "attempt": a.attempt,
        "wall_s": round(wall, 3),
        "host": host,
        "slurm_job_id": job,
    }
    if summary is not None:
        status["summary"] = summary
    if code == 2:
        status["error"] = (summary or {}).get("error") or last_error(a.log)
    tmp = os.path.join(a.outdir, ".status.json.tmp")
    with open(tmp, "w") as f:
        json.dump(status, f, indent=1)
    os.replace(tmp, os.path.join(a.outdir, "status.json"))
    return 0


def attempts_log(log: str) -> str:
    return (log[: -len(".log")] if log.endswith(".log") else log) + ".attempts.log"


def summary_line(stdout: str):
    """The JSON line of `infer slide --summary-json` (the last line of stdout that is one)."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                v = json.loads(line)
            except ValueError:
                continue
            if isinstance(v, dict) and "status" in v:
                return v
    return None


def last_error(log_path: str) -> str:
    """The last line of infer's output that reads like an error (else its last line)."""
    lines = [l.rstrip("\n") for l in open(log_path, errors="replace") if l.strip() and not l.startswith("bioedge-cohort:")]
    errs = [l for l in lines if l.lower().startswith(("error", "internal error"))]
    return (errs or lines or [""])[-1]


if __name__ == "__main__":
    sys.exit(main())

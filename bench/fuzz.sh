#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser (cargo fuzz / libFuzzer on nightly; fuzz/ holds the
# targets, fuzz/src/lib.rs their bodies). Each target runs for SECONDS of one core, crashes,
# out-of-memory and timeouts are counted and kept instead of stopping the run, and a table of
# executions, coverage and findings is printed and written to $BIOEDGE_CACHE/fuzz/results.md.
#
#   bash bench/fuzz.sh [SECONDS] [TARGET...]     # default: 1800 s (30 CPU-minutes) per target, all
#   JOBS=2 bash bench/fuzz.sh 600 smiles gmt     # targets side by side (one core each)
#
# Corpora grow in $BIOEDGE_CACHE/fuzz/corpus/<target> (seeded from ../shared/data and small models
# of every family, bench/fuzz_models.sh, by bench/fuzz_seeds.py); findings go to $BIOEDGE_CACHE/fuzz/findings/<target>/. A finding
# that is fixed is committed to fuzz/regressions/<target>/, which tests/tests/fuzz_regressions.rs
# replays on every test run. Limits: 2 GiB RSS, 1 GiB per allocation, 10 s per input (a job stuck
# past 2 minutes is killed and counted as a timeout).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
SECONDS_PER="${1:-1800}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(smiles gmt table cls planetoid spots card onnx hdf5 tiff image mol_csv)
JOBS="${JOBS:-1}"
FUZZ="$BIOEDGE_CACHE/fuzz"
export CARGO_TARGET_DIR="$BIOEDGE_CACHE/fuzz-target"

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# no sanitizer (safe Rust; the C parts are libhdf5 and zlib), debug assertions on (overflow checks)
bash scripts/hdf5-fixes-stamp.sh "$CARGO_TARGET_DIR"
cargo +nightly fuzz build --fuzz-dir fuzz -s none -a
BIN="$CARGO_TARGET_DIR/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"

mkdir -p "$FUZZ/seeds"
if [ ! -d "$FUZZ/seeds/smiles" ]; then
    [ -f "$FUZZ/models/spot.onnx" ] || bash bench/fuzz_models.sh "$FUZZ/models"
    "$BIOEDGE_PYTHON" bench/fuzz_seeds.py "$BIOEDGE_DATA" "$FUZZ/seeds" "$FUZZ/models"
fi

max_len() {
    case "$1" in
        onnx | card) echo 1048576 ;;
        hdf5 | tiff | image) echo 262144 ;;
        *) echo 65536 ;;
    esac
}

run_one() {
    local t="$1" log="$FUZZ/logs/$1.log"
    mkdir -p "$FUZZ/corpus/$t" "$FUZZ/findings/$t" "$FUZZ/logs"
    # fork mode with one worker: a finding is saved and counted, and the run goes on
    : >"$FUZZ/logs/$t.stuck"
    # CPU time as measured (user + system of the fuzzer and its jobs), not the wall budget
    local timer=()
    [ -x /usr/bin/time ] && timer=(/usr/bin/time -f '%U %S' -o "$FUZZ/logs/$t.cpu")
    rm -f "$FUZZ/logs/$t.cpu"
    (cd "$FUZZ/findings/$t" && nice -n 10 "${timer[@]}" "$BIN/$t" "$FUZZ/corpus/$t" "$FUZZ/seeds/$t" "$ROOT/fuzz/regressions/$t" \
        -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
        -max_total_time="$SECONDS_PER" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
        -max_len="$(max_len "$t")" -artifact_prefix="$FUZZ/findings/$t/" >"$log" 2>&1) &
    local parent=$!
    # Without a sanitizer, libFuzzer's timeout handler can deadlock in malloc when the alarm lands
    # inside malloc (seen with the HDF5 free-list loop): a job older than 2 minutes is killed and
    # counted here; libFuzzer then counts it as a crash (the table subtracts these).
    while kill -0 "$parent" 2>/dev/null; do
        sleep 15
        ps -eo pid=,etimes=,args= | awk -v b="$BIN/$t -" '$3" "substr($4,1,1) == b && $2 > 120 {print $1}' |
            while read -r pid; do kill -9 "$pid" 2>/dev/null && echo "$pid" >>"$FUZZ/logs/$t.stuck"; done
    done
    wait "$parent" || true
}
export -f run_one max_len
ROOT="$(pwd)"
export FUZZ BIN SECONDS_PER ROOT
mkdir -p fuzz/regressions
for t in "${TARGETS[@]}"; do mkdir -p "fuzz/regressions/$t"; done
printf '%s\n' "${TARGETS[@]}" | xargs -P "$JOBS" -I{} bash -c 'run_one {}'

{
    echo "| target | seconds | executions | exec/s | coverage (edges) | corpus | crashes | OOM | timeouts | CPU seconds |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for t in "${TARGETS[@]}"; do
        last=$(grep -E '^#[0-9]+: cov:' "$FUZZ/logs/$t.log" | tail -1 || true)
        runs=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")
        cov=$(sed -E 's/.* cov: ([0-9]+) .*/\1/' <<<"$last")
        corp=$(sed -E 's/.* corp: ([0-9]+) .*/\1/' <<<"$last")
        eps=$(sed -E 's/.* exec\/s: ([0-9]+) .*/\1/' <<<"$last")
        read -r oom tmo crash < <(sed -E 's/.*oom\/timeout\/crash: ([0-9]+)\/([0-9]+)\/([0-9]+).*/\1 \2 \3/' <<<"$last")
        stuck=$(wc -l <"$FUZZ/logs/$t.stuck" 2>/dev/null || echo 0)
        [ -n "$crash" ] && crash=$((crash - stuck)) && tmo=$((tmo + stuck))
        cpu=$(tail -n 1 "$FUZZ/logs/$t.cpu" 2>/dev/null | awk '{printf "%d", $1 + $2}' || true)
        echo "| $t | $SECONDS_PER | ${runs:-0} | ${eps:-0} | ${cov:-0} | ${corp:-0} | ${crash:-?} | ${oom:-?} | ${tmo:-?} | ${cpu:-$SECONDS_PER} |"
    done
} | tee "$FUZZ/results.md"
# every run's rows, dated, and the totals per target over all runs (the corpus carries over)
date -u +%FT%TZ | xargs -I{} sed -n 's/^| \([a-z_0-9]*\) | /{} \1 /p' "$FUZZ/results.md" | tr -d '|' >>"$FUZZ/history.txt"
echo
echo "| target | runs | budget seconds | CPU seconds | executions | crashes | OOM | timeouts |  (all runs, $FUZZ/history.txt)"
echo "|---|---|---|---|---|---|---|---|"
# CPU seconds: measured (column 11) where the run recorded it, else the budget
awk '$2 != "target" {r[$2]++; s[$2]+=$3; u[$2]+=(NF >= 11 ? $11 : $3); e[$2]+=$4; c[$2]+=$8; o[$2]+=$9; t[$2]+=$10}
     END {for (k in r) printf "| %s | %d | %d | %d | %d | %d | %d | %d |\n", k, r[k], s[k], u[k], e[k], c[k], o[k], t[k]}' "$FUZZ/history.txt" | sort
echo "findings: $FUZZ/findings/<target>/ (crash-*, oom-*, timeout-*); logs: $FUZZ/logs/"

#!/usr/bin/env bash
# Whole-image benchmark: `infer slide --grid` on tract and ONNX Runtime, and the Python baseline
# (bench/slide_python.py: Pillow + numpy + onnxruntime) on the same spots and batch size.
# usage: bench/slide.sh MODEL.onnx [IMAGE (default HER2ST C2)] [BATCH (default 32)]
# Needs `cargo build --release -p infer` and Pillow in $BIOEDGE_PYTHON. Prints spots/s and ratios
# (crop + preprocess + run; decoding excluded) from one run each.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
model=${1:?usage: bench/slide.sh MODEL.onnx [IMAGE] [BATCH]}
image=${2:-$BIOEDGE_DATA/her2st/C2/5714_HE_BT_C2.jpg}
batch=${3:-32}
infer="$CARGO_TARGET_DIR/release/infer"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rate() { sed -n 's/.*(\([0-9.]*\) spots\/s.*/\1/p' | tail -1; }
side=""
for b in tract ort; do
    log=$("$infer" slide --model "$model" --image "$image" --grid --backend "$b" --batch "$batch" --out "$tmp/$b.csv" 2>&1) || { echo "$log"; exit 1; }
    echo "$log" | tail -1
    eval "r_$b=$(echo "$log" | rate)"
    side=$(echo "$log" | sed -n 's/.*patch \([0-9.]*\) px.*/\1/p' | tail -1)
done
py=$("$BIOEDGE_PYTHON" "$(dirname "$0")/slide_python.py" "$model" "$image" "$tmp/ort.csv" "$side" "$batch")
echo "python: $py"
r_py=$(echo "$py" | "$BIOEDGE_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["spots_per_s"])')
"$BIOEDGE_PYTHON" - "$r_tract" "$r_ort" "$r_py" <<'PY'
import sys
t, o, p = map(float, sys.argv[1:])
print(f"spots/s: infer tract {t:.1f}, infer ort {o:.1f}, python onnxruntime {p:.1f}")
print(f"ratios: ort/python {o / p:.2f}, tract/python {t / p:.2f}, ort/tract {o / t:.2f}")
PY

#!/usr/bin/env bash
# End-to-end benchmark of `infer slide --grid` against the Python pipeline a user would write
# (bench/slide_python.py: Pillow or openslide-python, a numpy tissue mask, a thread pool cropping
# and preprocessing, onnxruntime on all cores), same slide, same spots, same batch size. The time
# is the wall time of each whole process: start-up, imports, decoding or opening the image, the
# mask, loading the model, every prediction (and infer writing its CSV).
# usage: bench/slide.sh MODEL.onnx [IMAGE (default HER2ST C2)] [BATCH (default 32)]
# Inputs: IMAGE decoded whole, and the same pixels as an Aperio SVS with JPEG tiles and a pyramid
# (tests/py/make_pyramid.py), read by OpenSlide on both sides and by infer's tiled-TIFF reader.
# REPEAT=N (default 1) runs each N times and keeps the fastest. Needs the workspace built with
# "$BIOEDGE_FEATURES" (OpenSlide) and openslide-python in $BIOEDGE_PYTHON (scripts/setup.sh).
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
model=${1:?usage: bench/slide.sh MODEL.onnx [IMAGE] [BATCH]}
image=${2:-$BIOEDGE_DATA/her2st/C2/5714_HE_BT_C2.jpg}
batch=${3:-32}
repeat=${REPEAT:-1}
infer="$CARGO_TARGET_DIR/release/infer"
py="$(dirname "$0")/slide_python.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$BIOEDGE_PYTHON" "$(dirname "$0")/../tests/py/make_pyramid.py" "$image" "$tmp/slide.svs" --compression jpeg --aperio --mpp 0.69 --tile 240
cat "$image" "$tmp/slide.svs" >/dev/null # both in the page cache
echo "$(nproc) cores; batch $batch; fastest of $repeat run(s) each; wall time of the whole process"

# best NAME CMD...: runs CMD $repeat times; keeps the fastest wall time in $tmp/NAME.ns, its stdout
# in $tmp/NAME.out and its stderr in $tmp/NAME.err
best() {
    local name=$1 t0 ns
    shift
    for _ in $(seq "$repeat"); do
        t0=$(date +%s%N)
        "$@" >"$tmp/run.out" 2>"$tmp/run.err" || { cat "$tmp/run.err"; exit 1; }
        ns=$(($(date +%s%N) - t0))
        if [ ! -f "$tmp/$name.ns" ] || [ "$ns" -lt "$(cat "$tmp/$name.ns")" ]; then
            echo "$ns" >"$tmp/$name.ns"
            mv "$tmp/run.out" "$tmp/$name.out"
            mv "$tmp/run.err" "$tmp/$name.err"
        fi
    done
}
json() { "$BIOEDGE_PYTHON" -c 'import json,sys; d=json.loads(sys.stdin.readlines()[-1]); print(eval(sys.argv[1], {}, d))' "$1"; }

# JPEG decoded whole: tract and ONNX Runtime; the patch side from the model card
for b in ort tract; do
    best "jpeg-$b" "$infer" slide --model "$model" --image "$image" --grid --backend "$b" --batch "$batch" --out "$tmp/jpeg-$b.csv" --summary-json
done
side=$(json patch_side_px <"$tmp/jpeg-ort.out")
best jpeg-python "$BIOEDGE_PYTHON" "$py" "$model" "$image" "$tmp/jpeg-ort.csv" "$side" "$batch" --reader pillow
# the SVS: OpenSlide and the tiled-TIFF reader, ONNX Runtime, the JPEG's patch side
for r in openslide tiff; do
    best "svs-$r" "$infer" slide --model "$model" --image "$tmp/slide.svs" --reader "$r" --patch-side "$side" --grid --backend ort \
        --batch "$batch" --out "$tmp/svs-$r.csv" --summary-json
done
best svs-python "$BIOEDGE_PYTHON" "$py" "$model" "$tmp/slide.svs" "$tmp/svs-openslide.csv" "$side" "$batch" --reader openslide

echo
echo "infer stages (s, from --summary-json; the model loads while the image is read):"
for n in jpeg-ort jpeg-tract svs-openslide svs-tiff; do
    printf '  %-14s %s; %s\n' "$n" "$(json 'seconds' <"$tmp/$n.out")" "$(grep 'crop+preprocess' "$tmp/$n.err" | sed 's/^slide: //')"
done
echo "python stages (s): "
for n in jpeg-python svs-python; do
    printf '  %-14s %s, workers %s, same spots as its grid: %s, max |python - infer| %s\n' "$n" "$(json 'seconds' <"$tmp/$n.out")" \
        "$(json workers <"$tmp/$n.out")" "$(json same_spots_as_grid <"$tmp/$n.out")" "$(json 'round(max_abs_diff_vs_positions_csv, 4)' <"$tmp/$n.out")"
done
echo
"$BIOEDGE_PYTHON" - "$tmp" <<'PY'
import json, sys
tmp = sys.argv[1]
def row(name):
    s = int(open(f"{tmp}/{name}.ns").read()) / 1e9
    spots = json.loads(open(f"{tmp}/{name}.out").read().splitlines()[-1])["spots"]
    return s, spots
rows = [("C2 JPEG", "infer, ONNX Runtime", "jpeg-ort", "jpeg-python"),
        ("C2 JPEG", "infer, tract", "jpeg-tract", "jpeg-python"),
        ("C2 JPEG", "python: Pillow + onnxruntime", "jpeg-python", None),
        ("SVS, JPEG tiles", "infer, ONNX Runtime, OpenSlide", "svs-openslide", "svs-python"),
        ("SVS, JPEG tiles", "infer, ONNX Runtime, tiff reader", "svs-tiff", "svs-python"),
        ("SVS, JPEG tiles", "python: openslide + onnxruntime", "svs-python", None)]
print(f"| input | pipeline | spots | wall s | spots/s end to end | vs python |")
print("|---|---|---|---|---|---|")
for inp, what, name, ref in rows:
    s, n = row(name)
    vs = f"{row(ref)[0] / s:.2f}×" if ref else "1"
    print(f"| {inp} | {what} | {n} | {s:.2f} | {n / s:.1f} | {vs} |")
PY

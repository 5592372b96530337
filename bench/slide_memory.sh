#!/usr/bin/env bash
# Peak memory (maximum RSS, /usr/bin/time -v) and time of `infer slide --grid` on one section read
# four ways, in one run: the JPEG decoded whole; the same pixels as a Deflate tiled pyramid (tiled
# TIFF reader); as an Aperio SVS with JPEG tiles through OpenSlide and through the tiled TIFF reader.
# usage: bench/slide_memory.sh MODEL.onnx [IMAGE (default HER2ST C2)] [MPP (default 0.69)]
# Needs `infer` built with `--features openslide` (scripts/run.sh does) and GNU time.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
model=${1:?usage: bench/slide_memory.sh MODEL.onnx [IMAGE] [MPP]}
image=${2:-$BIOEDGE_DATA/her2st/C2/5714_HE_BT_C2.jpg}
mpp=${3:-0.69}
infer="$CARGO_TARGET_DIR/release/infer"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mk="$(dirname "$0")/../tests/py/make_pyramid.py"
"$BIOEDGE_PYTHON" "$mk" "$image" "$tmp/pyramid.tif"
"$BIOEDGE_PYTHON" "$mk" "$image" "$tmp/slide.svs" --compression jpeg --aperio --mpp "$mpp"
run() {
    local name=$1; shift
    local log
    log=$(/usr/bin/time -v "$infer" slide --model "$model" --grid --batch 16 --out "$tmp/out.csv" "$@" 2>&1) || { echo "$log"; exit 1; }
    local rss spots
    rss=$(echo "$log" | sed -n 's/.*Maximum resident set size (kbytes): //p')
    spots=$(echo "$log" | grep -o '^[0-9]* spots' | tail -1)
    printf '%-34s %6d MB peak RSS, %s, %s wall\n' "$name" $((rss / 1024)) "$spots" "$(echo "$log" | sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p')"
}
run "JPEG, decoded whole" --image "$image"
run "Deflate tiled pyramid, tiff reader" --image "$tmp/pyramid.tif"
run "Aperio SVS (JPEG tiles), OpenSlide" --image "$tmp/slide.svs" --reader openslide
run "Aperio SVS (JPEG tiles), tiff reader" --image "$tmp/slide.svs" --reader tiff

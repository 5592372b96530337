#!/usr/bin/env bash
# Builds the browser page into out/web/: the wasm module (tract + infer's preprocessing), the page
# sources from wasm/www/, a spot model (out/spot-small.onnx if present) and an example H&E image
# (a full-resolution crop of HER2ST C2). Also copies onnxruntime-web's files for bench/browser.mjs.
# Needs scripts/setup.sh (wasm32 target, wasm-bindgen-cli, node packages). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
WEB=${BIOEDGE_WEB:-out/web}
export PATH="$BIOEDGE_CACHE/wasm-bindgen/bin:$PATH"
command -v wasm-bindgen >/dev/null || { echo "wasm-bindgen not found: run scripts/setup.sh" >&2; exit 1; }
# own target dir: the wasm32 build does not compete with native builds for the lock;
# simd128 (all current browsers) switches on tract's wasm SIMD kernels
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="${CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS:--C target-feature=+simd128}"
WASM_TARGET="$BIOEDGE_CACHE/target-wasm"
CARGO_TARGET_DIR="$WASM_TARGET" cargo build --release --target wasm32-unknown-unknown -p bioedge-wasm
mkdir -p "$WEB/pkg"
wasm-bindgen --target web --no-typescript --remove-name-section --out-dir "$WEB/pkg" \
  "$WASM_TARGET/wasm32-unknown-unknown/release/bioedge_wasm.wasm"
cp wasm/www/* "$WEB/"
# onnxruntime-web (benchmark only), served locally
ORT_DIST="$BIOEDGE_CACHE/node/node_modules/onnxruntime-web/dist"
if [ -d "$ORT_DIST" ]; then
  mkdir -p "$WEB/ort"
  cp "$ORT_DIST"/ort.wasm.min.mjs "$ORT_DIST"/ort-wasm-simd-threaded.mjs "$ORT_DIST"/ort-wasm-simd-threaded.wasm "$WEB/ort/"
fi
# default model for the page
model=${BIOEDGE_WEB_MODEL:-out/spot-small.onnx}
if [ -f "$model" ]; then cp "$model" "$WEB/model.onnx"; else echo "build: no $model; the page will ask for a model file"; rm -f "$WEB/model.onnx"; fi
# example image: a 3482×3192 px full-resolution crop of HER2ST C2 (tissue edge; 12×11 spots of 290 px)
if [ ! -f "$WEB/example.jpg" ] || [ wasm/build.sh -nt "$WEB/example.jpg" ]; then
  "$BIOEDGE_PYTHON" - "$BIOEDGE_DATA/her2st/C2/5714_HE_BT_C2.jpg" "$WEB/example.jpg" <<'PY'
import sys
from PIL import Image
Image.MAX_IMAGE_PIXELS = None
src, dst = sys.argv[1:]
Image.open(src).convert("RGB").crop((4650, 3250, 4650 + 3482, 3250 + 3192)).save(dst + ".tmp.jpg", quality=85)
import os; os.replace(dst + ".tmp.jpg", dst)
PY
fi
raw=$(stat -c %s "$WEB/pkg/bioedge_wasm_bg.wasm")
gz=$(gzip -9 -c "$WEB/pkg/bioedge_wasm_bg.wasm" | wc -c)
echo "build: $WEB ready; bioedge_wasm_bg.wasm $((raw / 1024)) KiB ($((gz / 1024)) KiB gzipped)"
echo "build: serve with: bash wasm/serve.sh   (http://127.0.0.1:8080/)"

#!/usr/bin/env bash
# The main job on bundled data: setup, build, train the gene-graph GCN and the MLP baseline on
# GSEA Leukemia + GeneMANIA, export verified ONNX, run inference on tract and ONNX Runtime, and
# cross-check with Python onnx/onnxruntime. Then a small histology spot model (HER2ST B4 → C2) and
# the browser page built around it (out/web/; serve with `bash wasm/serve.sh`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
cargo build --release --workspace --features "$BIOEDGE_FEATURES"
T="$CARGO_TARGET_DIR/release"
D="$BIOEDGE_DATA"
mkdir -p out
for fam in gene-gcn gene-mlp; do
  "$T/train" "$fam" --out "out/$fam.onnx"
done
"$T/infer" inspect out/gene-gcn.onnx
for fam in gene-gcn gene-mlp; do
  for backend in tract ort; do
    "$T/infer" predict --model "out/$fam.onnx" --backend "$backend" \
      --input "$D/gseapy_leukemia/Leukemia_hgu95av2.trim.txt.gz" --cls "$D/gseapy_leukemia/Leukemia.cls" \
      --out "out/$fam.$backend.csv"
  done
  "$BIOEDGE_PYTHON" tests/py/check_onnx.py "out/$fam.onnx"
done
# histology: the spot model that the browser page loads by default
# (the leave-one-section-out fold C2 of `train spot-cv`: trained on C5 + C6, epoch picked on C4)
"$T/train" spot --data "$D/her2st" --train C5,C6 --val C4 --eval C2 --genes 250 --epochs 20 --config cnn-context \
  --out out/spot-small.onnx --checkpoint-dir out/spot-ck
"$T/infer" slide --model out/spot-small.onnx --image "$D/her2st/C2/5714_HE_BT_C2.jpg" --grid \
  --out out/spot-small.C2.csv --heatmap ERBB2 --heatmap-dir out/heatmaps
bash wasm/build.sh
echo "done: models in out/*.onnx, predictions in out/*.csv, heatmaps in out/heatmaps/;"
echo "      the browser page: bash wasm/serve.sh, then open http://127.0.0.1:8080/"

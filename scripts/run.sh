#!/usr/bin/env bash
# The main job on bundled data: setup, build, train the gene-graph GCN and the MLP baseline on
# GSEA Leukemia + GeneMANIA, export verified ONNX, run inference on tract and ONNX Runtime, and
# cross-check with Python onnx/onnxruntime.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
cargo build --release --workspace
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
echo "done: models in out/*.onnx, predictions in out/*.csv"

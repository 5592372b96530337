#!/usr/bin/env bash
# Small models of every family (a few epochs each, about 1 minute on 2 cores) whose ONNX files
# and model cards seed the onnx and card fuzz corpora (bench/fuzz_seeds.py).
#
#   bash bench/fuzz_models.sh DIR
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
dir="$(mkdir -p "$1" && cd "$1" && pwd)"
cargo build -q --release --workspace --features "$BIOEDGE_FEATURES"
T="$CARGO_TARGET_DIR/release/train"
D="$BIOEDGE_DATA"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
"$T" gene-gcn --epochs 2 --out "$dir/gene-gcn.onnx"
"$T" gene-mlp --epochs 2 --out "$dir/gene-mlp.onnx"
"$T" node-gcn --epochs 2 --out "$dir/node-gcn.onnx"
"$T" node-gat --epochs 2 --out "$dir/node-gat.onnx"
"$T" node2vec --epochs 1 --out "$dir/node2vec.onnx"
"$T" gene2vec --gmt "$D/msigdb_hallmark/"*.gmt* --epochs 1 --out "$dir/gene2vec.onnx"
"$T" mol --epochs 1 --limit 200 --out "$dir/mol.onnx"
"$T" cells --epochs 2 --out "$dir/cells.onnx"
"$T" spot --data "$D/her2st" --train C5 --eval C2 --genes 50 --epochs 1 --max-spots 60 --out "$dir/spot.onnx"
rm -rf "$dir"/*.tsv "$dir"/*.txt "$dir"/checkpoints

#!/usr/bin/env bash
# Every test: setup, format and lint checks, build, dependency checks, unit + end-to-end tests
# (incl. Python cross-checks), doctests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
# habits: one format, no clippy warnings (incl. missing docs on the library crates)
cargo fmt --all --check
cargo clippy --release --workspace --all-targets --features "$BIOEDGE_FEATURES" -- -D warnings
cargo build --release --workspace --all-targets --features "$BIOEDGE_FEATURES"
# The edge crates (everything `infer` and the browser build use) must not depend on burn, and
# `infer` must build without its native-only features.
for c in onnx-format bioedge-error bioedge-runtime bioedge-io bioedge-chem bioedge-slide infer bioedge-wasm; do
  if cargo tree -p "$c" -e normal,build --prefix none | grep -E '^burn' ; then
    echo "FAIL: $c depends on burn"; exit 1
  fi
done
cargo build --release -p infer --no-default-features --features tract
# the browser page: runtime (tract) + slide + the wasm crate for wasm32 into out/web/
bash wasm/build.sh
# ONNX Runtime's CUDA provider must keep compiling even where there is no GPU (the wgpu training
# backend is built above and tested on lavapipe)
cargo check --release -p infer --features cuda
# RDKit reference features for the featurizer agreement test (bioedge-chem tests::rdkit_agreement;
# BIOEDGE_CI makes a missing reference a failure)
export BIOEDGE_RDKIT_REF="$BIOEDGE_CACHE/tox21_rdkit_features.jsonl" BIOEDGE_CI=1
"$BIOEDGE_PYTHON" tests/py/rdkit_features.py "$BIOEDGE_DATA/tox21/tox21.csv" "$BIOEDGE_RDKIT_REF"
log="$BIOEDGE_CACHE/test.log"
set +e
cargo test --release --workspace --features "$BIOEDGE_FEATURES" --lib --bins --tests --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# doctests, incl. the README's library example (compiled and run as a doctest of `models`)
cargo test --release --workspace --features "$BIOEDGE_FEATURES" --doc 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
set -e
passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
echo
echo "tests: $passed passed, $failed failed"
exit "$status"

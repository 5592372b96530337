#!/usr/bin/env bash
# Everything a fresh machine needs, from the package registries only (Debian, PyPI, crates.io):
# libhdf5-dev, a Python venv for cross-checks and baselines (onnx, onnxruntime, numpy, pillow), and ONNX Runtime's
# shared library taken from the PyPI onnxruntime wheel. Safe to re-run.
set -euo pipefail
source "$(dirname "$0")/env.sh"
ORT_VERSION=1.31.1

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
for p in libhdf5-dev pkg-config; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -qq "${missing[@]}" >/dev/null
fi

mkdir -p "$BIOEDGE_CACHE"
if [ ! -x "$BIOEDGE_PYTHON" ]; then
  echo "setup: creating $BIOEDGE_CACHE/venv"
  python3 -m venv "$BIOEDGE_CACHE/venv"
fi
if ! "$BIOEDGE_PYTHON" -c "import onnx, numpy, PIL, onnxruntime as o; assert o.__version__ == '$ORT_VERSION'" 2>/dev/null; then
  echo "setup: installing onnx, onnxruntime==$ORT_VERSION, numpy, pillow into the venv"
  "$BIOEDGE_PYTHON" -m pip install -q --disable-pip-version-check "onnx==1.23.2" "onnxruntime==$ORT_VERSION" numpy pillow
fi

# ONNX Runtime for Rust (`ort` with load-dynamic): the library inside the PyPI wheel.
lib="$BIOEDGE_CACHE/onnxruntime/libonnxruntime.so"
if [ ! -f "$lib" ]; then
  src=$("$BIOEDGE_PYTHON" -c "import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi', 'libonnxruntime.so.$ORT_VERSION'))")
  mkdir -p "$(dirname "$lib")"
  cp "$src" "$lib.tmp" && mv "$lib.tmp" "$lib"
  echo "setup: ONNX Runtime $ORT_VERSION library at $lib"
fi

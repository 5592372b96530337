#!/usr/bin/env bash
# A venv with PyTorch and PyTorch Geometric from PyPI (large: ~5.5 GB with torch's CUDA wheels; the
# CPU is used), plus onnx and onnxruntime for the agreement check: `bench torch`, `bench train-nodes`,
# tests/tests/torch_parity.rs. Kept apart from $BIOEDGE_PYTHON. Safe to re-run.
# Measured on the 2-core dev box: `pip install torch torch_geometric` into a fresh venv, 2 min 55 s.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
V="$BIOEDGE_CACHE/torchvenv"
if ! "$V/bin/python" -c "import torch, torch_geometric, numpy, onnx, onnxruntime as o; assert o.__version__ == '1.31.1'" 2>/dev/null; then
  echo "setup: installing torch, torch_geometric, numpy, onnx, onnxruntime into $V"
  [ -x "$V/bin/python" ] || python3 -m venv "$V"
  "$V/bin/pip" install -q --disable-pip-version-check "torch==2.15.0" "torch_geometric==2.8.1" numpy "onnx==1.23.2" "onnxruntime==1.31.1"
fi
"$V/bin/python" -W ignore -c "import torch, torch_geometric; print('torch', torch.__version__, '· torch_geometric', torch_geometric.__version__)"

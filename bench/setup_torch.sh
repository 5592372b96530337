#!/usr/bin/env bash
# Bench-only: a venv with PyTorch from PyPI (large: ~5 GB with its CUDA wheels; CPU is used) for
# `bench train-nodes`. Not needed by the product or the tests.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
V="$BIOEDGE_CACHE/torchvenv"
if ! "$V/bin/python" -c "import torch" 2>/dev/null; then
  python3 -m venv "$V"
  "$V/bin/pip" install -q torch numpy
fi
"$V/bin/python" -c "import torch; print('torch', torch.__version__)"

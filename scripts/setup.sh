#!/usr/bin/env bash
# Everything a fresh machine needs, from the package registries only (Debian, PyPI, crates.io):
# libopenslide-dev (for `infer --features openslide`), mesa-vulkan-drivers (lavapipe:
# a CPU Vulkan device, so the wgpu training path is tested without a GPU), a Python venv for cross-checks
# and baselines (onnx, onnxruntime, numpy, pillow, rdkit, tifffile + imagecodecs, jsonschema; anndata, scanpy, squidpy and
# shapely read `infer slide`/`infer cells` outputs in the tests), ONNX Runtime's shared library taken from the PyPI onnxruntime wheel, and the browser
# toolchain (below). Safe to re-run.
set -euo pipefail
source "$(dirname "$0")/env.sh"
ORT_VERSION=1.31.1

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
# slurm-wlm + munge: the single-node Slurm cluster of the cohort workflow's test
# (workflows/slides/slurm_local.sh); no slurmdbd/MariaDB, the executor reads job states from squeue
for p in libopenslide-dev mesa-vulkan-drivers pkg-config chromium slurm-wlm munge; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
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
if ! "$BIOEDGE_PYTHON" -c "import onnx, numpy, PIL, rdkit, tifffile, imagecodecs, jsonschema, anndata, scanpy, squidpy, shapely, onnxruntime as o; assert o.__version__ == '$ORT_VERSION'" 2>/dev/null; then
  echo "setup: installing onnx, onnxruntime==$ORT_VERSION, numpy, pillow, rdkit, tifffile, imagecodecs, jsonschema, anndata, scanpy, squidpy, shapely into the venv"
  # imagecodecs 2025.11: squidpy 1.6-1.8 require imagecodecs < 2026 (the tiled-TIFF fixtures pass with either)
  "$BIOEDGE_PYTHON" -m pip install -q --disable-pip-version-check "onnx==1.23.2" "onnxruntime==$ORT_VERSION" numpy pillow "rdkit==2026.09.1" tifffile "imagecodecs==2025.11.11" "jsonschema==4.*" \
    "anndata==0.12.*" "scanpy==1.11.*" "squidpy==1.8.*" "shapely==2.*"
fi

# cmake >= 3.26 for the HDF5 C library that bioedge-io builds from bundled source (Debian 12 has 3.25)
if ! "$BIOEDGE_CACHE/venv/bin/cmake" --version 2>/dev/null | grep -qE 'version (3\.(2[6-9]|[3-9][0-9])|[4-9])\.'; then
  echo "setup: installing cmake into the venv"
  "$BIOEDGE_PYTHON" -m pip install -q --disable-pip-version-check "cmake>=3.26,<5"
fi
export CMAKE="$BIOEDGE_CACHE/venv/bin/cmake"
bash "$(dirname "$0")/hdf5-fixes-stamp.sh" "$CARGO_TARGET_DIR"

# The Python side of bench/slide.sh on whole-slide files: openslide-python with OpenSlide's own wheel.
if ! "$BIOEDGE_PYTHON" -c "import openslide" 2>/dev/null; then
  echo "setup: installing openslide-python and openslide-bin into the venv"
  "$BIOEDGE_PYTHON" -m pip install -q --disable-pip-version-check "openslide-python==1.4.*" "openslide-bin==4.0.*"
fi

# ONNX Runtime for Rust (`ort` with load-dynamic): the library inside the PyPI wheel.
lib="$BIOEDGE_CACHE/onnxruntime/libonnxruntime.so"
if [ ! -f "$lib" ]; then
  src=$("$BIOEDGE_PYTHON" -c "import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi', 'libonnxruntime.so.$ORT_VERSION'))")
  mkdir -p "$(dirname "$lib")"
  cp "$src" "$lib.tmp" && mv "$lib.tmp" "$lib"
  echo "setup: ONNX Runtime $ORT_VERSION library at $lib"
fi

# Cohort workflow (workflows/slides, tests/tests/cohort.rs): Snakemake and its Slurm executor
# plugin in the venv (slurm-wlm and munge come with the apt list above). Measured on a 2-core
# machine: this pip install 17 s; apt-get update + install of slurm-wlm munge 16 s.
if ! "$BIOEDGE_PYTHON" -c "import snakemake, snakemake_executor_plugin_slurm; assert snakemake.__version__.startswith('9.')" 2>/dev/null; then
  echo "setup: installing snakemake 9 and snakemake-executor-plugin-slurm into the venv"
  "$BIOEDGE_PYTHON" -m pip install -q --disable-pip-version-check "snakemake==9.*" "snakemake-executor-plugin-slurm==2.*"
fi

# PyTorch + PyTorch Geometric from PyPI in their own venv ($BIOEDGE_CACHE/torchvenv, ~5.5 GB with the
# CUDA wheels; measured 2 min 55 s on a 2-core machine) for tests/tests/torch_parity.rs and `bench torch`.
bash "$(dirname "$0")/../bench/setup_torch.sh"

# Browser build and tests (wasm/, tests/js/, bench/browser.mjs): the wasm32 target, wasm-bindgen-cli
# at the version in Cargo.lock, playwright-core and onnxruntime-web from npm (chromium and node: apt above).
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
# format and lint checks of scripts/test.sh
for c in rustfmt clippy; do rustup component list --installed | grep -q "^$c" || rustup component add "$c"; done
wb=$(awk '$0 == "name = \"wasm-bindgen\"" {getline; gsub(/[^0-9.]/, ""); print; exit}' "$(dirname "$0")/../Cargo.lock")
if ! "$BIOEDGE_CACHE/wasm-bindgen/bin/wasm-bindgen" --version 2>/dev/null | grep -qx "wasm-bindgen $wb"; then
  echo "setup: installing wasm-bindgen-cli $wb (about 10 minutes)"
  # no --locked: its lockfile pins a crate version the registry mirror lacks
  cargo install -q wasm-bindgen-cli --version "=$wb" --root "$BIOEDGE_CACHE/wasm-bindgen"
fi
node_dir="$BIOEDGE_CACHE/node"
want_npm="playwright-core@1.65.1 onnxruntime-web@1.30.0"
have_npm=$(cd "$node_dir" 2>/dev/null && node -p "['playwright-core','onnxruntime-web'].map(p => p + '@' + require('./node_modules/' + p + '/package.json').version).join(' ')" 2>/dev/null || true)
if [ "$have_npm" != "$want_npm" ]; then
  echo "setup: installing $want_npm into $node_dir"
  mkdir -p "$node_dir"
  [ -f "$node_dir/package.json" ] || echo '{"name": "bioedge-node", "private": true}' > "$node_dir/package.json"
  (cd "$node_dir" && npm install --no-audit --no-fund --save-exact $want_npm >/dev/null)
fi

# Sourced by the scripts: one cargo target dir and one cache outside the clone, shared by runs.
export BIOEDGE_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/bioedge"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$BIOEDGE_CACHE/target}"
export BIOEDGE_PYTHON="$BIOEDGE_CACHE/venv/bin/python"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$BIOEDGE_CACHE/onnxruntime/libonnxruntime.so}"
# cmake >= 3.26 for the bundled HDF5 2.2 build (hdf5-metno-src); Debian 12's is 3.25, setup.sh installs PyPI's
[ -x "$BIOEDGE_CACHE/venv/bin/cmake" ] && export CMAKE="${CMAKE:-$BIOEDGE_CACHE/venv/bin/cmake}"
export BIOEDGE_DATA="${BIOEDGE_DATA:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/../shared/data}"
# Cargo features of the scripts' builds (all off by default in the crates): OpenSlide, a system
# library setup.sh installs, and burn's wgpu (GPU) backend, which the tests run on Mesa's lavapipe
# (Vulkan on the CPU, also installed by setup.sh) when there is no GPU.
export BIOEDGE_FEATURES="infer/openslide,e2e/openslide,train/wgpu,e2e/wgpu"

#!/usr/bin/env bash
# HDF5 is built by hdf5-metno-src's build script, which cargo reruns when that crate changes, not
# when io/hdf5/fixes.cmake (bioedge's fixes, applied through CMake) does. Drop that build from a
# cargo target dir whose HDF5 was built with other fixes, or none, so the next build redoes it.
#
#   bash scripts/hdf5-fixes-stamp.sh TARGET_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$1"
sum=$(sha256sum io/hdf5/fixes.cmake .cargo/config.toml | sha256sum | cut -d' ' -f1)
stamp="$dir/hdf5-fixes.sha256"
if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
  # every profile, with or without an explicit --target (cargo fuzz builds for the host triple)
  for p in "$dir"/{,*/}{release,debug}; do
    [ -d "$p" ] && rm -rf "$p"/build/hdf5-metno-src-* "$p"/.fingerprint/hdf5-metno-src-*
  done
  mkdir -p "$dir"
  echo "$sum" >"$stamp"
fi

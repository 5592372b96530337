#!/usr/bin/env bash
# The GPU run of issue 18, prepared for ONE device call (docs/gpu.md says which).
#
#   bash scripts/gpu.sh --pack      here: build, then fill .gpu/ (git-ignored): the stripped `train`
#                                   and libonnxruntime (xz), the shared libraries `train` needs beyond
#                                   glibc, a HER2ST subset (B4, C2) and Cora, the Vulkan loader .debs
#   bash scripts/gpu.sh --sizes     here: what would travel now (tree + untracked + .gpu) vs 64 MiB
#   bash scripts/gpu.sh --dry-run   here: every step, shorter, on whatever Vulkan device there is
#                                   (lavapipe on the CPU); results in OUT (default /tmp/gpu_out)
#   bash scripts/gpu.sh             on the device machine (in the run's repo copy, `.gpu` carried):
#                                   (1) nvidia-smi, Vulkan loader/ICD; (2) `train spot --config large`
#                                   on wgpu: steps/s, loss curve; (3) the same steps on the CPU (flex);
#                                   (4) Cora GCN/GAT on wgpu, accuracy + export parity; (5) the same
#                                   spot architecture in PyTorch on CUDA; (6) $OUT/gpu.log + summary.json
#   PARTS=cv bash scripts/gpu.sh    on the device, a second call: the large config's full-length
#                                   training through the histology protocol (`train spot-cv --config
#                                   large --device gpu`, C -> B4, 3 seeds, 20 epochs; CV_ARGS), its
#                                   REPORT.md and results.json in $OUT/spot-cv-large/
#
# Step sizes can be overridden from the environment (SPOTS, BATCH, EPOCHS, ...; see `defaults`).
# Every step runs under its own `timeout`, so one slow step cannot take the others down; the whole
# run is sized to end inside 8 minutes on the H200 machine (16 cores).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
G=$ROOT/.gpu
MODE=device
case "${1:-}" in
  --pack) MODE=pack ;;
  --dry-run) MODE=dry ;;
  --sizes) MODE=sizes ;;
  "") ;;
  *) echo "usage: bash scripts/gpu.sh [--pack | --sizes | --dry-run]" >&2; exit 2 ;;
esac

# ---------------------------------------------------------------------------------------------
# --pack (here)
# ---------------------------------------------------------------------------------------------
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

pack() {
  set -e
  # shellcheck source=/dev/null
  source scripts/env.sh
  if [ "${GPU_NO_BUILD:-0}" != 1 ]; then
    cargo build --release --workspace --features "$BIOEDGE_FEATURES"
  fi
  local bin="$CARGO_TARGET_DIR/release/train"
  grep -aq 'cubecl-wgpu' "$bin" || { echo "error: $bin was built without train/wgpu" >&2; exit 1; }
  [ "$(dpkg --print-architecture)" = amd64 ] || { echo "error: pack on an amd64 machine (the device is x86-64)" >&2; exit 1; }
  mkdir -p .git/info
  grep -qxF '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >>.git/info/exclude
  rm -rf "$G"
  mkdir -p "$G"/bin "$G"/deb "$G"/deb-tools "$G"/data/her2st "$G"/data/cora
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  echo "packing train ($(mib "$(stat -c %s "$bin")") unstripped) ..."
  cp "$bin" "$tmp/train"
  strip "$tmp/train"
  xz -T0 -6 -c "$tmp/train" >"$G/bin/train.xz"
  cp "$ORT_DYLIB_PATH" "$tmp/libonnxruntime.so"
  strip "$tmp/libonnxruntime.so"
  xz -T0 -6 -c "$tmp/libonnxruntime.so" >"$G/bin/libonnxruntime.so.xz"
  # GLIBC versions the binary needs (compared with the device's glibc there)
  objdump -T "$tmp/train" | grep -o 'GLIBC_[0-9.]*' | sort -Vu | tail -1 >"$G/bin/glibc-needed.txt"
  # the shared libraries `train` links beyond glibc and libgcc (none since HDF5 is built in; the
  # list may be empty), from this Debian 12; used there only where the system lacks one (or GPU_FORCE_LIBS=1)
  mkdir "$tmp/lib"
  ldd "$bin" | awk '/=> \// {print $3}' |
    { grep -vE '/(libc|libm|libdl|libpthread|librt|libresolv|libutil|libnsl|libanl|libgcc_s|ld-linux-x86-64)\.so' || true; } |
    while read -r l; do cp -L "$l" "$tmp/lib/"; done
  tar -C "$tmp" -cJf "$G/bin/lib.tar.xz" lib
  # the Vulkan loader and GL dispatch libraries (the device README's recipe: unpacked into / there),
  # and vulkaninfo with the X/Wayland client libraries it links (unpacked into /tmp only)
  (cd "$G/deb" && apt-get download -q libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 2>&1 | grep -v '^W:' || true)
  (cd "$G/deb-tools" && apt-get download -q vulkan-tools libwayland-client0 libx11-6 libx11-data libxcb1 libxau6 libxdmcp6 libbsd0 libmd0 2>&1 | grep -v '^W:' || true)
  ls "$G"/deb/libvulkan1_*.deb >/dev/null
  # data: the five HER2ST sections (B4 -> C2 for the step timings, all of them for the protocol
  # part `cv`) and Cora (Planetoid, derived tables)
  cp -r "$BIOEDGE_DATA"/her2st/* "$G/data/her2st/"
  cp "$BIOEDGE_DATA"/planetoid/derived/cora.* "$BIOEDGE_DATA/planetoid/SOURCE.txt" "$G/data/cora/"
  chmod -R u+w "$G"
  sizes
}

# what travels with a `run` call: tracked + untracked-not-ignored files + the carried .gpu
sizes() {
  echo
  echo "== .gpu/ (name it in carry: [\".gpu\"])"
  du -sb "$G"/bin/* "$G"/deb "$G"/deb-tools "$G"/data/her2st "$G"/data/cora | while read -r b p; do
    printf '  %-10s %s\n' "$(mib "$b")" "${p#"$ROOT"/}"
  done
  local tree untracked carry total
  tree=$(git ls-files -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
  untracked=$(git ls-files -z -o --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
  carry=$(du -sb "$G" | cut -f1)
  total=$((tree + ${untracked:-0} + carry))
  echo "== what travels: tracked $(mib "$tree") + untracked-not-ignored $(mib "${untracked:-0}") + .gpu $(mib "$carry") = $(mib "$total") (limit 64 MiB)"
  [ "$total" -le $((64 * 1048576)) ] || { echo "error: over the 64 MiB limit" >&2; return 1; }
}

if [ "$MODE" = pack ]; then
  pack
  exit $?
elif [ "$MODE" = sizes ]; then
  sizes
  exit $?
fi

# ---------------------------------------------------------------------------------------------
# the run (device, or --dry-run here)
# ---------------------------------------------------------------------------------------------
[ -f "$G/bin/train.xz" ] || { echo "error: no .gpu/bin/train.xz: run \`bash scripts/gpu.sh --pack\` first (and carry .gpu)" >&2; exit 2; }
OUT=${OUT:-/tmp/gpu_out}
W=${GPU_WORK:-/tmp/bioedge-gpu}
rm -rf "$W"
mkdir -p "$OUT" "$W/xdg"
chmod 700 "$W/xdg"
export XDG_RUNTIME_DIR=$W/xdg
exec > >(tee -a "$OUT/gpu.log") 2>&1

defaults() {
  # spot: spots per section (B4 train, C2 held out), genes, batch sizes (the first is the main
  # comparison; more are run last, if time is left), epochs (steps = epochs x ceil(spots / batch));
  # the CPU repeats the first batch size's steps. BUDGET: seconds for the whole run; a step gets
  # min(its limit, what is left - 20 s) and is skipped when under 20 s are left.
  if [ "$MODE" = dry ]; then
    : "${SPOTS:=16}" "${GENES:=50}" "${BATCHES:=8}" "${EPOCHS:=3}" "${CPU_EPOCHS:=3}"
    : "${CORA_SEEDS:=1}" "${CORA_EPOCHS:=20}" "${TORCH_STEPS:=3}" "${TORCH_WARMUP:=1}"
    : "${T_SPOT:=900}" "${T_SPOT_CPU:=900}" "${T_CORA:=300}" "${T_TORCH:=120}" "${BUDGET:=3000}" "${GPU_FORCE_LIBS:=1}"
    : "${CV_ARGS:=--protocol lopo --folds B4 --seeds 0 --epochs 1 --max-spots 8 --genes top:10 --jobs 1}" "${T_CV:=900}"
  else
    : "${SPOTS:=128}" "${GENES:=250}" "${BATCHES:=8 32}" "${EPOCHS:=8}" "${CPU_EPOCHS:=8}"
    : "${CORA_SEEDS:=3}" "${CORA_EPOCHS:=}" "${TORCH_STEPS:=100}" "${TORCH_WARMUP:=10}"
    : "${T_SPOT:=100}" "${T_SPOT_CPU:=110}" "${T_CORA:=90}" "${T_TORCH:=45}" "${BUDGET:=420}" "${GPU_FORCE_LIBS:=0}"
    # cv (its own call: PARTS=cv BUDGET=570): C -> B4 trains on three C sections (~ 550 spots,
    # 69 steps of 8 an epoch: ~ 8 s at the measured 9 steps/s) and validates on the fourth; the
    # three seeds run at once (the GPU was busy 37 % of a batch-8 run)
    : "${CV_ARGS:=--protocol lopo --folds B4 --seeds 0,1,2 --epochs 20 --genes top:250 --jobs 3}" "${T_CV:=550}"
  fi
  # parts to run (a rerun can name fewer): spot-gpu spot-cpu torch cora extra; and cv, alone
  : "${PARTS:=spot-gpu spot-cpu torch cora extra}"
}
defaults
now() { echo "$EPOCHREALTIME"; }
T_START=$(now)
say() { printf '\n=== %s\n' "$*"; }
meta() { printf '=== meta %s %s\n' "$1" "$2"; }

part() { [[ " $PARTS " == *" $1 "* ]]; }
left() { awk -v a="$T_START" -v b="$(now)" -v B="$BUDGET" 'BEGIN { printf "%d", B - (b - a) }'; }

# A step: its output lines tagged `[name] <unix time>` (for steps/s), under `timeout LIMIT` (cut to
# the time left in BUDGET).
step() {
  local name=$1 limit=$2 rest
  shift 2
  rest=$(($(left) - 20))
  if [ "$rest" -lt 1 ]; then
    printf '=== skip %s: out of time (BUDGET %s s)\n' "$name" "$BUDGET"
    return 0
  fi
  [ "$rest" -lt "$limit" ] && limit=$rest
  printf '=== run %s start %s: (timeout %s s) %s\n' "$name" "$(now)" "$limit" "$*"
  timeout -k 10 "$limit" "$@" 2>&1 | while IFS= read -r l; do printf '[%s] %s %s\n' "$name" "$EPOCHREALTIME" "$l"; done
  local rc=${PIPESTATUS[0]}
  printf '=== run %s end %s rc=%s%s\n' "$name" "$(now)" "$rc" "$([ "$rc" = 124 ] && echo ' (timed out)')"
  return 0
}

say "bioedge GPU run ($MODE) $(date -u +%FT%TZ), host $(hostname), $(nproc) cores, OUT=$OUT"
meta config "{\"mode\":\"$MODE\",\"budget_s\":$BUDGET,\"parts\":\"$PARTS\",\"spots\":$SPOTS,\"genes\":$GENES,\"batches\":\"$BATCHES\",\"epochs\":$EPOCHS,\"cpu_epochs\":$CPU_EPOCHS,\"cora_seeds\":$CORA_SEEDS,\"torch_steps\":$TORCH_STEPS,\"nproc\":$(nproc)}"
git -C "$ROOT" log -1 --format='commit %H %cd' 2>/dev/null || true
grep -E '^(PRETTY_NAME|VERSION_ID)=' /etc/os-release 2>/dev/null
echo "glibc: $(getconf GNU_LIBC_VERSION 2>/dev/null); train needs up to $(cat "$G/bin/glibc-needed.txt" 2>/dev/null)"

# --- (1) GPU, Vulkan loader and ICD --------------------------------------------------------
say "(1) nvidia-smi"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  # GPU load (%) and memory (MiB) once a second for the whole run (the summary reads them per step)
  (while :; do
    printf '%s, %s\n' "$EPOCHREALTIME" "$(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits | head -1)"
    sleep 1
  done) >"$W/smi.csv" 2>/dev/null &
  SMI_PID=$!
else
  echo "nvidia-smi: not found (no NVIDIA driver here)"
  SMI_PID=
fi

say "(1) Vulkan loader and ICDs"
if ! ldconfig -p | grep -q 'libvulkan\.so\.1'; then
  if [ "$MODE" = device ]; then
    echo "no libvulkan.so.1: unpacking the carried loader .debs into /"
    for f in "$G"/deb/*.deb; do dpkg -x "$f" /; done
    ldconfig
  else
    echo "no libvulkan.so.1 and not on the device: not touching /"
  fi
fi
ldconfig -p | grep -E 'libvulkan\.so|libGLX_nvidia|libEGL_nvidia' || echo "(no Vulkan loader / NVIDIA GL libraries in ldconfig)"
for d in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d; do
  [ -d "$d" ] && for f in "$d"/*.json; do [ -f "$f" ] && echo "ICD $f: $(tr -d '\n ' <"$f" | grep -o '"library_path":"[^"]*"')"; done
done
NV_ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ "$MODE" = device ] && [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$NV_ICD" ]; then
  export VK_DRIVER_FILES=$NV_ICD VK_ICD_FILENAMES=$NV_ICD
  [ -f /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json ] &&
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  echo "VK_DRIVER_FILES=$VK_DRIVER_FILES"
fi
if command -v vulkaninfo >/dev/null; then
  timeout 30 vulkaninfo --summary 2>&1 | head -60
else
  mkdir -p "$W/vkt"
  for f in "$G"/deb-tools/*.deb; do dpkg -x "$f" "$W/vkt"; done
  LD_LIBRARY_PATH=$W/vkt/usr/lib/x86_64-linux-gnu timeout 30 "$W/vkt/usr/bin/vulkaninfo" --summary 2>&1 | head -60 ||
    echo "(carried vulkaninfo failed)"
fi

# --- the binary -------------------------------------------------------------------------------
say "unpacking train and libonnxruntime"
unxz_to() {
  if command -v xz >/dev/null; then xz -dc "$1" >"$2"; else python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; fi
}
BIN=$W/train
unxz_to "$G/bin/train.xz" "$BIN" && chmod +x "$BIN"
unxz_to "$G/bin/libonnxruntime.so.xz" "$W/libonnxruntime.so"
export ORT_DYLIB_PATH=$W/libonnxruntime.so
LIBP=
missing=$(ldd "$BIN" 2>&1 | grep 'not found' || true)
if [ -n "$missing" ] || [ "$GPU_FORCE_LIBS" = 1 ]; then
  [ -n "$missing" ] && printf 'missing here:\n%s\n' "$missing"
  mkdir -p "$W/libs" && tar -C "$W/libs" -xJf "$G/bin/lib.tar.xz" 2>/dev/null || python3 -c 'import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$G/bin/lib.tar.xz" "$W/libs"
  LIBP=$W/libs/lib
  echo "train runs with the carried libraries (LD_LIBRARY_PATH=$LIBP)"
fi
# the NVIDIA ICD (libGLX_nvidia.so.0) must be found by the loader: add the driver's folder where
# ldconfig does not know it
NVLIB=
if ! ldconfig -p | grep -q libGLX_nvidia && [ -e /usr/local/nvidia/lib64/libGLX_nvidia.so.0 ]; then
  NVLIB=/usr/local/nvidia/lib64
  echo "libGLX_nvidia.so.0 only in $NVLIB: added to train's LD_LIBRARY_PATH"
fi
TLP=$LIBP${NVLIB:+${LIBP:+:}$NVLIB}
TRAIN=("$BIN")
[ -n "$TLP" ] && TRAIN=(env "LD_LIBRARY_PATH=$TLP" "$BIN")
if ! "${TRAIN[@]}" --version; then
  echo "FATAL: train does not start here (glibc or a library: see above)"
fi
LD_LIBRARY_PATH=$TLP ldd "$BIN" | grep -E 'not found|hdf5|curl' || true

HER=$G/data/her2st
spot() { # name device batch epochs
  local s=$((SPOTS < 283 ? SPOTS : 283)) limit=$T_SPOT
  [ "$2" = cpu ] && limit=$T_SPOT_CPU
  meta "$1" "{\"device\":\"$2\",\"batch\":$3,\"epochs\":$4,\"steps_per_epoch\":$(((s + $3 - 1) / $3)),\"spots\":$s,\"genes\":$GENES,\"config\":\"large\"}"
  step "$1" "$limit" "${TRAIN[@]}" spot --data "$HER" --train B4 --eval C2 --genes "$GENES" --config large \
    --device "$2" --batch-size "$3" --max-spots "$SPOTS" --epochs "$4" --eval-every 0 --out "$W/$1.onnx"
}

# --- (2) spot, large config, wgpu (first batch size) -------------------------------------------
FIRST_B=${BATCHES%% *}
MORE_B=${BATCHES#"$FIRST_B"}
if part spot-gpu; then
  say "(2) train spot --config large on wgpu, batch $FIRST_B"
  spot "spot-gpu-b$FIRST_B" gpu "$FIRST_B" "$EPOCHS"
fi

# --- (3) the same steps on the CPU (flex, all cores) --------------------------------------------
if part spot-cpu; then
  say "(3) train spot --config large on the CPU (flex, $(nproc) cores), batch $FIRST_B"
  spot "spot-cpu-b$FIRST_B" cpu "$FIRST_B" "$CPU_EPOCHS"
fi

# --- (5) PyTorch, the same spot architecture and batch sizes ------------------------------------
PY=${GPU_PYTHON:-python3}
torch_spot() { # batch
  for att in math sdpa; do
    step "torch-$TDEV-b$1-$att" "$T_TORCH" env PYTHONUNBUFFERED=1 "$PY" scripts/gpu/spot_torch.py --config large --genes "$GENES" \
      --batch "$1" --steps "$TORCH_STEPS" --warmup "$TORCH_WARMUP" --device "$TDEV" --attention "$att"
  done
}
TDEV=
if part torch; then
  say "(5) PyTorch spot model (same architecture, batch $FIRST_B)"
  if "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)' 2>/dev/null; then
    TDEV=cuda
  elif [ "$MODE" = dry ] && "$PY" -c 'import torch' 2>/dev/null; then
    TDEV=cpu
    echo "no CUDA here: the PyTorch part runs on the CPU, only to check the script"
  else
    echo "PyTorch with CUDA not available ($PY): skipped"
  fi
  if [ -n "$TDEV" ]; then
    "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())'
    torch_spot "$FIRST_B"
  fi
fi

# --- (4) Cora GCN / GAT on wgpu -----------------------------------------------------------------
cora() { # model device
  meta "cora-$1-$2" "{\"device\":\"$2\",\"seeds\":$CORA_SEEDS}"
  step "cora-$1-$2" "$T_CORA" "${TRAIN[@]}" "node-$1" --data "$G/data/cora/cora" --seeds "$CORA_SEEDS" \
    ${CORA_EPOCHS:+--epochs "$CORA_EPOCHS"} --device "$2" --out "$W/cora-$1-$2.onnx"
}
if part cora; then
  for m in gcn gat; do
    say "(4) train node-$m on wgpu (Cora, $CORA_SEEDS seeds)"
    cora "$m" gpu
  done
fi

# --- the large config through the protocol (PARTS=cv, a call of its own) ---------------------
if part cv; then
  say "(7) train spot-cv --config large --device gpu $CV_ARGS"
  mkdir -p "$OUT/spot-cv-large"
  # shellcheck disable=SC2086
  step cv-large "$T_CV" "${TRAIN[@]}" spot-cv --data "$HER" --config large --device gpu \
    --out-dir "$OUT/spot-cv-large" $CV_ARGS
fi

# --- extras, if time is left: more batch sizes (wgpu and PyTorch), Cora GCN on the CPU ----------
if part extra; then
  for b in $MORE_B; do
    say "(2) train spot --config large on wgpu, batch $b"
    spot "spot-gpu-b$b" gpu "$b" "$EPOCHS"
    [ -n "$TDEV" ] && { say "(5) PyTorch spot model, batch $b"; torch_spot "$b"; }
  done
  say "(4) train node-gcn on the CPU for the ratio (Cora, $CORA_SEEDS seeds)"
  cora gcn cpu
fi

# --- (6) summary -------------------------------------------------------------------------------
[ -n "$SMI_PID" ] && kill "$SMI_PID" 2>/dev/null
[ -f "$W/smi.csv" ] && { say "nvidia-smi samples"; sed 's/^/[smi] /' "$W/smi.csv"; }
say "summary ($(awk -v a="$T_START" -v b="$(now)" 'BEGIN{printf "%.0f", b-a}') s in all)"
python3 scripts/gpu/summary.py "$OUT/gpu.log" "$OUT/summary.json" || echo "summary.py failed: the raw log is $OUT/gpu.log"
ls -la "$OUT"

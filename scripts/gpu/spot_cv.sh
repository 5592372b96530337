#!/usr/bin/env bash
# `train spot-cv` on the lent device machine's CPU cores (16 there, 2 here): the whole histology
# protocol table in one call instead of 51 minutes on this machine.
#
#   bash scripts/gpu/spot_cv.sh --pack            here: the stripped `train` (xz) and every HER2ST
#                                                 section into .gpu/cv/ (git-ignored, about 42 MiB)
#   bash scripts/gpu/spot_cv.sh [SPOT-CV ARGS]    there (device `run`, carry [".gpu/cv"]): runs
#                                                 `train spot-cv --jobs <cores> ARGS`; REPORT.md,
#                                                 results.json and the log go to $OUT
set -euo pipefail
cd "$(dirname "$0")/../.."
G=.gpu/cv

if [ "${1:-}" = --pack ]; then
  # shellcheck source=/dev/null
  source scripts/env.sh
  cargo build --release --workspace --features "$BIOEDGE_FEATURES"
  mkdir -p .git/info
  grep -qxF '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >>.git/info/exclude
  rm -rf "$G" && mkdir -p "$G"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  cp "$CARGO_TARGET_DIR/release/train" "$tmp/train" && strip "$tmp/train"
  xz -T0 -6 -c "$tmp/train" >"$G/train.xz"
  cp -r "$BIOEDGE_DATA/her2st" "$G/her2st"
  git rev-parse HEAD >"$G/commit.txt"
  du -sh "$G"
  exit 0
fi

[ -f "$G/train.xz" ] || { echo "error: no $G/train.xz: run \`bash scripts/gpu/spot_cv.sh --pack\` here first and carry $G" >&2; exit 2; }
OUT=${OUT:-out/spot-cv-device}
mkdir -p "$OUT"
W=$(mktemp -d)
if command -v xz >/dev/null; then xz -dc "$G/train.xz" >"$W/train"; else
  python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$G/train.xz" "$W/train"
fi
chmod +x "$W/train"
JOBS=${JOBS:-$(nproc)}
{
  echo "commit $(cat "$G/commit.txt"); $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-); jobs $JOBS"
  echo "args: $*"
  date -u
} | tee "$OUT/spot_cv.log"
start=$(date +%s)
# one thread per run: the runs themselves fill the cores
set +e
RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-1} timeout "${CV_TIMEOUT:-560}" \
  "$W/train" spot-cv --data "$G/her2st" --jobs "$JOBS" --out-dir "$W/report" "$@" 2>&1 | tee -a "$OUT/spot_cv.log"
rc=${PIPESTATUS[0]}
set -e
echo "rc=$rc wall_s=$(($(date +%s) - start))" | tee -a "$OUT/spot_cv.log"
cp "$W"/report/REPORT.md "$W"/report/results.json "$OUT/" 2>/dev/null || true
exit "$rc"

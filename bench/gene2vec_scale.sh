#!/usr/bin/env bash
# Gene2Vec at the seed's scale (23,112 genes × 20,608 sets, the seed's MSigDB input): time per
# epoch and peak memory of `train gene2vec` on a synthetic GMT of that size. The sets are random
# (set sizes drawn from GO BP's, tripled to MSigDB's larger mean; genes drawn with a Zipf-like
# popularity so gene degrees are skewed as in real collections): the timing and memory are what
# this measures, not embedding quality.
# Usage: bash bench/gene2vec_scale.sh [epochs=2]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
epochs=${1:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build -q --release --workspace --features "$BIOEDGE_FEATURES"
"$BIOEDGE_PYTHON" - "$work/seed_scale.gmt" <<'PY'
import sys, numpy as np
rng = np.random.default_rng(0)
sizes = [len([g for g in l.rstrip("\n").split("\t")[2:] if g]) for l in open("../shared/data/go_bp_enrichr/GO_Biological_Process_2021.gmt")]
G, S = 23112, 20608
pop = 1.0 / np.arange(1, G + 1) ** 0.6
pop /= pop.sum()
total = 0
with open(sys.argv[1], "w") as f:
    for s in range(S):
        k = min(G // 4, 3 * sizes[rng.integers(len(sizes))])
        genes = rng.choice(G, size=k, replace=False, p=pop)
        total += k
        f.write(f"SET_{s}\tsynthetic\t" + "\t".join(f"G{g}" for g in sorted(genes)) + "\n")
print(f"synthetic GMT: {G} genes, {S} sets, {total} memberships", file=sys.stderr)
PY
/usr/bin/time -v "$CARGO_TARGET_DIR/release/train" gene2vec --gmt "$work/seed_scale.gmt" --epochs "$epochs" --out "$work/seed_scale.onnx" 2>&1 \
  | grep -E "gene sets|^epoch|^gene2vec:|held-out member pairs vs degree|recovery|parity|Maximum resident|Elapsed \(wall"

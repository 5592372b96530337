#!/usr/bin/env bash
# Serves out/web/ on 127.0.0.1 only (default port 8080): `bash wasm/serve.sh [PORT]`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec node wasm/serve.mjs "${BIOEDGE_WEB:-out/web}" "${1:-8080}"

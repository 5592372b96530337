#!/usr/bin/env bash
# Serves out/web/ on 127.0.0.1 only (default port 8080): `bash wasm/serve.sh [PORT] [--isolate]`
# (--isolate: COOP/COEP headers, a cross-origin isolated page; see wasm/serve.mjs).
set -euo pipefail
cd "$(dirname "$0")/.."
exec node wasm/serve.mjs "${BIOEDGE_WEB:-out/web}" "$@"

#!/usr/bin/env bash
# Measure a hello world three ways in one run (host interpreter, `docker run --rm`, tracebox
# POST /execute) against a release server on its own data directory, and print the table.
# Arguments go to the benchmark (e.g. --runs 50).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prepare.sh
cargo build --release --bin tracebox --example bench
data=$(mktemp -d)
port=${BENCH_PORT:-5055}
TRACEBOX_DATA_DIR=$data TRACEBOX_ADDR=127.0.0.1:$port TRACEBOX_LOG=warn "${CARGO_TARGET_DIR:-target}/release/tracebox" serve &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
"${CARGO_TARGET_DIR:-target}/release/examples/bench" --server "http://127.0.0.1:$port" "$@"

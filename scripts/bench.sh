#!/usr/bin/env bash
# The warm pool, measured in one run: the host interpreters (the floor), `docker run --rm` (the
# baseline), the engine's own container rate, and tracebox POST /execute against release servers
# it starts in both isolation modes; prints the tables (docs/benchmarks.md has a run). Arguments
# go to the benchmark (e.g. --runs 50 --rss-runs 2000).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prepare.sh
# The floor is the same hello world run by the host's own interpreters, which a fresh CI
# machine may lack.
if ! command -v python3 >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  echo "[bench] installing python3 and nodejs on the host, for the floor" >&2
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 nodejs >/dev/null
fi
# --smoke (CI): every step in seconds, figures meaningless, so a debug build does.
profile=release out=release
for arg in "$@"; do if [ "$arg" = --smoke ]; then profile=dev out=debug; fi; done
cargo build --profile "$profile" --bin tracebox --example bench
bin=${CARGO_TARGET_DIR:-target}/$out
"$bin/tracebox" image build
"$bin/examples/bench" --tracebox "$bin/tracebox" "$@"

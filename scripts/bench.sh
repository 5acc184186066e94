#!/usr/bin/env bash
# The warm pool, measured in one run: the host interpreters (the floor), `docker run --rm` (the
# baseline), the engine's own container rate, and tracebox POST /execute against release servers
# it starts in both isolation modes; prints the tables (docs/benchmarks.md has a run). Arguments
# go to the benchmark (e.g. --runs 50 --rss-runs 2000).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prepare.sh
cargo build --release --bin tracebox --example bench
target=${CARGO_TARGET_DIR:-target}
"$target/release/tracebox" image build
"$target/release/examples/bench" --tracebox "$target/release/tracebox" "$@"

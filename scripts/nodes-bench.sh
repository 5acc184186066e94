#!/usr/bin/env bash
# Nodes, measured in one run (examples/nodes_bench.rs): placement's cost on a run, a schedule of
# hello-world tasks on one engine against three, failover detection and recovery, leaks on every
# engine. Starts the two extra engines of scripts/nodes.sh and stops them at the end. Prints the
# tables (docs/benchmarks.md has a run); fails only on a wrong answer or a leak. Arguments go to
# the benchmark (e.g. --runs 500 --tasks 100 --heartbeat 1).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prepare.sh
# --smoke (CI): every step in seconds, figures meaningless, so a debug build does.
profile=release out=release
for arg in "$@"; do if [ "$arg" = --smoke ]; then profile=dev out=debug; fi; done
cargo build --profile "$profile" --bin tracebox --example nodes_bench
bin=${CARGO_TARGET_DIR:-target}/$out
"$bin/tracebox" image build
"$bin/examples/nodes_bench" --tracebox "$bin/tracebox" "$@"

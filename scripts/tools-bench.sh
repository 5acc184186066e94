#!/usr/bin/env bash
# Agent tools, measured (issue 15's targets): each tool's round trip on a small repository, a
# sandbox made from a 50 MB one, a 50-step replay against the time its steps took; prints the
# table (docs/benchmarks.md has a run). Arguments go to the benchmark (e.g. --runs 50).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prepare.sh
# --smoke (CI): every step in seconds, figures meaningless, so a debug build does.
profile=release out=release
for arg in "$@"; do if [ "$arg" = --smoke ]; then profile=dev out=debug; fi; done
cargo build --profile "$profile" --bin tracebox --example tools_bench
bin=${CARGO_TARGET_DIR:-target}/$out
"$bin/tracebox" image build
"$bin/examples/tools_bench" --tracebox "$bin/tracebox" "$@"

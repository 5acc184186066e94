#!/usr/bin/env bash
# The trace list at scale: seed a fresh store (100,000 traces unless --traces says otherwise)
# and a 1,000-trace baseline, serve each with a release tracebox, and print how long the list,
# filters, search, a deep page and one trace take over HTTP. Arguments go to the benchmark
# (e.g. --traces 100000 --runs 50).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prepare.sh
# --smoke (CI): every step in seconds, figures meaningless, so a debug build does.
profile=release out=release
for arg in "$@"; do if [ "$arg" = --smoke ]; then profile=dev out=debug; fi; done
cargo build --profile "$profile" --bin tracebox --example trace_bench
bin=${CARGO_TARGET_DIR:-target}/$out
"$bin/examples/trace_bench" --tracebox "$bin/tracebox" "$@"

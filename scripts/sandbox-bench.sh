#!/usr/bin/env bash
# Stateful sandboxes, measured in one run against release servers it starts: creating one (a
# warm container adopted, back to back, and cold) against `docker run --rm`, deleting one, a
# command, a Python cell and 1 MiB written and read against `docker exec` and `docker cp`, pause
# and resume and snapshot and reset with 10 MB of files, many idle sandboxes at once (memory,
# server RSS, creation beside them), and what is left after deleting everything, stopping, and
# after a `kill -9` and a restart; each row beside a one-shot `/execute` of the same run and
# issue 14's target. Prints the tables (docs/benchmarks.md has a run); fails only on a wrong
# answer or a leak. Arguments go to the benchmark (e.g. --runs 50 --idle 100).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prepare.sh
# --smoke (CI): every step in seconds, figures meaningless, so a debug build does.
profile=release out=release
for arg in "$@"; do if [ "$arg" = --smoke ]; then profile=dev out=debug; fi; done
cargo build --profile "$profile" --bin tracebox --example sandbox_bench
bin=${CARGO_TARGET_DIR:-target}/$out
"$bin/tracebox" image build
"$bin/examples/sandbox_bench" --tracebox "$bin/tracebox" "$@"

#!/usr/bin/env bash
# One command to run every test on a fresh Debian machine with the Rust toolchain: installs and
# starts the Docker engine when absent, installs headless Chromium for the browser tests, builds
# the sandbox image, runs the unit and integration tests (real engine, real SQLite, real HTTP,
# real browser), then checks that no sandbox container was left.
# Arguments go to `cargo test` (e.g. scripts/test.sh isolation).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prepare.sh
scripts/ensure-chromium.sh
cargo build --workspace --tests
# Build the image once here, so the test servers, started in parallel, find it ready.
"${CARGO_TARGET_DIR:-target}/debug/tracebox" image build
cargo test --workspace "$@"

left=$(docker ps -aq --filter label=tracebox)
if [ -n "$left" ]; then
  echo "[test] sandbox containers were left behind:" >&2
  docker ps -a --filter label=tracebox >&2
  exit 1
fi
echo "[test] no sandbox container left behind" >&2

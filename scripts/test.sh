#!/usr/bin/env bash
# One command to run every test on a fresh Debian machine with the Rust toolchain: installs and
# starts the Docker engine when absent, installs headless Chromium for the browser tests, builds
# the sandbox image, runs the unit and integration tests (real engine, real SQLite, real HTTP,
# real browser), then the Python SDK's tests against the debug binary (scripts/sdk-test.sh),
# then checks that the tests left no sandbox container behind.
# Arguments go to `cargo test` (e.g. scripts/test.sh isolation), and then skip the SDK's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prepare.sh
scripts/ensure-chromium.sh
cargo build --workspace --tests
# Build the image once here, so the test servers, started in parallel, find it ready.
"${CARGO_TARGET_DIR:-target}/debug/tracebox" image build
# Containers another process on this machine left or runs (a killed server, another
# checkout's tests on its own image) are not this run's doing: only the ones of this image
# that appear during the tests count as leaks.
before=$(docker ps -aq --no-trunc --filter label=tracebox --filter "ancestor=${TRACEBOX_IMAGE:-tracebox-sandbox:latest}" | sort)
cargo test --workspace "$@"
if [ $# -eq 0 ]; then
  TRACEBOX_BIN="${CARGO_TARGET_DIR:-target}/debug/tracebox" scripts/sdk-test.sh
fi

# The node tests (tests/it/nodes.rs) start extra engines with scripts/nodes.sh; whatever of
# tracebox's is left on them is a leak too. Then they are stopped (their data roots stay).
node_left=""
for node in node-a node-b node-tls; do
  if host=$(scripts/nodes.sh host "$node" 2>/dev/null) && docker --host "$host" info >/dev/null 2>&1; then
    node_left+=$(docker --host "$host" ps -aq --no-trunc --filter label=tracebox | sed "s/^/$node:/")
  fi
done
scripts/nodes.sh down node-a node-b node-tls
if [ -n "$node_left" ]; then
  echo "[test] sandbox containers were left on the node engines: $node_left" >&2
  exit 1
fi

after=$(docker ps -aq --no-trunc --filter label=tracebox --filter "ancestor=${TRACEBOX_IMAGE:-tracebox-sandbox:latest}" | sort)
left=$(comm -13 <(echo "$before") <(echo "$after") | grep . || true)
if [ -n "$left" ]; then
  echo "[test] sandbox containers were left behind:" >&2
  for id in $left; do docker ps -a --no-trunc --filter "id=$id" --format '{{.ID}} {{.Image}} {{.Status}} {{.Names}}' >&2; done
  exit 1
fi
echo "[test] no sandbox container left behind" >&2

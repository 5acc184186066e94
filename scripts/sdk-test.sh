#!/usr/bin/env bash
# The Python SDK's tests (sdk/python/tests), against a real tracebox server that the test
# session starts on a temporary data directory, with API keys on and the real Docker engine.
#
# Makes what it needs: Python 3.10+ with venv (Debian's python3-venv, installed when missing),
# a virtualenv with `pip install ./sdk/python[test]` (the package as users install it, not the
# source tree), the Docker engine and base image (scripts/prepare.sh), the tracebox binary and
# the sandbox image. Fails, never skips, when any of them cannot be had.
#
#   scripts/sdk-test.sh                  # everything
#   scripts/sdk-test.sh -k sandbox -x    # arguments go to pytest
#
# TRACEBOX_BIN picks the binary to test (scripts/test.sh passes the debug build it just made);
# without it, the release binary is built (cargo build --release, a no-op when up to date).
# TRACEBOX_SDK_VENV picks the virtualenv (default: $CARGO_TARGET_DIR/sdk-venv, or target/).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[sdk-test] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Docker first: without an engine nothing here can be tested.
source scripts/prepare.sh
if ! docker info >/dev/null 2>&1; then
  log "FAILED: no Docker engine answers (docker info); the SDK's tests need one. See scripts/ensure-docker.sh"
  exit 1
fi

if ! python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; then
  log "installing python3 and python3-venv (the SDK's tests run in a virtualenv)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
fi
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  log "FAILED: the SDK needs Python 3.10 or later; python3 is $(python3 --version 2>&1)"
  exit 1
fi

target=${CARGO_TARGET_DIR:-target}
if [ -z "${TRACEBOX_BIN:-}" ]; then
  log "building the release binary (cargo build --release --bin tracebox)"
  cargo build --release --bin tracebox
  TRACEBOX_BIN="$target/release/tracebox"
fi
if [ ! -x "$TRACEBOX_BIN" ]; then
  log "FAILED: no tracebox binary at $TRACEBOX_BIN"
  exit 1
fi
# Absolute: the tests run from sdk/python.
TRACEBOX_BIN=$(realpath "$TRACEBOX_BIN")
export TRACEBOX_BIN
# The image is built here, once, so that the test session's server finds it ready (a build
# inside the session would outlast its start-up patience).
"$TRACEBOX_BIN" image build

venv=$(realpath -m "${TRACEBOX_SDK_VENV:-$target/sdk-venv}")
if [ ! -x "$venv/bin/python" ]; then
  log "making the virtualenv $venv"
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q "./sdk/python[test]"
# The package as it is now, even when its version did not change.
"$venv/bin/python" -m pip install -q --force-reinstall --no-deps ./sdk/python

log "running the SDK's tests against $TRACEBOX_BIN"
cd sdk/python
"$venv/bin/python" -m pytest -p no:cacheprovider "$@"

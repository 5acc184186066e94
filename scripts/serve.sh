#!/usr/bin/env bash
# One command to a running server on a fresh Debian machine with the Rust toolchain: installs
# and starts the Docker engine when absent, gets a base image (pulled, or built offline from
# Debian's packages), builds tracebox, and serves on http://127.0.0.1:5000. Arguments go to
# `tracebox serve` (see `tracebox serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prepare.sh
cargo build --release
exec "${CARGO_TARGET_DIR:-target}/release/tracebox" serve "$@"

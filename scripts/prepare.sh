#!/usr/bin/env bash
# Sourced by serve.sh and test.sh: make sure a Docker engine runs and pick the base image the
# sandbox image builds on (exported as TRACEBOX_BASE_IMAGE).
#
#   1. TRACEBOX_BASE_IMAGE when it is set;
#   2. else debian:bookworm-slim when it is present or can be pulled;
#   3. else tracebox-base:bookworm, built from Debian's packages (no registry needed).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$here/ensure-docker.sh"

if ! command -v cc >/dev/null 2>&1; then
  echo "[prepare] installing a C compiler (the bundled SQLite is C)" >&2
  sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential >/dev/null
fi

if [ -z "${TRACEBOX_BASE_IMAGE:-}" ]; then
  if docker image inspect debian:bookworm-slim >/dev/null 2>&1 \
     || timeout 120 docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
    export TRACEBOX_BASE_IMAGE=debian:bookworm-slim
  else
    echo "[prepare] no registry reachable: using a base image built from Debian's packages" >&2
    "$here/build-base-image.sh" tracebox-base:bookworm
    export TRACEBOX_BASE_IMAGE=tracebox-base:bookworm
  fi
fi
echo "[prepare] sandbox base image: $TRACEBOX_BASE_IMAGE" >&2

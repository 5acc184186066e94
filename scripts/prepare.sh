#!/usr/bin/env bash
# Sourced by serve.sh, test.sh and the benchmarks: make sure a Docker engine runs and that a base
# image for the sandbox image is there. tracebox itself picks the base, by the one rule every
# command follows (README, "Command line"), so nothing is exported here:
#
#   1. TRACEBOX_BASE_IMAGE when it is set;
#   2. else the base the sandbox image was built on (its tracebox.base label);
#   3. else debian:bookworm-slim if present, else tracebox-base:bookworm if present;
#   4. else debian:bookworm-slim, pulled.
#
# Unless 1 holds or a base of 3 is present, this script pulls debian:bookworm-slim, or, with no
# registry reachable, builds tracebox-base:bookworm from Debian's packages.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$here/ensure-docker.sh"

if ! command -v cc >/dev/null 2>&1; then
  echo "[prepare] installing a C compiler (the bundled SQLite is C)" >&2
  sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential >/dev/null
fi

if ! command -v git >/dev/null 2>&1; then
  echo "[prepare] installing git (the server clones sandboxes' repositories)" >&2
  sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git >/dev/null
fi

has_image() { docker image inspect "$1" >/dev/null 2>&1; }
if [ -n "${TRACEBOX_BASE_IMAGE:-}" ]; then
  echo "[prepare] sandbox base image: $TRACEBOX_BASE_IMAGE (TRACEBOX_BASE_IMAGE)" >&2
elif has_image debian:bookworm-slim || has_image tracebox-base:bookworm; then
  :
elif timeout 120 docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
  echo "[prepare] pulled debian:bookworm-slim" >&2
else
  echo "[prepare] no registry reachable: building a base image from Debian's packages" >&2
  "$here/build-base-image.sh" tracebox-base:bookworm
fi

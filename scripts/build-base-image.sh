#!/usr/bin/env bash
# Build the sandbox's base image from Debian's packages, for machines that cannot pull from a
# container registry: debootstrap a minimal bookworm with Python 3 and Node.js into a temporary
# directory and `docker import` it (git, ripgrep and procps too: the agent tools use them). Idempotent: does nothing when the image already exists.
#
#   scripts/build-base-image.sh [IMAGE]      (default: tracebox-base:bookworm)
#
# Then `tracebox image build` builds the sandbox image on it, as every tracebox command does
# when TRACEBOX_BASE_IMAGE is unset and Docker lacks debian:bookworm-slim.
set -euo pipefail

image=${1:-tracebox-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
log() { printf '[build-base-image] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if docker image inspect "$image" >/dev/null 2>&1; then
  log "$image already exists"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

root=$(mktemp -d /tmp/tracebox-base.XXXXXX)
trap 'as_root rm -rf "$root"' EXIT
log "debootstrap bookworm (minbase + python3, nodejs, git, ripgrep, procps) into $root; this takes a few minutes"
as_root debootstrap --variant=minbase --include=python3,nodejs,git,ripgrep,procps,ca-certificates bookworm "$root" "$mirror" \
  | while IFS= read -r line; do
      case "$line" in I:\ Retrieving*|I:\ Validating*|I:\ Unpacking*|I:\ Configuring*|I:\ Extracting*) ;; *) log "$line" ;; esac
    done
# Package caches and lists are dead weight in every sandbox container.
as_root rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
log "importing $root as $image"
as_root tar -C "$root" -c . | docker import - "$image" >/dev/null
log "built $image ($(docker image inspect --format '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"

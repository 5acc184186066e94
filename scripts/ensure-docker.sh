#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine: install Debian's docker.io when the
# engine is missing, start dockerd in the background when it is not running, and wait until
# `docker info` answers. Idempotent; prints what it does. Needs root (or sudo) to install.
set -euo pipefail

log() { printf '[ensure-docker] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if docker info >/dev/null 2>&1; then
  log "Docker engine is running ($(docker version --format '{{.Server.Version}}'))"
  exit 0
fi

# docker.io is the engine; iproute2 (`ip`) is what the network-isolation tests use to find the
# host's bridge address.
if ! command -v dockerd >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1; then
  log "installing Debian's docker.io and iproute2"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io iproute2 >/dev/null
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
  # systemd is not always there (containers, CI sandboxes): start the daemon directly.
  log_file=${DOCKERD_LOG:-/var/log/dockerd.log}
  log "starting dockerd in the background (log: $log_file)"
  as_root sh -c "nohup dockerd >'$log_file' 2>&1 &"
fi

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "Docker engine is up ($(docker version --format '{{.Server.Version}}'))"
    exit 0
  fi
  sleep 1
done
log "dockerd did not answer within 60 s; see ${DOCKERD_LOG:-/var/log/dockerd.log}"
exit 1

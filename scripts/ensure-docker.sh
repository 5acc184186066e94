#!/usr/bin/env bash
# Make sure the main Docker engine answers on this machine: install Debian's docker.io when the
# engine is missing, start dockerd in the background when it is not running, and wait until
# `docker info` answers. Idempotent; prints what it does. Needs root (or sudo) to install.
# The main engine is the one at /var/run/docker.sock with the pid file /var/run/docker.pid:
# other dockerd processes (scripts/nodes.sh's extra engines) and $DOCKER_HOST are not it.
set -euo pipefail

MAIN_SOCKET=/var/run/docker.sock
MAIN_PIDFILE=/var/run/docker.pid

log() { printf '[ensure-docker] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
main_docker() { docker --host "unix://$MAIN_SOCKET" "$@"; }

# Whether the main dockerd runs: its pid file names a live dockerd (not a zombie).
main_running() {
  local pid stat
  pid=$(cat "$MAIN_PIDFILE" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

if command -v docker >/dev/null 2>&1 && main_docker info >/dev/null 2>&1; then
  log "Docker engine is running ($(main_docker version --format '{{.Server.Version}}'))"
  exit 0
fi

# docker.io is the engine; iproute2 (`ip`) is what the network-isolation tests use to find the
# host's bridge address.
if ! command -v dockerd >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1; then
  log "installing Debian's docker.io and iproute2"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io iproute2 >/dev/null
fi

if ! main_running; then
  # systemd is not always there (containers, CI sandboxes): start the daemon directly. Its pid
  # file and socket are dockerd's defaults (the ones above).
  log_file=${DOCKERD_LOG:-/var/log/dockerd.log}
  log "starting dockerd in the background (log: $log_file)"
  as_root sh -c "nohup dockerd >'$log_file' 2>&1 &"
fi

for _ in $(seq 1 60); do
  if main_docker info >/dev/null 2>&1; then
    log "Docker engine is up ($(main_docker version --format '{{.Server.Version}}'))"
    exit 0
  fi
  sleep 1
done
log "dockerd did not answer within 60 s; see ${DOCKERD_LOG:-/var/log/dockerd.log}"
exit 1

#!/usr/bin/env bash
# Make gVisor's runtime (`runsc`) available to the Docker engine, for TRACEBOX_RUNTIME=runsc:
# install Debian's `runsc` package when it is missing, register it in /etc/docker/daemon.json
# (a `runtimes` entry with `--network=none`; every other key of the file is kept), reload the
# engine (SIGHUP: running containers are untouched) and wait until `docker info` lists it.
# Idempotent; prints what it does. Needs root (or sudo). Runs scripts/ensure-docker.sh first.
#
#   RUNSC_PATH    where the runtime binary is (default /usr/bin/runsc, where Debian puts it)
#   DAEMON_JSON   the engine's configuration file (default /etc/docker/daemon.json)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { printf '[ensure-runsc] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

runsc_path=${RUNSC_PATH:-/usr/bin/runsc}
daemon_json=${DAEMON_JSON:-/etc/docker/daemon.json}

"$here/ensure-docker.sh"

registered() {
  docker info --format '{{json .Runtimes}}' 2>/dev/null | python3 -c 'import json, sys; sys.exit(0 if "runsc" in json.load(sys.stdin) else 1)'
}

if [ ! -x "$runsc_path" ]; then
  log "installing Debian's runsc (gVisor)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runsc >/dev/null
fi
log "runsc: $("$runsc_path" --version 2>/dev/null | head -n 1)"

# The entry tracebox's start-up check asks for (src/sandbox/mod.rs, RuntimeMissing). gVisor's
# own network stack is turned off (`--network=none`): the containers have no network anyway,
# and runsc's netstack cannot be set up under every engine (e.g. without a bridge).
changed=$(as_root python3 - "$daemon_json" "$runsc_path" <<'PY'
import json, os, sys
path, runsc = sys.argv[1], sys.argv[2]
config = {}
if os.path.exists(path) and os.path.getsize(path) > 0:
    with open(path) as f:
        config = json.load(f)
want = {"path": runsc, "runtimeArgs": ["--network=none"]}
runtimes = config.setdefault("runtimes", {})
if runtimes.get("runsc") == want:
    print("unchanged")
    sys.exit(0)
runtimes["runsc"] = want
os.makedirs(os.path.dirname(path), exist_ok=True)
tmp = path + ".tracebox-tmp"
with open(tmp, "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
os.replace(tmp, path)
print("changed")
PY
)
if [ "$changed" = changed ]; then
  log "registered runsc in $daemon_json"
fi

if registered && [ "$changed" = unchanged ]; then
  log "runsc is registered with the Docker engine"
  exit 0
fi

# A reload, not a restart: dockerd re-reads daemon.json on SIGHUP (runtimes are among what it
# reloads) and running containers go on.
pid=$(cat /var/run/docker.pid 2>/dev/null || pgrep -xo dockerd || true)
if [ -z "$pid" ]; then
  log "cannot find dockerd's pid (/var/run/docker.pid) to reload it; run: systemctl reload docker"
  exit 1
fi
log "reloading dockerd (pid $pid, SIGHUP)"
as_root kill -HUP "$pid"
for _ in $(seq 1 30); do
  if registered; then
    log "runsc is registered with the Docker engine"
    exit 0
  fi
  sleep 1
done
log "dockerd did not list runsc within 30 s after the reload; check $daemon_json and the engine's log"
exit 1

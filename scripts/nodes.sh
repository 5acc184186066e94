#!/usr/bin/env bash
# Extra Docker engines on this machine, as real nodes of tracebox (issue 18) for the tests and
# benchmarks. Each is a dockerd of its own: its socket, data root, exec root (where it runs its
# own containerd), pid file and log; a bridge of its own (tbx-NAME) and no iptables rules, so the
# main engine's docker0 and firewall are left alone; `--live-restore`, so its containers keep
# running while it is stopped and it finds them again when it starts. Data roots are kept
# between runs, so images stay loaded. Needs root; installs Debian's docker.io (through
# scripts/ensure-docker.sh) when dockerd is absent. Never touches the main engine.
#
#   scripts/nodes.sh up [NAME…]            start engines (default: node-a node-b), wait until they answer
#   scripts/nodes.sh down [NAME…]          stop them: SIGTERM, then SIGKILL (their containers keep running)
#   scripts/nodes.sh stop NAME · start NAME   the same for one engine (a test stopping a node)
#   scripts/nodes.sh status [NAME…]        each engine's state
#   scripts/nodes.sh load IMAGE [NAME…]    `docker save IMAGE | docker -H … load` where it is missing
#   scripts/nodes.sh clean [NAME…]         remove every container of these engines (they are the tests')
#   scripts/nodes.sh host NAME             the engine's docker_host (its unix socket)
#   scripts/nodes.sh tls-up NAME PORT      an engine also listening on tcp://127.0.0.1:PORT, TLS with
#                                          client certificates (made with openssl, see below)
#   scripts/nodes.sh toml [NAME…]          [[nodes]] entries for tracebox's configuration file
#
# Where things are: /run/tracebox-nodes/NAME.{sock,pid,exec}, /var/lib/tracebox-nodes/NAME (data
# root), /var/lib/tracebox-nodes/certs (TLS), /var/log/tracebox-nodes/NAME.log.
# TRACEBOX_NODES_WAIT_SECS (default 60) bounds the wait for an engine to answer or to stop;
# TRACEBOX_NODES_DOCKERD_FLAGS adds flags to every engine's dockerd (e.g. `--add-runtime
# runsc=/usr/local/bin/runsc`).
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=/run/tracebox-nodes
LIB_DIR=/var/lib/tracebox-nodes
LOG_DIR=/var/log/tracebox-nodes
CERT_DIR=$LIB_DIR/certs
WAIT_SECS=${TRACEBOX_NODES_WAIT_SECS:-60}
DEFAULT_NAMES=(node-a node-b)

log() { printf '[nodes] %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

# Names are short: the engine's bridge, tbx-NAME, must fit in an interface name (15 bytes).
check_name() {
  [[ $1 =~ ^[a-z0-9][a-z0-9_.-]{0,10}$ && $1 != certs ]] ||
    die "bad engine name '$1': 1 to 11 lower-case letters, digits, '-', '_', '.' (not 'certs')"
}

sock() { echo "$RUN_DIR/$1.sock"; }
bridge() { echo "tbx-$1"; }
pidfile() { echo "$RUN_DIR/$1.pid"; }
logfile() { echo "$LOG_DIR/$1.log"; }
# The TCP port of a TLS engine, remembered by tls-up so that `start` brings it back the same.
portfile() { echo "$LIB_DIR/$1.tls-port"; }
docker_at() {
  local name=$1
  shift
  docker --host "unix://$(sock "$name")" "$@"
}

# Whether process $1 lives: a zombie does not (this machine's PID 1 may reap it late).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# The pid of NAME's dockerd when it runs (its pid file names a live dockerd), else nothing.
pid_of() {
  local pid
  pid=$(cat "$(pidfile "$1")" 2>/dev/null) || return 0
  if [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]; then
    echo "$pid"
  fi
}

answers() { docker_at "$1" info >/dev/null 2>&1; }

log_tail() {
  log "last lines of $(logfile "$1"):"
  tail -n 25 "$(logfile "$1")" | sed 's/^/    /' >&2 || true
}

need_root() { [ "$(id -u)" -eq 0 ] || die "run as root (dockerd needs it): sudo $0 $*"; }

# dockerd and the docker CLI, installed with the main engine when absent.
need_docker() {
  if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1; then
    log "dockerd or ip is not installed: scripts/ensure-docker.sh installs them"
    scripts/ensure-docker.sh
  fi
}

# Starts NAME's dockerd in the background, unless it runs already. Does not wait.
launch() {
  local name=$1 port pid
  mkdir -p "$RUN_DIR" "$LIB_DIR/$name" "$LOG_DIR"
  if pid=$(pid_of "$name") && [ -n "$pid" ]; then
    log "$name is running already (pid $pid)"
    return 0
  fi
  rm -f "$(pidfile "$name")" # stale: dockerd refuses a pid file whose pid another process took
  # After a crash (kill -9) the engine's containerd dies with it, but may linger a while as a
  # zombie: dockerd would take it for a live one and wait for it until it gives up. A pid file
  # that names no live containerd goes.
  local cfile=$RUN_DIR/$name.exec/containerd/containerd.pid cpid
  cpid=$(cat "$cfile" 2>/dev/null || true)
  if [ -n "$cpid" ] && ! { alive "$cpid" && [ "$(cat "/proc/$cpid/comm" 2>/dev/null)" = containerd ]; }; then
    rm -f "$cfile"
  fi
  # The engine's own bridge, made here: dockerd makes only docker0 itself, and with
  # `--bridge none` it deletes the host's docker0 at start (the main engine's bridge). Left
  # without an address, dockerd gives it a free subnet of its pools (one no route uses).
  if ! ip link show "$(bridge "$name")" >/dev/null 2>&1; then
    ip link add name "$(bridge "$name")" type bridge
    ip link set "$(bridge "$name")" up
  fi
  local flags=(
    --host "unix://$(sock "$name")"
    --data-root "$LIB_DIR/$name"
    --exec-root "$RUN_DIR/$name.exec"
    --pidfile "$(pidfile "$name")"
    # Its own configuration: /etc/docker/daemon.json is the main engine's.
    --config-file "$LIB_DIR/$name.daemon.json"
    # Leave the main engine's network alone: a bridge of its own, no firewall or NAT rules, no
    # forwarding switched on. Sandboxes run with network "none" anyway.
    --bridge "$(bridge "$name")" --iptables=false --ip6tables=false --ip-masq=false --ip-forward=false
    # Containers outlive a stop of this engine and are found again when it starts.
    --live-restore
    # Containers that log (tracebox's do not) cannot fill the disk.
    --log-opt max-size=10m --log-opt max-file=3
  )
  if [ -f "$(portfile "$name")" ]; then
    port=$(cat "$(portfile "$name")")
    flags+=(
      --host "tcp://127.0.0.1:$port"
      --tlsverify
      --tlscacert "$CERT_DIR/ca.pem"
      --tlscert "$CERT_DIR/server-cert.pem"
      --tlskey "$CERT_DIR/server-key.pem"
    )
  fi
  # shellcheck disable=SC2206 # extra flags are words, as on a command line
  flags+=(${TRACEBOX_NODES_DOCKERD_FLAGS:-})
  # Docker 20.10 derives the engine's ID (`docker info`) from this key, by default the main
  # engine's /etc/docker/key.json: a key of its own gives each engine an ID of its own.
  printf '{"deprecated-key-path": "%s"}\n' "$LIB_DIR/$name.key.json" >"$LIB_DIR/$name.daemon.json"
  printf '\n=== %s: dockerd %s\n' "$(date -Is)" "${flags[*]}" >>"$(logfile "$name")"
  log "starting $name (log: $(logfile "$name"))"
  # A session of its own: a test's Ctrl-C or its process group's end does not stop the engine.
  setsid dockerd "${flags[@]}" </dev/null >>"$(logfile "$name")" 2>&1 &
  echo $! >"$RUN_DIR/$name.launched"
}

# Waits until NAME answers `docker info`; fails with its log's tail if it dies or is too slow.
await() {
  local name=$1 launched deadline
  launched=$(cat "$RUN_DIR/$name.launched" 2>/dev/null || true)
  deadline=$((SECONDS + WAIT_SECS))
  until answers "$name"; do
    if [ -n "$launched" ] && ! alive "$launched" && [ -z "$(pid_of "$name")" ]; then
      log_tail "$name"
      die "$name's dockerd exited while starting"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log_tail "$name"
      die "$name did not answer docker info within $WAIT_SECS s"
    fi
    sleep 0.2
  done
  rm -f "$RUN_DIR/$name.launched"
  log "$name is up: $(host "$name") (pid $(pid_of "$name"), Docker $(docker_at "$name" version --format '{{.Server.Version}}'))"
}

up() {
  local name
  need_root up
  need_docker
  for name in "$@"; do check_name "$name"; done
  # All started first, then awaited: engines start side by side.
  for name in "$@"; do launch "$name"; done
  for name in "$@"; do await "$name"; done
}

down() {
  local name pid deadline running
  local -A pids=()
  need_root down
  # All signalled first, then awaited: engines stop side by side.
  for name in "$@"; do
    check_name "$name"
    pid=$(pid_of "$name")
    if [ -z "$pid" ]; then
      log "$name is down already"
      rm -f "$(pidfile "$name")" "$RUN_DIR/$name.launched"
      drop_bridge "$name"
      continue
    fi
    running=$(docker_at "$name" ps -q 2>/dev/null | wc -l || true)
    log "stopping $name (pid $pid; its ${running:-?} running containers keep running: live restore)"
    kill -TERM "$pid"
    pids[$name]=$pid
  done
  deadline=$((SECONDS + WAIT_SECS))
  for name in "${!pids[@]}"; do
    pid=${pids[$name]}
    while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if alive "$pid"; then
      log "$name did not stop within $WAIT_SECS s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while alive "$pid"; do sleep 0.1; done
    fi
    rm -f "$(pidfile "$name")" "$RUN_DIR/$name.launched"
    drop_bridge "$name"
    log "$name is down"
  done
}

# Removes NAME's bridge when nothing uses it, so a stopped engine leaves no interface or route
# behind; `up` makes it again. Kept while the engine's containers run on (live restore): the
# engine comes back to its network as it left it.
drop_bridge() {
  local br
  br=$(bridge "$1")
  ip link show "$br" >/dev/null 2>&1 || return 0
  if pgrep -f "containerd-shim.*-address $RUN_DIR/$1.exec/" >/dev/null 2>&1; then return 0; fi
  if [ -z "$(ip -o link show master "$br" 2>/dev/null)" ]; then ip link del "$br" 2>/dev/null || true; fi
}

host() { echo "unix://$(sock "$1")"; }

# Engines this script knows: the default ones, those named, and every data root.
known_names() {
  {
    printf '%s\n' "${DEFAULT_NAMES[@]}"
    find "$LIB_DIR" -mindepth 1 -maxdepth 1 -type d ! -name certs -printf '%f\n' 2>/dev/null || true
  } | sort -u
}

status() {
  local name pid state extra
  for name in "$@"; do
    check_name "$name"
    pid=$(pid_of "$name")
    extra=""
    if [ -z "$pid" ]; then
      state=down
    elif answers "$name"; then
      state="up (pid $pid)"
      extra=" containers=$(docker_at "$name" ps -q | wc -l) running/$(docker_at "$name" ps -aq | wc -l)"
      extra+=" images=$(docker_at "$name" images -q | sort -u | wc -l)"
    else
      state="not answering (pid $pid)"
    fi
    [ -f "$(portfile "$name")" ] && extra+=" tls=tcp://127.0.0.1:$(cat "$(portfile "$name")")"
    [ -d "$LIB_DIR/$name" ] && extra+=" disk=$(du -sxh "$LIB_DIR/$name" 2>/dev/null | cut -f1)"
    printf '%-12s %-28s %s%s\n' "$name" "$state" "$(host "$name")" "$extra"
  done
}

load() {
  local image=$1 name want have started
  shift
  need_root load
  want=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null) ||
    die "the main engine has no image $image (build it first: tracebox image build)"
  for name in "$@"; do
    check_name "$name"
    answers "$name" || die "$name is not up (scripts/nodes.sh up $name)"
    have=$(docker_at "$name" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
    if [ "$have" = "$want" ]; then
      log "$name has $image already"
      continue
    fi
    log "copying $image to $name (docker save | docker load)"
    started=$SECONDS
    docker save "$image" | docker_at "$name" load >/dev/null
    log "$name has $image ($((SECONDS - started)) s)"
  done
}

clean() {
  local name ids
  need_root clean
  for name in "$@"; do
    check_name "$name"
    answers "$name" || die "$name is not up (scripts/nodes.sh up $name)"
    ids=$(docker_at "$name" ps -aq)
    if [ -n "$ids" ]; then
      # shellcheck disable=SC2086 # ids are words
      docker_at "$name" rm -f $ids >/dev/null
      log "$name: removed $(echo "$ids" | wc -l) containers"
    else
      log "$name: no container"
    fi
  done
}

# A new ECDSA P-256 key at $1. P-256 rather than RSA 4096: a handshake costs a fraction, and
# bollard makes one per request to a TLS engine.
new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# signed NAME CN EXTFILE: a key NAME-key.pem and its certificate NAME-cert.pem for CN, signed by
# the CA, with the extensions of EXTFILE.
signed() {
  new_key "$CERT_DIR/$1-key.pem"
  openssl req -new -key "$CERT_DIR/$1-key.pem" -subj "/CN=$2" -out "$CERT_DIR/$1.csr"
  openssl x509 -req -in "$CERT_DIR/$1.csr" -CA "$CERT_DIR/ca.pem" -CAkey "$CERT_DIR/ca-key.pem" \
    -CAcreateserial -days 825 -sha256 -extfile "$3" -out "$CERT_DIR/$1-cert.pem" 2>/dev/null
  rm -f "$CERT_DIR/$1.csr" "$CERT_DIR/ca.srl" "$3"
}

# The certificates of TLS engines, made once (again when one expires within a day): a CA, a
# server certificate for 127.0.0.1 and localhost, and a client certificate, named as dockerd
# and `docker --tlsverify` take them (the client's: ca.pem, cert.pem, key.pem).
certs() {
  local valid=1 file
  for file in ca.pem server-cert.pem cert.pem; do
    openssl x509 -checkend 86400 -noout -in "$CERT_DIR/$file" >/dev/null 2>&1 || valid=0
  done
  [ "$valid" = 1 ] && [ -s "$CERT_DIR/key.pem" ] && [ -s "$CERT_DIR/server-key.pem" ] && return 0
  command -v openssl >/dev/null 2>&1 || die "openssl is missing (apt-get install openssl)"
  log "making TLS certificates in $CERT_DIR"
  mkdir -p "$CERT_DIR"
  chmod 700 "$CERT_DIR"
  new_key "$CERT_DIR/ca-key.pem"
  printf '%s\n' basicConstraints=critical,CA:TRUE keyUsage=critical,keyCertSign,cRLSign \
    subjectKeyIdentifier=hash >"$CERT_DIR/ca.ext"
  openssl req -new -key "$CERT_DIR/ca-key.pem" -subj "/CN=tracebox-nodes test CA" -out "$CERT_DIR/ca.csr"
  openssl x509 -req -in "$CERT_DIR/ca.csr" -signkey "$CERT_DIR/ca-key.pem" -days 825 -sha256 \
    -extfile "$CERT_DIR/ca.ext" -out "$CERT_DIR/ca.pem" 2>/dev/null
  rm -f "$CERT_DIR/ca.csr" "$CERT_DIR/ca.ext"
  printf '%s\n' basicConstraints=critical,CA:FALSE keyUsage=critical,digitalSignature \
    extendedKeyUsage=serverAuth subjectAltName=IP:127.0.0.1,DNS:localhost >"$CERT_DIR/server.ext"
  signed server localhost "$CERT_DIR/server.ext"
  printf '%s\n' basicConstraints=critical,CA:FALSE keyUsage=critical,digitalSignature \
    extendedKeyUsage=clientAuth >"$CERT_DIR/client.ext"
  signed client tracebox "$CERT_DIR/client.ext"
  mv "$CERT_DIR/client-cert.pem" "$CERT_DIR/cert.pem"
  mv "$CERT_DIR/client-key.pem" "$CERT_DIR/key.pem"
  chmod 600 "$CERT_DIR"/*key.pem
  chmod 644 "$CERT_DIR/ca.pem" "$CERT_DIR/server-cert.pem" "$CERT_DIR/cert.pem"
  openssl verify -CAfile "$CERT_DIR/ca.pem" "$CERT_DIR/server-cert.pem" "$CERT_DIR/cert.pem" >/dev/null ||
    die "the certificates made do not verify"
}

tls_up() {
  local name=$1 port=$2 pid old
  need_root tls-up
  check_name "$name"
  if ! [[ $port =~ ^[0-9]+$ ]] || [ "$port" -lt 1024 ] || [ "$port" -gt 65535 ]; then die "bad port '$port'"; fi
  old=$(cat "$(portfile "$name")" 2>/dev/null || true)
  pid=$(pid_of "$name")
  if [ -n "$pid" ] && [ "$old" != "$port" ]; then
    if [ -n "$old" ]; then old="on port $old"; else old="without TCP"; fi
    die "$name runs already $old; scripts/nodes.sh down $name first"
  fi
  need_docker
  certs
  mkdir -p "$LIB_DIR"
  echo "$port" >"$(portfile "$name")"
  up "$name"
  local tls=(--tlsverify --tlscacert "$CERT_DIR/ca.pem" --tlscert "$CERT_DIR/cert.pem" --tlskey "$CERT_DIR/key.pem")
  docker "${tls[@]}" --host "tcp://127.0.0.1:$port" info >/dev/null ||
    die "$name does not answer over TLS on 127.0.0.1:$port"
  if docker --tlsverify --tlscacert "$CERT_DIR/ca.pem" --host "tcp://127.0.0.1:$port" info >/dev/null 2>&1; then
    die "$name answered a client without a certificate"
  fi
  log "$name answers on tcp://127.0.0.1:$port with the client certificate, and refuses a client without one"
  cat <<EOF
docker_host = "tcp://127.0.0.1:$port"
tls_ca = "$CERT_DIR/ca.pem"
tls_cert = "$CERT_DIR/cert.pem"
tls_key = "$CERT_DIR/key.pem"
EOF
}

toml() {
  local name port
  for name in "$@"; do
    check_name "$name"
    printf '[[nodes]]\nname = "%s"\n' "$name"
    if [ -f "$(portfile "$name")" ]; then
      port=$(cat "$(portfile "$name")")
      printf 'docker_host = "tcp://127.0.0.1:%s"\n' "$port"
      printf 'tls_ca = "%s"\ntls_cert = "%s"\ntls_key = "%s"\n' "$CERT_DIR/ca.pem" "$CERT_DIR/cert.pem" "$CERT_DIR/key.pem"
    else
      printf 'docker_host = "%s"\n' "$(host "$name")"
    fi
    printf '\n'
  done
}

usage() {
  sed -n '/^#   scripts\/nodes.sh up/,/^#$/{/^#$/d;s/^#//;p}' "$0" >&2
  exit 2
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  up) up "${@:-${DEFAULT_NAMES[@]}}" ;;
  down) down "${@:-${DEFAULT_NAMES[@]}}" ;;
  start | stop)
    [ $# -eq 1 ] || die "usage: scripts/nodes.sh $cmd NAME"
    if [ "$cmd" = start ]; then up "$1"; else down "$1"; fi
    ;;
  status)
    if [ $# -gt 0 ]; then status "$@"; else mapfile -t names < <(known_names) && status "${names[@]}"; fi
    ;;
  load)
    [ $# -ge 1 ] || die "usage: scripts/nodes.sh load IMAGE [NAME…]"
    image=$1
    shift
    load "$image" "${@:-${DEFAULT_NAMES[@]}}"
    ;;
  clean) clean "${@:-${DEFAULT_NAMES[@]}}" ;;
  host)
    [ $# -eq 1 ] || die "usage: scripts/nodes.sh host NAME"
    check_name "$1"
    host "$1"
    ;;
  tls-up)
    [ $# -eq 2 ] || die "usage: scripts/nodes.sh tls-up NAME PORT"
    tls_up "$1" "$2"
    ;;
  toml) toml "${@:-${DEFAULT_NAMES[@]}}" ;;
  *) usage ;;
esac

#!/usr/bin/env bash
# Local service stack for the chat backend: Kafka 4.x (KRaft), Redis 7, FerretDB (MongoDB wire),
# SeaweedFS (the S3-compatible object store for media).
#
#   stack.sh install  [svc...]   install what is missing (idempotent; instant when installed)
#   stack.sh start    [svc...]   start (idempotent) and wait for a protocol-level readiness probe
#   stack.sh stop     [svc...]   SIGTERM, wait, SIGKILL after CHAT_STOP_TIMEOUT (idempotent)
#   stack.sh stop-one  svc       same as `stop svc`
#   stack.sh restart  [svc...]   stop + start
#   stack.sh status   [svc...]   one line per service; exit 0 if all named services run, else 3
#   stack.sh wipe                stop everything and delete all service data (fresh state)
#   stack.sh logs      svc [N]   tail the service log(s)
#   stack.sh probe     svc       run the readiness probe once
#   stack.sh smoke               Kafka create/produce/consume/delete round trip + redis/mongo pings
#   stack.sh kafka-run CLASS ARGS...   run a Kafka tool class with the broker classpath, e.g.
#        stack.sh kafka-run org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list
#
# Services: kafka, redis, mongo (alias: ferretdb), s3 (alias: seaweedfs). No names = all.
#
# Environment (all optional):
#   CHAT_DATA_DIR        data dir            (default: <repo>/.data)
#   CHAT_CACHE_DIR       jars/binaries cache (default: $HOME/.cache/kchat), shared by all clones
#   CHAT_KAFKA_PORT      9092  (controller listener = CHAT_KAFKA_PORT + 1)
#   CHAT_KAFKA_SASL_PORT CHAT_KAFKA_PORT + 2: the SASL_SSL listener (SCRAM-SHA-512/256 over TLS,
#                        a local CA; user and CA for clients in <data>/kafka/tls/client.env)
#   CHAT_REDIS_PORT      6379
#   CHAT_MONGO_PORT      27017
#   CHAT_S3_PORT         8333  the S3 gateway; SeaweedFS's master, volume server and filer take the
#                        next three ports (and each its port + 10000 for gRPC)
#   CHAT_MEDIA_S3_ACCESS_KEY / CHAT_MEDIA_S3_SECRET_KEY  the one S3 identity (chat/settings.py's
#                        defaults): with an identity the gateway checks every signature and policy
#   CHAT_KAFKA_VERSION   4.4.0
#   CHAT_KAFKA_HEAP_OPTS "-Xms256m -Xmx1g"
#   CHAT_KAFKA_JAVA_OPTS extra JVM options for the broker (appended)
#   CHAT_KAFKA_CDS       1    build/use an AppCDS class-data archive for faster broker starts (0 = off)
#   CHAT_MONGO_IMPL      java | ferretdb    (default java: de.bwaldvogel mongo-java-server with its H2
#                                            file backend. FerretDB 1.24.2 (SQLite) is built and run
#                                            when asked for; it wedged a database for good after a
#                                            client died mid-write, see docs/architecture.md)
#   CHAT_START_TIMEOUT   60   seconds to wait for readiness
#   CHAT_STOP_TIMEOUT    30   seconds between SIGTERM and SIGKILL
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_DIR="$(cd "$SCRIPT_DIR/../.." && pwd -P)"
KAFKA_CONF_DIR="$REPO_DIR/ops/kafka"

DATA_DIR="${CHAT_DATA_DIR:-$REPO_DIR/.data}"
CACHE_DIR="${CHAT_CACHE_DIR:-$HOME/.cache/kchat}"

KAFKA_VERSION="${CHAT_KAFKA_VERSION:-4.4.0}"
KAFKA_PORT="${CHAT_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT=$((KAFKA_PORT + 1))
KAFKA_SASL_PORT="${CHAT_KAFKA_SASL_PORT:-$((KAFKA_PORT + 2))}"
KAFKA_SCRAM_USER=chat
KAFKA_CLUSTER_ID="a2NoYXQtbG9jYWwtZGV2MQ"   # fixed: base64url("kchat-local-dev1")
KAFKA_NODE_ID=1
KAFKA_HEAP_OPTS="${CHAT_KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"
KAFKA_HOME="$CACHE_DIR/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"

REDIS_PORT="${CHAT_REDIS_PORT:-6379}"

MONGO_PORT="${CHAT_MONGO_PORT:-27017}"
MONGO_IMPL="${CHAT_MONGO_IMPL:-java}"
FERRETDB_VERSION="v1.24.2"
FERRETDB_BIN="$CACHE_DIR/bin/ferretdb"
MJS_VERSION="1.47.0"
MJS_HOME="$CACHE_DIR/mongo-java-server-$MJS_VERSION"

# SeaweedFS, built from the Go module proxy (its go.mod has replace directives, so `go install
# module@version` refuses it: the module is downloaded and built from a copy, like FerretDB).
# The proxy lists no tagged release of this module path, only this pseudo-version (commit
# 7506e5f91cd6 of 2026-11-09, which reports itself as 4.53). ~6 min cold on 2 cores, then cached.
SEAWEEDFS_MODULE="github.com/seaweedfs/seaweedfs"
SEAWEEDFS_VERSION="v0.0.0-20261109003541-7506e5f91cd6"
SEAWEEDFS_BIN="$CACHE_DIR/bin/weed-${SEAWEEDFS_VERSION##*-}"
S3_PORT="${CHAT_S3_PORT:-8333}"
S3_ACCESS_KEY="${CHAT_MEDIA_S3_ACCESS_KEY:-chat-dev}"
S3_SECRET_KEY="${CHAT_MEDIA_S3_SECRET_KEY:-chat-dev-secret-change-me}"

START_TIMEOUT="${CHAT_START_TIMEOUT:-60}"
STOP_TIMEOUT="${CHAT_STOP_TIMEOUT:-30}"
# stdlib-only probe; the system python starts ~3x faster than a pyenv shim
if [ -n "${CHAT_PYTHON:-}" ]; then PYTHON="$CHAT_PYTHON"
elif [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3
else PYTHON=python3; fi

ALL_SERVICES=(kafka redis mongo s3)

# --------------------------------------------------------------------------- helpers

log()  { printf '[stack] %s\n' "$*"; }
warn() { printf '[stack] WARNING: %s\n' "$*" >&2; }
die()  { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

now()  { printf '%s' "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" = 0 ]; then
    log "apt-get update ..."
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install $* ..."
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ensure_cmd CMD PACKAGE...: apt-install PACKAGE(s) if CMD is not on PATH
ensure_cmd() {
  local cmd="$1"; shift
  command -v "$cmd" >/dev/null 2>&1 && return 0
  apt_install "$@"
  command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' still missing after installing $*"
}

ensure_java() {
  if command -v java >/dev/null 2>&1; then
    local major
    major="$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')"
    major="${major%%.*}"
    if [ -n "$major" ] && [ "$major" -ge 17 ] 2>/dev/null; then return 0; fi
    warn "java ${major:-?} is too old for Kafka 4 (needs 17+); installing openjdk-17"
  fi
  apt_install openjdk-17-jre-headless
  local ver; ver="$(java -version 2>&1 || true)"
  if [[ ! "$ver" =~ \"(1[7-9]|[2-9][0-9]) ]]; then
    local j; j="$(ls -d /usr/lib/jvm/java-17-openjdk-*/bin/java 2>/dev/null | head -n1)"
    [ -n "$j" ] || die "java 17+ not available"
    PATH="$(dirname "$j"):$PATH"
    export PATH
  fi
}

canon() {
  case "$1" in
    kafka) echo kafka ;;
    redis) echo redis ;;
    mongo|ferretdb|mongodb) echo mongo ;;
    s3|seaweedfs) echo s3 ;;
    *) die "unknown service '$1' (known: kafka redis mongo s3)" ;;
  esac
}

# services from args (default: all), canonicalised, de-duplicated, in canonical order
SERVICES=()
parse_services() {
  local want=() s c
  if [ "$#" -eq 0 ]; then want=("${ALL_SERVICES[@]}"); else
    for s in "$@"; do want+=("$(canon "$s")"); done
  fi
  SERVICES=()
  for c in "${ALL_SERVICES[@]}"; do
    for s in "${want[@]}"; do
      if [ "$s" = "$c" ]; then SERVICES+=("$c"); break; fi
    done
  done
}

svc_port() {
  case "$1" in
    kafka) echo "$KAFKA_PORT" ;; redis) echo "$REDIS_PORT" ;; mongo) echo "$MONGO_PORT" ;;
    s3) echo "$S3_PORT" ;;
  esac
}
svc_pidfile() { echo "$DATA_DIR/pids/$1.pid"; }
svc_logs() {
  case "$1" in
    kafka) echo "$DATA_DIR/logs/kafka.log $DATA_DIR/logs/kafka-server.log" ;;
    *)     echo "$DATA_DIR/logs/$1.log" ;;
  esac
}
# substring that must appear in /proc/PID/cmdline (guards against pid reuse)
svc_marker() {
  case "$1" in
    kafka) echo "kafka.Kafka" ;;
    redis) echo "redis-server" ;;
    mongo) if [ "$(mongo_impl_running_or_configured)" = java ]; then echo "KchatMongoServer"; else echo "ferretdb"; fi ;;
    s3) basename "$SEAWEEDFS_BIN" ;;
  esac
}
mongo_impl_running_or_configured() {
  local f="$DATA_DIR/pids/mongo.impl"
  if [ -f "$f" ]; then cat "$f"; else echo "$MONGO_IMPL"; fi
}

# prints the pid and returns 0 if the service's process is alive (and is what we started)
svc_pid() {
  local pf pid state
  pf="$(svc_pidfile "$1")"
  [ -s "$pf" ] || return 1
  pid="$(cat "$pf" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
  [ "$state" != Z ] || return 1
  local cmdline marker
  cmdline="$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" || return 1
  marker="$(svc_marker "$1")"
  [[ "$cmdline" == *"$marker"* ]] || return 1
  echo "$pid"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

probe() {  # probe SVC [extra args]
  local svc="$1"; shift
  local extra=()
  [ "$svc" = kafka ] && extra=(--node-id "$KAFKA_NODE_ID")
  "$PYTHON" "$SCRIPT_DIR/probe.py" "$svc" --port "$(svc_port "$svc")" "${extra[@]}" "$@"
}

tail_logs() {
  local f
  for f in $(svc_logs "$1"); do
    [ -f "$f" ] || continue
    printf -- '----- last lines of %s -----\n' "$f" >&2
    tail -n "${2:-20}" "$f" >&2
  done
}

LOCK_FD_OPEN=0
take_lock() {
  [ "$LOCK_FD_OPEN" = 1 ] && return 0
  mkdir -p "$DATA_DIR"
  exec 9>"$DATA_DIR/.stack.lock"
  if command -v flock >/dev/null 2>&1; then
    flock -w 300 9 || die "could not take $DATA_DIR/.stack.lock (another stack.sh running?)"
  fi
  LOCK_FD_OPEN=1
}

# install_lock: serialise installs into the shared cache (several clones/CI jobs may race).
# Callers re-check "already installed" after taking it.
INSTALL_LOCK_OPEN=0
install_lock() {
  [ "$INSTALL_LOCK_OPEN" = 1 ] && return 0
  mkdir -p "$CACHE_DIR"
  exec 8>"$CACHE_DIR/.install.lock"
  if command -v flock >/dev/null 2>&1; then
    flock -w 1800 8 || die "could not take $CACHE_DIR/.install.lock"
  fi
  INSTALL_LOCK_OPEN=1
}

make_dirs() {
  mkdir -p "$DATA_DIR"/{kafka,redis,ferretdb,s3,logs,pids}
  # keep runtime data out of git when the data dir lives inside the clone (like .venv does)
  [ -f "$DATA_DIR/.gitignore" ] || printf '# created by ops/stack/stack.sh\n*\n' >"$DATA_DIR/.gitignore"
}

# launch NAME CMD...: start CMD detached (own session), stdout/stderr appended to the log,
# pid written by the child itself (so it is the pid of the exec'd service process).
launch() {
  local name="$1"; shift
  local pf out
  pf="$(svc_pidfile "$name")"
  out="$DATA_DIR/logs/$name.log"
  rm -f "$pf" "$pf.tmp"
  printf '===== %s stack.sh: starting %s\n' "$(date '+%F %T')" "$name" >>"$out"
  setsid bash -c 'echo $$ > "$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"' "$pf" "$@" \
    </dev/null >>"$out" 2>&1 8>&- 9>&- &
  for _ in $(seq 1 100); do
    [ -s "$pf" ] && return 0
    sleep 0.05
  done
  die "$name: launcher did not write $pf"
}

# --------------------------------------------------------------------------- install

# run_mvn POM OUTDIR [-Dprop=value...]: copy the runtime dependencies of POM into OUTDIR.
# Output is kept in a file and shown only on failure (Debian's maven prints stray ANSI codes).
run_mvn() {
  local pom="$1" out="$2"; shift 2
  local mlog rc=0
  mkdir -p "$(dirname "$out")"
  mlog="$(dirname "$out")/mvn.$$.log"
  mvn -q -B -f "$pom" "$@" dependency:copy-dependencies -DoutputDirectory="$out" \
    >"$mlog" 2>&1 </dev/null || rc=$?
  if [ "$rc" != 0 ]; then
    sed 's/\x1b\[[0-9;]*m//g' "$mlog" | tail -n 40 >&2
  fi
  rm -f "$mlog"
  return "$rc"
}

kafka_installed() {
  local stamp
  stamp="kafka=$KAFKA_VERSION pom=$(sha256sum "$KAFKA_CONF_DIR/pom.xml" | cut -c1-16)"
  [ -f "$KAFKA_LIBS/.installed" ] && [ "$(cat "$KAFKA_LIBS/.installed")" = "$stamp" ]
}

install_kafka() {
  if kafka_installed; then
    kafka_cds_wanted || return 0
    install_lock
    build_kafka_cds
    return 0
  fi
  install_lock
  if kafka_installed; then build_kafka_cds; return 0; fi
  local stamp
  stamp="kafka=$KAFKA_VERSION pom=$(sha256sum "$KAFKA_CONF_DIR/pom.xml" | cut -c1-16)"
  local t0; t0="$(now)"
  ensure_java
  ensure_cmd mvn maven
  log "installing kafka $KAFKA_VERSION jars via maven into $KAFKA_LIBS ..."
  mkdir -p "$KAFKA_HOME"
  rm -rf "$KAFKA_HOME"/libs.tmp.* "$KAFKA_HOME/libs.old"
  local tmp="$KAFKA_HOME/libs.tmp.$$"
  if ! run_mvn "$KAFKA_CONF_DIR/pom.xml" "$tmp" -Dkafka.version="$KAFKA_VERSION"; then
    rm -rf "$tmp"
    die "maven could not fetch kafka $KAFKA_VERSION (see output above)"
  fi
  local j
  for j in "kafka_2.13-$KAFKA_VERSION.jar" "kafka-clients-$KAFKA_VERSION.jar" \
           "kafka-tools-$KAFKA_VERSION.jar"; do
    [ -f "$tmp/$j" ] || { rm -rf "$tmp"; die "kafka install incomplete: $j missing"; }
  done
  ls "$tmp"/log4j-core-*.jar >/dev/null 2>&1 || { rm -rf "$tmp"; die "log4j-core missing"; }
  # exactly one SLF4J binding (slf4j 1.x binding, matching Kafka's slf4j-api 1.7.x)
  local bindings=0 f
  for f in "$tmp"/*.jar; do
    [[ "$(basename "$f")" =~ ^(log4j-slf4j2?-impl|slf4j-(simple|reload4j|log4j12|jdk14|nop)|logback-classic)- ]] \
      && bindings=$((bindings + 1))
  done
  [ "$bindings" = 1 ] || { rm -rf "$tmp"; die "expected exactly one SLF4J binding, found $bindings"; }
  echo "$stamp" >"$tmp/.installed"
  if [ -d "$KAFKA_LIBS" ]; then mv "$KAFKA_LIBS" "$KAFKA_HOME/libs.old"; fi
  mv "$tmp" "$KAFKA_LIBS"
  rm -rf "$KAFKA_HOME/libs.old"
  rm -rf "$KAFKA_HOME/cds"
  log "kafka $KAFKA_VERSION installed ($(ls "$KAFKA_LIBS" | wc -l) jars) in $(since "$t0")"
  build_kafka_cds
}

# ---- AppCDS class-data archive for the broker: cuts JVM/Kafka startup by ~2-4 s on 2 cores.
# Built once per (java build, jar set) by running a throw-away broker on free ports with
# -XX:ArchiveClassesAtExit; disabled with CHAT_KAFKA_CDS=0. A failed build is not retried
# (marker file) and never fails install/start: the broker then simply starts without it.
kafka_cds_archive() {
  local id
  local jbin jhome
  jbin="$(readlink -f "$(command -v java)")"
  jhome="$(dirname "$(dirname "$jbin")")"
  # keyed by the exact JVM build (libjvm.so size+mtime) and jar set: a stale archive is never used
  id="$( { echo "$jbin"; stat -c '%s %Y' "$jhome"/lib/server/libjvm.so 2>/dev/null || java -version 2>&1
           cat "$KAFKA_LIBS/.installed"; } | sha256sum | cut -c1-12)"
  echo "$KAFKA_HOME/cds/kafka-$id.jsa"
}

kafka_cds_wanted() {  # true if CDS is enabled and its archive (or failure marker) is missing
  [ "${CHAT_KAFKA_CDS:-1}" = 1 ] || return 1
  local jsa; jsa="$(kafka_cds_archive)"
  [ ! -f "$jsa" ] && [ ! -f "$jsa.failed" ]
}

render_kafka_props() {  # render_kafka_props OUT KAFKA_PORT CONTROLLER_PORT KAFKA_DATA_DIR SASL_PORT [quiet]
  local tls="$4/tls"
  ensure_kafka_tls "$tls" "${6:-}"
  sed -e "s|@KAFKA_PORT@|$2|g" -e "s|@CONTROLLER_PORT@|$3|g" -e "s|@KAFKA_DATA_DIR@|$4|g" \
    -e "s|@SASL_PORT@|$5|g" -e "s|@KAFKA_TLS_DIR@|$tls|g" \
    -e "s|@KEYSTORE_PASSWORD@|$(cat "$tls/keystore.password")|g" \
    "$KAFKA_CONF_DIR/server.properties" >"$1.tmp"
  chmod 600 "$1.tmp"   # holds the keystore password
  mv -f "$1.tmp" "$1"
}

# ensure_kafka_tls DIR: what the SASL_SSL listener needs, generated once per data dir with
# openssl (a PKCS12 keystore is what Java reads anyway, no keytool needed): a local CA (ca.crt
# and its key), the broker's key and certificate (SAN 127.0.0.1 and localhost) in broker.p12,
# a client certificate for mutual TLS (client.crt, client.key), the keystore password and the
# SCRAM user's password. Valid 10 years; delete DIR to make new ones (then restart kafka).
ensure_kafka_tls() {  # ensure_kafka_tls DIR [quiet]
  local dir="$1" quiet="${2:-}" f missing=0
  for f in ca.crt broker.p12 keystore.password client.crt client.key scram.password; do
    [ -s "$dir/$f" ] || missing=1
  done
  [ "$missing" = 1 ] || return 0
  ensure_cmd openssl openssl
  local tmp="$dir.tmp.$$" rc=0
  rm -rf "$tmp"
  mkdir -p "$tmp"
  chmod 700 "$tmp"
  (
    set -e
    cd "$tmp"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt \
      -subj "/CN=kchat local Kafka CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj "/CN=localhost"
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >broker.ext
    openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile broker.ext -out broker.crt
    openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj "/CN=chat"
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile client.ext -out client.crt
    openssl rand -hex 16 >keystore.password
    openssl pkcs12 -export -in broker.crt -inkey broker.key -certfile ca.crt -name broker \
      -out broker.p12 -passout file:keystore.password
    openssl rand -hex 24 >scram.password
    rm -f ./*.csr ./*.ext ca.srl
    chmod 600 ./*.key ./*.password broker.p12
  ) >"$tmp.log" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    cat "$tmp.log" >&2
    rm -rf "$tmp" "$tmp.log"
    die "kafka: could not generate the TLS files for the SASL_SSL listener"
  fi
  rm -rf "$dir" "$tmp.log"
  mv "$tmp" "$dir"
  [ -n "$quiet" ] || log "kafka: generated a local CA, broker and client certificates and a SCRAM password in $dir"
}

# ensure_kafka_scram_user: the SCRAM user of the SASL_SSL listener exists with the password in
# <data>/kafka/tls/scram.password, and client.env says how a chat process connects. SCRAM
# credentials live in the cluster metadata, so they are set through the (unauthenticated,
# loopback) PLAINTEXT listener once per formatted storage: the marker names the storage's
# directory.id, so a wipe or a re-format sets them again. Idempotent; ~3 s when it must run.
ensure_kafka_scram_user() {
  local tls="$DATA_DIR/kafka/tls" meta="$DATA_DIR/kafka/data/meta.properties" want pw
  ensure_kafka_tls "$tls"   # a broker started by an older stack.sh has none yet
  if ! port_in_use "$KAFKA_SASL_PORT"; then
    warn "kafka: no SASL_SSL listener on 127.0.0.1:$KAFKA_SASL_PORT (a broker started before it" \
         "existed?): 'stack.sh restart kafka' adds it"
  fi
  pw="$(cat "$tls/scram.password")"
  want="$(grep '^directory.id=' "$meta" 2>/dev/null || echo none) user=$KAFKA_SCRAM_USER"
  want="$want pw=$(printf '%s' "$pw" | sha256sum | cut -c1-16)"
  ( umask 077
    { echo "# Written by ops/stack/stack.sh at every start: a chat process with these settings"
      echo "# talks to the local broker's SASL_SSL listener (SCRAM-SHA-512 over TLS) instead of"
      echo "# PLAINTEXT. In a shell: set -a; . $tls/client.env; set +a"
      echo "CHAT_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_SASL_PORT"
      echo "CHAT_KAFKA_SECURITY_PROTOCOL=SASL_SSL"
      echo "CHAT_KAFKA_SASL_MECHANISM=SCRAM-SHA-512"
      echo "CHAT_KAFKA_SASL_USERNAME=$KAFKA_SCRAM_USER"
      echo "CHAT_KAFKA_SASL_PASSWORD=$pw"
      echo "CHAT_KAFKA_SSL_CAFILE=$tls/ca.crt"
    } >"$tls/client.env.tmp" )
  mv -f "$tls/client.env.tmp" "$tls/client.env"
  [ "$(cat "$tls/.scram-user" 2>/dev/null || true)" = "$want" ] && return 0
  local t0 mech out rc; t0="$(now)"
  out="$tls/scram-tool.log"
  # One mechanism per request (the broker refuses two changes of one user in one request). The
  # password is on the tool's command line for a moment (a local, generated credential) and
  # is masked in whatever the tool prints.
  for mech in SCRAM-SHA-512 SCRAM-SHA-256; do
    rc=0
    java -Xmx256m -XX:TieredStopAtLevel=1 \
      -Dlog4j2.configurationFile="$KAFKA_CONF_DIR/log4j2-tools.xml" -cp "$KAFKA_LIBS/*" \
      org.apache.kafka.tools.ConfigCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
      --alter --entity-type users --entity-name "$KAFKA_SCRAM_USER" \
      --add-config "$mech=[password=$pw]" >"$out" 2>&1 || rc=$?
    sed "s/$pw/***/g" "$out" >>"$DATA_DIR/logs/kafka.log"
    rm -f "$out"
    if [ "$rc" != 0 ]; then
      grep -v '^\s*at ' "$DATA_DIR/logs/kafka.log" | tail -n 5 >&2
      echo "[stack] ERROR: kafka: could not create the SCRAM user $KAFKA_SCRAM_USER ($mech)" >&2
      return 1
    fi
  done
  echo "$want" >"$tls/.scram-user"
  log "kafka: SCRAM user $KAFKA_SCRAM_USER ready on SASL_SSL 127.0.0.1:$KAFKA_SASL_PORT ($(since "$t0"))"
}

build_kafka_cds() {
  kafka_cds_wanted || return 0
  local jsa t0 work ports bport cport sport pid ok=0
  jsa="$(kafka_cds_archive)"
  t0="$(now)"
  log "kafka: building class-data archive for faster broker starts (one-off, ~15 s) ..."
  mkdir -p "$KAFKA_HOME/cds"
  rm -rf "$KAFKA_HOME"/cds/work.* "$KAFKA_HOME"/cds/*.tmp
  work="$KAFKA_HOME/cds/work.$$"
  mkdir -p "$work/logs"
  ports="$("$PYTHON" -c 'import socket
ss=[socket.socket() for _ in range(3)]
[s.bind(("127.0.0.1", 0)) for s in ss]
print(*[s.getsockname()[1] for s in ss])')"
  read -r bport cport sport <<<"$ports"
  render_kafka_props "$work/server.properties" "$bport" "$cport" "$work" "$sport" quiet
  local jopts; mapfile -t jopts < <(kafka_java_opts)
  if java -Xmx256m -Dlog4j2.configurationFile="$KAFKA_CONF_DIR/log4j2-tools.xml" \
       -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format -t "$KAFKA_CLUSTER_ID" \
       -c "$work/server.properties" >"$work/logs/format.log" 2>&1; then
    java "${jopts[@]}" -XX:ArchiveClassesAtExit="$jsa.tmp" -Xlog:cds=off -Xlog:cds+dynamic=off \
      -Dlog4j2.configurationFile="$KAFKA_CONF_DIR/log4j2.xml" -Dkafka.logs.dir="$work/logs" \
      -cp "$KAFKA_LIBS/*" kafka.Kafka "$work/server.properties" \
      </dev/null >"$work/logs/kafka.out" 2>&1 8>&- 9>&- &
    pid=$!
    for _ in $(seq 1 600); do
      kill -0 "$pid" 2>/dev/null || break
      if "$PYTHON" "$SCRIPT_DIR/probe.py" kafka --port "$bport" --quiet --timeout 1; then ok=1; break; fi
      sleep 0.2
    done
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  if [ "$ok" = 1 ] && [ -s "$jsa.tmp" ]; then
    mv -f "$jsa.tmp" "$jsa"
    log "kafka: class-data archive ready ($(du -m "$jsa" | cut -f1) MiB) in $(since "$t0")"
  else
    warn "kafka: could not build the class-data archive (broker starts without it); see $jsa.failed"
    { echo "build failed $(date)"; tail -n 30 "$work/logs/kafka.out" "$work/logs/format.log" 2>/dev/null; } >"$jsa.failed"
    rm -f "$jsa.tmp"
  fi
  rm -rf "$work"
}

install_redis() {
  command -v redis-server >/dev/null 2>&1 && return 0
  install_lock
  command -v redis-server >/dev/null 2>&1 && return 0
  local t0; t0="$(now)"
  log "installing redis-server (Debian package) ..."
  apt_install redis-server
  command -v redis-server >/dev/null 2>&1 || die "redis-server still missing after apt-get install"
  log "redis installed: $(redis-server --version | awk '{print $3}') in $(since "$t0")"
}

ferretdb_ok() {
  [ -x "$FERRETDB_BIN" ] || return 1
  local v; v="$("$FERRETDB_BIN" --version 2>/dev/null)" || return 1
  [[ $'\n'"$v"$'\n' == *$'\n'"version: $FERRETDB_VERSION"$'\n'* ]]
}

# FerretDB's `go install ...@v1.24.2` builds a binary that panics at startup because the
# module zip lacks the generated build/version/version.txt. So: fetch the module through
# the Go module proxy, copy it, write version.txt, and build from the copy.
build_ferretdb() {
  command -v go >/dev/null 2>&1 || { warn "go not found: cannot build FerretDB"; return 1; }
  local work dir rc=0 blog
  mkdir -p "$CACHE_DIR/bin"
  chmod -R u+w "$CACHE_DIR"/ferretdb-build.* 2>/dev/null || true
  rm -rf "$CACHE_DIR"/ferretdb-build.*
  work="$(mktemp -d "$CACHE_DIR/ferretdb-build.XXXXXX")"
  blog="$CACHE_DIR/ferretdb-build.log"
  # (set -e does not apply inside a subshell used with ||, hence the explicit exits)
  (
    cd "$work" || exit 1
    export GOFLAGS="" GO111MODULE=on
    dir="$(go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" \
           | "$PYTHON" -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error", "go mod download failed")))')" \
      || exit 1
    [ -d "$dir" ] || exit 1
    cp -r "$dir" src && chmod -R u+w src || exit 1
    echo "$FERRETDB_VERSION" > src/build/version/version.txt || exit 1
    cd src || exit 1
    go build -buildvcs=false -trimpath -ldflags='-s -w' -o "$work/ferretdb" ./cmd/ferretdb || exit 1
    "$work/ferretdb" --version >/dev/null || exit 1
    mv -f "$work/ferretdb" "$FERRETDB_BIN" || exit 1
  ) >"$blog" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    warn "ferretdb build failed (full log: $blog):"
    tail -n 30 "$blog" >&2
  fi
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
  return "$rc"
}

mjs_stamp() {
  echo "mjs=$MJS_VERSION src=$(cat "$SCRIPT_DIR/mongo-java-server/pom.xml" \
          "$SCRIPT_DIR/mongo-java-server/KchatMongoServer.java" | sha256sum | cut -c1-16)"
}
mjs_installed() {
  [ -f "$MJS_HOME/.installed" ] && [ "$(cat "$MJS_HOME/.installed")" = "$(mjs_stamp)" ]
}

install_mjs() {  # de.bwaldvogel:mongo-java-server fallback
  mjs_installed && return 0
  install_lock
  mjs_installed && return 0
  local stamp; stamp="$(mjs_stamp)"
  local t0; t0="$(now)"
  ensure_java
  ensure_cmd mvn maven
  command -v javac >/dev/null 2>&1 || apt_install openjdk-17-jdk-headless
  log "installing mongo-java-server $MJS_VERSION via maven (FerretDB fallback) ..."
  mkdir -p "$CACHE_DIR"
  rm -rf "$CACHE_DIR"/mongo-java-server.tmp.*
  local tmp="$CACHE_DIR/mongo-java-server.tmp.$$"
  run_mvn "$SCRIPT_DIR/mongo-java-server/pom.xml" "$tmp/libs" -Dmjs.version="$MJS_VERSION" \
    || { rm -rf "$tmp"; die "maven could not fetch mongo-java-server (see output above)"; }
  mkdir -p "$tmp/classes"
  javac -d "$tmp/classes" -cp "$tmp/libs/*" "$SCRIPT_DIR/mongo-java-server/KchatMongoServer.java" \
    || { rm -rf "$tmp"; die "could not compile KchatMongoServer.java"; }
  echo "$stamp" >"$tmp/.installed"
  rm -rf "$MJS_HOME"
  mv "$tmp" "$MJS_HOME"
  log "mongo-java-server $MJS_VERSION installed in $(since "$t0")"
}

install_mongo() {
  if [ "$MONGO_IMPL" = java ]; then install_mjs; return; fi
  ferretdb_ok && return 0
  install_lock
  ferretdb_ok && return 0
  if [ -f "$CACHE_DIR/mongo-impl-fallback" ]; then
    # an earlier FerretDB build failed; don't retry on every start
    install_mjs
    return 0
  fi
  local t0; t0="$(now)"
  log "building ferretdb $FERRETDB_VERSION with go (module proxy) into $FERRETDB_BIN ..."
  if build_ferretdb && ferretdb_ok; then
    log "ferretdb $FERRETDB_VERSION installed in $(since "$t0")"
    return 0
  fi
  warn "FerretDB could not be built; falling back to de.bwaldvogel:mongo-java-server" \
       "(delete $CACHE_DIR/mongo-impl-fallback to retry FerretDB)"
  mkdir -p "$CACHE_DIR"
  echo java >"$CACHE_DIR/mongo-impl-fallback"
  install_mjs
}

# effective mongo implementation: CHAT_MONGO_IMPL, or java if FerretDB had to be replaced
mongo_impl() {
  if [ "$MONGO_IMPL" = java ]; then echo java; return; fi
  if ! ferretdb_ok && [ -f "$CACHE_DIR/mongo-impl-fallback" ]; then echo java; return; fi
  echo ferretdb
}

s3_installed() { [ -x "$SEAWEEDFS_BIN" ]; }

install_s3() {
  s3_installed && return 0
  install_lock
  s3_installed && return 0
  command -v go >/dev/null 2>&1 || die "go is needed to build SeaweedFS (the S3 object store)"
  local t0 work blog rc=0
  t0="$(now)"
  log "building seaweedfs $SEAWEEDFS_VERSION with go (module proxy) into $SEAWEEDFS_BIN (~6 min cold) ..."
  mkdir -p "$CACHE_DIR/bin"
  chmod -R u+w "$CACHE_DIR"/seaweedfs-build.* 2>/dev/null || true
  rm -rf "$CACHE_DIR"/seaweedfs-build.*
  work="$(mktemp -d "$CACHE_DIR/seaweedfs-build.XXXXXX")"
  blog="$CACHE_DIR/seaweedfs-build.log"
  (
    cd "$work" || exit 1
    # Module and build caches under ~/.cache, so every clone (and CI's fresh one) reuses them.
    export GOFLAGS="-buildvcs=false" GO111MODULE=on \
      GOMODCACHE="${GOMODCACHE:-$HOME/.cache/go-mod}" GOCACHE="${GOCACHE:-$HOME/.cache/go-build}"
    dir="$(go mod download -json "$SEAWEEDFS_MODULE@$SEAWEEDFS_VERSION" \
           | "$PYTHON" -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error", "go mod download failed")))')" \
      || exit 1
    cp -r "$dir" src && chmod -R u+w src || exit 1
    cd src || exit 1
    go build -trimpath -ldflags='-s -w' -o "$work/weed" ./weed || exit 1
    "$work/weed" version >/dev/null || exit 1
    mv -f "$work/weed" "$SEAWEEDFS_BIN" || exit 1
  ) >"$blog" 2>&1 || rc=$?
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
  if [ "$rc" != 0 ]; then
    tail -n 30 "$blog" >&2
    die "seaweedfs build failed (full log: $blog)"
  fi
  log "seaweedfs installed in $(since "$t0")"
}

ensure_python() { ensure_cmd "$PYTHON" python3; }

# install_services SVC...: install what is missing. A FerretDB build (CPU-bound, ~2.5 min cold)
# runs in the background while the Kafka jars / Redis package download.
install_services() {
  local s bpid="" brc=0 t0
  if [[ " $* " == *" mongo "* ]] && [ "$MONGO_IMPL" != java ] && ! ferretdb_ok \
     && [ ! -f "$CACHE_DIR/mongo-impl-fallback" ] && command -v go >/dev/null 2>&1; then
    install_lock   # taken before forking, so the background build shares it
    if ! ferretdb_ok; then
      t0="$(now)"
      log "building ferretdb $FERRETDB_VERSION with go (module proxy) into $FERRETDB_BIN (background) ..."
      build_ferretdb &
      bpid=$!
    fi
  fi
  for s in "$@"; do
    [ "$s" = mongo ] && [ -n "$bpid" ] && continue
    "install_$s"
  done
  if [ -n "$bpid" ]; then
    wait "$bpid" || brc=$?
    if [ "$brc" = 0 ] && ferretdb_ok; then
      log "ferretdb $FERRETDB_VERSION installed in $(since "$t0")"
    else
      warn "FerretDB could not be built; falling back to de.bwaldvogel:mongo-java-server" \
           "(delete $CACHE_DIR/mongo-impl-fallback to retry FerretDB)"
      echo java >"$CACHE_DIR/mongo-impl-fallback"
      install_mjs
    fi
  fi
}

cmd_install() {
  parse_services "$@"
  ensure_python
  local s
  install_services "${SERVICES[@]}"
  log "install: ok (${SERVICES[*]})"
}

# --------------------------------------------------------------------------- start

kafka_java_opts() {
  local -; set -f   # word-split the option strings, but never glob them (e.g. -Xlog:gc*)
  # shellcheck disable=SC2086
  printf '%s\n' $KAFKA_HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true ${CHAT_KAFKA_JAVA_OPTS:-}
}

start_kafka() {
  local kdir="$DATA_DIR/kafka" props="$DATA_DIR/kafka/server.properties"
  render_kafka_props "$props" "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$kdir" "$KAFKA_SASL_PORT"
  if [ ! -f "$kdir/data/meta.properties" ]; then
    # never formatted (or a half-finished format): start from an empty log dir
    rm -rf "$kdir/data"
    log "kafka: formatting KRaft storage (cluster id $KAFKA_CLUSTER_ID) ..."
    printf '===== %s stack.sh: formatting kafka storage\n' "$(date '+%F %T')" >>"$DATA_DIR/logs/kafka.log"
    if ! java -Xmx256m -Dlog4j2.configurationFile="$KAFKA_CONF_DIR/log4j2-tools.xml" \
          -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format \
          -t "$KAFKA_CLUSTER_ID" -c "$props" >>"$DATA_DIR/logs/kafka.log" 2>&1; then
      rm -rf "$kdir/data"
      tail_logs kafka
      die "kafka: storage format failed"
    fi
  fi
  local jopts; mapfile -t jopts < <(kafka_java_opts)
  if [ "${CHAT_KAFKA_CDS:-1}" = 1 ]; then
    local jsa; jsa="$(kafka_cds_archive)"
    if [ -f "$jsa" ]; then jopts+=("-XX:SharedArchiveFile=$jsa"); fi
  fi
  launch kafka java "${jopts[@]}" \
    "-Xlog:gc*:file=$DATA_DIR/logs/kafka-gc.log:time,tags:filecount=3,filesize=10M" \
    -Dlog4j2.configurationFile="$KAFKA_CONF_DIR/log4j2.xml" \
    -Dkafka.logs.dir="$DATA_DIR/logs" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$props"
}

start_redis() {
  launch redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DATA_DIR/redis" \
    --daemonize no --save "" --appendonly no --logfile "" --loglevel notice
}

start_mongo() {
  local impl; impl="$(mongo_impl)"
  echo "$impl" >"$DATA_DIR/pids/mongo.impl"
  if [ "$impl" = java ]; then
    mkdir -p "$DATA_DIR/ferretdb/mongo-java-server"
    launch mongo java -Xms32m -Xmx256m -XX:+UseSerialGC \
      -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$MJS_HOME/classes:$MJS_HOME/libs/*" \
      KchatMongoServer 127.0.0.1 "$MONGO_PORT" "$DATA_DIR/ferretdb/mongo-java-server/db.mv"
  else
    mkdir -p "$DATA_DIR/ferretdb/state"
    launch mongo "$FERRETDB_BIN" --handler=sqlite --sqlite-url="file:$DATA_DIR/ferretdb/" \
      --listen-addr="127.0.0.1:$MONGO_PORT" --state-dir="$DATA_DIR/ferretdb/state" \
      --telemetry=disable --debug-addr=- --log-level=warn --log-format=text
  fi
}

start_s3() {
  local dir="$DATA_DIR/s3"
  mkdir -p "$dir/data"
  # The one identity: with it the gateway checks every request's signature and every POST
  # policy (without any, SeaweedFS lets anyone do anything).
  ( umask 077
    printf '{"identities":[{"name":"chat","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","List","Tagging","Write"]}]}\n' \
      "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >"$dir/s3.json" )
  launch s3 "$SEAWEEDFS_BIN" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$dir/data" \
    -master.port=$((S3_PORT + 1)) -volume.port=$((S3_PORT + 2)) \
    -filer -filer.port=$((S3_PORT + 3)) \
    -s3 -s3.port="$S3_PORT" -s3.config="$dir/s3.json" -s3.port.iceberg=0 -s3.port.lance=0 \
    -master.volumeSizeLimitMB=64 -volume.max=0 -volume.preStopSeconds=0
}

# check_ports SVC: fail early with a clear message if a foreign process holds our port(s)
check_ports() {
  local p ports
  ports="$(svc_port "$1")"
  [ "$1" = kafka ] && ports="$ports $KAFKA_CONTROLLER_PORT $KAFKA_SASL_PORT"
  [ "$1" = s3 ] && ports="$ports $((S3_PORT + 1)) $((S3_PORT + 2)) $((S3_PORT + 3))"
  for p in $ports; do
    if port_in_use "$p"; then
      echo "[stack] ERROR: $1: port 127.0.0.1:$p is already in use by another process (not started by this stack.sh with data dir $DATA_DIR). Stop it or change the CHAT_*_PORT variables." >&2
      return 1
    fi
  done
}

cmd_start() {
  parse_services "$@"
  ensure_python
  take_lock
  make_dirs
  local s pid t0 failed=0
  local -a launched=() waiting=()
  t0="$(now)"
  install_services "${SERVICES[@]}"
  for s in "${SERVICES[@]}"; do
    if pid="$(svc_pid "$s")"; then
      log "$s already running (pid $pid)"
      waiting+=("$s")
      continue
    fi
    rm -f "$(svc_pidfile "$s")"
    if ! check_ports "$s"; then failed=1; continue; fi
    log "starting $s ..."
    "start_$s"
    launched+=("$s")
    waiting+=("$s")
  done
  for s in "${waiting[@]}"; do
    if [[ " ${launched[*]} " == *" $s "* ]]; then
      wait_ready "$s" || failed=1
    else
      wait_ready "$s" quiet || failed=1   # already running: still must answer its probe
    fi
  done
  if [ "$failed" = 0 ] && [[ " ${SERVICES[*]} " == *" kafka "* ]]; then
    ensure_kafka_scram_user || failed=1
  fi
  if [ "$failed" != 0 ]; then
    die "start failed (see messages above)"
  fi
  if [ "${#launched[@]}" -eq 0 ]; then
    log "already running: ${SERVICES[*]} (no-op)"
  else
    log "started: ${launched[*]} in $(since "$t0")"
  fi
}

wait_ready() {  # wait_ready SVC [quiet]
  local s="$1" quiet="${2:-}" t0 deadline pid
  t0="$(now)"
  deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    if ! pid="$(svc_pid "$s")"; then
      echo "[stack] ERROR: $s exited during startup" >&2
      tail_logs "$s"
      rm -f "$(svc_pidfile "$s")"
      return 1
    fi
    if probe "$s" --quiet --timeout 1; then
      [ -n "$quiet" ] || log "$s ready on 127.0.0.1:$(svc_port "$s") (pid $pid, $(since "$t0"))"
      return 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "[stack] ERROR: $s not ready after ${START_TIMEOUT}s; last probe result:" >&2
      probe "$s" --timeout 1 >&2 || true
      tail_logs "$s"
      stop_many "$s" >/dev/null 2>&1 || true
      return 1
    fi
    sleep 0.2
  done
}

# --------------------------------------------------------------------------- stop

# stop_many SVC...: SIGTERM all, wait (shared deadline), SIGKILL stragglers
stop_many() {
  local s pid
  local -A pids=()
  for s in "$@"; do
    if pid="$(svc_pid "$s")"; then
      log "stopping $s (pid $pid) ..."
      kill -TERM "$pid" 2>/dev/null || true
      pids[$s]=$pid
    else
      rm -f "$(svc_pidfile "$s")"
    fi
  done
  local deadline=$((SECONDS + STOP_TIMEOUT)) t0; t0="$(now)"
  for s in "${!pids[@]}"; do
    while svc_pid "$s" >/dev/null; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        warn "$s did not exit within ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
        kill -KILL "${pids[$s]}" 2>/dev/null || true
        for _ in $(seq 1 50); do svc_pid "$s" >/dev/null || break; sleep 0.1; done
        break
      fi
      sleep 0.1
    done
    if svc_pid "$s" >/dev/null; then
      die "$s (pid ${pids[$s]}) is still alive after SIGKILL"
    fi
    rm -f "$(svc_pidfile "$s")"
    log "$s stopped ($(since "$t0"))"
  done
}

cmd_stop() {
  parse_services "$@"
  take_lock
  local s any=0
  for s in "${SERVICES[@]}"; do svc_pid "$s" >/dev/null && any=1; done
  stop_many "${SERVICES[@]}"
  [ "$any" = 1 ] || log "not running: ${SERVICES[*]} (no-op)"
}

# --------------------------------------------------------------------------- status etc.

cmd_status() {
  parse_services "$@"
  local s pid rss ready rc=0 addr impl
  for s in "${SERVICES[@]}"; do
    addr="127.0.0.1:$(svc_port "$s")"
    impl=""
    [ "$s" = mongo ] && impl=" ($(mongo_impl_running_or_configured))"
    if pid="$(svc_pid "$s")"; then
      rss="$(awk '/^VmRSS:/ {printf "%.1fMiB", $2/1024}' "/proc/$pid/status" 2>/dev/null || echo '?')"
      if probe "$s" --quiet --timeout 1; then ready=ready; else ready=not-ready; fi
      printf '%-6s running  pid=%-8s %-16s rss=%-10s %s%s\n' "$s" "$pid" "$addr" "$rss" "$ready" "$impl"
    else
      printf '%-6s stopped  pid=%-8s %-16s rss=%-10s %s%s\n' "$s" "-" "$addr" "-" "-" "$impl"
      rc=3
    fi
  done
  return "$rc"
}

cmd_wipe() {
  take_lock
  parse_services
  stop_many "${ALL_SERVICES[@]}"
  local d
  for d in kafka redis ferretdb s3 logs pids; do
    rm -rf "${DATA_DIR:?}/$d"
  done
  make_dirs
  log "wiped service data in $DATA_DIR"
}

cmd_logs() {
  [ "$#" -ge 1 ] || die "usage: stack.sh logs SERVICE [LINES]"
  local s; s="$(canon "$1")"
  local f
  for f in $(svc_logs "$s"); do
    [ -f "$f" ] || continue
    printf -- '----- %s -----\n' "$f"
    tail -n "${2:-50}" "$f"
  done
}

cmd_kafka_run() {
  [ "$#" -ge 1 ] || die "usage: stack.sh kafka-run CLASS [ARGS...]"
  install_kafka
  exec java -Xmx512m -Dlog4j2.configurationFile="$KAFKA_CONF_DIR/log4j2-tools.xml" \
    -cp "$KAFKA_LIBS/*" "$@"
}

# smoke: real Kafka round trip with Kafka's own tool classes (create topic, produce, consume,
# delete) plus the Redis, Mongo and S3 probes. Needs the stack running.
cmd_smoke() {
  local bs="127.0.0.1:$KAFKA_PORT" topic="stack-smoke-$$-$RANDOM" n=20 t0 got
  local cp=(java -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$KAFKA_CONF_DIR/log4j2-tools.xml" -cp "$KAFKA_LIBS/*")
  t0="$(now)"
  svc_pid kafka >/dev/null || die "kafka is not running (stack.sh start kafka)"
  "${cp[@]}" org.apache.kafka.tools.TopicCommand --bootstrap-server "$bs" --create \
    --topic "$topic" --partitions 3 --replication-factor 1 >/dev/null
  seq 1 "$n" | sed 's/^/smoke-/' | "${cp[@]}" org.apache.kafka.tools.ConsoleProducer \
    --bootstrap-server "$bs" --topic "$topic" 2>/dev/null
  got="$("${cp[@]}" org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$bs" \
    --topic "$topic" --from-beginning --max-messages "$n" --timeout-ms 30000 2>/dev/null | sort -u | wc -l)"
  "${cp[@]}" org.apache.kafka.tools.TopicCommand --bootstrap-server "$bs" --delete --topic "$topic" >/dev/null
  [ "$got" = "$n" ] || die "kafka round trip: produced $n, consumed $got"
  log "kafka round trip ok: $n messages via topic $topic ($(since "$t0"))"
  local s
  for s in redis mongo s3; do
    if svc_pid "$s" >/dev/null; then probe "$s" | sed 's/^/[stack] /'; else warn "$s not running"; fi
  done
}

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }

main() {
  local cmd="${1:-}"
  [ "$#" -gt 0 ] && shift
  case "$cmd" in
    install)   cmd_install "$@" ;;
    start)     cmd_start "$@" ;;
    stop)      cmd_stop "$@" ;;
    stop-one)  [ "$#" -eq 1 ] || die "usage: stack.sh stop-one SERVICE"; cmd_stop "$1" ;;
    restart)   cmd_stop "$@"; cmd_start "$@" ;;
    status)    cmd_status "$@" ;;
    wipe)      cmd_wipe ;;
    logs)      cmd_logs "$@" ;;
    probe)     [ "$#" -ge 1 ] || die "usage: stack.sh probe SERVICE"
               local s; s="$(canon "$1")"; shift; probe "$s" "$@" ;;
    kafka-run) cmd_kafka_run "$@" ;;
    smoke)     cmd_smoke ;;
    -h|--help|help|"") usage ;;
    *) usage >&2; die "unknown command '$cmd'" ;;
  esac
}

main "$@"

#!/usr/bin/env bash
# Starts, stops and reports the real servers the tests run against: PostgreSQL 15, MinIO,
# Keycloak (realms from scripts/keycloak/) and a headless Chromium (installed, not started).
#
#   scripts/services.sh start  [postgres|minio|keycloak|chromium ...]   (no names = all)
#   scripts/services.sh stop   [names]
#   scripts/services.sh status [names]                                   (exit 3 if one is down)
#
# Downloads and builds are cached under $KHO_CACHE_DIR (outside the repository); run state (data,
# pid files, logs, generated credentials) lives under ${KHO_SERVICES_DIR:-/var/tmp/kho-services}.
# `start` is idempotent: a service that already runs is only checked again. After `start` and
# `stop`, $KHO_SERVICES_DIR/services.env lists the coordinates of the services that run, and
# `start` prints its path (the only thing written to standard output). Progress goes to stderr.
# Every daemon is detached (own session, stdin from /dev/null, output to its log), so a caller
# that reads this script's output through a pipe sees end-of-file when the script exits.
set -Eeuo pipefail
set +m  # no job control: background children stay in our process group until setsid
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---- pinned versions and fixed ports (one place) ---------------------------------------------
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
KEYCLOAK_VERSION=26.7.3
PG_MAJOR=15

HOST=127.0.0.1
PG_PORT=55432
MINIO_PORT=59000
MINIO_CONSOLE_PORT=59001
KC_PORT=58080
KC_MANAGEMENT_PORT=59090

KC_JAVA_HOME="${KHO_KEYCLOAK_JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}"
KC_HEAP="${KHO_KEYCLOAK_HEAP:--Xms256m -Xmx1g}"
KC_ADMIN="admin"
CHROMIUM=/usr/bin/chromium

PG_TIMEOUT="${KHO_PG_TIMEOUT:-60}"
MINIO_TIMEOUT="${KHO_MINIO_TIMEOUT:-60}"
KC_TIMEOUT="${KHO_KEYCLOAK_TIMEOUT:-180}"

ALL_SERVICES=(postgres minio keycloak chromium)

STATE_DIR="${KHO_SERVICES_DIR:-/var/tmp/kho-services}"
SECRETS_DIR="$STATE_DIR/secrets"
ENV_FILE="$STATE_DIR/services.env"

PG_BIN="/usr/lib/postgresql/$PG_MAJOR/bin"
PG_DIR="$STATE_DIR/postgres"
PG_DATA="$PG_DIR/data"
PG_SOCKET_DIR="$PG_DIR/run"
PG_LOG="$STATE_DIR/postgres.log"

MINIO_BIN_DIR="$KHO_CACHE_DIR/bin/minio-$MINIO_VERSION"
MINIO_BIN="$MINIO_BIN_DIR/minio"
MINIO_DATA="$STATE_DIR/minio-data"
MINIO_LOG="$STATE_DIR/minio.log"
MINIO_PID="$STATE_DIR/minio.pid"

KC_ZIP_NAME="keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip"
KC_DIST="$KHO_CACHE_DIR/keycloak-$KEYCLOAK_VERSION"   # pristine unpacked distribution (shared)
KC_BUILD_CACHE="$KC_DIST.start-dev-build"             # lib/quarkus as built by start-dev (shared)
KC_HOME="$STATE_DIR/keycloak-$KEYCLOAK_VERSION"        # this state dir's runnable copy
KC_REALMS_DIR="$KHO_ROOT/scripts/keycloak"
KC_LOG="$STATE_DIR/keycloak.log"
KC_PID="$STATE_DIR/keycloak.pid"
KC_FINGERPRINT="$STATE_DIR/keycloak.fingerprint"

CHROMIUM_MARK="$STATE_DIR/chromium.enabled"
APT_LOG="$STATE_DIR/apt.log"

# ---- helpers ----------------------------------------------------------------------------------
CURRENT_SERVICE=""   # named in the error message when a command fails unexpectedly
CURRENT_LOG=""

now_ms() { date +%s%3N; }
elapsed() { local ms=$(($(now_ms) - $1)); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }

show_log_tail() {
  local logfile=$1
  if [ -n "$logfile" ] && [ -s "$logfile" ]; then
    printf '[kho] last 20 lines of %s:\n' "$logfile" >&2
    tail -n 20 "$logfile" | sed 's/^/    /' >&2
  fi
}

# fail LOGFILE MESSAGE...: one-line error naming the service and its log, the log's tail, exit 1.
fail() {
  local logfile=$1; shift
  trap - ERR
  if [ -n "$logfile" ]; then
    printf '[kho] error: %s; see %s\n' "$*" "$logfile" >&2
  else
    printf '[kho] error: %s\n' "$*" >&2
  fi
  show_log_tail "$logfile"
  exit 1
}

on_err() {
  local status=$? line=$1
  trap - ERR
  if [ -n "$CURRENT_SERVICE" ]; then
    fail "$CURRENT_LOG" "$CURRENT_SERVICE: a step failed (services.sh line $line, exit status $status)"
  fi
  fail "" "services.sh failed at line $line (exit status $status)"
}
trap 'on_err $LINENO' ERR

# secret NAME: a random hex string generated once and kept in the state dir.
secret() {
  local file="$SECRETS_DIR/$1"
  if [ ! -s "$file" ]; then
    mkdir -p "$SECRETS_DIR"
    chmod 700 "$SECRETS_DIR"
    (umask 077 && od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$file.tmp" && mv "$file.tmp" "$file")
  fi
  cat "$file"
}

# A package's maintainer scripts may start daemons (postgresql-15 starts Debian's own cluster on
# port 5432 where an init system answers): they get no descriptor of ours beyond 0-2.
apt_get() { ( close_fds; DEBIAN_FRONTEND=noninteractive exec apt-get -o DPkg::Lock::Timeout=300 "$@" ); }

APT_UPDATED=0
# ensure_package PACKAGE PATH: install the Debian package when PATH is missing.
ensure_package() {
  local pkg=$1 path=$2
  [ -e "$path" ] && return 0
  command -v apt-get >/dev/null || fail "" "$path is missing and apt-get is not available to install $pkg"
  mkdir -p "$STATE_DIR"
  if [ "$APT_UPDATED" = 0 ]; then
    log "apt-get update (to install $pkg)"
    apt_get update </dev/null >>"$APT_LOG" 2>&1 || fail "$APT_LOG" "apt-get update failed (needed to install $pkg)"
    APT_UPDATED=1
  fi
  log "apt-get install $pkg"
  apt_get install -y "$pkg" </dev/null >>"$APT_LOG" 2>&1 || fail "$APT_LOG" "apt-get install $pkg failed"
  [ -e "$path" ] || fail "$APT_LOG" "package $pkg installed but $path is still missing"
}

http_ok() { curl -fsS -o /dev/null --max-time 5 "$1" 2>/dev/null; }

# pid_running PIDFILE PATTERN: the pid in PIDFILE is alive and its command line contains PATTERN
# (so a pid reused by an unrelated process after a reboot is never taken for ours).
pid_running() {
  local pidfile=$1 pattern=$2 pid cmdline
  [ -s "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"$pattern"* ]]
}

# port_busy PORT: something accepts connections on $HOST:PORT.
port_busy() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# close_fds: in a subshell about to exec a daemon, close every descriptor above 2, so that no
# pipe or lock inherited from our caller (or our own lock fds 8 and 9) stays open in the daemon.
close_fds() {
  local fd
  for fd in /proc/"$BASHPID"/fd/*; do
    fd=${fd##*/}
    if [[ $fd =~ ^[0-9]+$ ]] && [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
  done
}

# launch PIDFILE LOGFILE COMMAND...: run COMMAND fully detached in a new session. The session
# leader writes its own pid (setsid may fork, so $! is not it) and then becomes COMMAND.
launch() {
  local pidfile=$1 logfile=$2 _
  shift 2
  rm -f "$pidfile"
  (
    close_fds
    # shellcheck disable=SC2016  # $$ and $@ are expanded by the inner shell
    exec setsid nohup /bin/sh -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidfile" "$@" \
      </dev/null >>"$logfile" 2>&1
  ) &
  for _ in $(seq 1 100); do
    [ -s "$pidfile" ] && return 0
    sleep 0.1
  done
  fail "$logfile" "$CURRENT_SERVICE did not start (no pid file $pidfile)"
}

# stop_pid NAME PIDFILE PATTERN: TERM the daemon's process group, wait up to 30 s, then KILL.
stop_pid() {
  local name=$1 pidfile=$2 pattern=$3 pid _
  if ! pid_running "$pidfile" "$pattern"; then
    rm -f "$pidfile"
    return 0
  fi
  pid=$(cat "$pidfile")
  log "stopping $name (pid $pid)"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not stop within 30 s; sending SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    sleep 1
  fi
  rm -f "$pidfile"
}

# wait_ready SECONDS PIDFILE PATTERN CHECK...: poll CHECK every half second. Returns 0 when it
# passes, 1 on timeout, 2 when the daemon exits first (PIDFILE empty = no process to watch).
wait_ready() {
  local seconds=$1 pidfile=$2 pattern=$3 deadline
  shift 3
  deadline=$(($(now_ms) + seconds * 1000))
  while :; do
    "$@" && return 0
    if [ -n "$pidfile" ] && ! pid_running "$pidfile" "$pattern"; then
      "$@" && return 0
      return 2
    fi
    [ "$(now_ms)" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

rotate_log() { if [ -f "$1" ]; then mv -f "$1" "$1.1"; fi; }

# Builds and downloads in the shared cache are serialized across state dirs (fd 8).
cache_lock() {
  exec 8>"$KHO_CACHE_DIR/.services-install.lock"
  flock -w 1800 8 || fail "" "another services.sh holds $KHO_CACHE_DIR/.services-install.lock"
}
cache_unlock() { exec 8>&-; }

# ---- PostgreSQL -------------------------------------------------------------------------------
as_postgres() { runuser -u postgres -- "$@"; }

pg_running() {
  [ -f "$PG_DATA/postmaster.pid" ] && [ -x "$PG_BIN/pg_ctl" ] \
    && as_postgres "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

pg_password() { secret postgres-password; }

pg_login_ok() {
  PGPASSWORD="$(pg_password)" PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -h "$HOST" -p "$PG_PORT" -U kho \
    -d kho -XqAt -c 'select 1' </dev/null >/dev/null 2>&1
}

pg_init() {
  log "postgres: creating a cluster in $PG_DATA"
  rm -rf "$PG_DIR"
  mkdir -p "$PG_DATA" "$PG_SOCKET_DIR"
  chown -R postgres:postgres "$PG_DIR"
  chmod 700 "$PG_DATA"
  touch "$PG_LOG"
  chown postgres:postgres "$PG_LOG"
  as_postgres "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=peer --auth-host=scram-sha-256 </dev/null >>"$PG_LOG" 2>&1 9>&- \
    || fail "$PG_LOG" "PostgreSQL initdb failed"
  # Test cluster: loopback only, private socket dir; durability traded for speed.
  cat >>"$PG_DATA/postgresql.conf" <<EOF

# --- added by scripts/services.sh (test cluster) ---
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
password_encryption = 'scram-sha-256'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
log_timezone = 'UTC'
timezone = 'UTC'
EOF
  touch "$PG_DIR/.initialized"
}

pg_setup_role() {
  # Peer auth over the private socket; the password goes through stdin, not the command line.
  # shellcheck disable=SC2016  # $$ is SQL dollar quoting
  printf '%s\n' \
    'DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '"'kho'"') THEN CREATE ROLE kho; END IF; END $$;' \
    "ALTER ROLE kho WITH LOGIN SUPERUSER PASSWORD '$(pg_password)';" \
    "SELECT 'CREATE DATABASE kho OWNER kho' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'kho')\\gexec" \
    | as_postgres "$PG_BIN/psql" -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U postgres -d postgres \
      -XqAt -v ON_ERROR_STOP=1 >>"$PG_LOG" 2>&1 9>&- \
    || fail "$PG_LOG" "PostgreSQL: creating role/database kho failed"
}

start_postgres() {
  CURRENT_SERVICE=PostgreSQL CURRENT_LOG=$PG_LOG
  local t0
  t0=$(now_ms)
  ensure_package "postgresql-$PG_MAJOR" "$PG_BIN/pg_ctl"
  id postgres >/dev/null 2>&1 || fail "" "PostgreSQL: the postgres OS user does not exist"
  as_postgres test -x "$STATE_DIR" \
    || fail "" "PostgreSQL: the postgres user cannot enter $STATE_DIR (set KHO_SERVICES_DIR elsewhere)"
  if ! pg_running; then
    if [ ! -f "$PG_DIR/.initialized" ] || [ ! -f "$PG_DATA/PG_VERSION" ]; then
      pg_init
    fi
    rotate_log "$PG_LOG"
    touch "$PG_LOG"
    chown postgres:postgres "$PG_LOG"
    log "postgres: starting on $HOST:$PG_PORT"
    # pg_ctl starts the postmaster in the background with its log as output; it inherits the
    # other descriptors of pg_ctl, hence close_fds.
    ( close_fds; exec runuser -u postgres -- "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" \
      -w -t "$PG_TIMEOUT" </dev/null >>"$PG_LOG.ctl" 2>&1 ) \
      || { cat "$PG_LOG.ctl" >>"$PG_LOG" 2>/dev/null || true
           fail "$PG_LOG" "PostgreSQL did not start within $PG_TIMEOUT s"; }
    rm -f "$PG_LOG.ctl"
  fi
  pg_setup_role
  wait_ready "$PG_TIMEOUT" "" "" pg_login_ok \
    || fail "$PG_LOG" "PostgreSQL does not accept the kho login on $HOST:$PG_PORT"
  log "postgres: ready on $HOST:$PG_PORT in $(elapsed "$t0") s"
}

stop_postgres() {
  CURRENT_SERVICE=PostgreSQL CURRENT_LOG=$PG_LOG
  pg_running || return 0
  log "stopping postgres"
  as_postgres "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 </dev/null >/dev/null 2>&1 9>&- \
    || as_postgres "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m immediate -w -t 30 </dev/null >/dev/null 2>&1 9>&- \
    || fail "$PG_LOG" "PostgreSQL did not stop"
}

# ---- MinIO ------------------------------------------------------------------------------------
minio_running() { pid_running "$MINIO_PID" "$MINIO_BIN"; }
minio_ready() { http_ok "http://$HOST:$MINIO_PORT/minio/health/ready"; }

build_minio() {
  [ -x "$MINIO_BIN" ] && return 0
  cache_lock
  if [ -x "$MINIO_BIN" ]; then cache_unlock; return 0; fi
  local go build_log="$STATE_DIR/minio-build.log" t0
  go=$(command -v go || true)
  [ -n "$go" ] || go=/usr/local/go/bin/go
  [ -x "$go" ] || fail "" "MinIO: Go is needed to build MinIO and was not found (PATH or /usr/local/go)"
  t0=$(now_ms)
  log "minio: building github.com/minio/minio@$MINIO_VERSION (a few minutes the first time)"
  rm -rf "$MINIO_BIN_DIR.tmp"
  mkdir -p "$MINIO_BIN_DIR.tmp"
  : >"$build_log"
  GOBIN="$MINIO_BIN_DIR.tmp" timeout 1800 "$go" install "github.com/minio/minio@$MINIO_VERSION" \
    </dev/null >>"$build_log" 2>&1 9>&- \
    || fail "$build_log" "MinIO build (go install github.com/minio/minio@$MINIO_VERSION) failed"
  rm -rf "$MINIO_BIN_DIR"
  mv "$MINIO_BIN_DIR.tmp" "$MINIO_BIN_DIR"
  cache_unlock
  log "minio: built in $(elapsed "$t0") s"
}

start_minio() {
  CURRENT_SERVICE=MinIO CURRENT_LOG=$MINIO_LOG
  local t0 rc=0
  t0=$(now_ms)
  ensure_package curl /usr/bin/curl
  build_minio
  if ! minio_running; then
    local p
    for p in "$MINIO_PORT" "$MINIO_CONSOLE_PORT"; do
      port_busy "$p" && fail "" "MinIO cannot start: $HOST:$p is already in use by another process (not $MINIO_PID)"
    done
    mkdir -p "$MINIO_DATA"
    rotate_log "$MINIO_LOG"
    log "minio: starting on $HOST:$MINIO_PORT (console $HOST:$MINIO_CONSOLE_PORT)"
    MINIO_ROOT_USER="kho$(secret minio-root-user | cut -c1-12)" \
    MINIO_ROOT_PASSWORD="$(secret minio-root-password)" \
    MINIO_UPDATE=off \
      launch "$MINIO_PID" "$MINIO_LOG" "$MINIO_BIN" server "$MINIO_DATA" \
      --address "$HOST:$MINIO_PORT" --console-address "$HOST:$MINIO_CONSOLE_PORT"
  fi
  wait_ready "$MINIO_TIMEOUT" "$MINIO_PID" "$MINIO_BIN" minio_ready || rc=$?
  case $rc in
    0) ;;
    2) fail "$MINIO_LOG" "MinIO exited before becoming ready" ;;
    *) fail "$MINIO_LOG" "MinIO did not become ready within $MINIO_TIMEOUT s" ;;
  esac
  log "minio: ready on $HOST:$MINIO_PORT in $(elapsed "$t0") s"
}

stop_minio() {
  CURRENT_SERVICE=MinIO CURRENT_LOG=$MINIO_LOG
  stop_pid minio "$MINIO_PID" "$MINIO_BIN"
}

# ---- Keycloak ---------------------------------------------------------------------------------
keycloak_running() { pid_running "$KC_PID" "$KC_HOME/"; }
keycloak_ready() {
  http_ok "http://$HOST:$KC_PORT/realms/national-eid/.well-known/openid-configuration" \
    && http_ok "http://$HOST:$KC_PORT/realms/kho/.well-known/openid-configuration"
}

# The realm files and options a running Keycloak was started with; a change means restart.
keycloak_fingerprint() {
  { echo "$KEYCLOAK_VERSION $KC_PORT $KC_HEAP"; cat "$KC_REALMS_DIR"/*.json; } | sha256sum | cut -c1-64
}

install_keycloak() {
  [ -x "$KC_DIST/bin/kc.sh" ] && return 0
  cache_lock
  if [ -x "$KC_DIST/bin/kc.sh" ]; then cache_unlock; return 0; fi
  local downloads="$KHO_CACHE_DIR/downloads" fetch_log="$STATE_DIR/keycloak-fetch.log"
  mkdir -p "$downloads"
  : >"$fetch_log"
  if [ ! -s "$downloads/$KC_ZIP_NAME" ]; then
    ensure_package maven /usr/bin/mvn
    log "keycloak: fetching org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip with Maven"
    mvn -B -q dependency:copy "-Dartifact=org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip" \
      "-DoutputDirectory=$downloads" </dev/null >>"$fetch_log" 2>&1 9>&- \
      || fail "$fetch_log" "Keycloak download with Maven failed"
    [ -s "$downloads/$KC_ZIP_NAME" ] || fail "$fetch_log" "Maven did not produce $downloads/$KC_ZIP_NAME"
  fi
  ensure_package unzip /usr/bin/unzip
  log "keycloak: unpacking into $KC_DIST"
  rm -rf "$KC_DIST.tmp"
  mkdir -p "$KC_DIST.tmp"
  if ! unzip -q "$downloads/$KC_ZIP_NAME" -d "$KC_DIST.tmp" </dev/null >>"$fetch_log" 2>&1; then
    rm -rf "$KC_DIST.tmp" "${downloads:?}/$KC_ZIP_NAME"
    fail "$fetch_log" "Keycloak archive $KC_ZIP_NAME is damaged (deleted; run again to fetch it anew)"
  fi
  [ -x "$KC_DIST.tmp/keycloak-$KEYCLOAK_VERSION/bin/kc.sh" ] \
    || fail "$fetch_log" "Keycloak archive has no keycloak-$KEYCLOAK_VERSION/bin/kc.sh"
  rm -rf "$KC_DIST"
  mv "$KC_DIST.tmp/keycloak-$KEYCLOAK_VERSION" "$KC_DIST"
  rm -rf "$KC_DIST.tmp"
  cache_unlock
}

# A runnable copy of the distribution in the state dir: the read-only parts (jars, themes) are
# hard links to the cache, the parts Keycloak writes (lib/quarkus = its build, conf, data) are
# real copies, so the shared cache stays pristine. The first start-dev rebuilds lib/quarkus for
# the dev profile (20-30 s); that build is kept in the cache and seeded into new copies, and
# Keycloak itself rebuilds again if its build options ever differ.
prepare_keycloak_home() {
  [ -f "$KC_HOME/.complete" ] && return 0
  log "keycloak: preparing $KC_HOME"
  rm -rf "$KC_HOME"
  cp -al "$KC_DIST" "$KC_HOME" 2>/dev/null || { rm -rf "$KC_HOME"; cp -a "$KC_DIST" "$KC_HOME"; }
  local d
  for d in lib/quarkus conf providers; do
    rm -rf "${KC_HOME:?}/$d"
    cp -a "$KC_DIST/$d" "$KC_HOME/$d"
  done
  if [ -f "$KC_BUILD_CACHE/.complete" ]; then
    rm -rf "$KC_HOME/lib/quarkus"
    cp -a "$KC_BUILD_CACHE/quarkus" "$KC_HOME/lib/quarkus"
  fi
  rm -rf "$KC_HOME/data"
  touch "$KC_HOME/.complete"
}

save_keycloak_build() {
  [ -f "$KC_BUILD_CACHE/.complete" ] && return 0
  cache_lock
  if [ -f "$KC_BUILD_CACHE/.complete" ]; then cache_unlock; return 0; fi
  rm -rf "$KC_BUILD_CACHE.tmp"
  mkdir -p "$KC_BUILD_CACHE.tmp"
  cp -a "$KC_HOME/lib/quarkus" "$KC_BUILD_CACHE.tmp/quarkus"
  touch "$KC_BUILD_CACHE.tmp/.complete"
  rm -rf "$KC_BUILD_CACHE"
  mv "$KC_BUILD_CACHE.tmp" "$KC_BUILD_CACHE"
  cache_unlock
}

start_keycloak() {
  CURRENT_SERVICE=Keycloak CURRENT_LOG=$KC_LOG
  local t0 rc=0 fingerprint f
  t0=$(now_ms)
  [ -x "$KC_JAVA_HOME/bin/java" ] \
    || fail "" "Keycloak $KEYCLOAK_VERSION needs the Java at $KC_JAVA_HOME (Temurin 25), which is missing; set KHO_KEYCLOAK_JAVA_HOME to another JDK 21+"
  ensure_package curl /usr/bin/curl
  compgen -G "$KC_REALMS_DIR/*.json" >/dev/null || fail "" "Keycloak: no realm files in $KC_REALMS_DIR"
  for f in "$KC_REALMS_DIR"/*.json; do
    python3 -c 'import json, sys; json.load(open(sys.argv[1], encoding="utf-8"))' "$f" 2>"$STATE_DIR/realm-check.log" \
      || fail "$STATE_DIR/realm-check.log" "Keycloak: realm file $f is not valid JSON"
  done
  rm -f "$STATE_DIR/realm-check.log"
  fingerprint=$(keycloak_fingerprint)
  if keycloak_running && [ "$(cat "$KC_FINGERPRINT" 2>/dev/null)" != "$fingerprint" ]; then
    log "keycloak: realm files or options changed since it started; restarting"
    stop_pid keycloak "$KC_PID" "$KC_HOME/"
  fi
  if ! keycloak_running; then
    port_busy "$KC_PORT" && fail "" "Keycloak cannot start: $HOST:$KC_PORT is already in use by another process (not $KC_PID)"
    install_keycloak
    prepare_keycloak_home
    # A fresh in-memory database and fresh data dir on every start: the realm files are imported
    # each time, so edits always take effect and every run starts from the same state.
    rm -rf "$KC_HOME/data"
    mkdir -p "$KC_HOME/data/import"
    cp "$KC_REALMS_DIR"/*.json "$KC_HOME/data/import/"
    rotate_log "$KC_LOG"
    log "keycloak: starting on $HOST:$KC_PORT (importing $(cd "$KC_REALMS_DIR" && echo *.json))"
    (
      # Only our settings: no KC_* or JAVA_OPTS* from the caller's environment.
      while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(KC_|JAVA_OPTS|JAVA_ADD_OPENS)' || true)
      export JAVA_HOME="$KC_JAVA_HOME"
      export JAVA_OPTS_KC_HEAP="$KC_HEAP"
      export KC_BOOTSTRAP_ADMIN_USERNAME="$KC_ADMIN"
      KC_BOOTSTRAP_ADMIN_PASSWORD="$(secret keycloak-admin-password)"
      export KC_BOOTSTRAP_ADMIN_PASSWORD
      launch "$KC_PID" "$KC_LOG" "$KC_HOME/bin/kc.sh" start-dev \
        --http-host "$HOST" --http-port "$KC_PORT" --hostname "http://$HOST:$KC_PORT" \
        --http-management-port "$KC_MANAGEMENT_PORT" --db dev-mem --import-realm
    ) || exit 1
    echo "$fingerprint" >"$KC_FINGERPRINT"
  fi
  wait_ready "$KC_TIMEOUT" "$KC_PID" "$KC_HOME/" keycloak_ready || rc=$?
  case $rc in
    0) ;;
    2) fail "$KC_LOG" "Keycloak exited before becoming ready" ;;
    *) fail "$KC_LOG" "Keycloak did not become ready within $KC_TIMEOUT s" ;;
  esac
  save_keycloak_build
  log "keycloak: ready on $HOST:$KC_PORT in $(elapsed "$t0") s"
}

stop_keycloak() {
  CURRENT_SERVICE=Keycloak CURRENT_LOG=$KC_LOG
  stop_pid keycloak "$KC_PID" "$KC_HOME/"
  rm -f "$KC_FINGERPRINT"
}

# ---- Chromium (installed, nothing to run) -----------------------------------------------------
start_chromium() {
  CURRENT_SERVICE=Chromium CURRENT_LOG=$APT_LOG
  local version_log="$STATE_DIR/chromium.log" t0
  t0=$(now_ms)
  ensure_package chromium "$CHROMIUM"
  timeout 60 "$CHROMIUM" --headless --no-sandbox --version </dev/null >"$version_log" 2>&1 9>&- \
    || fail "$version_log" "Chromium at $CHROMIUM does not run"
  log "chromium: $(grep -m 1 '^Chromium' "$version_log" || tail -n 1 "$version_log") ready in $(elapsed "$t0") s"
  touch "$CHROMIUM_MARK"
}

stop_chromium() { rm -f "$CHROMIUM_MARK"; }

chromium_running() { [ -f "$CHROMIUM_MARK" ] && [ -x "$CHROMIUM" ]; }

# ---- services.env -----------------------------------------------------------------------------
write_env() {
  local tmp="$ENV_FILE.tmp" any=0
  (umask 077 && : >"$tmp")
  if pg_running; then
    any=1
    {
      echo "KHO_TEST_DATABASE_URL=postgresql+psycopg://kho:$(pg_password)@$HOST:$PG_PORT/kho"
      echo "KHO_TEST_PG_ADMIN_URL=postgresql+psycopg://kho:$(pg_password)@$HOST:$PG_PORT/postgres"
    } >>"$tmp"
  fi
  if minio_running; then
    any=1
    {
      echo "KHO_TEST_S3_ENDPOINT=$HOST:$MINIO_PORT"
      echo "KHO_TEST_S3_ACCESS_KEY=kho$(secret minio-root-user | cut -c1-12)"
      echo "KHO_TEST_S3_SECRET_KEY=$(secret minio-root-password)"
    } >>"$tmp"
  fi
  if keycloak_running; then
    any=1
    {
      echo "KHO_TEST_KEYCLOAK_URL=http://$HOST:$KC_PORT"
      echo "KHO_TEST_KEYCLOAK_ADMIN=$KC_ADMIN"
      echo "KHO_TEST_KEYCLOAK_ADMIN_PASSWORD=$(secret keycloak-admin-password)"
    } >>"$tmp"
  fi
  if chromium_running; then
    any=1
    echo "KHO_TEST_CHROMIUM=$CHROMIUM" >>"$tmp"
  fi
  if [ "$any" = 1 ]; then
    mv -f "$tmp" "$ENV_FILE"
  else
    rm -f "$tmp" "$ENV_FILE"
  fi
}

# ---- status -----------------------------------------------------------------------------------
status_line() { printf '%-9s %-8s %s\n' "$1" "$2" "$3"; }

status_one() {
  case $1 in
    postgres)
      if pg_running && pg_login_ok; then status_line postgres ready "$HOST:$PG_PORT (data $PG_DATA)"
      elif pg_running; then status_line postgres running "$HOST:$PG_PORT, but the kho login fails"; return 1
      else status_line postgres stopped ""; return 1; fi ;;
    minio)
      if minio_running && minio_ready; then status_line minio ready "$HOST:$MINIO_PORT pid $(cat "$MINIO_PID")"
      elif minio_running; then status_line minio running "pid $(cat "$MINIO_PID"), not ready"; return 1
      else status_line minio stopped ""; return 1; fi ;;
    keycloak)
      if keycloak_running && keycloak_ready; then status_line keycloak ready "http://$HOST:$KC_PORT pid $(cat "$KC_PID")"
      elif keycloak_running; then status_line keycloak running "pid $(cat "$KC_PID"), realms not served yet"; return 1
      else status_line keycloak stopped ""; return 1; fi ;;
    chromium)
      if chromium_running; then status_line chromium ready "$CHROMIUM"
      elif [ -x "$CHROMIUM" ]; then status_line chromium stopped "installed at $CHROMIUM, not enabled by start"; return 1
      else status_line chromium stopped "not installed"; return 1; fi ;;
  esac
}

# ---- main -------------------------------------------------------------------------------------
usage() {
  echo "usage: $0 start|stop|status [postgres|minio|keycloak|chromium ...]" >&2
  exit 2
}

[ $# -ge 1 ] || usage
command=$1
shift
services=("$@")
[ ${#services[@]} -gt 0 ] || services=("${ALL_SERVICES[@]}")
for s in "${services[@]}"; do
  case $s in postgres | minio | keycloak | chromium) ;; *) echo "[kho] unknown service: $s" >&2; usage ;; esac
done

mkdir -p "$STATE_DIR" "$KHO_CACHE_DIR"
chmod 755 "$STATE_DIR"

case $command in
  start)
    exec 9>"$STATE_DIR/.lock"
    flock -w 900 9 || fail "" "another services.sh holds $STATE_DIR/.lock"
    t_all=$(now_ms)
    for s in "${services[@]}"; do "start_$s"; done
    CURRENT_SERVICE="" CURRENT_LOG=""
    write_env
    log "services started in $(elapsed "$t_all") s; coordinates in $ENV_FILE"
    echo "$ENV_FILE"
    ;;
  stop)
    exec 9>"$STATE_DIR/.lock"
    flock -w 900 9 || fail "" "another services.sh holds $STATE_DIR/.lock"
    # Reverse order of start.
    for ((i = ${#services[@]} - 1; i >= 0; i--)); do "stop_${services[i]}"; done
    CURRENT_SERVICE="" CURRENT_LOG=""
    write_env
    ;;
  status)
    rc=0
    for s in "${services[@]}"; do status_one "$s" || rc=3; done
    [ -f "$ENV_FILE" ] && echo "coordinates: $ENV_FILE"
    exit "$rc"
    ;;
  *) usage ;;
esac

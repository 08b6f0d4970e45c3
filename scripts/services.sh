#!/usr/bin/env bash
# scripts/services.sh — owns the throwaway PostgreSQL and Redis that `make run`, `make test`
# and `make bench` use on a developer's machine or in CI.
#
#   scripts/services.sh start|stop|status|env|clean [pg|redis|all]     (default: all)
#
# Why: Sluice needs a real PostgreSQL (the event store) and a real Redis (the fan-out), and a
# fresh Debian 12 machine has neither running. This starts private servers, on loopback only,
# on ports nobody else uses, with their state under one run directory:
#   SLUICE_RUN_DIR (default <repo>/.sluice)
#     env            `export SLUICE_DATABASE_URL=...` lines for what was started (`env` prints it)
#     postgres.log   redis.log   redis.pid   pg.port   redis.port   pg.base
#     pg/            data/ and sock/ of PostgreSQL, or the same under /tmp/sluice-pg-<hash>
#                    when the run dir is not reachable by the `postgres` user (a clone
#                    under /root, say); pg.base remembers which.
# Several run dirs can be up at once (the integration tests start a second PostgreSQL to cut
# it off); each component keeps its port across stop/start, so a URL stays valid while its
# server is stopped and started again. `start` reuses a server that is alive and answering.
# Using external servers (SLUICE_DATABASE_URL / SLUICE_REDIS_URL already set) is decided by
# the callers (scripts/run.sh, scripts/test.sh, bench/run.sh), not here: this always starts
# what it is asked to.
#
# PostgreSQL runs with durable settings (fsync and synchronous_commit on): a 201 from Sluice
# means committed, and the benchmarks must measure that, not a RAM disk.
# shellcheck disable=SC2317  # functions run from traps and "${c}_start"-style dispatch
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)

log() { echo "services: $*" >&2; }
die() {
  log "$*"
  exit 1
}
usage() {
  echo "usage: $0 start|stop|status|env|clean [pg|redis|all]" >&2
  exit 2
}

cmd=${1:-}
what=${2:-all}
case "$cmd" in start | stop | status | env | clean) ;; *) usage ;; esac
case "$what" in pg | redis | all) ;; *) usage ;; esac

RUN_DIR=${SLUICE_RUN_DIR:-$REPO/.sluice}
if [[ ! -d $RUN_DIR && $cmd != start ]]; then # nothing was ever started there
  case "$cmd" in
    env) die "nothing started in $RUN_DIR (run: $0 start)" ;;
    status)
      [[ $what == redis ]] || echo "pg: stopped"
      [[ $what == pg ]] || echo "redis: stopped"
      exit 3
      ;;
    *) exit 0 ;;
  esac
fi
mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd -P)
ENV_FILE=$RUN_DIR/env
PORTS_DIR=/tmp/sluice-ports # one claim file per port handed out, shared by every run dir

# Serialise commands on one run dir (two `start`s at once must not initdb twice).
exec 9>>"$RUN_DIR/.services.lock"
flock -w 300 9 || die "timed out waiting for the lock on $RUN_DIR"

# proc_alive PID NAME: PID runs and is a NAME (not a reused pid, not a zombie left by a crash).
proc_alive() {
  local stat
  [[ $1 =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  [[ $stat == *"($2"* ]] || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != [ZX] ]]
}

# ---------------------------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------------------------

# port_free PORT: true when no socket on this machine holds PORT (listening or connected).
port_free() {
  local p=$1
  if command -v ss >/dev/null 2>&1; then
    # TIME-WAIT leftovers of closed connections do not stop a SO_REUSEADDR listener.
    [[ -z $(ss -Htan exclude time-wait "( sport = :$p )" 2>/dev/null) ]]
  else
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then return 1; fi
  fi
}

# port_unlistened PORT: true when nothing listens on PORT. A server coming back on its own
# port needs only that: clients' half-closed connections to its last life (CLOSE-WAIT /
# FIN-WAIT) do not stop it from binding, and keeping the port keeps their URLs valid.
port_unlistened() {
  local p=$1
  if command -v ss >/dev/null 2>&1; then
    [[ -z $(ss -Htln "( sport = :$p )" 2>/dev/null) ]]
  else
    port_free "$p"
  fi
}

# port_claimed_by_other PORT: true when another run dir that still exists handed out PORT and
# still records it (its server may be stopped for a moment, as in an outage test).
port_claimed_by_other() {
  local p=$1 dir comp
  [[ -f $PORTS_DIR/$p ]] || return 1
  read -r comp dir <"$PORTS_DIR/$p" || return 1
  [[ $dir != "$RUN_DIR" && -d $dir && $(cat "$dir/$comp.port" 2>/dev/null) == "$p" ]]
}

# lock_ports / unlock_ports: held from choosing a port until the server has bound it, so two
# run dirs starting at the same moment cannot pick the same port.
lock_ports() {
  mkdir -p "$PORTS_DIR"
  chmod 1777 "$PORTS_DIR" 2>/dev/null || true
  exec 8>>"$PORTS_DIR/lock"
  flock -w 120 8 || die "timed out waiting for $PORTS_DIR/lock"
}
unlock_ports() { exec 8>&-; }

# pick_port COMPONENT: prints the port COMPONENT used last time if it is free, else a free,
# unclaimed port below the kernel's ephemeral range (so no outgoing connection can hold it).
pick_port() {
  local comp=$1 prev p lo top i
  prev=$(cat "$RUN_DIR/$comp.port" 2>/dev/null || true)
  if [[ -n $prev ]] && port_unlistened "$prev"; then
    echo "$prev"
    return
  fi
  [[ -n $prev ]] && log "$comp: port $prev is taken now; choosing another"
  read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || lo=32768
  top=$((lo - 1))
  ((top >= 21000)) || top=30999
  for ((i = 0; i < 500; i++)); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % (top - 20000 + 1)))
    if ! port_claimed_by_other "$p" && port_free "$p"; then
      echo "$p"
      return
    fi
  done
  die "no free port found in 20000-$top"
}

claim_port() { # claim_port COMPONENT PORT
  echo "$1 $RUN_DIR" >"$PORTS_DIR/$2"
  echo "$2" >"$RUN_DIR/$1.port"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------

# The newest installed server, unless the data dir was made by another major version.
pg_find_bin() {
  local d best=""
  if [[ -n ${PG_BASE:-} && -f $PG_BASE/data/PG_VERSION ]]; then
    d=/usr/lib/postgresql/$(cat "$PG_BASE/data/PG_VERSION")/bin
    if [[ -x $d/postgres ]]; then
      echo "$d"
      return
    fi
  fi
  best=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null |
    sort -V | tail -n 1)
  [[ -n $best && -x $best/initdb ]] || return 1
  echo "$best"
}

# initdb refuses root: as root, PostgreSQL runs as the `postgres` system user.
if [[ $(id -u) -eq 0 ]]; then
  PG_USER=postgres
  id -u "$PG_USER" >/dev/null 2>&1 || die "user postgres missing (run scripts/install-deps.sh)"
else
  PG_USER=$(id -un)
fi
own_pg() { # own_pg PATH...: hand PATHs to the PostgreSQL user
  if [[ $(id -u) -eq 0 ]]; then chown "$PG_USER:" "$@"; fi
}
# close_fds: in a subshell about to start a daemon, close every fd above 2 — our lock fds
# and whatever the caller passed down (a pipe, say). A daemon that inherited them would hold
# the locks, or keep the caller's pipe open, for its whole life.
close_fds() {
  local fd
  for fd in "/proc/$BASHPID/fd/"*; do
    fd=${fd##*/}
    if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
  done
}

# as_pg CMD...: run CMD as the PostgreSQL user, from /, with no inherited fds above 2.
as_pg() {
  (
    cd /
    close_fds
    if [[ $(id -u) -eq 0 ]]; then
      exec runuser -u "$PG_USER" -- "$@"
    else
      exec "$@"
    fi
  )
}

# pg_choose_base: sets PG_BASE, the dir holding data/ and sock/. <run dir>/pg when the
# postgres user can reach it and the socket path fits in sun_path; else /tmp/sluice-pg-<hash>.
pg_choose_base() {
  if [[ -f $RUN_DIR/pg.base ]]; then
    PG_BASE=$(cat "$RUN_DIR/pg.base")
    return
  fi
  local cand=$RUN_DIR/pg sockname=/sock/.s.PGSQL.65535
  if ((${#cand} + ${#sockname} > 100)); then
    cand=""
  else
    mkdir -p "$cand"
    own_pg "$cand"
    chmod 700 "$cand"
    if ! as_pg test -w "$cand" 2>/dev/null; then
      rmdir "$cand" 2>/dev/null || true
      cand=""
    fi
  fi
  if [[ -z $cand ]]; then
    cand=/tmp/sluice-pg-$(printf %s "$RUN_DIR" | sha256sum | cut -c1-12)
    log "pg: $RUN_DIR is not reachable by user $PG_USER; data goes to $cand"
    mkdir -p "$cand"
    own_pg "$cand"
    chmod 700 "$cand"
  fi
  PG_BASE=$cand
  echo "$PG_BASE" >"$RUN_DIR/pg.base"
}

pg_init_vars() {
  PG_BASE=""
  if [[ -f $RUN_DIR/pg.base ]]; then PG_BASE=$(cat "$RUN_DIR/pg.base"); fi
  PG_BIN=$(pg_find_bin || true)
  PG_DATA=${PG_BASE:+$PG_BASE/data}
  PG_SOCK=${PG_BASE:+$PG_BASE/sock}
  PG_LOG=$RUN_DIR/postgres.log
}

# pg_pid: prints the postmaster's pid when it is alive (per postmaster.pid), else fails.
pg_pid() {
  local pid
  [[ -n $PG_DATA && -f $PG_DATA/postmaster.pid ]] || return 1
  pid=$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null) || return 1
  proc_alive "$pid" postgres || return 1
  echo "$pid"
}
pg_live_port() { sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null; }
pg_answers() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" -t 2; }

# pg_running: alive and accepting connections (waits out a start-up or recovery in progress).
pg_running() {
  local port deadline=$((SECONDS + 30))
  while ((SECONDS < deadline)); do
    pg_pid >/dev/null || return 1
    port=$(pg_live_port)
    [[ -n $port ]] && pg_answers "$port" && return 0
    sleep 0.5
  done
  die "pg: postmaster $(pg_pid) is alive but not answering; see $PG_LOG"
}

pg_bootstrap() { # idempotent: role sluice (superuser) and database sluice
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d postgres <<'SQL' >/dev/null
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sluice') THEN
    CREATE ROLE sluice SUPERUSER LOGIN;
  END IF;
END $$;
SELECT 'CREATE DATABASE sluice OWNER sluice'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'sluice') \gexec
SQL
}

pg_start() {
  pg_choose_base
  pg_init_vars
  [[ -n $PG_BIN ]] || die "PostgreSQL server not found in /usr/lib/postgresql (run scripts/install-deps.sh)"
  if pg_running; then
    log "pg: already running on 127.0.0.1:$(pg_live_port) (pid $(pg_pid))"
    pg_bootstrap "$(pg_live_port)"
    return
  fi
  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    rm -rf "$PG_DATA"
    mkdir -p "$PG_DATA" "$PG_SOCK"
    own_pg "$PG_DATA" "$PG_SOCK"
    chmod 700 "$PG_DATA"
    if ! as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -A trust -E UTF8 --locale=C \
      --no-instructions >>"$PG_LOG" 2>&1; then
      tail -n 20 "$PG_LOG" >&2
      die "pg: initdb failed; see $PG_LOG"
    fi
    echo "include = 'sluice.conf'" >>"$PG_DATA/postgresql.conf"
  fi
  mkdir -p "$PG_SOCK"
  own_pg "$PG_SOCK"

  lock_ports
  local port
  port=$(pick_port pg)
  cat >"$PG_DATA/sluice.conf" <<EOF
# Written by scripts/services.sh at every start; edit that script, not this file.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$PG_SOCK'
max_connections = 300
shared_buffers = 256MB
# Durability is the product: a 201 means committed to disk.
fsync = on
synchronous_commit = on
full_page_writes = on
max_wal_size = 2GB
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
EOF
  own_pg "$PG_DATA/sluice.conf"
  # The shell opens the log, so it can live in a run dir the postgres user cannot reach.
  if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -w -t 60 start >>"$PG_LOG" 2>&1; then
    unlock_ports
    tail -n 20 "$PG_LOG" >&2
    die "pg: failed to start; see $PG_LOG"
  fi
  claim_port pg "$port"
  unlock_ports
  pg_bootstrap "$port"
  log "pg: started on 127.0.0.1:$port (data $PG_DATA)"
}

pg_stop() {
  pg_init_vars
  [[ -n $PG_DATA && -n $PG_BIN ]] && pg_pid >/dev/null || return 0
  if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -w -t 60 -m fast stop >>"$PG_LOG" 2>&1; then
    log "pg: fast shutdown timed out; using immediate"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -w -t 30 -m immediate stop >>"$PG_LOG" 2>&1 ||
      die "pg: could not stop; see $PG_LOG"
  fi
  log "pg: stopped"
}

pg_status() {
  pg_init_vars
  if [[ -n $PG_BIN ]] && pg_pid >/dev/null && pg_answers "$(pg_live_port)"; then
    echo "pg: running on 127.0.0.1:$(pg_live_port) (pid $(pg_pid), data $PG_DATA)"
  else
    echo "pg: stopped${PG_DATA:+ (data $PG_DATA)}"
    return 3
  fi
}

pg_clean() {
  pg_stop
  pg_init_vars
  case "$PG_BASE" in
    "$RUN_DIR"/pg | /tmp/sluice-pg-*) rm -rf "$PG_BASE" ;;
  esac
  rm -f "$RUN_DIR/pg.base" "$RUN_DIR/pg.port" "$RUN_DIR/postgres.log"
}

# ---------------------------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------------------------

REDIS_PIDFILE=$RUN_DIR/redis.pid
REDIS_LOG=$RUN_DIR/redis.log

redis_pid() {
  local pid
  pid=$(cat "$REDIS_PIDFILE" 2>/dev/null) || return 1
  proc_alive "$pid" redis-server || return 1
  echo "$pid"
}
redis_port() { cat "$RUN_DIR/redis.port" 2>/dev/null; }

# redis_running: our redis-server is alive and the one answering on its port.
redis_running() {
  local pid port answer
  pid=$(redis_pid) || return 1
  port=$(redis_port) || return 1
  answer=$(timeout 2 redis-cli -h 127.0.0.1 -p "$port" info server 2>/dev/null | tr -d '\r' |
    sed -n 's/^process_id://p')
  [[ $answer == "$pid" ]]
}

redis_start() {
  command -v redis-server >/dev/null || die "redis-server not found (run scripts/install-deps.sh)"
  if redis_running; then
    log "redis: already running on 127.0.0.1:$(redis_port) (pid $(redis_pid))"
    return
  fi
  local deadline=$((SECONDS + 10))
  while ((SECONDS < deadline)); do # alive but not answering: starting up, or shutting down
    redis_pid >/dev/null || break
    redis_running && {
      log "redis: already running on 127.0.0.1:$(redis_port) (pid $(redis_pid))"
      return
    }
    sleep 0.1
  done
  if redis_pid >/dev/null; then
    die "redis: pid $(redis_pid) from $REDIS_PIDFILE is alive but not answering on port $(redis_port)"
  fi
  rm -f "$REDIS_PIDFILE"
  lock_ports
  local port
  port=$(pick_port redis)
  (
    close_fds
    exec redis-server --daemonize yes --bind 127.0.0.1 --port "$port" \
      --save "" --appendonly no --dir "$RUN_DIR" \
      --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOG" >/dev/null
  )
  echo "$port" >"$RUN_DIR/redis.port"
  local i
  for ((i = 0; i < 100; i++)); do
    redis_running && break
    sleep 0.1
  done
  if ! redis_running; then
    unlock_ports
    tail -n 20 "$REDIS_LOG" >&2 || true
    die "redis: failed to start on port $port; see $REDIS_LOG"
  fi
  claim_port redis "$port"
  unlock_ports
  log "redis: started on 127.0.0.1:$port"
}

redis_stop() {
  local pid i
  pid=$(redis_pid) || {
    rm -f "$REDIS_PIDFILE"
    return 0
  }
  timeout 10 redis-cli -h 127.0.0.1 -p "$(redis_port)" shutdown nosave >/dev/null 2>&1 || true
  for ((i = 0; i < 100; i++)); do
    proc_alive "$pid" redis-server || break
    sleep 0.1
  done
  if proc_alive "$pid" redis-server; then
    log "redis: shutdown did not finish; sending SIGTERM to $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      proc_alive "$pid" redis-server || break
      sleep 0.1
    done
  fi
  if proc_alive "$pid" redis-server; then die "redis: pid $pid did not stop"; fi
  rm -f "$REDIS_PIDFILE"
  log "redis: stopped"
}

redis_status() {
  if redis_running; then
    echo "redis: running on 127.0.0.1:$(redis_port) (pid $(redis_pid))"
  else
    echo "redis: stopped"
    return 3
  fi
}

redis_clean() {
  redis_stop
  rm -f "$RUN_DIR/redis.port" "$REDIS_LOG"
}

# ---------------------------------------------------------------------------------------------
# The env file: one export per line, for every component this run dir has a port for.
# ---------------------------------------------------------------------------------------------

write_env() {
  local tmp=$ENV_FILE.tmp.$$ port
  pg_init_vars
  : >"$tmp"
  if port=$(cat "$RUN_DIR/pg.port" 2>/dev/null) && [[ -n $PG_DATA ]]; then
    {
      echo "export SLUICE_DATABASE_URL=postgresql://sluice@127.0.0.1:$port/sluice"
      echo "export SLUICE_PG_BIN=$(printf %q "$PG_BIN")"
      echo "export SLUICE_PG_DATA=$(printf %q "$PG_DATA")"
      echo "export SLUICE_PG_PORT=$port"
      echo "export SLUICE_PG_SOCKET_DIR=$(printf %q "$PG_SOCK")"
    } >>"$tmp"
  fi
  if port=$(redis_port) && [[ -n $port ]]; then
    {
      echo "export SLUICE_REDIS_URL=redis://127.0.0.1:$port/0"
      echo "export SLUICE_REDIS_PORT=$port"
    } >>"$tmp"
  fi
  if [[ -s $tmp ]]; then
    mv -f "$tmp" "$ENV_FILE"
  else
    rm -f "$tmp" "$ENV_FILE"
  fi
}

# ---------------------------------------------------------------------------------------------

comps=()
case "$what" in
  all) comps=(pg redis) ;;
  *) comps=("$what") ;;
esac

rc=0
case "$cmd" in
  start)
    for c in "${comps[@]}"; do "${c}_start"; done
    write_env
    ;;
  stop)
    # Redis first: it is the derived one.
    for ((i = ${#comps[@]} - 1; i >= 0; i--)); do "${comps[i]}_stop"; done
    ;;
  clean)
    for c in "${comps[@]}"; do "${c}_clean"; done
    write_env
    ;;
  status)
    for c in "${comps[@]}"; do "${c}_status" || rc=3; done
    ;;
  env)
    [[ -f $ENV_FILE ]] || die "nothing started in $RUN_DIR (run: $0 start)"
    cat "$ENV_FILE"
    ;;
esac
exit "$rc"

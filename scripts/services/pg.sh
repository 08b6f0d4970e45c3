# shellcheck shell=bash
# scripts/services/pg.sh — the private PostgreSQL of scripts/services.sh: where its data and
# socket live (<run dir>/pg, or /tmp/sluice-pg-<hash> when the postgres user cannot reach the
# run dir), initdb, its settings (sluice.conf, durable: fsync and synchronous_commit on; the
# read replica of replica.sh starts from the same), replication connections from loopback,
# start/stop/status/clean with pg_ctl, and the `sluice` superuser role and database.
# As root it runs as the `postgres` system user (initdb refuses root).
# Sourced by scripts/services.sh after RUN_DIR is set; uses lib.sh and ports.sh. Sets PG_BIN,
# PG_BASE, PG_DATA, PG_SOCK for the env file (pg_init_vars).

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

# postmaster_pid DATA: prints the pid of the postmaster of data directory DATA when it is alive
# (per its postmaster.pid), else fails. postmaster_port DATA: the port it listens on.
postmaster_pid() {
  local pid
  [[ -n $1 && -f $1/postmaster.pid ]] || return 1
  pid=$(head -n 1 "$1/postmaster.pid" 2>/dev/null) || return 1
  proc_alive "$pid" postgres || return 1
  echo "$pid"
}
postmaster_port() { sed -n 4p "$1/postmaster.pid" 2>/dev/null; }
pg_answers() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" -t 2; }

# postmaster_running DATA NAME LOG: the postmaster of DATA is alive and accepting connections
# (waits out a start-up or recovery in progress); NAME and LOG for the message when it is not.
postmaster_running() {
  local port deadline=$((SECONDS + 30))
  while ((SECONDS < deadline)); do
    postmaster_pid "$1" >/dev/null || return 1
    port=$(postmaster_port "$1")
    [[ -n $port ]] && pg_answers "$port" && return 0
    sleep 0.5
  done
  die "$2: postmaster $(postmaster_pid "$1") is alive but not answering; see $3"
}

# The primary's: pg_pid, pg_live_port, pg_running.
pg_pid() { postmaster_pid "$PG_DATA"; }
pg_live_port() { postmaster_port "$PG_DATA"; }
pg_running() { postmaster_running "$PG_DATA" pg "$PG_LOG"; }

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

# pg_conf PORT: the settings of a server of this run dir on PORT (sluice.conf, included by
# postgresql.conf). The read replica (replica.sh) uses them too: a hot standby needs
# max_connections and max_wal_senders at least the primary's.
pg_conf() {
  cat <<EOF
# Written by scripts/services.sh (scripts/services/pg.sh) at every start; edit that, not this file.
listen_addresses = '127.0.0.1'
port = $1
unix_socket_directories = '$PG_SOCK'
max_connections = 300
shared_buffers = 256MB
# Durability is the product: a 201 means committed to disk.
fsync = on
synchronous_commit = on
full_page_writes = on
max_wal_size = 2GB
# A streaming replica (scripts/services.sh start replica) may follow this server: the
# PostgreSQL 15 defaults, stated.
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
EOF
}

# pg_sql PORT SQL: one statement as the postgres superuser over loopback; prints the rows
# unaligned, without headers.
pg_sql() {
  "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2"
}

# pg_allow_replication PORT: the running server on PORT takes replication connections from
# loopback (initdb -A trust writes that; appended and reloaded when a data dir lacks it) and
# writes WAL enough for a standby (fails saying what to do when not).
pg_allow_replication() {
  if ! grep -Eq '^[[:space:]]*host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' \
    "$PG_DATA/pg_hba.conf"; then
    echo "host replication all 127.0.0.1/32 trust # scripts/services.sh: the read replica" \
      >>"$PG_DATA/pg_hba.conf"
    pg_sql "$1" 'SELECT pg_reload_conf()' >/dev/null
    log "pg: replication connections from 127.0.0.1 allowed (pg_hba.conf)"
  fi
  [[ $(pg_sql "$1" 'SHOW wal_level') != minimal ]] ||
    die "pg: wal_level is minimal; restart it (scripts/services.sh stop pg; scripts/services.sh start pg)"
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
  pg_conf "$port" >"$PG_DATA/sluice.conf"
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

# pg_ctl_stop NAME DATA LOG: a fast shutdown of the server in DATA, an immediate one when
# that times out (the primary's and the replica's alike).
pg_ctl_stop() {
  local name=$1 data=$2 logf=$3
  if ! as_pg "$PG_BIN/pg_ctl" -D "$data" -w -t 60 -m fast stop >>"$logf" 2>&1; then
    log "$name: fast shutdown timed out; using immediate"
    as_pg "$PG_BIN/pg_ctl" -D "$data" -w -t 30 -m immediate stop >>"$logf" 2>&1 ||
      die "$name: could not stop; see $logf"
  fi
  log "$name: stopped"
}

pg_stop() {
  pg_init_vars
  [[ -n $PG_DATA && -n $PG_BIN ]] && pg_pid >/dev/null || return 0
  pg_ctl_stop pg "$PG_DATA" "$PG_LOG"
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

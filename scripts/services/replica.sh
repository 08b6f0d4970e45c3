# shellcheck shell=bash
# scripts/services/replica.sh — the read replica of scripts/services.sh: a PostgreSQL streaming
# replica (hot standby) of the run dir's PostgreSQL, for SLUICE_READ_DATABASE_URL (issue 17).
# Made once with `pg_basebackup -R` over a loopback replication connection, into <pg base>/replica
# (beside the primary's data/; it shares its sock/, socket files are named by port), with a
# physical replication slot `sluice_replica` on the primary so a replica stopped for a while
# still catches up. Its own port (ports.sh, kept across stop/start like the others), its log
# in <run dir>/replica.log, the primary's settings (pg.sh's pg_conf) plus the standby's.
# start/stop/status/clean; `clean` also drops the slot (when the primary is up; a slot left by
# a replica cleaned while the primary was down is dropped by the next `start replica`).
# Sourced by scripts/services.sh after pg.sh; runs as the PostgreSQL user like pg.sh.

REPLICA_SLOT=sluice_replica
REPLICA_LOG=$RUN_DIR/replica.log

replica_init_vars() {
  pg_init_vars
  REPLICA_DATA=${PG_BASE:+$PG_BASE/replica}
}

# The replica's: replica_pid, replica_live_port, replica_running (services/pg.sh).
replica_pid() { postmaster_pid "$REPLICA_DATA"; }
replica_live_port() { postmaster_port "$REPLICA_DATA"; }
replica_running() { postmaster_running "$REPLICA_DATA" replica "$REPLICA_LOG"; }

# replica_streaming PORT: the server on PORT is in recovery and its WAL receiver streams.
replica_streaming() {
  [[ $(PGCONNECT_TIMEOUT=2 pg_sql "$1" "SELECT pg_is_in_recovery() AND EXISTS (SELECT FROM
    pg_stat_wal_receiver WHERE status = 'streaming')" 2>/dev/null) == t ]]
}

# replica_drop_slot PRIMARY_PORT: drops the slot unless a replica streams from it.
replica_drop_slot() {
  pg_sql "$1" "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
    WHERE slot_name = '$REPLICA_SLOT' AND NOT active" >/dev/null
}

# replica_slot_idle PRIMARY_PORT: no replica streams from the slot (or there is none).
replica_slot_idle() {
  [[ $(pg_sql "$1" "SELECT count(*) FROM pg_replication_slots
    WHERE slot_name = '$REPLICA_SLOT' AND active" 2>/dev/null) == 0 ]]
}

# replica_base_backup PRIMARY_PORT: a fresh copy of the primary in REPLICA_DATA, with
# standby.signal and primary_conninfo/primary_slot_name in postgresql.auto.conf (-R).
replica_base_backup() {
  pg_allow_replication "$1"
  replica_drop_slot "$1"
  rm -rf "$REPLICA_DATA"
  mkdir -p "$REPLICA_DATA"
  own_pg "$REPLICA_DATA"
  chmod 700 "$REPLICA_DATA"
  log "replica: base backup of 127.0.0.1:$1 into $REPLICA_DATA"
  if ! as_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$1" -U postgres -w -D "$REPLICA_DATA" \
    -R -X stream -C -S "$REPLICA_SLOT" -c fast >>"$REPLICA_LOG" 2>&1; then
    tail -n 20 "$REPLICA_LOG" >&2
    rm -rf "$REPLICA_DATA"
    replica_drop_slot "$1" || true
    die "replica: pg_basebackup failed; see $REPLICA_LOG"
  fi
}

replica_start() {
  local pgport port
  replica_init_vars
  [[ -n $PG_BIN ]] || die "PostgreSQL server not found in /usr/lib/postgresql (run scripts/install-deps.sh)"
  pg_running || die "replica: the primary of $RUN_DIR is not running (scripts/services.sh start pg)"
  pgport=$(pg_live_port)
  if replica_running; then
    log "replica: already running on 127.0.0.1:$(replica_live_port) (pid $(replica_pid))"
    return
  fi
  [[ -f $REPLICA_DATA/PG_VERSION && -f $REPLICA_DATA/standby.signal ]] ||
    replica_base_backup "$pgport"
  # The primary's port of now: it moves when its old one was taken at its last start.
  as_pg sed -i -E "/^primary_conninfo/s/([' ])port=[0-9]+/\\1port=$pgport/" \
    "$REPLICA_DATA/postgresql.auto.conf"

  lock_ports
  port=$(pick_port replica)
  {
    pg_conf "$port"
    cat <<EOF
# The read replica (scripts/services/replica.sh): a hot standby of 127.0.0.1:$pgport.
cluster_name = 'sluice-replica'
hot_standby = on
# Long reads (exports, replays) are not cancelled for rows vacuumed on the primary.
hot_standby_feedback = on
EOF
  } >"$REPLICA_DATA/sluice.conf"
  own_pg "$REPLICA_DATA/sluice.conf"
  if ! as_pg "$PG_BIN/pg_ctl" -D "$REPLICA_DATA" -w -t 60 start >>"$REPLICA_LOG" 2>&1; then
    unlock_ports
    tail -n 20 "$REPLICA_LOG" >&2
    die "replica: failed to start; see $REPLICA_LOG"
  fi
  claim_port replica "$port"
  unlock_ports
  wait_until 300 replica_streaming "$port" ||
    die "replica: on 127.0.0.1:$port but not streaming from 127.0.0.1:$pgport after 30 s; see $REPLICA_LOG"
  log "replica: started on 127.0.0.1:$port, streaming from 127.0.0.1:$pgport (data $REPLICA_DATA)"
}

replica_stop() {
  replica_init_vars
  [[ -n $REPLICA_DATA && -n $PG_BIN ]] && replica_pid >/dev/null || return 0
  pg_ctl_stop replica "$REPLICA_DATA" "$REPLICA_LOG"
}

replica_status() {
  local port how
  replica_init_vars
  if [[ -n $PG_BIN ]] && replica_pid >/dev/null && pg_answers "$(replica_live_port)"; then
    port=$(replica_live_port)
    how="streaming from the primary"
    replica_streaming "$port" || how="not streaming (primary down, or promoted)"
    echo "replica: running on 127.0.0.1:$port (pid $(replica_pid), data $REPLICA_DATA), $how"
  else
    echo "replica: stopped${REPLICA_DATA:+ (data $REPLICA_DATA)}"
    return 3
  fi
}

replica_clean() {
  replica_stop
  replica_init_vars
  if [[ -n $PG_BIN ]] && pg_pid >/dev/null && pg_answers "$(pg_live_port)"; then
    # the primary's walsender for the stopped replica may take a moment to go
    wait_until 100 replica_slot_idle "$(pg_live_port)" || true
    replica_drop_slot "$(pg_live_port)" || log "replica: could not drop slot $REPLICA_SLOT"
  fi
  case "$REPLICA_DATA" in
    "$RUN_DIR"/pg/replica | /tmp/sluice-pg-*/replica) rm -rf "$REPLICA_DATA" ;;
  esac
  rm -f "$RUN_DIR/replica.port" "$REPLICA_LOG"
}

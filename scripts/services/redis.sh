# shellcheck shell=bash
# scripts/services/redis.sh — the private Redis of scripts/services.sh: a redis-server on
# loopback with no persistence (--save "" --appendonly no; its dir is the run dir), daemonized
# with its pid and log in the run dir (redis.pid, redis.log), and start/stop/status/clean.
# "Running" means our pid is alive and is the server answering on its port.
# Sourced by scripts/services.sh after RUN_DIR is set; uses lib.sh and ports.sh.

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
  if ! wait_until 100 redis_running; then
    unlock_ports
    tail -n 20 "$REDIS_LOG" >&2 || true
    die "redis: failed to start on port $port; see $REDIS_LOG"
  fi
  claim_port redis "$port"
  unlock_ports
  log "redis: started on 127.0.0.1:$port"
}

redis_stop() {
  local pid
  pid=$(redis_pid) || {
    rm -f "$REDIS_PIDFILE"
    return 0
  }
  timeout 10 redis-cli -h 127.0.0.1 -p "$(redis_port)" shutdown nosave >/dev/null 2>&1 || true
  if ! wait_until 100 proc_gone "$pid" redis-server; then
    log "redis: shutdown did not finish; sending SIGTERM to $pid"
    kill -TERM "$pid" 2>/dev/null || true
    wait_until 50 proc_gone "$pid" redis-server || die "redis: pid $pid did not stop"
  fi
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

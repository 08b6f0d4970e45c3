# shellcheck shell=bash
# scripts/services/redis_cluster.sh — the Redis Cluster of scripts/services.sh (issue 17): six
# redis-servers on loopback, three masters and a replica each (`redis-cli --cluster create
# --cluster-replicas 1`), for testing SLUICE_REDIS_URL=redis+cluster://… . Never part of
# `all`: only `start|stop|status|clean cluster` touch it.
# Each node has a client port and a bus port of its own (cluster-port, so the bus never
# lands on port+10000 in the ephemeral range), both chosen and kept like every other port
# (ports.sh: components cluster1..6 and cluster1-bus..6-bus). State under <run dir>/cluster/:
# N/ (the node's dir: nodes.conf, no persistence), N.pid, N.log. A short node timeout
# (1 s) so a failover takes seconds; replicas are always allowed to take over
# (cluster-replica-validity-factor 0). A stopped cluster starts again with the same ports
# and nodes.conf, so it re-forms with the same slots; `create` runs only on a fresh one.
# Sourced by scripts/services.sh after RUN_DIR is set; uses lib.sh and ports.sh.

CLUSTER_DIR=$RUN_DIR/cluster
CLUSTER_NODES=6

cluster_port() { cat "$RUN_DIR/cluster$1.port" 2>/dev/null; }
cluster_ports() {
  local i p out=()
  for ((i = 1; i <= CLUSTER_NODES; i++)); do
    p=$(cluster_port "$i") || return 1
    out+=("$p")
  done
  echo "${out[*]}"
}

cluster_node_pid() {
  local pid
  pid=$(cat "$CLUSTER_DIR/$1.pid" 2>/dev/null) || return 1
  proc_alive "$pid" redis-server || return 1
  echo "$pid"
}

# cluster_node_running N: node N's redis-server is alive and the one answering on its port.
cluster_node_running() {
  local pid port answer
  pid=$(cluster_node_pid "$1") || return 1
  port=$(cluster_port "$1") || return 1
  answer=$(timeout 2 redis-cli -h 127.0.0.1 -p "$port" info server 2>/dev/null | tr -d '\r' |
    sed -n 's/^process_id://p')
  [[ $answer == "$pid" ]]
}

# cluster_ok PORT: the node on PORT sees a healthy cluster of all six nodes.
cluster_ok() {
  local info
  info=$(timeout 2 redis-cli -h 127.0.0.1 -p "$1" cluster info 2>/dev/null | tr -d '\r')
  [[ $info == *"cluster_state:ok"* && $info == *"cluster_known_nodes:$CLUSTER_NODES"* &&
    $info == *"cluster_slots_assigned:16384"* ]]
}

cluster_all_ok() {
  local p
  for p in $(cluster_ports); do cluster_ok "$p" || return 1; done
}

cluster_node_start() { # cluster_node_start N
  local n=$1 port bus
  port=$(cluster_port "$n")
  bus=$(cat "$RUN_DIR/cluster$n-bus.port")
  mkdir -p "$CLUSTER_DIR/$n"
  rm -f "$CLUSTER_DIR/$n.pid"
  (
    close_fds
    exec redis-server --daemonize yes --bind 127.0.0.1 --port "$port" \
      --cluster-enabled yes --cluster-port "$bus" --cluster-config-file nodes.conf \
      --cluster-node-timeout 1000 --cluster-replica-validity-factor 0 \
      --save "" --appendonly no --dir "$CLUSTER_DIR/$n" \
      --pidfile "$CLUSTER_DIR/$n.pid" --logfile "$CLUSTER_DIR/$n.log" >/dev/null
  )
}

redis_cluster_start() {
  command -v redis-server >/dev/null || die "redis-server not found (run scripts/install-deps.sh)"
  local n p comp chosen=() fresh=0
  mkdir -p "$CLUSTER_DIR"
  lock_ports
  for ((n = 1; n <= CLUSTER_NODES; n++)); do
    cluster_node_running "$n" && {
      chosen+=("$(cluster_port "$n")" "$(cat "$RUN_DIR/cluster$n-bus.port")")
      continue
    }
    for comp in "cluster$n" "cluster$n-bus"; do
      p=$(pick_port "$comp")
      while [[ " ${chosen[*]} " == *" $p "* ]]; do
        rm -f "$RUN_DIR/$comp.port"
        p=$(pick_port "$comp")
      done
      chosen+=("$p")
      claim_port "$comp" "$p"
    done
    [[ -f $CLUSTER_DIR/$n/nodes.conf ]] || fresh=1
    cluster_node_start "$n"
  done
  for ((n = 1; n <= CLUSTER_NODES; n++)); do
    if ! wait_until 100 cluster_node_running "$n"; then
      unlock_ports
      tail -n 20 "$CLUSTER_DIR/$n.log" >&2 || true
      die "cluster: node $n failed to start on port $(cluster_port "$n"); see $CLUSTER_DIR/$n.log"
    fi
  done
  unlock_ports
  local ports addrs=()
  ports=$(cluster_ports)
  for p in $ports; do addrs+=("127.0.0.1:$p"); done
  if ((fresh)) && ! cluster_ok "${ports%% *}"; then
    timeout 60 redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
      >"$CLUSTER_DIR/create.log" 2>&1 ||
      die "cluster: redis-cli --cluster create failed; see $CLUSTER_DIR/create.log"
  fi
  wait_until 300 cluster_all_ok || die "cluster: not healthy after 30 s (see $CLUSTER_DIR/*.log)"
  log "cluster: started on 127.0.0.1:{${ports// /,}}"
}

redis_cluster_stop() {
  local n pid
  for ((n = 1; n <= CLUSTER_NODES; n++)); do
    pid=$(cluster_node_pid "$n") || {
      rm -f "$CLUSTER_DIR/$n.pid"
      continue
    }
    timeout 10 redis-cli -h 127.0.0.1 -p "$(cluster_port "$n")" shutdown nosave >/dev/null 2>&1 ||
      true
    if ! wait_until 100 proc_gone "$pid" redis-server; then
      kill -TERM "$pid" 2>/dev/null || true
      wait_until 50 proc_gone "$pid" redis-server || die "cluster: node $n (pid $pid) did not stop"
    fi
    rm -f "$CLUSTER_DIR/$n.pid"
  done
  log "cluster: stopped"
}

redis_cluster_status() {
  local n rc=0 ports
  for ((n = 1; n <= CLUSTER_NODES; n++)); do cluster_node_running "$n" || rc=3; done
  ports=$(cluster_ports 2>/dev/null) || rc=3
  if ((rc == 0)) && cluster_all_ok; then
    echo "cluster: running on 127.0.0.1:{${ports// /,}}"
  else
    echo "cluster: stopped"
    return 3
  fi
}

redis_cluster_clean() {
  local n
  redis_cluster_stop
  rm -rf "$CLUSTER_DIR"
  for ((n = 1; n <= CLUSTER_NODES; n++)); do rm -f "$RUN_DIR/cluster$n.port" "$RUN_DIR/cluster$n-bus.port"; done
}

# redis_cluster_url: the redis+cluster:// URL of every node, for the env file.
redis_cluster_url() {
  local ports
  ports=$(cluster_ports) || return 1
  echo "redis+cluster://127.0.0.1:${ports// /,127.0.0.1:}"
}

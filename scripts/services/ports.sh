# shellcheck shell=bash
# scripts/services/ports.sh — the ports of scripts/services.sh's servers: choosing a free one
# (below the kernel's ephemeral range, not handed out to another run dir), keeping a
# component's port across stop/start, and the machine-wide claims under /tmp/sluice-ports
# with their lock, so run dirs started at the same moment never pick the same port.
# Sourced by scripts/services.sh after RUN_DIR is set; uses log and die (lib.sh).

PORTS_DIR=/tmp/sluice-ports # one claim file per port handed out, shared by every run dir

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

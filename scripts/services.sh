#!/usr/bin/env bash
# scripts/services.sh — owns the throwaway PostgreSQL and Redis that `make run`, `make test`
# and `make bench` use on a developer's machine or in CI, and the PostgreSQL read replica
# that tests of SLUICE_READ_DATABASE_URL start on demand.
#
#   scripts/services.sh start|stop|status|env|clean [pg|redis|replica|cluster|all]  (default: all)
#
# Why: Sluice needs a real PostgreSQL (the event store) and a real Redis (the fan-out), and a
# fresh Debian 12 machine has neither running. This starts private servers, on loopback only,
# on ports nobody else uses, with their state under one run directory:
#   SLUICE_RUN_DIR (default <repo>/.sluice)
#     env            `export SLUICE_DATABASE_URL=...` lines for what was started (`env` prints it)
#     postgres.log   redis.log   redis.pid   pg.port   redis.port   pg.base
#     replica.log    replica.port     (only once a replica was started)
#     pg/            data/ and sock/ of PostgreSQL (and replica/, the replica's data), or the
#                    same under /tmp/sluice-pg-<hash> when the run dir is not reachable by the
#                    `postgres` user (a clone under /root, say); pg.base remembers which.
# Several run dirs can be up at once (the integration tests start a second PostgreSQL to cut
# it off); each component keeps its port across stop/start, so a URL stays valid while its
# server is stopped and started again. `start` reuses a server that is alive and answering.
# Using external servers (SLUICE_DATABASE_URL / SLUICE_REDIS_URL already set) is decided by
# the callers (scripts/run.sh, scripts/test.sh, bench/run.sh), not here: this always starts
# what it is asked to.
#
# The replica (issue 17) is a streaming replica of this run dir's PostgreSQL, made with
# pg_basebackup. `all` never starts one (`make run` and `make test` use none); `start replica`
# starts the PostgreSQL too, and adds `export SLUICE_READ_DATABASE_URL=...` to the env file
# until `clean replica`. A replica a run dir has goes with `stop`/`clean`/`status` of `all`,
# and with `clean pg` (it is a copy of that server). Everything else is unchanged by it.
#
# PostgreSQL runs with durable settings (fsync and synchronous_commit on): a 201 from Sluice
# means committed, and the benchmarks must measure that, not a RAM disk.
#
# The Redis Cluster (issue 17) is six more redis-servers on loopback, three masters and three
# replicas, for tests of SLUICE_REDIS_URL=redis+cluster://… . Like the replica, `all` never
# starts it; `start cluster` does, and adds `export SLUICE_REDIS_CLUSTER_URL=redis+cluster://…`
# (and SLUICE_REDIS_CLUSTER_PORTS, the six ports) to the env file until `clean cluster`. A
# cluster a run dir has goes with `stop`/`clean`/`status` of `all`.
#
# The parts, sourced from here (functions, and the variables they share):
#   services/lib.sh     log/die, proc_alive, close_fds, wait_until
#   services/ports.sh   choosing, keeping and claiming ports (/tmp/sluice-ports)
#   services/pg.sh      PostgreSQL: pg_start, pg_stop, pg_status, pg_clean
#   services/redis.sh   Redis: redis_start, redis_stop, redis_status, redis_clean
#   services/replica.sh the read replica: replica_start, replica_stop, replica_status, replica_clean
#   services/redis_cluster.sh  the Redis Cluster: redis_cluster_start, _stop, _status, _clean
# This file owns the command line, the run dir and its lock, the env file and the dispatch.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)

# shellcheck source=scripts/services/lib.sh
source "$SCRIPT_DIR/services/lib.sh"

usage() {
  echo "usage: $0 start|stop|status|env|clean [pg|redis|replica|cluster|all]" >&2
  exit 2
}

cmd=${1:-}
what=${2:-all}
case "$cmd" in start | stop | status | env | clean) ;; *) usage ;; esac
case "$what" in pg | redis | replica | cluster | all) ;; *) usage ;; esac

RUN_DIR=${SLUICE_RUN_DIR:-$REPO/.sluice}
if [[ ! -d $RUN_DIR && $cmd != start ]]; then # nothing was ever started there
  case "$cmd" in
    env) die "nothing started in $RUN_DIR (run: $0 start)" ;;
    status)
      case "$what" in
        all) printf 'pg: stopped\nredis: stopped\n' ;;
        *) echo "$what: stopped" ;;
      esac
      exit 3
      ;;
    *) exit 0 ;;
  esac
fi
mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd -P)
ENV_FILE=$RUN_DIR/env

# Serialise commands on one run dir (two `start`s at once must not initdb twice).
exec 9>>"$RUN_DIR/.services.lock"
flock -w 300 9 || die "timed out waiting for the lock on $RUN_DIR"

# shellcheck source=scripts/services/ports.sh
source "$SCRIPT_DIR/services/ports.sh"
# shellcheck source=scripts/services/pg.sh
source "$SCRIPT_DIR/services/pg.sh"
# shellcheck source=scripts/services/redis.sh
source "$SCRIPT_DIR/services/redis.sh"
# shellcheck source=scripts/services/replica.sh
source "$SCRIPT_DIR/services/replica.sh"
# shellcheck source=scripts/services/redis_cluster.sh
source "$SCRIPT_DIR/services/redis_cluster.sh"

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
  if port=$(cat "$RUN_DIR/replica.port" 2>/dev/null) && [[ -n $PG_DATA ]]; then
    echo "export SLUICE_READ_DATABASE_URL=postgresql://sluice@127.0.0.1:$port/sluice" >>"$tmp"
  fi
  if port=$(redis_cluster_url); then
    {
      echo "export SLUICE_REDIS_CLUSTER_URL=$port"
      echo "export SLUICE_REDIS_CLUSTER_PORTS=\"$(cluster_ports)\""
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
  all)
    comps=(pg redis)
    # a replica this run dir has goes with the rest, except that `all` never starts one
    if [[ $cmd != start && -f $RUN_DIR/replica.port ]]; then comps+=(replica); fi
    if [[ $cmd != start && -f $RUN_DIR/cluster1.port ]]; then comps+=(redis_cluster); fi
    ;;
  pg)
    comps=(pg)
    if [[ $cmd == clean ]]; then comps+=(replica); fi # a copy of this server goes with it
    ;;
  replica)
    comps=(replica)
    if [[ $cmd == start ]]; then comps=(pg replica); fi # the server it copies and follows
    ;;
  cluster) comps=(redis_cluster) ;;
  *) comps=("$what") ;;
esac

rc=0
case "$cmd" in
  start)
    for c in "${comps[@]}"; do "${c}_start"; done
    write_env
    ;;
  stop)
    # The replica, then Redis first: they are the derived ones.
    for ((i = ${#comps[@]} - 1; i >= 0; i--)); do "${comps[i]}_stop"; done
    ;;
  clean)
    # The same order: the replica's data lives inside PostgreSQL's base dir.
    for ((i = ${#comps[@]} - 1; i >= 0; i--)); do "${comps[i]}_clean"; done
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

#!/usr/bin/env bash
# bench/groups/run.sh — the consumer-group sweeper benchmark (issue 6).
#
#   bench/groups/run.sh            BENCH_SECONDS=15 (the CPU window; 10-20 is sensible)
#
# Why: the sweeper (server/groups.c, leader only, every 200 ms) watches every group's pending
# entries list to turn failed deliveries into retries and dead letters. Watching must stay
# cheap when many entries are pending, and a delivery that finally fails must become a dead
# letter promptly. bench/groups/bench.js measures, against one build/sluice:
#   a. sluice's CPU idle, with no group (baseline);
#   b. 10 groups on one stream, 1,000 events, every group's worker reads all of them and
#      acknowledges none: 10,000 pending. sluice's CPU (/proc/<pid>/stat utime+stime, % of one
#      core; its busiest thread; Redis's too) over BENCH_SECONDS with nothing else happening.
#      Target < 5%;
#   c. 99% acknowledged, 1% (100 entries) failing: nacked twice (retried after the backoff),
#      then not acknowledged, so the last failure is an ack timeout. The time from each
#      deadline (last read + ack_timeout_ms) to its dead-letter row. Target < 1 s; and every
#      failing entry is a dead letter exactly once.
# Prints one table. Exit 1 when a dead letter is missing or doubled; BENCH_STRICT=1 also fails
# (exit 1) on a missed target. Bounded: about 30 s + 2 x BENCH_SECONDS, every step under
# `timeout`.
#
# Servers: SLUICE_DATABASE_URL / SLUICE_REDIS_URL when set, else the private ones of
# scripts/services.sh. Everything happens in a fresh database bench_groups_<pid>, dropped at
# the end, and Redis keys under the prefix benchgrp<pid>:, deleted at the end. Loopback only.
# shellcheck disable=SC2317  # functions run from traps
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"

SECS=${BENCH_SECONDS:-15}
if ! [[ $SECS =~ ^[1-9][0-9]*$ ]] || ((SECS > 120)); then
  echo "bench/groups: BENCH_SECONDS must be an integer from 1 to 120" >&2
  exit 2
fi
BIN=${SLUICE_BIN:-$REPO/build/sluice}
TOKEN=sk_grp_$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
DB=bench_groups_$$
PREFIX=benchgrp$$:
WORK=$(mktemp -d -t sluice-groups.XXXXXX)

say() { echo "bench/groups: $*" >&2; }
die() {
  say "$*"
  exit 1
}

[[ -x $BIN ]] || die "$BIN not found; build it first (make)"
command -v node >/dev/null || die "node not found (run scripts/install-deps.sh)"

# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------

user_db=${SLUICE_DATABASE_URL:-}
user_redis=${SLUICE_REDIS_URL:-}
want=""
if [[ -z $user_db && -z $user_redis ]]; then
  want=all
elif [[ -z $user_db ]]; then
  want=pg
elif [[ -z $user_redis ]]; then
  want=redis
fi
if [[ -n $want ]]; then
  export SLUICE_RUN_DIR=${SLUICE_RUN_DIR:-$REPO/.sluice}
  scripts/services.sh start "$want"
  # shellcheck disable=SC1091
  source "$SLUICE_RUN_DIR/env"
  if [[ -n $user_db ]]; then SLUICE_DATABASE_URL=$user_db; fi
  if [[ -n $user_redis ]]; then SLUICE_REDIS_URL=$user_redis; fi
fi
ADMIN_URL=$SLUICE_DATABASE_URL
REDIS_URL=${SLUICE_REDIS_URL:-}
[[ $REDIS_URL == redis://* ]] || die "SLUICE_REDIS_URL must be redis://host:port (the driver speaks TCP): '$REDIS_URL'"

# Redis's own CPU is reported too when it is the private one of scripts/services.sh (the run
# dir's redis.port is the URL's port).
REDIS_PID=""
redis_port=${REDIS_URL#redis://}
redis_port=${redis_port#*@}
redis_port=${redis_port%%/*}
redis_port=${redis_port##*:}
if [[ -n ${SLUICE_RUN_DIR:-} && -r $SLUICE_RUN_DIR/redis.pid &&
  $(cat "$SLUICE_RUN_DIR/redis.port" 2>/dev/null || true) == "$redis_port" ]]; then
  REDIS_PID=$(cat "$SLUICE_RUN_DIR/redis.pid" 2>/dev/null || true)
  [[ $REDIS_PID =~ ^[0-9]+$ && -r /proc/$REDIS_PID/stat ]] || REDIS_PID=""
fi

find_pg_tool() { # the server's own version first
  local d
  for d in "${SLUICE_PG_BIN:-}" $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV); do
    if [[ -n $d && -x $d/$1 ]]; then
      echo "$d/$1"
      return
    fi
  done
  command -v "$1" || die "$1 not found (run scripts/install-deps.sh)"
}
PSQL=$(find_pg_tool psql)

url_with_db() { # url_with_db URL DB: the same PostgreSQL URL, naming database DB
  local url=$1 query="" hostpart
  if [[ $url == *\?* ]]; then
    query="?${url#*\?}"
    url=${url%%\?*}
  fi
  hostpart=${url#*://}
  hostpart=${hostpart%%/*}
  echo "${url%%://*}://$hostpart/$2$query"
}
BENCH_URL=$(url_with_db "$ADMIN_URL" "$DB")
psql_admin() { timeout 60 "$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$ADMIN_URL" "$@"; }

redis_cli() { timeout 30 redis-cli -u "$REDIS_URL" "$@"; }

SLUICE_PID=""
db_created=0
running() { # running PID: alive and not a zombie
  local st
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) }
  [[ ${st%% *} != [ZX] ]]
}
stop_sluice() {
  [[ -n $SLUICE_PID ]] || return 0
  local i
  kill -TERM "$SLUICE_PID" 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do
    running "$SLUICE_PID" || break
    sleep 0.1
  done
  if running "$SLUICE_PID"; then
    say "sluice did not stop in 20 s; killing it"
    kill -KILL "$SLUICE_PID" 2>/dev/null || true
  fi
  wait "$SLUICE_PID" 2>/dev/null || true
  SLUICE_PID=""
}

DRIVER_PID=""
cleanup() {
  local rc=$?
  if [[ -n $DRIVER_PID ]]; then kill -KILL "$DRIVER_PID" 2>/dev/null || true; fi
  stop_sluice || true
  if ((db_created)); then
    psql_admin -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 ||
      say "could not drop database $DB"
  fi
  if command -v redis-cli >/dev/null; then
    redis_cli --scan --pattern "${PREFIX}*" 2>/dev/null | while read -r k; do
      redis_cli unlink "$k" >/dev/null 2>&1 || true
    done
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# The database, the server
# ---------------------------------------------------------------------------------------------

psql_admin -c "CREATE DATABASE $DB" >/dev/null
db_created=1

say "starting $BIN (database $DB)"
SLUICE_DATABASE_URL=$BENCH_URL SLUICE_REDIS_URL=$REDIS_URL SLUICE_REDIS_PREFIX=$PREFIX \
  SLUICE_HTTP_PORT=0 SLUICE_WS_PORT=0 SLUICE_BIND=127.0.0.1 SLUICE_ADMIN_TOKEN=$TOKEN \
  SLUICE_AUTH=on SLUICE_LOG_LEVEL=info SLUICE_ALLOW_UNKNOWN_TYPES=1 \
  "$BIN" >"$WORK/sluice.out" 2>"$WORK/sluice.log" &
SLUICE_PID=$!
HTTP_PORT=""
for ((i = 0; i < 600; i++)); do
  line=$(grep -m1 '"msg":"listening"' "$WORK/sluice.log" 2>/dev/null) || true
  if [[ -n $line ]]; then
    HTTP_PORT=$(sed -n 's/.*"http_port":\([0-9]*\).*/\1/p' <<<"$line")
    break
  fi
  running "$SLUICE_PID" || break
  sleep 0.1
done
if [[ -z $HTTP_PORT ]]; then
  tail -n 30 "$WORK/sluice.log" >&2
  die "sluice did not log a \"listening\" line with http_port in 60 s"
fi
# The sweeper runs on the leader only: this must be it.
for ((i = 0; i < 100; i++)); do
  grep -q 'consumer-group sweeper' "$WORK/sluice.log" && break
  sleep 0.1
done
grep -q 'consumer-group sweeper' "$WORK/sluice.log" || die "sluice did not take the sweeper lock in 10 s"
say "sluice pid $SLUICE_PID, HTTP 127.0.0.1:$HTTP_PORT${REDIS_PID:+, redis-server pid $REDIS_PID}"

read -r LOAD1 _ </proc/loadavg
if awk -v l="$LOAD1" 'BEGIN { exit !(l > 1.0) }'; then
  say "warning: load average $LOAD1 before the run: other processes compete for the cores"
fi

# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

set +e
BENCH_URL="http://127.0.0.1:$HTTP_PORT" BENCH_TOKEN=$TOKEN BENCH_REDIS_URL=$REDIS_URL \
  BENCH_PREFIX=$PREFIX BENCH_PID=$SLUICE_PID BENCH_REDIS_PID=$REDIS_PID BENCH_SECONDS=$SECS \
  BENCH_STRICT=${BENCH_STRICT:-0} \
  timeout -k 5 $((180 + 3 * SECS)) node bench/groups/bench.js &
DRIVER_PID=$!
wait "$DRIVER_PID"
rc=$?
DRIVER_PID=""
set -e
if ! running "$SLUICE_PID"; then
  tail -n 30 "$WORK/sluice.log" >&2
  die "sluice died during the run"
fi
errors=$(grep -c '"level":"error"' "$WORK/sluice.log" || true)
echo "  load average at the start: $LOAD1; errors logged by sluice: ${errors:-0}"
if ((rc == 3)); then die "a target was missed (BENCH_STRICT=1)"; fi
if ((rc != 0)); then
  tail -n 20 "$WORK/sluice.log" >&2
  die "the driver failed (exit $rc)"
fi
stop_sluice

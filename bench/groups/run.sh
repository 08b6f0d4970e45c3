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
# Prints one table, and its headline rows to BENCH_SUMMARY (make bench's table). Exit 1 when a
# dead letter is missing or doubled; BENCH_STRICT=1 also fails (exit 1) on a missed target.
# Bounded: about 30 s + 2 x BENCH_SECONDS, every step under `timeout`.
#
# Servers: SLUICE_DATABASE_URL / SLUICE_REDIS_URL when set, else the private ones of
# scripts/services.sh (bench/lib.sh). Everything happens in a fresh database
# bench_groups_<pid>, dropped at the end, and Redis keys under the prefix benchgrp<pid>:,
# deleted at the end. Loopback only.
# shellcheck disable=SC2317  # functions run from traps
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"

SECS=${BENCH_SECONDS:-15}
if ! [[ $SECS =~ ^[1-9][0-9]*$ ]] || ((SECS > 120)); then
  echo "bench/groups: BENCH_SECONDS must be an integer from 1 to 120" >&2
  exit 2
fi
BENCH_NAME=groups DB=bench_groups_$$ PREFIX=benchgrp$$:
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

[[ -x $BIN ]] || die "$BIN not found; build it first (make)"
command -v node >/dev/null || die "node not found (run scripts/install-deps.sh)"
[[ -d $REPO/tests/node_modules/ioredis ]] || die "tests/node_modules/ioredis missing (npm ci --prefix tests)"

# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------

bench_servers all
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

# ---------------------------------------------------------------------------------------------
# The database, the server
# ---------------------------------------------------------------------------------------------

bench_database
bench_start_sluice SLUICE_ALLOW_UNKNOWN_TYPES=1
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

# The driver's table goes to a file first: its rows feed make bench's summary too.
set +e
BENCH_URL="$BASE" BENCH_TOKEN=$TOKEN BENCH_REDIS_URL=$REDIS_URL \
  BENCH_PREFIX=$PREFIX BENCH_PID=$SLUICE_PID BENCH_REDIS_PID=$REDIS_PID BENCH_SECONDS=$SECS \
  BENCH_STRICT=${BENCH_STRICT:-0} \
  timeout -k 5 $((180 + 3 * SECS)) node bench/groups/bench.js >"$WORK/driver.out"
rc=$?
set -e
cat "$WORK/driver.out"
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
bench_stop_sluice

# ---------------------------------------------------------------------------------------------
# make bench's summary, from the driver's table
# ---------------------------------------------------------------------------------------------

# driver_row PATTERN: the first row of the driver's table whose measure matches the glob ->
# R_MEASURE, R_VALUE, R_TARGET, R_VERDICT. Columns (characters): 2 spaces, measure (46),
# space, value (14), 3 spaces, target (16), space, verdict.
driver_row() {
  local LC_ALL=C.UTF-8 line m
  R_MEASURE="" R_VALUE="" R_TARGET="" R_VERDICT=""
  trim() { sed -E 's/^ +//; s/ +$//' <<<"$1"; }
  while IFS= read -r line; do
    m=${line:2:46}
    # shellcheck disable=SC2053  # PATTERN is a glob
    if [[ $(trim "$m") == $1 ]]; then
      R_MEASURE=$(trim "$m") R_VALUE=$(trim "${line:49:14}")
      R_TARGET=$(trim "${line:66:16}") R_VERDICT=$(trim "${line:83}")
      return 0
    fi
  done <"$WORK/driver.out"
  R_MEASURE=$1 R_VALUE="?" R_TARGET="-" R_VERDICT="?"
  say "no row \"$1\" in the driver's table"
}
if [[ -n ${BENCH_SUMMARY:-} ]]; then
  driver_row "sluice CPU, idle, no group*"
  idle=$R_VALUE
  driver_row "sluice CPU, *failing*"
  failing=("$R_MEASURE" "$R_VALUE" "$R_TARGET" "$R_VERDICT")
  driver_row "sluice CPU, *pending in*"
  bench_summary "sluice CPU (% of a core), ${R_MEASURE#sluice CPU, }" "$R_VALUE" "sluice idle, no group = $idle" \
    "$R_TARGET" "$R_VERDICT"
  bench_summary "sluice CPU (% of a core), ${failing[0]#sluice CPU, }" "${failing[1]}" \
    "sluice idle, no group = $idle" "${failing[2]}" "${failing[3]}"
  driver_row "ack-timeout expiry*, p50"
  p50=$R_VALUE
  driver_row "ack-timeout expiry*, max"
  bench_summary "ack-timeout expiry → dead-letter row, max" "$R_VALUE (p50 $p50)" "-" "$R_TARGET" \
    "$R_VERDICT"
  driver_row "dead letters / failing entries*"
  bench_summary "$R_MEASURE" "$R_VALUE" "-" "$R_TARGET" "$R_VERDICT"
fi

#!/usr/bin/env bash
# bench/consumer/run.sh — the consumer-API throughput benchmark (issue 15).
#
#   bench/consumer/run.sh       BENCH_EVENTS=40000 (per group), BENCH_ROUNDS=2
#                               BENCH_PERF=<path>: perf record (DWARF call graphs) of sluice in round 1's api phase
#
# Why: the consumer API (POST …/groups/{group}/fetch and …/ack, or the same over the
# WebSocket) puts sluice between a worker and Redis. It must keep at least half the throughput
# the same workers get reading Redis directly. bench/consumer/bench.js measures the three in
# the same run, against one build/sluice: one stream of BENCH_EVENTS events (batches of
# 1,000), three groups at start 0 on it:
#   raw  8 workers, one Redis connection each: XREADGROUP GROUP raw w<k> COUNT 10 STREAMS
#        key > , then XACK the 10, until the stream is drained;
#   api  8 workers, one keep-alive HTTP connection each: POST …/groups/api/fetch
#        {"consumer":"w<k>","max":10}, then POST …/ack with the 10 receipts, until drained;
#   ws   8 workers, one WebSocket each (the WebSocket port, ?token=): {"op":"consume",…,
#        "max_in_flight":10}, then {"op":"ack"} frames of up to 10 receipts (at once when it
#        holds 10, else at the end of the event-loop turn), until every event's ack is answered.
# Per phase: events/s, the ratios api/raw and ws/raw (target ≥ 0.50 for both; BENCH_STRICT
# gates on api/raw, the headline), the p50/p99 of a worker's round (ws: from a batch's first
# message to the "acked" frame answering its ack), and CPU µs per event of sluice,
# redis-server, the PostgreSQL backends of sluice's database, the whole cluster (postmaster
# and its children, as bench/run.sh counts it), the Node client and the rest of the machine
# (other work: noise), from /proc. Each round has fresh groups (raw1, api1 and ws1, raw2, api2
# and ws2, …; with BENCH_ROUNDS=1 just raw, api and ws); odd rounds run raw, api, ws, even
# rounds ws, api, raw, so that no side always runs last on a warmer (or busier) machine; the
# headline ratios are over all rounds.
# Prints one table, and its headline rows to BENCH_SUMMARY (make bench's table). Exit 1 when
# an event is missing, doubled or left pending; BENCH_STRICT=1 also fails (exit 1) on a missed
# target. Bounded: every step under `timeout` (about 60 s with the defaults); a WebSocket
# phase that gets no frame for 15 s fails rather than waits.
#
# Servers: SLUICE_DATABASE_URL / SLUICE_REDIS_URL when set, else the private ones of
# scripts/services.sh (bench/lib.sh); PostgreSQL and Redis must run on this machine for their
# CPU to be read (else those columns say "?"). Everything happens in a fresh database
# bench_consumer_<pid>, dropped at the end, and Redis keys under the prefix
# benchconsumer<pid>:, deleted at the end. Loopback only.
# shellcheck disable=SC2317  # functions run from traps
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"

EVENTS=${BENCH_EVENTS:-40000}
ROUNDS=${BENCH_ROUNDS:-2}
if ! [[ $EVENTS =~ ^[1-9][0-9]*$ ]] || ((EVENTS < 80 || EVENTS > 1000000)); then
  echo "bench/consumer: BENCH_EVENTS must be an integer from 80 to 1000000" >&2
  exit 2
fi
if ! [[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || ((ROUNDS > 10)); then
  echo "bench/consumer: BENCH_ROUNDS must be an integer from 1 to 10" >&2
  exit 2
fi
BENCH_NAME=consumer DB=bench_consumer_$$ PREFIX=benchconsumer$$:
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

[[ -x $BIN ]] || die "$BIN not found; build it first (make)"
command -v node >/dev/null || die "node not found (run scripts/install-deps.sh)"
[[ -d $REPO/tests/node_modules/ioredis ]] || die "tests/node_modules/ioredis missing (npm ci --prefix tests)"
[[ -d $REPO/tests/node_modules/ws ]] || die "tests/node_modules/ws missing (npm ci --prefix tests)"

# ---------------------------------------------------------------------------------------------
# Servers, and their pids for the CPU columns
# ---------------------------------------------------------------------------------------------

bench_servers all
[[ $REDIS_URL == redis://* ]] || die "SLUICE_REDIS_URL must be redis://host:port (the driver speaks TCP): '$REDIS_URL'"

bench_find_postmaster
bench_find_redis

# ---------------------------------------------------------------------------------------------
# The database, the server
# ---------------------------------------------------------------------------------------------

bench_database
bench_start_sluice SLUICE_ALLOW_UNKNOWN_TYPES=1
[[ ${WS_PORT:-0} -gt 0 ]] || die "sluice logged no WebSocket port (ws_port)"
say "sluice pid $SLUICE_PID, HTTP 127.0.0.1:$HTTP_PORT, WebSocket 127.0.0.1:$WS_PORT${REDIS_PID:+, redis-server pid $REDIS_PID}${PG_PID:+, postmaster pid $PG_PID}"

read -r LOAD1 _ </proc/loadavg
if awk -v l="$LOAD1" 'BEGIN { exit !(l > 1.0) }'; then
  say "warning: load average $LOAD1 before the run: other processes compete for the cores"
fi
others=$(psql_admin -A -t -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'
  AND pid <> pg_backend_pid() AND datname IS DISTINCT FROM '$DB'" 2>/dev/null || echo "?")

# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

set +e
BENCH_URL="$BASE" BENCH_WS_URL="ws://127.0.0.1:$WS_PORT/v1/ws" BENCH_TOKEN=$TOKEN BENCH_REDIS_URL=$REDIS_URL BENCH_PREFIX=$PREFIX \
  BENCH_PID=$SLUICE_PID BENCH_REDIS_PID=$REDIS_PID BENCH_PG_PID=$PG_PID BENCH_DB=$DB BENCH_EVENTS=$EVENTS \
  BENCH_ROUNDS=$ROUNDS BENCH_ROWS="$WORK/rows.tsv" BENCH_STRICT=${BENCH_STRICT:-0} \
  timeout -k 5 $((120 + ROUNDS * EVENTS / 200)) node bench/consumer/bench.js
rc=$?
set -e
if ! running "$SLUICE_PID"; then
  tail -n 30 "$WORK/sluice.log" >&2
  die "sluice died during the run"
fi
errors=$(grep -c '"level":"error"' "$WORK/sluice.log" || true)
echo "  load average at the start: $LOAD1; other PostgreSQL client connections at the start: $others;" \
  "errors logged by sluice: ${errors:-0}"
if ((rc == 3)); then die "a target was missed (BENCH_STRICT=1)"; fi
if ((rc != 0)); then
  tail -n 20 "$WORK/sluice.log" >&2
  die "the driver failed (exit $rc)"
fi
bench_stop_sluice

# make bench's summary: the driver's rows (measure, value, baseline, target, verdict).
if [[ -r $WORK/rows.tsv ]]; then
  while IFS=$'\t' read -r m v b t verdict; do
    bench_summary "$m" "$v" "$b" "$t" "$verdict"
  done <"$WORK/rows.tsv"
fi

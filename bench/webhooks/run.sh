#!/usr/bin/env bash
# bench/webhooks/run.sh — the webhook delivery benchmark (issue 16).
#
#   bench/webhooks/run.sh   BENCH_EVENTS=10000 (owed to each webhook in the throughput phase),
#                           BENCH_HOOKS=10, BENCH_RATE=1000 (events/s in the lag phase),
#                           BENCH_SECONDS=10, BENCH_LAG_BATCH=10 (events per publish there),
#                           BENCH_RECEIVERS=1 (receiver processes; webhooks spread over them)
#                           BENCH_LAG_PLAN="<events/s>x<webhooks>,..." (default
#                           "$BENCH_RATE"x1,"$BENCH_RATE"x"$BENCH_HOOKS"; the first is the headline)
#                           BENCH_PERF=<path>: perf record (DWARF call graphs) of sluice during
#                           the throughput phase (perf report -i <path>)
#
# Why: webhooks push every matching event to an HTTP endpoint. The target: at least 5,000
# deliveries/s with 10 webhooks to a local receiver that answers 204, and a lag p99 under
# 200 ms at 1,000 events/s. bench/webhooks/bench.js measures both against one build/sluice,
# started with SLUICE_WEBHOOK_ALLOW_PRIVATE=1 (the receivers are on 127.0.0.1) and
# SLUICE_ALLOW_UNKNOWN_TYPES=1, beside a baseline measured in the same run:
#   throughput  BENCH_EVENTS events published first, then BENCH_HOOKS webhooks created at
#               start "0": deliveries/s from the first arrival to the last, CPU µs per
#               delivery of sluice, the receivers, PostgreSQL (its backends for sluice's
#               database, and the whole cluster), the driver and the rest of the machine
#               (noise), from /proc; sluice's own counters (GET /v1/webhooks) must agree;
#   baseline    the same receivers without Sluice: bench/webhooks/sender.js, a plain
#               node:http client in its own process, POSTs the same envelopes (the NDJSON
#               export of the stream: the bytes Sluice sends), signed per request as Sluice
#               signs them, to BENCH_HOOKS paths with 16 in flight each (Sluice's limit per
#               webhook): what the receivers can take. Sluice's deliveries/s are printed as a
#               ratio of it, and both sides' CPU µs per delivery side by side;
#   lag         per step of BENCH_LAG_PLAN, new webhooks at start "$", that many events/s
#               for BENCH_SECONDS s: per delivery, its arrival at the receiver minus the
#               event's `time`, minus its publish's 201, minus its publish's sending;
#               p50/p99/max. The target's case (1,000 events/s) is the first step, to one
#               webhook (1,000 deliveries/s); the second fans the same rate out to
#               BENCH_HOOKS webhooks (10,000 deliveries/s with the defaults, twice the
#               throughput target), informative only.
# The receivers (bench/webhooks/receiver.js) are node:http processes answering 204; their CPU
# is its own column, so whether they, and not sluice, set the pace shows in the table.
# Prints one table, and its headline rows to BENCH_SUMMARY (make bench's table). Exit 1 when
# a delivery is missing or sluice's counters disagree; BENCH_STRICT=1 also fails (exit 1) on a
# missed target. Bounded: every step under `timeout` (about 1.5 minutes with the defaults).
#
# Servers: SLUICE_DATABASE_URL / SLUICE_REDIS_URL when set, else the private ones of
# scripts/services.sh (bench/lib.sh); PostgreSQL must run on this machine for its CPU to be
# read (else those columns say "?"). Everything happens in a fresh database
# bench_webhooks_<pid>, dropped at the end, and Redis keys under the prefix
# benchwebhooks<pid>:, deleted at the end. Loopback only.
# shellcheck disable=SC2317  # functions run from traps
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"

EVENTS=${BENCH_EVENTS:-10000}
HOOKS=${BENCH_HOOKS:-10}
RATE=${BENCH_RATE:-1000}
SECONDS_=${BENCH_SECONDS:-10}
LAG_BATCH=${BENCH_LAG_BATCH:-10}
RECEIVERS=${BENCH_RECEIVERS:-1}
LAG_PLAN=${BENCH_LAG_PLAN:-${RATE}x1,${RATE}x${HOOKS}}
int_in() { [[ $1 =~ ^[1-9][0-9]*$ ]] && (($1 >= $2 && $1 <= $3)); }
int_in "$EVENTS" 1 1000000 || { echo "bench/webhooks: BENCH_EVENTS must be an integer from 1 to 1000000" >&2; exit 2; }
int_in "$HOOKS" 1 100 || { echo "bench/webhooks: BENCH_HOOKS must be an integer from 1 to 100" >&2; exit 2; }
int_in "$RATE" 1 100000 || { echo "bench/webhooks: BENCH_RATE must be an integer from 1 to 100000" >&2; exit 2; }
int_in "$SECONDS_" 1 600 || { echo "bench/webhooks: BENCH_SECONDS must be an integer from 1 to 600" >&2; exit 2; }
if ! int_in "$LAG_BATCH" 1 1000 || ((LAG_BATCH > RATE)); then
  echo "bench/webhooks: BENCH_LAG_BATCH must be an integer from 1 to 1000, at most BENCH_RATE" >&2
  exit 2
fi
int_in "$RECEIVERS" 1 16 || { echo "bench/webhooks: BENCH_RECEIVERS must be an integer from 1 to 16" >&2; exit 2; }
[[ $LAG_PLAN =~ ^[1-9][0-9]*x[1-9][0-9]*(,[1-9][0-9]*x[1-9][0-9]*){0,3}$ ]] || {
  echo "bench/webhooks: BENCH_LAG_PLAN must be one to four <events/s>x<webhooks>, comma-separated" >&2
  exit 2
}
steps=$(tr ',' '\n' <<<"$LAG_PLAN" | wc -l)

BENCH_NAME=webhooks DB=bench_webhooks_$$ PREFIX=benchwebhooks$$:
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

[[ -x $BIN ]] || die "$BIN not found; build it first (make)"
command -v node >/dev/null || die "node not found (run scripts/install-deps.sh)"

# ---------------------------------------------------------------------------------------------
# Servers, and the postmaster's pid for the CPU columns
# ---------------------------------------------------------------------------------------------

bench_servers all

bench_find_postmaster

# ---------------------------------------------------------------------------------------------
# The database, the receivers, the server
# ---------------------------------------------------------------------------------------------

bench_database
RECV_PORTS="" RECV_PIDS=""
for ((i = 0; i < RECEIVERS; i++)); do
  node bench/webhooks/receiver.js "$WORK/receiver$i.port" >/dev/null 2>"$WORK/receiver$i.log" &
  pid=$!
  BENCH_PIDS+=("$pid")
  for ((t = 0; t < 100; t++)); do
    [[ -s $WORK/receiver$i.port ]] && break
    running "$pid" || break
    sleep 0.1
  done
  port=$(sed -n 's/^{"port":\([0-9]*\)}$/\1/p' "$WORK/receiver$i.port" 2>/dev/null || true)
  if [[ -z $port ]]; then
    cat "$WORK/receiver$i.log" >&2 || true
    die "receiver $i did not start in 10 s"
  fi
  RECV_PORTS+=${RECV_PORTS:+,}$port RECV_PIDS+=${RECV_PIDS:+,}$pid
done
bench_start_sluice SLUICE_WEBHOOK_ALLOW_PRIVATE=1 SLUICE_ALLOW_UNKNOWN_TYPES=1
say "sluice pid $SLUICE_PID, HTTP 127.0.0.1:$HTTP_PORT; receivers on ports $RECV_PORTS (pids $RECV_PIDS)${PG_PID:+; postmaster pid $PG_PID}"

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
BENCH_URL="$BASE" BENCH_TOKEN=$TOKEN BENCH_PID=$SLUICE_PID BENCH_PG_PID=$PG_PID BENCH_DB=$DB \
  BENCH_RECEIVER_PORTS=$RECV_PORTS BENCH_RECEIVER_PIDS=$RECV_PIDS BENCH_EVENTS=$EVENTS BENCH_HOOKS=$HOOKS \
  BENCH_RATE=$RATE BENCH_SECONDS=$SECONDS_ BENCH_LAG_BATCH=$LAG_BATCH BENCH_LAG_PLAN=$LAG_PLAN \
  BENCH_ROWS="$WORK/rows.tsv" BENCH_WORK=$WORK BENCH_STRICT=${BENCH_STRICT:-0} BENCH_PERF=${BENCH_PERF:-} \
  timeout -k 5 $((120 + HOOKS * EVENTS / 250 + steps * (60 + 2 * SECONDS_))) node bench/webhooks/bench.js
rc=$?
set -e
if ! running "$SLUICE_PID"; then
  tail -n 30 "$WORK/sluice.log" >&2
  die "sluice died during the run"
fi
errors=$(grep -c '"level":"error"' "$WORK/sluice.log" || true)
echo "  load average at the start: $LOAD1, at the end: $(cut -d' ' -f1 /proc/loadavg); other PostgreSQL" \
  "client connections at the start: $others; errors logged by sluice: ${errors:-0}"
if ((rc == 3)); then die "a target was missed (BENCH_STRICT=1)"; fi
if ((rc != 0)); then
  tail -n 20 "$WORK/sluice.log" >&2
  die "the driver failed (exit $rc)"
fi
bench_stop_sluice

if [[ -r $WORK/rows.tsv ]]; then
  while IFS=$'\t' read -r m v b t verdict; do
    bench_summary "$m" "$v" "$b" "$t" "$verdict"
  done <"$WORK/rows.tsv"
fi

#!/usr/bin/env bash
# bench/run.sh — owns the durable-publish benchmark (`make bench`, which builds first).
#
#   bench/run.sh [all|pgbench|sluice]        BENCH_SECONDS=10 per load run
#
# Why: Sluice's claim is that a durable 201 (sent after COMMIT) through its group-commit
# appender beats what an application gets by inserting one row per transaction into the same
# table, and that batches cost about what a bulk INSERT costs. This measures both sides on
# the same PostgreSQL, the same `events` table (created by `sluice migrate`, so every index
# and constraint the server pays for is there), with fsync and synchronous_commit on:
#   a. pgbench, 64 clients, one INSERT per transaction (prepared; positions from a sequence,
#      no advisory lock: a baseline at least as fast as a naive application); then 8 clients
#      inserting 100 rows per transaction (INSERT ... SELECT generate_series);
#   b. build/sluice on a free port, wrk (bench/publish.lua) with 64 connections POSTing
#      single ~400-byte file.uploaded events, then 8 connections POSTing 100-event batches;
#   c. the Redis relay lag under both loads (issue 4: p99 < 100 ms): a consumer in C
#      (bench/relay_lag.c) reads the relay's stream with blocking XREAD and, per entry,
#      subtracts the event's `time` (set when its commit starts) from the moment the entry
#      reached it; it also checks that every position arrives once, none skipped;
#   d. Sluice's peak RSS (VmHWM); a count(*) that the store holds at least every event wrk
#      saw a 201 for.
# It prints one table with the targets (single ≥ 2.5x pgbench, p99 < 25 ms, batch ≥ 0.8x
# pgbench rows/s, relay lag p99 < 100 ms), and the headline rows to BENCH_SUMMARY (make
# bench's table). Exit 1 when a 201 is missing from the store or the relay skipped or doubled
# an entry, or (BENCH_STRICT=1) when a target is missed.
#
# Servers: SLUICE_DATABASE_URL / SLUICE_REDIS_URL when set, else the private ones of
# scripts/services.sh (bench/lib.sh). Everything happens in a fresh database
# bench_publish_<pid>, dropped at the end, and Redis keys under the prefix benchpublish<pid>:,
# deleted at the end. Loopback only; every step is bounded by `timeout`. wrk and pgbench run
# 2 threads: they share the 2 cores.
# shellcheck disable=SC2317  # functions run from traps
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

parts=${1:-all}
case "$parts" in all | pgbench | sluice) ;; *)
  echo "usage: $0 [all|pgbench|sluice]" >&2
  exit 2
  ;;
esac
SECS=${BENCH_SECONDS:-10}
[[ $SECS =~ ^[1-9][0-9]*$ ]] || {
  echo "bench: BENCH_SECONDS must be a positive integer" >&2
  exit 2
}
BENCH_NAME=publish
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

# ---------------------------------------------------------------------------------------------
# Tools and servers
# ---------------------------------------------------------------------------------------------

if [[ $parts != pgbench && ! -x $BIN ]]; then
  die "$BIN not found; build it first (make), or run: $0 pgbench"
fi
if [[ $parts == pgbench ]]; then bench_servers pg; else bench_servers all; fi
PGBENCH=$(find_pg_tool pgbench)
if [[ $parts != pgbench ]]; then
  command -v wrk >/dev/null || die "wrk not found (run scripts/install-deps.sh)"
  command -v redis-cli >/dev/null || die "redis-cli not found (run scripts/install-deps.sh)"
  pkg-config --exists hiredis || die "libhiredis-dev not found (run scripts/install-deps.sh)"
fi

# ---------------------------------------------------------------------------------------------
# The bench database
# ---------------------------------------------------------------------------------------------

bench_database
if [[ -x $BIN ]]; then
  bench_migrate
else
  # pgbench-only run before the server is built: the same migrations, applied by psql.
  say "$BIN not built: applying migrations/*.sql with psql"
  for f in migrations/*.sql; do psql_bench -f "$f"; done
fi
psql_bench -c "SELECT 1 FROM events LIMIT 0" >/dev/null || die "no events table after migrating"

# The event data both sides store: file.uploaded as the shipped catalog defines it, ~380
# bytes of JSON (~410 with its envelope). @ID@ varies per row in pgbench so PostgreSQL parses
# every row's jsonb, as it does for the server's rows.
DATA_TEMPLATE='{"file_id":"f_@ID@","user_id":"user_01HZX3K7Q9M2V8R4T6Y1B5N0CW","contextual_core_id":"core_01HZX3K7QA7F2D9G4J8L1P6S3E","filename":"uploads/2024/q3/quarterly-business-review-2024-q3-final-version-with-appendix-and-speaker-notes-for-the-board-meeting-in-october-approved-by-finance-and-legal-v12.pdf","file_size":48213377,"mime_type":"application/pdf","is_browser_viewable":true}'

# ---------------------------------------------------------------------------------------------
# a. pgbench
# ---------------------------------------------------------------------------------------------

pg_single_tps="" pg_single_lat="" pg_batch_tps="" pg_batch_lat=""

# One row as the server writes it: ULID-sized id, correlation_id = id, tenant, stream, type,
# schema_version, jsonb data, no metadata, now(), a 64-hex content hash. Positions come from
# a sequence (the server takes an advisory lock and max(position) instead: slower).
# pgbench reads ":name" as a variable even inside a literal ("is_browser_viewable":true), so
# its copy of the JSON has a space after each colon; the stored jsonb is the same.
PGB_DATA=${DATA_TEMPLATE//\":/\": }
row_select() { # row_select POSITION_EXPR
  cat <<EOF
SELECT p, i, 'default', 'contextual.events', NULL, NULL, 'file.uploaded', 1, i, NULL, NULL,
       NULL, replace('$PGB_DATA', '@ID@', p::text)::jsonb, NULL, now(),
       lpad(to_hex(p), 64, '0')
  FROM (SELECT p, '01J' || lpad(p::text, 23, '0') AS i FROM ($1) s0) s
EOF
}
INSERT_HEAD="INSERT INTO events (position, id, tenant_id, stream, key, version, type, schema_version, correlation_id, causation_id, user_id, source, data, metadata, time, content_hash)"
# pgbench scripts end a command at the newline: one line each.
{
  echo -n "$INSERT_HEAD "
  row_select "SELECT nextval('bench_pos') AS p" | tr '\n' ' '
  echo ";"
} >"$WORK/single.sql"
{
  echo -n "$INSERT_HEAD "
  row_select "SELECT nextval('bench_pos') AS p FROM generate_series(1, 100)" | tr '\n' ' '
  echo ";"
} >"$WORK/batch.sql"

reset_events() { # empty the log between runs; a checkpoint so the next run starts even
  psql_bench -c "TRUNCATE events" -c "CHECKPOINT" >/dev/null 2>&1 ||
    psql_bench -c "TRUNCATE events" >/dev/null
}

run_pgbench() { # run_pgbench SCRIPT CLIENTS -> sets PGB_TPS, PGB_LAT (ms)
  local out=$WORK/pgbench-$2.out
  if ! timeout $((SECS + 120)) "$PGBENCH" -n -M prepared -c "$2" -j 2 -T "$SECS" \
    -f "$1" "$BENCH_URL" >"$out" 2>&1; then
    cat "$out" >&2
    die "pgbench failed"
  fi
  PGB_TPS=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$out")
  PGB_LAT=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$out")
  local failed
  failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
  [[ -n $PGB_TPS ]] || {
    cat "$out" >&2
    die "could not read pgbench's tps"
  }
  [[ ${failed:-0} == 0 ]] || say "pgbench: $failed failed transactions"
}

if [[ $parts != sluice ]]; then
  psql_bench -c "CREATE SEQUENCE bench_pos" >/dev/null
  say "pgbench: 1 row per transaction, 64 clients, ${SECS}s"
  run_pgbench "$WORK/single.sql" 64
  pg_single_tps=$PGB_TPS pg_single_lat=$PGB_LAT
  reset_events
  say "pgbench: 100 rows per transaction, 8 clients, ${SECS}s"
  run_pgbench "$WORK/batch.sql" 8
  pg_batch_tps=$PGB_TPS pg_batch_lat=$PGB_LAT
  reset_events
  psql_bench -c "DROP SEQUENCE bench_pos" >/dev/null
fi

# ---------------------------------------------------------------------------------------------
# b. Sluice under wrk; c. the relay lag, read from Redis meanwhile
# ---------------------------------------------------------------------------------------------

W_created=0 W_non2xx=0 W_sock_errors=0 W_timeouts=0 W_p50_us=0 W_p99_us=0 W_duration_us=1 W_body_bytes=0
run_wrk() { # run_wrk CONNECTIONS BATCH -> sets W_* from the BENCH line
  local out=$WORK/wrk-$2.out line kv
  if ! BENCH_TOKEN=$TOKEN BENCH_BATCH=$2 BENCH_DATA=${DATA_TEMPLATE/@ID@/wrk} \
    timeout $((SECS + 60)) wrk -t 2 -c "$1" -d "${SECS}s" --timeout 10s \
    -s "$REPO/bench/publish.lua" "$BASE/v1/events" >"$out" 2>&1; then
    cat "$out" >&2
    die "wrk failed"
  fi
  line=$(grep '^BENCH ' "$out") || {
    cat "$out" >&2
    die "no BENCH line from wrk"
  }
  for kv in ${line#BENCH }; do
    printf -v "W_${kv%%=*}" '%s' "${kv#*=}"
  done
}

LAG_PID=""
declare -A LAG=()
# lag_phase K: once the consumer has read up to the head of the log, its LAG line for phase K
# -> LAG[K.n], LAG[K.p50_ms], ... (bounded: the relay must catch up within 60 s).
lag_phase() {
  local head i line kv
  head=$(psql_bench -A -t -c "SELECT coalesce(max(position), 0) FROM events")
  echo "$head" >"$WORK/lag.ctl"
  kill -USR1 "$LAG_PID"
  for ((i = 0; i < 600; i++)); do
    line=$(grep "^LAG phase=$1 " "$WORK/lag.out" || true)
    [[ -n $line ]] && break
    running "$LAG_PID" || break
    sleep 0.1
  done
  [[ -n $line ]] || {
    cat "$WORK/lag.err" >&2
    die "the relay did not bring the stream to position $head within 60 s"
  }
  for kv in ${line#LAG }; do LAG[$1.${kv%%=*}]=${kv#*=}; done
  LAG[$1.head]=$head
}

s_single_eps="" s_batch_eps="" rss_kb="" stored="" acked=0 durable="" relay_ok=""
if [[ $parts != pgbench ]]; then
  say "building the relay-lag consumer"
  # shellcheck disable=SC2046  # pkg-config prints several words
  cc -O2 -std=c11 -Wall -Wextra -o "$WORK/relay-lag" bench/relay_lag.c \
    $(pkg-config --cflags --libs hiredis) || die "could not build bench/relay_lag.c"

  bench_start_sluice SLUICE_REDIS_MAXLEN=100000 SLUICE_ACCESS_LOG=off
  psql_bench -c "TRUNCATE events" >/dev/null

  # One event first, so a 4xx (say, a schema change) fails loudly instead of benchmarking 422s.
  probe=$(curl -sS -m 10 -o "$WORK/probe.json" -w '%{http_code}' -X POST \
    "$BASE/v1/events" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' \
    -d "{\"type\":\"file.uploaded\",\"data\":${DATA_TEMPLATE/@ID@/probe}}") || probe=000
  if [[ $probe != 201 ]]; then
    cat "$WORK/probe.json" >&2 2>/dev/null || true
    echo >&2
    die "probe publish answered $probe, not 201"
  fi
  acked=1
  probe_pos=$(sed -n 's/.*"position":\([0-9]*\).*/\1/p' "$WORK/probe.json")
  probe_stream=$(sed -n 's/.*"stream":"\([^"]*\)".*/\1/p' "$WORK/probe.json")
  [[ -n $probe_pos && -n $probe_stream ]] || die "no position/stream in the probe's 201: $(cat "$WORK/probe.json")"

  # The consumer reads every entry after the probe's; wrk starts once its first read is out.
  "$WORK/relay-lag" "$REDIS_URL" "$PREFIX$probe_stream" "$probe_pos" "$WORK/lag.ctl" \
    >"$WORK/lag.out" 2>"$WORK/lag.err" &
  LAG_PID=$!
  BENCH_PIDS+=("$LAG_PID")
  for ((i = 0; i < 100; i++)); do
    grep -q '^READY' "$WORK/lag.out" && break
    running "$LAG_PID" || break
    sleep 0.1
  done
  grep -q '^READY' "$WORK/lag.out" || {
    cat "$WORK/lag.err" >&2
    die "the relay-lag consumer did not start"
  }

  say "wrk: single events, 64 connections, ${SECS}s"
  run_wrk 64 1
  s1_created=$W_created s1_non2xx=$W_non2xx s1_sock=$((W_sock_errors + W_timeouts))
  s1_p50=$W_p50_us s1_p99=$W_p99_us s1_dur=$W_duration_us s1_bytes=$W_body_bytes
  s_single_eps=$(awk -v n="$s1_created" -v d="$s1_dur" 'BEGIN { printf "%.0f", n / (d / 1e6) }')
  lag_phase 1

  say "wrk: 100-event batches, 8 connections, ${SECS}s"
  run_wrk 8 100
  s2_created=$W_created s2_non2xx=$W_non2xx s2_sock=$((W_sock_errors + W_timeouts))
  s2_p50=$W_p50_us s2_p99=$W_p99_us s2_dur=$W_duration_us s2_bytes=$W_body_bytes
  s_batch_eps=$(awk -v n="$s2_created" -v d="$s2_dur" 'BEGIN { printf "%.0f", n * 100 / (d / 1e6) }')
  lag_phase 2
  kill -TERM "$LAG_PID" 2>/dev/null || true
  wait "$LAG_PID" 2>/dev/null || true

  # Every position after the probe's reached the stream once: phase 1 starts right after the
  # probe, phase 2 right after phase 1, none skipped or doubled.
  relay_ok=PASS
  if [[ ${LAG[1.first]} != $((probe_pos + 1)) || ${LAG[2.first]} != $((LAG[1.last] + 1)) ||
    ${LAG[1.missing]} != 0 || ${LAG[2.missing]} != 0 || ${LAG[1.extra]} != 0 || ${LAG[2.extra]} != 0 ||
    ${LAG[2.last]} != "${LAG[2.head]}" ]]; then
    relay_ok=FAIL
  fi

  rss_kb=$(bench_rss_kb)
  bench_stop_sluice # a graceful stop finishes in-flight commits
  acked=$((1 + s1_created + 100 * s2_created))
  stored=$(psql_bench -A -t -c "SELECT count(*) FROM events")
  if ((stored >= acked)); then durable=PASS; else durable=FAIL; fi
fi

# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------

fmt() { awk -v x="$1" -v f="$2" 'BEGIN { printf f, x }'; }
ms() { awk -v u="$1" 'BEGIN { printf "%.1f", u / 1000 }'; }
missed=0
row() { printf '  %-44s %16s   %-10s %s\n' "$@"; }

echo
echo "Sluice durable-publish benchmark — ${SECS}s per run, loopback, fsync + synchronous_commit on"
echo "  PostgreSQL: $("$PSQL" -X -A -t -d "$BENCH_URL" -c 'SHOW server_version' 2>/dev/null || echo '?'),"\
  "$(nproc) cores; wrk/pgbench share them with the servers"
echo
row "measure" "value" "target" ""
if [[ -n $pg_single_tps ]]; then
  row "pgbench 1 row/tx, 64 clients" "$(fmt "$pg_single_tps" '%.0f tx/s')" "" "(avg $(fmt "$pg_single_lat" '%.1f') ms)"
fi
if [[ -n $s_single_eps ]]; then
  row "Sluice single events, 64 connections" "$(fmt "$s_single_eps" '%.0f ev/s')" "" \
    "(p50 $(ms "$s1_p50") ms, non-2xx $s1_non2xx, socket errors $s1_sock, body $s1_bytes B)"
  base="-" v="-"
  if [[ -n $pg_single_tps ]]; then
    ratio=$(awk -v a="$s_single_eps" -v b="$pg_single_tps" 'BEGIN { printf "%.2f", a / b }')
    v=$(bench_check "$ratio" ">=" 2.5)
    [[ $v == PASS ]] || missed=1
    row "  ratio Sluice / pgbench" "${ratio}x" ">= 2.5" "$v"
    base="pgbench 1 row/tx, 64 clients = $(fmt "$pg_single_tps" '%.0f') tx/s (${ratio}x)"
  fi
  bench_summary "single events, 64 connections" "$s_single_eps ev/s" "$base" ">= 2.5x" "$v"
  p99_ms=$(ms "$s1_p99")
  v=$(bench_check "$p99_ms" "<" 25)
  [[ $v == PASS ]] || missed=1
  row "Sluice single-event p99 latency" "$p99_ms ms" "< 25 ms" "$v"
  base="-"
  if [[ -n $pg_single_lat ]]; then base="pgbench 1 row/tx avg = $(fmt "$pg_single_lat" '%.1f') ms"; fi
  bench_summary "single-event p99 latency (201)" "$p99_ms ms (p50 $(ms "$s1_p50"))" "$base" "< 25 ms" "$v"
fi
if [[ -n $pg_batch_tps ]]; then
  pg_batch_rows=$(awk -v t="$pg_batch_tps" 'BEGIN { printf "%.0f", t * 100 }')
  row "pgbench 100 rows/tx, 8 clients" "$pg_batch_rows rows/s" "" "(avg $(fmt "$pg_batch_lat" '%.1f') ms per tx)"
fi
if [[ -n $s_batch_eps ]]; then
  row "Sluice 100-event batches, 8 connections" "$s_batch_eps ev/s" "" \
    "(p50 $(ms "$s2_p50") ms, p99 $(ms "$s2_p99") ms, non-2xx $s2_non2xx, socket errors $s2_sock, body $s2_bytes B)"
  base="-" v="-"
  if [[ -n $pg_batch_tps ]]; then
    ratio=$(awk -v a="$s_batch_eps" -v b="$pg_batch_rows" 'BEGIN { printf "%.2f", a / b }')
    v=$(bench_check "$ratio" ">=" 0.8)
    [[ $v == PASS ]] || missed=1
    row "  ratio Sluice / pgbench" "${ratio}x" ">= 0.8" "$v"
    base="pgbench 100 rows/tx, 8 clients = $pg_batch_rows rows/s (${ratio}x)"
  fi
  bench_summary "100-event batches, 8 connections" "$s_batch_eps ev/s" "$base" ">= 0.8x" "$v"
  for k in 1 2; do
    if ((k == 1)); then what="single-event load"; else what="100-event batch load"; fi
    v=$(bench_check "${LAG[$k.p99_ms]}" "<" 100)
    [[ $v == PASS ]] || missed=1
    row "Redis relay lag p99, $what" "${LAG[$k.p99_ms]} ms" "< 100 ms" \
      "$v (p50 ${LAG[$k.p50_ms]} ms, max ${LAG[$k.max_ms]} ms, ${LAG[$k.n]} entries)"
    bench_summary "Redis relay lag p99, $what" \
      "${LAG[$k.p99_ms]} ms (p50 ${LAG[$k.p50_ms]}, max ${LAG[$k.max_ms]})" "-" "< 100 ms" "$v"
  done
  row "  relay: positions $((probe_pos + 1))-${LAG[2.head]} in Redis" \
    "$((LAG[1.n] + LAG[2.n])) entries" "each once" \
    "$relay_ok (skipped ${LAG[1.missing]}+${LAG[2.missing]}, doubled ${LAG[1.extra]}+${LAG[2.extra]})"
  row "Sluice peak RSS (VmHWM)" "$(awk -v k="${rss_kb:-0}" 'BEGIN { printf "%.1f MiB", k / 1024 }')" "" ""
  row "events stored / events acknowledged (201)" "$stored / $acked" "stored >= 201s" "$durable"
  bench_summary "events stored / acknowledged (201)" "$stored / $acked" "-" "stored >= 201s" "$durable"
  echo
  echo "  relay lag: the moment an entry reached a blocking XREAD consumer minus the event's time,"
  echo "  which is set when its commit starts (so the lag includes the commit itself)"
fi
echo

if [[ $durable == FAIL ]]; then
  say "DURABILITY: $acked events were acknowledged but only $stored are stored"
  exit 1
fi
if [[ $relay_ok == FAIL ]]; then
  say "RELAY: a position was skipped or doubled in the Redis stream (see the table)"
  exit 1
fi
if ((missed)) && [[ ${BENCH_STRICT:-0} == 1 ]]; then
  say "a target was missed (BENCH_STRICT=1)"
  exit 1
fi
exit 0

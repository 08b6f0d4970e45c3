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
#   c. Sluice's peak RSS (VmHWM); a count(*) that the store holds at least every event wrk
#      saw a 201 for.
# It prints one table with the targets (single ≥ 2.5x pgbench, p99 < 25 ms, batch ≥ 0.8x
# pgbench rows/s). Exit 1 when a 201 is missing from the store, or (BENCH_STRICT=1) when a
# target is missed.
#
# Servers: SLUICE_DATABASE_URL / SLUICE_REDIS_URL when set, else the private ones of
# scripts/services.sh. Everything happens in a fresh database bench_<pid>, dropped at the
# end, and Redis keys under the prefix bench<pid>:, deleted at the end. Loopback only; every
# step is bounded by `timeout`. wrk and pgbench run 2 threads: they share the 2 cores.
# shellcheck disable=SC2317  # functions run from traps and "${c}_start"-style dispatch
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
BIN=${SLUICE_BIN:-$REPO/build/sluice}
TOKEN=sk_bench_$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
DB=bench_$$
PREFIX=bench$$:
WORK=$(mktemp -d -t sluice-bench.XXXXXX)

say() { echo "bench: $*" >&2; }
die() {
  say "$*"
  exit 1
}

# ---------------------------------------------------------------------------------------------
# Tools and servers
# ---------------------------------------------------------------------------------------------

if [[ $parts != pgbench && ! -x $BIN ]]; then
  die "$BIN not found; build it first (make), or run: $0 pgbench"
fi

user_db=${SLUICE_DATABASE_URL:-}
user_redis=${SLUICE_REDIS_URL:-}
want=""
if [[ -z $user_db && -z $user_redis ]]; then
  want=all
elif [[ -z $user_db ]]; then
  want=pg
elif [[ -z $user_redis && $parts != pgbench ]]; then
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

find_pg_tool() { # find_pg_tool NAME: the server's own version first
  local d
  for d in "${SLUICE_PG_BIN:-}" $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV); do
    if [[ -n $d && -x $d/$1 ]]; then
      echo "$d/$1"
      return
    fi
  done
  command -v "$1" || die "$1 not found (run scripts/install-deps.sh)"
}
PGBENCH=$(find_pg_tool pgbench)
PSQL=$(find_pg_tool psql)
if [[ $parts != pgbench ]]; then
  command -v wrk >/dev/null || die "wrk not found (run scripts/install-deps.sh)"
fi

# url_with_db URL DB: the same PostgreSQL URL, naming database DB.
url_with_db() {
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
psql_bench() { timeout 120 "$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$BENCH_URL" "$@"; }

redis_cli() { # redis_cli ARGS...: against SLUICE_REDIS_URL (redis:// or unix://)
  case "$REDIS_URL" in
    unix://*) timeout 30 redis-cli -s "${REDIS_URL#unix://}" "$@" ;;
    *) timeout 30 redis-cli -u "$REDIS_URL" "$@" ;;
  esac
}

SLUICE_PID=""
db_created=0
# running PID: alive and not a zombie waiting to be reaped.
running() {
  local st
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) }
  [[ ${st%% *} != [ZX] ]]
}
stop_sluice() {
  [[ -n $SLUICE_PID ]] || return 0
  local i
  kill -TERM "$SLUICE_PID" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    running "$SLUICE_PID" || break
    sleep 0.1
  done
  if running "$SLUICE_PID"; then
    say "sluice did not stop in 15 s; killing it"
    kill -KILL "$SLUICE_PID" 2>/dev/null || true
  fi
  wait "$SLUICE_PID" 2>/dev/null || true
  SLUICE_PID=""
}

cleanup() {
  local rc=$?
  stop_sluice || true
  if ((db_created)); then
    psql_admin -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 ||
      psql_admin -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 ||
      say "could not drop database $DB"
  fi
  if [[ -n $REDIS_URL && $parts != pgbench ]] && command -v redis-cli >/dev/null; then
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
# The bench database
# ---------------------------------------------------------------------------------------------

say "database $DB on $(sed -E 's#^([a-z]+://[^:/@]*):[^@]*@#\1:***@#' <<<"$ADMIN_URL")"
psql_admin -c "CREATE DATABASE $DB"
db_created=1
if [[ -x $BIN ]]; then
  SLUICE_DATABASE_URL=$BENCH_URL SLUICE_LOG_LEVEL=warn timeout 120 "$BIN" migrate >"$WORK/migrate.log" 2>&1 ||
    {
      cat "$WORK/migrate.log" >&2
      die "sluice migrate failed"
    }
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
# b. Sluice under wrk
# ---------------------------------------------------------------------------------------------

W_created=0 W_non2xx=0 W_sock_errors=0 W_timeouts=0 W_p50_us=0 W_p99_us=0 W_duration_us=1 W_body_bytes=0
run_wrk() { # run_wrk CONNECTIONS BATCH -> sets W_* from the BENCH line
  local out=$WORK/wrk-$2.out line kv
  if ! BENCH_TOKEN=$TOKEN BENCH_BATCH=$2 BENCH_DATA=${DATA_TEMPLATE/@ID@/wrk} \
    timeout $((SECS + 60)) wrk -t 2 -c "$1" -d "${SECS}s" --timeout 10s \
    -s "$REPO/bench/publish.lua" "http://127.0.0.1:$HTTP_PORT/v1/events" >"$out" 2>&1; then
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

s_single_eps="" s_batch_eps="" rss_kb="" stored="" acked=0 durable=""
if [[ $parts != pgbench ]]; then
  [[ -n $REDIS_URL ]] || die "no SLUICE_REDIS_URL"
  say "starting $BIN"
  SLUICE_DATABASE_URL=$BENCH_URL SLUICE_REDIS_URL=$REDIS_URL SLUICE_REDIS_PREFIX=$PREFIX \
    SLUICE_REDIS_MAXLEN=100000 SLUICE_HTTP_PORT=0 SLUICE_WS_PORT=0 SLUICE_BIND=127.0.0.1 \
    SLUICE_ADMIN_TOKEN=$TOKEN SLUICE_AUTH=on SLUICE_LOG_LEVEL=info SLUICE_ACCESS_LOG=off \
    "$BIN" >"$WORK/sluice.out" 2>"$WORK/sluice.log" &
  SLUICE_PID=$!
  HTTP_PORT=""
  for ((i = 0; i < 300; i++)); do
    HTTP_PORT=$(grep -m1 '"msg":"listening"' "$WORK/sluice.log" 2>/dev/null |
      sed -n 's/.*"http_port":\([0-9]*\).*/\1/p') || true
    [[ -n $HTTP_PORT ]] && break
    running "$SLUICE_PID" || break
    sleep 0.1
  done
  if [[ -z $HTTP_PORT ]]; then
    tail -n 30 "$WORK/sluice.log" >&2
    die "sluice did not log its \"listening\" line in 30 s"
  fi
  say "sluice pid $SLUICE_PID on 127.0.0.1:$HTTP_PORT"
  psql_bench -c "TRUNCATE events" >/dev/null

  # One event first, so a 4xx (say, a schema change) fails loudly instead of benchmarking 422s.
  probe=$(curl -sS -m 10 -o "$WORK/probe.json" -w '%{http_code}' -X POST \
    "http://127.0.0.1:$HTTP_PORT/v1/events" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' \
    -d "{\"type\":\"file.uploaded\",\"data\":${DATA_TEMPLATE/@ID@/probe}}") || probe=000
  if [[ $probe != 201 ]]; then
    cat "$WORK/probe.json" >&2 2>/dev/null || true
    echo >&2
    die "probe publish answered $probe, not 201"
  fi
  acked=1

  say "wrk: single events, 64 connections, ${SECS}s"
  run_wrk 64 1
  s1_created=$W_created s1_non2xx=$W_non2xx s1_sock=$((W_sock_errors + W_timeouts))
  s1_p50=$W_p50_us s1_p99=$W_p99_us s1_dur=$W_duration_us s1_bytes=$W_body_bytes
  s_single_eps=$(awk -v n="$s1_created" -v d="$s1_dur" 'BEGIN { printf "%.0f", n / (d / 1e6) }')

  say "wrk: 100-event batches, 8 connections, ${SECS}s"
  run_wrk 8 100
  s2_created=$W_created s2_non2xx=$W_non2xx s2_sock=$((W_sock_errors + W_timeouts))
  s2_p50=$W_p50_us s2_p99=$W_p99_us s2_dur=$W_duration_us s2_bytes=$W_body_bytes
  s_batch_eps=$(awk -v n="$s2_created" -v d="$s2_dur" 'BEGIN { printf "%.0f", n * 100 / (d / 1e6) }')

  rss_kb=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$SLUICE_PID/status" 2>/dev/null || true)
  stop_sluice # a graceful stop finishes in-flight commits
  acked=$((1 + s1_created + 100 * s2_created))
  stored=$(psql_bench -A -t -c "SELECT count(*) FROM events")
  if ((stored >= acked)); then durable=PASS; else durable=FAIL; fi
fi

# ---------------------------------------------------------------------------------------------
# d. The table
# ---------------------------------------------------------------------------------------------

fmt() { awk -v x="$1" -v f="$2" 'BEGIN { printf f, x }'; }
check() { # check VALUE OP TARGET -> PASS|MISS
  awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN {
    ok = (op == ">=") ? (v >= t) : (v < t); print ok ? "PASS" : "MISS" }'
}
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
    "(p50 $(awk -v u="$s1_p50" 'BEGIN { printf "%.1f", u / 1000 }') ms, non-2xx $s1_non2xx, socket errors $s1_sock, body $s1_bytes B)"
  if [[ -n $pg_single_tps ]]; then
    ratio=$(awk -v a="$s_single_eps" -v b="$pg_single_tps" 'BEGIN { printf "%.2f", a / b }')
    verdict=$(check "$ratio" ">=" 2.5)
    [[ $verdict == PASS ]] || missed=1
    row "  ratio Sluice / pgbench" "${ratio}x" ">= 2.5" "$verdict"
  fi
  p99_ms=$(awk -v u="$s1_p99" 'BEGIN { printf "%.1f", u / 1000 }')
  verdict=$(check "$p99_ms" "<" 25)
  [[ $verdict == PASS ]] || missed=1
  row "Sluice single-event p99 latency" "$p99_ms ms" "< 25 ms" "$verdict"
fi
if [[ -n $pg_batch_tps ]]; then
  pg_batch_rows=$(awk -v t="$pg_batch_tps" 'BEGIN { printf "%.0f", t * 100 }')
  row "pgbench 100 rows/tx, 8 clients" "$pg_batch_rows rows/s" "" "(avg $(fmt "$pg_batch_lat" '%.1f') ms per tx)"
fi
if [[ -n $s_batch_eps ]]; then
  row "Sluice 100-event batches, 8 connections" "$s_batch_eps ev/s" "" \
    "(p50 $(awk -v u="$s2_p50" 'BEGIN { printf "%.1f", u / 1000 }') ms, p99 $(awk -v u="$s2_p99" 'BEGIN { printf "%.1f", u / 1000 }') ms, non-2xx $s2_non2xx, socket errors $s2_sock, body $s2_bytes B)"
  if [[ -n $pg_batch_tps ]]; then
    ratio=$(awk -v a="$s_batch_eps" -v b="$pg_batch_rows" 'BEGIN { printf "%.2f", a / b }')
    verdict=$(check "$ratio" ">=" 0.8)
    [[ $verdict == PASS ]] || missed=1
    row "  ratio Sluice / pgbench" "${ratio}x" ">= 0.8" "$verdict"
  fi
  row "Sluice peak RSS (VmHWM)" "$(awk -v k="${rss_kb:-0}" 'BEGIN { printf "%.1f MiB", k / 1024 }')" "" ""
  row "events stored / events acknowledged (201)" "$stored / $acked" "stored >= 201s" "$durable"
fi
echo

if [[ $durable == FAIL ]]; then
  say "DURABILITY: $acked events were acknowledged but only $stored are stored"
  exit 1
fi
if ((missed)) && [[ ${BENCH_STRICT:-0} == 1 ]]; then
  say "a target was missed (BENCH_STRICT=1)"
  exit 1
fi
exit 0

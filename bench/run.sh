#!/usr/bin/env bash
# bench/run.sh — owns the durable-publish benchmark (`make bench`, which builds first).
#
#   bench/run.sh [all|pgbench|sluice|node]     BENCH_SECONDS=10 per load run (6 runs)
#
# Why: Sluice's claim is that a durable 201 (sent after COMMIT) through its group-commit
# appender beats what an application gets by inserting one row per transaction into the same
# table, beats the service a Node team would build instead (bench/peer-node: fastify, ajv, pg,
# ioredis), and costs less CPU per event — its own and PostgreSQL's — than that service. This
# measures all three on the same PostgreSQL cluster and the same Redis, fsync and
# synchronous_commit on, with the envelope careful producers send (a unique client `id`, a
# correlation_id, a user_id, a small metadata object, besides type and data: bench/publish.lua):
#   a. pgbench, 64 clients, one INSERT per transaction (prepared; positions from a sequence,
#      no advisory lock: a baseline at least as fast as a naive application); then 8 clients
#      inserting 100 rows per transaction (INSERT ... SELECT generate_series). Its rows have the
#      same shape (client id, correlation_id, user_id, metadata) in the same `events` table,
#      created by `sluice migrate`, so every index and constraint the server pays for is there;
#      like the appender, each statement also writes the rows' (tenant_id, id, position) into
#      event_ids (WITH e AS (INSERT INTO events ... RETURNING ...) INSERT INTO event_ids ...),
#      so the baseline pays for the same idempotency index (event_ids' primary key,
#      events_tenant_id: the event log is partitioned, and a key unique across its partitions
#      lives there);
#   b. build/sluice on free ports, wrk (bench/publish.lua) with 64 connections POSTing single
#      ~570-byte file.uploaded events, then 8 connections POSTing 100-event batches;
#   c. the Redis relay lag under both loads (p99 < 100 ms): a consumer in C (bench/relay_lag.c)
#      reads the relay's stream with blocking XREAD and, per entry, subtracts the event's
#      `time` (set when its commit starts) from the moment the entry reached it; it also checks
#      that every position arrives once, none skipped;
#   d. the Node service (bench/peer-node, `npm ci` first) on free ports, in its own database
#      bench_peer_<pid> of the same cluster and the same Redis under its own key prefix, driven
#      by the same wrk script: single events at 64 connections, 100-event batches at 8; first
#      BENCH_NODE_WARMUP seconds (default 2) of each shape, unmeasured, so that V8 has compiled
#      the hot paths, then its table is emptied;
#   e. CPU per event, per process, for each of the six runs, from /proc/<pid>/stat (clock
#      ticks, getconf CLK_TCK) read right before and right after the load:
#        server      sluice, or node (and its cluster workers, if BENCH_NODE_WORKERS > 1);
#        PostgreSQL  the whole cluster: the postmaster's utime+stime+cutime+cstime plus each
#                    live child's utime+stime+cutime+cstime. Backends come and go (pgbench's
#                    64 connect and exit inside the window); the postmaster reaps every child
#                    that exits, which adds the child's whole lifetime to its cutime/cstime, so
#                    the difference of this sum over the window is exactly what the cluster's
#                    processes (backends, WAL writer, checkpointer, autovacuum...) spent in it.
#                    The postmaster's pid is the first line of <data_directory>/postmaster.pid
#                    (else the process listening on its port). Anything else using the cluster
#                    meanwhile is counted too: the table says how many other client
#                    connections there were;
#        Redis       redis-server (INFO server's process_id), the same sum;
#        load gen    wrk or pgbench: they run under a `bash -c` that, after they exit, reads its
#                    own cutime+cstime (the finished child's total CPU);
#      divided by the events stored in the run (201s x batch size; pgbench's transactions x
#      rows): µs of CPU per event, beside events/s and p50/p99 latency (pgbench: from its
#      per-transaction log, -l);
#   f. Sluice's peak RSS (VmHWM); a count(*) that each store holds at least every event wrk
#      saw a 201 for.
# It prints the runs' table and the targets' table, every ratio from this run: single events at
# 64 connections ≥ 1.5x pgbench and ≥ 3x Node, p99 < 25 ms; 100-event batches ≥ 1.5x Node;
# PostgreSQL CPU per event in Sluice's batch run ≤ 1.3x the Node batch run's; Sluice's own CPU
# ≤ 15 µs/event in batches, ≤ 40 µs/event single; relay lag p99 < 100 ms. The headline rows go
# to BENCH_SUMMARY (make bench's table). Exit 1 when a 201 is missing from Sluice's store or the
# relay skipped or doubled an entry, or (BENCH_STRICT=1) when a target is missed or could not
# be checked.
#
# Servers: SLUICE_DATABASE_URL / SLUICE_REDIS_URL when set, else the private ones of
# scripts/services.sh (bench/lib.sh); PostgreSQL and Redis must run on this machine for their
# CPU to be read (else those columns say "?"). Everything happens in fresh databases
# bench_publish_<pid> and bench_peer_<pid>, dropped at the end, and Redis keys under the prefix
# benchpublish<pid>: (Node's under benchpublish<pid>:peer:), deleted at the end; node is stopped
# by its pid. Loopback only; every step is bounded by `timeout`. wrk and pgbench run 2 threads:
# they share the 2 cores. BENCH_NODE_WORKERS (default 1, the service's default) sets its
# NODE_WORKERS. With the default BENCH_SECONDS=10 the whole script takes about 1.5 minutes.
# shellcheck disable=SC2317  # functions run from traps
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

parts=${1:-all}
case "$parts" in all | pgbench | sluice | node) ;; *)
  echo "usage: $0 [all|pgbench|sluice|node]" >&2
  exit 2
  ;;
esac
want() { [[ $parts == all || $parts == "$1" ]]; }
SECS=${BENCH_SECONDS:-10}
[[ $SECS =~ ^[1-9][0-9]*$ ]] || {
  echo "bench: BENCH_SECONDS must be a positive integer" >&2
  exit 2
}
NODE_WORKERS_N=${BENCH_NODE_WORKERS:-1}
[[ $NODE_WORKERS_N =~ ^[1-9][0-9]*$ ]] || {
  echo "bench: BENCH_NODE_WORKERS must be a positive integer" >&2
  exit 2
}
NODE_WARMUP=${BENCH_NODE_WARMUP:-2}
[[ $NODE_WARMUP =~ ^[0-9]+$ ]] || {
  echo "bench: BENCH_NODE_WARMUP must be a whole number of seconds" >&2
  exit 2
}
BENCH_NAME=publish
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

PEER_DIR=$REPO/bench/peer-node
PEER_DB=bench_peer_$$
PEER_URL="" NODE_PID="" NODE_BASE=""
_peer_db_created=0

# The Node service and its database are this script's own: stopped and dropped before
# bench/lib.sh's cleanup (which keeps the exit status).
stop_node() {
  [[ -n $NODE_PID ]] || return 0
  local i
  kill -TERM "$NODE_PID" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    running "$NODE_PID" || break
    sleep 0.1
  done
  if running "$NODE_PID"; then
    say "node did not stop in 10 s; killing it"
    kill -KILL "$NODE_PID" 2>/dev/null || true
  fi
  wait "$NODE_PID" 2>/dev/null || true
  NODE_PID=""
}
_publish_cleanup() {
  local rc=$?
  stop_node || true
  if ((_peer_db_created)); then
    psql_admin -c "DROP DATABASE IF EXISTS $PEER_DB WITH (FORCE)" >/dev/null 2>&1 ||
      psql_admin -c "DROP DATABASE IF EXISTS $PEER_DB" >/dev/null 2>&1 ||
      say "could not drop database $PEER_DB"
  fi
  set +e # errexit would end the trap at the next line
  (exit "$rc") # _bench_cleanup exits with $?
  _bench_cleanup
}
trap _publish_cleanup EXIT

# ---------------------------------------------------------------------------------------------
# Tools and servers
# ---------------------------------------------------------------------------------------------

if want sluice && [[ ! -x $BIN ]]; then
  die "$BIN not found; build it first (make), or run: $0 pgbench"
fi
if [[ $parts == pgbench ]]; then bench_servers pg; else bench_servers all; fi
PGBENCH=$(find_pg_tool pgbench)
if [[ $parts != pgbench ]]; then
  command -v wrk >/dev/null || die "wrk not found (run scripts/install-deps.sh)"
  command -v redis-cli >/dev/null || die "redis-cli not found (run scripts/install-deps.sh)"
fi
if want sluice; then
  pkg-config --exists hiredis || die "libhiredis-dev not found (run scripts/install-deps.sh)"
fi
node_ok=1
if want node; then
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    [[ $parts == node ]] && die "node/npm not found (Node 20+)"
    say "node/npm not found: the Node baseline is skipped"
    node_ok=0
  fi
else
  node_ok=0
fi

# --- CPU from /proc ---------------------------------------------------------------------------

CLK_TCK=$(getconf CLK_TCK)

# proc_ticks PID: utime+stime+cutime+cstime of PID in clock ticks; fails when PID is gone.
proc_ticks() {
  local st
  local -a f
  { read -r st <"/proc/$1/stat"; } 2>/dev/null || return 1
  st=${st##*) } # comm may hold spaces; fields from state (3rd) on
  read -r -a f <<<"$st"
  echo $((f[11] + f[12] + f[13] + f[14]))
}

# tree_ticks PID: PID's proc_ticks plus each live child's (children that exited are in PID's
# cutime/cstime once reaped; zombies are still listed); "" when PID is gone or unset.
tree_ticks() {
  local total c t
  [[ -n $1 ]] || return 0
  total=$(proc_ticks "$1") || return 0
  for c in $(pgrep -P "$1" || true); do
    if t=$(proc_ticks "$c"); then total=$((total + t)); fi
  done
  echo "$total"
}

bench_find_postmaster
REDIS_PID=""
if [[ $parts != pgbench ]]; then bench_find_redis; fi

# other_clients: "COUNT DATABASES" of the client connections to the cluster besides this
# benchmark's (their work would be counted in PostgreSQL's CPU).
other_clients() {
  psql_admin -A -t -F ' ' -c "SELECT count(*), coalesce(string_agg(DISTINCT datname, ','), '-')
    FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
    AND datname IS DISTINCT FROM '$DB' AND datname IS DISTINCT FROM '$PEER_DB'" 2>/dev/null ||
    echo "? ?"
}
others_max=0 others_dbs=""
note_others() {
  local n dbs
  read -r n dbs < <(other_clients)
  if [[ $n =~ ^[0-9]+$ ]] && ((n > others_max)); then others_max=$n others_dbs=$dbs; fi
}

declare -A R=() # R[<run>.<what>]: eps, p50_ms, p99_ms, events, srv, pg, redis, gen (µs/event)
CPU0=()
cpu_begin() { # cpu_begin SERVER_PID|"" : the marks before the load
  note_others
  CPU0=("$(tree_ticks "$1")" "$(tree_ticks "$PG_PID")" "$(tree_ticks "$REDIS_PID")")
}
# us_per_event TICKS0 TICKS1 EVENTS -> µs of CPU per event, or "?"
us_per_event() {
  if [[ -z $1 || -z $2 || ! $3 =~ ^[0-9]+$ ]] || (($3 == 0)); then
    echo "?"
    return
  fi
  awk -v a="$1" -v b="$2" -v n="$3" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", (b - a) * 1e6 / hz / n }'
}
cpu_end() { # cpu_end RUN SERVER_PID|"" EVENTS GEN_TICKS : R[RUN.srv|pg|redis|gen]
  local s1 p1 r1
  s1=$(tree_ticks "$2") p1=$(tree_ticks "$PG_PID") r1=$(tree_ticks "$REDIS_PID")
  if [[ -n $2 ]]; then R[$1.srv]=$(us_per_event "${CPU0[0]}" "$s1" "$3"); else R[$1.srv]="-"; fi
  R[$1.pg]=$(us_per_event "${CPU0[1]}" "$p1" "$3")
  if [[ $1 == pg* ]]; then
    R[$1.redis]="-"
  else
    R[$1.redis]=$(us_per_event "${CPU0[2]}" "$r1" "$3")
  fi
  R[$1.gen]=$(us_per_event 0 "$4" "$3")
  R[$1.events]=$3
  note_others
}

# CPU_WRAP: `bash -c "$CPU_WRAP" _ STATFILE CMD...` runs CMD, then writes the bash's own /proc
# stat line to STATFILE (its cutime+cstime = CMD's CPU, CMD having exited and been reaped);
# gen_ticks STATFILE reads them.
# shellcheck disable=SC2016  # expanded by that bash
CPU_WRAP='f=$1; shift; "$@"; rc=$?; read -r s </proc/$$/stat; printf "%s\n" "$s" >"$f"; exit $rc'
gen_ticks() {
  local st
  local -a f
  st=$(cat "$1" 2>/dev/null) || return 0
  st=${st##*) }
  read -r -a f <<<"$st"
  echo $((f[13] + f[14]))
}

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
  # The partition `sluice migrate` would create (server/partitions.c, the default width).
  psql_bench -c "CREATE TABLE events_p1 (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)" \
    -c "ALTER TABLE events ATTACH PARTITION events_p1 FOR VALUES FROM (1) TO (10000001)" >/dev/null
fi
psql_bench -c "SELECT 1 FROM events LIMIT 0" >/dev/null || die "no events table after migrating"

# The event data every side stores: file.uploaded as both catalogs define it (schemas/ and
# bench/peer-node/src/catalog.js), ~380 bytes of JSON; with the envelope of bench/publish.lua
# (id, correlation_id, user_id, metadata) ~570 bytes. @ID@ varies per row in pgbench so
# PostgreSQL parses every row's jsonb, as it does for the servers' rows.
DATA_TEMPLATE='{"file_id":"f_@ID@","user_id":"user_01HZX3K7Q9M2V8R4T6Y1B5N0CW","contextual_core_id":"core_01HZX3K7QA7F2D9G4J8L1P6S3E","filename":"uploads/2024/q3/quarterly-business-review-2024-q3-final-version-with-appendix-and-speaker-notes-for-the-board-meeting-in-october-approved-by-finance-and-legal-v12.pdf","file_size":48213377,"mime_type":"application/pdf","is_browser_viewable":true}'
USER_ID=user_01HZX3K7Q9M2V8R4T6Y1B5N0CW

# envelope ID REQUEST_ID: one event as bench/publish.lua sends it (for the probes).
envelope() {
  printf '{"id":"%s","type":"file.uploaded","correlation_id":"corr-%s","user_id":"%s",' "$1" "$2" "$USER_ID"
  printf '"metadata":{"client":"bench/publish.lua","region":"eu-west-1","trace_id":"%s"},' "$2"
  printf '"data":%s}' "${DATA_TEMPLATE/@ID@/$1}"
}

# ---------------------------------------------------------------------------------------------
# a. pgbench
# ---------------------------------------------------------------------------------------------

# One row as the server writes it: a client id, correlation_id and metadata.trace_id = the
# transaction's request id ('pgb' || txid: one per single event, one per 100-row batch, as
# wrk's), user_id, tenant, stream, type, schema_version, jsonb data, now(), a 64-hex content
# hash. Positions come from a sequence (the server takes an advisory lock and max(position)
# instead: slower). Each statement inserts into `events` and, from its RETURNING, into
# event_ids, as the appender's does. pgbench reads ":name" as a variable even inside a literal
# ("is_browser_viewable":true), so its copy of the JSON has a space after each colon; the
# stored jsonb is the same.
PGB_DATA=${DATA_TEMPLATE//\":/\": }
row_select() { # row_select POSITION_EXPR
  cat <<EOF
SELECT p, 'pgb-' || p, 'default', 'contextual.events', NULL, NULL, 'file.uploaded', 1,
       'corr-' || r, NULL, '$USER_ID', NULL, replace('$PGB_DATA', '@ID@', p::text)::jsonb,
       ('{"client": "bench/run.sh pgbench", "region": "eu-west-1", "trace_id": "' || r || '"}')::jsonb,
       now(), lpad(to_hex(p), 64, '0')
  FROM (SELECT p, 'pgb' || txid_current() AS r FROM ($1) s0) s
EOF
}
INSERT_HEAD="WITH e AS (INSERT INTO events (position, id, tenant_id, stream, key, version, type, schema_version, correlation_id, causation_id, user_id, source, data, metadata, time, content_hash)"
INSERT_TAIL="RETURNING tenant_id, id, position, stream, key, version), i AS (INSERT INTO event_ids (tenant_id, id, position) SELECT tenant_id, id, position FROM e) INSERT INTO key_heads (tenant_id, stream, key, version) SELECT tenant_id, stream, key, max(version) FROM e WHERE key IS NOT NULL GROUP BY tenant_id, stream, key ON CONFLICT (tenant_id, stream, key) DO UPDATE SET version = GREATEST(key_heads.version, EXCLUDED.version);"
# pgbench scripts end a command at the newline: one line each.
{
  echo -n "$INSERT_HEAD "
  row_select "SELECT nextval('bench_pos') AS p" | tr '\n' ' '
  echo "$INSERT_TAIL"
} >"$WORK/single.sql"
{
  echo -n "$INSERT_HEAD "
  row_select "SELECT nextval('bench_pos') AS p FROM generate_series(1, 100)" | tr '\n' ' '
  echo "$INSERT_TAIL"
} >"$WORK/batch.sql"

reset_events() { # empty the log and its ids between runs; a checkpoint so the next run starts even
  psql_bench -c "TRUNCATE events, event_ids, key_heads" -c "CHECKPOINT" >/dev/null 2>&1 ||
    psql_bench -c "TRUNCATE events, event_ids, key_heads" >/dev/null
}
checkpoint() { psql_admin -c "CHECKPOINT" >/dev/null 2>&1 || true; }

# percentiles FILE: "p50 p99" in ms of the numbers (µs) in FILE, one a line.
percentiles() {
  sort -n "$1" | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "? ?"; exit }
    i50 = int(NR * 0.50 + 0.999999); i99 = int(NR * 0.99 + 0.999999)
    if (i50 < 1) i50 = 1; if (i99 < 1) i99 = 1
    printf "%.1f %.1f\n", v[i50] / 1000, v[i99] / 1000 }'
}

run_pgbench() { # run_pgbench RUN SCRIPT CLIENTS ROWS -> R[RUN.*]
  local run=$1 out=$WORK/pgbench-$1.out tps n failed gt lat
  rm -f "$WORK/pgblog-$run".*
  cpu_begin ""
  if ! timeout $((SECS + 120)) bash -c "$CPU_WRAP" _ "$WORK/gen-$run.stat" \
    "$PGBENCH" -n -M prepared -c "$3" -j 2 -T "$SECS" -l --log-prefix="$WORK/pgblog-$run" \
    -f "$2" "$BENCH_URL" >"$out" 2>&1; then
    cat "$out" >&2
    die "pgbench failed"
  fi
  gt=$(gen_ticks "$WORK/gen-$run.stat")
  tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$out")
  n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
  failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
  [[ -n $tps && -n $n ]] || {
    cat "$out" >&2
    die "could not read pgbench's tps"
  }
  [[ ${failed:-0} == 0 ]] || say "pgbench: $failed failed transactions"
  cpu_end "$run" "" $((n * $4)) "$gt"
  R[$run.eps]=$(awk -v t="$tps" -v r="$4" 'BEGIN { printf "%.0f", t * r }')
  # per-transaction log: client tx_no latency_us script epoch us
  cat "$WORK/pgblog-$run".* 2>/dev/null | awk '{ print $3 }' >"$WORK/pgblat-$run"
  read -r "R[$run.p50_ms]" "R[$run.p99_ms]" < <(percentiles "$WORK/pgblat-$run")
  lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$out")
  R[$run.note]="avg ${lat:-?} ms per tx"
  rm -f "$WORK/pgblog-$run".* "$WORK/pgblat-$run"
}

if want pgbench; then
  psql_bench -c "CREATE SEQUENCE bench_pos" >/dev/null
  checkpoint
  say "pgbench: 1 row per transaction, 64 clients, ${SECS}s"
  run_pgbench pg1 "$WORK/single.sql" 64 1
  reset_events
  say "pgbench: 100 rows per transaction, 8 clients, ${SECS}s"
  run_pgbench pg100 "$WORK/batch.sql" 8 100
  reset_events
  psql_bench -c "DROP SEQUENCE bench_pos" >/dev/null
fi

# ---------------------------------------------------------------------------------------------
# b. Sluice under wrk; c. the relay lag, read from Redis meanwhile; d. Node under wrk
# ---------------------------------------------------------------------------------------------

W_created=0 W_other2xx=0 W_non2xx=0 W_sock_errors=0 W_timeouts=0 W_p50_us=0 W_p99_us=0 W_duration_us=1 W_body_bytes=0
# run_wrk RUN URL CONNECTIONS BATCH SERVER_PID [SECONDS] -> W_* from the BENCH line, R[RUN.*]
run_wrk() {
  local run=$1 out=$WORK/wrk-$1.out line kv secs=${6:-$SECS}
  cpu_begin "$5"
  if ! BENCH_TOKEN=$TOKEN BENCH_BATCH=$4 BENCH_RUN="${run}x$(date +%s)x$$" \
    BENCH_DATA=${DATA_TEMPLATE/@ID@/wrk} \
    timeout $((secs + 60)) bash -c "$CPU_WRAP" _ "$WORK/gen-$run.stat" \
    wrk -t 2 -c "$3" -d "${secs}s" --timeout 10s \
    -s "$REPO/bench/publish.lua" "$2/v1/events" >"$out" 2>&1; then
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
  cpu_end "$run" "$5" $((W_created * $4)) "$(gen_ticks "$WORK/gen-$run.stat")"
  R[$run.eps]=$(awk -v n="$W_created" -v b="$4" -v d="$W_duration_us" 'BEGIN { printf "%.0f", n * b / (d / 1e6) }')
  R[$run.p50_ms]=$(awk -v u="$W_p50_us" 'BEGIN { printf "%.1f", u / 1000 }')
  R[$run.p99_ms]=$(awk -v u="$W_p99_us" 'BEGIN { printf "%.1f", u / 1000 }')
  R[$run.created]=$W_created
  R[$run.note]="other 2xx $W_other2xx, non-2xx $W_non2xx, socket errors $((W_sock_errors + W_timeouts)), body $W_body_bytes B"
  if ((W_created == 0)); then
    sed -n '1,20p' "$out" >&2
    die "$run: no 201 at all (non-2xx $W_non2xx)"
  fi
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

# probe URL AUTH ID -> the 201's body in $WORK/probe.json, or die: a 4xx (say, a schema or
# envelope change) fails loudly instead of benchmarking 4xx answers.
probe() {
  local code
  code=$(curl -sS -m 10 -o "$WORK/probe.json" -w '%{http_code}' -X POST "$1/v1/events" \
    -H "Authorization: Bearer $2" -H 'Content-Type: application/json' \
    -d "$(envelope "$3" "$3")") || code=000
  if [[ $code != 201 ]]; then
    cat "$WORK/probe.json" >&2 2>/dev/null || true
    echo >&2
    die "probe publish to $1 answered $code, not 201"
  fi
}

rss_kb="" stored="" acked=0 durable="" relay_ok="" probe_pos=0
if want sluice; then
  say "building the relay-lag consumer"
  # shellcheck disable=SC2046  # pkg-config prints several words
  cc -O2 -std=c11 -Wall -Wextra -o "$WORK/relay-lag" bench/relay_lag.c \
    $(pkg-config --cflags --libs hiredis) || die "could not build bench/relay_lag.c"

  bench_start_sluice SLUICE_REDIS_MAXLEN=100000 SLUICE_ACCESS_LOG=off
  psql_bench -c "TRUNCATE events, event_ids, key_heads" >/dev/null

  probe "$BASE" "$TOKEN" "probe-sluice-$$"
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

  checkpoint
  say "wrk -> sluice: single events, 64 connections, ${SECS}s"
  run_wrk s1 "$BASE" 64 1 "$SLUICE_PID"
  lag_phase 1

  checkpoint
  say "wrk -> sluice: 100-event batches, 8 connections, ${SECS}s"
  run_wrk s100 "$BASE" 8 100 "$SLUICE_PID"
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
  acked=$((1 + ${R[s1.created]} + 100 * ${R[s100.created]}))
  stored=$(psql_bench -A -t -c "SELECT count(*) FROM events")
  if ((stored >= acked)); then durable=PASS; else durable=FAIL; fi
  # The Node runs start from an idle cluster: no autovacuum of these rows meanwhile.
  psql_bench -c "TRUNCATE events, event_ids, key_heads" >/dev/null
fi

node_stored="" node_acked=""
if ((node_ok)); then
  say "npm ci --prefix bench/peer-node"
  if ! timeout 300 npm ci --prefix "$PEER_DIR" --no-audit --no-fund --loglevel=error \
    >"$WORK/npm.log" 2>&1; then
    cat "$WORK/npm.log" >&2
    die "npm ci in bench/peer-node failed"
  fi

  PEER_URL=$(url_with_db "$ADMIN_URL" "$PEER_DB")
  say "database $PEER_DB for the Node service"
  psql_admin -c "CREATE DATABASE $PEER_DB" >/dev/null
  _peer_db_created=1

  # Two free loopback ports, held open together so they differ.
  read -r NODE_PORT NODE_WS_PORT < <(timeout 10 node -e '
    const net = require("net"); const a = net.createServer(), b = net.createServer();
    a.listen(0, "127.0.0.1", () => b.listen(0, "127.0.0.1", () => {
      console.log(a.address().port, b.address().port); a.close(); b.close(); }));') ||
    die "could not pick free ports for node"
  node_redis=$REDIS_URL
  if [[ $node_redis == unix://* ]]; then node_redis=${node_redis#unix://}; fi # ioredis: a path
  say "starting node bench/peer-node/src/server.js (database $PEER_DB, NODE_WORKERS=$NODE_WORKERS_N)"
  env HOST=127.0.0.1 PORT="$NODE_PORT" WS_PORT="$NODE_WS_PORT" DATABASE_URL="$PEER_URL" \
    REDIS_URL="$node_redis" REDIS_PREFIX="${PREFIX}peer:" REDIS_MAXLEN=100000 LOG_LEVEL=warn \
    NODE_WORKERS="$NODE_WORKERS_N" NODE_ENV=production \
    node "$PEER_DIR/src/server.js" >"$WORK/node.out" 2>"$WORK/node.log" &
  NODE_PID=$!
  NODE_BASE=http://127.0.0.1:$NODE_PORT
  for ((i = 0; i < 600; i++)); do
    if grep -q '^sluice-peer:' "$WORK/node.out" 2>/dev/null &&
      curl -sf -m 2 -o /dev/null "$NODE_BASE/health"; then
      break
    fi
    running "$NODE_PID" || break
    sleep 0.1
  done
  if ! grep -q '^sluice-peer:' "$WORK/node.out" 2>/dev/null || ! running "$NODE_PID"; then
    tail -n 30 "$WORK/node.out" "$WORK/node.log" >&2
    die "node did not start listening in 60 s"
  fi
  say "node pid $NODE_PID on 127.0.0.1:$NODE_PORT"
  probe "$NODE_BASE" "$TOKEN" "probe-node-$$"
  # V8 compiles the hot paths during the first seconds: a short unmeasured warm-up of both
  # shapes, so the measured runs see the service at its steady state (Sluice needs none).
  if ((NODE_WARMUP > 0)); then
    say "wrk -> node: warm-up, ${NODE_WARMUP}s single events + ${NODE_WARMUP}s batches (not measured)"
    run_wrk nw1 "$NODE_BASE" 64 1 "$NODE_PID" "$NODE_WARMUP"
    run_wrk nw100 "$NODE_BASE" 8 100 "$NODE_PID" "$NODE_WARMUP"
  fi
  timeout 60 "$PSQL" -X -q -d "$PEER_URL" -c "TRUNCATE events" >/dev/null

  checkpoint
  say "wrk -> node: single events, 64 connections, ${SECS}s"
  run_wrk n1 "$NODE_BASE" 64 1 "$NODE_PID"
  checkpoint
  say "wrk -> node: 100-event batches, 8 connections, ${SECS}s"
  run_wrk n100 "$NODE_BASE" 8 100 "$NODE_PID"
  stop_node
  node_acked=$((${R[n1.created]} + 100 * ${R[n100.created]}))
  node_stored=$(timeout 60 "$PSQL" -X -q -A -t -d "$PEER_URL" -c "SELECT count(*) FROM events")
fi

# ---------------------------------------------------------------------------------------------
# The tables
# ---------------------------------------------------------------------------------------------

fmt() { awk -v x="$1" -v f="$2" 'BEGIN { printf f, x }'; }
# ratio A B -> A/B with 2 decimals, or "" when either is missing
ratio() {
  [[ -n $1 && -n $2 && $1 != "?" && $2 != "?" ]] || return 0
  awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b }'
}
missed=0
verdict() { # verdict VAR VALUE OP TARGET: VAR=PASS|MISS|-, missed=1 unless PASS
  local _v
  if [[ -z $2 || $2 == "?" ]]; then
    _v="-"
    if [[ ${BENCH_STRICT:-0} == 1 ]]; then missed=1; fi
  else
    _v=$(bench_check "$2" "$3" "$4")
    [[ $_v == PASS ]] || missed=1
  fi
  printf -v "$1" '%s' "$_v"
}
total_cpu() { # total_cpu RUN: the sum of the run's µs/event columns ("?" when one is unknown)
  local k sum=0 x
  for k in srv pg redis gen; do
    x=${R[$1.$k]:-?}
    [[ $x == "-" ]] && continue
    [[ $x == "?" ]] && echo "?" && return
    sum=$(awk -v a="$sum" -v b="$x" 'BEGIN { printf "%.1f", a + b }')
  done
  echo "$sum"
}
runrow() { printf '  %-34s %10s %8s %8s %8s %8s %8s %8s %8s  %s\n' "$@"; }
trow() { printf '  %-58s %20s   %-14s %s\n' "$@"; }

echo
echo "Sluice durable-publish benchmark — ${SECS}s per run, loopback, fsync + synchronous_commit on"
echo "  PostgreSQL $("$PSQL" -X -A -t -d "$ADMIN_URL" -c 'SHOW server_version' 2>/dev/null || echo '?')" \
  "(postmaster ${PG_PID:-?}), Redis pid ${REDIS_PID:-?}, $(nproc) cores;" \
  "wrk/pgbench share them with the servers"
echo "  envelope: client id (unique per event), correlation_id, user_id, metadata{client,region,trace_id}, data"
echo
printf '  %-34s %28s %s\n' "" "" "---------- CPU µs per event ----------"
runrow "run" "events/s" "p50 ms" "p99 ms" "server" "postgres" "redis" "loadgen" "total" ""
declare -A LABEL=(
  [pg1]="pgbench 1 row/tx, 64 clients"
  [pg100]="pgbench 100 rows/tx, 8 clients"
  [s1]="Sluice single, 64 connections"
  [s100]="Sluice 100-event batch, 8 conns"
  [n1]="Node single, 64 connections"
  [n100]="Node 100-event batch, 8 conns"
)
for r in pg1 pg100 s1 s100 n1 n100; do
  [[ -n ${R[$r.eps]:-} ]] || continue
  runrow "${LABEL[$r]}" "${R[$r.eps]}" "${R[$r.p50_ms]}" "${R[$r.p99_ms]}" "${R[$r.srv]}" \
    "${R[$r.pg]}" "${R[$r.redis]}" "${R[$r.gen]}" "$(total_cpu "$r")" "(${R[$r.note]})"
done
echo "  server = sluice or node; postgres = every process of the cluster (postmaster + children,"
echo "  exited ones included); loadgen = wrk or pgbench; per event stored (201s x batch size)."
if ((others_max > 0)); then
  echo "  NOTE: up to $others_max other client connection(s) to the cluster (databases $others_dbs)"
  echo "  at the runs' start or end: their work, if any, is in the postgres column too."
fi

echo
trow "target (all from this run)" "measured" "target" "verdict"
s1=${R[s1.eps]:-} s100=${R[s100.eps]:-} pg1=${R[pg1.eps]:-} pg100=${R[pg100.eps]:-}
n1=${R[n1.eps]:-} n100=${R[n100.eps]:-}
if want sluice; then
  # single events
  r=$(ratio "$s1" "$pg1")
  verdict v "$r" ">=" 1.5
  trow "single, 64 conns: Sluice / pgbench 1 row/tx (64 clients)" "${r:--}${r:+x}" ">= 1.5x" "$v"
  base="-"
  [[ -n $pg1 ]] && base="pgbench 1 row/tx, 64 clients = $pg1 ev/s (${r}x)"
  bench_summary "single events, 64 connections, vs pgbench" "$s1 ev/s" "$base" ">= 1.5x" "$v"

  r=$(ratio "$s1" "$n1")
  verdict v "$r" ">=" 3
  trow "single, 64 conns: Sluice / Node" "${r:--}${r:+x}" ">= 3x" "$v"
  base="-"
  [[ -n $n1 ]] && base="Node (bench/peer-node) = $n1 ev/s (${r}x)"
  bench_summary "single events, 64 connections, vs Node" "$s1 ev/s" "$base" ">= 3x" "$v"

  verdict v "${R[s1.p99_ms]}" "<" 25
  trow "single, 64 conns: Sluice p99 latency (201)" "${R[s1.p99_ms]} ms" "< 25 ms" "$v (p50 ${R[s1.p50_ms]} ms)"
  base=""
  if [[ -n $n1 ]]; then base="Node p99 = ${R[n1.p99_ms]} ms"; fi
  if [[ -n $pg1 ]]; then base+="${base:+; }pgbench 1 row/tx p99 = ${R[pg1.p99_ms]} ms"; fi
  bench_summary "single-event p99 latency (201)" "${R[s1.p99_ms]} ms (p50 ${R[s1.p50_ms]})" "${base:--}" "< 25 ms" "$v"

  # batches
  r=$(ratio "$s100" "$n100")
  verdict v "$r" ">=" 1.5
  trow "100-event batches, 8 conns: Sluice / Node" "${r:--}${r:+x}" ">= 1.5x" "$v"
  base="-"
  [[ -n $n100 ]] && base="Node (bench/peer-node) = $n100 ev/s (${r}x)"
  bench_summary "100-event batches, 8 connections, vs Node" "$s100 ev/s" "$base" ">= 1.5x" "$v"
  if [[ -n $pg100 ]]; then
    r=$(ratio "$s100" "$pg100")
    trow "100-event batches: Sluice / pgbench 100 rows/tx (8 clients)" "${r}x" "-" "(no target)"
    bench_summary "100-event batches, 8 connections, vs pgbench" "$s100 ev/s" \
      "pgbench 100 rows/tx, 8 clients = $pg100 rows/s (${r}x)" "-" "-"
  fi

  # CPU
  r=$(ratio "${R[s100.pg]}" "${R[n100.pg]:-}")
  verdict v "$r" "<=" 1.3
  trow "batches: PostgreSQL CPU/event, Sluice run / Node run" "${r:--}${r:+x}" "<= 1.3x" \
    "$v (${R[s100.pg]} vs ${R[n100.pg]:--} µs)"
  base="-"
  [[ -n $r ]] && base="Node batch run = ${R[n100.pg]} µs (${r}x)"
  bench_summary "PostgreSQL CPU per event, 100-event batches" "${R[s100.pg]} µs" "$base" "<= 1.3x" "$v"

  verdict v "${R[s100.srv]}" "<=" 15
  trow "batches: Sluice's own CPU per event" "${R[s100.srv]} µs" "<= 15 µs" "$v"
  base="-"
  [[ -n ${R[n100.srv]:-} ]] && base="node process = ${R[n100.srv]} µs"
  bench_summary "Sluice CPU per event, 100-event batches" "${R[s100.srv]} µs" "$base" "<= 15 µs" "$v"

  verdict v "${R[s1.srv]}" "<=" 40
  trow "single events: Sluice's own CPU per event" "${R[s1.srv]} µs" "<= 40 µs" "$v"
  base="-"
  [[ -n ${R[n1.srv]:-} ]] && base="node process = ${R[n1.srv]} µs"
  bench_summary "Sluice CPU per event, single events" "${R[s1.srv]} µs" "$base" "<= 40 µs" "$v"

  # relay
  for k in 1 2; do
    if ((k == 1)); then what="single-event load"; else what="100-event batch load"; fi
    verdict v "${LAG[$k.p99_ms]}" "<" 100
    trow "Redis relay lag p99, $what" "${LAG[$k.p99_ms]} ms" "< 100 ms" \
      "$v (p50 ${LAG[$k.p50_ms]} ms, max ${LAG[$k.max_ms]} ms, ${LAG[$k.n]} entries)"
    bench_summary "Redis relay lag p99, $what" \
      "${LAG[$k.p99_ms]} ms (p50 ${LAG[$k.p50_ms]}, max ${LAG[$k.max_ms]})" "-" "< 100 ms" "$v"
  done
  trow "relay: positions $((probe_pos + 1))-${LAG[2.head]} in Redis" \
    "$((LAG[1.n] + LAG[2.n])) entries" "each once" \
    "$relay_ok (skipped ${LAG[1.missing]}+${LAG[2.missing]}, doubled ${LAG[1.extra]}+${LAG[2.extra]})"
  trow "Sluice peak RSS (VmHWM)" "$(awk -v k="${rss_kb:-0}" 'BEGIN { printf "%.1f MiB", k / 1024 }')" "-" ""
  trow "Sluice: events stored / acknowledged (201)" "$stored / $acked" "stored >= 201s" "$durable"
  bench_summary "events stored / acknowledged (201)" "$stored / $acked" "-" "stored >= 201s" "$durable"
fi
if [[ -n $node_acked ]]; then
  if ((node_stored >= node_acked)); then v=PASS; else v=FAIL; fi
  trow "Node: events stored / acknowledged (201)" "$node_stored / $node_acked" "(info)" "$v"
fi
if ! want sluice; then
  echo "  (no Sluice runs: no targets to check)"
fi
if want sluice; then
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
  say "a target was missed or could not be checked (BENCH_STRICT=1)"
  exit 1
fi
exit 0

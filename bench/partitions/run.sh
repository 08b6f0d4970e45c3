#!/usr/bin/env bash
# bench/partitions/run.sh — the append-latency curve of the partitioned event log (issue 17).
#
#   bench/partitions/run.sh                 the full curve: 0, 2,000,000 and 10,000,000 stored
#                                           events, partitions of 1,000,000 (10 to 15 minutes
#                                           on an idle 2-core machine; ~14 GB on disk at the end)
#   BENCH_QUICK=1 bench/partitions/run.sh   the same shape at a tenth of the scale: 0, 200,000
#                                           and 1,000,000 events, partitions of 100,000, 10 s runs
#                                           (about 2 minutes)
# Settings (environment): BENCH_PARTITION_SIZES="0 2000000 10000000" (ascending, history sizes
# to measure at; the first is the baseline of the ratios), BENCH_PARTITION_EVENTS=1000000
# (SLUICE_PARTITION_EVENTS of the partitioned store), BENCH_PARTITION_REF_SIZES="0 2000000"
# (sizes at which the one-partition reference is measured too; "" skips it), BENCH_RATE=2000
# (events/s), BENCH_CONNECTIONS=32, BENCH_SECONDS=20 (measured per size), BENCH_WARMUP=5
# (sent first, not measured), BENCH_PARTITION_LOADERS=2 (parallel psql sessions loading),
# BENCH_PARTITION_TRIES=3 (runs at one size while the server does not keep up, see step 3).
#
# Why: partitioning by position exists so that an append's cost stops growing with history.
# The target: at 10,000,000 stored events, the p99 latency of a single-event publish (the
# 201, sent after COMMIT) is within 1.2x of what it is on an empty log, at the same load.
# What this does, in one database bench_part_<pid> of the shared cluster:
#   1. `sluice migrate` with SLUICE_PARTITION_EVENTS=BENCH_PARTITION_EVENTS.
#   2. For each size S (ascending), the history is brought up to S stored events (only the
#      difference is loaded), generated inside PostgreSQL with INSERT … SELECT
#      generate_series in chunks of 100,000 (no HTTP, no client-side bytes), on
#      BENCH_PARTITION_LOADERS sessions at once. First the partitions it needs are created as
#      Sluice creates them (server/partitions.c): named events_p<lo>, `CREATE TABLE … (LIKE
#      events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)` then `ALTER TABLE events ATTACH
#      PARTITION … FOR VALUES FROM (lo) TO (lo + width)`, until the last ends more than a
#      partition past S; then each chunk inserts into `events` and event_ids in one statement,
#      as the appender does (WITH e AS (INSERT INTO events … RETURNING tenant_id, id,
#      position) INSERT INTO event_ids …, and each key's version into key_heads), so every
#      index grows row by row as in production.
#      The rows are a mixed workload: 4 tenants (half of the events in `default`), 6 streams,
#      12 types, keyed streams `orders` and `users` (keys 'k<n>' with versions growing with
#      position, ~21 versions per key at 10M), half the ids client UUIDs (random places in
#      event_ids) and half ULID-shaped, correlation and causation ids, a user_id on 80%, a
#      ~450-byte `data` object (4,096 variants) and a small `metadata`. Then VACUUM (ANALYZE)
#      (so autovacuum has no backlog to start on during the measurement, as on a long-running
#      store) and CHECKPOINT.
#   3. The relay's checkpoint is set to the head (history is not re-sent to Redis), sluice
#      starts (SLUICE_ALLOW_UNKNOWN_TYPES=1 for order.updated), and bench/partitions/driver.c
#      publishes BENCH_RATE single events/s, open-loop, on BENCH_CONNECTIONS connections: a
#      quarter with a client id, a quarter keyed into the history's `orders` keys, half plain
#      (see there). Measured over BENCH_SECONDS after BENCH_WARMUP: 201s/s, p50/p99/p999/max
#      latency, CPU µs per event of sluice, PostgreSQL (its backends for this database, and
#      the whole cluster), Redis and the driver, the machine's busy cores and load. Then sluice
#      stops, and the head must have moved by exactly the number of 201s. When fewer than 95%
#      of the rate was answered (the server fell behind: on a shared machine, another job's
#      burst), the size is measured again after 20 s, up to BENCH_PARTITION_TRIES runs; a
#      ratio involving a run that never kept up has no verdict ("-").
#   4. The reference (BENCH_PARTITION_REF_SIZES): the same in a second database
#      bench_partref_<pid> whose sluice runs with SLUICE_PARTITION_EVENTS=10^12, so the whole
#      history lives in one partition — what the append pays when `events` is one table whose
#      indexes grow with history (event_ids stays global in both). Measured right after the
#      partitioned store at the same size, so both see the same machine; it is dropped before
#      the largest load.
# Every measured size appends into the first positions of a fresh partition when S is a
# multiple of the partition width (the defaults): the curve isolates what history costs an
# append — the global event_ids index, the key lookup and the head read over more partitions,
# the cache pressure of more data — from the fill level of the partition being written.
# Prints one table (sizes on disk included) with the ratios to the smallest size, measured in
# this run, and the verdict against the target; the headline rows go to BENCH_SUMMARY (make
# bench's table). Exit 1 when a publish was not a 201, sluice died, or the head moved by other
# than the 201s; BENCH_STRICT=1 also fails (exit 1) on a missed target.
#
# Disk: the full curve writes ~14 GB (events ~1.25 KB a row with its indexes, event_ids ~0.17
# KB) plus WAL; the free space of PostgreSQL's data directory is checked before each load
# (about 2 KB per event to load, plus 4 GB). Both databases are dropped at the end, whatever
# happened (bench/lib.sh), and Redis keys under the prefix benchpart<pid>: deleted.
# Servers: SLUICE_DATABASE_URL / SLUICE_REDIS_URL when set (a superuser: the disk check reads
# data_directory), else the private ones of scripts/services.sh (bench/lib.sh); PostgreSQL and
# Redis must run on this machine for their CPU to be read (else "?"). Loopback only; every
# step is bounded by `timeout`.
# shellcheck disable=SC2317  # functions run from traps
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"

if [[ ${BENCH_QUICK:-0} == 1 ]]; then
  d_sizes="0 200000 1000000" d_width=100000 d_ref="0 200000" d_secs=10 d_warm=3
else
  d_sizes="0 2000000 10000000" d_width=1000000 d_ref="0 2000000" d_secs=20 d_warm=5
fi
read -r -a SIZES <<<"${BENCH_PARTITION_SIZES:-$d_sizes}"
WIDTH=${BENCH_PARTITION_EVENTS:-$d_width}
read -r -a REF_SIZES <<<"${BENCH_PARTITION_REF_SIZES-$d_ref}"
RATE=${BENCH_RATE:-2000}
CONNS=${BENCH_CONNECTIONS:-32}
SECS=${BENCH_SECONDS:-$d_secs}
WARM=${BENCH_WARMUP:-$d_warm}
LOADERS=${BENCH_PARTITION_LOADERS:-2}
TRIES=${BENCH_PARTITION_TRIES:-3}
REF_WIDTH=1000000000000
CHUNK=100000
TARGET=1.2

usage() {
  echo "bench/partitions: $*" >&2
  exit 2
}
int_in() { [[ $1 =~ ^[0-9]+$ ]] && (($1 >= $2 && $1 <= $3)); }
((${#SIZES[@]} >= 2)) || usage "BENCH_PARTITION_SIZES needs at least two sizes"
prev=-1
for s in "${SIZES[@]}"; do
  int_in "$s" 0 100000000 || usage "BENCH_PARTITION_SIZES: '$s' is not a size from 0 to 100000000"
  ((s > prev)) || usage "BENCH_PARTITION_SIZES must ascend"
  prev=$s
done
for s in "${REF_SIZES[@]}"; do
  [[ " ${SIZES[*]} " == *" $s "* ]] || usage "BENCH_PARTITION_REF_SIZES: $s is not one of BENCH_PARTITION_SIZES"
done
int_in "$WIDTH" 1000 1000000000 || usage "BENCH_PARTITION_EVENTS must be from 1000 to 1000000000"
int_in "$RATE" 1 100000 || usage "BENCH_RATE must be from 1 to 100000"
int_in "$CONNS" 1 1000 || usage "BENCH_CONNECTIONS must be from 1 to 1000"
int_in "$SECS" 1 600 || usage "BENCH_SECONDS must be from 1 to 600"
int_in "$WARM" 0 600 || usage "BENCH_WARMUP must be from 0 to 600"
int_in "$LOADERS" 1 16 || usage "BENCH_PARTITION_LOADERS must be from 1 to 16"
int_in "$TRIES" 1 10 || usage "BENCH_PARTITION_TRIES must be from 1 to 10"

BENCH_NAME=partitions DB=bench_part_$$ PREFIX=benchpart$$: BENCH_PSQL_TIMEOUT=1800
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

[[ -x $BIN ]] || die "$BIN not found; build it first (make)"
command -v redis-cli >/dev/null || die "redis-cli not found (run scripts/install-deps.sh)"
bench_servers all
t_start=$(date +%s)
say "building bench/partitions/driver.c"
timeout 120 cc -O2 -std=c11 -Wall -Wextra -o "$WORK/driver" bench/partitions/driver.c ||
  die "could not build bench/partitions/driver.c"

# ---------------------------------------------------------------------------------------------
# The reference database: this script's own, dropped before bench/lib.sh's cleanup
# ---------------------------------------------------------------------------------------------

REF_DB=bench_partref_$$
REF_URL=$(url_with_db "$ADMIN_URL" "$REF_DB")
_ref_db_created=0
drop_ref() {
  ((_ref_db_created)) || return 0
  bench_stop_sluice || true
  psql_admin -c "DROP DATABASE IF EXISTS $REF_DB WITH (FORCE)" >/dev/null 2>&1 ||
    psql_admin -c "DROP DATABASE IF EXISTS $REF_DB" >/dev/null 2>&1 ||
    say "could not drop database $REF_DB"
  _ref_db_created=0
}
_partitions_cleanup() {
  local rc=$?
  drop_ref || true
  set +e
  (exit "$rc")
  _bench_cleanup
}
trap _partitions_cleanup EXIT

# ---------------------------------------------------------------------------------------------
# PostgreSQL's and Redis's pids (CPU), and the data directory (disk)
# ---------------------------------------------------------------------------------------------

bench_find_postmaster
bench_find_redis

# need_disk EVENTS: dies unless PostgreSQL's data directory has room for EVENTS more events
# (2 KB each with their indexes, event_ids and WAL headroom) plus 4 GB.
need_disk() {
  local avail_kb need_kb=$(($1 * 2 + 4 * 1024 * 1024))
  if [[ -z $PG_DIR || ! -d $PG_DIR ]]; then
    say "cannot see PostgreSQL's data directory: the free disk is not checked"
    return 0
  fi
  avail_kb=$(df -Pk "$PG_DIR" | awk 'NR == 2 { print $4 }')
  if ((avail_kb < need_kb)); then
    die "loading $1 events needs ~$((need_kb / 1048576)) GB free on $PG_DIR; $((avail_kb / 1048576)) GB are"
  fi
}

# ---------------------------------------------------------------------------------------------
# The stores: the partitioned one ($DB) and the one-partition reference ($REF_DB)
# ---------------------------------------------------------------------------------------------

declare -A S_DB=([part]=$DB [ref]=$REF_DB) S_URL=([part]=$BENCH_URL [ref]=$REF_URL)
declare -A S_WIDTH=([part]=$WIDTH [ref]=$REF_WIDTH) S_PREFIX=([part]=$PREFIX [ref]=${PREFIX}ref:)
declare -A S_LABEL=([part]="partitioned, $WIDTH a partition" [ref]="one partition (reference)")

psql_on() { # psql_on STORE ARGS...: psql on that store's database
  local url=${S_URL[$1]}
  shift
  timeout "$BENCH_PSQL_TIMEOUT" "$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$url" "$@"
}

# The `data` and `metadata` objects of the loaded events: 4,096 variants built once (building
# JSON per row cost more than storing it), picked by position.
DATA_SQL="CREATE TABLE bench_load_data AS
SELECT i, 'user_' || lpad((i * 7 % 5000)::text, 5, '0') AS u,
       jsonb_build_object(
         'user_id', 'user_' || lpad((i * 7 % 5000)::text, 5, '0'), 'request_id', 'req_' || md5(i::text),
         'object_id', 'obj_' || substr(md5(i::text), 1, 16), 'title', 'Quarterly business review, draft ' || i,
         'description', substr('Three ways small teams can cut waste this quarter: fewer meetings, smaller '
                               'batches, and one owner per decision. Each is cheap to try and easy to undo '
                               'if it does not help. ', 1, (80 + i % 120)::int),
         'amount_cents', i % 100000, 'currency', 'EUR', 'status', (ARRAY['new', 'open', 'paid', 'closed'])[i % 4 + 1],
         'tags', jsonb_build_array('alpha', 'beta', 'q' || (i % 4 + 1)), 'items', i % 7 + 1,
         'source_ip', '10.' || (i % 250) || '.' || (i / 250 % 250) || '.7') AS data,
       jsonb_build_object('client', 'bench/partitions', 'region', (ARRAY['eu-west-1', 'us-east-1'])[i % 2 + 1],
                          'trace_id', substr(md5(i::text), 17, 16)) AS metadata
  FROM generate_series(0, 4095) i;
ANALYZE bench_load_data;"

setup_store() { # setup_store STORE: create (ref only), migrate, the data variants
  if [[ $1 == ref ]]; then
    say "database $REF_DB (the one-partition reference)"
    psql_admin -c "CREATE DATABASE $REF_DB" >/dev/null
    _ref_db_created=1
  else
    bench_database
  fi
  SLUICE_DATABASE_URL=${S_URL[$1]} SLUICE_PARTITION_EVENTS=${S_WIDTH[$1]} SLUICE_LOG_LEVEL=warn \
    timeout 120 "$BIN" migrate >"$WORK/migrate.log" 2>&1 || {
    cat "$WORK/migrate.log" >&2
    die "sluice migrate failed"
  }
  psql_on "$1" -c "$DATA_SQL" >/dev/null
}

# ensure_partitions STORE TARGET: what partitions_ensure (server/partitions.c) does for a head
# of TARGET: under its advisory lock, partitions events_p<hi> created empty and attached until
# the last one ends more than a width past TARGET.
ensure_partitions() {
  psql_on "$1" >/dev/null <<SQL
DO \$\$
DECLARE
  width bigint := ${S_WIDTH[$1]};
  hi bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(7341263011);
  SELECT max(substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''?(-?[0-9]+)''?\)')::bigint) INTO hi
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass;
  WHILE hi <= $2 + width LOOP
    EXECUTE format('CREATE TABLE events_p%s (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', hi);
    EXECUTE format('ALTER TABLE events ATTACH PARTITION events_p%s FOR VALUES FROM (%s) TO (%s)', hi, hi, hi + width);
    hi := hi + width;
  END LOOP;
END
\$\$;
SQL
}

# Times: one event every 100 ms, ending before now (10M events: 11.6 days).
T0=$(($(date +%s) - 14 * 86400))

# load_sql LO HI: events at positions LO..HI and their event_ids rows, in one statement as the
# appender writes them. Per position p: tenant (p % 8: 4 of 8 in default), stream (p % 48 / 8),
# type (two per stream), key 'k<p % 480000>' in orders and users (so a key keeps its tenant
# and stream; version p / 480000 + 1), id a client UUID (even p) or ULID-shaped (odd p).
load_sql() {
  cat <<SQL
SET synchronous_commit = off;
WITH e AS (
INSERT INTO events (position, id, tenant_id, stream, key, version, type, schema_version,
                    correlation_id, causation_id, user_id, source, data, metadata, time,
                    content_hash, occurred_at)
SELECT p, id, t, s, k, CASE WHEN k IS NOT NULL THEN p / 480000 + 1 END, ty, 1,
       CASE WHEN p % 3 = 0 THEN id ELSE 'corr-' || (p / 5) END,
       CASE WHEN p % 5 = 1 THEN 'cause-' || (p / 5) END,
       CASE WHEN p % 10 < 8 THEN d.u END, 'svc-' || split_part(s, '.', 1),
       d.data, d.metadata, tm, h || reverse(h), CASE WHEN p % 3 = 0 THEN tm - interval '2 seconds' END
  FROM (SELECT p, h, t, s, tm,
               CASE WHEN p % 2 = 0
                    THEN substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-a'
                         || substr(h, 18, 3) || '-' || substr(h, 21, 12)
                    ELSE '01J' || lpad(p::text, 11, '0') || upper(substr(h, 1, 12)) END AS id,
               CASE WHEN s IN ('orders', 'users') THEN 'k' || (p % 480000) END AS k,
               (ARRAY['file.uploaded', 'file.viewed', 'order.created', 'order.updated', 'invoice.issued',
                      'invoice.paid', 'ai.content.generation.completed', 'ai.content.generation.started',
                      'user.profile.updated', 'user.signed_in', 'file.deleted', 'file.shared'])
                 [(p / 48 % 2) + 2 * (p % 48 / 8) + 1] AS ty
          FROM (SELECT p, md5(p::text) AS h,
                       (ARRAY['default', 'default', 'default', 'default', 'acme', 'acme', 'globex',
                              'initech'])[p % 8 + 1] AS t,
                       (ARRAY['contextual.events', 'orders', 'billing', 'ai.events', 'users', 'files'])
                         [p % 48 / 8 + 1] AS s,
                       to_timestamp($T0) + p * interval '100 milliseconds' AS tm
                  FROM generate_series($1::bigint, $2::bigint) p) g) r
  JOIN bench_load_data d ON d.i = r.p % 4096
RETURNING tenant_id, id, position, stream, key, version),
i AS (INSERT INTO event_ids (tenant_id, id, position) SELECT tenant_id, id, position FROM e)
INSERT INTO key_heads (tenant_id, stream, key, version)
SELECT tenant_id, stream, key, max(version) FROM e WHERE key IS NOT NULL GROUP BY tenant_id, stream, key
ON CONFLICT (tenant_id, stream, key) DO UPDATE SET version = GREATEST(key_heads.version, EXCLUDED.version);
SQL
}

head_of() { psql_on "$1" -A -t -c "SELECT coalesce(max(position), 0) FROM events"; }

declare -A LOAD_S=() # LOAD_S[store.size]: seconds the load to that size took
# load_to STORE S: the history brought up to S events (from its head), then VACUUM (ANALYZE)
# and CHECKPOINT.
load_to() {
  local store=$1 target=$2 head lo hi w t0 pids=() rc=0 p
  head=$(head_of "$store")
  ((target > head)) || return 0
  need_disk $((target - head))
  t0=$(date +%s)
  say "${S_DB[$store]}: loading positions $((head + 1))..$target ($((target - head)) events, $LOADERS sessions)"
  ensure_partitions "$store" "$target"
  for ((w = 0; w < LOADERS; w++)); do
    (
      for ((lo = head + 1 + w * CHUNK; lo <= target; lo += LOADERS * CHUNK)); do
        hi=$((lo + CHUNK - 1 < target ? lo + CHUNK - 1 : target))
        load_sql "$lo" "$hi" | psql_on "$store" >/dev/null || exit 1
      done
    ) &
    pids+=($!)
  done
  BENCH_PIDS+=("${pids[@]}")
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  ((rc == 0)) || die "loading ${S_DB[$store]} failed"
  [[ $(head_of "$store") == "$target" ]] || die "${S_DB[$store]}: the head is not $target after the load"
  say "${S_DB[$store]}: VACUUM (ANALYZE), CHECKPOINT"
  psql_on "$store" -c "VACUUM (ANALYZE) events, event_ids" >/dev/null
  psql_admin -c "CHECKPOINT" >/dev/null
  LOAD_S[$store.$target]=$(($(date +%s) - t0))
  say "${S_DB[$store]}: $((target - head)) events loaded in ${LOAD_S[$store.$target]} s"
}

# ---------------------------------------------------------------------------------------------
# A measured run
# ---------------------------------------------------------------------------------------------

declare -A R=() # R[store.size.key]: the driver's RESULT fields, plus parts, events_mb, ids_mb, pk_mb
# measure STORE SIZE: one run, again (after a pause, up to TRIES runs) while the server did not
# keep up with the rate: on a shared machine another job's burst can stall it for seconds, and
# then the percentiles are of that queue, not of the store. R[STORE.SIZE.tries] and .kept_up.
measure() {
  local try
  for ((try = 1; ; try++)); do
    measure_once "$@"
    R[$1.$2.kept_up]=$(awk -v e="${R[$1.$2.eps]}" -v r="$RATE" 'BEGIN { print (e >= 0.95 * r) ? "yes" : "no" }')
    [[ ${R[$1.$2.kept_up]} == no && $try -lt $TRIES ]] || break
    say "only ${R[$1.$2.eps]} of $RATE events/s were answered (load average $(cut -d' ' -f1 /proc/loadavg)): measuring again in 20 s"
    sleep 20
  done
  R[$1.$2.tries]=$try
}
measure_once() { # measure_once STORE SIZE
  local store=$1 size=$2 head after line kv rc errors sent
  head=$(head_of "$store")
  redis_cli SET "${S_PREFIX[$store]}relay:position" "$head" >/dev/null
  psql_admin -c "CHECKPOINT" >/dev/null
  rm -f "$WORK/sluice.log" # else the previous sluice's "listening" line may be read before the new one truncates it
  DB=${S_DB[$store]} BENCH_URL=${S_URL[$store]} PREFIX=${S_PREFIX[$store]} \
    bench_start_sluice SLUICE_PARTITION_EVENTS="${S_WIDTH[$store]}" SLUICE_ALLOW_UNKNOWN_TYPES=1 \
    SLUICE_ACCESS_LOG=off SLUICE_REDIS_MAXLEN=100000
  say "${S_DB[$store]} at $head events: $RATE events/s on $CONNS connections, ${WARM}s warm-up + ${SECS}s measured"
  set +e
  timeout -k 5 $((WARM + SECS + 90)) "$WORK/driver" --port "$HTTP_PORT" --token "$TOKEN" \
    --run "r${store}${size}x$$" --db "${S_DB[$store]}" --pid "$SLUICE_PID" --pg-pid "${PG_PID:-0}" \
    --redis-pid "${REDIS_PID:-0}" --rate "$RATE" --conns "$CONNS" --seconds "$SECS" --warmup "$WARM" \
    >"$WORK/driver.out" 2>"$WORK/driver.err"
  rc=$?
  set -e
  cat "$WORK/driver.err" >&2
  running "$SLUICE_PID" || {
    tail -n 30 "$WORK/sluice.log" >&2
    die "sluice died during the run"
  }
  errors=$(grep -c '"level":"error"' "$WORK/sluice.log" || true)
  bench_stop_sluice
  line=$(grep '^RESULT ' "$WORK/driver.out") || die "the driver printed no RESULT line (exit $rc)"
  ((rc == 0)) || die "the driver failed (exit $rc): $line"
  for kv in ${line#RESULT }; do R[$store.$size.${kv%%=*}]=${kv#*=}; done
  R[$store.$size.errors]=${errors:-0}
  after=$(head_of "$store")
  sent=${R[$store.$size.sent]}
  ((after - head == sent)) || die "${S_DB[$store]}: the head moved by $((after - head)), but $sent events got a 201"
  R[$store.$size.head]=$head
  read -r "R[$store.$size.parts]" "R[$store.$size.events_mb]" "R[$store.$size.ids_mb]" "R[$store.$size.pk_mb]" < <(
    psql_on "$store" -A -t -F ' ' -c "SELECT (SELECT count(*) FROM pg_partition_tree('events') WHERE isleaf),
      (SELECT sum(pg_total_relation_size(relid)) / 1048576 FROM pg_partition_tree('events'))::bigint,
      pg_total_relation_size('event_ids') / 1048576, pg_relation_size('events_tenant_id') / 1048576")
  say "${S_DB[$store]} at $head events: p50 ${R[$store.$size.p50_ms]} ms, p99 ${R[$store.$size.p99_ms]} ms, p999 ${R[$store.$size.p999_ms]} ms"
}

# ---------------------------------------------------------------------------------------------
# The curve
# ---------------------------------------------------------------------------------------------

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
setup_store part
if ((${#REF_SIZES[@]} > 0)); then setup_store ref; fi
last_ref=""
if ((${#REF_SIZES[@]} > 0)); then last_ref=${REF_SIZES[${#REF_SIZES[@]} - 1]}; fi
for size in "${SIZES[@]}"; do
  load_to part "$size"
  measure part "$size"
  if [[ " ${REF_SIZES[*]} " == *" $size "* ]]; then
    load_to ref "$size"
    measure ref "$size"
    if [[ $size == "$last_ref" ]]; then
      say "dropping $REF_DB (no larger reference size)"
      drop_ref
    fi
  fi
done

# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------

base=${SIZES[0]} top=${SIZES[${#SIZES[@]} - 1]}
human() { awk -v n="$1" 'BEGIN { if (n >= 1e6 && n % 1e6 == 0) printf "%dM", n / 1e6; else if (n >= 1000 && n % 1000 == 0) printf "%dk", n / 1000; else printf "%d", n }'; }
mb() { awk -v m="$1" 'BEGIN { if (m >= 1024) printf "%.1f GB", m / 1024; else printf "%d MB", m }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
row() { printf '  %-9s %6s %5s %9s %9s %11s %7s %7s %8s %7s %6s  %6s %6s %6s %6s %6s  %5s %s\n' "$@"; }

echo
echo "Sluice append-latency curve — single-event publishes at $RATE/s open-loop on $CONNS connections,"
echo "  ${WARM}s warm-up + ${SECS}s measured per size; loopback; fsync and synchronous_commit on;"
echo "  PostgreSQL $("$PSQL" -X -A -t -d "$ADMIN_URL" -c 'SHOW server_version' 2>/dev/null | cut -d' ' -f1) (shared_buffers" \
  "$("$PSQL" -X -A -t -d "$ADMIN_URL" -c 'SHOW shared_buffers' 2>/dev/null)), $(nproc) cores, load average before: $load_before"
echo "  events: 1/4 with a client id, 1/4 keyed into the history's keys, 1/2 plain; history: 4 tenants, 6 streams,"
echo "  ~450-byte data, generated in PostgreSQL"
for store in part ref; do
  [[ -n ${R[$store.$base.p99_ms]:-} ]] || continue
  echo
  if [[ $store == part ]]; then
    echo "  ${S_LABEL[$store]} (SLUICE_PARTITION_EVENTS=$WIDTH)"
  else
    echo "  ${S_LABEL[$store]}: SLUICE_PARTITION_EVENTS=10^12, the whole history in one partition, as an unpartitioned table"
  fi
  printf '  %-9s %6s %5s %9s %9s %11s %7s %7s %8s %7s %6s  %-34s  %s\n' "" "" "" "" "" "" "" "" "" "" "" \
    "----- CPU µs per event -----" ""
  row "history" "parts" "load" "events" "event_ids" "201/s" "p50 ms" "p99 ms" "p999 ms" "max ms" "p99 /" \
    "sluice" "pg:db" "pg:all" "redis" "driver" "busy" "load avg"
  row "" "" "s" "on disk" "on disk" "" "" "" "" "" "$(human "$base")" "" "" "" "" "" "cores" ""
  for size in "${SIZES[@]}"; do
    k=$store.$size
    [[ -n ${R[$k.p99_ms]:-} ]] || continue
    row "$(human "${R[$k.head]}")" "${R[$k.parts]}" "${LOAD_S[$k]:--}" "$(mb "${R[$k.events_mb]}")" \
      "$(mb "${R[$k.ids_mb]}")" "${R[$k.eps]}$([[ ${R[$k.kept_up]} == yes ]] || echo '!')$( ((R[$k.tries] == 1)) || echo " (${R[$k.tries]})")" "${R[$k.p50_ms]}" "${R[$k.p99_ms]}" "${R[$k.p999_ms]}" \
      "${R[$k.max_ms]}" "$(ratio "${R[$k.p99_ms]}" "${R[$store.$base.p99_ms]}")x" "${R[$k.sluice_us]}" \
      "${R[$k.pg_db_us]}" "${R[$k.pg_all_us]}" "${R[$k.redis_us]}" "${R[$k.driver_us]}" "${R[$k.busy_cores]}" \
      "${R[$k.load]}"
  done
done
echo
echo "  history = events stored when the run started (the runs' own events included); parts = leaf"
echo "  partitions (events_p0 and the ones created ahead included); load = seconds to load up to it;"
echo "  on disk = pg_total_relation_size, events summed over its partitions, event_ids with its primary"
echo "  key events_tenant_id (MB: $(for size in "${SIZES[@]}"; do [[ -n ${R[part.$size.pk_mb]:-} ]] && printf '%s at %s ' "${R[part.$size.pk_mb]}" "$(human "$size")"; done | sed 's/ $//'));"
echo "  201/s: '!' = fewer than 95% of $RATE/s answered (the server fell behind: its percentiles are a queue's),"
echo "  (n) = the run that counts was the n-th at that size (the earlier ones fell behind);"
echo "  latency = issue to the end of the 201 (queueing for a connection included); the driver's"
echo "  lateness against its schedule, p99/max: $(for size in "${SIZES[@]}"; do [[ -n ${R[part.$size.late_p99_ms]:-} ]] && printf '%s/%s ms at %s; ' "${R[part.$size.late_p99_ms]}" "${R[part.$size.late_max_ms]}" "$(human "$size")"; done | sed 's/; $//');"
echo "  CPU: pg:db = the PostgreSQL backends of sluice's database, pg:all = the whole cluster (shared:"
echo "  other clients count too), redis = redis-server (shared too), driver = bench/partitions/driver.c;"
echo "  busy cores = the machine's, over the window (other work on it skews latency); sluice errors logged:"
echo "  $(for store in part ref; do for size in "${SIZES[@]}"; do [[ -n ${R[$store.$size.errors]:-} ]] && printf '%s ' "${R[$store.$size.errors]}"; done; done)"

p99_base=${R[part.$base.p99_ms]} p99_top=${R[part.$top.p99_ms]}
r=$(ratio "$p99_top" "$p99_base")
verdict=$(bench_check "$r" "<=" "$TARGET")
if [[ ${R[part.$base.kept_up]} != yes || ${R[part.$top.kept_up]} != yes ]]; then
  verdict="-"
  say "no verdict: a run the ratio compares never kept up with $RATE events/s (see '!' in the table)"
fi
echo
printf '  %-62s %16s   %-10s %s\n' "target (from this run)" "measured" "target" "verdict"
printf '  %-62s %16s   %-10s %s\n' "p99 append latency at $(human "$top") events / at $(human "$base"), partitioned" \
  "${r}x" "<= ${TARGET}x" "$verdict ($p99_top vs $p99_base ms)"
bench_summary "p99 append at $(human "$top") events vs $(human "$base"), partitions of $(human "$WIDTH"), $RATE ev/s" \
  "$p99_top ms (p50 ${R[part.$top.p50_ms]}, p999 ${R[part.$top.p999_ms]})" \
  "at $(human "$base") events = $p99_base ms (${r}x)" "<= ${TARGET}x" "$verdict"
cb=${R[part.$base.pg_db_us]} ct=${R[part.$top.pg_db_us]}
printf '  %-62s %16s   %-10s %s\n' "  PostgreSQL CPU per event (sluice's backends) at $(human "$top") / at $(human "$base")" \
  "$(ratio "$ct" "$cb")x" "-" "($ct vs $cb µs; sluice ${R[part.$top.sluice_us]} vs ${R[part.$base.sluice_us]} µs)"
bench_summary "PostgreSQL CPU per event (sluice's backends) at $(human "$top") vs $(human "$base")" "$ct µs" \
  "at $(human "$base") events = $cb µs ($(ratio "$ct" "$cb")x)" "-" "-"
if ((${#REF_SIZES[@]} >= 2)); then
  rb=${REF_SIZES[0]} rt=${REF_SIZES[${#REF_SIZES[@]} - 1]}
  rr=$(ratio "${R[ref.$rt.p99_ms]}" "${R[ref.$rb.p99_ms]}")
  pr=$(ratio "${R[part.$rt.p99_ms]}" "${R[part.$rb.p99_ms]}")
  printf '  %-62s %16s   %-10s %s\n' "  reference, one partition: p99 at $(human "$rt") / at $(human "$rb")" "${rr}x" "-" \
    "(partitioned at the same sizes: ${pr}x)"
  bench_summary "p99 append at $(human "$rt") vs $(human "$rb"), one partition (reference)" \
    "${R[ref.$rt.p99_ms]} ms" "partitioned at $(human "$rt") = ${R[part.$rt.p99_ms]} ms (${pr}x of its $(human "$rb"))" "-" "-"
fi
echo
say "done in $(($(date +%s) - t_start)) s"
if [[ $verdict != PASS && ${BENCH_STRICT:-0} == 1 ]]; then
  say "the target was missed (BENCH_STRICT=1)"
  exit 1
fi
exit 0

#!/usr/bin/env bash
# bench/insert/run.sh — what writing a batch of events (`events` and event_ids) costs PostgreSQL.
#
#   bench/insert/run.sh [all|methods|indexes]
#       BENCH_INSERT_BATCHES=300        batches per measured run in part 1
#       BENCH_INSERT_INDEX_BATCHES=150  batches per schema per run in part 2 (11 schemas at once)
#       BENCH_INSERT_ROWS=100           rows per batch (one transaction)
#       BENCH_INSERT_RUNS=3             repetitions of every measurement; the table shows medians
#
# About 2.5 minutes on 2 busy cores (the sizes keep it under ~4; part 2's eleven schemas stay
# well inside a 256 MB shared_buffers, so no run pays for evicting another's dirty pages).
#
# Owns bench/insert/ (this script and insert_bench.c, the C client it compiles); nothing else
# sources them, and the script writes only under $WORK (mktemp) and into its own database.
#
# Why: the appender (server/appender.c) is Sluice's only writer, and on a small machine
# PostgreSQL's CPU is what caps publishing. Every event is two rows, as the appender writes
# it: one in `events` (partitioned by position: migration 015) and its (tenant_id, id,
# position) in event_ids, whose primary key events_tenant_id is the idempotency key across the
# partitions. Two questions, answered with numbers from one run on one PostgreSQL:
#   1. methods: is COPY cheaper than the appender's prepared multi-row INSERT with text
#      parameters? insert_bench.c writes the same 100-row batches (a careful producer's event:
#      its own UUID id, tenant 'default', stream 'contextual.events', type 'file.uploaded',
#      correlation_id, user_id, source NULL, ~330-byte data, small metadata, 64-hex
#      content_hash), each one transaction that takes the event-log advisory lock and reads
#      the head first, as every Sluice instance does:
#        insert   the appender's fast path in one libpq pipeline: BEGIN; the lock; the head;
#                 the prepared WITH e AS (INSERT INTO events ... SELECT (head) + v.p, ... FROM
#                 (VALUES ...) RETURNING tenant_id, id, position) INSERT INTO event_ids ...
#                 of 64 rows, then of 36 (16 text parameters a row, the batch time last);
#                 NOTIFY; COMMIT;
#        copy     BEGIN; the lock; the head, then COPY events (...) FROM STDIN (text format)
#                 with positions head+1.., then COPY event_ids the same way; NOTIFY; COMMIT
#                 (6 round trips: libpq cannot pipeline a COPY);
#        copybin  the same COPYs in binary format.
#      a. each method alone, with 1 and with 4 concurrent clients: rows/s, CPU per row;
#      b. the three side by side: one connection each, writing the same table, their batches
#         in turn from one thread, so that the machine's other load falls on all three alike
#         (the machine is shared): the CPU per row of each, paired run by run.
#   2. indexes: the insert method into 11 schemas at once, one connection each, batches in
#      turn (as 1b): every index (as migrated), without one of them (each in turn: the
#      secondary indexes of `events`, event_ids' primary key events_tenant_id and its BRIN
#      event_ids_position), and with `events`' primary key only (event_ids then has no index).
#      Each schema holds a copy of the migrated pair: `events` partitioned by position with one
#      partition events_p1 [1, 10000001), as `sluice migrate` leaves it, and event_ids (their
#      columns, checks, primary keys and the index definitions read from the catalog); the
#      connection's search_path picks it. What an index costs is the paired difference
#      (all indexes minus without it, run by run), median over the runs. Side-by-side runs
#      turn the order of their connections by one each run, so that none always follows another.
# Reported (median of BENCH_INSERT_RUNS): rows/s, PostgreSQL CPU µs per row, the client's CPU
# µs per row. PostgreSQL CPU is utime+stime of its processes, read by insert_bench.c just
# before the first batch and just after the last commit, at ns precision from
# /proc/<pid>/schedstat (its first field is the sum_exec_runtime that /proc/<pid>/stat splits
# into utime and stime and rounds down to 10 ms ticks; insert_bench falls back to stat when
# there is no schedstat and prints both):
#   backends  the backends of the benchmark's own connections (pg_backend_pid()), read while
#             they are alive: the work of these inserts inside PostgreSQL's backends;
#   other     the postmaster and its auxiliary processes (checkpointer, background writer,
#             walwriter, autovacuum launcher, logical replication launcher). The cluster may
#             be shared with other sessions (it is, when other benchmarks run), whose WAL
#             these also write, so this column is an upper bound.
# Not counted: other sessions' backends, autovacuum workers and exited children (autovacuum
# is off for the bench tables so that its deferred work does not land at random inside a
# run; a production table pays it later, when autovacuum visits the new pages).
# Client CPU: getrusage of insert_bench over the run (1a), or the CPU time of the thread
# while it handled that connection's batches (1b).
#
# Servers: SLUICE_DATABASE_URL (a superuser), else the private PostgreSQL of .sluice/env
# (scripts/services.sh); it must run on this machine (its /proc is read). Everything happens
# in a fresh database bench_insert_<pid>, migrated with `$SLUICE_BIN migrate` (default
# build/sluice, built with `make -j2` when missing; psql, migrations/*.sql and the first
# partition `sluice migrate` would create when that fails), dropped at the end.
# Every step is bounded by `timeout`. Exit 1 when a run fails or stores the wrong rows.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"

parts=${1:-all}
case "$parts" in all | methods | indexes) ;; *)
  echo "usage: $0 [all|methods|indexes]" >&2
  exit 2
  ;;
esac
BATCHES=${BENCH_INSERT_BATCHES:-300}
IBATCHES=${BENCH_INSERT_INDEX_BATCHES:-150}
ROWS=${BENCH_INSERT_ROWS:-100}
RUNS=${BENCH_INSERT_RUNS:-3}
for v in "$BATCHES" "$IBATCHES" "$ROWS" "$RUNS"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || {
    echo "bench/insert: BENCH_INSERT_BATCHES, BENCH_INSERT_INDEX_BATCHES, BENCH_INSERT_ROWS and BENCH_INSERT_RUNS must be positive integers" >&2
    exit 2
  }
done
((ROWS <= 5000 && BATCHES >= 16)) || {
  echo "bench/insert: BENCH_INSERT_ROWS <= 5000 and BENCH_INSERT_BATCHES >= 16, please" >&2
  exit 2
}

say() { printf '[bench/insert] %s\n' "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}

if [[ -z ${SLUICE_DATABASE_URL:-} && -f $REPO/.sluice/env ]]; then
  # shellcheck disable=SC1091
  source "$REPO/.sluice/env"
fi
[[ -n ${SLUICE_DATABASE_URL:-} ]] || die "SLUICE_DATABASE_URL is not set and there is no .sluice/env (run scripts/services.sh)"
command -v psql >/dev/null || die "psql not found"
{ command -v pkg-config >/dev/null && pkg-config --exists libpq; } || die "libpq's pkg-config file not found (libpq-dev)"

DB=bench_insert_$$
# The server's URL with the database replaced (postgresql://user@host:port/db?options).
base=${SLUICE_DATABASE_URL%%\?*}
opts=${SLUICE_DATABASE_URL#"$base"}
[[ $base =~ ^postgres(ql)?://[^/]+/?[^/]*$ ]] || die "cannot parse SLUICE_DATABASE_URL as postgresql://…/db"
server=${base#*://}
server=${base%%://*}://${server%%/*}
BENCH_URL=$server/$DB$opts
ADMIN_URL=$SLUICE_DATABASE_URL

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-insert.XXXXXX")
created=0
bench_pid=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $bench_pid ]]; then # a run in progress: stop it (timeout passes the signal on)
    kill -TERM "$bench_pid" 2>/dev/null || true
    wait "$bench_pid" 2>/dev/null || true
  fi
  if ((created)); then
    timeout 30 psql -X -q -d "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" \
      >/dev/null 2>&1 || say "could not drop database $DB"
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

psql_admin() { timeout 60 psql -X -q -v ON_ERROR_STOP=1 -d "$ADMIN_URL" "$@"; }
psql_bench() { timeout 120 psql -X -q -v ON_ERROR_STOP=1 -d "$BENCH_URL" "$@"; }
now_ms() { date +%s%3N; }
t_start=$(now_ms)

# ---------------------------------------------------------------------------------------------
# The client, the database, the tables
# ---------------------------------------------------------------------------------------------

say "building bench/insert/insert_bench.c"
# shellcheck disable=SC2046  # pkg-config's flags are words
timeout 120 cc -O2 -std=gnu11 -Wall -Wextra -o "$WORK/insert_bench" bench/insert/insert_bench.c \
  $(pkg-config --cflags --libs libpq) -lpthread || die "could not build bench/insert/insert_bench.c"

say "creating database $DB"
psql_admin -c "CREATE DATABASE $DB" >/dev/null
created=1
BIN=${SLUICE_BIN:-build/sluice}
if [[ ! -x $BIN && $BIN == build/sluice ]]; then
  say "build/sluice not found: make -j2"
  timeout 600 make -j2 >"$WORK/make.log" 2>&1 || say "make failed; applying migrations/*.sql with psql"
fi
if [[ -x $BIN ]] &&
  SLUICE_DATABASE_URL=$BENCH_URL timeout 120 "$BIN" migrate >"$WORK/migrate.log" 2>&1; then
  say "migrated with $BIN migrate"
else
  if [[ -x $BIN ]]; then
    cat "$WORK/migrate.log" >&2
    say "sluice migrate failed; applying migrations/*.sql with psql"
  fi
  for f in migrations/*.sql; do
    psql_bench -f "$f" >/dev/null || die "applying $f failed"
  done
  # The partition `sluice migrate` creates (server/partitions.c, the default width).
  psql_bench -c "CREATE TABLE events_p1 (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)" \
    -c "ALTER TABLE events ATTACH PARTITION events_p1 FOR VALUES FROM (1) TO (10000001)" >/dev/null
fi
# Autovacuum off where the rows are (a partitioned table has no storage of its own).
psql_bench >/dev/null <<'SQL'
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT relid FROM pg_partition_tree('public.events') WHERE isleaf
           UNION ALL SELECT 'public.event_ids'::regclass LOOP
    EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = off, toast.autovacuum_enabled = off)', r.relid);
  END LOOP;
END
$$;
SQL

# The indexes an event's insert pays for besides `events`' primary key: the secondary indexes
# of the migrated `events` and every index of event_ids (its primary key events_tenant_id, the
# idempotency key, included), in the order of the question, then any the migrations add later:
# name, its table, the constraint it backs ('' for a plain index), its definition.
declare -a IDX=()
declare -A IDX_TABLE=() IDX_CONSTRAINT=() IDX_DEF=()
while IFS=$'\x1f' read -r name table con def; do
  IDX+=("$name")
  IDX_TABLE[$name]=$table
  IDX_CONSTRAINT[$name]=$con
  IDX_DEF[$name]=$def
done < <(psql_bench -A -t -F $'\x1f' <<'SQL'
SELECT i.relname, t.relname, coalesce(c.conname, ''), coalesce(pg_get_constraintdef(c.oid), pg_get_indexdef(i.oid))
  FROM pg_index x
  JOIN pg_class i ON i.oid = x.indexrelid
  JOIN pg_class t ON t.oid = x.indrelid
  LEFT JOIN pg_constraint c ON c.conindid = i.oid AND c.conrelid = x.indrelid
 WHERE x.indrelid = 'public.event_ids'::regclass
    OR (x.indrelid = 'public.events'::regclass AND NOT x.indisprimary)
 ORDER BY array_position(ARRAY['events_tenant_position', 'events_tenant_stream', 'events_tenant_type',
                               'events_tenant_correlation', 'events_tenant_user', 'events_time',
                               'events_tenant_key_position', 'events_tenant_id', 'event_ids_position'],
                         i.relname::text),
          i.relname
SQL
)
((${#IDX[@]} > 0)) || die "events has no secondary index: did the migrations run?"
((${#IDX[@]} <= 14)) || die "more than 14 indexes: part 2 runs one connection per schema, at most 16"
say "secondary indexes: ${IDX[*]}"
PKEY=$(psql_bench -A -t -c "SELECT pg_get_constraintdef(oid) FROM pg_constraint
                             WHERE conrelid = 'public.events'::regclass AND contype = 'p'")

# What each index serves; '' for one this script does not know.
declare -A SERVES=(
  [events_tenant_position]="GET /v1/events unfiltered (after=), projections"
  [events_tenant_stream]="?stream=, GET /v1/streams, retention"
  [events_tenant_type]="?type= (exact names)"
  [events_tenant_correlation]="?correlation_id="
  [events_tenant_user]="?user_id= (partial: user_id set)"
  [events_time]="?since= / ?until= (BRIN)"
  [events_tenant_key_position]="?key=, a key's newest version (partial: keyed)"
  [events_tenant_id]="event_ids PK: idempotent ids, GET /v1/events/{id}"
  [event_ids_position]="event_ids: a dropped partition's ids (BRIN)"
)

# make_table SCHEMA DROPPED...: SCHEMA.events (partitioned, one partition SCHEMA.events_p1
# [1, 10000001) as `sluice migrate` creates), SCHEMA.event_ids and SCHEMA.key_heads (the
# appender's statement writes all three), without the DROPPED indexes.
make_table() {
  local s=$1 name d keep def
  shift
  local av="WITH (autovacuum_enabled = off, toast.autovacuum_enabled = off)"
  local sql="CREATE SCHEMA $s;
    CREATE TABLE $s.events (LIKE public.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS
      INCLUDING STORAGE, PRIMARY KEY ${PKEY#PRIMARY KEY }) PARTITION BY RANGE (position);
    CREATE TABLE $s.events_p1 (LIKE $s.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS
      INCLUDING STORAGE) $av;
    ALTER TABLE $s.events ATTACH PARTITION $s.events_p1 FOR VALUES FROM (1) TO (10000001);
    CREATE TABLE $s.event_ids (LIKE public.event_ids INCLUDING DEFAULTS INCLUDING CONSTRAINTS
      INCLUDING STORAGE) $av;
    CREATE TABLE $s.key_heads (LIKE public.key_heads INCLUDING ALL) $av;"
  for name in "${IDX[@]}"; do
    keep=1
    for d in "$@"; do [[ $d == "$name" ]] && keep=0; done
    ((keep)) || continue
    if [[ -n ${IDX_CONSTRAINT[$name]} ]]; then
      sql+="ALTER TABLE $s.${IDX_TABLE[$name]} ADD CONSTRAINT ${IDX_CONSTRAINT[$name]} ${IDX_DEF[$name]};"
    else # "ON ONLY public.events" (a partitioned index) or "ON public.event_ids"
      def=${IDX_DEF[$name]/ ON ONLY public./ ON public.}
      sql+="${def/ ON public.${IDX_TABLE[$name]} / ON $s.${IDX_TABLE[$name]} };"
    fi
  done
  psql_bench -c "$sql" >/dev/null
}

# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------

RESULTS=$WORK/results.tsv # part label clients rep rows_per_s backend other client
: >"$RESULTS"
seed=0

# run_bench ARGS...: insert_bench into $WORK/run.out (in the background and waited for, so
# that an interrupt reaches the trap at once).
run_bench() {
  seed=$((seed + 1))
  timeout 180 "$WORK/insert_bench" --url "$BENCH_URL" --rows "$ROWS" --seed "$seed" "$@" \
    >"$WORK/run.out" 2>"$WORK/run.err" &
  bench_pid=$!
  if ! wait "$bench_pid"; then
    bench_pid=""
    cat "$WORK/run.err" >&2
    die "insert_bench $* failed (or timed out)"
  fi
  bench_pid=""
}

# check_table TABLE ROWS: every row stored, positions 1..ROWS without a gap, and as many rows
# in the schema's event_ids.
check_table() {
  local got
  got=$(psql_bench -A -t -c "SELECT count(*) || ' ' || coalesce(max(position), 0) || ' ' ||
                                    count(DISTINCT id) || ' ' || (SELECT count(*) FROM ${1%.events}.event_ids)
                               FROM $1")
  [[ $got == "$2 $2 $2 $2" ]] || die "$1: stored rows (count, max position, ids, event_ids) = $got, expected $2"
}

# record PART LABEL CLIENTS REP LINE: one result (a RESULT line of insert_bench) into $RESULTS.
record() {
  awk -v part="$1" -v label="$2" -v c="$3" -v rep="$4" '
    { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    END { o = ("pg_other_us_row" in v) ? v["pg_other_us_row"] : "-"
          printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", part, label, c, rep, v["rows_per_s"],
            v["pg_backend_us_row"], o, v["client_us_row"] }' <<<"$5" >>"$RESULTS"
}

# alone METHOD CLIENTS REP [BATCHES]: one run of one method into the empty public.events.
alone() {
  local batches=${4:-$BATCHES} line
  psql_bench -c "TRUNCATE public.events, public.event_ids, public.key_heads" >/dev/null
  run_bench --method "$1" --clients "$2" --batches "$batches"
  line=$(grep '^RESULT ' "$WORK/run.out") || die "insert_bench printed no RESULT line"
  check_table public.events $((batches * ROWS))
  [[ $3 == 0 ]] && return 0 # a warm-up
  record alone "$1" "$2" "$3" "$line"
  say "$(printf '1a %-8s x%s run %s: %s' "$1" "$2" "$3" "${line#RESULT }")"
}

# side_by_side PART REP BATCHES TABLE:METHOD:LABEL...: one interleaved run (empty tables).
# The order of the connections turns by one every run, so that none always follows another.
side_by_side() {
  local part=$1 rep=$2 batches=$3 spec arg="" tables="" label line
  shift 3
  local turn=$(((rep - 1) % $#))
  set -- "${@:turn+1}" "${@:1:turn}"
  declare -A seen=()
  for spec in "$@"; do
    arg+="${arg:+,}${spec%%.*}:$(cut -d: -f2 <<<"$spec")"
    local t=${spec%%:*}
    if [[ -z ${seen[$t]:-} ]]; then
      seen[$t]=1
      tables+="${tables:+, }$t, ${t%.events}.event_ids, ${t%.events}.key_heads"
    fi
  done
  psql_bench -c "TRUNCATE $tables" >/dev/null
  run_bench --batches "$batches" --interleave "$arg"
  local i=0
  while IFS= read -r line; do
    spec=${*:$((i + 1)):1}
    label=${spec##*:}
    record "$part" "$label" 1 "$rep" "$line"
    say "$(printf '%s %-26s run %s: %s' "$part" "$label" "$rep" "${line#RESULT }")"
    i=$((i + 1))
  done < <(grep '^RESULT ' "$WORK/run.out")
  ((i == $#)) || die "insert_bench printed $i RESULT lines, expected $#"
  grep '^TOTAL ' "$WORK/run.out" | sed "s/^TOTAL /$part run $rep: /" >>"$WORK/totals.txt"
  for t in "${!seen[@]}"; do
    local per=0
    for spec in "$@"; do [[ ${spec%%:*} == "$t" ]] && per=$((per + batches * ROWS)); done
    check_table "$t" "$per"
  done
}

# med PART LABEL CLIENTS COLUMN(5..8): the median over the runs ('-' when none).
med() {
  awk -F'\t' -v p="$1" -v l="$2" -v c="$3" -v col="$4" '
    $1 == p && $2 == l && $3 == c && $col != "-" { x[n++] = $col + 0 }
    END {
      if (!n) { print "-"; exit }
      for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
      print (n % 2) ? x[int(n / 2)] : (x[n / 2 - 1] + x[n / 2]) / 2
    }' "$RESULTS"
}

# pmed PART BASE LABEL COLUMN [range]: the median over the runs of (BASE - LABEL), paired by
# run; with `range`, their lowest and highest ("lo..hi").
pmed() {
  awk -F'\t' -v p="$1" -v b="$2" -v l="$3" -v col="$4" -v range="${5:-}" '
    $1 == p && $2 == b { base[$4] = $col }
    $1 == p && $2 == l { x[$4] = $col }
    END {
      for (r in x) if (r in base) d[n++] = base[r] - x[r]
      if (!n) { print "-"; exit }
      for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (d[j] < d[i]) { t = d[i]; d[i] = d[j]; d[j] = t }
      if (range) printf "%.1f..%.1f\n", d[0], d[n - 1]
      else print (n % 2) ? d[int(n / 2)] : (d[n / 2 - 1] + d[n / 2]) / 2
    }' "$RESULTS"
}

methods=(insert copy copybin)
declare -A METHOD_NAME=([insert]="INSERT prepared, text params" [copy]="COPY text" [copybin]="COPY binary")

say "warm-up: a short run of each method"
for m in "${methods[@]}"; do alone "$m" 1 0 $((BATCHES / 4)); done

if [[ $parts != indexes ]]; then
  say "1a. each method alone, 1 and 4 clients, $RUNS runs of $BATCHES batches of $ROWS rows"
  for ((rep = 1; rep <= RUNS; rep++)); do
    for clients in 1 4; do
      for m in "${methods[@]}"; do alone "$m" "$clients" "$rep"; done
    done
  done
  say "1b. the three methods side by side into public.events, $RUNS runs of $BATCHES batches each"
  for ((rep = 1; rep <= RUNS; rep++)); do
    side_by_side 1b "$rep" "$BATCHES" public.events:insert:insert public.events:copy:copy \
      public.events:copybin:copybin
  done
fi

if [[ $parts != methods ]]; then
  say "2. creating $((${#IDX[@]} + 2)) copies of events and event_ids (every index, each one dropped, none)"
  specs=("ix_all.events:insert:all")
  make_table ix_all
  n=0
  for name in "${IDX[@]}"; do
    n=$((n + 1))
    make_table "ix_$n" "$name"
    specs+=("ix_$n.events:insert:$name")
  done
  make_table ix_none "${IDX[@]}"
  specs+=("ix_none.events:insert:none")
  say "2. indexes: the insert method, ${#specs[@]} schemas side by side, $RUNS runs of $IBATCHES batches each"
  for ((rep = 1; rep <= RUNS; rep++)); do
    side_by_side 2 "$rep" "$IBATCHES" "${specs[@]}"
  done
fi

# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------

pgver=$(psql_bench -A -t -c "SHOW server_version")
sc=$(psql_bench -A -t -c "SHOW synchronous_commit")
sb=$(psql_bench -A -t -c "SHOW shared_buffers")
echo
src=$(grep -o 'cpu_source=[a-z]*' "$WORK/run.out" | head -n1 | cut -d= -f2)
echo "bench/insert — PostgreSQL ${pgver%% *} (synchronous_commit=$sc, shared_buffers=$sb), $(nproc) cores,"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end. $ROWS rows a batch, one transaction each"
echo "(advisory lock, head, rows, NOTIFY, COMMIT); a row = an event: its row in events and in event_ids."
echo "Medians of $RUNS runs. CPU = utime+stime in µs per stored row, read from /proc/<pid>/$src: 'pg backends' = this benchmark's connections; 'pg other' ="
echo "postmaster, checkpointer, bgwriter, walwriter, launchers (shared with any other session on the"
echo "cluster); 'client' = insert_bench."

f1() { awk -v x="$1" -v f="$2" 'BEGIN { if (x == "-") printf "%" f "s", "-"; else printf "%" f ".1f", x }'; }
f0() { awk -v x="$1" -v f="$2" 'BEGIN { if (x == "-") printf "%" f "s", "-"; else printf "%" f ".0f", x }'; }

if [[ $parts != indexes ]]; then
  echo
  echo "1a. each method alone into events ($BATCHES batches = $((BATCHES * ROWS)) rows a run, shared by the clients)"
  printf '%-30s %7s %9s %12s %9s %9s %11s\n' "method" clients rows/s "pg backends" "pg other" "pg total" "client CPU"
  for clients in 1 4; do
    for m in "${methods[@]}"; do
      be=$(med alone "$m" "$clients" 6)
      ot=$(med alone "$m" "$clients" 7)
      printf '%-30s %7s %s %s %s %s %s\n' "${METHOD_NAME[$m]}" "$clients" "$(f0 "$(med alone "$m" "$clients" 5)" 9)" \
        "$(f1 "$be" 12)" "$(f1 "$ot" 9)" "$(f1 "$(awk -v a="$be" -v b="$ot" 'BEGIN { print a + b }')" 9)" \
        "$(f1 "$(med alone "$m" "$clients" 8)" 11)"
    done
  done
  echo
  echo "1b. side by side: one connection each into the same events, batches in turn ($BATCHES batches each)"
  printf '%-30s %9s %12s %13s %12s %11s\n' "method" "rows/s*" "pg backends" "vs INSERT" "runs" "client CPU"
  for m in "${methods[@]}"; do
    vs="" range=""
    if [[ $m != insert ]]; then
      vs=$(awk -v d="$(pmed 1b insert "$m" 6)" -v b="$(med 1b insert 1 6)" \
        'BEGIN { printf "%+.1f (%+.0f%%)", -d, -d / b * 100 }')
      range=$(pmed 1b insert "$m" 6 range)
    fi
    printf '%-30s %s %s %13s %12s %s\n' "${METHOD_NAME[$m]}" "$(f0 "$(med 1b "$m" 1 5)" 9)" "$(f1 "$(med 1b "$m" 1 6)" 12)" \
      "$vs" "$range" "$(f1 "$(med 1b "$m" 1 8)" 11)"
  done
  echo "* rows/s while that connection's batches ran. 'vs INSERT' = the median of the per-run"
  echo "differences in pg backends; 'runs' = the lowest..highest of them (INSERT minus the method)."
  echo
  for clients in 1 4; do
    for m in copy copybin; do
      awk -v n="${METHOD_NAME[$m]}" -v c="$clients" \
        -v r1="$(med alone insert "$clients" 5)" -v r2="$(med alone "$m" "$clients" 5)" '
        BEGIN { printf "%s vs INSERT, alone, %s client(s): rows/s x%.2f\n", n, c, r2 / r1 }'
    done
  done
fi

if [[ $parts != methods ]]; then
  echo
  echo "2. what each index costs: INSERT, ${#specs[@]} schemas side by side, $IBATCHES batches = $((IBATCHES * ROWS)) events each a run"
  printf '%-34s %-49s %8s %11s %6s %11s\n' "events + event_ids" "serves" "rows/s*" "pg backends" "saved" "runs"
  row() { # row LABEL SERVES KEY
    local saved="" range=""
    if [[ $3 != all ]]; then
      saved=$(f1 "$(pmed 2 all "$3" 6)" 6)
      range=$(pmed 2 all "$3" 6 range)
    fi
    printf '%-34s %-49s %s %s %6s %11s\n' "$1" "$2" "$(f0 "$(med 2 "$3" 1 5)" 8)" "$(f1 "$(med 2 "$3" 1 6)" 11)" \
      "$saved" "$range"
  }
  row "every index (as migrated)" "" all
  for name in "${IDX[@]}"; do row "without $name" "${SERVES[$name]:-}" "$name"; done
  row "events' primary key only" "(event_ids with no index)" none
  echo "saved = PostgreSQL backend CPU µs per inserted row that dropping the index saves: the median of"
  echo "the per-run differences from 'every index'; runs = the lowest..highest of them (a saving inside"
  echo "the spread is not resolved on this machine: BENCH_INSERT_RUNS=5 narrows it). The rows carry no"
  echo "key, so events_tenant_key_position (WHERE key IS NOT NULL) is never written here."
  echo "* rows/s while that table's batches ran."
  sum=0
  for name in "${IDX[@]}"; do sum=$(awk -v a="$sum" -v b="$(pmed 2 all "$name" 6)" 'BEGIN { print a + b }'); done
  awk -v s="$sum" -v all="$(pmed 2 all none 6)" -v b="$(med 2 all 1 6)" 'BEGIN {
    printf "Those indexes together (the secondary ones of events, and those of event_ids): %.1f µs of %.1f (%.0f%%); the sum of the single savings: %.1f.\n",
           all, b, all / b * 100, s }'
fi
if [[ -s $WORK/totals.txt ]]; then
  echo
  echo "side-by-side runs, all connections together ('other' is not attributable per connection):"
  sed 's/^/  /' "$WORK/totals.txt"
fi
echo
say "done in $((($(now_ms) - t_start) / 1000)) s"

#!/usr/bin/env bash
# bench/longpoll/run.sh — what a long poll costs Sluice and PostgreSQL while long polls churn.
#
#   bench/longpoll/run.sh      BENCH_POLLS=500 BENCH_SECONDS=10 BENCH_TIMEOUT_MS=1000
#
# Why: a tenant holding its cap of long polls with short timeouts re-asks them all, over and
# over; each one is a request, a stored lookup on a pooled PostgreSQL connection, a hub
# subscription and a 204, on the same cores as every other tenant's publishes. Reads are
# prepared once per connection (server/db.c) because that lookup's planning was most of its
# PostgreSQL cost. One sluice on a fresh database with 100,000 stored events of the polling
# tenant (generated in PostgreSQL, none matching), then bench/longpoll/bench.js: the long
# polls (sluice, PostgreSQL backends and client CPU µs per long poll, from /proc), and, same
# run, same database, the lookup's own SQL run alone by 4 node-postgres clients as a named
# prepared statement and unnamed (PostgreSQL CPU µs per lookup). No target: the summary row
# shows PostgreSQL's CPU per long poll beside the lookup alone, prepared and unnamed.
# Servers: SLUICE_DATABASE_URL / SLUICE_REDIS_URL when set, else the private ones of
# scripts/services.sh (bench/lib.sh). A fresh database bench_longpoll_<pid> is dropped at the
# end. Needs bench/peer-node's node_modules (node-postgres; `npm ci` here when missing).
# shellcheck disable=SC2317,SC2119  # functions run from traps; psql_bench reads stdin
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"

POLLS=${BENCH_POLLS:-500}
SECS=${BENCH_SECONDS:-10}
TIMEOUT_MS=${BENCH_TIMEOUT_MS:-1000}
for v in "$POLLS" "$SECS" "$TIMEOUT_MS"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || {
    echo "bench/longpoll: BENCH_POLLS, BENCH_SECONDS and BENCH_TIMEOUT_MS must be positive integers" >&2
    exit 2
  }
done
BENCH_NAME=longpoll DB=bench_longpoll_$$ PREFIX=benchlongpoll$$:
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

[[ -x $BIN ]] || die "$BIN not found; build it first (make)"
command -v node >/dev/null || die "node not found (run scripts/install-deps.sh)"
command -v curl >/dev/null || die "curl not found"
if [[ ! -d $REPO/bench/peer-node/node_modules/pg ]]; then
  say "npm ci --prefix bench/peer-node"
  timeout 300 npm ci --prefix "$REPO/bench/peer-node" --no-audit --no-fund --loglevel=error >&2 ||
    die "npm ci in bench/peer-node failed"
fi

bench_servers all
bench_database
bench_migrate
bench_find_postmaster
[[ -n $PG_PID ]] || die "PostgreSQL must run on this machine (its backends' CPU is read from /proc)"

say "inserting 100000 stored events of tenant poller"
psql_bench <<'SQL'
WITH e AS (
INSERT INTO events (position, id, tenant_id, stream, key, version, type, schema_version,
                    correlation_id, causation_id, user_id, source, data, metadata, time, content_hash)
SELECT p, id, 'poller', 'poller.events', NULL, NULL, 'poller.bulk', 1, 'stored-' || p, NULL, NULL,
       'bench-longpoll', jsonb_build_object('n', p), NULL, now(), lpad(to_hex(p), 64, '0')
  FROM (SELECT p, '01J' || lpad(p::text, 23, '0') AS id FROM generate_series(1, 100000) p) s
RETURNING tenant_id, id, position)
INSERT INTO event_ids (tenant_id, id, position) SELECT tenant_id, id, position FROM e;
VACUUM (ANALYZE) events, event_ids;
CHECKPOINT;
SQL
redis_cli SET "${PREFIX}relay:position" 100000 >/dev/null

bench_start_sluice SLUICE_ACCESS_LOG=off SLUICE_TENANT_LONG_POLLS=$((POLLS + 10))
out=$(curl -sS -m 30 -X POST "$BASE/v1/keys" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -d '{"tenant_id":"poller","scopes":["read"]}') || die "POST /v1/keys failed"
POLL_TOKEN=$(sed -n 's/.*"token":"\([^"]*\)".*/\1/p' <<<"$out")
[[ -n $POLL_TOKEN ]] || die "no key for tenant poller: $out"

say "$POLLS long polls, timeout_ms $TIMEOUT_MS, ${SECS}s measured; then the lookup alone"
ROWS=$WORK/rows
: >"$ROWS"
DB_URL=$BENCH_URL
BENCH_URL=$BASE BENCH_TOKEN=$POLL_TOKEN BENCH_PID=$SLUICE_PID BENCH_PG_PID=$PG_PID BENCH_DB=$DB \
  BENCH_DB_URL=$DB_URL BENCH_POLLS=$POLLS BENCH_SECONDS=$SECS BENCH_TIMEOUT_MS=$TIMEOUT_MS \
  BENCH_ROWS=$ROWS timeout $((SECS * 3 + 120)) node "$REPO/bench/longpoll/bench.js" ||
  die "the long-poll driver failed"
while IFS=$'\t' read -r measure sluice baseline; do
  bench_summary "$measure" "$sluice" "$baseline" "-" "-"
done <"$ROWS"
bench_stop_sluice
say "done"

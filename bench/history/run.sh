#!/usr/bin/env bash
# bench/history/run.sh — the history benchmarks of issue 5.
#
#   bench/history/run.sh [all|read|projections]     BENCH_EVENTS=1000000
#
# Why: reading the past and keeping read models are what an event store is for. This
# measures, over the same BENCH_EVENTS stored events (~300-byte data each):
#   a. the NDJSON read of the whole log through Sluice
#        curl -s -H 'Accept: application/x-ndjson' http://…/v1/events > /dev/null
#      against PostgreSQL serialising the same rows itself, in the same run:
#        psql -c "\copy (select row_to_json(e) from events e order by position) to /dev/null"
#      (best of BENCH_RUNS=2 runs each, after one warm-up read of the table); target: Sluice
#      reaches >= 60% of psql's rate;
#   b. projection catch-up from position 0 to live, for `count` and `sum` keyed by
#      /data/user_id (1,000 users): create the projection, poll GET /v1/projections/{name}
#      until it is live at the head; target >= 100,000 events/s each. The baseline is
#      PostgreSQL computing the same aggregate in one GROUP BY over the same rows (best of
#      BENCH_RUNS). The states are checked against SQL aggregates (exit 1 when they disagree).
# It prints one table with the targets and PASS/MISS, and the headline rows to BENCH_SUMMARY
# (make bench's table). Exit 1 when a check of correctness fails (a short NDJSON answer, a
# wrong projection state); with BENCH_STRICT=1 also when a target is missed.
#
# The events are inserted straight into the `events` table with generate_series after
# `sluice migrate` (every index and constraint the server has is there), each id into event_ids
# in the same statement as the appender does (the idempotency key), then VACUUM ANALYZE,
# then sluice starts. The Redis relay's checkpoint is set to the head first, so the relay
# does not re-publish the million events while they are being measured.
#
# Servers: SLUICE_DATABASE_URL / SLUICE_REDIS_URL when set, else the private ones of
# scripts/services.sh (bench/lib.sh). Everything happens in a fresh database bench_hist_<pid>,
# dropped at the end, and Redis keys under the prefix benchhist<pid>:, deleted at the end.
# Loopback only; every step is bounded by `timeout`.
# shellcheck disable=SC2317  # functions run from traps
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"

parts=${1:-all}
case "$parts" in all | read | projections) ;; *)
  echo "usage: $0 [all|read|projections]" >&2
  exit 2
  ;;
esac
N=${BENCH_EVENTS:-1000000}
RUNS=${BENCH_RUNS:-2}
[[ $N =~ ^[1-9][0-9]*$ && $RUNS =~ ^[1-9][0-9]*$ ]] || {
  echo "bench: BENCH_EVENTS and BENCH_RUNS must be positive integers" >&2
  exit 2
}
USERS=1000
BENCH_NAME=history DB=bench_hist_$$ PREFIX=benchhist$$: BENCH_PSQL_TIMEOUT=1800
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

[[ -x $BIN ]] || die "$BIN not found; build it first (make)"
command -v curl >/dev/null || die "curl not found"
command -v redis-cli >/dev/null || die "redis-cli not found (run scripts/install-deps.sh)"

bench_servers all

now_ms() { date +%s%3N; }
rate() { awk -v n="$1" -v ms="$2" 'BEGIN { printf "%.0f", (ms > 0) ? n * 1000 / ms : 0 }'; }

# ---------------------------------------------------------------------------------------------
# The stored events
# ---------------------------------------------------------------------------------------------

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
bench_database
bench_migrate

# ai.content.generation.completed as the catalog defines it, plus the user_id the projections
# key by: ~300 bytes of JSON per event. Times are one millisecond apart, ending now.
say "inserting $N events (generate_series, in chunks of 100,000)"
t0=$(now_ms)
CHUNK=100000
for ((lo = 1; lo <= N; lo += CHUNK)); do
  hi=$((lo + CHUNK - 1 < N ? lo + CHUNK - 1 : N))
  psql_bench <<SQL
WITH e AS (
INSERT INTO events (position, id, tenant_id, stream, key, version, type, schema_version,
                    correlation_id, causation_id, user_id, source, data, metadata, time, content_hash)
SELECT p, id, 'default', 'ai.events', NULL, NULL, 'ai.content.generation.completed', 1,
       id, NULL, 'user_' || lpad((p % $USERS)::text, 4, '0'), 'content-generator',
       jsonb_build_object(
         'user_id', 'user_' || lpad((p % $USERS)::text, 4, '0'),
         'request_id', 'req_' || lpad(p::text, 12, '0'),
         'content_draft_id', 'draft_' || p,
         'generated_content', 'Three ways small teams can cut waste this quarter, draft #' || p,
         'ai_provider', 'anthropic',
         'model_used', 'claude-3-5-sonnet',
         'tokens_used', 100 + p % 900,
         'generation_time_ms', 1000 + p % 9000,
         'cost_usd', ((p::bigint * 7919) % 10000) / 10000.0),
       NULL,
       now() - (($N - p) * interval '1 millisecond'),
       lpad(to_hex(p), 64, '0')
  FROM (SELECT p, '01J' || lpad(p::text, 23, '0') AS id FROM generate_series($lo, $hi) p) s
RETURNING tenant_id, id, position)
INSERT INTO event_ids (tenant_id, id, position) SELECT tenant_id, id, position FROM e;
SQL
done
psql_bench -c "VACUUM (ANALYZE) events, event_ids" >/dev/null
insert_ms=$(($(now_ms) - t0))
avg_bytes=$(psql_bench -A -t -c "SELECT round(avg(octet_length(data::text))) FROM events")
say "inserted $N events in $((insert_ms / 1000)) s; data ~${avg_bytes} bytes each"

# The relay's checkpoint at the head: these rows are history, not new commits to fan out.
redis_cli SET "${PREFIX}relay:position" "$N" >/dev/null

# ---------------------------------------------------------------------------------------------
# Sluice
# ---------------------------------------------------------------------------------------------

bench_start_sluice SLUICE_ACCESS_LOG=off

api() { # api METHOD PATH [JSON]: the body on stdout; fails on a non-2xx answer
  local out=$WORK/api.out code
  local -a body=()
  if [[ $# -ge 3 ]]; then body=(-H 'Content-Type: application/json' -d "$3"); fi
  code=$(curl -sS -m 30 -o "$out" -w '%{http_code}' -X "$1" "$BASE$2" \
    -H "Authorization: Bearer $TOKEN" "${body[@]}") || code=000
  if [[ $code != 2* ]]; then
    cat "$out" >&2 2>/dev/null || true
    echo >&2
    die "$1 $2 answered $code"
  fi
  cat "$out"
}
json_field() { # json_field NAME: the first "NAME": value of a compact JSON answer on stdin
  sed -n "s/.*\"$1\":\(\"[^\"]*\"\|[^,}]*\).*/\1/p" | head -n1 | tr -d '"'
}

failed=0
missed=0

# ---------------------------------------------------------------------------------------------
# a. NDJSON read vs psql \copy of row_to_json
# ---------------------------------------------------------------------------------------------

psql_ms="" curl_ms="" curl_bytes="" psql_bytes=""
if [[ $parts != projections ]]; then
  say "warm-up: one read of the table"
  psql_bench -c "SELECT count(*), sum(octet_length(data::text)) FROM events" >/dev/null
  psql_bytes=$(psql_bench -A -t -c "SELECT sum(octet_length(row_to_json(e)::text) + 1) FROM events e")
  for ((r = 1; r <= RUNS; r++)); do
    say "psql \\copy row_to_json, run $r"
    t0=$(now_ms)
    timeout 600 "$PSQL" -X -q -d "$BENCH_URL" \
      -c "\copy (select row_to_json(e) from events e order by position) to /dev/null"
    ms=$(($(now_ms) - t0))
    if [[ -z $psql_ms || $ms -lt $psql_ms ]]; then psql_ms=$ms; fi

    say "curl NDJSON /v1/events, run $r"
    t0=$(now_ms)
    code=$(timeout 600 curl -s -o /dev/null -w '%{http_code} %{size_download}' \
      -H "Authorization: Bearer $TOKEN" -H 'Accept: application/x-ndjson' "$BASE/v1/events") || code="000 0"
    ms=$(($(now_ms) - t0))
    [[ ${code%% *} == 200 ]] || die "GET /v1/events (NDJSON) answered ${code%% *}"
    curl_bytes=${code#* }
    if [[ -z $curl_ms || $ms -lt $curl_ms ]]; then curl_ms=$ms; fi
  done
  say "checking the NDJSON answer holds every event"
  lines=$(timeout 600 curl -s -H "Authorization: Bearer $TOKEN" -H 'Accept: application/x-ndjson' \
    "$BASE/v1/events" | wc -l)
  if [[ $lines != "$N" ]]; then
    say "the NDJSON read returned $lines lines, expected $N"
    failed=1
  fi
fi

# ---------------------------------------------------------------------------------------------
# b. projection catch-up
# ---------------------------------------------------------------------------------------------

declare -A catch_ms=()
catch_up() { # catch_up NAME DEFINITION_JSON -> catch_ms[NAME]
  local name=$1 def=$2 t0 body status pos deadline
  t0=$(now_ms)
  api POST /v1/projections "$def" >/dev/null
  deadline=$((t0 + 900000))
  while :; do
    body=$(api GET "/v1/projections/$name")
    status=$(json_field status <<<"$body")
    pos=$(json_field position <<<"$body")
    if [[ $status == live && $pos == "$N" ]]; then break; fi
    [[ $status != failed ]] || die "projection $name failed: $body"
    (($(now_ms) < deadline)) || die "projection $name did not catch up in 15 minutes: $body"
    sleep 0.05
  done
  catch_ms[$name]=$(($(now_ms) - t0))
}

declare -A sql_ms=()
sql_aggregate() { # sql_aggregate NAME EXPR: best of RUNS for SELECT key, EXPR ... GROUP BY key
  local r t0 ms
  for ((r = 1; r <= RUNS; r++)); do
    t0=$(now_ms)
    psql_bench -c "SELECT data->>'user_id', $2 FROM events GROUP BY 1" >/dev/null
    ms=$(($(now_ms) - t0))
    if [[ -z ${sql_ms[$1]:-} || $ms -lt ${sql_ms[$1]} ]]; then sql_ms[$1]=$ms; fi
  done
}

if [[ $parts != read ]]; then
  say "baseline: the same aggregates in one SQL GROUP BY"
  sql_aggregate bench-count "count(*)"
  sql_aggregate bench-sum "sum((data->>'cost_usd')::numeric)"
  say "projection catch-up: count by /data/user_id"
  catch_up bench-count '{"name":"bench-count","key":"/data/user_id","reduce":"count"}'
  say "projection catch-up: sum of /data/cost_usd by /data/user_id"
  catch_up bench-sum '{"name":"bench-sum","key":"/data/user_id","reduce":"sum","path":"/data/cost_usd"}'

  # The states against SQL over the same rows.
  bad=$(psql_bench -A -t <<'SQL'
WITH truth AS (
  SELECT data->>'user_id' AS k, count(*) AS n, sum((data->>'cost_usd')::numeric) AS total
    FROM events GROUP BY 1)
SELECT count(*) FROM truth t
  LEFT JOIN projection_state c ON c.name = 'bench-count' AND c.key = t.k
  LEFT JOIN projection_state s ON s.name = 'bench-sum' AND s.key = t.k
 WHERE c.state IS NULL OR (c.state)::text::bigint <> t.n
    OR s.state IS NULL OR abs((s.state)::text::numeric - t.total) > 1e-6 * greatest(1, abs(t.total));
SQL
  )
  extra=$(psql_bench -A -t -c "SELECT count(*) FROM projection_state WHERE name IN ('bench-count','bench-sum')")
  if [[ $bad != 0 || $extra != $((2 * USERS)) ]]; then
    say "projection states disagree with SQL: $bad keys differ, $extra states (expected $((2 * USERS)))"
    failed=1
  fi
  dead=$(psql_bench -A -t -c "SELECT count(*) FROM dead_letters")
  [[ $dead == 0 ]] || {
    say "$dead dead letters"
    failed=1
  }
fi

# c. (informational) what a dashboard polling the stream list pays over this many events.
streams_ms="" stream_ms=""
if [[ $parts != projections ]]; then
  say "GET /v1/streams and GET /v1/streams/ai.events, 3 times each"
  for ((r = 0; r < 3; r++)); do
    t0=$(now_ms)
    api GET /v1/streams >/dev/null
    ms=$(($(now_ms) - t0))
    if [[ -z $streams_ms || $ms -lt $streams_ms ]]; then streams_ms=$ms; fi
    t0=$(now_ms)
    api GET /v1/streams/ai.events >/dev/null
    ms=$(($(now_ms) - t0))
    if [[ -z $stream_ms || $ms -lt $stream_ms ]]; then stream_ms=$ms; fi
  done
fi

rss_kb=$(bench_rss_kb)
bench_stop_sluice

# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------

row() { printf '  %-46s %18s   %-12s %s\n' "$@"; }

echo
echo "Sluice history benchmark — $N stored events (~${avg_bytes} B of data each), loopback,"\
  "$(nproc) cores; PostgreSQL $("$PSQL" -X -A -t -d "$ADMIN_URL" -c 'SHOW server_version' 2>/dev/null || echo '?')"
echo "  load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews the rates)"
echo
row "measure" "value" "target" ""
if [[ -n $psql_ms ]]; then
  psql_rate=$(rate "$N" "$psql_ms")
  curl_rate=$(rate "$N" "$curl_ms")
  row "psql \\copy row_to_json(e) ORDER BY position" "$psql_rate rows/s" "" \
    "($(awk -v ms="$psql_ms" 'BEGIN { printf "%.2f", ms / 1000 }') s, $(awk -v b="$psql_bytes" -v ms="$psql_ms" 'BEGIN { printf "%.0f", b / 1048576 / (ms / 1000) }') MiB/s)"
  row "Sluice GET /v1/events NDJSON" "$curl_rate ev/s" "" \
    "($(awk -v ms="$curl_ms" 'BEGIN { printf "%.2f", ms / 1000 }') s, $(awk -v b="$curl_bytes" -v ms="$curl_ms" 'BEGIN { printf "%.0f", b / 1048576 / (ms / 1000) }') MiB/s, $curl_bytes B)"
  ratio=$(awk -v a="$curl_rate" -v b="$psql_rate" 'BEGIN { printf "%.2f", a / b }')
  verdict=$(bench_check "$ratio" ">=" 0.60)
  [[ $verdict == PASS ]] || missed=1
  row "  ratio Sluice / psql" "${ratio}x" ">= 0.60" "$verdict"
  bench_summary "NDJSON read of $N events (GET /v1/events)" "$curl_rate ev/s" \
    "psql \\copy row_to_json = $psql_rate rows/s (${ratio}x)" ">= 0.60x" "$verdict"
fi
for name in bench-count bench-sum; do
  [[ -n ${catch_ms[$name]:-} ]] || continue
  r=$(rate "$N" "${catch_ms[$name]}")
  verdict=$(bench_check "$r" ">=" 100000)
  [[ $verdict == PASS ]] || missed=1
  row "projection catch-up: ${name#bench-} by user (1,000 keys)" "$r ev/s" ">= 100000" \
    "$verdict ($(awk -v ms="${catch_ms[$name]}" 'BEGIN { printf "%.2f", ms / 1000 }') s to live)"
  sr=$(rate "$N" "${sql_ms[$name]}")
  row "  SQL GROUP BY, the same aggregate" "$sr rows/s" "" \
    "($(awk -v ms="${sql_ms[$name]}" 'BEGIN { printf "%.2f", ms / 1000 }') s; Sluice / SQL $(awk -v a="$r" -v b="$sr" 'BEGIN { printf "%.2f", a / b }')x)"
  bench_summary "projection catch-up, ${name#bench-} by user (1,000 keys)" "$r ev/s" \
    "SQL GROUP BY = $sr rows/s ($(awk -v a="$r" -v b="$sr" 'BEGIN { printf "%.2f", a / b }')x)" \
    ">= 100000 ev/s" "$verdict"
done
if [[ -n $streams_ms ]]; then
  row "GET /v1/streams (best of 3)" "$streams_ms ms" "" "(informational: counts over $N events)"
  row "GET /v1/streams/{stream} (best of 3)" "$stream_ms ms" "" ""
fi
row "Sluice peak RSS (VmHWM)" "$(awk -v k="${rss_kb:-0}" 'BEGIN { printf "%.1f MiB", k / 1024 }')" "" ""
echo

if ((failed)); then
  say "a correctness check failed (see above)"
  exit 1
fi
if ((missed)) && [[ ${BENCH_STRICT:-0} == 1 ]]; then
  say "a target was missed (BENCH_STRICT=1)"
  exit 1
fi
exit 0

#!/usr/bin/env bash
# bench/unauth/run.sh — what unauthenticated slow bodies cost Sluice in memory (issue 13).
#
#   bench/unauth/run.sh            BENCH_CONNECTIONS=500 BENCH_SECONDS=10
#
# Owns: one sluice (bench/lib.sh's bench_start_sluice) and the attacker
# bench/unauth/slow_bodies.js, which keeps BENCH_CONNECTIONS loopback connections open for
# BENCH_SECONDS, each sending the headers of a request announcing a 4 MB body without a valid
# token (POST /v1/events with no token or a wrong one, POST /v1/schemas, GET /health with a
# Content-Length) and then trickling body bytes, reconnecting whenever sluice closes it.
# Then 64 connections that each send a 3 MiB body to GET /health as fast as sluice reads it
# (the issue's report). Reports sluice's RSS (VmRSS) before and at its peak under each attack,
# and one summary row each (bench_summary): the growth, target < 50 MiB.
# Why: before issue 13 a body sent to a route that needs no token (GET /health) was buffered
# whole, so 64 connections sending 3 MB each grew sluice by about 200 MB; the route and the
# token are now checked from the headers and an unauthenticated peer can pin no body at all
# (only libmicrohttpd's per-connection buffer). This keeps that measured.
#
# Servers: SLUICE_DATABASE_URL / SLUICE_REDIS_URL when set, else the private ones of
# scripts/services.sh (bench/lib.sh). A fresh database bench_unauth_<pid>, dropped at the end.
# Loopback only; bounded: about 20 s + BENCH_SECONDS.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"

CONNS=${BENCH_CONNECTIONS:-500}
SECS=${BENCH_SECONDS:-10}
if ! [[ $CONNS =~ ^[1-9][0-9]*$ ]] || ((CONNS > 5000)); then
  echo "bench/unauth: BENCH_CONNECTIONS must be an integer from 1 to 5000" >&2
  exit 2
fi
if ! [[ $SECS =~ ^[1-9][0-9]*$ ]] || ((SECS > 120)); then
  echo "bench/unauth: BENCH_SECONDS must be an integer from 1 to 120" >&2
  exit 2
fi
BENCH_NAME=unauth DB=bench_unauth_$$ PREFIX=benchunauth$$:
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

[[ -x $BIN ]] || die "$BIN not found; build it first (make)"
command -v node >/dev/null || die "node not found (run scripts/install-deps.sh)"
if (($(ulimit -n) < CONNS + 256)); then ulimit -n $((CONNS + 1024)) 2>/dev/null || true; fi

bench_servers all
bench_database
bench_migrate
bench_start_sluice SLUICE_ACCESS_LOG=off

# Warm up: a few ordinary requests so the baseline includes what serving costs anyway.
for _ in 1 2 3 4 5; do
  curl -fsS -m 10 "$BASE/health" >/dev/null
  curl -fsS -m 10 -H "Authorization: Bearer $TOKEN" "$BASE/v1/info" >/dev/null
done

# attack MODE ARGS...: runs the attacker; sets before, peak, after, conns, answers (KiB).
attack() {
  local out
  out=$(timeout $((SECS + 90)) node "$REPO/bench/unauth/slow_bodies.js" "$HTTP_PORT" "$SLUICE_PID" "$@")
  running "$SLUICE_PID" || die "sluice died under the attack"
  curl -fsS -m 10 "$BASE/health" >/dev/null || die "sluice does not answer /health after the attack"
  before=$(sed -n 's/.*"before_kib":\([0-9]*\).*/\1/p' <<<"$out")
  peak=$(sed -n 's/.*"peak_kib":\([0-9]*\).*/\1/p' <<<"$out")
  after=$(sed -n 's/.*"after_kib":\([0-9]*\).*/\1/p' <<<"$out")
  conns=$(sed -n 's/.*"connections":\([0-9]*\).*/\1/p' <<<"$out")
  answers=$(sed -n 's/.*"answers":\({[^}]*}\).*/\1/p' <<<"$out")
  [[ -n $before && -n $peak ]] || die "no measurement from the attacker: $out"
  growth_mb=$(awk -v b="$before" -v p="$peak" 'BEGIN { printf "%.1f", (p - b) / 1024 }')
}
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
report() {
  printf '%-44s %s\n' "answers (status: count)" "$answers"
  printf '%-44s %s MiB\n' "sluice RSS before" "$(mb "$before")"
  printf '%-44s %s MiB\n' "sluice RSS peak under the attack" "$(mb "$peak")"
  printf '%-44s %s MiB\n' "sluice RSS after (sockets closed)" "$(mb "$after")"
  printf '%-44s %s MiB (target < 50)\n' "growth" "$growth_mb"
}

say "$CONNS unauthenticated slow bodies for $SECS s"
attack slow "$CONNS" "$SECS"
echo
printf '%-44s %s\n' "unauthenticated slow bodies at once" "$CONNS (for $SECS s; $conns connections made)"
report
bench_summary "RSS growth under $CONNS unauthenticated slow bodies (${SECS} s)" \
  "+$growth_mb MiB (from $(mb "$before") MiB)" "-" "< 50 MiB" "$(bench_check "$growth_mb" "<" 50)"

say "64 connections sending 3 MiB each to GET /health (no token)"
attack burst 64 3145728
echo
printf '%-44s %s\n' "3 MiB bodies to GET /health at once" "$conns"
report
bench_summary "RSS growth under 64 x 3 MiB bodies to GET /health (no token)" \
  "+$growth_mb MiB (from $(mb "$before") MiB)" "-" "< 50 MiB" "$(bench_check "$growth_mb" "<" 50)"

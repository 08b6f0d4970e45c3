#!/usr/bin/env bash
# bench/validation_attack/run.sh — /health under worst-case validation bodies (issue 13,
# "Bounded validation").
#
#   bench/validation_attack/run.sh        BENCH_SECONDS=10 per phase
#
# Why: validation runs on the HTTP threads (SLUICE_HTTP_THREADS, 2 by default). Before issue 13
# one publish request could make PCRE2 spend its whole match limit (a million steps) on every
# string of a 4 MiB array, or of every event of a 1,000-event batch: seconds per request, and
# two such clients held both HTTP threads. Now one request's validation has a budget
# (SLUICE_VALIDATION_MAX_STEPS regex/string steps, SLUICE_VALIDATION_MAX_NODES schema
# evaluations) and is answered 422 validation_too_costly past it. This measures what two
# attackers cost everyone else, in one run against one sluice:
#   a. idle: wrk probes GET /health (bench/validation_attack/health.lua: 1 thread, 1 connection,
#      a new TCP connection per probe, as a load balancer's health check) for BENCH_SECONDS;
#   b. attacked: the same while two clients (curl loops, publish-only key) send worst-case
#      bodies back to back against a type whose schema has the pattern ^(a+)+$: client 1 a
#      1,000-event batch with one 30-character non-matching name per event, client 2 one event
#      of ~4 MiB of such names;
#   c. idle again (drift, and a second baseline).
# Target: the attacked /health p99 below 250 ms (about two worst-case requests' time, since
# a probe waits for an HTTP thread to finish the request it holds). Prints one table (with the
# answers the attackers got and how long each of their requests took) and the summary rows
# (bench/lib.sh bench_summary). Exit 1 when wrk fails or a probe is not answered 200; with
# BENCH_STRICT=1 also when the target is missed. BIN=... runs another sluice binary (an older
# one shows the "before").
#
# Servers: SLUICE_DATABASE_URL / SLUICE_REDIS_URL when set, else the private ones of
# scripts/services.sh (bench/lib.sh). A fresh database bench_vattack_<pid> and the Redis prefix
# benchvattack<pid>: are removed at the end. Loopback only; every step is bounded by `timeout`
# or curl -m.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"

SECS=${BENCH_SECONDS:-10}
[[ $SECS =~ ^[1-9][0-9]*$ ]] || {
  echo "bench/validation_attack: BENCH_SECONDS must be a positive integer" >&2
  exit 2
}
TARGET_MS=250
BENCH_NAME=validation_attack DB=bench_vattack_$$ PREFIX=benchvattack$$:
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

[[ -x $BIN ]] || die "$BIN not found; build it first (make)"
command -v wrk >/dev/null || die "wrk not found (run scripts/install-deps.sh)"
command -v curl >/dev/null || die "curl not found"

bench_servers all
bench_database
bench_migrate
bench_start_sluice SLUICE_ACCESS_LOG=off SLUICE_ALLOW_UNKNOWN_TYPES=0

TYPE=bench.attack.names
# shellcheck disable=SC2016  # "$schema" is JSON, not a shell expansion
SCHEMA='{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object",
  "required":["names"],"properties":{"names":{"type":"array","items":{"type":"string",
  "pattern":"^(a+)+$"}}}}'
out=$(curl -sS -m 30 -X POST "$BASE/v1/schemas" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -d "{\"type\":\"$TYPE\",\"schema\":$SCHEMA}") ||
  die "POST /v1/schemas failed"
grep -q '"version":1' <<<"$out" || die "could not register $TYPE: $out"
out=$(curl -sS -m 30 -X POST "$BASE/v1/keys" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -d '{"tenant_id":"default","scopes":["publish"]}') ||
  die "POST /v1/keys failed"
PUB_TOKEN=$(sed -n 's/.*"token":"\([^"]*\)".*/\1/p' <<<"$out")
[[ -n $PUB_TOKEN ]] || die "no publish key: $out"

# The bodies: ^(a+)+$ tries 2^29 ways to split "a"x29 before the "!" fails it.
BAD='"aaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"'
awk -v t="$TYPE" -v bad="$BAD" 'BEGIN {
  printf "["
  for (i = 0; i < 1000; i++) printf "%s{\"type\":\"%s\",\"data\":{\"names\":[%s]}}", i ? "," : "", t, bad
  printf "]" }' >"$WORK/batch.json"
awk -v t="$TYPE" -v bad="$BAD" 'BEGIN {
  n = int((4 * 1024 * 1024 - 4096) / (length(bad) + 1))
  printf "{\"type\":\"%s\",\"data\":{\"names\":[", t
  for (i = 0; i < n; i++) printf "%s%s", i ? "," : "", bad
  printf "]}}" }' >"$WORK/big.json"

# post_body FILE ANSWER: "<status> <code> <seconds>" of one publish of FILE (answer in ANSWER).
post_body() {
  local res code
  res=$(curl -sS -m 120 -o "$2" -w '%{http_code} %{time_total}' \
    -H "Authorization: Bearer $PUB_TOKEN" -H 'Content-Type: application/json' \
    --data-binary "@$1" "$BASE/v1/events") || res="000 0"
  code=$(sed -n 's/.*"code":"\([a-z_]*\)".*/\1/p' "$2" 2>/dev/null | head -n1)
  echo "${res% *} ${code:--} ${res#* }"
}
declare -A ONE=()
for b in batch big; do
  ONE[$b]=$(post_body "$WORK/$b.json" "$WORK/answer-$b.json")
  say "one $b body ($(wc -c <"$WORK/$b.json") bytes): ${ONE[$b]}"
done

declare -A R=() # R[<phase>.p50_ms|p99_ms|max_ms|probes|bad]
# run_wrk PHASE: wrk -t1 -c1 health.lua for SECS -> R[PHASE.*]
run_wrk() {
  local phase=$1 wout=$WORK/wrk-$1.out line kv
  local W_requests=0 W_non200=0 W_errors=0 W_p50_us=0 W_p99_us=0 W_max_us=0
  if ! timeout $((SECS + 120)) wrk -t 1 -c 1 -d "${SECS}s" --timeout 30s \
    -s "$REPO/bench/validation_attack/health.lua" "$BASE/health" >"$wout" 2>&1; then
    cat "$wout" >&2
    die "wrk failed"
  fi
  line=$(grep '^BENCH ' "$wout") || {
    cat "$wout" >&2
    die "no BENCH line from wrk"
  }
  for kv in ${line#BENCH }; do
    case ${kv%%=*} in
      requests | non200 | errors | p50_us | p99_us | max_us) printf -v "W_${kv%%=*}" '%s' "${kv#*=}" ;;
    esac
  done
  ((W_requests > 0)) || die "wrk ($phase): no probe answered: $line"
  R[$phase.probes]=$W_requests
  R[$phase.bad]=$((W_non200 + W_errors))
  R[$phase.p50_ms]=$(awk -v u="$W_p50_us" 'BEGIN { printf "%.2f", u / 1000 }')
  R[$phase.p99_ms]=$(awk -v u="$W_p99_us" 'BEGIN { printf "%.2f", u / 1000 }')
  R[$phase.max_ms]=$(awk -v u="$W_max_us" 'BEGIN { printf "%.2f", u / 1000 }')
}

# attacker NAME FILE: publishes FILE back to back until $WORK/stop exists; one line per answer.
attacker() {
  local log=$WORK/attack-$1.log
  : >"$log"
  while [[ ! -e $WORK/stop ]]; do
    post_body "$2" "$WORK/answer-$1.json" >>"$log"
  done
}

say "a. idle: /health for ${SECS}s"
run_wrk idle

say "b. attacked: /health for ${SECS}s while two clients send worst-case bodies"
rm -f "$WORK/stop"
attacker batch "$WORK/batch.json" &
BENCH_PIDS+=("$!")
attacker big "$WORK/big.json" &
BENCH_PIDS+=("$!")
sleep 1 # both attackers are sending
run_wrk attacked
touch "$WORK/stop"
for p in "${BENCH_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
BENCH_PIDS=()

say "c. idle again: /health for ${SECS}s"
run_wrk after

# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------

# attack_stats NAME: "<requests> <answers as status code:count,...> <mean s> <max s>"
attack_stats() {
  awk '{ n++; a[$1 " " $2]++; t += $3; if ($3 > m) m = $3 }
    END { s = ""; for (k in a) s = s (s == "" ? "" : ", ") k " x" a[k]
          printf "%d|%s|%.3f|%.3f", n, s, n ? t / n : 0, m }' "$WORK/attack-$1.log"
}

base=$(awk -v a="${R[idle.p99_ms]}" -v c="${R[after.p99_ms]}" 'BEGIN { printf "%.2f", (a < c) ? a : c }')
ratio=$(awk -v a="${R[attacked.p99_ms]}" -v b="$base" 'BEGIN { printf "%.1f", (b > 0) ? a / b : 0 }')
verdict=$(bench_check "${R[attacked.p99_ms]}" "<" "$TARGET_MS")
failed=0
for ph in idle attacked after; do
  if ((R[$ph.bad] > 0)); then
    say "phase $ph: ${R[$ph.bad]} probes not answered 200"
    failed=1
  fi
done

echo
echo "bench/validation_attack — GET /health (wrk, 1 connection, a new TCP connection per probe, ${SECS}s per phase)"
echo "sluice $BIN, SLUICE_HTTP_THREADS=${SLUICE_HTTP_THREADS:-2}; $(bench_machine)"
printf '%-52s %8s %10s %10s %10s %6s\n' "phase" "probes" "p50 ms" "p99 ms" "max ms" "!200"
for ph in idle attacked after; do
  case $ph in
    idle) label="a. idle" ;;
    attacked) label="b. 2 clients sending worst-case validation bodies" ;;
    after) label="c. idle again" ;;
  esac
  printf '%-52s %8s %10s %10s %10s %6s\n' "$label" "${R[$ph.probes]}" "${R[$ph.p50_ms]}" \
    "${R[$ph.p99_ms]}" "${R[$ph.max_ms]}" "${R[$ph.bad]}"
done
echo
for b in batch big; do
  IFS='|' read -r n answers mean max <<<"$(attack_stats "$b")"
  case $b in
    batch) what="1,000 events x 1 bad name ($(wc -c <"$WORK/batch.json") bytes)" ;;
    big) what="1 event x ~4 MiB of bad names ($(wc -c <"$WORK/big.json") bytes)" ;;
  esac
  echo "attacker $b: $what: $n requests during b, answers: $answers; s per request: mean $mean, max $max"
  R[$b.mean]=$mean
done
echo "a single request of each, before the phases: batch ${ONE[batch]} s; big ${ONE[big]} s"
echo "target: attacked /health p99 < $TARGET_MS ms: ${R[attacked.p99_ms]} ms (x$ratio the idle p99, $base ms) $verdict"

bench_summary "/health p99, idle (new connection per probe)" "$base ms" "-" "-" "-"
bench_summary "/health p99 while 2 clients send worst-case validation bodies" \
  "${R[attacked.p99_ms]} ms" "idle = $base ms (x$ratio)" "< $TARGET_MS ms" \
  "$( ((failed)) && echo FAIL || echo "$verdict")"
bench_summary "worst-case publish (1,000-event batch / ~4 MiB event), time per request" \
  "${R[batch.mean]} s / ${R[big.mean]} s" "-" "-" "-"

if ((failed)); then exit 1; fi
if [[ ${BENCH_STRICT:-0} == 1 && $verdict != PASS ]]; then exit 3; fi

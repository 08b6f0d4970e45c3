#!/usr/bin/env bash
# bench/fanout/run.sh — the WebSocket fan-out benchmark (issue 4).
#
#   bench/fanout/run.sh            BENCH_SECONDS=10 per step, BENCH_FANOUT_SUBS=2000,
#                                  BENCH_FANOUT_RATES="10,20,30,40,50,75,100,150,200,300,500,750,1000"
#                                  (the search's events/s, ascending)
#
# Why: Sluice promises that a committed event reaches thousands of live subscribers quickly,
# that none is dropped, and that an idle connection costs little memory. This measures it with
# a load client in C (bench/fanout/client.c: epoll and the few RFC 6455 frames a subscriber
# needs; it shares the two cores with the server, so it must be cheap):
#   a. 2,000 WebSocket subscribers connect to one build/sluice and subscribe (types
#      ["bench.tick"]); server VmRSS before and after, divided by 2,000 = bytes per idle
#      connection (target < 16 KiB);
#   b. 100 events/s are published (POST /v1/events, each event's data carries its send time)
#      for BENCH_SECONDS: 200,000 deliveries/s. Publish-to-receive latency p50/p99 (target
#      p99 < 50 ms), drops = deliveries a subscriber never got (target 0);
#   c. the search: on the same 2,000 subscribers, publish rates from BENCH_FANOUT_RATES in
#      ascending order until p99 reaches 100 ms or an event is dropped; the highest passing
#      delivery rate (subscribers x events/s) is the answer;
#   d. the filter's cost: the same subscribers again, at BENCH_FANOUT_FILTER_RATE events/s
#      (default the target rate) for BENCH_FANOUT_FILTER_SECONDS (default BENCH_SECONDS),
#      unfiltered and then with a two-condition `where` on every subscription, alternated
#      BENCH_FANOUT_FILTER_ROUNDS times (default 2). Every event meets both conditions, so
#      the deliveries are the same and the difference is what matching costs: server CPU per
#      delivery with `where` / without (target <= 1.10). BENCH_FANOUT_FILTER=0 skips it.
# Prints one table; with BENCH_SUMMARY set (make bench, bench/all.sh) also appends the headline
# rows to that file: p99 at the target rate, drops, RSS per idle connection, the highest
# delivery rate that passed, the filter's cost. Exit 1 when the client fails; BENCH_STRICT=1 also fails on a
# missed target.
#
# Servers: SLUICE_DATABASE_URL / SLUICE_REDIS_URL when set, else the private ones of
# scripts/services.sh. Everything happens in a fresh database bench_fanout_<pid>, dropped at the
# end, and Redis keys under the prefix benchfan<pid>:, deleted at the end. Loopback only; every
# step is bounded by `timeout`.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"

SECS=${BENCH_SECONDS:-10}
SUBS=${BENCH_FANOUT_SUBS:-2000}
TARGET_RATE=100
RATES=${BENCH_FANOUT_RATES:-10,20,30,40,50,75,100,150,200,300,500,750,1000}
FILTER=${BENCH_FANOUT_FILTER:-1}
FSECS=${BENCH_FANOUT_FILTER_SECONDS:-$SECS}
FRATE=${BENCH_FANOUT_FILTER_RATE:-$TARGET_RATE}
FROUNDS=${BENCH_FANOUT_FILTER_ROUNDS:-2}
# Both conditions hold for every bench.tick event (bench_i counts from 0): one on `data`,
# one on an envelope field.
WHERE='[{"path":"/data/bench_i","op":"gte","value":0},{"path":"/type","op":"prefix","value":"bench."}]'
[[ $SECS =~ ^[1-9][0-9]*$ && $SUBS =~ ^[1-9][0-9]*$ && $RATES =~ ^[0-9,]+$ ]] || {
  echo "bench/fanout: BENCH_SECONDS, BENCH_FANOUT_SUBS must be positive integers, BENCH_FANOUT_RATES a comma list" >&2
  exit 2
}
[[ $FILTER =~ ^[01]$ && $FSECS =~ ^[1-9][0-9]*$ && $FRATE =~ ^[1-9][0-9]*$ && $FROUNDS =~ ^[1-9][0-9]*$ ]] || {
  echo "bench/fanout: BENCH_FANOUT_FILTER is 0 or 1; BENCH_FANOUT_FILTER_SECONDS, _RATE, _ROUNDS positive integers" >&2
  exit 2
}
BENCH_NAME=fanout DB=bench_fanout_$$ PREFIX=benchfan$$:
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

[[ -x $BIN ]] || die "$BIN not found; build it first (make)"

# The client holds one descriptor per subscriber (the server raises its own limit).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
(($(ulimit -n) > SUBS + 256)) || die "ulimit -n is $(ulimit -n): too low for $SUBS subscribers"

bench_servers all

# ---------------------------------------------------------------------------------------------
# The client, the database, the server
# ---------------------------------------------------------------------------------------------

say "building the load client"
cc -O2 -std=gnu11 -Wall -Wextra -Wno-unused-parameter -o "$WORK/fanout-client" \
  bench/fanout/client.c -lpthread ||
  die "could not build bench/fanout/client.c"

bench_database
bench_start_sluice SLUICE_ACCESS_LOG=off SLUICE_ALLOW_UNKNOWN_TYPES=1
[[ -n $WS_PORT && $WS_PORT != 0 ]] || die "sluice logged no WebSocket port"
say "sluice pid $SLUICE_PID, HTTP 127.0.0.1:$HTTP_PORT, WebSocket 127.0.0.1:$WS_PORT"

probe=$(curl -sS -m 10 -o "$WORK/probe.json" -w '%{http_code}' -X POST \
  "http://127.0.0.1:$HTTP_PORT/v1/events" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -d '{"type":"bench.warmup","data":{}}') || probe=000
[[ $probe == 201 ]] || {
  cat "$WORK/probe.json" >&2 2>/dev/null || true
  die "probe publish answered $probe, not 201"
}

# ---------------------------------------------------------------------------------------------
# The run: idle connections, then the target rate, then the search
# ---------------------------------------------------------------------------------------------

# Other work on the machine skews every latency: note it (the table prints it too).
read -r LOAD1 _ </proc/loadavg
if awk -v l="$LOAD1" 'BEGIN { exit !(l > 1.5) }'; then
  say "warning: load average $LOAD1 before the run: other processes compete for the cores"
fi
steps=$(($(tr ',' '\n' <<<"$RATES" | grep -c .) + 1))
bound=$((240 + steps * (SECS + 60)))
say "$SUBS subscribers; target $TARGET_RATE events/s, then the search over $RATES events/s, ${SECS}s each (bounded by ${bound}s)"
set +e
timeout -k 5 "$bound" "$WORK/fanout-client" --http-port "$HTTP_PORT" --ws-port "$WS_PORT" \
  --token "$TOKEN" --pid "$SLUICE_PID" --subs "$SUBS" --seconds "$SECS" --rates "$TARGET_RATE,$RATES" \
  --search >"$WORK/client.out" 2> >(tee "$WORK/client.err" >&2) &
BENCH_PIDS+=("$!") # killed at exit if the run is cut short (timeout passes it on)
wait "$!"
client_rc=$?
set -e
cat "$WORK/client.out" >&2
if ! running "$SLUICE_PID"; then
  tail -n 30 "$WORK/sluice.log" >&2
  die "sluice died during the run"
fi
grep -q '^IDLE ' "$WORK/client.out" || die "the client reported nothing (exit $client_rc)"

# d. the filter's cost: one client run per mode and round, unfiltered first, on the same server
# (each run connects its subscribers afresh); its lines go to filter.out prefixed by the mode.
: >"$WORK/filter.out"
if ((FILTER)); then
  say "the filter's cost: $SUBS subscribers at $FRATE events/s, ${FSECS}s, unfiltered and with where $WHERE, $FROUNDS rounds"
  for ((round = 1; round <= FROUNDS; round++)); do
    for mode in plain where; do
      fargs=()
      [[ $mode == where ]] && fargs=(--where "$WHERE")
      set +e
      timeout -k 5 $((240 + FSECS + 60)) "$WORK/fanout-client" --http-port "$HTTP_PORT" --ws-port "$WS_PORT" \
        --token "$TOKEN" --pid "$SLUICE_PID" --subs "$SUBS" --seconds "$FSECS" --rates "$FRATE" "${fargs[@]}" \
        >"$WORK/filter-step.out" 2> >(tee -a "$WORK/client.err" >&2) &
      BENCH_PIDS+=("$!")
      wait "$!"
      frc=$?
      set -e
      sed "s/^/$mode /" "$WORK/filter-step.out" >>"$WORK/filter.out"
      cat "$WORK/filter-step.out" >&2
      running "$SLUICE_PID" || die "sluice died during the filter runs"
      ((frc == 0)) || die "the load client exited $frc in the filter run ($mode, round $round)"
    done
  done
fi
slow_closes=$(grep -c '"slow consumer' "$WORK/sluice.log" || true)
bench_stop_sluice

# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------

awk -v subs="$SUBS" -v secs="$SECS" -v load="$LOAD1" -v strict="${BENCH_STRICT:-0}" \
  -v target_rate="$TARGET_RATE" -v summary="${BENCH_SUMMARY:-}" '
function kv(line, key,    re, m) {
  if (match(line, "(^| )" key "=[^ ]*")) { m = substr(line, RSTART, RLENGTH); sub(/^ /, "", m); sub(/^[^=]*=/, "", m); return m }
  return ""
}
/^IDLE / { idle = $0 }
/^STEP / { steps[++n] = $0 }
END {
  per = kv(idle, "per_conn_bytes") + 0
  printf "\nSluice WebSocket fan-out benchmark (%d subscribers, %d s per step, durable publish; load average %s at the start)\n\n", subs, secs, load
  printf "%-44s %14s %14s %s\n", "measure", "value", "target", "verdict"
  printf "%-44s %14s %14s %s\n", "idle connections (subscribed)", kv(idle, "subs"), subs, (kv(idle, "subs") + 0 == subs ? "PASS" : "MISS")
  printf "%-44s %14s %14s %s\n", "server VmRSS before / after (KiB)", kv(idle, "rss_before_kib") " / " kv(idle, "rss_after_kib"), "", ""
  printf "%-44s %14.1f %14s %s\n", "server RSS per idle connection (KiB)", per / 1024, "< 16", (per < 16384 ? "PASS" : "MISS")
  miss = (per >= 16384) || (kv(idle, "subs") + 0 != subs)
  if (n >= 1) {
    s = steps[1]
    printf "%-44s %14s %14s %s\n", "events/s published (target step)", kv(s, "eps"), "100", ""
    printf "%-44s %14.0f %14s %s\n", "deliveries/s", kv(s, "eps") * kv(s, "subs"), subs * 100, ""
    printf "%-44s %14s %14s %s\n", "publish-to-receive p50 (ms)", kv(s, "p50_ms"), "", ""
    printf "%-44s %14s %14s %s\n", "publish-to-receive p99 (ms)", kv(s, "p99_ms"), "< 50", (kv(s, "p99_ms") + 0 < 50 ? "PASS" : "MISS")
    printf "%-44s %14s %14s %s\n", "publish-to-receive max (ms)", kv(s, "max_ms"), "", ""
    printf "%-44s %14s %14s %s\n", "drops (deliveries never received)", kv(s, "drops"), "0", (kv(s, "drops") + 0 == 0 && kv(s, "failed") + 0 == 0 ? "PASS" : "MISS")
    if (kv(s, "p99_ms") + 0 >= 50 || kv(s, "drops") + 0 > 0 || kv(s, "failed") + 0 > 0) miss = 1
  } else { miss = 1 }
  printf "\nsteps (the first is the target rate; then the search: p99 < 100 ms and zero drops)\n"
  printf "%8s %6s %8s %12s %9s %9s %9s %8s %7s %7s %9s %7s %7s %7s %s\n", "rate", "subs", "eps", "deliveries/s", "p50 ms", "p99 ms", "max ms", "drops", "closed", "disord", "rss KiB", "srv cpu", "srv thr", "cli cpu", "verdict"
  best = 0; bestline = ""
  for (i = 1; i <= n; i++) {
    if (i == 2) printf "%s\n", "-- search --"
    s = steps[i]
    ok = (kv(s, "p99_ms") + 0 < 100 && kv(s, "drops") + 0 == 0 && kv(s, "failed") + 0 == 0 && kv(s, "disorder") + 0 == 0 && kv(s, "subs") + 0 == subs)
    d = kv(s, "eps") * kv(s, "subs")
    printf "%8s %6s %8s %12.0f %9s %9s %9s %8s %7s %7s %9s %7s %7s %7s %s\n", kv(s, "rate"), kv(s, "subs"), kv(s, "eps"), d, kv(s, "p50_ms"), kv(s, "p99_ms"), kv(s, "max_ms"), kv(s, "drops"), kv(s, "closed"), kv(s, "disorder"), kv(s, "rss_kib"), kv(s, "server_cpu"), kv(s, "server_thread_max"), kv(s, "client_cpu"), (ok ? "pass" : "FAIL")
    if (ok && d > best) { best = d; bestline = s }
  }
  if (best > 0) printf "\nhighest delivery rate with p99 < 100 ms and zero drops: %.0f deliveries/s (%s subscribers x %s events/s)\n", best, kv(bestline, "subs"), kv(bestline, "eps")
  else printf "\nno step passed p99 < 100 ms with zero drops\n"
  if (n >= 2 && ok) printf "(the last rate tried still passed: raise BENCH_FANOUT_RATES to search further)\n"
  printf "srv cpu: sluice CPU (100%% = one core); srv thr: its busiest thread; cli cpu: the load client\n"
  # The make bench summary (bench/all.sh): benchmark, measure, value, baseline, target, verdict
  if (summary != "") {
    T = "\t"
    if (n >= 1) {
      s = steps[1]
      v = (kv(s, "p99_ms") + 0 < 50)
      printf "fanout%s%s%s%s ms (p50 %s ms, load %s)%s-%s< 50 ms%s%s\n", T, \
        sprintf("publish-to-receive p99, %d subscribers x %d events/s", subs, target_rate), T, \
        kv(s, "p99_ms"), kv(s, "p50_ms"), load, T, T, T, (v ? "PASS" : "MISS") >> summary
      v = (kv(s, "drops") + 0 == 0 && kv(s, "failed") + 0 == 0)
      printf "fanout%sdrops at %d events/s (of %s deliveries)%s%s%s%s-%s0%s%s\n", T, target_rate, \
        kv(s, "expected"), T, kv(s, "drops"), (kv(s, "failed") + 0 ? " (" kv(s, "failed") " publishes failed)" : ""), \
        T, T, T, (v ? "PASS" : "MISS") >> summary
    } else {
      printf "fanout%spublish-to-receive p99 at %d events/s%s-%s-%s< 50 ms%sMISS\n", T, target_rate, T, T, T, T >> summary
    }
    printf "fanout%sserver RSS per idle WebSocket connection%s%.1f KiB%s-%s< 16 KiB%s%s\n", T, T, per / 1024, \
      T, T, T, (per < 16384 ? "PASS" : "MISS") >> summary
    if (best > 0)
      printf "fanout%shighest delivery rate with p99 < 100 ms and zero drops%s%.0f deliveries/s (%s x %s events/s%s)%s-%s-%s-\n", \
        T, T, best, kv(bestline, "subs"), kv(bestline, "eps"), (n >= 2 && ok ? ", the last rate tried" : ""), T, T, T >> summary
    else
      printf "fanout%shighest delivery rate with p99 < 100 ms and zero drops%snone passed%s-%s-%s-\n", T, T, T, T, T >> summary
  }
  if (strict && miss) exit 3
}' "$WORK/client.out" || {
  rc=$?
  if ((rc == 3)); then die "a target was missed (BENCH_STRICT=1)"; fi
  exit "$rc"
}

# The filter's cost: per mode, server CPU seconds over deliveries across the rounds.
if ((FILTER)); then
  awk -v subs="$SUBS" -v secs="$FSECS" -v rate="$FRATE" -v rounds="$FROUNDS" -v where="$WHERE" \
    -v strict="${BENCH_STRICT:-0}" -v summary="${BENCH_SUMMARY:-}" '
function kv(line, key,    m) {
  if (match(line, "(^| )" key "=[^ ]*")) { m = substr(line, RSTART, RLENGTH); sub(/^ /, "", m); sub(/^[^=]*=/, "", m); return m }
  return ""
}
$2 == "STEP" {
  m = $1; n[m]++
  cpu[m] += kv($0, "server_cpu_s"); got[m] += kv($0, "received"); want[m] += kv($0, "expected")
  drops[m] += kv($0, "drops") + kv($0, "failed"); pct[m] += kv($0, "server_cpu") + 0
  p50[m] += kv($0, "p50_ms"); p99[m] += kv($0, "p99_ms"); eps[m] += kv($0, "eps")
}
END {
  if (!n["plain"] || !n["where"] || !got["plain"] || !got["where"]) {
    print "\nthe filter cost: no complete run"
    if (summary != "") printf "fanout\tserver CPU per delivery, where / unfiltered\t-\t-\t<= 1.10x\tMISS\n" >> summary
    exit (strict ? 3 : 0)
  }
  for (m in n) { us[m] = cpu[m] / got[m] * 1e6 }
  ratio = us["where"] / us["plain"]
  ok = ratio <= 1.10 && drops["plain"] == 0 && drops["where"] == 0 && got["plain"] == want["plain"] && got["where"] == want["where"]
  printf "\nthe filter'"'"'s cost: %d subscribers x %d events/s, %d s per run, %d rounds each, alternated\n", subs, rate, secs, rounds
  printf "where (every event meets it): %s\n\n", where
  printf "%-12s %10s %14s %12s %9s %9s %9s %8s\n", "subscribers", "events/s", "deliveries", "srv cpu", "µs/deliv", "p50 ms", "p99 ms", "drops"
  split("plain where", order, " ")
  for (i = 1; i <= 2; i++) {
    m = order[i]
    printf "%-12s %10.1f %14d %11.0f%% %9.3f %9.2f %9.2f %8d\n", (m == "plain" ? "unfiltered" : "with where"), eps[m] / n[m], got[m], pct[m] / n[m], us[m], p50[m] / n[m], p99[m] / n[m], drops[m]
  }
  printf "\nserver CPU per delivery, with where / unfiltered: %.3f (target <= 1.10: %s)\n", ratio, (ok ? "PASS" : "MISS")
  printf "(srv cpu: sluice CPU while publishing, 100%% = one core, mean of the rounds; µs/deliv: its CPU seconds over deliveries)\n"
  if (summary != "")
    printf "fanout\tserver CPU per delivery with a two-condition where, %d x %d events/s\t%.3f µs (%.2fx)\t%.3f µs unfiltered\t<= 1.10x\t%s\n", subs, rate, us["where"], ratio, us["plain"], (ok ? "PASS" : "MISS") >> summary
  if (strict && !ok) exit 3
}' "$WORK/filter.out" || {
    rc=$?
    if ((rc == 3)); then die "the filter cost missed its target (BENCH_STRICT=1)"; fi
    exit "$rc"
  }
fi
echo "slow-consumer closes logged by sluice: ${slow_closes:-0}"
((client_rc == 0)) || die "the load client exited $client_rc"

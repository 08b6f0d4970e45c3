#!/usr/bin/env bash
# bench/all.sh — `make bench`: every benchmark of Sluice, one after the other, each printing
# its own table with its figures beside the baseline it measured in the same run; then one
# table of every headline figure, with the machine above it:
#   bench/run.sh            durable publish vs pgbench and the Node service (bench/peer-node),
#                           CPU per event per process; the Redis relay lag (issues 2, 4)
#   bench/validate/run.sh   the JSON Schema validator vs ajv (issue 3)
#   bench/fanout/run.sh     WebSocket fan-out, unfiltered and with a two-condition `where` (issue 4)
#   bench/history/run.sh    NDJSON reads vs psql \copy; projection catch-up (issue 5)
#   bench/groups/run.sh     the consumer-group sweeper (issue 6)
#   bench/consumer/run.sh   consumer API fetch + ack vs the same workers reading Redis (issue 15)
#   bench/webhooks/run.sh   webhook deliveries/s vs a node:http sender to the same receivers;
#                           delivery lag at 1,000 events/s (issue 16)
#   bench/unauth/run.sh     RSS under unauthenticated slow and large bodies (issue 13)
#   bench/tenants/run.sh    one tenant's publish p99 while another holds its caps (issue 13)
#   bench/validation_attack/run.sh  /health p99 under worst-case validation bodies (issue 13)
#   bench/insert/run.sh     COPY vs INSERT, and what each index costs per insert (issue 12)
#   bench/partitions/run.sh the append-latency curve: single-event p99 at 0, 2M and 10M stored
#                           events, partitions of 1M, vs one partition (issue 17); last, as it
#                           writes ~14 GB (dropped at its end) and takes ~11 minutes
# Each script appends its headline rows to $BENCH_SUMMARY (bench/lib.sh, bench_summary: six
# tab-separated fields, benchmark / measure / Sluice / baseline / target / verdict). A script
# that fails, or leaves no row, gets a row saying so. A missing benchmark is reported, not
# fatal; a failing one makes the exit non-zero.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
REPO=$PWD

BENCH_SUMMARY=$(mktemp -t sluice-bench-summary.XXXXXX)
export BENCH_SUMMARY
trap 'rm -f "$BENCH_SUMMARY"' EXIT

BENCH_LIB_FUNCTIONS_ONLY=1 BENCH_NAME=all
# shellcheck source=bench/lib.sh
source bench/lib.sh
machine_start=$(bench_machine)
started=$(date -u '+%Y-%m-%d %H:%M UTC')

status=0
for b in bench/run.sh bench/insert/run.sh bench/validate/run.sh bench/fanout/run.sh bench/history/run.sh \
  bench/groups/run.sh bench/consumer/run.sh bench/webhooks/run.sh bench/unauth/run.sh bench/tenants/run.sh bench/longpoll/run.sh bench/validation_attack/run.sh \
  bench/partitions/run.sh; do
  case "$b" in
    bench/run.sh) name=publish ;;
    *) name=${b#bench/} name=${name%/run.sh} ;;
  esac
  echo
  echo "################ $b"
  if [[ ! -x $b ]]; then
    echo "(not present)"
    printf '%s\t%s\t-\t-\t-\t-\n' "$name" "(not present)" >>"$BENCH_SUMMARY"
    continue
  fi
  before=$(grep -c . "$BENCH_SUMMARY")
  "$b"
  rc=$?
  if ((rc != 0)); then
    echo "bench: $b failed"
    printf '%s\t%s\t-\t-\t-\tFAIL\n' "$name" "$b exited $rc (see its output above)" >>"$BENCH_SUMMARY"
    status=1
  elif (($(grep -c . "$BENCH_SUMMARY") == before)); then
    printf '%s\t%s\t-\t-\t-\t-\n' "$name" "(no summary rows: see its table above)" >>"$BENCH_SUMMARY"
  fi
done

# ---------------------------------------------------------------------------------------------
# The table: columns as wide as their widest cell (in characters, so "→" counts once)
# ---------------------------------------------------------------------------------------------

print_table() {
  local LC_ALL=C.UTF-8 line i cell out
  local -a rows=() width=(0 0 0 0 0 0) f
  rows+=("benchmark"$'\t'"measure"$'\t'"Sluice"$'\t'"baseline, same run"$'\t'"target"$'\t'"verdict")
  while IFS= read -r line; do [[ -n $line ]] && rows+=("$line"); done <"$BENCH_SUMMARY"
  for line in "${rows[@]}"; do
    IFS=$'\t' read -r -a f <<<"$line"
    for i in 0 1 2 3 4 5; do
      cell=${f[i]:--}
      ((${#cell} > width[i])) && width[i]=${#cell}
    done
  done
  for line in "${rows[@]}"; do
    IFS=$'\t' read -r -a f <<<"$line"
    out=""
    for i in 0 1 2 3 4 5; do
      cell=${f[i]:--}
      out+="$cell$(printf '%*s' $((width[i] - ${#cell})) '')"
      ((i < 5)) && out+="  "
    done
    echo "${out%"${out##*[! ]}"}"
  done
}

echo
echo "################ make bench: every headline figure (started $started)"
echo "machine: $machine_start (at the start)"
echo "         load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; the load generators share these cores"
echo
print_table
exit $status

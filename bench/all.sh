#!/usr/bin/env bash
# bench/all.sh — `make bench`: every benchmark of Sluice, one after the other,
# each printing its figures beside the baseline it measured in the same run.
#   bench/run.sh            durable publish vs pgbench (issue 2)
#   bench/validate/run.sh   the JSON Schema validator vs ajv (issue 3)
#   bench/fanout/run.sh     WebSocket fan-out (issue 4)
#   bench/history/run.sh    NDJSON reads vs psql \copy; projection catch-up (issue 5)
#   bench/groups/run.sh     the consumer-group sweeper (issue 6)
# A missing benchmark is reported, not fatal; a failing one makes the exit non-zero.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
status=0
for b in bench/run.sh bench/validate/run.sh bench/fanout/run.sh bench/history/run.sh \
  bench/groups/run.sh; do
  echo
  echo "################ $b"
  if [[ ! -x $b ]]; then
    echo "(not present)"
    continue
  fi
  if ! "$b"; then
    echo "bench: $b failed"
    status=1
  fi
done
exit $status

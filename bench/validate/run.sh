#!/usr/bin/env bash
# run.sh — the validator benchmark (issue 3): Sluice's validator against ajv on
# the same schemas and instances (cases.json), each pinned to the same core,
# in one run.
#   1. builds bench.c with the validator sources into build/bench-validate;
#   2. installs ajv + ajv-formats from package-lock.json (npm ci) if needed;
#   3. checks both agree on which instances are valid;
#   4. measures three mixes and prints both rates (validations per CPU-second
#      of the process: steadier than wall time when other work shares the
#      machine; the wall-clock rates are printed too) and the ratio of each:
#        valid    the 24 valid events: a gateway's normal traffic (the target
#                 of issue 3 is this ratio >= 2x);
#        invalid  the 6 invalid events alone, every violation listed (the
#                 cost of building the 422's error list);
#        all      all 30 round-robin (one event in five invalid).
#   5. with BENCH_SUMMARY set (make bench), one row per mix for bench/all.sh's table
#      (bench/lib.sh's format; the validator needs no server, so nothing else of lib.sh runs).
# Usage: bench/validate/run.sh [SECONDS] [MIX...]   (default 3 s; valid invalid all)
#        BENCH_CPU=n picks the core (default: the last one).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
seconds=${1:-3}
shift || true
mixes=("$@")
[[ ${#mixes[@]} -gt 0 ]] || mixes=(valid invalid all)
cd "$repo"
REPO=$repo BENCH_NAME=validate
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"

mkdir -p build
# shellcheck disable=SC2046
cc -O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Iserver \
  $(pkg-config --cflags jansson libpcre2-8) \
  -o build/bench-validate bench/validate/bench.c \
  server/schema/validator.c server/schema/validator_compile.c server/schema/validator_uri.c \
  server/schema/validator_metaschema.c server/schema/format.c server/schema/regex.c \
  server/mem.c server/problem.c \
  $(pkg-config --libs jansson libpcre2-8) -lpthread -lm

if [[ ! -d "$here/node_modules/ajv" || ! -d "$here/node_modules/ajv-formats" ]]; then
  (cd "$here" && npm ci --no-audit --no-fund >/dev/null)
fi

cpu=${BENCH_CPU:-$(($(nproc) - 1))}
pin=()
if command -v taskset >/dev/null; then pin=(taskset -c "$cpu"); fi
echo "cpu $cpu; $(uptime | sed 's/.*load average/load average/') (other work skews the numbers)"

sv=$("${pin[@]}" build/bench-validate bench/validate/cases.json 0.01 | grep '^validity:')
av=$("${pin[@]}" node "$here/bench.js" bench/validate/cases.json 0.01 | grep '^validity:')
if [[ "$sv" != "$av" ]]; then
  echo "DISAGREE: Sluice and ajv differ on which instances are valid" >&2
  echo "  sluice $sv" >&2
  echo "  ajv    $av" >&2
  exit 1
fi
echo "agree on $sv"

for mix in "${mixes[@]}"; do
  s_out=$("${pin[@]}" build/bench-validate bench/validate/cases.json "$seconds" "$mix" | tail -1)
  a_out=$("${pin[@]}" node "$here/bench.js" bench/validate/cases.json "$seconds" "$mix" | tail -1)
  s=$(sed -n 's/^sluice: \([0-9]*\) validations.*/\1/p' <<<"$s_out")
  a=$(sed -n 's/^ajv: \([0-9]*\) validations.*/\1/p' <<<"$a_out")
  echo "[$mix] $s_out"
  echo "[$mix] $a_out"
  awk -v m="$mix" -v s="$s" -v a="$a" \
    'BEGIN { printf "[%s] sluice %d/s, ajv %d/s: sluice/ajv = %.2fx\n", m, s, a, s / a }'
  ratio=$(awk -v s="$s" -v a="$a" 'BEGIN { printf "%.2f", s / a }')
  case "$mix" in
    valid) what="24 valid events" target=">= 2x" v=$(bench_check "$ratio" ">=" 2) ;;
    invalid) what="6 invalid events, every error listed" target="-" v="-" ;;
    *) what="all 30 round-robin (1 in 5 invalid)" target="-" v="-" ;;
  esac
  bench_summary "validations per CPU-second: $what" "$s/s" "ajv + ajv-formats = $a/s (${ratio}x)" \
    "$target" "$v"
done

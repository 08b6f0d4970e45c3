#!/usr/bin/env bash
# run.sh — the validator benchmark (issue 3): Sluice's validator against ajv on
# the same schemas and instances (cases.json), each on one core, in one run.
#   1. builds bench.c with the validator sources into build/bench-validate;
#   2. installs ajv + ajv-formats from package-lock.json (npm ci) if needed;
#   3. runs both pinned to the same core, checks they agree on which
#      instances are valid, and prints both rates and the ratio.
# Usage: bench/validate/run.sh [SECONDS]   (default 3 per side)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
seconds=${1:-3}
cd "$repo"

mkdir -p build
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

cpu=$(( $(nproc) - 1 ))
pin=()
if command -v taskset >/dev/null; then pin=(taskset -c "$cpu"); fi
echo "load: $(uptime | sed 's/.*load average/load average/')"

sluice_out=$("${pin[@]}" build/bench-validate bench/validate/cases.json "$seconds")
ajv_out=$("${pin[@]}" node "$here/bench.js" bench/validate/cases.json "$seconds")
echo "$sluice_out"
echo "$ajv_out"

sv=$(grep '^validity:' <<<"$sluice_out")
av=$(grep '^validity:' <<<"$ajv_out")
if [[ "$sv" != "$av" ]]; then
  echo "DISAGREE: Sluice and ajv differ on which instances are valid" >&2
  exit 1
fi

s=$(sed -n 's/^sluice: \([0-9]*\) validations.*/\1/p' <<<"$sluice_out")
a=$(sed -n 's/^ajv: \([0-9]*\) validations.*/\1/p' <<<"$ajv_out")
awk -v s="$s" -v a="$a" 'BEGIN { printf "sluice %d/s, ajv %d/s: sluice/ajv = %.2fx (target >= 2x)\n", s, a, s / a }'

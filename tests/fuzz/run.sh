#!/usr/bin/env bash
# tests/fuzz/run.sh — builds the libFuzzer targets and runs each for a bounded time
# (issue 8, "Hostile input"). Called by `make test`; runnable alone.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 20); TARGETs default to all of them (tests/fuzz/*.c).
# Each target runs with its kept corpus tests/fuzz/corpus/<target>/ as seeds, read-only,
# and the shared dictionary tests/fuzz/json.dict (JSON syntax, field names, keywords):
# new inputs libFuzzer finds go to a temporary directory, deleted at exit unless
# FUZZ_KEEP_NEW=1 (then its path is printed; `<target> -merge=1 corpus/<t> <dir>` keeps the
# interesting ones). A crash, leak, UBSan report, broken contract (fuzz_fail), timeout
# (FUZZ_TIMEOUT seconds for one input, default 25) or out-of-memory (2 GB) fails the run:
# the input is saved as build/fuzz/artifacts/<target>-crash-… and the log's tail printed.
# Full logs: build/fuzz/logs/<target>.log. Exits 0 only when every target ran clean.
#
# Needs clang with libFuzzer (Debian: clang, libclang-rt-14-dev).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

seconds=${1:-20}
shift || true
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds < 1)); then
  echo "usage: tests/fuzz/run.sh [SECONDS] [TARGET...]" >&2
  exit 2
fi
if (($# > 0)); then
  targets=("$@")
else
  targets=()
  for f in tests/fuzz/*.c; do targets+=("$(basename "$f" .c)"); done
fi
for t in "${targets[@]}"; do
  if [[ ! -f tests/fuzz/$t.c ]]; then
    echo "fuzz: no target '$t' (tests/fuzz/$t.c)" >&2
    exit 2
  fi
done

if ! command -v "${FUZZ_CC:-clang}" >/dev/null 2>&1; then
  echo "fuzz: ${FUZZ_CC:-clang} not found (apt-get install clang libclang-rt-14-dev)" >&2
  exit 1
fi

jobs=$(nproc 2>/dev/null || echo 2)
echo "fuzz: building ${targets[*]}"
make -s build/gen/migrations.c build/gen/openapi.c build/gen/openapi_json.c build/gen/catalog.c
make -s -f tests/fuzz/fuzz.mk -j"$jobs" "${targets[@]/#/build/fuzz/}"

mkdir -p build/fuzz/logs build/fuzz/artifacts
scratch=$(mktemp -d -t sluice-fuzz.XXXXXX)
if [[ ${FUZZ_KEEP_NEW:-0} == 1 ]]; then
  trap 'echo "fuzz: new inputs kept in $scratch"' EXIT
else
  trap 'rm -rf "$scratch"' EXIT
fi

export ASAN_OPTIONS="detect_leaks=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
export LSAN_OPTIONS="suppressions=$repo/tests/lsan.supp:print_suppressions=0:${LSAN_OPTIONS:-}"

failed=()
for t in "${targets[@]}"; do
  corpus=tests/fuzz/corpus/$t
  mkdir -p "$scratch/$t"
  log=build/fuzz/logs/$t.log
  seeds=$(find "$corpus" -type f 2>/dev/null | wc -l)
  rc=0
  # The first directory receives new inputs; the kept corpus is only read.
  build/fuzz/"$t" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 \
    -timeout="${FUZZ_TIMEOUT:-25}" -print_final_stats=1 -dict=tests/fuzz/json.dict \
    -artifact_prefix=build/fuzz/artifacts/"$t"- \
    "$scratch/$t" "$corpus" >"$log" 2>&1 || rc=$?
  execs=$(LC_ALL=C sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  last=$(grep -aE '^#[0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' || true)
  found=$(find "$scratch/$t" -type f | wc -l)
  if ((rc == 0)); then
    printf 'fuzz: %-12s ok      %ss, %s runs, %s, %s seeds + %s new\n' \
      "$t" "$seconds" "${execs:-?}" "${last:-?}" "$seeds" "$found"
  else
    printf 'fuzz: %-12s FAILED  (exit %s) after %s runs; log %s\n' "$t" "$rc" "${execs:-?}" "$log"
    grep -aE 'ERROR: |SUMMARY: |fuzz: |runtime error|Test unit written' "$log" | head -20 | sed 's/^/    /'
    failed+=("$t")
  fi
done

if ((${#failed[@]} > 0)); then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]} (inputs in build/fuzz/artifacts/)"
  exit 1
fi
echo "fuzz: ${#targets[@]} target(s) clean"

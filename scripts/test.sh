#!/usr/bin/env bash
# test.sh — what `make test` runs after scripts/install-deps.sh: every test of
# Sluice against real servers.
#   1. build the release binary and the AddressSanitizer/UBSan build;
#   2. Criterion unit tests and the JSON-Schema-Test-Suite conformance run, under
#      the sanitizers;
#   3. a private PostgreSQL and Redis (scripts/services.sh), unless
#      SLUICE_DATABASE_URL and SLUICE_REDIS_URL name servers to use;
#   4. the OpenAPI lint, then the integration suite (tests/integration) against
#      the sanitizer build, so a leak, overflow or undefined behaviour anywhere
#      fails the run, and the memory-bound test on the release build;
#   5. the dashboard's browser tests (headless Chromium) and the fuzz targets,
#      each for a bounded time.
# SLUICE_FAULTS_ONLY=1 (make faults) runs only the crash/outage/partition/failover files.
# Prints one closing line "N passed, N failed" over the suites it ran.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

jobs=$(nproc 2>/dev/null || echo 2)
passed=0
failed=0
suite() { # suite NAME COMMAND...
  local name=$1; shift
  echo "=== $name"
  if "$@"; then
    passed=$((passed + 1)); echo "=== $name: ok"
  else
    failed=$((failed + 1)); echo "=== $name: FAILED"
  fi
}

echo "=== build"
make -j"$jobs" all
make -j"$jobs" SANITIZER=address build/asan/sluice build/asan/unit-tests build/asan/conformance
# Test-only npm packages (the cloudevents SDK as a real CloudEvents client).
npm ci --prefix tests --no-audit --no-fund --loglevel=error

# A small quarantine keeps RSS close to the release build's, so memory-bound tests
# (a paused WebSocket subscriber) measure Sluice, not the sanitizer.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=66:quarantine_size_mb=16:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
export LSAN_OPTIONS="suppressions=$repo/tests/lsan.supp:print_suppressions=0:${LSAN_OPTIONS:-}"

suite "unit (Criterion, ASan+UBSan)" build/asan/unit-tests --jobs="$jobs"
suite "conformance (JSON-Schema-Test-Suite draft 2020-12, ASan+UBSan)" \
  build/asan/conformance tests/conformance/json-schema-test-suite/draft2020-12

if [[ -z "${SLUICE_DATABASE_URL:-}" || -z "${SLUICE_REDIS_URL:-}" ]]; then
  export SLUICE_RUN_DIR="${SLUICE_RUN_DIR:-$repo/.sluice}"
  scripts/services.sh start
  # shellcheck disable=SC1091
  source "$SLUICE_RUN_DIR/env"
fi

if [[ -n "${SLUICE_FAULTS_ONLY:-}" ]]; then
  # make faults: crashes, outages, a network partition and leader loss only.
  faults=()
  for f in crash outage partition relay groups tail dead_letters; do
    [[ -f tests/integration/$f.test.js ]] && faults+=("tests/integration/$f.test.js")
  done
  suite "faults (ASan build)" env SLUICE_BIN="$repo/build/asan/sluice" \
    tests/integration/run.sh "${faults[@]}"
  echo "$passed passed, $failed failed"
  [[ $failed -eq 0 ]]
  exit
fi

suite "openapi lint (@redocly/cli)" tests/node_modules/.bin/redocly lint openapi/openapi.yaml \
  --format=stylish

suite "integration (real PostgreSQL + Redis, ASan build)" \
  env SLUICE_BIN="$repo/build/asan/sluice" tests/integration/run.sh
# The memory bound of a slow NDJSON reader is the release build's to prove (the sanitizer's
# allocator quarantine hides what Sluice itself holds), so that file runs once more on it.
suite "memory bounds (release build)" \
  env SLUICE_BIN="$repo/build/sluice" tests/integration/run.sh tests/integration/ndjson_memory.test.js

if [[ -x tests/browser/run.sh ]]; then
  suite "browser (headless Chromium, the dashboard)" \
    env SLUICE_BIN="$repo/build/sluice" tests/browser/run.sh
fi

if [[ -x tests/fuzz/run.sh ]]; then
  suite "fuzz (libFuzzer, bounded, kept corpus)" tests/fuzz/run.sh "${SLUICE_FUZZ_SECONDS:-15}"
fi

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]

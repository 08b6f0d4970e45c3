#!/usr/bin/env bash
# test.sh — what `make test` runs after scripts/install-deps.sh: every test of
# Sluice against real servers.
#   1. build the release binary and the AddressSanitizer/UBSan build;
#   2. Criterion unit tests and the JSON-Schema-Test-Suite conformance run, under
#      the sanitizers;
#   3. a private PostgreSQL and Redis (scripts/services.sh), unless
#      SLUICE_DATABASE_URL and SLUICE_REDIS_URL name servers to use;
#   4. the integration suite (tests/integration) against the sanitizer build,
#      so a leak, overflow or undefined behaviour anywhere fails the run.
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

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=66:${ASAN_OPTIONS:-}"
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

suite "integration (real PostgreSQL + Redis, ASan build)" \
  env SLUICE_BIN="$repo/build/asan/sluice" tests/integration/run.sh

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]

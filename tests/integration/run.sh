#!/usr/bin/env bash
# Runs the integration suite: the real sluice binary over HTTP against a real PostgreSQL.
# Test files run two at a time (SLUICE_IT_CONCURRENCY; most of their time is waiting); each
# starts its own sluice on free ports with a fresh database and its own Redis key prefix.
# `make test` calls this with SLUICE_BIN (e.g. the sanitizer build), SLUICE_DATABASE_URL (a
# superuser role) and SLUICE_REDIS_URL set.
#
#   tests/integration/run.sh                      # every *.test.js
#   tests/integration/run.sh tests/integration/publish.test.js   # some files
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

export SLUICE_BIN="${SLUICE_BIN:-$repo/build/sluice}"
: "${SLUICE_DATABASE_URL:?SLUICE_DATABASE_URL must name a PostgreSQL superuser connection}"
if [[ ! -x "$SLUICE_BIN" ]]; then
	echo "run.sh: no executable sluice at $SLUICE_BIN (make first)" >&2
	exit 2
fi
command -v node >/dev/null || { echo "run.sh: node is required" >&2; exit 2; }
command -v psql >/dev/null || { echo "run.sh: psql is required" >&2; exit 2; }

SLUICE_IT_TMP=$(mktemp -d /tmp/sluice-it.XXXXXX)
export SLUICE_IT_TMP

# Whatever a crashed test process left behind: its sluice processes and databases.
# shellcheck source=tests/lib/reap.sh
source "$repo/tests/lib/reap.sh"
reap_on_exit "sluice logs kept in $SLUICE_IT_TMP/logs"

if [[ $# -eq 0 ]]; then
	set -- "$here"/*.test.js
fi

node --test --test-concurrency="${SLUICE_IT_CONCURRENCY:-2}" --test-timeout="${SLUICE_IT_TEST_TIMEOUT_MS:-600000}" \
	--test-reporter=spec "$@"

#!/usr/bin/env bash
# Runs the dashboard's browser tests: web/ in headless Chromium (Debian's /usr/bin/chromium,
# driven by playwright-core from tests/node_modules; no browser is downloaded) against the
# real sluice binary, PostgreSQL and Redis. Each test file starts its own sluice on free
# ports with a fresh database and its own Redis prefix; sluice serves web/ itself
# (SLUICE_WEB_DIR). Screenshots are kept in tests/browser/artifacts/.
#
#   tests/browser/run.sh                                  # every *.test.js
#   tests/browser/run.sh tests/browser/auth.test.js       # some files
#
# Needs SLUICE_DATABASE_URL (a superuser role) and SLUICE_REDIS_URL; SLUICE_BIN defaults to
# build/sluice. SLUICE_CHROMIUM overrides the browser's path.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

export SLUICE_BIN="${SLUICE_BIN:-$repo/build/sluice}"
export SLUICE_WEB_DIR="${SLUICE_WEB_DIR:-$repo/web}"
: "${SLUICE_DATABASE_URL:?SLUICE_DATABASE_URL must name a PostgreSQL superuser connection}"
: "${SLUICE_REDIS_URL:?SLUICE_REDIS_URL must name the Redis server}"
chromium="${SLUICE_CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$SLUICE_BIN" ]]; then
	echo "run.sh: no executable sluice at $SLUICE_BIN (make first)" >&2
	exit 2
fi
if [[ ! -x "$chromium" ]]; then
	echo "run.sh: no Chromium at $chromium (apt-get install chromium)" >&2
	exit 2
fi
if [[ ! -d "$repo/tests/node_modules/playwright-core" ]]; then
	echo "run.sh: playwright-core is missing (npm ci --prefix tests)" >&2
	exit 2
fi
command -v node >/dev/null || { echo "run.sh: node is required" >&2; exit 2; }
command -v psql >/dev/null || { echo "run.sh: psql is required" >&2; exit 2; }

mkdir -p "$here/artifacts"
SLUICE_IT_TMP=$(mktemp -d /tmp/sluice-browser.XXXXXX)
export SLUICE_IT_TMP

# Whatever a crashed test process left behind: its sluice processes and databases.
# shellcheck source=tests/lib/reap.sh
source "$repo/tests/lib/reap.sh"
reap_on_exit "sluice logs kept in $SLUICE_IT_TMP/logs; screenshots in $here/artifacts"

if [[ $# -eq 0 ]]; then
	set -- "$here"/*.test.js
fi

node --test --test-concurrency=1 --test-timeout="${SLUICE_BROWSER_TEST_TIMEOUT_MS:-300000}" \
	--test-reporter=spec "$@"

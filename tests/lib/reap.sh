# shellcheck shell=bash
# tests/lib/reap.sh — what Sluice's test runners (tests/integration/run.sh,
# tests/browser/run.sh) leave behind, reaped at exit whatever happened.
#
# Why: a test process that crashes or is killed cannot stop the sluice servers it started
# or drop the databases it created. tests/integration/lib/harness.js records each under
# $SLUICE_IT_TMP (pids/<pid>, dbs/<name> holding the server URL); this trap kills those
# pids — only while the pid still runs $SLUICE_BIN — and drops those databases, then keeps
# the run directory (its logs) when the run failed.
#
#   source tests/lib/reap.sh; reap_on_exit "what to say where the logs are on failure"

reap_on_exit() {
	_reap_kept=$1
	trap _reap EXIT
}

_reap() {
	local rc=$?
	local f pid
	for f in "$SLUICE_IT_TMP"/pids/*; do
		[[ -e "$f" ]] || continue
		pid=$(basename "$f")
		if [[ -r /proc/$pid/exe && "$(readlink -f /proc/"$pid"/exe)" == "$(readlink -f "$SLUICE_BIN")" ]]; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	for f in "$SLUICE_IT_TMP"/dbs/*; do
		[[ -e "$f" ]] || continue
		psql "$(head -n1 "$f")" -X -q -c "DROP DATABASE IF EXISTS $(basename "$f") WITH (FORCE)" >/dev/null 2>&1 || true
	done
	if [[ $rc -ne 0 ]]; then
		echo "run.sh: $_reap_kept" >&2
	else
		rm -rf "$SLUICE_IT_TMP"
	fi
	exit "$rc"
}

# shellcheck shell=bash
# shellcheck disable=SC2034  # WS_PORT, BASE, ... are for the scripts that source this
# bench/lib.sh — owns what Sluice's benchmark scripts share; sourced by bench/run.sh,
# bench/validate/run.sh, bench/fanout/run.sh, bench/history/run.sh and bench/groups/run.sh:
#   - the servers: SLUICE_DATABASE_URL / SLUICE_REDIS_URL when set, else the private
#     PostgreSQL and Redis of scripts/services.sh (bench_servers);
#   - a fresh database per run, dropped at exit (bench_database), migrated by the sluice under
#     test (bench_migrate);
#   - one sluice on free loopback ports with the common settings (bench_start_sluice,
#     bench_stop_sluice), its log in $WORK/sluice.log;
#   - the cleanup at exit, whatever happened: extra processes (BENCH_PIDS) killed, sluice
#     stopped, the database dropped, Redis keys under $PREFIX deleted, $WORK removed;
#   - the `make bench` summary: bench_summary appends one row per headline figure to
#     $BENCH_SUMMARY (set by bench/all.sh), in the format every benchmark shares:
#       <benchmark> TAB <measure> TAB <sluice value> TAB <baseline: name = value, or -> TAB
#       <target> TAB <PASS|MISS|FAIL|->
#     and bench_machine describes the machine for the table's heading.
# Why: the benchmark scripts repeated the same hundred lines of server handling, and their
# headline figures must reach one table in one format.
#
# Before sourcing, a script sets REPO (the repository root) and BENCH_NAME (its name in the
# summary and in its messages); optionally DB (default bench_<name>_<pid>), PREFIX (default
# bench<name><pid>:), BIN (default $SLUICE_BIN or build/sluice), BENCH_PSQL_TIMEOUT (seconds
# per psql call on the bench database, default 120) and BENCH_STOP_SECONDS (default 20).
# Sourcing creates $WORK and a random admin TOKEN and installs the EXIT/INT/TERM traps;
# with BENCH_LIB_FUNCTIONS_ONLY=1 (bench/all.sh) it only defines the functions.

: "${REPO:?bench/lib.sh: set REPO first}"
: "${BENCH_NAME:?bench/lib.sh: set BENCH_NAME first}"
BIN=${BIN:-${SLUICE_BIN:-$REPO/build/sluice}}
DB=${DB:-bench_${BENCH_NAME//[^a-z0-9]/_}_$$}
PREFIX=${PREFIX:-bench${BENCH_NAME//[^a-z0-9]/}$$:}
TOKEN=sk_bench_$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
WORK=""
BENCH_PIDS=()  # processes a script started besides sluice: killed at exit
SLUICE_PID=""
HTTP_PORT="" WS_PORT="" BASE=""
ADMIN_URL="" REDIS_URL="" BENCH_URL="" PSQL=""
_bench_db_created=0

say() { echo "bench/$BENCH_NAME: $*" >&2; }
die() {
  say "$*"
  exit 1
}

# ---------------------------------------------------------------------------------------------
# Servers and tools
# ---------------------------------------------------------------------------------------------

# find_pg_tool NAME: the PostgreSQL client tool, the server's own version first.
find_pg_tool() {
  local d
  for d in "${SLUICE_PG_BIN:-}" $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV); do
    if [[ -n $d && -x $d/$1 ]]; then
      echo "$d/$1"
      return
    fi
  done
  command -v "$1" || die "$1 not found (run scripts/install-deps.sh)"
}

# url_with_db URL DB: the same PostgreSQL URL, naming database DB.
url_with_db() {
  local url=$1 query="" hostpart
  if [[ $url == *\?* ]]; then
    query="?${url#*\?}"
    url=${url%%\?*}
  fi
  hostpart=${url#*://}
  hostpart=${hostpart%%/*}
  echo "${url%%://*}://$hostpart/$2$query"
}

# bench_servers [all|pg]: PostgreSQL (and Redis unless `pg`) from the environment, or the
# private ones of scripts/services.sh. Sets ADMIN_URL, REDIS_URL, BENCH_URL, PSQL.
bench_servers() {
  local need=${1:-all} user_db=${SLUICE_DATABASE_URL:-} user_redis=${SLUICE_REDIS_URL:-} want=""
  if [[ -z $user_db && -z $user_redis ]]; then
    want=all
  elif [[ -z $user_db ]]; then
    want=pg
  elif [[ -z $user_redis && $need != pg ]]; then
    want=redis
  fi
  if [[ -n $want ]]; then
    export SLUICE_RUN_DIR=${SLUICE_RUN_DIR:-$REPO/.sluice}
    "$REPO/scripts/services.sh" start "$want"
    # shellcheck disable=SC1091
    source "$SLUICE_RUN_DIR/env"
    if [[ -n $user_db ]]; then SLUICE_DATABASE_URL=$user_db; fi
    if [[ -n $user_redis ]]; then SLUICE_REDIS_URL=$user_redis; fi
  fi
  ADMIN_URL=$SLUICE_DATABASE_URL
  REDIS_URL=${SLUICE_REDIS_URL:-}
  if [[ $need != pg && -z $REDIS_URL ]]; then die "no SLUICE_REDIS_URL"; fi
  BENCH_URL=$(url_with_db "$ADMIN_URL" "$DB")
  PSQL=$(find_pg_tool psql)
}

psql_admin() { timeout 60 "$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$ADMIN_URL" "$@"; }
psql_bench() { timeout "${BENCH_PSQL_TIMEOUT:-120}" "$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$BENCH_URL" "$@"; }

# redis_cli ARGS...: against REDIS_URL (redis:// or unix://).
redis_cli() {
  case "$REDIS_URL" in
    unix://*) timeout 30 redis-cli -s "${REDIS_URL#unix://}" "$@" ;;
    *) timeout 30 redis-cli -u "$REDIS_URL" "$@" ;;
  esac
}

# pid_named PID NAME...: PID when it is alive and its comm is one of NAME.
pid_named() {
  local comm n
  [[ $1 =~ ^[0-9]+$ ]] || return 1
  comm=$(cat "/proc/$1/comm" 2>/dev/null) || return 1
  for n in "${@:2}"; do [[ $comm == "$n" ]] && echo "$1" && return 0; done
  return 1
}

# bench_find_postmaster: PG_PID, the postmaster of the benchmark's PostgreSQL when it runs on
# this machine (<data_directory>/postmaster.pid, else the process listening on its port), for
# the CPU columns; "" (and a word on stderr) when it is elsewhere. PG_DIR: its data directory.
bench_find_postmaster() {
  local pid port
  PG_PID=""
  PG_DIR=$(psql_admin -A -t -c "SHOW data_directory" 2>/dev/null) || PG_DIR=""
  if [[ -n $PG_DIR && -r $PG_DIR/postmaster.pid ]]; then
    PG_PID=$(pid_named "$(head -n1 "$PG_DIR/postmaster.pid")" postgres postmaster) && return 0
  fi
  port=$(psql_admin -A -t -c "SHOW port" 2>/dev/null) || port=""
  if [[ -n $port ]]; then
    pid=$(ss -ltnpH "sport = :$port" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1)
    PG_PID=$(pid_named "$pid" postgres postmaster) && return 0
  fi
  PG_PID=""
  say "could not find PostgreSQL's postmaster on this machine: its CPU shows as ?"
}

# bench_find_redis: REDIS_PID, redis-server's pid (INFO server) when it runs on this machine,
# else "" (and a word on stderr).
bench_find_redis() {
  REDIS_PID=$(redis_cli INFO server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id:\([0-9]*\)$/\1/p')
  REDIS_PID=$(pid_named "$REDIS_PID" redis-server redis-check-rdb) && return 0
  REDIS_PID=""
  say "could not find redis-server on this machine: its CPU shows as ?"
}

# bench_redacted URL: the URL without its password, for messages.
bench_redacted() { sed -E 's#^([a-z]+://[^:/@]*):[^@]*@#\1:***@#' <<<"$1"; }

# ---------------------------------------------------------------------------------------------
# The database
# ---------------------------------------------------------------------------------------------

# bench_database: CREATE DATABASE $DB (dropped at exit).
bench_database() {
  say "database $DB on $(bench_redacted "$ADMIN_URL")"
  psql_admin -c "CREATE DATABASE $DB" >/dev/null
  _bench_db_created=1
}

# bench_migrate: `sluice migrate` on the bench database.
bench_migrate() {
  SLUICE_DATABASE_URL=$BENCH_URL SLUICE_LOG_LEVEL=warn timeout 120 "$BIN" migrate >"$WORK/migrate.log" 2>&1 || {
    cat "$WORK/migrate.log" >&2
    die "sluice migrate failed"
  }
}

# ---------------------------------------------------------------------------------------------
# Sluice
# ---------------------------------------------------------------------------------------------

# running PID: alive and not a zombie waiting to be reaped.
running() {
  local st
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) }
  [[ ${st%% *} != [ZX] ]]
}

# bench_start_sluice [VAR=VALUE...]: starts $BIN on the bench database, the Redis prefix
# $PREFIX, free loopback ports, auth on with $TOKEN, plus the given settings; waits (60 s) for
# its "listening" line. Sets SLUICE_PID, HTTP_PORT, WS_PORT, BASE.
bench_start_sluice() {
  say "starting $BIN (database $DB)"
  env SLUICE_DATABASE_URL="$BENCH_URL" SLUICE_REDIS_URL="$REDIS_URL" SLUICE_REDIS_PREFIX="$PREFIX" \
    SLUICE_HTTP_PORT=0 SLUICE_WS_PORT=0 SLUICE_BIND=127.0.0.1 SLUICE_ADMIN_TOKEN="$TOKEN" \
    SLUICE_AUTH=on SLUICE_LOG_LEVEL=info "$@" \
    "$BIN" >"$WORK/sluice.out" 2>"$WORK/sluice.log" &
  SLUICE_PID=$!
  local i line
  HTTP_PORT="" WS_PORT=""
  for ((i = 0; i < 600; i++)); do
    line=$(grep -m1 '"msg":"listening"' "$WORK/sluice.log" 2>/dev/null) || true
    if [[ -n $line ]]; then
      HTTP_PORT=$(sed -n 's/.*"http_port":\([0-9]*\).*/\1/p' <<<"$line")
      WS_PORT=$(sed -n 's/.*"ws_port":\([0-9]*\).*/\1/p' <<<"$line")
      break
    fi
    running "$SLUICE_PID" || break
    sleep 0.1
  done
  if [[ -z $HTTP_PORT ]]; then
    tail -n 30 "$WORK/sluice.log" >&2
    die "sluice did not log a \"listening\" line with http_port in 60 s"
  fi
  BASE=http://127.0.0.1:$HTTP_PORT
  say "sluice pid $SLUICE_PID on 127.0.0.1:$HTTP_PORT"
}

# bench_stop_sluice: SIGTERM (a graceful stop finishes in-flight commits and flushes the
# relay), SIGKILL after BENCH_STOP_SECONDS.
bench_stop_sluice() {
  [[ -n $SLUICE_PID ]] || return 0
  local i
  kill -TERM "$SLUICE_PID" 2>/dev/null || true
  for ((i = 0; i < ${BENCH_STOP_SECONDS:-20} * 10; i++)); do
    running "$SLUICE_PID" || break
    sleep 0.1
  done
  if running "$SLUICE_PID"; then
    say "sluice did not stop in ${BENCH_STOP_SECONDS:-20} s; killing it"
    kill -KILL "$SLUICE_PID" 2>/dev/null || true
  fi
  wait "$SLUICE_PID" 2>/dev/null || true
  SLUICE_PID=""
}

# bench_rss_kb: sluice's peak RSS (VmHWM) in KiB, or "".
bench_rss_kb() {
  sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$SLUICE_PID/status" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# The `make bench` summary
# ---------------------------------------------------------------------------------------------

# bench_summary MEASURE VALUE BASELINE TARGET VERDICT: one row of the table bench/all.sh
# prints (nothing when BENCH_SUMMARY is unset). BASELINE is "name = value (ratio)" or "-".
bench_summary() {
  [[ -n ${BENCH_SUMMARY:-} ]] || return 0
  local f out=$BENCH_NAME
  for f in "$1" "$2" "${3:--}" "${4:--}" "${5:--}"; do
    f=${f//$'\t'/ }
    out+=$'\t'${f//$'\n'/ }
  done
  printf '%s\n' "$out" >>"$BENCH_SUMMARY"
}

# bench_machine: one line: cores, CPU model, memory, kernel, load average.
bench_machine() {
  local model mem
  model=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -n1)
  [[ -n $model ]] || model=$(uname -m)
  mem=$(awk '/^MemTotal:/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo 2>/dev/null)
  echo "$(nproc) cores ($model), ${mem:-? RAM}, Linux $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

# bench_check VALUE OP TARGET -> PASS|MISS (OP is >=, <, <=, >).
bench_check() {
  awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
    ok = (op == ">=") ? (v >= t) : (op == "<") ? (v < t) : (op == "<=") ? (v <= t) : (v > t)
    print ok ? "PASS" : "MISS" }'
}

# ---------------------------------------------------------------------------------------------
# Cleanup
# ---------------------------------------------------------------------------------------------

_bench_cleanup() {
  local rc=$? p
  for p in "${BENCH_PIDS[@]}"; do
    if [[ -n $p ]]; then kill -TERM "$p" 2>/dev/null || true; fi
  done
  bench_stop_sluice || true
  if ((_bench_db_created)); then
    psql_admin -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 ||
      psql_admin -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 ||
      say "could not drop database $DB"
  fi
  if [[ -n $REDIS_URL ]] && command -v redis-cli >/dev/null; then
    redis_cli --scan --pattern "${PREFIX}*" 2>/dev/null | while read -r k; do
      redis_cli unlink "$k" >/dev/null 2>&1 || true
    done
  fi
  if [[ -n $WORK ]]; then rm -rf "$WORK"; fi
  exit "$rc"
}
if [[ -z ${BENCH_LIB_FUNCTIONS_ONLY:-} ]]; then
  WORK=$(mktemp -d -t "sluice-bench-${BENCH_NAME//[^a-z0-9]/}.XXXXXX")
  trap _bench_cleanup EXIT
  trap 'exit 130' INT TERM
fi

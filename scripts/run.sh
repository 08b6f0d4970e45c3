#!/usr/bin/env bash
# scripts/run.sh — owns `make run`: start Sluice on this machine with everything it needs.
#
# Why: one command must take a fresh Debian 12 checkout to a running gateway. `make run`
# builds build/sluice, then calls this, which
#   1. installs missing Debian packages (scripts/install-deps.sh, quiet when all are there);
#   2. uses SLUICE_DATABASE_URL / SLUICE_REDIS_URL when they are set (production: external
#      servers), else starts a private PostgreSQL and/or Redis (scripts/services.sh) and takes
#      their URLs from $SLUICE_RUN_DIR/env;
#   3. keeps one admin token per run dir ($SLUICE_RUN_DIR/admin_token, mode 600) unless
#      SLUICE_ADMIN_TOKEN is set, so the token survives restarts;
#   4. prints where to reach the server and a ready-to-paste publish command;
#   5. execs build/sluice, which reads its SLUICE_* environment (API.md, Configuration).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export SLUICE_RUN_DIR=${SLUICE_RUN_DIR:-$REPO/.sluice}
BIN=${SLUICE_BIN:-$REPO/build/sluice}

scripts/install-deps.sh

if [[ ! -x $BIN ]]; then
  echo "run: $BIN not found; build it first with: make" >&2
  exit 1
fi

# Private servers only for what the caller did not name; the caller's URLs always win.
user_db=${SLUICE_DATABASE_URL:-}
user_redis=${SLUICE_REDIS_URL:-}
want=""
if [[ -z $user_db && -z $user_redis ]]; then
  want=all
elif [[ -z $user_db ]]; then
  want=pg
elif [[ -z $user_redis ]]; then
  want=redis
fi
if [[ -n $want ]]; then
  scripts/services.sh start "$want"
  # shellcheck disable=SC1091
  source "$SLUICE_RUN_DIR/env"
  if [[ -n $user_db ]]; then export SLUICE_DATABASE_URL=$user_db; fi
  if [[ -n $user_redis ]]; then export SLUICE_REDIS_URL=$user_redis; fi
fi

if [[ -z ${SLUICE_ADMIN_TOKEN:-} ]]; then
  token_file=$SLUICE_RUN_DIR/admin_token
  if [[ ! -s $token_file ]]; then
    mkdir -p "$SLUICE_RUN_DIR"
    (
      umask 077
      printf 'sk_admin_%s\n' "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >"$token_file"
    )
  fi
  chmod 600 "$token_file"
  SLUICE_ADMIN_TOKEN=$(head -n 1 "$token_file")
fi
export SLUICE_ADMIN_TOKEN

# URLs for the banner, with any password masked.
mask() { sed -E 's#^([a-z]+://[^:/@]*):[^@]*@#\1:***@#' <<<"$1"; }

http_port=${SLUICE_HTTP_PORT:-8080}
ws_port=${SLUICE_WS_PORT:-8081}
host=127.0.0.1
cat <<EOF

  Sluice
    HTTP         http://$host:$http_port      (dashboard /, API /v1, /openapi.yaml)
    WebSocket    ws://$host:$ws_port/v1/ws
    admin token  $SLUICE_ADMIN_TOKEN
    PostgreSQL   $(mask "$SLUICE_DATABASE_URL")
    Redis        $(mask "$SLUICE_REDIS_URL")

  Publish an event:
    curl -s -X POST http://$host:$http_port/v1/events -H "Authorization: Bearer $SLUICE_ADMIN_TOKEN" -H 'Content-Type: application/json' -d '{"type":"file.uploaded","data":{"file_id":"f1","user_id":"u1","contextual_core_id":"c1","filename":"notes.pdf","file_size":1024,"mime_type":"application/pdf","is_browser_viewable":true}}'

EOF
if [[ $http_port == 0 || $ws_port == 0 ]]; then
  echo "  (port 0: the server picks free ports and logs them in its \"listening\" line)"
  echo
fi

exec "$BIN" "$@"

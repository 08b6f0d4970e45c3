#!/usr/bin/env bash
# scripts/install-deps.sh — owns the Debian packages Sluice needs to build, test, run and
# benchmark (libraries, PostgreSQL, Redis, wrk, Node for the browser tests).
#
# Why: `make run`, `make test` and `make bench` must work on a fresh Debian 12 machine with
# nothing but the repository. This script is idempotent and cheap when everything is there:
# it asks dpkg which packages are missing and only then runs `apt-get update` once and
# installs exactly those. Quiet on success; it prints what it installs.
#
# If `node` is already on PATH (e.g. Node 20 + npm 11 installed from elsewhere), nodejs/npm
# are skipped: Debian's npm package would conflict with that installation.
set -euo pipefail

PACKAGES=(
  build-essential pkg-config
  libmicrohttpd-dev libwebsockets-dev libjansson-dev libhiredis-dev libpq-dev
  libcurl4-openssl-dev          # webhooks: deliveries with libcurl's multi interface
  libcriterion-dev libpcre2-dev libssl-dev
  libjemalloc-dev               # the release binary's allocator (Makefile)
  python3-yaml                  # the build converts openapi/openapi.yaml to JSON (scripts/embed-openapi-json.py)
  postgresql redis-server
  wrk curl ca-certificates procps openssl
  iproute2                      # ip netns, veth, ss: tests/integration/partition.test.js
  chromium                      # the dashboard's browser tests (headless)
  clang libclang-rt-14-dev      # libFuzzer targets (tests/fuzz)
  prometheus                    # promtool check metrics (tests/integration/metrics.test.js); may start a local prometheus service
)
if ! command -v node >/dev/null 2>&1; then
  PACKAGES+=(nodejs npm)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install-deps: not root and no sudo; please install: ${missing[*]}" >&2
    exit 1
  fi
fi

log=$(mktemp -t sluice-install-deps.XXXXXX)
trap 'rm -f "$log"' EXIT

apt_opts=(-q -o DPkg::Lock::Timeout=300)
if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update >"$log" 2>&1; then
  cat "$log" >&2
  echo "install-deps: apt-get update failed" >&2
  exit 1
fi
if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y \
  --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
  cat "$log" >&2
  echo "install-deps: apt-get install failed" >&2
  exit 1
fi
echo "install-deps: done" >&2

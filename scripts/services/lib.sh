# shellcheck shell=bash
# scripts/services/lib.sh — the helpers every part of scripts/services.sh shares: messages
# (log, die), whether a pid is a live process of a given name (proc_alive), closing inherited
# fds before starting a daemon (close_fds), and waiting for a condition (wait_until).
# Sourced by scripts/services.sh; defines functions only.

log() { echo "services: $*" >&2; }
die() {
  log "$*"
  exit 1
}

# proc_alive PID NAME: PID runs and is a NAME (not a reused pid, not a zombie left by a crash).
proc_alive() {
  local stat
  [[ $1 =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  [[ $stat == *"($2"* ]] || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != [ZX] ]]
}

# proc_gone PID NAME: the opposite of proc_alive, for wait_until.
proc_gone() { ! proc_alive "$@"; }

# close_fds: in a subshell about to start a daemon, close every fd above 2 — our lock fds
# and whatever the caller passed down (a pipe, say). A daemon that inherited them would hold
# the locks, or keep the caller's pipe open, for its whole life.
close_fds() {
  local fd
  for fd in "/proc/$BASHPID/fd/"*; do
    fd=${fd##*/}
    if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
  done
}

# wait_until TRIES CMD...: runs CMD every 0.1 s until it succeeds (true) or TRIES runs have
# failed (false).
wait_until() {
  local tries=$1 i
  shift
  for ((i = 0; i < tries; i++)); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}

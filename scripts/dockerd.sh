#!/usr/bin/env bash
# Start, stop or restart the Docker engine the way this machine runs it: systemd's docker unit where systemd
# runs, else dockerd started directly in the background (as `make setup` does on a bare machine or in a
# container). Shared by scripts/setup.sh and the fault test that restarts dockerd for real.
#
#   scripts/dockerd.sh start     start it unless it answers; wait until it does
#   scripts/dockerd.sh stop      stop it (SIGTERM to the daemon); wait until it has exited
#   scripts/dockerd.sh restart   stop, then start
set -euo pipefail

cd "$(dirname "$0")/.."
readonly CACHE_DIR=.ci-cache
readonly DOCKERD_LOG="$CACHE_DIR/dockerd.log"
readonly DOCKERD_PID_FILE=/var/run/docker.pid
readonly DOCKERD_START_SECONDS=${DOCKERD_START_SECONDS:-60}
# dockerd stops its containers first (10 s each at most, in parallel) before it exits.
readonly DOCKERD_STOP_SECONDS=${DOCKERD_STOP_SECONDS:-60}

fail() { printf 'dockerd.sh: %s\n' "$*" >&2; exit 1; }

with_systemd() { [[ -d /run/systemd/system ]]; }

answers() { docker info >/dev/null 2>&1; }

daemon_pid() {
  local pid
  [[ -s $DOCKERD_PID_FILE ]] || return 1
  pid=$(cat "$DOCKERD_PID_FILE")
  kill -0 "$pid" 2>/dev/null || return 1
  printf '%s\n' "$pid"
}

start() {
  if answers; then
    echo "Docker engine answers"
    return
  fi
  mkdir -p "$CACHE_DIR"
  if with_systemd; then
    systemctl start docker
  else
    # In a session of its own: whatever stops the caller (a test run ending, its process group killed)
    # leaves the engine running.
    setsid nohup dockerd </dev/null >>"$DOCKERD_LOG" 2>&1 &
    echo "dockerd pid $!, log in $DOCKERD_LOG"
  fi
  local waited=0
  until answers; do
    ((waited < DOCKERD_START_SECONDS * 10)) || {
      tail -n 30 "$DOCKERD_LOG" >&2 2>/dev/null || true
      fail "the Docker engine did not answer within ${DOCKERD_START_SECONDS} s (log: $DOCKERD_LOG)"
    }
    sleep 0.1
    waited=$((waited + 1))
  done
}

stop() {
  if with_systemd; then
    systemctl stop docker docker.socket
    return
  fi
  local pid
  if ! pid=$(daemon_pid); then
    echo "dockerd is not running"
    return
  fi
  kill -TERM "$pid"
  local waited=0
  while kill -0 "$pid" 2>/dev/null; do
    ((waited < DOCKERD_STOP_SECONDS * 10)) || fail "dockerd (pid $pid) did not exit within ${DOCKERD_STOP_SECONDS} s"
    sleep 0.1
    waited=$((waited + 1))
  done
  echo "dockerd (pid $pid) stopped"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  restart) stop && start ;;
  *) fail "usage: $0 start|stop|restart" ;;
esac

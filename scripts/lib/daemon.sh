# Starting, waiting for and stopping a background server, for scripts/kafka.sh and
# scripts/clickhouse.sh (sourced). The sourcing script defines log() and answering() (exit 0 when
# its server answers) and sets pidfile.

# daemon_launch OUT CMD...: runs CMD detached, output to OUT, and records its pid.
daemon_launch() {
  local out=$1
  shift
  nohup "$@" >"$out" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

# daemon_wait_ready SECONDS LOG...: waits until the server answers; when it does not (or the
# process died), shows the logs' last lines and fails.
daemon_wait_ready() {
  local seconds=$1
  shift
  for _ in $(seq 1 $((seconds * 2))); do
    if answering; then log "ready"; return 0; fi
    kill -0 "$(cat "$pidfile")" 2>/dev/null || break
    sleep 0.5
  done
  log "did not answer within ${seconds}s; last log lines:"
  tail -n 40 "$@" >&2 || true
  return 1
}

# daemon_stop: stops the process this script started (TERM, then KILL after 30 s).
daemon_stop() {
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -9 "$pid" 2>/dev/null || true
    log "stopped"
  fi
  rm -f "$pidfile"
}

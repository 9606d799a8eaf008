#!/usr/bin/env bash
# The head's MLflow tracking server, kept alive: safe to run any number of times.
#
#   mlflow-server.sh [start]   start the supervisor unless it runs already, then wait until /health answers
#   mlflow-server.sh stop      stop the supervisor and its server
#   mlflow-server.sh status    exit 0 when the supervisor runs
#
# A supervisor loop (its pid in $SWEEPER_STATE/mlflow-supervisor.pid, checked against /proc so a recycled pid is not
# mistaken for it) restarts the server whenever it exits. No pkill -f: Ray runs every command inside a
# `bash -c '... (CMD)'` whose own command line would match the pattern, and kill itself.
#
# Everything reaches the server through the environment, never argv (`ps` shows argv to every user):
#   MLFLOW_BACKEND_STORE_URI     default postgresql+psycopg://mlflow@127.0.0.1:5432/mlflow; the password is in
#                                ~/.pgpass (mode 0600, written by `node.sh head-setup`), read by libpq. An external
#                                database (e.g. RDS) is this one setting, with its password in ~/.pgpass.
#   MLFLOW_ARTIFACTS_DESTINATION where --serve-artifacts puts artifacts (s3://bucket/prefix: outlives the cluster)
#   MLFLOW_S3_ENDPOINT_URL / AWS_ENDPOINT_URL_S3  an S3-compatible store's endpoint
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/settings.sh"
pidfile=$SWEEPER_STATE/mlflow-supervisor.pid
log=$SWEEPER_STATE/mlflow-server.log

supervisor_pid() {
  local pid
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "mlflow-server.sh supervise" \
    && echo "$pid"
}

supervise() {
  echo $$ >"$pidfile"
  : "${MLFLOW_BACKEND_STORE_URI:=postgresql+psycopg://mlflow@127.0.0.1:5432/mlflow}"
  : "${MLFLOW_ARTIFACTS_DESTINATION:=$HOME/mlflow-artifacts}"
  export MLFLOW_BACKEND_STORE_URI MLFLOW_ARTIFACTS_DESTINATION MLFLOW_SERVE_ARTIFACTS=true
  export MLFLOW_HOST=$SWEEPER_NODE_IP MLFLOW_PORT=$SWEEPER_MLFLOW_PORT
  # Trials on other nodes call it by the head's private address: allow that Host header (MLflow 3 allows only
  # localhost by default). One worker and no job runner (GenAI jobs, unused) keep a small head light.
  export MLFLOW_SERVER_ALLOWED_HOSTS=${MLFLOW_SERVER_ALLOWED_HOSTS:-$SWEEPER_NODE_IP:$SWEEPER_MLFLOW_PORT,$SWEEPER_NODE_IP}
  export MLFLOW_WORKERS=${MLFLOW_WORKERS:-1} MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}
  [ -z "${AWS_ENDPOINT_URL_S3:-}" ] || export MLFLOW_S3_ENDPOINT_URL=${MLFLOW_S3_ENDPOINT_URL:-$AWS_ENDPOINT_URL_S3}
  local app=()
  if [ "$SWEEPER_MLFLOW_AUTH" = 1 ]; then
    export MLFLOW_AUTH_CONFIG_PATH=${MLFLOW_AUTH_CONFIG_PATH:-$SWEEPER_STATE/basic_auth.ini}
    app=(--app-name basic-auth)
  fi
  trap 'kill -- "-$$" 2>/dev/null || true; exit 0' TERM INT
  while true; do
    echo "$(date -u +%FT%TZ) starting mlflow server on $MLFLOW_HOST:$MLFLOW_PORT"
    "$SWEEPER_ENV/bin/mlflow" server "${app[@]}" &
    wait $! || true
    echo "$(date -u +%FT%TZ) mlflow server exited; restarting in 3 s"
    sleep 3
  done
}

case "${1:-start}" in
  supervise) supervise ;;
  status) supervisor_pid >/dev/null ;;
  stop)
    if pid=$(supervisor_pid); then
      kill -- "-$pid" 2>/dev/null || kill "$pid"
      for _ in $(seq 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.2; done
      kill -9 -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    ;;
  start)
    if ! supervisor_pid >/dev/null; then
      setsid nohup bash "$here/mlflow-server.sh" supervise >>"$log" 2>&1 </dev/null &
    fi
    url=http://$SWEEPER_NODE_IP:$SWEEPER_MLFLOW_PORT/health
    for _ in $(seq 120); do
      if "$SWEEPER_ENV/bin/python" -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$url" \
        2>/dev/null; then
        echo "mlflow server up: http://$SWEEPER_NODE_IP:$SWEEPER_MLFLOW_PORT (supervisor $(supervisor_pid))"
        exit 0
      fi
      sleep 1
    done
    echo "mlflow server did not answer $url within 120 s; see $log" >&2
    tail -n 20 "$log" >&2 || true
    exit 1
    ;;
  *) echo "usage: mlflow-server.sh [start|stop|status]" >&2; exit 2 ;;
esac

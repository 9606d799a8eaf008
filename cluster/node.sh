#!/usr/bin/env bash
# The one source of the cluster's setup and start commands: cluster.yaml (AWS) and cluster/local.yaml (on-prem, and
# the loopback test) both call `bash ~/embedding-sweeper/cluster/node.sh STEP` and differ only in their settings file
# (~/sweeper-cluster/cluster.env, see settings.sh).
#
#   setup         every node: the virtualenv and the checkout (SWEEPER_INSTALL=1), the CIFAR-10 copy (SWEEPER_CIFAR10_ROOT)
#   head-setup    the head: boto3 (the AWS autoscaler imports it) and psycopg; PostgreSQL with a generated password
#                 in ~/.pgpass (mode 0600) unless MLFLOW_BACKEND_STORE_URI names another database
#   worker-setup  GPU workers: the [gpu] extra (ripser++)
#   head-start    the MLflow server (idempotent), then Ray's head with 0 CPUs (no trial runs on the head)
#   worker-start  Ray on a worker, joined to $RAY_HEAD_IP
# Ray exports what it starts with to its processes, so the sweep driver (a `ray job submit` entrypoint) and every
# trial see MLFLOW_TRACKING_URI, SWEEPER_STORAGE_PATH (Tune's shared storage) and the S3 endpoint.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/settings.sh"
pip() { "$SWEEPER_ENV/bin/pip" install -q "$@"; }

ray_env() {
  export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-http://${RAY_HEAD_IP:-$SWEEPER_NODE_IP}:$SWEEPER_MLFLOW_PORT}
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
}

case "${1:?usage: node.sh setup|head-setup|worker-setup|head-start|worker-start}" in
  setup)
    if [ "$SWEEPER_INSTALL" = 1 ]; then
      [ -x "$SWEEPER_ENV/bin/python" ] || python3 -m venv "$SWEEPER_ENV"
      pip -U pip
      pip -e "$SWEEPER_REPO"
      grep -q "$SWEEPER_ENV/bin/activate" ~/.bashrc 2>/dev/null || echo ". $SWEEPER_ENV/bin/activate" >>~/.bashrc
    fi
    if [ -n "${SWEEPER_CIFAR10_ROOT:-}" ]; then  # datasets are read from a local root on every node, never at trial time
      mkdir -p "$SWEEPER_CIFAR10_ROOT" 2>/dev/null || { sudo mkdir -p "$SWEEPER_CIFAR10_ROOT" && sudo chown "$USER" "$SWEEPER_CIFAR10_ROOT"; }
      "$SWEEPER_ENV/bin/python" -c "import sys, torchvision; torchvision.datasets.CIFAR10(sys.argv[1], download=True)" \
        "$SWEEPER_CIFAR10_ROOT"
    fi
    ;;
  head-setup)
    [ "$SWEEPER_INSTALL" != 1 ] || pip -e "$SWEEPER_REPO[cluster]"
    if [ -z "${MLFLOW_BACKEND_STORE_URI:-}" ]; then
      command -v psql >/dev/null || { sudo apt-get update -y -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; }
      sudo systemctl enable --now postgresql
      if ! grep -q '^127.0.0.1:5432:mlflow:mlflow:' ~/.pgpass 2>/dev/null; then
        pw=$("$SWEEPER_ENV/bin/python" -c "import secrets; print(secrets.token_hex(24))")
        (umask 077 && echo "127.0.0.1:5432:mlflow:mlflow:$pw" >>~/.pgpass)
        # The password goes to psql on stdin (printf is a shell builtin): never on a command line.
        if sudo -u postgres psql -tAc "SELECT 1 FROM pg_roles WHERE rolname='mlflow'" | grep -q 1; then
          printf "ALTER USER mlflow WITH PASSWORD '%s';\n" "$pw" | sudo -u postgres psql -q
        else
          printf "CREATE USER mlflow WITH PASSWORD '%s';\nCREATE DATABASE mlflow OWNER mlflow;\n" "$pw" | sudo -u postgres psql -q
        fi
        unset pw
      fi
      chmod 600 ~/.pgpass
    fi
    ;;
  worker-setup)
    [ "$SWEEPER_INSTALL" != 1 ] || [ "$SWEEPER_GPU_EXTRA" != 1 ] || pip -e "$SWEEPER_REPO[gpu]"
    ;;
  head-start)
    "$SWEEPER_ENV/bin/ray" stop
    bash "$here/mlflow-server.sh" start
    ray_env
    # The head schedules no trial work (--num-cpus=0); the dashboard (and the job API) only on loopback: reach it
    # through `ray dashboard cluster.yaml` or an SSH tunnel.
    "$SWEEPER_ENV/bin/ray" start --head --node-ip-address="$SWEEPER_NODE_IP" --port="$SWEEPER_RAY_PORT" --num-cpus=0 \
      --autoscaling-config=~/ray_bootstrap_config.yaml \
      --dashboard-host=127.0.0.1 --dashboard-port="$SWEEPER_DASHBOARD_PORT" ${SWEEPER_HEAD_RAY_ARGS:-}
    ;;
  worker-start)
    "$SWEEPER_ENV/bin/ray" stop
    ray_env
    "$SWEEPER_ENV/bin/ray" start --address="$RAY_HEAD_IP:$SWEEPER_RAY_PORT" --node-ip-address="$SWEEPER_NODE_IP" \
      ${SWEEPER_WORKER_CPUS:+--num-cpus=$SWEEPER_WORKER_CPUS} ${SWEEPER_WORKER_RAY_ARGS:-}
    ;;
  *) echo "node.sh: unknown step $1" >&2; exit 2 ;;
esac

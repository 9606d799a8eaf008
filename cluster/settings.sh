# Sourced by node.sh and mlflow-server.sh: the cluster's settings, read as data (KEY=VALUE lines, nothing executed)
# from ~/sweeper-cluster/cluster.env (a file_mount of cluster.yaml or cluster/local.yaml; SWEEPER_SETTINGS overrides), then
# defaults. A value starting with ~/ is taken relative to $HOME. No secrets belong in that file.
_settings=${SWEEPER_SETTINGS:-$HOME/sweeper-cluster/cluster.env}
if [ -f "$_settings" ]; then
  while IFS= read -r _line || [ -n "$_line" ]; do
    case "$_line" in '' | '#'*) continue ;; esac
    _key=${_line%%=*}
    _value=${_line#*=}
    if ! [[ "$_key" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [ "$_key" = "$_line" ]; then
      echo "sweeper cluster settings $_settings: not KEY=VALUE: $_line" >&2
      return 2
    fi
    case "$_value" in '~/'*) _value="$HOME/${_value#\~/}" ;; esac
    export "$_key=$_value"
  done <"$_settings"
fi
: "${SWEEPER_REPO:=$HOME/embedding-sweeper}"  # the checkout that file_mounts syncs to every node
: "${SWEEPER_ENV:=$HOME/sweeper-env}"         # the virtualenv the nodes run Ray and the sweeper from
: "${SWEEPER_INSTALL:=1}"                     # 1: create SWEEPER_ENV and install the checkout into it at setup
: "${SWEEPER_GPU_EXTRA:=1}"                   # 1: workers also install the [gpu] extra (ripser++)
: "${SWEEPER_STATE:=$HOME/.sweeper}"          # pidfiles, logs, the generated database credentials (mode 0700)
: "${SWEEPER_RAY_PORT:=6379}"
: "${SWEEPER_DASHBOARD_PORT:=8265}"
: "${SWEEPER_MLFLOW_PORT:=5000}"
: "${SWEEPER_MLFLOW_AUTH:=0}"                 # 1: MLflow's basic-auth app (users in $SWEEPER_STATE/basic_auth.ini)
export SWEEPER_REPO SWEEPER_ENV SWEEPER_INSTALL SWEEPER_GPU_EXTRA SWEEPER_STATE SWEEPER_RAY_PORT \
  SWEEPER_DASHBOARD_PORT SWEEPER_MLFLOW_PORT SWEEPER_MLFLOW_AUTH
# This node's private address: the one the launcher's SSH connection reached (the private IP on a cloud VM, the
# loopback alias of a local test node), else the first address of the host.
if [ -z "${SWEEPER_NODE_IP:-}" ]; then
  SWEEPER_NODE_IP=$(echo "${SSH_CONNECTION:-}" | awk '{print $3}')
  [ -n "$SWEEPER_NODE_IP" ] || SWEEPER_NODE_IP=$(hostname -I | awk '{print $1}')
fi
export SWEEPER_NODE_IP
mkdir -p "$SWEEPER_STATE" && chmod 700 "$SWEEPER_STATE"

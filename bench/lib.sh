# shellcheck shell=bash
# What bench/e2e.sh and bench/unpack.sh share: fresh agents (dockerd) and registries.
# Needs test/lib/pypi.sh (free_port), test/lib/docker.sh (wait_for, _docker_stop_dir),
# test/lib/docker26.sh (docker26_install, _docker26_agent_start/stop) and test/lib/registry.sh
# (_registry_config) sourced first, engine_check run, and IMAGES (the base image tarballs),
# AGENT and REG_PID ("" at the start) set by the caller.

# apt_install PKG...: installs the packages that are missing.
apt_install() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [[ ${#missing[@]} == 0 ]] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
}

# The engine of every agent: ENGINE (default 20.10; bench/e2e.sh --engine):
#   20.10          Debian bookworm's docker.io 20.10 dockerd, classic `docker build` (inline cache)
#   26-graph       Debian trixie's dockerd 26.1.5 + containerd 1.7 on the graph-driver store
#                  (overlay2, the default before Docker 29), buildx 0.13.1, docker 28 client
#   26-containerd  the same on the containerd image store (the default of Docker 29)
# The 26 engines come from test/lib/docker26.sh (docker26_install; sourced by the caller), each
# agent with its own containerd, roots and sockets, buildx in the agent's own DOCKER_CONFIG.
ENGINE=${ENGINE:-20.10}

# engine_check: says whether ENGINE is known, installs what it needs and sets DOCKER (the client).
engine_check() {
  case $ENGINE in
    20.10) DOCKER=/usr/bin/docker ;;
    26-graph|26-containerd)
      docker26_install
      export CICACHE_TEST_DOCKER26=$CICACHE_TEST_CACHE/docker26/root
      DOCKER=$DOCKER26_CLIENT
      ;;
    *) echo "unknown engine $ENGINE (20.10, 26-graph or 26-containerd)" >&2; return 2 ;;
  esac
}

# engine_version: the server version, the image store and buildx of the current agent, one line.
engine_version() {
  local v
  v="docker $("$DOCKER" version --format '{{.Server.Version}}' 2>&1), client $("$DOCKER" version --format '{{.Client.Version}}' 2>&1)"
  v="$v, storage $("$DOCKER" info --format '{{.Driver}}' 2>&1)"
  if [[ $ENGINE != 20.10 ]]; then v="$v, $("$DOCKER" buildx version 2>&1)"; fi
  echo "$v"
}

# stop_agent DIR: stops the agent (dockerd, and its containerd on the 26 engines) and removes DIR.
stop_agent() {
  if [[ -f $1/containerd.pid ]]; then _docker26_agent_stop "$1"; else _docker_stop_dir "$1"; fi
}

# new_agent: stops the current agent (its data-root goes with it), starts a fresh one of ENGINE
# and loads the base images (not timed: a real agent pulls them from its registry).
new_agent() {
  [[ -n $AGENT ]] && stop_agent "$AGENT"
  AGENT=$(mktemp -d /tmp/ccbench-agent.XXXXXX)
  case $ENGINE in
    20.10)
      dockerd --bridge none --iptables=false --ip-masq=false --data-root "$AGENT/root" \
        --exec-root "$AGENT/exec" --host "unix://$AGENT/sock" --pidfile "$AGENT/docker.pid" \
        >"$AGENT/log" 2>&1 &
      echo $! >"$AGENT/dockerd.pid"
      export DOCKER_HOST=unix://$AGENT/sock
      unset DOCKER_CONFIG
      wait_for "$DOCKER" version || { cat "$AGENT/log" >&2; return 1; }
      ;;
    26-graph) _docker26_agent_start "$AGENT" graph ;;
    26-containerd) _docker26_agent_start "$AGENT" containerd ;;
  esac
  if [[ $ENGINE != 20.10 ]]; then
    export DOCKER_HOST=unix://$AGENT/sock DOCKER_CONFIG=$AGENT/config
  fi
  "$DOCKER" load -q -i "$IMAGES/python.tar" >/dev/null
  "$DOCKER" load -q -i "$IMAGES/busybox.tar" >/dev/null
}

# new_registry DIR: a fresh distribution registry with its storage in DIR/data.
new_registry() {
  local dir=$1 port
  [[ -n $REG_PID ]] && kill "$REG_PID" 2>/dev/null
  port=$(free_port)
  _registry_config "$dir" "$port"
  # The access log on: bench/e2e.sh counts the bytes each build pulled from it.
  sed -i 's/^    disabled: true$/    disabled: false/' "$dir/config.yml"
  docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  REG_PID=$!
  REG=127.0.0.1:$port
  REG_DIR=$dir
  wait_for curl -sf "http://$REG/v2/" || { cat "$dir/log" >&2; return 1; }
}

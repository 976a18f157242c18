# shellcheck shell=bash
# What bench/e2e.sh and bench/unpack.sh share: fresh agents (dockerd) and registries.
# Needs test/lib/pypi.sh (free_port), test/lib/docker.sh (wait_for, _docker_stop_dir) and
# test/lib/registry.sh (_registry_config) sourced first, and DOCKER, IMAGES (the base image
# tarballs), AGENT and REG_PID ("" at the start) set by the caller.

# apt_install PKG...: installs the packages that are missing.
apt_install() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [[ ${#missing[@]} == 0 ]] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
}

# new_agent: stops the current dockerd (its data-root goes with it), starts a fresh one and
# loads the base images (not timed: a real agent pulls them from its registry).
new_agent() {
  [[ -n $AGENT ]] && _docker_stop_dir "$AGENT"
  AGENT=$(mktemp -d /tmp/ccbench-agent.XXXXXX)
  dockerd --bridge none --iptables=false --ip-masq=false --data-root "$AGENT/root" \
    --exec-root "$AGENT/exec" --host "unix://$AGENT/sock" --pidfile "$AGENT/docker.pid" \
    >"$AGENT/log" 2>&1 &
  echo $! >"$AGENT/dockerd.pid"
  export DOCKER_HOST=unix://$AGENT/sock
  wait_for "$DOCKER" version || { cat "$AGENT/log" >&2; return 1; }
  "$DOCKER" load -q -i "$IMAGES/python.tar" >/dev/null
  "$DOCKER" load -q -i "$IMAGES/busybox.tar" >/dev/null
}

# new_registry DIR: a fresh distribution registry with its storage in DIR/data.
new_registry() {
  local dir=$1 port
  [[ -n $REG_PID ]] && kill "$REG_PID" 2>/dev/null
  port=$(free_port)
  _registry_config "$dir" "$port"
  docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  REG_PID=$!
  REG=127.0.0.1:$port
  REG_DIR=$dir
  wait_for curl -sf "http://$REG/v2/" || { cat "$dir/log" >&2; return 1; }
}

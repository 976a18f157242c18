# shellcheck shell=bash
# The Debian distribution registry (CNCF distribution 2.8), twice: one without auth and one
# with htpasswd auth. Both on 127.0.0.1 over plain HTTP (docker treats loopback registries
# as insecure, so it pushes there without TLS), filesystem storage under $CICACHE_TEST_WORK,
# manifest deletes enabled (what `cicache registry clear/gc` need).
#
# Exports CICACHE_TEST_REGISTRY=127.0.0.1:PORT, CICACHE_TEST_AUTH_REGISTRY=127.0.0.1:PORT,
# CICACHE_TEST_AUTH_USER, CICACHE_TEST_AUTH_PASSWORD, CICACHE_TEST_REGISTRY_STORAGE (the open
# registry's filesystem storage, for the oci:// store tests that damage a blob).

registry_install() {
  apt_install docker-registry apache2-utils curl
}

# _registry_config DIR PORT [HTPASSWD]: writes DIR/config.yml.
_registry_config() {
  local dir=$1 port=$2 htpasswd=${3:-}
  mkdir -p "$dir/data"
  {
    echo "version: 0.1"
    echo "log:"
    echo "  level: warn"
    echo "  accesslog:"
    echo "    disabled: true"
    echo "storage:"
    echo "  filesystem:"
    echo "    rootdirectory: $dir/data"
    echo "  delete:"
    echo "    enabled: true"
    echo "http:"
    echo "  addr: 127.0.0.1:$port"
    echo "  secret: cicache-test-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    if [ -n "$htpasswd" ]; then
      echo "auth:"
      echo "  htpasswd:"
      echo "    realm: cicache-test"
      echo "    path: $htpasswd"
    fi
  } >"$dir/config.yml"
}

registry_start() {
  local base=$CICACHE_TEST_WORK/registry
  mkdir -p "$base"
  local port auth_port user password
  port=$(free_port)
  _registry_config "$base/open" "$port"
  docker-registry serve "$base/open/config.yml" >"$base/open.log" 2>&1 &
  echo $! >"$base/open.pid"

  user=cicache
  password=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
  mkdir -p "$base/auth"
  htpasswd -Bbn "$user" "$password" >"$base/auth/htpasswd"
  auth_port=$(free_port)
  _registry_config "$base/auth" "$auth_port" "$base/auth/htpasswd"
  docker-registry serve "$base/auth/config.yml" >"$base/auth.log" 2>&1 &
  echo $! >"$base/auth.pid"

  wait_for curl -sf "http://127.0.0.1:$port/v2/" || {
    cat "$base/open.log" >&2
    return 1
  }
  # Up when it asks for credentials (401); the tests check the credentials themselves.
  wait_for sh -c "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$auth_port/v2/ | grep -qx 401" || {
    cat "$base/auth.log" >&2
    return 1
  }
  export CICACHE_TEST_REGISTRY=127.0.0.1:$port
  export CICACHE_TEST_AUTH_REGISTRY=127.0.0.1:$auth_port
  export CICACHE_TEST_AUTH_USER=$user
  export CICACHE_TEST_AUTH_PASSWORD=$password
  export CICACHE_TEST_REGISTRY_STORAGE=$base/open/data
  log "registries: open $CICACHE_TEST_REGISTRY, htpasswd $CICACHE_TEST_AUTH_REGISTRY"
}

registry_stop() {
  local base=$CICACHE_TEST_WORK/registry f
  for f in "$base/open.pid" "$base/auth.pid"; do
    [ -f "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
}

# registry_server_errors: the last requests each registry answered with a 5xx, with its
# err.detail (for a failed run: a 500 is the registry's own trouble, and its log says which).
registry_server_errors() {
  local f
  for f in "$CICACHE_TEST_WORK"/registry/*.log; do
    [ -f "$f" ] || continue
    grep 'http.response.status=5' "$f" | tail -n 20 | cut -c1-1200 | sed "s|^|$(basename "$f"): |"
  done
}

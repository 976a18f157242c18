# moto server: the real stand-in for S3 and ECR (see ../shared/TESTING.md).
# Sourced by test/run.sh, which provides log, free_port, wait_for, $CICACHE_TEST_WORK and
# $CICACHE_TEST_CACHE. Exports CICACHE_TEST_MOTO_URL, CICACHE_TEST_MOTO_BIN and test
# credentials.
#
# For development, outside test/run.sh:
#   source test/lib/moto.sh; moto_install; moto_start; ...; moto_stop
# (moto.sh defines minimal fallbacks for the helpers when run.sh is not the caller).

MOTO_VENV="${CICACHE_TEST_CACHE:-/var/tmp/cicache-test-cache}/moto-venv"
MOTO_LIB="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! declare -F free_port >/dev/null; then
  free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
fi
if ! declare -F wait_for >/dev/null; then
  wait_for() { for _ in $(seq 1 120); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done; return 1; }
fi
if ! declare -F log >/dev/null; then
  log() { printf '\n== %s ==\n' "$*" >&2; }
fi

moto_install() {
  if [ -x "$MOTO_VENV/bin/moto_server" ]; then
    return 0
  fi
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    apt_install python3-venv
  fi
  log "installing moto[server] into $MOTO_VENV"
  rm -rf "$MOTO_VENV"
  python3 -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/pip" install -q --upgrade pip >&2
  "$MOTO_VENV/bin/pip" install -q "moto[server]" >&2
  "$MOTO_VENV/bin/moto_server" --help >/dev/null
}

# True when the moto server at URL answers.
moto_ready() {
  python3 - "$1" <<'EOF'
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/moto-api/", timeout=2).read()
EOF
}

moto_start() {
  local port dir
  port=$(free_port)
  dir="${CICACHE_TEST_WORK:-/tmp}/moto"
  mkdir -p "$dir"
  # moto's server with atomic conditional writes (see moto_serve.py), through a launcher
  # that the fault tests also use to start private servers.
  printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$MOTO_VENV/bin/python" "$MOTO_LIB/moto_serve.py" >"$dir/moto-server"
  chmod +x "$dir/moto-server"
  "$dir/moto-server" -H 127.0.0.1 -p "$port" >"$dir/server.log" 2>&1 &
  MOTO_PID=$!
  echo "$MOTO_PID" >"$dir/pid"
  if ! wait_for moto_ready "http://127.0.0.1:$port"; then
    echo "moto server did not start on 127.0.0.1:$port; its log:" >&2
    cat "$dir/server.log" >&2
    return 1
  fi
  export CICACHE_TEST_MOTO_URL="http://127.0.0.1:$port"
  # For tests that start a private server to kill or stop (SIGSTOP) it.
  export CICACHE_TEST_MOTO_BIN="$dir/moto-server"
  # Test values only: moto accepts any credentials. Real keys in the caller's environment are
  # replaced so no test can ever talk to AWS with them.
  export AWS_ACCESS_KEY_ID=testing
  export AWS_SECRET_ACCESS_KEY=testing
  export AWS_SESSION_TOKEN=testing
  export AWS_REGION=us-east-1
  export AWS_DEFAULT_REGION=us-east-1
  export AWS_EC2_METADATA_DISABLED=true
  unset AWS_PROFILE
  log "moto server on $CICACHE_TEST_MOTO_URL (pid $MOTO_PID)"
}

moto_stop() {
  local dir="${CICACHE_TEST_WORK:-/tmp}/moto"
  if [ -n "${MOTO_PID:-}" ]; then
    # A test may have left it stopped (SIGSTOP): continue it so it can die.
    kill -CONT "$MOTO_PID" 2>/dev/null || true
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
    MOTO_PID=
  fi
  rm -f "$dir/pid"
}

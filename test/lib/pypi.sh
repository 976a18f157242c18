# shellcheck shell=bash
# A local package index on 127.0.0.1 serving real wheels (downloaded once with
# `pip download` into $CICACHE_TEST_CACHE/pypi-wheels) with the Cache-Control headers pip
# needs to fill its HTTP cache (test/lib/pypi_server.py).
#
# Exports CICACHE_TEST_PYPI_URL=http://127.0.0.1:PORT/simple.
# The wheels: those of examples/python-app/requirements.txt plus tomli (the requirement the
# tests add).

if ! declare -F log >/dev/null; then log() { printf '\n== %s ==\n' "$*" >&2; }; fi
if ! declare -F free_port >/dev/null; then
  free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
fi
if ! declare -F wait_for >/dev/null; then
  wait_for() { for _ in $(seq 1 120); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done; return 1; }
fi

PYPI_TEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYPI_WHEELS_EXTRA="tomli==2.0.1"

pypi_install() {
  local wheels=$CICACHE_TEST_CACHE/pypi-wheels
  local reqs=$PYPI_TEST_DIR/../../examples/python-app/requirements.txt
  local want
  want=$(grep -v '^#' "$reqs" | grep -c . || true)
  want=$((want + 1))
  if [ -d "$wheels" ] && [ "$(find "$wheels" -name '*.whl' | wc -l)" -ge "$want" ]; then
    return 0
  fi
  command -v python3 >/dev/null || apt_install python3
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  log "downloading the test wheels into $wheels"
  mkdir -p "$wheels"
  # shellcheck disable=SC2086
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
    -d "$wheels" -r "$reqs" $PYPI_WHEELS_EXTRA >&2
}

pypi_start() {
  local base=$CICACHE_TEST_WORK/pypi port
  mkdir -p "$base"
  port=$(free_port)
  python3 "$PYPI_TEST_DIR/pypi_server.py" --dir "$CICACHE_TEST_CACHE/pypi-wheels" \
    --port "$port" >"$base/log" 2>&1 &
  echo $! >"$base/pid"
  if ! wait_for python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/simple/six/')"; then
    cat "$base/log" >&2
    return 1
  fi
  export CICACHE_TEST_PYPI_URL=http://127.0.0.1:$port/simple
  log "package index $CICACHE_TEST_PYPI_URL"
}

pypi_stop() {
  local f=$CICACHE_TEST_WORK/pypi/pid
  [ -f "$f" ] || return 0
  kill "$(cat "$f")" 2>/dev/null || true
  rm -f "$f"
}

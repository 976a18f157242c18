#!/usr/bin/env bash
# run-demo.sh: the cicache demo, end to end, on a plain Debian machine (run as root).
#
#   examples/python-app/run-demo.sh [--registry HOST:PORT] [--keep]
#   examples/python-app/run-demo.sh --ml [--registry HOST:PORT] [--keep]
#
# What it does:
#  1. finds cicache ($CICACHE_BIN, target/{release,debug}/cicache, PATH; else `cargo build`);
#  2. finds a docker daemon; when none answers, installs docker.io if missing and starts a
#     private dockerd (own data-root, no bridge) for the demo, stopped at the end;
#  3. pulls python:3.12-slim and busybox:1.36; when a pull fails (no registry reachable),
#     builds both from Debian packages with make-base-images.sh and says so;
#  4. runs `cicache build` of this example twice on the default store: a cold build, then,
#     after `docker builder prune -af` (a fresh agent: no layers, no cache mounts), a build
#     whose pip step takes every wheel from the cache cicache restored and injected.
# The wheels come from a local index on 127.0.0.1 (test/lib/pypi_server.py, filled once with
# the host's `pip download`) that sends the Cache-Control headers PyPI sends: pip keeps a
# download in its cache only with them, and some package proxies strip them.
# --pypi uses pip's own index (or $PIP_INDEX_URL) instead.
# --registry HOST:PORT also uses the registry layer cache (IMAGE:cache) there.
# --keep keeps the private dockerd's directory for a look afterwards.
#
# --ml: the promise at the size of a real ML service. It builds the end-to-end benchmark's
# layered app (bench/e2e/app-layered: 308 MB of numeric/ML wheels in a first pip step, the
# service's own 3 in a second) three times, with the registry layer cache and --push:
#   cold         empty store, empty registry;
#   fresh agent  nothing changed, on an agent with no layers, no cache mounts, no workspace cache;
#   changed      one requirement of the second step changed (pillow 11.0.0 -> 11.1.0), fresh agent;
# and ends with a table of the three times and their ratio to the cold build. The wheels are
# fetched once with the host's pip (cp311 manylinux, into /var/tmp/cicache-demo-ml-wheels) and
# served from 127.0.0.1 at 20 MB/s (bench/e2e/index.py, env CICACHE_DEMO_RATE), a fast link to
# PyPI. Without --registry a local registry is started (Debian's docker-registry, installed
# when missing). A few minutes on a 2-core machine, most of it the cold build.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
REGISTRY=
KEEP=0
LOCAL_INDEX=1
ML=0
while [ $# -gt 0 ]; do
  case $1 in
    --registry) REGISTRY=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --pypi) LOCAL_INDEX=0; shift ;;
    --ml) ML=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "run-demo.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
say() { printf '\n== demo: %s ==\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_url URL: up to 10 s for URL to answer.
wait_url() {
  for _ in $(seq 1 40); do
    python3 -c "import urllib.request as u; u.urlopen('$1')" 2>/dev/null && return 0
    sleep 0.25
  done
  return 1
}

# 1. cicache
CICACHE=${CICACHE_BIN:-}
if [ -z "$CICACHE" ]; then
  for c in "$ROOT/target/release/cicache" "$ROOT/target/debug/cicache"; do
    # The newest build of this checkout.
    [ -x "$c" ] && { [ -z "$CICACHE" ] || [ "$c" -nt "$CICACHE" ]; } && CICACHE=$c
  done
fi
[ -z "$CICACHE" ] && CICACHE=$(command -v cicache || true)
if [ -z "$CICACHE" ]; then
  say "building cicache (cargo build -p cicache)"
  (cd "$ROOT" && cargo build -q -p cicache)
  CICACHE=$ROOT/target/debug/cicache
fi
say "cicache: $CICACHE"

# 2. docker
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=$(command -v docker || true)
PRIVATE=
INDEX_PID=
REG_PID=
cleanup() {
  [ -n "$INDEX_PID" ] && { kill "$INDEX_PID" 2>/dev/null || true; }
  [ -n "$REG_PID" ] && { kill "$REG_PID" 2>/dev/null || true; }
  if [ -n "$PRIVATE" ]; then
    kill "$(cat "$PRIVATE/dockerd.pid")" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$(cat "$PRIVATE/dockerd.pid")" 2>/dev/null || break; sleep 0.25; done
    if [ $KEEP = 0 ]; then umount -R "$PRIVATE/root" 2>/dev/null || true; rm -rf "$PRIVATE" || true; fi
  fi
}
trap cleanup EXIT
if [ -z "$DOCKER" ] || ! "$DOCKER" version >/dev/null 2>&1; then
  if ! command -v dockerd >/dev/null || [ -z "$DOCKER" ]; then
    say "installing docker.io (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >&2
    DOCKER=/usr/bin/docker
  fi
  PRIVATE=$(mktemp -d /tmp/cicache-demo.XXXXXX)
  say "no docker daemon answers: starting a private dockerd in $PRIVATE"
  dockerd --bridge none --iptables=false --ip-masq=false --data-root "$PRIVATE/root" \
    --exec-root "$PRIVATE/exec" --pidfile "$PRIVATE/docker.pid" \
    --host "unix://$PRIVATE/sock" >"$PRIVATE/log" 2>&1 &
  echo $! >"$PRIVATE/dockerd.pid"
  export DOCKER_HOST=unix://$PRIVATE/sock
  for _ in $(seq 1 120); do "$DOCKER" version >/dev/null 2>&1 && break; sleep 0.5; done
  "$DOCKER" version >/dev/null || { cat "$PRIVATE/log" >&2; exit 1; }
fi
export CICACHE_DOCKER=$DOCKER

# 3. base images (--ml: the wheels are cp311)
BASE_IMAGE=python:3.12-slim
[ $ML = 1 ] && BASE_IMAGE=python:3.11-slim-bookworm
HELPER=busybox:1.36
if ! timeout 120 "$DOCKER" pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
  say "cannot pull $BASE_IMAGE: building a base image from Debian packages instead (once)"
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2
  BASE_IMAGE=cicache/python:3.11-bookworm
  DOCKER=$DOCKER "$HERE/make-base-images.sh" --only python --python "$BASE_IMAGE"
fi
if ! timeout 60 "$DOCKER" pull -q "$HELPER" >/dev/null 2>&1; then
  say "cannot pull $HELPER: building the cache-dance helper image from Debian's busybox-static"
  [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static >&2
  HELPER=cicache/busybox:latest
  DOCKER=$DOCKER "$HERE/make-base-images.sh" --only busybox --busybox "$HELPER"
fi
export CICACHE_HELPER_IMAGE=$HELPER

# 4 (--ml). Three builds of the layered ML app, then the table.
if [ $ML = 1 ]; then
  WHEELS=/var/tmp/cicache-demo-ml-wheels
  APP=$ROOT/bench/e2e/app-layered
  if [ ! -f "$WHEELS/.complete" ]; then
    say "downloading the ML app's wheels once into $WHEELS (host pip, cp311 manylinux: about 330 MB)"
    mkdir -p "$WHEELS"
    python3 -m pip --version >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-pip >&2
    for r in requirements-ml.txt requirements.txt requirements-changed.txt; do
      python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --implementation cp --abi cp311 -d "$WHEELS" -r "$APP/$r" >&2
    done
    touch "$WHEELS/.complete"
  fi
  PORT=$(free_port)
  python3 "$ROOT/bench/e2e/index.py" --dir "$WHEELS" --port "$PORT" --rate "${CICACHE_DEMO_RATE:-20MB}" >/dev/null 2>&1 &
  INDEX_PID=$!
  wait_url "http://127.0.0.1:$PORT/simple/" || true
  say "package index http://127.0.0.1:$PORT/simple at ${CICACHE_DEMO_RATE:-20MB}/s"
  if [ -z "$REGISTRY" ]; then
    command -v docker-registry >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-registry >&2
    REGDIR=$(mktemp -d /tmp/cicache-demo-registry.XXXXXX)
    RPORT=$(free_port)
    printf 'version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
      "$REGDIR/data" "$RPORT" >"$REGDIR/config.yml"
    docker-registry serve "$REGDIR/config.yml" >"$REGDIR/log" 2>&1 &
    REG_PID=$!
    REGISTRY=127.0.0.1:$RPORT
    wait_url "http://$REGISTRY/v2/" || { cat "$REGDIR/log" >&2; exit 1; }
    say "local registry $REGISTRY (storage $REGDIR/data)"
  fi
  STORE=$(mktemp -d /tmp/cicache-demo-store.XXXXXX)
  IMAGE=$REGISTRY/cicache-demo/ml-app
  WORK=$(mktemp -d /tmp/cicache-demo-ml.XXXXXX)
  # ml_build NAME REQUIREMENTS: a fresh agent (no layers, no cache mounts, no images of the app,
  # a clean checkout), then one timed cicache build; prints the seconds.
  ml_build() {
    "$DOCKER" builder prune -af >/dev/null 2>&1 || true
    "$DOCKER" image ls -q "$IMAGE" | sort -u | xargs -r "$DOCKER" image rm -f >/dev/null 2>&1 || true
    rm -rf "$WORK/ws" && mkdir -p "$WORK/ws"
    cp "$APP/Dockerfile" "$APP/app.py" "$APP/.dockerignore" "$APP/requirements-ml.txt" "$WORK/ws/"
    cp "$APP/$2" "$WORK/ws/requirements.txt"
    local t0 t1
    t0=$(date +%s.%N)
    (cd "$WORK/ws" && "$CICACHE" --store "$STORE" build --image "$IMAGE" --tag "$1" --push \
      --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "PIP_INDEX_URL=http://127.0.0.1:$PORT/simple" \
      --build-arg PIP_TRUSTED_HOST=127.0.0.1 --log "$WORK/$1.log" . -- --network host >&2)
    t1=$(date +%s.%N)
    python3 -c "print(f'{$t1 - $t0:.1f}')"
  }
  say "build 1 (cold): empty store, empty registry; pip downloads 308 MB of wheels"
  COLD=$(ml_build cold requirements.txt)
  say "build 2 (a fresh agent, nothing changed): the inputs match the pushed image's label: tagged, not built"
  WARM=$(ml_build warm requirements.txt)
  say "build 3 (a fresh agent, pillow 11.0.0 -> 11.1.0): the first pip step from the registry cache, the second from the injected pip cache"
  CHANGED=$(ml_build changed requirements-changed.txt)
  say "done: store $STORE, logs in $WORK ($("$DOCKER" version --format 'docker {{.Server.Version}}' 2>/dev/null))"
  python3 - "$COLD" "$WARM" "$CHANGED" <<'PY'
import sys
cold, warm, changed = (float(x) for x in sys.argv[1:])
print(f"{'build':<44} {'seconds':>8} {'vs cold':>8}")
for name, t in (("cold (empty store, empty registry)", cold),
                ("fresh agent, nothing changed", warm),
                ("fresh agent, one requirement changed", changed)):
    r = t / cold
    print(f"{name:<44} {t:>8.1f} {(f'{r:.2f}' if r >= 0.1 else f'{r:.2g}') + 'x':>8}")
PY
  exit 0
fi

# 4. two builds on the default store (without --ml)
WORK=$(mktemp -d /tmp/cicache-demo-ws.XXXXXX)
cp "$HERE/Dockerfile" "$HERE/requirements.txt" "$HERE/app.py" "$HERE/.dockerignore" "$WORK/"
cd "$WORK"
IMAGE=cicache-demo/python-app
REG_ARGS=(--no-registry-cache)
if [ -n "$REGISTRY" ]; then
  IMAGE=$REGISTRY/cicache-demo/python-app
  REG_ARGS=(--registry-cache)
fi
PIP_ARGS=()
if [ $LOCAL_INDEX = 1 ]; then
  WHEELS=/var/tmp/cicache-demo-wheels
  if [ ! -d "$WHEELS" ] || [ -z "$(ls "$WHEELS")" ]; then
    say "downloading the example's wheels once into $WHEELS (host pip)"
    mkdir -p "$WHEELS"
    python3 -m pip --version >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-pip >&2
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$WHEELS" -r "$HERE/requirements.txt" >&2
  fi
  PORT=$(free_port)
  python3 "$ROOT/test/lib/pypi_server.py" --dir "$WHEELS" --port "$PORT" >/dev/null 2>&1 &
  INDEX_PID=$!
  wait_url "http://127.0.0.1:$PORT/simple/" || true
  say "local package index http://127.0.0.1:$PORT/simple (Cache-Control: max-age=31536000, immutable)"
  PIP_INDEX_URL=http://127.0.0.1:$PORT/simple
  PIP_TRUSTED_HOST=127.0.0.1
fi
[ -n "${PIP_INDEX_URL:-}" ] && PIP_ARGS+=(--build-arg "PIP_INDEX_URL=$PIP_INDEX_URL")
[ -n "${PIP_TRUSTED_HOST:-}" ] && PIP_ARGS+=(--build-arg "PIP_TRUSTED_HOST=$PIP_TRUSTED_HOST")
for v in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
  [ -n "${!v:-}" ] && PIP_ARGS+=(--build-arg "$v=${!v}")
done
build() {
  "$CICACHE" build --image "$IMAGE" "${REG_ARGS[@]}" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    "${PIP_ARGS[@]}" --log build.log . -- --network host
}
say "build 1 (cold): pip downloads every wheel; cicache extracts pip's cache and saves it"
build
say "a fresh agent: docker builder prune -af (no layers, no cache mounts) and no workspace cache"
"$DOCKER" builder prune -af >/dev/null
rm -rf .pip-cache
rm -f build.log
say "build 2: cicache restores the cache and injects it; pip says 'Using cached' for every wheel"
build
grep -E 'Using cached|Downloading' build.log | tail -n 20 >&2 || true
say "done (workspace $WORK; cicache list shows the store entry)"
"$CICACHE" list || true

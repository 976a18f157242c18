# shellcheck shell=bash
# Docker engine 20.10 from Debian (BuildKit built in) for the cache-dance and build tests.
#
# docker_start builds the two base images ONCE per machine (they cannot be pulled here) with
# examples/python-app/make-base-images.sh inside a throwaway dockerd, and keeps them as
# `docker save` tarballs in $CICACHE_TEST_CACHE/images:
#   busybox.tar  cicache-test/busybox:latest       (sh, cp, tar: the helper image of the dance)
#   python.tar   cicache-test/python:3.11-bookworm (the example's BASE_IMAGE)
# The tests start their own dockerd per test (a fresh data-root is a fresh agent) and
# `docker load` what they need; see crates/cicache/tests/docker.rs.
#
# Exports CICACHE_TEST_DOCKERD=1 and CICACHE_TEST_IMAGES=DIR.
# For development outside test/run.sh:
#   CICACHE_TEST_WORK=$(mktemp -d) CICACHE_TEST_CACHE=/var/tmp/cicache-test-cache \
#     bash -c 'source test/lib/docker.sh; docker_install; docker_start'

if ! declare -F log >/dev/null; then log() { printf '\n== %s ==\n' "$*" >&2; }; fi
if ! declare -F wait_for >/dev/null; then
  wait_for() { for _ in $(seq 1 120); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done; return 1; }
fi

DOCKER_TEST_ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

docker_install() {
  apt_install docker.io busybox-static debootstrap tar
}

docker_start() {
  local images=$CICACHE_TEST_CACHE/images
  mkdir -p "$images"
  if [ ! -s "$images/busybox.tar" ] || [ ! -s "$images/python.tar" ]; then
    log "building the base images once into $images"
    local d
    d=$(mktemp -d /tmp/cicache-dk.XXXXXX)
    # --bridge none: building the images needs no network.
    dockerd --bridge none --iptables=false --ip-masq=false --data-root "$d/root" \
      --exec-root "$d/exec" --host "unix://$d/sock" --pidfile "$d/pid" >"$d/log" 2>&1 &
    echo $! >"$d/dockerd.pid"
    if ! DOCKER_HOST=unix://$d/sock wait_for /usr/bin/docker version; then
      cat "$d/log" >&2
      _docker_stop_dir "$d"
      return 1
    fi
    local rc=0
    DOCKER=/usr/bin/docker DOCKER_HOST=unix://$d/sock \
      "$DOCKER_TEST_ROOT_DIR/examples/python-app/make-base-images.sh" \
      --busybox cicache-test/busybox:latest --python cicache-test/python:3.11-bookworm \
      --rootfs-cache "$images" || rc=$?
    if [ $rc = 0 ]; then
      DOCKER_HOST=unix://$d/sock /usr/bin/docker save -o "$images/busybox.tar.tmp" cicache-test/busybox:latest &&
        DOCKER_HOST=unix://$d/sock /usr/bin/docker save -o "$images/python.tar.tmp" cicache-test/python:3.11-bookworm &&
        mv "$images/busybox.tar.tmp" "$images/busybox.tar" &&
        mv "$images/python.tar.tmp" "$images/python.tar" || rc=$?
    fi
    _docker_stop_dir "$d"
    [ $rc = 0 ] || return $rc
  fi
  export CICACHE_TEST_DOCKERD=1
  export CICACHE_TEST_IMAGES=$images
  log "docker base images in $CICACHE_TEST_IMAGES ($(du -sh "$images/python.tar" | cut -f1) python, $(du -sh "$images/busybox.tar" | cut -f1) busybox)"
}

# Stops the dockerd whose state is in DIR and removes DIR.
_docker_stop_dir() {
  local d=$1 pid
  pid=$(cat "$d/dockerd.pid" 2>/dev/null || true)
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  umount -R "$d/root" 2>/dev/null || true
  umount -R "$d/exec" 2>/dev/null || true
  rm -rf "$d" 2>/dev/null || true
}

docker_stop() {
  # The tests stop their own daemons; anything left by a killed test run has its pid file
  # under $CICACHE_TEST_WORK/dockerd-*/ (the tests put them there).
  local f pid
  for f in "$CICACHE_TEST_WORK"/dockerd-*/dockerd.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
  done
  for f in "$CICACHE_TEST_WORK"/dockerd-*; do
    [ -d "$f" ] || continue
    _docker_stop_dir "$f"
  done
}

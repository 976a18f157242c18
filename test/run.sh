#!/usr/bin/env bash
# The one test command: installs what the tests need, starts the real services they run
# against (on their own ports and temp dirs), runs every test, and stops the services again,
# also on failure. Safe to run again on a machine where a previous run installed things.
#
#   test/run.sh            everything: format, clippy, Rust tests, Groovy tests, CodeNarc
#   test/run.sh --quick    Rust unit and store tests only, no services
#
# Each test/lib/NAME.sh defines NAME_install (idempotent), NAME_start (exports the
# CICACHE_TEST_* variables the tests read) and NAME_stop. Tests that need a service fail when
# its variable is missing and CICACHE_TEST_REQUIRE_SERVICES=1 (set here); run alone with
# plain `cargo test` they print "skipped: ..." instead.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CICACHE_TEST_WORK=${CICACHE_TEST_WORK:-$(mktemp -d /tmp/cicache-test.XXXXXX)}
export CICACHE_TEST_CACHE=${CICACHE_TEST_CACHE:-/var/tmp/cicache-test-cache}
mkdir -p "$CICACHE_TEST_CACHE"
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1

log() { printf '\n== %s ==\n' "$*" >&2; }

apt_install() {
  # apt_install PKG...: installs the packages that are missing.
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -q >&2; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
}

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_for CMD...: retries CMD for up to 60s.
wait_for() { for _ in $(seq 1 120); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done; return 1; }

SERVICES=()
for f in test/lib/*.sh; do
  [ -e "$f" ] || continue
  # shellcheck source=/dev/null
  source "$f"
  SERVICES+=("$(basename "$f" .sh)")
done

stop_all() {
  local rc=$?
  for s in "${SERVICES[@]}"; do "${s}_stop" || true; done
  [ -n "${CICACHE_TEST_KEEP:-}" ] || rm -rf "$CICACHE_TEST_WORK" 2>/dev/null || true
  exit $rc
}
trap stop_all EXIT INT TERM

apt_install zstd pigz
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

if [ $QUICK = 1 ]; then
  cargo test --workspace
  exit 0
fi

for s in "${SERVICES[@]}"; do log "install $s"; "${s}_install"; done
for s in "${SERVICES[@]}"; do log "start $s"; "${s}_start"; done
export CICACHE_TEST_REQUIRE_SERVICES=1

log "Rust tests"
cargo test --workspace -- --test-threads="${CICACHE_TEST_THREADS:-2}" || {
  rc=$?
  log "the registries' 5xx answers (the last 20 each), for a failure they caused"
  registry_server_errors >&2 || true
  exit $rc
}

if [ -x test/groovy/run.sh ]; then
  log "Groovy tests"
  test/groovy/run.sh
fi
log "CodeNarc: the Jenkins rules over vars/, src/ and the Jenkinsfiles"
codenarc_check "$ROOT"
log "all tests passed"

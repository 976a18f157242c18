# shellcheck shell=bash
# Debian's chromium, for the HTML report tests: they render `cicache report --format html`
# pages headless (--dump-dom, --screenshot) and assert on what the browser made of them; see
# crates/cicache/tests/report.rs.
#
# Exports CICACHE_TEST_CHROMIUM=PATH.
# For development outside test/run.sh (apt_install is test/run.sh's):
#   apt-get install -y chromium
#   CICACHE_TEST_CHROMIUM=/usr/bin/chromium cargo test -p cicache --test report_html

chromium_install() {
  apt_install chromium
}

chromium_start() {
  local bin
  bin=$(command -v chromium || true)
  if [ -z "$bin" ]; then
    echo "chromium_start: chromium is not installed (chromium_install)" >&2
    return 1
  fi
  export CICACHE_TEST_CHROMIUM=$bin
}

# Nothing runs between tests: each test starts its own headless chromium and waits for it.
chromium_stop() {
  :
}

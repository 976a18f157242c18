#!/usr/bin/env bash
# The Groovy tests of the Jenkins library (vars/, src/). Called by test/run.sh; installs
# nothing (test/lib/groovy.sh does). The last line is "N passed, N failed"; the exit code is
# non-zero on any failure.
#   test/groovy/run.sh [TestClass...]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
for j in "${JAVA_HOME:-}" /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/default-java; do
  if [ -n "$j" ] && [ -x "$j/bin/java" ]; then export JAVA_HOME=$j; break; fi
done
if ! command -v groovy >/dev/null || [ ! -f /usr/share/java/junit4.jar ]; then
  echo "groovy or junit4 is missing: run test/run.sh (test/lib/groovy.sh installs them) or apt-get install -y groovy junit4" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
# LiveCliTest runs the commands the steps issue against the real helper.
if [ ! -x target/debug/cicache ]; then
  cargo build -q -p cicache >&2 || echo "warning: could not build target/debug/cicache; LiveCliTest will fail" >&2
fi
CP="/usr/share/java/junit4.jar:/usr/share/java/hamcrest-core.jar:$ROOT/src:$ROOT/test/groovy/stubs:$ROOT/test/groovy"
export JAVA_OPTS="${JAVA_OPTS:-} -Dcicache.root=$ROOT"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
rc=0
groovy -cp "$CP" "$ROOT/test/groovy/AllTests.groovy" "$@" | tee "$out" || rc=$?
# A crash before the summary (the JVM, a broken harness) still ends with the count line.
if ! tail -n 1 "$out" | grep -Eq '^[0-9]+ passed, [0-9]+ failed$'; then
  echo "the Groovy test runner stopped before its summary (exit code $rc)"
  echo "0 passed, 1 failed"
  exit 1
fi
exit "$rc"

# CodeNarc 3.7 with its Jenkins ruleset (test/groovy/codenarc.xml) over the library: vars/,
# src/, the Jenkinsfiles in resources/ and Jenkinsfile.example. It runs as a test step, not a
# service: test/run.sh calls codenarc_check after the Groovy tests. CodeNarc comes bundled in
# npm-groovy-lint 18 (npm registry; Debian's codenarc 0.23 predates the Jenkins rules),
# installed once into $CICACHE_TEST_CACHE/codenarc. Fails on any violation, and when a file
# does not compile for the rules that need the semantic analysis phase (they would skip it).
CODENARC_VERSION=18
codenarc_dir() { echo "${CICACHE_TEST_CACHE:-/var/tmp/cicache-test-cache}/codenarc"; }
codenarc_java() { echo "$(codenarc_dir)/node_modules/npm-groovy-lint/lib/java"; }

codenarc_install() {
  if ! command -v npm >/dev/null 2>&1; then apt_install npm; fi
  if ! command -v java >/dev/null 2>&1; then apt_install default-jre-headless; fi
  if ! ls "$(codenarc_java)"/CodeNarc-3.7*.jar >/dev/null 2>&1; then
    mkdir -p "$(codenarc_dir)"
    # --ignore-scripts: only the bundled jars are used, not the linter's node front end.
    (cd "$(codenarc_dir)" && npm install --no-audit --no-fund --ignore-scripts "npm-groovy-lint@$CODENARC_VERSION" >&2)
  fi
}
codenarc_start() { :; }
codenarc_stop() { :; }

# codenarc_check [ROOT]: lints the library under ROOT (default: the current directory).
codenarc_check() {
  local root=${1:-$PWD} java cp out rc=0 want
  # CodeNarc's 'DIR/**/*.groovy' skips files directly in DIR: vars/ is named on its own. The
  # report must count every file, or a pattern missed some.
  want=$(cd "$root" && { ls vars/*.groovy; find src -name '*.groovy'; find resources -name '*Jenkinsfile*'; ls Jenkinsfile*; } 2>/dev/null | wc -l)
  java=$(codenarc_java)
  cp=$(ls "$java"/*.jar "$java"/groovy/lib/*.jar | tr '\n' ':')
  # src/ and the Jenkins stand-ins, so the enhanced rules compile the library to semantic analysis.
  cp="$cp$root/src:$root/test/groovy/stubs"
  out=$(mktemp -d)
  (cd "$root" && java -cp "$cp" org.codenarc.CodeNarc -basedir=. \
    -includes='vars/*.groovy,src/**/*.groovy,resources/**/*Jenkinsfile*,Jenkinsfile*' \
    -rulesetfiles="file:$root/test/groovy/codenarc.xml" -report="text:$out/report.txt") >"$out/log" 2>&1 || rc=$?
  cat "$out/report.txt" 2>/dev/null || cat "$out/log"
  if [ $rc -ne 0 ] || ! grep -q 'Summary: TotalFiles=' "$out/report.txt" 2>/dev/null; then
    echo "CodeNarc did not run (exit code $rc):" >&2; tail -n 20 "$out/log" >&2; rm -rf "$out"; return 1
  fi
  if grep -q 'Compilation failed' "$out/log"; then
    echo "CodeNarc could not compile a file, so its enhanced Jenkins rules skipped it:" >&2
    grep -A4 'Compilation failed' "$out/log" >&2; rm -rf "$out"; return 1
  fi
  if ! grep -q "Summary: TotalFiles=$want " "$out/report.txt"; then
    echo "CodeNarc checked fewer files than the library has ($want): an include pattern misses some" >&2; rm -rf "$out"; return 1
  fi
  if ! grep -Eq 'Summary: TotalFiles=[0-9]+ FilesWithViolations=0 P1=0 P2=0 P3=0' "$out/report.txt"; then
    echo "CodeNarc's Jenkins rules found violations (above)" >&2; rm -rf "$out"; return 1
  fi
  rm -rf "$out"
}

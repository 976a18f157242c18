#!/usr/bin/env bash
# The end-to-end build benchmark (issue 7): how long a Docker build of an ML-style Python app
# takes cold, warm on the same agent, warm on a fresh agent, and after one requirement
# changed, for several caching strategies, against real parts only (dockerd 20.10 with BuildKit,
# or dockerd 26 with buildx on either image store (issue 20); the distribution registry, real
# pip in the image, cicache's release build).
#
#   bench/e2e.sh [--engine 20.10|26-graph|26-containerd] [--runs N] [--rate 20MB] [--app single|layered]
#                [--strategies "none mount registry full"]
#                [--scenarios "cold warm-same warm-fresh code changed"] [--out DIR] [--no-build]
#                [--no-report] [--reset] [--pause S] [--drop-caches]
#
# --engine E     the engine of every agent (default 20.10; env CICACHE_E2E_ENGINE; bench/lib.sh):
#                20.10          Debian bookworm's docker.io 20.10, classic `docker build`
#                26-graph       Debian trixie's dockerd 26.1.5 + containerd 1.7, buildx 0.13.1,
#                               graph-driver store (overlay2: the default before Docker 29)
#                26-containerd  the same on the containerd image store (the default of Docker 29)
#                Results are named e2e[-layered]-<engine>-<UTC time> for the 26 engines.
# --runs N       rounds (default 3); each round runs every strategy, in an order rotated per
#                round so machine load hits the strategies alike
# --rate R       bandwidth of the package index (default 20MB = 20,000,000 B/s; env CICACHE_E2E_RATE)
# --app A        the app built (default single; env CICACHE_E2E_APP):
#                single:  bench/e2e/app, one pip step installing all 15 wheels
#                layered: bench/e2e/app-layered, the same 15 wheels in two pip steps: the 12
#                         numeric/ML wheels (requirements-ml.txt), then the service's own 3
#                         (requirements.txt: cryptography, grpcio, pillow)
#                Recorded in machine.txt (app: ...); a layered run's results are named
#                e2e-layered-<UTC time>
# --strategies   default on 20.10 "none mount registry full", on 26-containerd
#                "none hand full full-zstd", on 26-graph "none hand full":
#                none:     20.10: docker build --no-cache (nothing cached at all), docker push;
#                          26: docker buildx build --push (what a user runs without any cache;
#                          every scenario is then a cold build on a fresh agent, so on the 26
#                          engines it runs the cold scenario only)
#                mount:    plain DOCKER_BUILDKIT=1 docker build (local layer cache and the pip
#                          cache mount: what the guide's first step gives), docker push
#                registry: cicache build --push with the registry layer cache only
#                          (--no-restore --no-inject --no-extract --no-save --no-prefetch
#                          --rebuild; --no-prefetch from 2026-12-06 21:00: --rebuild keeps the
#                          check since e01e6fb, so the prefetch ran in this strategy before)
#                hand:     26: the registry layer cache by hand, no cicache: docker buildx build
#                          --push --cache-from type=registry,ref=IMAGE:cache and, on the
#                          containerd store, --cache-to type=registry,ref=IMAGE:cache,mode=max,
#                          image-manifest=true,oci-mediatypes=true; on the graph store (whose
#                          docker driver cannot export a registry cache) --cache-to type=inline
#                          with -t IMAGE:cache
#                full:     cicache build --push: store + cache dance + registry layer cache
#                full-zstd: the same with --compression zstd (26-containerd)
#                hand-args: hand with the arguments cicache adds to the same command (-f, three
#                          labels, ignore-error=true on --cache-to; not in the default lists)
#                full-nodir: cicache build --push without the cache dir (--no-restore --no-inject
#                          --no-extract --no-save; not in the default lists): the check and the
#                          registry layer cache only, to tell the build's time from the cache dir's
#                          work beside it
#                full-gzip1: the same with --compression gzip --compression-level 1 (26-containerd;
#                          not in the default list): gzip that every puller reads, compressed
#                          faster than BuildKit's default level
# --scenarios    default on 20.10 "cold warm-same warm-fresh code changed", on the 26 engines
#                "cold warm-fresh rebuild code changed":
#                cold:       fresh agent (new dockerd data-root), empty store, empty registry
#                warm-same:  the same build again on the same agent (daemon state kept)
#                warm-fresh: the same build on a fresh agent; store and registry kept
#                rebuild:    warm-fresh with cicache's --rebuild (the unchanged-inputs check off:
#                            every step from the registry cache); the same build as warm-fresh
#                            for the strategies without cicache
#                code:       the app code changed (app.py), requirements the same, fresh agent
#                            (not one of issue 7's scenarios: the everyday commit)
#                changed:    one requirement changed (pillow 11.0.0 -> 11.1.0), fresh agent
#                changed-ml: --app layered only, not in the default list: a requirement of the
#                            first, heavy step changed (numpy 2.1.3 -> 2.1.2), fresh agent; what
#                            the layering cannot help (run it after cold: the summary shows
#                            only the five above, runs.jsonl has it)
# --out DIR      raw results (default /var/tmp/cicache-bench/results/e2e-<UTC time>, for
#                --app layered e2e-layered-<UTC time>); the summary goes to
#                bench/results/ under the same name unless --no-report
# --no-build     use $CICACHE_BIN or target/release/cicache as it is
# --reset        every scenario after a strategy's first one starts from the store and registry
#                that first one left (copies taken after it, put back before each build): a
#                scenario may then be listed more than once to measure its spread, e.g.
#                --strategies full --scenarios "cold changed changed changed changed"
#                (repeats are logged as NAME-2, NAME-3, ...; runs.jsonl has `repeat`)
# --pause S      sleep S seconds (after `sync`) before each timed build: the machine idle at
#                the start, as a fresh agent is (default 0)
# --drop-caches  `sync` and drop the kernel's page, dentry and inode caches
#                (/proc/sys/vm/drop_caches) before each timed build, so that every build
#                starts from the same kernel state instead of inheriting the caches the
#                builds before it grew; on the VM of docs/BENCHMARKS.md the same layer
#                unpack takes twice as long once they have grown (bench/unpack.sh)
#
# Tags: each build pushes IMAGE:<scenario>; on the 26 engines IMAGE:latest too, as the README's
# Jenkinsfile does (tags [GIT_COMMIT, latest]): with buildx's registry cache exporter cicache's
# unchanged-inputs check reads the labels of the build's own tags (docs/BUILD.md), so a
# pipeline that pushes only new tags is never tagged-not-built there.
# A fresh agent is a new dockerd (own data-root, exec-root, socket; --bridge none: the builds
# use --network host to reach the index on 127.0.0.1, the cache dance --network none) whose
# base images are `docker load`ed from the test suite's tarballs before the timer starts.
# Every build starts from a fresh workspace (a clean checkout: no .pip-cache). Each strategy
# and round has its own registry (docker-registry on a free port) and its own store.
# After the scenarios the cleanup job runs: `cicache prune --max-unused 0s --keep-last 1`,
# `cicache registry gc --max-age 0s --untagged` + `docker-registry garbage-collect`,
# `cicache docker prune`; what each reclaims is recorded.
# Needs root, docker.io, docker-registry, busybox-static, debootstrap (the base images, once),
# GNU time, python3. Raw per-build records: DIR/runs.jsonl; logs: DIR/logs/.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${CICACHE_BENCH_DIR:-/var/tmp/cicache-bench}
E2E_DIR=$BENCH_DIR/e2e
RUNS=3
RATE=${CICACHE_E2E_RATE:-20MB}
APP=${CICACHE_E2E_APP:-single}
ENGINE=${CICACHE_E2E_ENGINE:-20.10}
STRATEGIES=""
SCENARIOS=""
OUT=""
BUILD=1
REPORT=1
RESET=0
PAUSE=0
DROP=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift ;;
    --rate) RATE=$2; shift ;;
    --app) APP=$2; shift ;;
    --engine) ENGINE=$2; shift ;;
    --strategies) STRATEGIES=$2; shift ;;
    --scenarios) SCENARIOS=$2; shift ;;
    --out) OUT=$2; shift ;;
    --no-build) BUILD=0 ;;
    --no-report) REPORT=0 ;;
    --reset) RESET=1 ;;
    --pause) PAUSE=$2; shift ;;
    --drop-caches) DROP=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "e2e.sh: unknown option $1 (see bench/e2e.sh --help)" >&2; exit 2 ;;
  esac
  shift
done
case $APP in
  single) APP_DIR=$REPO/bench/e2e/app; RESULTS_NAME=e2e ;;
  layered) APP_DIR=$REPO/bench/e2e/app-layered; RESULTS_NAME=e2e-layered ;;
  *) echo "e2e.sh: unknown app $APP (single or layered)" >&2; exit 2 ;;
esac
case $ENGINE in
  20.10)
    STRATEGIES=${STRATEGIES:-none mount registry full}
    SCENARIOS=${SCENARIOS:-cold warm-same warm-fresh code changed}
    ;;
  26-graph|26-containerd)
    RESULTS_NAME=$RESULTS_NAME-$ENGINE
    if [[ $ENGINE == 26-graph ]]; then STRATEGIES=${STRATEGIES:-none hand full}; fi
    STRATEGIES=${STRATEGIES:-none hand full full-zstd}
    SCENARIOS=${SCENARIOS:-cold warm-fresh rebuild code changed}
    ;;
  *) echo "e2e.sh: unknown engine $ENGINE (20.10, 26-graph or 26-containerd)" >&2; exit 2 ;;
esac
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$BENCH_DIR/results/$RESULTS_NAME-$STAMP}
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)

log() { printf '%s e2e.sh: %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$OUT/e2e.log" >&2; }
# The test services' own functions: free_port, wait_for, _docker_stop_dir, docker_start
# (builds the base image tarballs once), _registry_config.
export CICACHE_TEST_CACHE=${CICACHE_TEST_CACHE:-/var/tmp/cicache-test-cache}
export CICACHE_TEST_WORK=$OUT/testwork
mkdir -p "$CICACHE_TEST_WORK"
# shellcheck source=../test/lib/pypi.sh
source "$REPO/test/lib/pypi.sh"
# shellcheck source=../test/lib/docker.sh
source "$REPO/test/lib/docker.sh"
# shellcheck source=../test/lib/docker26.sh
source "$REPO/test/lib/docker26.sh"
# shellcheck source=../test/lib/registry.sh
source "$REPO/test/lib/registry.sh"
# shellcheck source=lib.sh
source "$REPO/bench/lib.sh" # apt_install, engine_check, new_agent, stop_agent, new_registry

[[ $(id -u) == 0 ]] || { echo "e2e.sh: needs root (dockerd)" >&2; exit 1; }
docker_install
registry_install
apt_install time python3 python3-pip
engine_check # DOCKER: the engine's client
export DOCKER_BUILDKIT=1 CICACHE_DOCKER=$DOCKER
docker_start # the base image tarballs, once per machine
IMAGES=$CICACHE_TEST_IMAGES
BASE_IMAGE=cicache-test/python:3.11-bookworm
export CICACHE_HELPER_IMAGE=cicache-test/busybox:latest

# --- wheels: the store benchmark's 15 big wheels + the changed requirement --------------
WHEELS=$E2E_DIR/wheels
mkdir -p "$WHEELS"
if [[ ! -f $BENCH_DIR/wheels/base/.downloaded ]]; then
  log "downloading the store benchmark's wheels (bench/corpus.sh --no-2g, once)"
  "$REPO/bench/corpus.sh" --no-2g
fi
ln -f "$BENCH_DIR"/wheels/base/*.whl "$WHEELS"/ 2>/dev/null || cp -n "$BENCH_DIR"/wheels/base/*.whl "$WHEELS"/
if ! ls "$WHEELS"/pillow-11.1.0-*.whl >/dev/null 2>&1; then
  log "downloading pillow 11.1.0 (the changed requirement)"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux2014_x86_64 --implementation cp --abi cp311 pillow==11.1.0 -d "$WHEELS" >&2
fi
if [[ " $SCENARIOS " == *" changed-ml "* ]] && ! ls "$WHEELS"/numpy-2.1.2-*.whl >/dev/null 2>&1; then
  log "downloading numpy 2.1.2 (the changed-ml requirement)"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux2014_x86_64 --implementation cp --abi cp311 numpy==2.1.2 -d "$WHEELS" >&2
fi
log "wheels: $(find "$WHEELS" -name '*.whl' | wc -l) files, $(du -sbL "$WHEELS" | cut -f1) bytes in $WHEELS"

# --- cicache ------------------------------------------------------------------------
CICACHE_SRC=${CICACHE_BIN:-$REPO/target/release/cicache}
if [[ $BUILD == 1 && -z ${CICACHE_BIN:-} ]]; then
  log "cargo build --release -p cicache"
  (cd "$REPO" && cargo build --release -q -p cicache)
fi
# A private copy: other people's builds in the shared target/ do not change it mid-run.
CICACHE=$OUT/cicache
cp "$CICACHE_SRC" "$CICACHE"
TREE=$(cd "$REPO" && git rev-parse --short HEAD)
if [[ -n $(cd "$REPO" && git status --porcelain --untracked-files=no) ]]; then TREE="$TREE + working tree"; fi
log "cicache: $("$CICACHE" --version) ($TREE)"

# --- the index ----------------------------------------------------------------------
INDEX_PID=""
AGENT=""
REG_PID=""
cleanup() {
  [[ -n $AGENT ]] && stop_agent "$AGENT"
  [[ -n $REG_PID ]] && kill "$REG_PID" 2>/dev/null
  [[ -n $INDEX_PID ]] && kill "$INDEX_PID" 2>/dev/null
  return 0
}
trap cleanup EXIT
INDEX_PORT=$(free_port)
python3 "$REPO/bench/e2e/index.py" --dir "$WHEELS" --port "$INDEX_PORT" --rate "$RATE" \
  >"$OUT/logs/index.log" 2>&1 &
INDEX_PID=$!
wait_for python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$INDEX_PORT/simple/')" ||
  { cat "$OUT/logs/index.log" >&2; exit 1; }
INDEX_URL=http://127.0.0.1:$INDEX_PORT/simple
index_bytes() { python3 -c "import json,urllib.request as u; print(json.load(u.urlopen('http://127.0.0.1:$INDEX_PORT/stats'))['bytes'])"; }
log "index $INDEX_URL at $RATE/s"

{
  echo "date: $(date -u +%FT%TZ)"
  echo "nproc: $(nproc)"
  echo "memory: $(free -b | awk '/^Mem:/ {print $2}') bytes"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "kernel: $(uname -r)"
  echo "engine: $ENGINE"
  new_agent
  echo "docker: $(engine_version)"
  stop_agent "$AGENT"
  AGENT=""
  echo "registry: $(docker-registry --version 2>/dev/null || dpkg -s docker-registry | awk '/^Version/ {print $2}')"
  echo "cicache: $("$CICACHE" --version)"
  echo "commit: $(cd "$REPO" && git rev-parse HEAD)"
  echo "tree: $TREE"
  echo "app: $APP"
  echo "rate: $RATE"
  echo "wheels: $(find "$WHEELS" -name '*.whl' | wc -l) files, $(du -sbL "$WHEELS" | cut -f1) bytes"
  echo "runs: $RUNS"
  echo "strategies: $STRATEGIES"
  echo "scenarios: $SCENARIOS"
  echo "reset: $RESET"
  echo "pause: $PAUSE"
  echo "drop-caches: $DROP"
} >"$OUT/machine.txt"

# --- agents and registries ----------------------------------------------------------
# snapshot_state / reset_state: the store and the registry's storage as the first scenario
# left them, copied aside and put back (--reset); the registry restarts on its port.
restart_registry() {
  [[ -n $REG_PID ]] && { kill "$REG_PID" 2>/dev/null; wait "$REG_PID" 2>/dev/null || true; }
  docker-registry serve "$REG_DIR/config.yml" >>"$REG_DIR/log" 2>&1 &
  REG_PID=$!
  wait_for curl -sf "http://$REG/v2/" || { cat "$REG_DIR/log" >&2; return 1; }
}
snapshot_state() {
  rm -rf "$WORK/snapshot"
  mkdir -p "$WORK/snapshot"
  [[ -n $REG_PID ]] && { kill "$REG_PID" 2>/dev/null; wait "$REG_PID" 2>/dev/null || true; REG_PID=""; }
  cp -a "$REG_DIR/data" "$WORK/snapshot/registry"
  if [[ -d $STORE ]]; then cp -a "$STORE" "$WORK/snapshot/store"; fi
  restart_registry
}
reset_state() {
  [[ -n $REG_PID ]] && { kill "$REG_PID" 2>/dev/null; wait "$REG_PID" 2>/dev/null || true; REG_PID=""; }
  rm -rf "$REG_DIR/data" "$STORE"
  cp -a "$WORK/snapshot/registry" "$REG_DIR/data"
  if [[ -d $WORK/snapshot/store ]]; then cp -a "$WORK/snapshot/store" "$STORE"; fi
  sync
  restart_registry
}

size_of() { if [[ -d $1 ]]; then du -sb "$1" | cut -f1; else echo 0; fi; }

# build STRATEGY ROUND SCENARIO REQUIREMENTS: one timed build from a fresh workspace.
build() {
  local s=$1 r=$2 sc=$3 req=$4
  local name=$s-r$r-$sc
  SEEN[$name]=$((${SEEN[$name]:-0} + 1))
  local repeat=${SEEN[$name]}
  [[ $repeat == 1 ]] || name=$name-$repeat
  local ws=$WORK/ws-$sc
  rm -rf "$ws"
  mkdir -p "$ws"
  cp "$APP_DIR/Dockerfile" "$APP_DIR/app.py" "$APP_DIR/.dockerignore" "$ws/"
  # The layered app's numeric/ML stack: the same file in every scenario but changed-ml.
  if [[ $sc == changed-ml ]]; then
    cp "$APP_DIR/requirements-ml-changed.txt" "$ws/requirements-ml.txt"
  elif [[ $APP == layered ]]; then
    cp "$APP_DIR/requirements-ml.txt" "$ws/"
  fi
  cp "$APP_DIR/$req" "$ws/requirements.txt"
  # The code scenario (and every one after it: the repository moved on) has a changed app.py.
  if [[ $sc == code || $sc == changed || $sc == changed-ml ]]; then
    printf '\n# changed by the code scenario\nprint("v2")\n' >>"$ws/app.py"
  fi
  local args=(--build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "PIP_INDEX_URL=$INDEX_URL"
    --build-arg PIP_TRUSTED_HOST=127.0.0.1)
  local image=$REG/bench/app
  local store_before reg_before idx_before reglog_before load t0 t1 rc=0
  store_before=$(size_of "$STORE")
  reg_before=$(size_of "$REG_DIR/data")
  reglog_before=$(stat -c %s "$REG_DIR/log")
  idx_before=$(index_bytes)
  if [[ $PAUSE != 0 ]]; then sync; sleep "$PAUSE"; fi
  if [[ $DROP == 1 ]]; then sync; echo 3 >/proc/sys/vm/drop_caches; fi
  load=$(cut -d' ' -f1 /proc/loadavg)
  local json=$OUT/logs/$name.json timef=$OUT/logs/$name.time blog=$OUT/logs/$name.build.log
  t0=$(date +%s.%N)
  case $s in
    none|mount)
      local nc=()
      [[ $s == none ]] && nc=(--no-cache)
      if [[ $ENGINE == 20.10 ]]; then
        (cd "$ws" && "$DOCKER" build --progress=plain "${nc[@]}" --network host "${args[@]}" \
          -t "$image:$sc" . >"$blog" 2>&1 && "$DOCKER" push "$image:$sc" >>"$blog" 2>&1) || rc=$?
      else
        (cd "$ws" && "$DOCKER" buildx build --progress=plain --push --network host "${args[@]}" \
          -t "$image:$sc" -t "$image:latest" . >"$blog" 2>&1) || rc=$?
      fi
      ;;
    hand|hand-args)
      local cache=(--cache-from "type=registry,ref=$image:cache") ignore=""
      if [[ $s == hand-args ]]; then
        # The by-hand command with the arguments cicache adds (-f, its three labels, ignore-error).
        ignore=,ignore-error=true
        cache+=(-f ./Dockerfile --label "io.cicache.mount-inputs=$(printf %064d 1)"
          --label "io.cicache.mount-steps=$(printf %064d 2) $(printf %064d 1)"
          --label "io.cicache.inputs=$(printf %064d 3)")
      fi
      if [[ $ENGINE == 26-containerd ]]; then
        cache+=(--cache-to "type=registry,ref=$image:cache,mode=max,image-manifest=true,oci-mediatypes=true$ignore")
      else
        cache+=(--cache-to type=inline -t "$image:cache")
      fi
      (cd "$ws" && "$DOCKER" buildx build --progress=plain --push --network host "${args[@]}" \
        "${cache[@]}" -t "$image:$sc" -t "$image:latest" . >"$blog" 2>&1) || rc=$?
      ;;
    registry|full|full-zstd|full-gzip1|full-nodir)
      local off=()
      # --rebuild: the unchanged-inputs check is cicache's, not part of the by-hand recipe;
      # nor is the prefetch (Docker 20.10 only).
      [[ $s == registry ]] && off=(--no-restore --no-inject --no-extract --no-save --no-prefetch --rebuild)
      [[ $s == full-zstd ]] && off=(--compression zstd)
      [[ $s == full-gzip1 ]] && off=(--compression gzip --compression-level 1)
      [[ $s == full-nodir ]] && off=(--no-restore --no-inject --no-extract --no-save)
      [[ $sc == rebuild && $s != registry ]] && off+=(--rebuild)
      [[ $ENGINE != 20.10 ]] && off+=(--tag latest)
      (cd "$ws" && /usr/bin/time -v -o "$timef" "$CICACHE" --json --progress never build \
        --image "$image" --tag "$sc" --push --scope main --store "$STORE" "${off[@]}" \
        "${args[@]}" --log "$blog" . -- --network host >"$json" 2>"$OUT/logs/$name.stderr") || rc=$?
      ;;
  esac
  t1=$(date +%s.%N)
  local store_after reg_after idx_after pulled hwm
  # Bytes the registry served (GET responses: layers, manifests) during the build, from its
  # access log (combined format: "GET /v2/... HTTP/1.1" STATUS BYTES).
  pulled=$(tail -c +"$((reglog_before + 1))" "$REG_DIR/log" | python3 -c '
import re, sys
print(sum(int(m.group(1)) for m in re.finditer(r"\"GET [^\"]*\" \d+ (\d+)", sys.stdin.read())))')
  # Peak resident memory of the agent's daemons since they started (a fresh agent per
  # scenario but warm-same): dockerd (BuildKit runs in it) + its containerd, KiB.
  hwm=$(agent_hwm_kib)
  store_after=$(size_of "$STORE")
  reg_after=$(size_of "$REG_DIR/data")
  idx_after=$(index_bytes)
  python3 "$REPO/bench/e2e/record.py" --out "$OUT/runs.jsonl" --round "$r" --strategy "$s" \
    --scenario "$sc" --wall "$(awk "BEGIN {print $t1 - $t0}")" --rc "$rc" --load "$load" \
    --store "$store_before" "$store_after" --registry "$reg_before" "$reg_after" \
    --index "$idx_before" "$idx_after" --pulled "$pulled" --daemon-hwm "$hwm" --repeat "$repeat" --json "$json" --time "$timef" --log "$blog" >&2
  [[ $rc == 0 ]] || log "$name failed (exit $rc): see $blog"
}

# agent_hwm_kib: VmHWM of the agent's dockerd plus its containerd (26 engines), KiB.
agent_hwm_kib() {
  local f pid total=0 v
  for f in dockerd containerd; do
    pid=$(cat "$AGENT/$f.pid" 2>/dev/null || true)
    [[ -n $pid ]] || continue
    v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

# cleanup_job STRATEGY ROUND: the scheduled cleanup after the scenarios; records what it frees.
cleanup_job() {
  local s=$1 r=$2 name=$1-r$2-cleanup
  local sb sa rb ra
  sb=$(size_of "$STORE")
  "$CICACHE" --json --progress never prune --store "$STORE" --max-unused 0s --keep-last 1 \
    >"$OUT/logs/$name-prune.json" 2>>"$OUT/logs/$name.stderr" || true
  sa=$(size_of "$STORE")
  rb=$(size_of "$REG_DIR/data")
  "$CICACHE" --json --progress never registry gc --image "$REG/bench/app" --plain-http \
    --max-age 0s --untagged >"$OUT/logs/$name-registry-gc.json" 2>>"$OUT/logs/$name.stderr" || true
  docker-registry garbage-collect --delete-untagged "$REG_DIR/config.yml" \
    >"$OUT/logs/$name-registry-garbage-collect.log" 2>&1 || true
  ra=$(size_of "$REG_DIR/data")
  "$CICACHE" --json --progress never docker prune \
    >"$OUT/logs/$name-docker-prune.json" 2>>"$OUT/logs/$name.stderr" || true
  python3 "$REPO/bench/e2e/record.py" --out "$OUT/cleanup.jsonl" --round "$r" --strategy "$s" \
    --scenario cleanup --store "$sb" "$sa" --registry "$rb" "$ra" \
    --json "$OUT/logs/$name-docker-prune.json" >&2
}

# --- the matrix ---------------------------------------------------------------------
declare -A SEEN # how often each strategy-round-scenario ran (--reset repeats)
read -r -a STRATS <<<"$STRATEGIES"
read -r -a SCENS <<<"$SCENARIOS"
log "raw results in $OUT; app $APP; $RUNS rounds of ${#STRATS[@]} strategies x ${#SCENS[@]} scenarios"
for ((r = 1; r <= RUNS; r++)); do
  n=${#STRATS[@]}
  for ((i = 0; i < n; i++)); do
    s=${STRATS[$(((i + r - 1) % n))]}
    WORK=$OUT/work/$s-r$r
    mkdir -p "$WORK"
    STORE=$WORK/store
    new_registry "$WORK/registry"
    log "round $r, $s (registry $REG, load $(cut -d' ' -f1-3 /proc/loadavg))"
    first=1
    for sc in "${SCENS[@]}"; do
      # Without any cache every scenario is a cold build on a fresh agent: measured once.
      [[ $s == none && $ENGINE != 20.10 && $sc != cold ]] && continue
      [[ $RESET == 1 && $first == 0 ]] && reset_state
      case $sc in
        cold) new_agent; build "$s" "$r" cold requirements.txt ;;
        warm-same) [[ -n $AGENT ]] || new_agent; build "$s" "$r" warm-same requirements.txt ;;
        warm-fresh) new_agent; build "$s" "$r" warm-fresh requirements.txt ;;
        rebuild) new_agent; build "$s" "$r" rebuild requirements.txt ;;
        code) new_agent; build "$s" "$r" code requirements.txt ;;
        changed) new_agent; build "$s" "$r" changed requirements-changed.txt ;;
        changed-ml)
          [[ $APP == layered ]] || { echo "e2e.sh: changed-ml needs --app layered" >&2; exit 2; }
          new_agent; build "$s" "$r" changed-ml requirements.txt ;;
        *) echo "e2e.sh: unknown scenario $sc" >&2; exit 2 ;;
      esac
      [[ $RESET == 1 && $first == 1 ]] && snapshot_state
      first=0
    done
    cleanup_job "$s" "$r"
    stop_agent "$AGENT"
    AGENT=""
    kill "$REG_PID" 2>/dev/null || true
    REG_PID=""
    rm -rf "$WORK" # the store and the registry: several GB per strategy and round
  done
done
log "done: $OUT/runs.jsonl"

if [[ $REPORT == 1 ]]; then
  SUMMARY=$REPO/bench/results/$RESULTS_NAME-$STAMP
  python3 "$REPO/bench/e2e/summary.py" --raw "$OUT" --out "$SUMMARY"
  log "summary in $SUMMARY"
fi

#!/usr/bin/env bash
# Where a fresh agent's pull of a big pip layer spends its time (issue 7's *one requirement
# changed* floor): the same layer pulled by a fresh dockerd from a local registry, against the
# command-line tools doing the same steps (decompress, unpack) on the same machine, and
# dockerd's push compression against gzip and pigz.
#
#   bench/unpack.sh [--runs N] [--drop-caches] [--out DIR]
#
# --runs N   pulls, each on a fresh dockerd (default 3); the tool timings run N times too
# --drop-caches  `sync` and drop the kernel's caches before each timed step (as
#            bench/e2e.sh --drop-caches); without it, each step inherits what the steps
#            before it grew
# --out DIR  results (default /var/tmp/cicache-bench/results/unpack-<UTC time>); the summary
#            (summary.md, machine.txt) is copied to bench/results/ under the same name
#
# The layer: the end-to-end benchmark's 12 numeric/ML wheels (bench/e2e/app-layered's
# requirements-ml.txt) installed by pip into the base image, `docker commit`ed, pushed once
# (timed: dockerd's gzip). Each pull is timed on a new dockerd that has the base image
# already (so only the pip layer moves, as in cicache build's prefetch), with the CPU seconds
# of dockerd, its unpigz and its docker-untar child. The tools: `gzip -dc` and `unpigz -c`
# of the pushed blob to /dev/null, `unpigz -c | tar -x` into a new directory on the data-root's
# filesystem, `gzip -6` and `pigz -6` of the layer tar.
#
# Needs root, docker.io, docker-registry, pigz; the wheels of bench/e2e.sh (run it once, or
# bench/corpus.sh --no-2g) and the test suite's base image tarballs.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${CICACHE_BENCH_DIR:-/var/tmp/cicache-bench}
RUNS=3
OUT=""
DROP=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift ;;
    --out) OUT=$2; shift ;;
    --drop-caches) DROP=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unpack.sh: unknown option $1 (see bench/unpack.sh --help)" >&2; exit 2 ;;
  esac
  shift
done
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
NAME=unpack-$STAMP
OUT=${OUT:-$BENCH_DIR/results/$NAME}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
log() { printf '%s unpack.sh: %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$OUT/unpack.log" >&2; }

[[ $(id -u) == 0 ]] || { echo "unpack.sh: needs root (dockerd)" >&2; exit 1; }
export CICACHE_TEST_CACHE=${CICACHE_TEST_CACHE:-/var/tmp/cicache-test-cache}
export CICACHE_TEST_WORK=$OUT/testwork
mkdir -p "$CICACHE_TEST_WORK"
# shellcheck source=../test/lib/pypi.sh
source "$REPO/test/lib/pypi.sh" # free_port
# shellcheck source=../test/lib/docker.sh
source "$REPO/test/lib/docker.sh"
# shellcheck source=../test/lib/registry.sh
source "$REPO/test/lib/registry.sh"
# shellcheck source=lib.sh
source "$REPO/bench/lib.sh" # apt_install, new_agent, new_registry
docker_install
registry_install
apt_install pigz bc
DOCKER=/usr/bin/docker
docker_start # the base image tarballs, once per machine
IMAGES=$CICACHE_TEST_IMAGES
BASE_IMAGE=cicache-test/python:3.11-bookworm

WHEELS=$BENCH_DIR/e2e/wheels
[[ -d $WHEELS ]] || { echo "unpack.sh: no wheels in $WHEELS: run bench/e2e.sh once" >&2; exit 1; }
mapfile -t REQS < <(grep -v '^#' "$REPO/bench/e2e/app-layered/requirements-ml.txt" | grep .)

WORK=$(mktemp -d /var/tmp/ccunpack.XXXXXX)
AGENT=""
REG_PID=""
cleanup() {
  [[ -n $AGENT ]] && _docker_stop_dir "$AGENT"
  [[ -n $REG_PID ]] && kill "$REG_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

new_registry "$WORK/registry"
IMAGE=$REG/unpack:1

# --- the layer ------------------------------------------------------------------------
new_agent
log "installing ${#REQS[@]} wheels with pip into $BASE_IMAGE"
"$DOCKER" run --name layer --network none -v "$WHEELS:/wheels:ro" "$BASE_IMAGE" \
  pip install -q --no-deps --no-index --disable-pip-version-check --find-links /wheels \
  "${REQS[@]}" >"$OUT/pip.log" 2>&1
"$DOCKER" commit layer "$IMAGE" >/dev/null
"$DOCKER" rm layer >/dev/null
mkdir -p "$WORK/save"
"$DOCKER" save "$IMAGE" | tar -x -C "$WORK/save"
LAYER_TAR=$WORK/save/$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["Layers"][-1])' "$WORK/save/manifest.json")
LAYER_BYTES=$(stat -c %s "$LAYER_TAR")
LAYER_FILES=$(tar -tf "$LAYER_TAR" | wc -l)
log "layer: $LAYER_BYTES bytes, $LAYER_FILES entries"

t0=$(date +%s.%N)
"$DOCKER" push -q "$IMAGE" >/dev/null
PUSH_S=$(echo "$(date +%s.%N) - $t0" | bc)
log "docker push: $PUSH_S s"
BLOB=$(find "$WORK/registry/data" -path '*/blobs/*' -name data -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2)
BLOB_BYTES=$(stat -c %s "$BLOB")

timed() { # timed LABEL CMD...: appends "LABEL seconds" to times.txt
  local label=$1 t
  shift
  if [[ $DROP == 1 ]]; then sync; echo 3 >/proc/sys/vm/drop_caches; fi
  t=$(date +%s.%N)
  "$@"
  echo "$label $(echo "$(date +%s.%N) - $t" | bc)" >>"$OUT/times.txt"
}
: >"$OUT/times.txt"
: >"$OUT/cpu.txt"

# --- pulls on fresh agents --------------------------------------------------------------
cpu_of() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$1/stat" 2>/dev/null || echo 0; }
for i in $(seq "$RUNS"); do
  new_agent
  D=$(cat "$AGENT/docker.pid")
  sync
  # Children of dockerd come and go: sample their CPU every 0.2 s, keep the last value.
  (
    while sleep 0.2; do
      for p in $(pgrep -P "$D"); do
        printf '%s %s %s\n' "$p" "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -d' ' -f1)" "$(cpu_of "$p")"
      done
    done
  ) >"$WORK/children.$i" 2>/dev/null &
  SAMPLER=$!
  d0=$(cpu_of "$D")
  timed pull "$DOCKER" pull -q "$IMAGE" >/dev/null
  d1=$(cpu_of "$D")
  kill "$SAMPLER"
  wait "$SAMPLER" 2>/dev/null || true
  python3 - "$WORK/children.$i" "$(echo "$d1 - $d0" | bc)" >>"$OUT/cpu.txt" <<'PY'
import sys
last = {}
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) == 3:
        last[(parts[0], parts[1].rsplit('/', 1)[-1])] = float(parts[2])
by = {"dockerd": float(sys.argv[2])}
for (_, name), cpu in last.items():
    if name in ("unpigz", "docker-untar"):
        by[name] = by.get(name, 0) + cpu
print(" ".join(f"{k}={v:.2f}" for k, v in by.items()))
PY
  log "pull $i: $(tail -1 "$OUT/times.txt" | cut -d' ' -f2) s, CPU s: $(tail -1 "$OUT/cpu.txt")"
done
DATA_FS_DIR=$AGENT/root

# --- the same steps with the command-line tools ------------------------------------------
for i in $(seq "$RUNS"); do
  timed gzip-d sh -c "gzip -dc '$BLOB' >/dev/null"
  timed unpigz sh -c "unpigz -c '$BLOB' >/dev/null"
  rm -rf "$DATA_FS_DIR/untar" && mkdir -p "$DATA_FS_DIR/untar"
  timed unpigz-tar sh -c "unpigz -c '$BLOB' | tar -x -C '$DATA_FS_DIR/untar'"
  rm -rf "$DATA_FS_DIR/untar"
  timed gzip-6 sh -c "gzip -6 -c '$LAYER_TAR' >/dev/null"
  timed pigz-6 sh -c "pigz -6 -c '$LAYER_TAR' >/dev/null"
  log "tools, round $i done"
done

{
  echo "date: $STAMP"
  echo "nproc: $(nproc)"
  echo "memory: $(awk '/MemTotal/ {print $2 * 1024}' /proc/meminfo) bytes"
  echo "cpu: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "kernel: $(uname -r)"
  echo "docker: $("$DOCKER" --version)"
  echo "filesystem: $(findmnt -no FSTYPE,OPTIONS -T "$WORK")"
  echo "layer: $LAYER_BYTES bytes uncompressed, $LAYER_FILES tar entries, blob $BLOB_BYTES bytes"
  echo "runs: $RUNS"
  echo "drop-caches: $DROP"
} >"$OUT/machine.txt"

python3 - "$OUT" "$PUSH_S" <<'PY' >"$OUT/summary.md"
import statistics, sys
out, push = sys.argv[1], float(sys.argv[2])
times = {}
for line in open(f"{out}/times.txt"):
    k, v = line.split()
    times.setdefault(k, []).append(float(v))
cpu = {}
for line in open(f"{out}/cpu.txt"):
    for kv in line.split():
        k, v = kv.split("=")
        cpu.setdefault(k, []).append(float(v))
machine = dict(l.rstrip("\n").split(": ", 1) for l in open(f"{out}/machine.txt"))
def span(v):
    return f"{statistics.median(v):.1f} s ({min(v):.1f} to {max(v):.1f}, n={len(v)})"
print(f"Machine: {machine['nproc']} cores ({machine['cpu']}), {machine['docker']}, "
      f"filesystem {machine['filesystem']}. Layer: {machine['layer']}."
      + (" Kernel caches dropped before each step (--drop-caches)." if machine.get("drop-caches") == "1" else "")
      + "\n")
print("| step | median wall (min to max) |\n|---|---:|")
rows = [
    ("pull", "docker pull on a fresh dockerd (download, unpigz, docker-untar, digests)"),
    ("gzip-d", "`gzip -dc` of the blob to /dev/null"),
    ("unpigz", "`unpigz -c` of the blob to /dev/null"),
    ("unpigz-tar", "`unpigz -c` blob `| tar -x` on the data-root's filesystem"),
    ("gzip-6", "`gzip -6` of the layer tar to /dev/null"),
    ("pigz-6", "`pigz -6` of the layer tar to /dev/null"),
]
for key, label in rows:
    if key in times:
        print(f"| {label} | {span(times[key])} |")
print(f"| docker push of the layer to an empty registry (dockerd's gzip), once | {push:.1f} s |")
print("\nCPU seconds during the pulls (median): " + ", ".join(
    f"{k} {statistics.median(v):.1f}" for k, v in cpu.items()))
PY
cat "$OUT/summary.md"
DEST=$REPO/bench/results/$NAME
mkdir -p "$DEST"
cp "$OUT/summary.md" "$OUT/machine.txt" "$OUT/times.txt" "$OUT/cpu.txt" "$DEST/"
log "summary in $DEST"

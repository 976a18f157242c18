#!/usr/bin/env bash
# The store benchmark: cicache save/restore on a directory store against the peers CI
# systems use, side by side in one run on the same corpus (see docs/BENCHMARKS.md).
#
#   bench/run.sh [--quick] [--no-build] [--no-2g] [--runs N] [--out DIR] [--no-report]
#
# --quick      3 runs per case (gzip 2), the 2 GB tree only for peak memory
# --no-build   use $CICACHE_BIN or target/release/cicache as it is (default: cargo build --release -p cicache)
# --no-2g      skip the 2 GB tree (no peak-memory figure)
# --runs N     runs per case (default 5; tar -czf and the 2 GB cases use fewer, see below)
# --out DIR    where raw results go (default $CICACHE_BENCH_DIR/results/<UTC time>)
# --no-report  do not rewrite docs/BENCHMARKS.md (raw results and a summary only)
#
# Without a usable cicache binary (CICACHE_BIN=none, or a failed build with --no-build) the
# peers are measured alone: that proves the harness before the store exists.
#
# Conditions, the same for cicache and every peer: all data on one filesystem
# ($CICACHE_BENCH_DIR); page cache warm (the sources read before, a warm-up round); outputs
# are removed in --prepare, never inside the timed command (a removed file's unwritten pages
# are dropped with it, so no run pays for the previous run's writeback); no tool syncs
# (cicache does whatever fsyncs it does by itself: that cost is in its figures).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${CICACHE_BENCH_DIR:-/var/tmp/cicache-bench}
RUNS=5
QUICK=0
BUILD=1
DO_2G=1
REPORT=1
OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1; RUNS=3 ;;
    --no-build) BUILD=0 ;;
    --no-2g) DO_2G=0 ;;
    --runs) RUNS=$2; shift ;;
    --out) OUT=$2; shift ;;
    --no-report) REPORT=0 ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see bench/run.sh --help)" >&2; exit 2 ;;
  esac
  shift
done
GZ_RUNS=$(( RUNS > 3 ? 3 : (RUNS > 2 ? 2 : RUNS) ))
BIG_RUNS=$(( RUNS > 3 ? 3 : RUNS ))

log() { printf '%s run.sh: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
need() { command -v "$1" >/dev/null || { echo "run.sh: $1 is missing: $2" >&2; exit 1; }; }
need hyperfine "apt-get install -y hyperfine"
need zstd "apt-get install -y zstd"
need python3 "apt-get install -y python3"
if [[ ! -x /usr/bin/time ]]; then apt-get install -y -q time >/dev/null; fi

# --- corpus -------------------------------------------------------------------------
CORPUS=$BENCH_DIR/corpus-pip
CORPUS_2G=$BENCH_DIR/corpus-pip-2g
DELTA=$BENCH_DIR/delta-one-wheel
if [[ ! -f $BENCH_DIR/corpus-pip.json || ! -f $BENCH_DIR/delta-one-wheel.json ||
      ( $DO_2G == 1 && ! -f $BENCH_DIR/corpus-pip-2g.json ) ]]; then
  log "building the corpus (once; kept in $BENCH_DIR)"
  if [[ $DO_2G == 1 ]]; then "$REPO/bench/corpus.sh"; else "$REPO/bench/corpus.sh" --no-2g; fi
fi

# --- cicache ------------------------------------------------------------------------
CICACHE=${CICACHE_BIN:-$REPO/target/release/cicache}
if [[ $CICACHE != none && $BUILD == 1 ]]; then
  log "cargo build --release -p cicache"
  (cd "$REPO" && cargo build --release -q -p cicache) \
    || log "cargo build --release -p cicache failed: using $CICACHE as it is, if it exists"
fi
HAVE_CICACHE=0
if [[ $CICACHE != none && -x $CICACHE ]] && "$CICACHE" save --help >/dev/null 2>&1; then
  HAVE_CICACHE=1
  log "cicache: $CICACHE ($("$CICACHE" --version 2>/dev/null || echo unknown version))"
else
  log "no usable cicache binary ($CICACHE): measuring the peers only"
fi

# --- work dir -----------------------------------------------------------------------
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$BENCH_DIR/results/$STAMP}
mkdir -p "$OUT"
W=$BENCH_DIR/work
rm -rf "$W"
mkdir -p "$W"
trap 'rm -rf "$W"' EXIT

# The machine and the conditions, recorded before anything runs.
{
  echo "date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc=$(nproc)"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "kernel=$(uname -srm)"
  echo "mem_total=$(free -h | awk '/^Mem:/ {print $2}')"
  echo "fs=$(df -T "$BENCH_DIR" | awk 'NR==2 {print $2" on "$1", "$3" blocks, "$5" free"}')"
  dev=$(df "$BENCH_DIR" | awk 'NR==2 {print $1}')
  echo "disk=$dev: $(lsblk -dno SIZE,ROTA "$dev" 2>/dev/null | awk '{print $1", rotational="$2}') (virtio block device; the host's disk behind it is not visible)"
  echo "tar=$(tar --version | head -1)"
  echo "zstd=$(zstd --version)"
  echo "gzip=$(gzip --version | head -1)"
  echo "hyperfine=$(hyperfine --version)"
  echo "runs=$RUNS"
  echo "gz_runs=$GZ_RUNS"
  echo "big_runs=$BIG_RUNS"
  echo "quick=$QUICK"
  echo "cicache_bin=$([[ $HAVE_CICACHE == 1 ]] && echo "$CICACHE" || echo none)"
  echo "cicache_version=$([[ $HAVE_CICACHE == 1 ]] && "$CICACHE" --version 2>/dev/null || echo none)"
  echo "cicache_commit=$(cd "$REPO" && git rev-parse --short HEAD)$(cd "$REPO" && git diff --quiet HEAD -- crates Cargo.toml Cargo.lock || echo '+uncommitted')"
  echo "cicache_origin=${CICACHE_BIN_ORIGIN:-}"
  echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/machine.txt"
cp "$BENCH_DIR/corpus-pip.json" "$BENCH_DIR/delta-one-wheel.json" "$OUT/"
if [[ $DO_2G == 1 ]]; then cp "$BENCH_DIR/corpus-pip-2g.json" "$OUT/"; fi
cat "$OUT/machine.txt" >&2

# Cases are measured in groups, interleaved: after one warm-up round (every case once, not
# timed), each round runs every case of the group once, one `hyperfine --runs 1` each, and the
# starting case moves by one every round. On a shared machine whose load changes by the
# minute, every tool then sees the same conditions; medians are taken over the rounds.
# Raw results: $OUT/raw/NAME.ROUND.json (hyperfine), merged by bench/report.py.
declare -a G_NAME=() G_LABEL=() G_PREP=() G_CMD=() G_RUNS=()
add() { G_NAME+=("$1"); G_LABEL+=("$2"); G_PREP+=("$3"); G_CMD+=("$4"); G_RUNS+=("${5:-$RUNS}"); }
run_group() {
  local group=$1 n=${#G_NAME[@]} max=0 i r k
  mkdir -p "$OUT/raw"
  for ((i = 0; i < n; i++)); do if (( G_RUNS[i] > max )); then max=${G_RUNS[i]}; fi; done
  log "$group: $n cases, warm-up round"
  for ((i = 0; i < n; i++)); do
    bash -c "${G_PREP[i]}" && bash -c "${G_CMD[i]}" > "$OUT/raw/${G_NAME[i]}.warmup.log" 2>&1 \
      || { cat "$OUT/raw/${G_NAME[i]}.warmup.log" >&2; echo "run.sh: ${G_NAME[i]} failed: ${G_CMD[i]}" >&2; exit 1; }
  done
  for ((r = 1; r <= max; r++)); do
    echo "$group round $r $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/load.txt"
    log "$group: round $r of $max (load $(cut -d' ' -f1 /proc/loadavg))"
    for ((k = 0; k < n; k++)); do
      i=$(( (k + r - 1) % n ))
      if (( r > G_RUNS[i] )); then continue; fi
      hyperfine --style none --shell bash --runs 1 --prepare "${G_PREP[i]}" \
        --export-json "$OUT/raw/${G_NAME[i]}.$r.json" -n "${G_LABEL[i]}" "${G_CMD[i]}" \
        > "$OUT/raw/${G_NAME[i]}.$r.log" 2>&1 \
        || { cat "$OUT/raw/${G_NAME[i]}.$r.log" >&2; echo "run.sh: ${G_NAME[i]} failed: ${G_CMD[i]}" >&2; exit 1; }
    done
  done
  echo "$group end $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/load.txt"
  python3 "$REPO/bench/report.py" "$OUT" --summary "${G_NAME[@]}" >&2
  G_NAME=(); G_LABEL=(); G_PREP=(); G_CMD=(); G_RUNS=()
}

# maxrss NAME PREPARE COMMAND: peak memory of one run (/usr/bin/time -v), in $OUT/NAME.time.
maxrss() {
  local name=$1 prepare=$2 cmd=$3
  log "$name (peak memory): $cmd"
  bash -c "$prepare"
  /usr/bin/time -v -o "$OUT/$name.time" bash -c "$cmd" >/dev/null 2>"$OUT/$name.stderr" \
    || { cat "$OUT/$name.stderr" >&2; echo "run.sh: $name failed" >&2; exit 1; }
  grep -E 'Maximum resident|Elapsed' "$OUT/$name.time" >&2
}

sizes() {
  local set=$1 D=$W/$1
  {
    echo "$set src $(du -sb "$D/src" | cut -f1)"
    if [[ -d $D/store ]]; then echo "$set cicache-store $(du -sb "$D/store" | cut -f1)"; fi
    echo "$set tar.zst $(stat -c %s "$D/out.tar.zst")"
    if [[ -f $D/out.tar.gz ]]; then echo "$set tar.gz $(stat -c %s "$D/out.tar.gz")"; fi
  } >> "$OUT/sizes.txt"
}

# cicache as CI runs it: its output to a file nobody reads (not a terminal: plain progress).
C=$CICACHE
cc() { echo "CICACHE_STATE_DIR=$1 $C --store $2"; }

# --- the main corpus ----------------------------------------------------------------
D=$W/base
mkdir -p "$D"
log "base: copying the corpus to $D/src (the tree every tool saves)"
cp -a "$CORPUS" "$D/src"
# The tree after pip added one wheel (the 6 files real pip wrote for it, from delta-one-wheel).
cp -a "$D/src" "$D/src1w"
if [[ $HAVE_CICACHE == 1 ]]; then
  log "base: setup: k1 saved in store-nk (for the new-key case) and store-k1 (one-wheel case)"
  mkdir "$D/store-nk" "$D/store-k1"
  eval "$(cc "$D/state-nk" "$D/store-nk") save --key k1 --path $D/src" > /dev/null 2>&1
  eval "$(cc "$D/state-k1" "$D/store-k1") save --key k1 --path $D/src1w" > /dev/null 2>&1
fi
cp -a "$DELTA/." "$D/src1w/"
find "$D/src" "$D/src1w" -type f -exec cat {} + > /dev/null   # page cache warm for everyone

# Saves. The peer of every save is what actions/cache / Job Cacher do for it: a whole new archive.
if [[ $HAVE_CICACHE == 1 ]]; then
  add base-save-fresh-cicache "cicache save (empty store)" \
    "rm -rf $D/store $D/state; mkdir $D/store" "$(cc "$D/state" "$D/store") save --key k1 --path $D/src"
  # The CI case: this agent saved (or restored) the tree before, so cicache's state of it is known.
  add base-save-newkey-cicache "cicache save (same tree, new key)" \
    "true" "$(cc "$D/state-nk" "$D/store-nk") save --key k-\$(date +%s%N) --path $D/src"
  # Without that state every file is hashed again (the tree came to this agent another way).
  add base-save-newkey-nostate-cicache "cicache save (same tree, new key, no state)" \
    "rm -rf $D/state-none" "$(cc "$D/state-none" "$D/store-nk") save --key k-\$(date +%s%N) --path $D/src"
  # Each run starts from the store and state as they were after k1, so each writes the new wheel.
  add base-save-onewheel-cicache "cicache save (one wheel added)" \
    "rm -rf $D/store-1w $D/state-1w; cp -a $D/store-k1 $D/store-1w; cp -a $D/state-k1 $D/state-1w" \
    "$(cc "$D/state-1w" "$D/store-1w") save --key k2 --path $D/src1w"
fi
add base-save-fresh-tar-zstd "tar -cf - | zstd -T0 -3" \
  "rm -f $D/out.tar.zst" "tar -C $D/src -cf - . | zstd -q -T0 -3 -o $D/out.tar.zst"
add base-save-onewheel-tar-zstd "tar -cf - | zstd -T0 -3 (one wheel added)" \
  "rm -f $D/out1w.tar.zst" "tar -C $D/src1w -cf - . | zstd -q -T0 -3 -o $D/out1w.tar.zst"
add base-save-fresh-tar-gz "tar -czf" \
  "rm -f $D/out.tar.gz" "tar -C $D/src -czf $D/out.tar.gz ." "$GZ_RUNS"
add base-save-fresh-cp "cp -a (floor)" "rm -rf $D/cp" "cp -a $D/src $D/cp"
run_group base-save
rm -rf "$D/cp" "$D/store-1w" "$D/state-1w" "$D/store-k1" "$D/state-k1" "$D/src1w" "$D/out1w.tar.zst"
sizes base

# Restores, from the store and archives the last save runs left.
if [[ $HAVE_CICACHE == 1 ]]; then
  log "base: setup: dst-m (and dst-mn) restored by cicache, for the restore-onto-matching cases"
  eval "$(cc "$D/state-m" "$D/store") restore --key k1 --path $D/dst-m" > /dev/null 2>&1
  eval "$(cc "$D/state-x" "$D/store") restore --key k1 --path $D/dst-mn" > /dev/null 2>&1
  add base-restore-empty-cicache "cicache restore (empty dir)" \
    "rm -rf $D/dst-c $D/state-c; mkdir $D/dst-c" "$(cc "$D/state-c" "$D/store") restore --key k1 --path $D/dst-c"
  # Same agent, same workspace: the dir is what the last restore wrote, cicache's state of it kept.
  add base-restore-match-cicache "cicache restore (dir matches)" \
    "true" "$(cc "$D/state-m" "$D/store") restore --key k1 --path $D/dst-m"
  add base-restore-match-nostate-cicache "cicache restore (dir matches, no state)" \
    "rm -rf $D/state-none" "$(cc "$D/state-none" "$D/store") restore --key k1 --path $D/dst-mn"
fi
mkdir -p "$D/dst-mz"; zstd -q -d -c "$D/out.tar.zst" | tar -C "$D/dst-mz" -xf -
add base-restore-empty-zstd-tar "zstd -d | tar -x" \
  "rm -rf $D/dst-z; mkdir $D/dst-z" "zstd -q -d -c $D/out.tar.zst | tar -C $D/dst-z -xf -"
add base-restore-match-zstd-tar "zstd -d | tar -x (onto the matching dir)" \
  "true" "zstd -q -d -c $D/out.tar.zst | tar -C $D/dst-mz -xf -"
add base-restore-empty-tar-gz "tar -xzf" \
  "rm -rf $D/dst-g; mkdir $D/dst-g" "tar -C $D/dst-g -xzf $D/out.tar.gz" "$GZ_RUNS"
add base-restore-empty-cp "cp -a (floor)" "rm -rf $D/dst-p" "cp -a $D/src $D/dst-p"
run_group base-restore
if [[ $HAVE_CICACHE == 1 ]]; then
  # The restores must be exact, or their times mean nothing.
  for d in dst-c dst-m dst-mn; do
    diff -r --no-dereference "$D/src" "$D/$d" > /dev/null \
      || { echo "run.sh: cicache restore into $D/$d differs from the source tree" >&2; exit 1; }
  done
  log "base: cicache restores verified identical to the source tree (diff -r)"
fi
rm -rf "$W/base"

# --- the 2 GB tree: peak memory (and fresh save / restore times unless --quick) ---------
if [[ $DO_2G == 1 ]]; then
  D=$W/big
  mkdir -p "$D"
  log "big: copying the 2 GB corpus to $D/src"
  cp -a "$CORPUS_2G" "$D/src"
  find "$D/src" -type f -exec cat {} + > /dev/null
  if [[ $HAVE_CICACHE == 1 ]]; then
    maxrss big-mem-save-cicache "rm -rf $D/store $D/state; mkdir $D/store" \
      "$(cc "$D/state" "$D/store") save --key k1 --path $D/src"
    maxrss big-mem-restore-cicache "rm -rf $D/dst-c $D/state-c; mkdir $D/dst-c" \
      "$(cc "$D/state-c" "$D/store") restore --key k1 --path $D/dst-c"
  fi
  maxrss big-mem-save-tar-zstd "rm -f $D/out.tar.zst" \
    "tar -C $D/src -cf - . | zstd -q -T0 -3 -o $D/out.tar.zst"
  maxrss big-mem-restore-zstd-tar "rm -rf $D/dst-z; mkdir $D/dst-z" \
    "zstd -q -d -c $D/out.tar.zst | tar -C $D/dst-z -xf -"
  if [[ $QUICK == 0 ]]; then
    if [[ $HAVE_CICACHE == 1 ]]; then
      add big-save-fresh-cicache "cicache save (empty store)" \
        "rm -rf $D/store $D/state; mkdir $D/store" "$(cc "$D/state" "$D/store") save --key k1 --path $D/src" "$BIG_RUNS"
    fi
    add big-save-fresh-tar-zstd "tar -cf - | zstd -T0 -3" \
      "rm -f $D/out.tar.zst" "tar -C $D/src -cf - . | zstd -q -T0 -3 -o $D/out.tar.zst" "$BIG_RUNS"
    add big-save-fresh-cp "cp -a (floor)" "rm -rf $D/cp" "cp -a $D/src $D/cp" "$BIG_RUNS"
    run_group big-save
    rm -rf "$D/cp"
    sizes big
    if [[ $HAVE_CICACHE == 1 ]]; then
      add big-restore-empty-cicache "cicache restore (empty dir)" \
        "rm -rf $D/dst-c $D/state-c; mkdir $D/dst-c" "$(cc "$D/state-c" "$D/store") restore --key k1 --path $D/dst-c" "$BIG_RUNS"
    fi
    add big-restore-empty-zstd-tar "zstd -d | tar -x" \
      "rm -rf $D/dst-z; mkdir $D/dst-z" "zstd -q -d -c $D/out.tar.zst | tar -C $D/dst-z -xf -" "$BIG_RUNS"
    add big-restore-empty-cp "cp -a (floor)" "rm -rf $D/dst-p" "cp -a $D/src $D/dst-p" "$BIG_RUNS"
    run_group big-restore
  fi
  rm -rf "$W/big"
fi

echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"
log "raw results in $OUT"
if [[ $REPORT == 1 ]]; then
  mkdir -p "$REPO/bench/results/$(basename "$OUT")"
  cp "$OUT"/*.json "$OUT"/*.txt "$REPO/bench/results/$(basename "$OUT")/"
  cp "$OUT"/*.time "$REPO/bench/results/$(basename "$OUT")/" 2>/dev/null || true
  mkdir -p "$REPO/bench/results/$(basename "$OUT")/raw"
  cp "$OUT"/raw/*.json "$REPO/bench/results/$(basename "$OUT")/raw/"
  python3 "$REPO/bench/report.py" "$OUT" --write "$REPO/docs/BENCHMARKS.md"
else
  python3 "$REPO/bench/report.py" "$OUT"
fi

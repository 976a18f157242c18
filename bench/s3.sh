#!/usr/bin/env bash
# The S3 benchmark (issue 3): cicache save/restore through an S3 store, side by side with
# what a team does without cicache, `aws s3 cp` of a tar+zstd of the same tree, and a plain
# GET of the same bytes as the floor. All against one local moto server started here.
#
#   bench/s3.sh [--runs N] [--corpus DIR] [--out DIR]
#
# --runs N     runs per case (default 5)
# --corpus D   the tree to save (default $CICACHE_BENCH_DIR/corpus-pip, built by bench/corpus.sh)
# --out DIR    where raw results go (default $CICACHE_BENCH_DIR/results/s3-<UTC time>)
#
# cicache comes from $CICACHE_BIN, else target/release/cicache (build it first:
# `cargo build --release -p cicache`; this script does not). Needs hyperfine, zstd, python3,
# curl and the aws CLI (installed into a venv under $CICACHE_TEST_CACHE when missing).
#
# Cases (medians in $OUT/summary.md, raw hyperfine JSON in $OUT/*.json):
#   cicache-save-fresh     save into an empty bucket prefix (every blob uploaded)
#   cicache-save-reuse     save of the same tree under a new key (every blob already there)
#   cicache-restore        restore into an empty directory
#   aws-cp-upload          tar -cf - | zstd -T0 -3 | aws s3 cp - s3://...
#   aws-cp-download        aws s3 cp s3://... - | zstd -d | tar -xf -
#   plain-get              curl GET (presigned) of the tarball to /dev/null: the floor
# Targets: cicache-restore <= 1.0x aws-cp-download; cicache-save-reuse <= 0.1x aws-cp-upload.
#
# Caveat: moto is one Python process on the same machine; it, not the network, is the
# bottleneck. The figures compare the tools against the same server, not against AWS.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${CICACHE_BENCH_DIR:-/var/tmp/cicache-bench}
RUNS=5
CORPUS=$BENCH_DIR/corpus-pip
OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift ;;
    --corpus) CORPUS=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "s3.sh: unknown option $1 (see bench/s3.sh --help)" >&2; exit 2 ;;
  esac
  shift
done
OUT=${OUT:-$BENCH_DIR/results/s3-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"

log() { printf '%s s3.sh: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
need() { command -v "$1" >/dev/null || { echo "s3.sh: $1 is missing: $2" >&2; exit 1; }; }
need hyperfine "apt-get install -y hyperfine"
need zstd "apt-get install -y zstd"
need python3 "apt-get install -y python3"
need curl "apt-get install -y curl"
[[ -d $CORPUS ]] || { echo "s3.sh: no corpus at $CORPUS; run bench/corpus.sh first" >&2; exit 1; }

CICACHE=${CICACHE_BIN:-$REPO/target/release/cicache}
[[ -x $CICACHE ]] || { echo "s3.sh: no cicache binary at $CICACHE (set CICACHE_BIN or cargo build --release -p cicache)" >&2; exit 1; }

export CICACHE_TEST_CACHE=${CICACHE_TEST_CACHE:-/var/tmp/cicache-test-cache}
export CICACHE_TEST_WORK=$OUT/work
mkdir -p "$CICACHE_TEST_WORK"
apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2; }
# shellcheck source=../test/lib/moto.sh
source "$REPO/test/lib/moto.sh"

if ! command -v aws >/dev/null || ! aws --version >/dev/null 2>&1; then
  AWS_VENV=$CICACHE_TEST_CACHE/awscli-venv
  if [[ ! -x $AWS_VENV/bin/aws ]]; then
    log "installing the aws CLI into $AWS_VENV"
    python3 -m venv "$AWS_VENV" && "$AWS_VENV/bin/pip" install -q awscli >&2
  fi
  PATH=$AWS_VENV/bin:$PATH
fi

moto_install
moto_start
trap 'moto_stop' EXIT
export AWS_ENDPOINT_URL=$CICACHE_TEST_MOTO_URL
export CICACHE_STATE_DIR=$OUT/work/state
BUCKET=cicache-bench
STORE=s3://$BUCKET/cicache
DST=$OUT/work/dst
curl -sf -X PUT "$AWS_ENDPOINT_URL/$BUCKET" >/dev/null

{
  echo "date=$(date -u +%FT%TZ)"
  echo "machine=$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GB RAM, $(uname -r)"
  echo "cicache=$("$CICACHE" --version 2>/dev/null || echo unknown)"
  echo "aws=$(aws --version 2>&1)"
  echo "moto=$("$MOTO_VENV/bin/pip" show moto 2>/dev/null | awk '/^Version/ {print $2}')"
  echo "corpus=$CORPUS ($(du -sb "$CORPUS" | cut -f1) bytes, $(find "$CORPUS" -type f | wc -l) files)"
  echo "runs=$RUNS"
} >"$OUT/conditions.txt"
cat "$OUT/conditions.txt" >&2

# Warm the page cache for the corpus, as every case reads it.
tar -C "$CORPUS" -cf - . >/dev/null

hf() {
  local name=$1 prepare=$2 cmd=$3
  log "$name"
  hyperfine --style none --shell bash --runs "$RUNS" --warmup 0 --prepare "$prepare" \
    --export-json "$OUT/$name.json" "$cmd" >"$OUT/$name.log" 2>&1 \
    || { echo "s3.sh: $name failed; see $OUT/$name.log" >&2; cat "$OUT/$name.log" >&2; exit 1; }
}

C="$CICACHE -q --store $STORE"
hf cicache-save-fresh \
  "aws s3 rm --quiet --recursive $STORE/ >/dev/null; rm -rf $CICACHE_STATE_DIR" \
  "$C save --key fresh --path $CORPUS"
hf cicache-save-reuse \
  "true" \
  "$C save --key reuse-\$(date +%s%N) --path $CORPUS"
hf cicache-restore \
  "rm -rf $DST $CICACHE_STATE_DIR" \
  "$C restore --key fresh --path $DST"
hf aws-cp-upload \
  "true" \
  "tar -C $CORPUS -cf - . | zstd -q -T0 -3 | aws s3 cp --quiet - s3://$BUCKET/peer/corpus.tar.zst"
hf aws-cp-download \
  "rm -rf $DST && mkdir -p $DST" \
  "aws s3 cp --quiet s3://$BUCKET/peer/corpus.tar.zst - | zstd -q -d -T0 | tar -C $DST -xf -"
# A presigned URL: one plain GET, no SDK, no CLI.
GET_URL=$(aws s3 presign "s3://$BUCKET/peer/corpus.tar.zst" --expires-in 3600)
hf plain-get \
  "true" \
  "curl -sf -o /dev/null '$GET_URL'"
rm -rf "$DST"

python3 - "$OUT" <<'EOF' | tee "$OUT/summary.md"
import json, os, statistics, sys
out = sys.argv[1]
def med(name):
    with open(os.path.join(out, name + ".json")) as f:
        return statistics.median(json.load(f)["results"][0]["times"])
m = {n: med(n) for n in ["cicache-save-fresh", "cicache-save-reuse", "cicache-restore",
                         "aws-cp-upload", "aws-cp-download", "plain-get"]}
print("| case | median (s) | ratio | target |")
print("|---|---|---|---|")
rows = [
    ("cicache-save-fresh", "aws-cp-upload", ""),
    ("cicache-save-reuse", "aws-cp-upload", "<= 0.1"),
    ("cicache-restore", "aws-cp-download", "<= 1.0"),
    ("aws-cp-upload", None, ""),
    ("aws-cp-download", None, ""),
    ("plain-get", "aws-cp-download", "(floor)"),
]
for name, base, target in rows:
    ratio = f"{m[name] / m[base]:.2f}x {base}" if base else ""
    print(f"| {name} | {m[name]:.2f} | {ratio} | {target} |")
EOF
log "results in $OUT"

#!/usr/bin/env bash
# Build the benchmark corpora (pip caches made by real pip from real wheels) outside the
# repository, under $CICACHE_BENCH_DIR (default /var/tmp/cicache-bench). Kept between runs;
# `--force` rebuilds the corpora, `--no-2g` skips the 2 GB variant. See bench/corpus.py.
set -euo pipefail
BENCH_DIR=${CICACHE_BENCH_DIR:-/var/tmp/cicache-bench}
VENV=$BENCH_DIR/venv
mkdir -p "$BENCH_DIR"
# pip >= 23.3 writes the http-v2 layout (separate .body files); the system pip may be older.
if ! "$VENV/bin/python" -c 'import sys, pip; sys.exit(tuple(map(int, pip.__version__.split(".")[:2])) < (23, 3))' 2>/dev/null; then
  python3 -m venv "$VENV"
  env -u PIP_FIND_LINKS "$VENV/bin/pip" install -q --upgrade 'pip>=24'
fi
exec "$VENV/bin/python" "$(dirname "$0")/corpus.py" "$@"

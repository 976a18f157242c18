#!/usr/bin/env bash
# Builds the static (musl) x86_64 helper that the Jenkins library downloads, strips it, and
# checks it: it must run in a chroot that holds nothing but itself (no libc, as in Alpine's
# docker:cli), and a save and a restore there must round-trip a tree with a symlink (the
# restore's atomic swap is a raw renameat2 system call: musl has no wrapper for it).
#
#   scripts/static-helper.sh [OUT]     (default OUT: target/cicache-x86_64-linux-musl)
#
# Needs root (chroot), rustup, and Debian's musl-tools (installed when missing).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$REPO/target/cicache-x86_64-linux-musl}
TARGET=x86_64-unknown-linux-musl
dpkg -s musl-tools >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -q musl-tools >&2
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
(cd "$REPO" && CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release -p cicache --target "$TARGET")
cp "$REPO/target/$TARGET/release/cicache" "$OUT"
strip "$OUT"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
cp "$OUT" "$root/cicache"
mkdir -p "$root/tmp" "$root/src/a" "$root/dst"
echo hi >"$root/src/a/f"
ln -s a/f "$root/src/l"
echo old >"$root/dst/x"
chroot "$root" /cicache --version
chroot "$root" /cicache -q --store /store save --key k --path /src
chroot "$root" /cicache -q --store /store restore --key k --path /dst
[[ $(cat "$root/dst/a/f") == hi && $(readlink "$root/dst/l") == a/f && ! -e $root/dst/x ]] ||
  { echo "static-helper.sh: the restore in the chroot is not the saved tree" >&2; exit 1; }
echo "$OUT: static, $(stat -c %s "$OUT") bytes, sha256 $(sha256sum "$OUT" | cut -d' ' -f1)"

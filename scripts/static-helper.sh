#!/usr/bin/env bash
# Builds the static (musl) helper that the Jenkins library downloads, strips it, and checks
# it: it must run with nothing but itself (no libc, as in Alpine's docker:cli), and a save and
# a restore must round-trip a tree with a symlink (the restore's atomic swap is a raw
# renameat2 system call: musl has no wrapper for it).
#
#   scripts/static-helper.sh [ARCH] [OUT]
#
# ARCH: x86_64 (default) or aarch64. OUT: default target/cicache-ARCH-linux-musl.
# x86_64 is checked in a chroot that holds only the binary; aarch64 is cross-compiled with
# Debian's gcc-aarch64-linux-gnu (for ring's and aws-lc-sys's C) and run under qemu-aarch64
# (user mode). Needs root (chroot, apt), rustup; installs musl-tools, or the cross compiler
# and qemu-user, when missing.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ARCH=${1:-x86_64}
OUT=${2:-$REPO/target/cicache-$ARCH-linux-musl}
TARGET=$ARCH-unknown-linux-musl
apt_need() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [[ ${#missing[@]} == 0 ]] ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
case $ARCH in
  x86_64)
    apt_need musl-tools
    (cd "$REPO" && CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release -p cicache --target "$TARGET")
    STRIP=strip
    ;;
  aarch64)
    apt_need gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
    (cd "$REPO" && CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc \
      AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar \
      CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc \
      cargo build --release -p cicache --target "$TARGET")
    STRIP=aarch64-linux-gnu-strip
    ;;
  *) echo "static-helper.sh: ARCH is x86_64 or aarch64, not $ARCH" >&2; exit 2 ;;
esac
cp "$REPO/target/$TARGET/release/cicache" "$OUT"
"$STRIP" "$OUT"
file "$OUT" | grep -q 'statically linked\|static-pie linked' ||
  { echo "static-helper.sh: $OUT is not statically linked" >&2; exit 1; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
cp "$OUT" "$root/cicache"
mkdir -p "$root/tmp" "$root/src/a" "$root/dst"
echo hi >"$root/src/a/f"
ln -s a/f "$root/src/l"
echo old >"$root/dst/x"
# x86_64: `chroot ROOT /cicache ...` (nothing else in ROOT); aarch64: `qemu-aarch64
# ROOT/cicache ...` on paths under ROOT.
run() {
  if [[ $ARCH == x86_64 ]]; then
    chroot "$root" /cicache "$@"
  else
    (cd "$root" && qemu-aarch64 ./cicache "$@")
  fi
}
p() { if [[ $ARCH == x86_64 ]]; then echo "/$1"; else echo "$1"; fi; }
run --version
run -q --store "$(p store)" save --key k --path "$(p src)"
run -q --store "$(p store)" restore --key k --path "$(p dst)"
[[ $(cat "$root/dst/a/f") == hi && $(readlink "$root/dst/l") == a/f && ! -e $root/dst/x ]] ||
  { echo "static-helper.sh: the restore is not the saved tree" >&2; exit 1; }
echo "$OUT: static $ARCH, $(stat -c %s "$OUT") bytes, sha256 $(sha256sum "$OUT" | cut -d' ' -f1)"

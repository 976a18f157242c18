#!/usr/bin/env bash
# make-base-images.sh: builds the two base images cicache needs when no image can be pulled,
# from Debian packages alone, into the docker daemon that `docker` (DOCKER_HOST) reaches:
#
#   busybox   a 1 MB image with sh, cp, tar: the helper image of the cache dance
#             (`cicache mount|build --helper-image`)
#   python    Debian bookworm minbase with python3, pip and CA certificates (about 290 MB):
#             the example's BASE_IMAGE
#
# usage: make-base-images.sh [--busybox NAME] [--python NAME] [--rootfs-cache DIR]
#   --busybox NAME        tag of the busybox image   [cicache/busybox:latest]
#   --python NAME         tag of the python image    [cicache/python:3.11-bookworm]
#   --rootfs-cache DIR    keep the debootstrap tree here and reuse it next time
#                         [/var/tmp/cicache-rootfs]
#   --only busybox|python build only one of them
# Needs root and the Debian packages busybox-static and debootstrap (apt-get install -y
# busybox-static debootstrap); debootstrap downloads from the Debian mirror
# ($DEBIAN_MIRROR, default http://deb.debian.org/debian).
set -euo pipefail
DOCKER=${DOCKER:-/usr/bin/docker}
BUSYBOX_NAME=cicache/busybox:latest
PYTHON_NAME=cicache/python:3.11-bookworm
ROOTFS_CACHE=/var/tmp/cicache-rootfs
ONLY=
while [ $# -gt 0 ]; do
  case $1 in
    --busybox) BUSYBOX_NAME=$2; shift 2 ;;
    --python) PYTHON_NAME=$2; shift 2 ;;
    --rootfs-cache) ROOTFS_CACHE=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "make-base-images.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
say() { echo "make-base-images: $*" >&2; }

if [ "$ONLY" != python ]; then
  bb=/bin/busybox
  if [ ! -x "$bb" ] || ldd "$bb" >/dev/null 2>&1; then
    say "a static busybox is missing: apt-get install -y busybox-static"; exit 1
  fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/bin" "$tmp/tmp" "$tmp/etc" "$tmp/root"
  cp "$bb" "$tmp/bin/busybox"
  for applet in $("$tmp/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$tmp/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$tmp/etc/passwd"
  echo 'root:x:0:' >"$tmp/etc/group"
  chmod 1777 "$tmp/tmp"
  tar -C "$tmp" -c . | "$DOCKER" import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - "$BUSYBOX_NAME" >/dev/null
  say "built $BUSYBOX_NAME from $bb"
fi

if [ "$ONLY" != busybox ]; then
  root=$ROOTFS_CACHE/python-bookworm
  if [ ! -x "$root/usr/bin/python3" ] || [ ! -e "$root/.cicache-complete" ]; then
    command -v debootstrap >/dev/null || { say "debootstrap is missing: apt-get install -y debootstrap"; exit 1; }
    say "debootstrap of bookworm with python3 and pip into $root (about 3 minutes, once)"
    rm -rf "$root.tmp"
    mkdir -p "$ROOTFS_CACHE"
    debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates \
      bookworm "$root.tmp" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >&2
    # pip installs into the system Python of an image: that is what the image is for.
    rm -f "$root.tmp"/usr/lib/python3*/EXTERNALLY-MANAGED
    rm -rf "$root.tmp"/var/cache/apt/archives/*.deb "$root.tmp"/var/lib/apt/lists/*
    touch "$root.tmp/.cicache-complete"
    rm -rf "$root"
    mv "$root.tmp" "$root"
  fi
  # The host's CA bundle, so pip can reach an index over https.
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  fi
  tar -C "$root" --exclude=./.cicache-complete -c . |
    "$DOCKER" import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' - "$PYTHON_NAME" >/dev/null
  say "built $PYTHON_NAME from Debian bookworm"
fi

# shellcheck shell=bash
# Docker as users run it now: Debian trixie's docker.io 26.1.5, containerd 1.7.24 and
# docker-buildx 0.13.1, NOT installed system-wide. docker26_install fetches the three .debs
# with `apt-get download` through a private sources list (the mirror and keyring of this
# machine's own Debian source, suite trixie, component main; apt's lists and caches under
# $CICACHE_TEST_CACHE/docker26, so a second run downloads nothing) and extracts them with
# dpkg-deb -x into $CICACHE_TEST_CACHE/docker26/root.
#
# The tests start containerd + dockerd 26 per agent themselves (crates/cicache/tests/engine/,
# on their own root, state, sockets and data-root; bookworm's /usr/sbin/runc first on PATH,
# since trixie's needs a newer libc), on either image store: daemon.json `{}` (graph driver
# overlay2) or `{"features":{"containerd-snapshotter":true}}` (containerd store). The client
# is the static docker 28 client /usr/local/bin/docker with DOCKER_CONFIG holding
# cli-plugins/docker-buildx.
#
# docker26_start checks that both stores come up (docker version, buildx version) and exports
#   CICACHE_TEST_DOCKER26=DIR        the extracted tree (DIR/usr/sbin/dockerd, DIR/usr/bin/containerd,
#                                    DIR/usr/libexec/docker/cli-plugins/docker-buildx)
#   CICACHE_TEST_DOCKER26_CLIENT=F   the docker 28 client
# For development outside test/run.sh:
#   CICACHE_TEST_WORK=$(mktemp -d) CICACHE_TEST_CACHE=/var/tmp/cicache-test-cache \
#     bash -c 'source test/lib/docker26.sh; docker26_install; docker26_start'
# (apt_install, from test/run.sh, must be defined for docker26_install.)

if ! declare -F log >/dev/null; then log() { printf '\n== %s ==\n' "$*" >&2; }; fi
if ! declare -F wait_for >/dev/null; then
  wait_for() { for _ in $(seq 1 120); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done; return 1; }
fi

DOCKER26_PACKAGES="docker.io containerd docker-buildx"
DOCKER26_CLIENT=/usr/local/bin/docker

# The machine's own Debian mirror and keyring, "URL KEYRING", from /etc/apt/sources.list.d/
# (deb822 .sources or one-line .list) or /etc/apt/sources.list: the first source of the
# Debian archive that is not the security archive.
_docker26_mirror() {
  python3 - <<'EOF'
import glob, re
found = None
def consider(uri, keyring):
    global found
    if found or not uri or "security" in uri or "debian" not in uri:
        return
    found = (uri.rstrip("/"), keyring or "/usr/share/keyrings/debian-archive-keyring.gpg")
for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in re.split(r"\n\s*\n", open(f).read()):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            k, v = line.split(":", 1)
            fields[k.strip().lower()] = v.strip()
        if fields.get("enabled", "yes") == "no" or "deb" not in fields.get("types", "").split():
            continue
        for uri in fields.get("uris", "").split():
            consider(uri, fields.get("signed-by"))
for f in sorted(glob.glob("/etc/apt/sources.list.d/*.list")) + ["/etc/apt/sources.list"]:
    try:
        lines = open(f).read().splitlines()
    except OSError:
        continue
    for line in lines:
        m = re.match(r"\s*deb\s+(\[[^\]]*\]\s+)?(\S+)", line)
        if m:
            k = re.search(r"signed-by=(\S+?)[\s\]]", m.group(1) or "")
            consider(m.group(2), k.group(1) if k else None)
if not found:
    found = ("http://deb.debian.org/debian", "/usr/share/keyrings/debian-archive-keyring.gpg")
print(*found)
EOF
}

# apt-get with the private sources list and state under DIR.
_docker26_apt() {
  local dir=$1
  shift
  apt-get -q \
    -o Dir::Etc::sourcelist="$dir/sources.list" -o Dir::Etc::sourceparts=- \
    -o Dir::Etc::preferences=/dev/null -o Dir::Etc::preferencesparts="$dir/empty" \
    -o APT::Sandbox::User=root -o Acquire::Languages=none \
    -o Dir::State::lists="$dir/lists" -o Dir::Cache="$dir/cache" \
    -o Dir::Cache::archives="$dir/archives" -o APT::Get::List-Cleanup=0 \
    "$@"
}

docker26_install() {
  apt_install runc python3 dpkg
  local dir=$CICACHE_TEST_CACHE/docker26
  local root=$dir/root
  if [ -x "$root/usr/sbin/dockerd" ] && [ -x "$root/usr/bin/containerd" ] &&
    [ -x "$root/usr/libexec/docker/cli-plugins/docker-buildx" ]; then
    return 0
  fi
  log "fetching $DOCKER26_PACKAGES from Debian trixie into $dir"
  mkdir -p "$dir/lists/partial" "$dir/cache" "$dir/archives/partial" "$dir/debs" "$dir/empty"
  local mirror keyring
  read -r mirror keyring < <(_docker26_mirror)
  echo "deb [signed-by=$keyring] $mirror trixie main" >"$dir/sources.list"
  _docker26_apt "$dir" update >&2
  (cd "$dir/debs" && rm -f ./*.deb && _docker26_apt "$dir" download $DOCKER26_PACKAGES >&2)
  rm -rf "$root.tmp"
  mkdir -p "$root.tmp"
  local deb
  for deb in "$dir"/debs/*.deb; do
    dpkg-deb -x "$deb" "$root.tmp"
  done
  rm -rf "$root"
  mv "$root.tmp" "$root"
  ls "$dir"/debs >&2
}

# _docker26_agent_start DIR STORE: containerd + dockerd 26 with everything under DIR,
# STORE = graph | containerd. The Rust harness (crates/cicache/tests/engine/mod.rs) does the
# same for every test agent; this one is the smoke test of docker26_start.
_docker26_agent_start() {
  local d=$1 store=$2 root=$CICACHE_TEST_DOCKER26
  mkdir -p "$d/config/cli-plugins" "$d/ctd"
  ln -sf "$root/usr/libexec/docker/cli-plugins/docker-buildx" "$d/config/cli-plugins/docker-buildx"
  cat >"$d/containerd.toml" <<EOF
version = 2
root = "$d/ctd/root"
state = "$d/ctd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$d/ctd.sock"
[ttrpc]
  address = "$d/ctd.sock.ttrpc"
[debug]
  address = "$d/ctd-debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/ctd/opt"
EOF
  if [ "$store" = containerd ]; then
    echo '{"features":{"containerd-snapshotter":true}}' >"$d/daemon.json"
  else
    echo '{}' >"$d/daemon.json"
  fi
  # The extracted binaries first; runc is bookworm's /usr/sbin/runc (none is extracted).
  local path=$root/usr/sbin:$root/usr/bin:$PATH
  PATH=$path "$root/usr/bin/containerd" --config "$d/containerd.toml" >"$d/containerd.log" 2>&1 &
  echo $! >"$d/containerd.pid"
  wait_for test -S "$d/ctd.sock" || {
    cat "$d/containerd.log" >&2
    return 1
  }
  PATH=$path "$root/usr/sbin/dockerd" --containerd "$d/ctd.sock" --config-file "$d/daemon.json" \
    --data-root "$d/root" --exec-root "$d/exec" --pidfile "$d/docker.pid" \
    -H "unix://$d/sock" --bridge none --iptables=false --ip-masq=false >"$d/log" 2>&1 &
  echo $! >"$d/dockerd.pid"
  DOCKER_HOST=unix://$d/sock wait_for "$DOCKER26_CLIENT" version || {
    cat "$d/log" >&2
    return 1
  }
}

# Stops the containerd + dockerd whose state is in DIR and removes DIR.
_docker26_agent_stop() {
  local d=$1 f pid
  for f in dockerd containerd; do
    pid=$(cat "$d/$f.pid" 2>/dev/null || true)
    [ -n "$pid" ] || continue
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
  done
  umount -R "$d/root" 2>/dev/null || true
  umount -R "$d/exec" 2>/dev/null || true
  umount -R "$d/ctd" 2>/dev/null || true
  rm -rf "$d" 2>/dev/null || true
}

docker26_start() {
  export CICACHE_TEST_DOCKER26=$CICACHE_TEST_CACHE/docker26/root
  export CICACHE_TEST_DOCKER26_CLIENT=$DOCKER26_CLIENT
  local store d rc=0 v
  for store in graph containerd; do
    d=$(mktemp -d "$CICACHE_TEST_WORK/docker26-smoke-$store.XXXX")
    if _docker26_agent_start "$d" "$store"; then
      v=$(DOCKER_HOST=unix://$d/sock DOCKER_CONFIG=$d/config "$DOCKER26_CLIENT" version \
        --format '{{.Server.Version}}' 2>&1) &&
        v="$v, $(DOCKER_HOST=unix://$d/sock DOCKER_CONFIG=$d/config "$DOCKER26_CLIENT" buildx version 2>&1)" &&
        v="$v, $(DOCKER_HOST=unix://$d/sock "$DOCKER26_CLIENT" info --format '{{json .DriverStatus}}' 2>&1)" ||
        rc=$?
      log "docker 26 on the $store store: $v"
    else
      rc=1
    fi
    _docker26_agent_stop "$d"
    [ $rc = 0 ] || return $rc
  done
}

docker26_stop() {
  # The tests stop their own agents; anything left by a killed test run has its pid files
  # under $CICACHE_TEST_WORK/engine-*/ (the tests put them there).
  local d
  for d in "$CICACHE_TEST_WORK"/engine-* "$CICACHE_TEST_WORK"/docker26-smoke-*; do
    [ -d "$d" ] || continue
    _docker26_agent_stop "$d"
  done
}

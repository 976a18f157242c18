# A Jenkins agent image with the cicache helper, the docker client and zstd.
#
# Get it from the library and build it (the helper is built from this repository's source,
# or downloaded from a pinned release and checked against its sha256):
#
#   writeFile file: 'agent.Dockerfile', text: libraryResource('io/cicache/agent.Dockerfile')
#   # from source: the build context is a checkout of the cicache repository
#   docker build -f agent.Dockerfile --target agent-from-source -t my-agent path/to/cicache
#   # from a release: any context
#   docker build -f agent.Dockerfile --target agent-from-release \
#       --build-arg CICACHE_URL=https://.../cicache-x86_64-linux --build-arg CICACHE_SHA256=<sha256> -t my-agent .
#
# The steps then find `cicache` on the PATH. Agents built otherwise can set CICACHE_BIN, or
# CICACHE_DOWNLOAD_URL + CICACHE_SHA256 (see vars/cicache.txt).

ARG AGENT_BASE=jenkins/inbound-agent:latest-jdk17
ARG RUST_IMAGE=rust:1.95-bookworm

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p cicache \
 && install -m 0755 target/release/cicache /usr/local/bin/cicache

FROM ${AGENT_BASE} AS agent-base
USER root
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io zstd curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/cache/cicache && chown jenkins:jenkins /var/cache/cicache \
 && (getent group docker >/dev/null && usermod -aG docker jenkins || true)
# The default directory store; point CICACHE_STORE at s3://... or a shared volume to share it.
ENV CICACHE_STORE=/var/cache/cicache

FROM agent-base AS agent-from-release
ARG CICACHE_URL
ARG CICACHE_SHA256
RUN test -n "$CICACHE_URL" && test -n "$CICACHE_SHA256" \
      || { echo 'pass --build-arg CICACHE_URL=... and --build-arg CICACHE_SHA256=... (or use --target agent-from-source)' >&2; exit 1; } \
 && curl -fsSL --retry 3 -o /usr/local/bin/cicache "$CICACHE_URL" \
 && echo "$CICACHE_SHA256  /usr/local/bin/cicache" | sha256sum -c - \
 && chmod 0755 /usr/local/bin/cicache \
 && cicache --version
USER jenkins

FROM agent-base AS agent-from-source
COPY --from=build /usr/local/bin/cicache /usr/local/bin/cicache
RUN cicache --version
USER jenkins

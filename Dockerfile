# syntax=docker/dockerfile:1
#
# temporal-codec-server image: built on Debian 12 (the Rust image's bookworm variant, so the binary's glibc
# matches the runtime), run on distroless cc-debian12 — glibc, libgcc, CA certificates and tzdata, no shell,
# no package manager — as the numeric non-root user 65532.
#
# Base images are pinned by digest through the two *_IMAGE build arguments. The defaults below are tags
# ONLY because this file was written without network access to a registry, and a digest must never be
# made up: before a production build, resolve each tag once and pass (or commit) the pinned reference:
#
#   docker buildx imagetools inspect rust:1.95-bookworm                  # prints "Digest: sha256:…"
#   docker buildx imagetools inspect gcr.io/distroless/cc-debian12:nonroot
#   docker build \
#     --build-arg RUST_IMAGE=rust:1.95-bookworm@sha256:<digest> \
#     --build-arg RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:<digest> \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg SOURCE="$(git remote get-url origin)" \
#     -t temporal-codec-server:0.1.0 .
#   docker run --rm -v "$PWD/config/aws.toml:/etc/codec-server/config.toml:ro" temporal-codec-server:0.1.0 check-config
#
# Without a Docker daemon or a registry (this repository's CI): scripts/build-image.sh builds this file
# with buildah (vfs storage, chroot isolation, as root) on two Debian 12 base images it makes from Debian
# packages; `--prebuilt BINARY` replaces the `build` stage with a binary built on Debian 12
# (`--build-context build=DIR`), which is what the integration test runs.
#
# The Helm chart (charts/codec-server) mounts the config at /etc/codec-server/config.toml and runs `serve`
# (and `migrate` in its migration Job, `probe` in its `helm test` pod).

# TODO(pin): replace with rust:1.95-bookworm@sha256:<digest> (see above).
ARG RUST_IMAGE=rust:1.95-bookworm
# TODO(pin): replace with gcr.io/distroless/cc-debian12:nonroot@sha256:<digest> (see above).
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Only what the build reads (.dockerignore is an allowlist): the manifest, the lock file, the sources, the
# embedded SQL migrations, and benches/ (Cargo infers the [[bench]] target's file when it parses the
# manifest). The [[test]] target names its path explicitly, so tests/ is not needed to build the binary.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
# The registry and target directories are BuildKit caches, so a source change rebuilds only this crate.
# The image's binary carries no symbols or debug info (the release profile keeps line tables for local
# profiling; here they would only add size).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked --bin codec-server \
    && install -D -m 0755 target/release/codec-server /out/codec-server \
    && mkdir -p /out/data

FROM ${RUNTIME_IMAGE} AS runtime
# Set by the build (see the top of this file): which source and commit this image is.
ARG VERSION=0.1.0
ARG REVISION=unknown
# The repository URL this image is built from (no default: this repository names no public home).
ARG SOURCE=""
LABEL org.opencontainers.image.title="temporal-codec-server" \
      org.opencontainers.image.description="Organization-level Temporal Codec Server: envelope encryption, per-namespace keys and access policy." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"
COPY --from=build /out/codec-server /usr/local/bin/codec-server
# The default data_dir of the example configs (SQLite audit log, local key files), writable by the server.
# In Kubernetes the chart mounts a volume here, as the root filesystem is read-only.
COPY --from=build --chown=65532:65532 /out/data /var/lib/codec-server
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
# A config file is required in a container: without one the server would start its loopback-only dev mode.
ENV CODEC_CONFIG=/etc/codec-server/config.toml
# 8081: the codec API; 8082: /healthz, /readyz and /metrics when server.admin_listen is set (the chart does).
EXPOSE 8081 8082
ENTRYPOINT ["/usr/local/bin/codec-server"]
CMD ["serve"]

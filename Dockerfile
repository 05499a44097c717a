# syntax=docker/dockerfile:1
#
# temporal-codec-server image: built on Debian 12 (the Rust image's bookworm variant, so the binary's glibc
# matches the runtime), run on distroless cc-debian12 — glibc, libgcc, CA certificates and tzdata, no shell,
# no package manager — as the numeric non-root user 65532.
#
#   docker build -t temporal-codec-server:0.1.0 .
#   docker run --rm -v "$PWD/config/aws.toml:/etc/codec-server/config.toml:ro" temporal-codec-server:0.1.0 check-config
#
# The Helm chart (charts/codec-server) mounts the config at /etc/codec-server/config.toml and runs `serve`.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Only what the build reads (.dockerignore is an allowlist): the manifest, the lock file, the sources, the
# embedded SQL migrations, and benches/ (Cargo resolves bench targets when it parses the manifest).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
# The registry and target directories are BuildKit caches, so a source change rebuilds only this crate.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin codec-server \
    && install -D -m 0755 target/release/codec-server /out/codec-server \
    && mkdir -p /out/data

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="temporal-codec-server" \
      org.opencontainers.image.description="Organization-level Temporal Codec Server: envelope encryption, per-namespace keys and access policy." \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/codec-server /usr/local/bin/codec-server
# The default data_dir of the example configs (SQLite audit log, local key files), writable by the server.
# In Kubernetes the chart mounts a volume here, as the root filesystem is read-only.
COPY --from=build --chown=65532:65532 /out/data /var/lib/codec-server
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
# A config file is required in a container: without one the server would start its loopback-only dev mode.
ENV CODEC_CONFIG=/etc/codec-server/config.toml
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/codec-server"]
CMD ["serve"]

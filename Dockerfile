# rq-worker container image: Rust build stage + a runtime with no shell, compiler or package manager.
#
#   podman build --format docker -t rq-worker .     (docker build -t rq-worker . works the same)
#
# --format docker keeps the HEALTHCHECK (podman's default OCI format drops it). The base images are
# ARGs so a site with a private registry mirror can point them elsewhere, e.g.
#   --build-arg RUST_IMAGE=registry.example/rust:1.95-slim-bookworm
#   --build-arg RUNTIME_BASE=registry.example/debian:bookworm-slim
# Both must be Debian bookworm based (the runtime takes the build stage's glibc ABI). A binary
# built elsewhere can replace the build stage: --build-context build=DIR with DIR/out/rq-worker.
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_BASE=debian:bookworm-slim

# ---- build: the stripped release binary at /out/rq-worker ------------------------------------
FROM ${RUST_IMAGE} AS build
# Nothing to install: TLS is rustls (no openssl-sys), and the C that ring and bundled SQLite compile
# needs only the rust image's gcc.
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The registry and target dir are cache mounts: a rebuild recompiles only what changed. The
# release profile's debug info is not wanted in the image, so it is not generated at all.
ENV CARGO_PROFILE_RELEASE_DEBUG=0
RUN --mount=type=cache,id=rq-worker-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=rq-worker-target,target=/src/target \
    cargo build --release --locked \
    && mkdir -p /out \
    && strip -o /out/rq-worker target/release/rq-worker

# ---- rootfs: the runtime's files, assembled on bookworm-slim -----------------------------------
# Only what the binary needs: its shared libraries (found with ldd, plus the dynamic loader: glibc's
# libc, libm and libgcc_s; TLS is rustls, linked in, so no libssl/libcrypto) with their Debian
# copyright files and a list of the packages and versions they come from, the CA bundle (the roots
# rustls trusts, read through rustls-native-certs), a passwd/group with the fixed non-root user,
# /tmp (1777) and /app. No shell survives.
FROM ${RUNTIME_BASE} AS rootfs
# Unpinned on purpose (DL3008): Debian keeps only the current version of a package in bookworm and
# bookworm-security, so a pin breaks at its next security update; a rebuild must take the CA
# bundle's updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/rq-worker /rootfs/usr/local/bin/rq-worker
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN set -eux; \
    bin=/rootfs/usr/local/bin/rq-worker; \
    "$bin" --version; \
    libs="$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)"; \
    test -n "$libs"; \
    for lib in $libs; do cp --parents -L "$lib" /rootfs/; done; \
    pkgs="$(for lib in $libs; do dpkg -S "*/${lib##*/}"; done | cut -d: -f1 | sort -u) ca-certificates"; \
    for pkg in $pkgs; do \
        doc="/usr/share/doc/$pkg/copyright"; \
        [ -f "$doc" ] || doc="/usr/share/doc/$(dpkg-query -W -f '${Depends}' "$pkg" | grep -o '[a-z0-9.+-]*-base' | head -1)/copyright"; \
        install -D -m 644 "$doc" "/rootfs/usr/share/doc/$pkg/copyright"; \
        dpkg-query -W -f '${Package} ${Version}\n' "$pkg" >> /rootfs/usr/share/doc/packages.txt; \
    done; \
    mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp /rootfs/app; \
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/; \
    printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nrqworker:x:10001:10001:rq-worker:/app:/usr/sbin/nologin\n' \
        > /rootfs/etc/passwd; \
    printf 'root:x:0:\nrqworker:x:10001:\n' > /rootfs/etc/group; \
    printf 'hosts: files dns\n' > /rootfs/etc/nsswitch.conf; \
    chmod 1777 /rootfs/tmp; \
    chown 10001:10001 /rootfs/app; \
    chroot /rootfs /usr/local/bin/rq-worker --version

# ---- runtime -----------------------------------------------------------------------------------
FROM scratch
LABEL org.opencontainers.image.title="rq-worker" \
      org.opencontainers.image.description="Wire-compatible drop-in replacement for the Python RQ worker, with native ingestion jobs" \
      org.opencontainers.image.licenses="MIT"
COPY --from=rootfs /rootfs/ /
ENV PATH=/usr/local/bin \
    RQ_WORKER_METRICS_ADDR=0.0.0.0:9727
USER 10001:10001
WORKDIR /app
EXPOSE 9727
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/rq-worker", "health"]
ENTRYPOINT ["/usr/local/bin/rq-worker"]

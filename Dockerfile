# syntax=docker/dockerfile:1
#
# Legate's container image.
#
#   docker build -t legate .
#   docker run --rm -p 8080:8080 -v /etc/legate:/etc/legate:ro legate
#
# The image runs `legate serve --config /etc/legate/legate.toml`: mount a folder
# holding the configuration, the signing key(s) and the policy folder it names, and
# set `server.listen = "0.0.0.0:8080"` in it (the default listens on loopback only,
# unreachable from outside the container). See docs/configuration.md and
# docs/examples/legate.toml. Legate serves plain HTTP; terminate TLS in front of it.

# ---- build ------------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build

# aws-lc-sys (the crypto under rustls and Legate's signing and verification) builds
# its C sources with the `cc` crate: a C compiler and libc headers, no cmake, no Go,
# no OpenSSL. The slim image ships gcc and libc6-dev; installing them explicitly keeps
# the build independent of that.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# Build with the image's toolchain (the pinned 1.95). rust-toolchain.toml would make
# rustup fetch the clippy and rustfmt components, which a release build does not use.
RUN rm -f rust-toolchain.toml

RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p legate \
 && install -D -m 0755 target/release/legate /out/legate

# ---- run --------------------------------------------------------------------------
# glibc and libgcc, no shell, no package manager; runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=build /out/legate /usr/local/bin/legate

USER nonroot
EXPOSE 8080
# Liveness: GET /healthz. Readiness: GET /readyz (200 once every issuer's keys were
# fetched at least once). The image has no shell or curl for a HEALTHCHECK; probe
# from the orchestrator.
ENTRYPOINT ["legate"]
CMD ["serve", "--config", "/etc/legate/legate.toml"]

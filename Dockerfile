# syntax=docker/dockerfile:1
# Backstop's production image: docker build -t ghcr.io/backstop-dev/backstop:TAG .
#
# The binary is built with the `production` profile (release with fat LTO, one codegen unit:
# smaller and faster, slower to build) without the sandbox (--no-default-features) from the
# locked dependency set, then copied into distroless/cc (glibc, CA certificates, no shell) running
# as the nonroot user 65532, which deploy/base/deployment.yaml also requires.

FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src
# aws-lc-sys (rustls' crypto provider) compiles AWS-LC from C sources: it needs only a C/C++
# toolchain on x86_64 and aarch64 Linux. No OpenSSL: every TLS user is rustls.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
COPY tests ./tests
COPY benches ./benches
# Cache mounts keep the registry and compiled dependencies between builds; the binary is
# copied out because the target directory is not part of the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile production --locked --no-default-features \
 && cp target/production/backstop /usr/local/bin/backstop

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /usr/local/bin/backstop /usr/local/bin/backstop
USER 65532:65532
EXPOSE 10317
ENTRYPOINT ["/usr/local/bin/backstop"]
CMD ["run", "--config", "/etc/backstop/config.yaml"]

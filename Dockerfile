# syntax=docker/dockerfile:1.7
#
# The sgde service: one binary that serves the API, runs the durable queue's workers, and hosts
# its own Python sandbox workers (it re-executes itself as the hidden `sandbox-worker`), so the
# runtime image needs nothing but the binary, CA certificates (for hosted model endpoints) and
# an init that reaps orphaned sandbox processes.
#
#   docker build -t sgde .
#   docker run --rm -p 8080:8080 -e SGDE_ADMIN_TOKEN=... -v sgde-data:/var/lib/sgde sgde   # embedded SQLite
#   docker run --rm -p 8080:8080 -e SGDE_DATABASE_URL=postgres://... -e SGDE_ADMIN_TOKEN=... sgde
#
# docker-compose.yml runs it with Postgres.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The registry and the target directory are cache mounts: rebuilds after a source change
# recompile only the workspace crates. Migrations are embedded at compile time.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sgde \
    && cp target/release/sgde /usr/local/bin/sgde

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin sgde \
    && mkdir -p /var/lib/sgde && chown 10001:10001 /var/lib/sgde
COPY --from=build /usr/local/bin/sgde /usr/local/bin/sgde
USER 10001:10001
# Without SGDE_DATABASE_URL the image runs on the embedded SQLite store in this volume; compose
# sets a Postgres URL.
ENV SGDE_LISTEN=0.0.0.0:8080 \
    SGDE_DATA_DIR=/var/lib/sgde \
    RUST_LOG=sgde=info,warn
VOLUME ["/var/lib/sgde"]
EXPOSE 8080
# tini is PID 1: it forwards SIGTERM (sgde then drains in-flight work within
# SGDE_SHUTDOWN_GRACE_SECS) and reaps any sandbox process whose parent was killed.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/sgde"]
CMD ["serve"]

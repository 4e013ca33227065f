# syntax=docker/dockerfile:1
# The analytics server as a container image.
#
#   docker build -t analytics-server .
#   docker run --rm -p 8080:8080 -e ANALYTICS_JWT_SECRET="$(openssl rand -base64 48)" analytics-server
#
# Two stages: the release binary is built in the Rust image, then copied alone into a slim
# Debian runtime (ca-certificates for the https notification targets, curl for the
# healthcheck), where it runs as an unprivileged user. Without DATABASE_URL the server keeps
# a SQLite file in the /var/lib/analytics volume; compose.yml runs it on PostgreSQL and Redis.
# scripts/check-packaging lints this file (hadolint) in the full gate.

FROM rust:1.94-slim-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target caches survive between builds; the binary is copied out of the
# cached target directory so that the next stage can take it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p analytics-server --bin analytics-server \
    && cp target/release/analytics-server /usr/local/bin/analytics-server

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 analytics \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/analytics --create-home analytics
COPY --from=build /usr/local/bin/analytics-server /usr/local/bin/analytics-server

USER 10001:10001
WORKDIR /var/lib/analytics
VOLUME ["/var/lib/analytics"]
ENV ANALYTICS_BIND=0.0.0.0:8080 \
    DATABASE_URL=sqlite:///var/lib/analytics/analytics.db \
    RUST_LOG=info
EXPOSE 8080
# Ready: the store answers and the server is not draining (503 otherwise).
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["/usr/local/bin/analytics-server"]
CMD ["serve"]

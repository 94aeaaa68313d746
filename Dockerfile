# Multi-stage build: compile in the official Rust image, run as a non-root user in a slim
# Debian image. Not built in CI (no Docker engine there); `docker build -t ots .` here.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ots-server \
 && strip target/release/ots

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --create-home ots
COPY --from=build /src/target/release/ots /usr/local/bin/ots
USER ots
WORKDIR /data
ENV OTS_LISTEN=0.0.0.0:7143 \
    OTS_DATA_DIR=/data \
    OTS_LOG_FORMAT=json
EXPOSE 7143
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=3s CMD ["/bin/sh", "-c", "exec 3<>/dev/tcp/127.0.0.1/7143"]
ENTRYPOINT ["ots"]
CMD ["serve"]

# Build stage: compile the release binaries (the service, the batch job and
# the analytics CLI).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p snowlink -p snowlink-aggregate -p snowlink-analytics \
 && cp target/release/snowlink target/release/snowlink-aggregate target/release/snowlink-analytics /usr/local/bin/

# Runtime stage: a slim image running as an unprivileged user. librdkafka and
# SQLite are linked in statically; only libc and friends come from the base.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data snowlink \
 && mkdir -p /data /lake && chown snowlink /data /lake
COPY --from=build /usr/local/bin/snowlink /usr/local/bin/snowlink-aggregate /usr/local/bin/snowlink-analytics /usr/local/bin/
USER snowlink
WORKDIR /data
ENV SNOWLINK_DATA_DIR=/data SNOWLINK_LISTEN=0.0.0.0:8080 SNOWLINK_LAKE=/lake
EXPOSE 8080
# /readyz over bash's /dev/tcp: no curl needed in the image.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=12 \
  CMD bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080 && printf "GET /readyz HTTP/1.0\r\n\r\n" >&3 && head -n1 <&3 | grep -q " 200 "'
ENTRYPOINT ["snowlink"]
CMD ["serve"]

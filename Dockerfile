# Build stage: compile the release binaries.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p snowlink \
 && cp target/release/snowlink /snowlink

# Runtime stage: a slim image running as an unprivileged user.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data snowlink \
 && mkdir -p /data && chown snowlink /data
COPY --from=build /snowlink /usr/local/bin/snowlink
USER snowlink
WORKDIR /data
ENV SNOWLINK_DATA_DIR=/data SNOWLINK_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["snowlink"]
CMD ["serve"]

# ackscope in a container: built in a Rust image, run from a slim Debian as a non-root user.
# docker build --build-arg RUST_VERSION=1.95.0 -t ackscope .
ARG RUST_VERSION=1.95.0
ARG DEBIAN_VERSION=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_VERSION} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
COPY tests tests
RUN cargo build --release --locked --bin ackscope

FROM debian:${DEBIAN_VERSION}-slim
# Fonts for the PNG heatmaps of postmortem bundles; certificates for TLS to NATS.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/ackscope --create-home ackscope
COPY --from=build /src/target/release/ackscope /usr/local/bin/ackscope
COPY scenarios /usr/share/ackscope/scenarios
COPY queries /usr/share/ackscope/queries
USER 10001:10001
WORKDIR /var/lib/ackscope
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/ackscope"]
CMD ["serve", "--listen", "0.0.0.0:9464", "--data-dir", "/var/lib/ackscope/data"]

# syntax=docker/dockerfile:1
#
# portcullis container image.
#
#   docker build -t portcullis .
#   docker run --rm -p 8080:8080 -p 9090:9090 \
#       -v "$PWD/gateway.toml:/etc/portcullis/gateway.toml:ro" portcullis
#
# The image ships no configuration: mount one at /etc/portcullis/gateway.toml (it must
# listen on 0.0.0.0, see deploy/compose/gateway.toml) or pass `-c` another path.
# Every key can also be set from the environment (PORTCULLIS_<SECTION>__<KEY>).
#
# No HEALTHCHECK: the runtime image has no curl or wget, and the binary has no probe
# command. Probe the admin listener from outside instead: GET :9090/healthz (liveness)
# and GET :9090/readyz (200 once the provider's keys are fetched), e.g. a Kubernetes
# httpGet probe.

# --- dependency skeleton ---------------------------------------------------------------
# Cargo.toml and Cargo.lock plus a stub for every Rust source file (so that targets the
# manifest names explicitly, such as [[example]], still exist). Its content changes only
# when the manifest, the lock file or the set of files changes, so the dependency layer
# below is reused when only source code changes.
FROM rust:1-bookworm AS skeleton
WORKDIR /src
COPY . .
RUN mkdir -p /skeleton \
    && cp Cargo.toml Cargo.lock /skeleton/ \
    && find . -path ./target -prune -o -type f -name '*.rs' -print | while read -r f; do \
           mkdir -p "/skeleton/$(dirname "$f")" && echo '#![allow(dead_code)] fn main() {}' > "/skeleton/$f"; \
       done

# --- build -----------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /build

# Dependency layer: every dependency, built against the stubs. The stub crate's own
# artifacts are then deleted, so the real crate is always rebuilt below (COPY keeps the
# files' modification times, which cargo could take for "up to date").
COPY --from=skeleton /skeleton/ ./
RUN cargo build --release --locked \
    && rm -rf target/release/portcullis target/release/deps/portcullis-* \
              target/release/deps/libportcullis-* target/release/.fingerprint/portcullis-*

COPY . .
RUN cargo build --release --locked \
    && install -D -m 0755 target/release/portcullis /out/portcullis

# --- runtime ---------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# ca-certificates: the gateway trusts the system roots (rustls-native-certs) for an
# https issuer or upstream.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 portcullis \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
               --home-dir /nonexistent --shell /usr/sbin/nologin portcullis \
    && mkdir -p /etc/portcullis

COPY --from=builder /out/portcullis /usr/local/bin/portcullis

USER 10001:10001
EXPOSE 8080 9090
ENTRYPOINT ["portcullis"]
CMD ["serve", "-c", "/etc/portcullis/gateway.toml"]

# The project's images, built from source (docker-compose.yml builds each target):
#   token-service  the token-service (SQLite or PostgreSQL), non-root, no toolchain
#   demo-upstream  the tutorial's Step On API, authorization page and Shoe Fly Shoe
#   gateway        the official Envoy image + the oauth2 filter (wasm, and native as an Envoy
#                  dynamic module) + the configuration template and its render script
#   setup          the stack's one-shot jobs: Envoy's self-signed certificate, registering the
#                  tutorial's services on the admin API (openssl, curl)
# One builder stage compiles the whole workspace once for every target (the legacy builder and
# BuildKit both reuse it); its first layer builds only the dependencies, from the manifests, so
# a change to the project's sources recompiles the project's crates, not every crate.
# Only official images: rust, debian, envoyproxy/envoy (scripts/docker-standins.sh builds local
# stand-ins for them where no registry answers).

# What decides the dependencies: every manifest without its targets' sections ([[bin]],
# [[test]]...), so that a new test binary, say, does not rebuild every dependency.
FROM rust:1-bookworm AS manifests
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY filter/Cargo.toml filter/
COPY filter-native/Cargo.toml filter-native/
COPY token-service/Cargo.toml token-service/
COPY demo-upstream/Cargo.toml demo-upstream/
COPY tools/wasm-trim/Cargo.toml tools/wasm-trim/
COPY tests/Cargo.toml tests/
COPY fuzz/Cargo.toml fuzz/
RUN for manifest in */Cargo.toml tools/*/Cargo.toml; do \
      awk '/^\[\[/ { skip = 1; next } /^\[/ { skip = 0 } !skip' "$manifest" > "$manifest.deps" \
      && mv "$manifest.deps" "$manifest"; \
    done

FROM rust:1-bookworm AS builder
WORKDIR /src
# The official image has only the host's standard library; the filter is also built as wasm.
RUN rustup target add wasm32-wasip1
COPY --from=manifests /src/ ./
# The dependency layer: every member gets empty sources (the workspace must load), then the
# crates the images need are built, so their dependencies are compiled and cached here.
RUN for crate in filter filter-native token-service tools/wasm-trim tests fuzz; do \
      mkdir -p $crate/src && touch $crate/src/lib.rs; \
    done \
 && for main in token-service/src/main.rs demo-upstream/src/main.rs tools/wasm-trim/src/main.rs; do \
      mkdir -p "$(dirname $main)" && echo 'fn main() {}' > $main; \
    done \
 && cargo build --locked --release -p token-service -p demo-upstream -p oauth2-filter-native -p wasm-trim \
 && cargo build --locked -p oauth2-filter --target wasm32-wasip1 --profile wasm
# The real manifests and sources.
COPY tests/Cargo.toml tests/
COPY fuzz/Cargo.toml fuzz/
COPY filter filter/
COPY filter-native filter-native/
COPY token-service token-service/
COPY demo-upstream demo-upstream/
COPY tools/wasm-trim tools/wasm-trim/
COPY examples examples/
# The sources keep their mtimes from the build context, which can be older than the empty
# sources compiled above: touched, cargo rebuilds the project's crates for certain.
RUN find filter filter-native token-service demo-upstream tools -name '*.rs' -exec touch {} + \
 && cargo build --locked --release -p token-service -p demo-upstream -p oauth2-filter-native -p wasm-trim \
 && cargo build --locked -p oauth2-filter --target wasm32-wasip1 --profile wasm \
 && target/release/wasm-trim target/wasm32-wasip1/wasm/oauth2_filter.wasm \
 && mkdir /out \
 && cp target/release/token-service target/release/demo-upstream target/release/liboauth2_filter_native.so \
       target/wasm32-wasip1/wasm/oauth2_filter.wasm /out/

# Every image of the project runs as this user; the volumes it writes (the certificate, the
# SQLite database) are created owned by it.
FROM debian:bookworm-slim AS runtime
RUN groupadd --system --gid 10001 oauth2 && useradd --system --uid 10001 --gid oauth2 --no-create-home oauth2

FROM runtime AS token-service
COPY --from=builder /out/token-service /usr/local/bin/
RUN mkdir /data && chown oauth2:oauth2 /data
VOLUME /data
ENV TOKEN_SERVICE_DATABASE=/data/token-service.db \
    TOKEN_SERVICE_GATEWAY_LISTEN=0.0.0.0:8080 \
    TOKEN_SERVICE_ADMIN_LISTEN=0.0.0.0:8001
EXPOSE 8080 8001
USER oauth2
# /status on the gateway listener, with bash alone (no curl in the image).
HEALTHCHECK --interval=2s --timeout=2s --retries=30 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /status HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["token-service"]

FROM runtime AS demo-upstream
COPY --from=builder /out/demo-upstream /usr/local/bin/
EXPOSE 3000 3001 5000
USER oauth2
ENTRYPOINT ["demo-upstream"]

FROM runtime AS setup
RUN apt-get update -q && apt-get install -y -q --no-install-recommends openssl curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* && mkdir /certs && chown oauth2:oauth2 /certs
COPY scripts/make-cert.sh /usr/local/bin/make-cert.sh
USER oauth2
CMD ["make-cert.sh", "/certs"]

FROM envoyproxy/envoy:v1.40.0 AS gateway
RUN groupadd --system --gid 10001 oauth2 && useradd --system --uid 10001 --gid oauth2 --no-create-home oauth2
COPY --from=builder /out/oauth2_filter.wasm /etc/envoy/oauth2_filter.wasm
COPY --from=builder /out/liboauth2_filter_native.so /usr/local/lib/envoy/
COPY envoy /template/envoy
COPY scripts/render-envoy-config.sh /template/scripts/
ENV TEMPLATE_ROOT=/template \
    WASM_PATH=/etc/envoy/oauth2_filter.wasm \
    ENVOY_DYNAMIC_MODULES_SEARCH_PATH=/usr/local/lib/envoy \
    CERT_DIR=/certs
EXPOSE 8000 8443
USER oauth2
# The configuration is rendered at start from the environment (docker-compose.yml sets the
# upstream and the token-service replicas). bash: the render script is not POSIX sh.
ENTRYPOINT ["bash", "-c", "bash /template/scripts/render-envoy-config.sh > /tmp/envoy.yaml && exec envoy -c /tmp/envoy.yaml \"$@\"", "--"]

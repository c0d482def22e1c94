# chat-server image. Two targets:
#   docker build -t chat-server .
#       compiles the server in a Rust image and the web client in a Node.js image (the default);
#   cargo build --profile dist -p chat-server && (cd web && npm ci && npm run build)
#   DOCKER_BUILDKIT=1 docker build --target prebuilt -t chat-server .
#       packages that binary and web/dist, for machines with no image registry: only the base
#       image is needed (BASE_IMAGE may name a locally made one), so BuildKit must skip the
#       stages above, which the legacy builder does not.
# Both end in the same runtime: a slim Debian, a non-root user, a HEALTHCHECK on /healthz.
ARG BASE_IMAGE=debian:bookworm-slim

FROM node:20-bookworm-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --profile dist --locked -p chat-server

FROM ${BASE_IMAGE} AS runtime-base
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin chat
ENV PORT=3000 WEB_DIR=/app/web SOCKETIO_CLIENT_DIR=/app/socket.io-client ADMIN_UI_DIR=/app/admin-ui RUST_LOG=info
# The binary allocates with jemalloc (its background threads return a connection storm's memory
# to the system; BENCHMARKS.md, "Memory that comes back"), so glibc's malloc settings do not apply.
EXPOSE 3000
# No curl in a slim image: bash speaks enough HTTP/1.0 for a health probe.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT} && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
USER chat
ENTRYPOINT ["/usr/local/bin/chat-server"]

FROM runtime-base AS prebuilt
ARG BINARY=target/dist/chat-server
COPY ${BINARY} /usr/local/bin/chat-server
COPY web/dist /app/web
COPY web/node_modules/socket.io-client/dist /app/socket.io-client
COPY web/node_modules/@socket.io/admin-ui/ui/dist /app/admin-ui

FROM runtime-base AS runtime
COPY --from=build /src/target/dist/chat-server /usr/local/bin/chat-server
COPY --from=web /web/dist /app/web
COPY --from=web /web/node_modules/socket.io-client/dist /app/socket.io-client
COPY --from=web /web/node_modules/@socket.io/admin-ui/ui/dist /app/admin-ui

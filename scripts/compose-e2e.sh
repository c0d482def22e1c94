#!/usr/bin/env bash
# End-to-end test of the compose deployment. Packages the host's build into the chat-server image
# (Dockerfile target `prebuilt`), brings up docker-compose.yml (Redis, three nodes, HAProxy) as a
# project of its own, runs tests/src/bin/compose_e2e.rs through the load balancer, and tears it
# all down — also on failure, after printing the services' logs. Then the same on the
# `redis-cluster` profile (a 3-master Redis Cluster, the nodes in sharded mode).
#
#   scripts/compose-e2e.sh [classic] [cluster]   which deployments (default: both)
#   E2E_CARGO_PROFILE=dev                        package the debug build instead of `dist` (CI:
#                                                it is built already; `dist` takes minutes more)
set -euo pipefail
cd "$(dirname "$0")/.."
LOG_PREFIX=compose-e2e
. scripts/lib.sh

# test-env.sh installs the compose CLI too.
bash scripts/test-env.sh
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  compose=(docker-compose)
fi
base=("${compose[@]}")

# A plain `docker build` of the CLI without buildx would use the legacy builder, which builds the
# toolchain stages too; Debian's docker.io CLI has BuildKit built in.
build_image() {
  if docker buildx version >/dev/null 2>&1; then
    DOCKER_BUILDKIT=1 docker build "$@"
  else
    DOCKER_BUILDKIT=1 /usr/bin/docker build "$@"
  fi
}

profile=${E2E_CARGO_PROFILE:-dist}
case $profile in
  dev) binary=target/debug/chat-server ;;
  *) binary=target/$profile/chat-server ;;
esac
# The harness (tests/src/bin/compose_e2e.rs) runs from the debug build.
build_debug_binaries
[ "$profile" = dev ] || cargo build --locked --profile "$profile" -p chat-server
log "building image chat-server:e2e (target prebuilt, $binary)"
build_image --quiet --target prebuilt --build-arg "BINARY=$binary" -t chat-server:e2e . >/dev/null

export CHAT_IMAGE=chat-server:e2e CHAT_RESTART=no ADMIN_TOKEN=e2e-admin-token
export REDIS_PASSWORD="e2e-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
# HISTORY_LEN holds every message of the recovery phase, so each chatter's view can be compared
# with the whole history.
export LEAVE_GRACE_MS=3000 NODE_TIMEOUT_MS=3000 HISTORY_LEN=5000 RUST_LOG=info
# The Admin UI's login: `e2e-admin-ui`, hashed by bcrypt at its lowest cost.
export ADMIN_UI_USERNAME=e2e ADMIN_UI_PASSWORD_HASH='$2a$04$3WofNFeChZiOhYoqzBtz1.Ph00QnbLGKreM/nYUdo1NzBDTFd4.kO'
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
LB_PORT=$(free_port)
ADMIN_PORT=$(free_port)
export LB_PORT ADMIN_PORT

teardown() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    mkdir -p target
    "${compose[@]}" logs --no-color >target/compose-e2e.log 2>&1 || true
    log "failed; last logs (all of them in target/compose-e2e.log):"
    tail -n 60 target/compose-e2e.log >&2 || true
  fi
  "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  exit "$status"
}
trap teardown EXIT

# run LABEL [compose file and profile options]: one deployment, end to end, then torn down.
run() {
  local label=$1
  shift
  compose=("${base[@]}" -p "chat-e2e-$label-$$" "$@")
  log "starting $label on port $LB_PORT"
  "${compose[@]}" up -d --no-build
  E2E_LB_PORT=$LB_PORT E2E_ADMIN_PORT=$ADMIN_PORT E2E_ADMIN_TOKEN=$ADMIN_TOKEN E2E_COMPOSE="${compose[*]}" \
    E2E_ADMIN_UI_LOGIN="$ADMIN_UI_USERNAME:e2e-admin-ui" \
    E2E_GRACE_MS=$LEAVE_GRACE_MS E2E_NODE_TIMEOUT_MS=$NODE_TIMEOUT_MS \
    "${CARGO_TARGET_DIR:-target}/debug/compose_e2e"
  "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1
  log "$label passed"
}

compose=("${base[@]}")
deployments=("$@")
[ ${#deployments[@]} -gt 0 ] || deployments=(classic cluster)
for deployment in "${deployments[@]}"; do
  case $deployment in
    classic) run classic ;;
    cluster) run cluster -f docker-compose.yml -f docker-compose.cluster.yml --profile redis-cluster ;;
    *) log "unknown deployment $deployment (classic or cluster)"; exit 2 ;;
  esac
done

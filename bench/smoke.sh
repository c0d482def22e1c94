#!/usr/bin/env bash
# The benchmark's smoke run, for CI: builds the generator, the tiny app and chat-server, installs
# the Node.js baseline, and runs every scenario on every implementation for a few seconds at tiny
# sizes. Fails on any error, lost or duplicated message. Needs Docker with the redis:7 image
# (scripts/test-env.sh) and Node.js. Extra arguments go to `bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG_PREFIX=bench-smoke
. scripts/lib.sh
ensure_node
npm_ci bench/node
build_debug_binaries
exec "${CARGO_TARGET_DIR:-target}/debug/bench" --smoke "$@"

#!/usr/bin/env bash
# Runs a chat node on http://localhost:3000 (PORT changes it) with the web client: builds web/
# (Node.js, npm ci) and the server, then starts it. Flags and environment pass through to
# chat-server (see README.md); without REDIS_URL it is a single node with everything in memory.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG_PREFIX=run
. scripts/lib.sh
build_web_client
exec cargo run --release --locked -p chat-server -- "$@"

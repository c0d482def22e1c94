#!/usr/bin/env bash
# The project's test command: prepares Docker and the redis:7 image, the Node.js interop peers,
# the Python smoke-test venv, Chromium and the web client (scripts/test-env.sh), builds the server
# binary, then runs every test of the workspace (unit, cluster, chat, Node.js interop, smoke,
# browser, doc tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-env.sh
export SMOKE_PYTHON="$PWD/target/smoke-venv/bin/python"

cargo build --locked -p chat-server
cargo build --locked -p socketio-cluster --examples
cargo test --workspace --locked "$@"

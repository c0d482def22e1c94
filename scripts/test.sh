#!/usr/bin/env bash
# The project's test command: prepares Docker and the redis:7 image, a Python virtual environment
# with python-socketio for the third-party client smoke test, builds the server binary, then runs
# every test of the workspace (unit, cluster and chat integration, smoke, doc tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-env.sh

venv=target/smoke-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import socketio' 2>/dev/null; then
  echo "[test] preparing $venv (python-socketio)" >&2
  mkdir -p target
  if ! python3 -m venv "$venv" 2>/dev/null; then
    sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
    $sudo_cmd apt-get update -qq && $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/smoke/requirements.txt
fi
export SMOKE_PYTHON="$PWD/$venv/bin/python"

cargo build --locked -p chat-server
cargo test --workspace --locked "$@"

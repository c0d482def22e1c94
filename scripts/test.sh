#!/usr/bin/env bash
# The project's test command: prepares Docker and the redis:7 image if needed, then runs every
# test of the workspace (unit, cluster integration, doc tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-env.sh
cargo test --workspace --locked "$@"

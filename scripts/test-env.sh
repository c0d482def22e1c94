#!/usr/bin/env bash
# Prepares what the tests need on a Debian machine: a running Docker engine; the images `redis:7`
# (tests), `debian:bookworm-slim` and `haproxy:2.6` (the compose deployment); Node.js with the
# interop peers of tests/interop (`npm ci`); a Python virtual environment with python-socketio for
# the smoke test; Debian's Chromium and the built web client of web/ for the browser test. A laptop
# with Docker and registry access only pulls the images; a machine that reaches Debian's packages
# but no image registry gets the engine from `docker.io` and the images imported from one
# debootstrapped Debian root (redis-server and haproxy included).
set -euo pipefail

LOG_PREFIX=test-env
. "$(dirname "$0")/lib.sh"

ensure_engine() {
  if docker info >/dev/null 2>&1; then return 0; fi
  command -v dockerd >/dev/null 2>&1 || apt_install docker.io
  log "starting dockerd"
  as_root sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  log "dockerd did not come up; see /var/log/dockerd.log"
  exit 1
}

# The apt mirror this machine already uses, so debootstrap needs no other network access.
debian_mirror() {
  local uri
  uri=$(grep -rhoE '^URIs: *[^ ]+debian/?$' /etc/apt/sources.list.d/ 2>/dev/null | head -1 | awk '{print $2}')
  [ -n "$uri" ] || uri=$(grep -hoE '^deb +[^ ]+debian/? ' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')
  echo "${uri:-http://deb.debian.org/debian}"
}

# A Debian root with what the fallback images need, made once per run with debootstrap.
debian_root=""
make_debian_root() {
  if [ -z "$debian_root" ]; then
    apt_install debootstrap
    debian_root=$(mktemp -d /tmp/debian-root.XXXXXX)
    log "building a Debian bookworm root (no image registry reachable)"
    as_root debootstrap --variant=minbase --include=redis-server,haproxy bookworm "$debian_root" \
      "$(debian_mirror)" >/dev/null
  fi
}

# ensure_image TAG CMD-JSON: pulls TAG, or imports it from the Debian root with that command.
ensure_image() {
  local tag=$1 cmd=$2
  if docker image inspect "$tag" >/dev/null 2>&1; then return 0; fi
  log "pulling $tag"
  if timeout 120 docker pull "$tag" >/dev/null 2>&1; then return 0; fi
  log "no image registry reachable: building $tag from a Debian root"
  make_debian_root
  as_root tar -C "$debian_root" -c . | docker import -c "CMD $cmd" - "$tag" >/dev/null
}

# tests/interop: socket.io, @socket.io/redis-adapter and @socket.io/redis-emitter, from the lockfile.
ensure_node_peers() {
  ensure_node
  npm_ci tests/interop
}

# target/smoke-venv: python-socketio for tests/smoke (its path is exported by scripts/test.sh).
ensure_smoke_venv() {
  local venv=target/smoke-venv
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import socketio' 2>/dev/null; then
    return 0
  fi
  python_venv "$venv" -r tests/smoke/requirements.txt
}

# web/: the built client, and Debian's Chromium for its end-to-end test (playwright-core from the
# lockfile drives it).
ensure_web_client() {
  [ -x /usr/bin/chromium ] || apt_install chromium
  build_web_client
}

cd "$(dirname "$0")/.."
ensure_engine
# redis:7 for the tests; the base and load balancer images of the compose deployment.
ensure_image redis:7 '["redis-server","--protected-mode","no"]'
ensure_image debian:bookworm-slim '["bash"]'
ensure_image haproxy:2.6 '["haproxy","-f","/usr/local/etc/haproxy/haproxy.cfg"]'
[ -z "$debian_root" ] || as_root rm -rf "$debian_root"
ensure_node_peers
ensure_smoke_venv
ensure_web_client
# The compose check of CI (scripts/compose-e2e.sh), so a clean machine installs it with the rest.
ensure_compose
log "docker engine, images, Node.js peers, the Python venv, the web client and compose ready"

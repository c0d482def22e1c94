#!/usr/bin/env bash
# Prepares what the integration tests need on a Debian machine: a running Docker engine and a
# `redis:7` image, Node.js with the interop peers of tests/interop (`npm ci`), and a Python
# virtual environment with python-socketio for the smoke test. A laptop with Docker and registry
# access only pulls the image; a machine that reaches Debian's packages but no image registry gets
# the engine from `docker.io` and a `redis:7` image built from a debootstrapped Debian root.
set -euo pipefail

log() { printf '[test-env] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

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

ensure_redis_image() {
  if docker image inspect redis:7 >/dev/null 2>&1; then return 0; fi
  log "pulling redis:7"
  if timeout 120 docker pull redis:7 >/dev/null 2>&1; then return 0; fi
  log "no image registry reachable: building redis:7 from a Debian root"
  apt_install debootstrap
  local root
  root=$(mktemp -d /tmp/redis-root.XXXXXX)
  as_root debootstrap --variant=minbase --include=redis-server bookworm "$root" "$(debian_mirror)" >/dev/null
  as_root tar -C "$root" -c . | docker import \
    -c 'CMD ["redis-server","--protected-mode","no"]' -c 'EXPOSE 6379' - redis:7 >/dev/null
  as_root rm -rf "$root"
}

# tests/interop: socket.io, @socket.io/redis-adapter and @socket.io/redis-emitter, from the lockfile.
ensure_node_peers() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  local dir=tests/interop
  if [ ! -f "$dir/node_modules/.package-lock.json" ] ||
    [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    log "npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

# target/smoke-venv: python-socketio for tests/smoke (its path is exported by scripts/test.sh).
ensure_smoke_venv() {
  local venv=target/smoke-venv
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import socketio' 2>/dev/null; then
    return 0
  fi
  log "preparing $venv (python-socketio)"
  mkdir -p target
  python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$venv"; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/smoke/requirements.txt
}

cd "$(dirname "$0")/.."
ensure_engine
ensure_redis_image
ensure_node_peers
ensure_smoke_venv
log "docker engine, redis:7, Node.js peers and the Python venv ready"

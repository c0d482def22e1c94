#!/usr/bin/env bash
# Prepares what the tests need on a Debian machine: a running Docker engine; the images `redis:7`
# (tests), `debian:bookworm-slim` and `haproxy:2.6` (the compose deployment); Node.js with the
# interop peers of tests/interop (`npm ci`); a Python virtual environment with python-socketio for
# the smoke test; Debian's Chromium and the built web client of web/ for the browser test. A laptop with Docker and registry access only pulls the images; a machine that
# reaches Debian's packages but no image registry gets the engine from `docker.io` and the images
# imported from one debootstrapped Debian root (redis-server and haproxy included).
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

# web/: the browser client, bundled into web/dist (served by chat-server), and its end-to-end test,
# which drives Debian's Chromium with playwright-core from the lockfile. The build takes a second,
# so it always runs: the bundle never lags behind web/src.
ensure_web_client() {
  [ -x /usr/bin/chromium ] || apt_install chromium
  local dir=web
  if [ ! -f "$dir/node_modules/.package-lock.json" ] ||
    [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    log "npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
  (cd "$dir" && npm run --silent build >/dev/null)
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
log "docker engine, images, Node.js peers, the Python venv and the web client ready"

# Shell helpers shared by the scripts of this folder (sourced, not run). Set LOG_PREFIX first.

log() { printf '[%s] %s\n' "${LOG_PREFIX:-scripts}" "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# apt_install PACKAGE...: installs the Debian packages that are missing.
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Node.js and npm; playwright-core (web/) needs Node.js 20 or newer.
ensure_node() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$major" -ge 20 ] || log "warning: Node.js $(node --version) found; web/ needs 20 or newer"
}

# npm_ci DIR: installs DIR's dependencies from its lockfile unless they are already current.
npm_ci() {
  local dir=$1
  if [ ! -f "$dir/node_modules/.package-lock.json" ] ||
    [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    log "npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

# The debug build of every binary and example of the workspace, which the tests, the benchmark's
# smoke run and the compose check use. One command for all of them: cargo resolves features per
# command, and `-p chat-server` alone, or a build without the examples (which bring the
# dev-dependencies in), would compile a few dozen dependencies again with other features.
build_debug_binaries() { cargo build --workspace --locked --bins --examples; }

# docker-compose.yml's CLI: the `docker compose` plugin, else Debian's docker-compose.
ensure_compose() {
  docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 ||
    apt_install docker-compose
}

# web/dist: the browser client chat-server serves at /. The build takes a second, so it always
# runs: the bundle never lags behind web/src.
build_web_client() {
  ensure_node
  npm_ci web
  (cd web && npm run --silent build >/dev/null)
}

# python_venv DIR PIP-ARGS...: a virtual environment in DIR with `pip install PIP-ARGS`.
python_venv() {
  local venv=$1
  shift
  log "preparing $venv ($*)"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv --clear "$venv"; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
}

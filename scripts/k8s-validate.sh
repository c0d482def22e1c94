#!/usr/bin/env bash
# Validates every manifest of k8s/ and the rendered kustomization against the Kubernetes
# schemas (kubernetes-validate from PyPI, strict: unknown fields fail).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[k8s-validate] %s\n' "$*" >&2; }
kubernetes_version=1.31.0

venv=target/k8s-venv
if ! "$venv/bin/kubernetes-validate" --version >/dev/null 2>&1; then
  log "preparing $venv (kubernetes-validate)"
  mkdir -p target
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate==1.37.0
fi
if ! command -v kubectl >/dev/null 2>&1; then
  log "installing kubectl (Debian's kubernetes-client)"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get install -y -qq kubernetes-client >/dev/null
fi

rendered=target/k8s-rendered.yaml
kubectl kustomize k8s >"$rendered"
manifests=()
for file in k8s/*.yaml; do
  [ "$(basename "$file")" = kustomization.yaml ] || manifests+=("$file")
done
"$venv/bin/kubernetes-validate" --strict --quiet -k "$kubernetes_version" "${manifests[@]}" "$rendered"
log "${#manifests[@]} manifests and the rendered kustomization ($(grep -c '^kind:' "$rendered") resources) are valid for Kubernetes $kubernetes_version"

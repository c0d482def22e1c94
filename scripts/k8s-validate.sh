#!/usr/bin/env bash
# Validates every manifest of k8s/ and the rendered kustomization against the Kubernetes
# schemas (kubernetes-validate from PyPI, strict: unknown fields fail).
set -euo pipefail
cd "$(dirname "$0")/.."
LOG_PREFIX=k8s-validate
. scripts/lib.sh
kubernetes_version=1.31.0

venv=target/k8s-venv
"$venv/bin/kubernetes-validate" --version >/dev/null 2>&1 ||
  python_venv "$venv" kubernetes-validate==1.37.0
# Debian's kubernetes-client where no kubectl is installed.
command -v kubectl >/dev/null 2>&1 || apt_install kubernetes-client

rendered=target/k8s-rendered.yaml
kubectl kustomize k8s >"$rendered"
manifests=()
for file in k8s/*.yaml; do
  [ "$(basename "$file")" = kustomization.yaml ] || manifests+=("$file")
done
"$venv/bin/kubernetes-validate" --strict --quiet -k "$kubernetes_version" "${manifests[@]}" "$rendered"
log "${#manifests[@]} manifests and the rendered kustomization ($(grep -c '^kind:' "$rendered") resources) are valid for Kubernetes $kubernetes_version"

#!/usr/bin/env bash
# Tools the tests use that do not come from PyPI: promtool + prometheus (Debian
# package `prometheus`, installed when missing and we are root) and kubectl with its
# built-in kustomize (preinstalled on the project's machines; Debian's own
# kubernetes-client is too old for the kustomize features k8s/ uses).
set -euo pipefail
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus >/dev/null || missing+=(prometheus)
if ! command -v "${KUBECTL:-kubectl}" >/dev/null; then
  echo "kubectl not found: install kubectl >= 1.27 (built-in kustomize) or set KUBECTL" >&2
  exit 1
fi
[ ${#missing[@]} -eq 0 ] && exit 0
pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "installing system packages: $pkgs"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
else
  echo "missing tools: $pkgs -- install them (e.g. sudo apt-get install -y $pkgs)" >&2
  exit 1
fi

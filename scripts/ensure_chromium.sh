#!/usr/bin/env bash
# Headless Chromium for tests/tools/test_preview.py: Debian's `chromium` package,
# installed when missing and we are root (idempotent: nothing to do once installed).
set -euo pipefail
command -v chromium >/dev/null && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "installing chromium (Debian package)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "chromium not found: install it (e.g. sudo apt-get install -y chromium)" >&2
  exit 1
fi

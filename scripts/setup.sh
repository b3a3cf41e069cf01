#!/usr/bin/env bash
# Everything s3csv needs on a fresh Debian/Ubuntu machine: redis-server (for `s3csv dev` and the
# tests) and the npm dependencies, which include the Node 24 runtime the project runs on.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
# Debian's Chromium drives the dashboard's browser test (playwright-core, no browser download).
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
# The Redis TLS test makes its certificate with openssl.
command -v openssl >/dev/null 2>&1 || packages+=(openssl)
if [ ${#packages[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${packages[*]} with apt-get"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
bash scripts/install-rgw.sh # Ceph's RADOS Gateway: the real S3 some integration tests run on

echo "setup: installing npm dependencies (with Node 24)"
npm ci --no-audit --no-fund --loglevel=error
# Put the `s3csv` command on PATH (npx s3csv works from this folder either way).
npm link --no-audit --no-fund --loglevel=error >/dev/null 2>&1 ||
  echo "setup: could not put s3csv on PATH (npm link needs write access); use npx s3csv here"
echo "setup: done ($(node_modules/.bin/node --version), $(redis-server --version | cut -d' ' -f3))"

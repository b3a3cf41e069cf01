#!/usr/bin/env bash
# Ceph's RADOS Gateway from Debian's packages: the real S3 implementation some integration tests
# start (test/support/rgw.ts). Only the daemons a single-node cluster needs, no ceph-mgr.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
have radosgw && have radosgw-admin && have ceph-mon && have ceph-osd && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
packages=(ceph-mon ceph-osd radosgw ceph-common)
install() {
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${packages[@]}" >/dev/null
}
echo "install-rgw: installing ${packages[*]} with apt-get"
# Refresh the package lists only when they lack radosgw or are too old to download from (404).
if ! apt-cache show radosgw >/dev/null 2>&1 || ! install; then
  $sudo apt-get update -qq
  install
fi

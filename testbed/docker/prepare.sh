#!/usr/bin/env bash
# prepare.sh — what the Docker test bed needs, built once into the shared cache (under its
# lock): the hosts' root file systems (rootfs-systemd, then rootfs-docker on top of it) and
# the test image saved as a tar, to `docker load` into each host's engine (there is no
# registry on these machines). Used by hosts-up.sh here, bench/docker.sh, scripts/demo-docker.sh
# and the Rust tests' Bed::up_docker.
#   bash testbed/docker/prepare.sh        # NIMBUS_TESTBED_CACHE (/var/tmp/nimbus-testbed)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${NIMBUS_TESTBED_CACHE:-/var/tmp/nimbus-testbed}
image=nimbus-test/py-tiny:2
mkdir -p "$cache"
exec 9>>"$cache/.lock"
flock 9
TB=$cache bash "$here/rootfs-systemd.sh" >/dev/null
[ -d "$cache/rootfs-docker" ] || SRC=$cache/rootfs-systemd DST=$cache/rootfs-docker bash "$here/docker/rootfs-docker.sh"
if [ ! -f "$cache/py-tiny-2.tar" ]; then
  docker image inspect "$image" >/dev/null 2>&1 || ROOTFS=$cache/rootfs-systemd TAG=$image bash "$here/docker/image-tiny.sh"
  docker save "$image" -o "$cache/py-tiny-2.tar.tmp" && mv "$cache/py-tiny-2.tar.tmp" "$cache/py-tiny-2.tar"
fi

#!/usr/bin/env bash
# hosts-up.sh (Docker mode) — N test hosts with their own Docker engines, the test image
# loaded into each: prepare.sh, then ../hosts-up.sh with DOCKER=1, then a wait for every
# dockerd and a `docker load` of the image. The same TB, BED and N as ../hosts-up.sh; tear
# down with ../hosts-down.sh.
#   N=3 TB=/tmp/nimbus-bed BED=0 bash testbed/docker/hosts-up.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${NIMBUS_TESTBED_CACHE:-/var/tmp/nimbus-testbed}
export TB=${TB:-/tmp/nimbus-bed} N=${N:-3}
bash "$here/docker/prepare.sh"
DOCKER=1 ROOTFS=$cache/rootfs-docker NSPAWN_EXTRA=--system-call-filter=@keyring bash "$here/hosts-up.sh"
S="ssh -F $TB/ssh_config"
for k in $(seq 1 "$N"); do until $S "h$k" docker info >/dev/null 2>&1; do sleep 0.2; done; done
for k in $(seq 1 "$N"); do ( $S "h$k" docker load -q <"$cache/py-tiny-2.tar" >/dev/null ) & done
wait

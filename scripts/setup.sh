#!/usr/bin/env bash
# Installs what building and testing nimbus needs on a fresh Debian machine, as root.
# Idempotent: does nothing that is already done. Never starts a daemon in the root namespace.
set -euo pipefail

need_apt=()
command -v cc >/dev/null || need_apt+=(build-essential)
command -v git >/dev/null || need_apt+=(git)
# The test Kubernetes API server is checked against clients no one here wrote: kubectl and
# Debian's Python client (run by Debian's /usr/bin/python3).
command -v kubectl >/dev/null || need_apt+=(kubernetes-client)
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import kubernetes' 2>/dev/null || need_apt+=(python3-kubernetes)
# objcopy: the mesh tests install a stripped agent on many hosts
command -v objcopy >/dev/null || need_apt+=(binutils)
command -v python3 >/dev/null || need_apt+=(python3)
# The README's quick start draws the graph with Graphviz (`nimbus graph | dot -Tsvg`).
command -v dot >/dev/null || need_apt+=(graphviz)
# The SSH transport is tested against a real sshd on loopback (started and stopped by the tests).
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh-keygen >/dev/null || need_apt+=(openssh-client)
# The reconcile daemon's status page is tested in a real browser: headless screenshots.
command -v chromium >/dev/null || need_apt+=(chromium)
fc-list 2>/dev/null | grep -qi dejavu || need_apt+=(fonts-dejavu-core)
# The PostgreSQL state backend is tested against a real server: Debian's postgresql, each test
# making its own cluster with initdb in a temporary folder (its packaged cluster never starts:
# policy-rc.d below keeps apt from starting services).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need_apt+=(postgresql)
command -v psql >/dev/null || need_apt+=(postgresql-client)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing ${need_apt[*]}; run as root or install them" >&2
    exit 1
  fi
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
  rm -f /usr/sbin/policy-rc.d
fi
if ! command -v cargo >/dev/null; then
  echo "setup: cargo is missing; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
# The host test bed (systemd-nspawn containers with systemd and sshd) for the integration tests
# and the demo: systemd-container, debootstrap, zstd, iproute2. Its Debian root file system is
# built on first use (testbed/rootfs-systemd.sh).
if [ "$(id -u)" -eq 0 ]; then
  bash "$(dirname "$0")/../testbed/setup.sh"
else
  echo "setup: not root; the host test bed (testbed/setup.sh) needs root and is not installed" >&2
fi
# The S3 Volume tests' endpoint: moto's server in a venv (testbed/s3.sh), from PyPI.
bash "$(dirname "$0")/../testbed/s3.sh" install

#!/usr/bin/env bash
# The quick start: builds nimbus, brings up three local test hosts (systemd-nspawn containers
# booting real systemd and sshd, each in its own network namespace: testbed/), and reconciles
# the demo repository (demo/) onto them over SSH, on the embedded SQLite state: validate,
# plan, apply, a second plan with nothing to do, a hand edit on a host detected as drift and
# corrected, a config change that restarts the service it belongs to, the facts in state.
# The hosts are torn down at the end (KEEP=1 keeps them, and prints how to reach them).
# Needs root (network namespaces, nspawn). Everything it needs is installed by setup scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
bash scripts/setup.sh
cargo build --release -q -p nimbus
nimbus=$here/${CARGO_TARGET_DIR:-target}/release/nimbus
"$nimbus" --version
# The agent nimbus puts on each host for the WireGuard mesh: the same binary, without symbols.
agent=$(mktemp)
objcopy --strip-all "$nimbus" "$agent"
export NIMBUS_AGENT_BINARY=$agent

export TB=${TB:-/tmp/nimbus-demo-bed} BED=${BED:-0}
cache=${NIMBUS_TESTBED_CACHE:-/var/tmp/nimbus-testbed}
scratch=$(mktemp -d)
cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then
    echo "kept: the hosts (ssh -F $TB/ssh_config h1) and the repository in $scratch/repo;"
    echo "      tear down with: TB=$TB BED=$BED bash testbed/hosts-down.sh"
  else
    bash "$here/testbed/hosts-down.sh" >/dev/null 2>&1 || true
    rm -rf "$scratch"
  fi
  rm -f "$agent"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
step "three local hosts: systemd-nspawn containers with systemd and sshd (testbed/hosts-up.sh)"
mkdir -p "$cache"
flock "$cache/.lock" env TB="$cache" bash testbed/rootfs-systemd.sh
N=3 ROOTFS="$cache/rootfs-systemd" bash testbed/hosts-up.sh

cp -r demo "$scratch/repo"
mkdir -p "$scratch/repo/.bed"
cp "$TB/keys/id_ed25519" "$TB/known_hosts" "$scratch/repo/.bed/"
cd "$scratch/repo"
git init -q . && git add -A && git -c user.name=demo -c user.email=demo@example.invalid commit -qm "demo infrastructure"

step "nimbus validate"
"$nimbus" validate .
step "nimbus plan"
"$nimbus" plan .
step "nimbus apply --auto-approve"
"$nimbus" apply --auto-approve .
step "the web server nimbus set up answers on web-1 and web-2"
for ip in 10.233.$BED.11 10.233.$BED.12; do
  python3 -c "import sys, urllib.request; print(sys.argv[1], urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().strip())" "http://$ip:8080/"
done
step "the WireGuard mesh: web-1 pings web-2 and db-1 over their overlay addresses"
ssh -F "$TB/ssh_config" h1 'wg show wg-mesh | grep -E "peer|handshake"; for ip in 10.106.103.2 10.106.103.3; do ping -c 1 -W 2 $ip | tail -1; done'
step "nimbus plan again: nothing to do"
"$nimbus" plan --detailed-exitcode . && echo "(exit code 0: no changes)"
step "someone edits /etc/motd on web-2 and stops the edge service by hand"
ssh -F "$TB/ssh_config" h2 'echo hacked > /etc/motd; systemctl stop edge'
"$nimbus" plan . || true
step "nimbus apply corrects the drift"
"$nimbus" apply --auto-approve .
ssh -F "$TB/ssh_config" h2 'cat /etc/motd; systemctl is-active edge'
step "a change in git: the edge service moves to port 8081 (File/edge-env), and restarts on it"
printf 'PORT=8081\n' >files/edge.env
git commit -qam "edge on 8081"
"$nimbus" plan .
"$nimbus" apply --auto-approve .
python3 -c "import sys, urllib.request; print(sys.argv[1], urllib.request.urlopen(sys.argv[1], timeout=5).status)" "http://10.233.$BED.11:8081/"
step "nimbus state show Host/web-1 (facts observed over SSH); nimbus state history"
"$nimbus" state show Host/web-1
"$nimbus" state history

#!/usr/bin/env bash
# The quick start: builds nimbus, brings up three local test hosts (systemd-nspawn containers
# booting real systemd and sshd, each in its own network namespace: testbed/), and reconciles
# the demo repository (demo/) onto them over SSH, on the embedded SQLite state: validate,
# plan, apply, a second plan with nothing to do, a hand edit on a host detected as drift and
# corrected, a config change that restarts the service it belongs to, a k3s cluster on the
# mesh with a tenant and two workloads (k3s played by the test API server: testbed/k3s/), the
# facts in state.
# The hosts are torn down at the end (KEEP=1 keeps them, and prints how to reach them).
# Needs root (network namespaces, nspawn). Everything it needs is installed by setup scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
bash scripts/setup.sh
cargo build --release -q -p nimbus -p nimbus-kube-testserver
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
step "a k3s cluster on the mesh: db-1 the server, web-1 and web-2 agents; tenant acme, two workloads"
echo "(k3s itself cannot run here: testbed/k3s/k3s plays it, the test API server behind k3s's"
echo " command line; nimbus installs it as it installs k3s: docs/kubernetes.md)"
bash "$here/testbed/k3s/prepare.sh" "$TB/ssh_config" \
  "$here/${CARGO_TARGET_DIR:-target}/release/nimbus-kube-testserver" \
  "10.233.$BED.13,10.106.103.1,10.106.103.2,10.106.103.3" broken h1 h2 h3
mkdir -p bin tenants/acme
cp "$here/testbed/k3s/k3s" bin/k3s
sha=$(sha256sum bin/k3s | cut -d' ' -f1)
printf '%s\n' \
  "apiVersion: nimbus.dev/v1alpha1" "kind: Cluster" "metadata: {name: apps}" "spec:" \
  "  type: k3s" "  servers: {role: db}" "  agents: {role: web}" "  network: mesh" \
  "  k3s: {source: bin/k3s, sha256: $sha}" >cluster.yaml
printf '%s\n' \
  "apiVersion: nimbus.dev/v1alpha1" "kind: Tenant" "metadata: {name: acme}" \
  'spec: {cluster: apps, quota: {pods: 10, cpu: "2", memory: 2Gi}, members: [alice]}' "---" \
  "apiVersion: nimbus.dev/v1alpha1" "kind: Workload" "metadata: {name: web}" \
  'spec: {image: "nginx:1.27", replicas: 2, cpu: 100m, memory: 64Mi, ports: [{port: 80}]}' "---" \
  "apiVersion: nimbus.dev/v1alpha1" "kind: Workload" "metadata: {name: worker}" \
  'spec: {image: "busybox:1.36", replicas: 1, command: [sleep, infinity], env: {MODE: demo}}' \
  >tenants/acme/acme.yaml
git add -A && git commit -qm "a k3s cluster, tenant acme"
"$nimbus" apply --auto-approve .
ssh -F "$TB/ssh_config" h3 'systemctl is-active k3s; grep -o -- "--node-ip [0-9.]* --flannel-iface [^ ]*" /etc/systemd/system/k3s.service'
ssh -F "$TB/ssh_config" h1 'systemctl is-active k3s-agent; grep -o -- "--server [^ ]*" /etc/systemd/system/k3s-agent.service'
"$nimbus" plan --detailed-exitcode . && echo "(exit code 0: no changes)"

step "nimbus state show Host/web-1 (facts observed over SSH); nimbus state history"
"$nimbus" state show Host/web-1
"$nimbus" state history

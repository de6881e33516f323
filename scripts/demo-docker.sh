#!/usr/bin/env bash
# A second demo: a workload on a local Docker Swarm. Brings up three local hosts with their
# own Docker engines (testbed/ in Docker mode: systemd-nspawn containers with systemd, sshd
# and dockerd, each in its own network namespace), loads a small image built here (there is
# no registry), and lets nimbus form the swarm, make a tenant's network and run a service on
# it: every engine is reached through its host's SSH connection only. Then: the service
# answers on every node, a second plan is empty, a hand `docker service scale` is corrected.
# The hosts are torn down at the end (KEEP=1 keeps them). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
bash scripts/setup.sh
cargo build --release -q -p nimbus
nimbus=$here/${CARGO_TARGET_DIR:-target}/release/nimbus
export TB=${TB:-/tmp/nimbus-demo-docker} BED=${BED:-1}
image=nimbus-test/py-tiny:2
scratch=$(mktemp -d)
cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then
    echo "kept: ssh -F $TB/ssh_config h1; the repository in $scratch/repo"
    echo "      tear down with: TB=$TB BED=$BED bash testbed/hosts-down.sh"
  else
    bash "$here/testbed/hosts-down.sh" >/dev/null 2>&1 || true
    rm -rf "$scratch"
  fi
}
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }

step "three local hosts with Docker engines (testbed/hosts-up.sh, DOCKER=1)"
N=3 bash testbed/docker/hosts-up.sh
S="ssh -F $TB/ssh_config"
net=10.233.$BED

step "the repository: three hosts, a swarm, a tenant, a workload"
repo=$scratch/repo; mkdir -p "$repo/tenants/shop"; cp "$TB/known_hosts" "$repo/"
cat >"$repo/nimbus.yaml" <<Y
apiVersion: nimbus.dev/v1alpha1
kind: Repository
metadata: {name: swarm-demo}
spec: {ssh: {identityFile: $TB/keys/id_ed25519, knownHosts: known_hosts}}
Y
for k in 1 2 3; do
  role=""; [ $k = 1 ] && role=", role: manager"
  printf -- '---\napiVersion: nimbus.dev/v1alpha1\nkind: Host\nmetadata: {name: h%s, labels: {swarm: "yes"%s}}\nspec: {address: %s.1%s}\n' $k "$role" $net $k
done >"$repo/hosts.yaml"
cat >"$repo/cluster.yaml" <<Y
apiVersion: nimbus.dev/v1alpha1
kind: Cluster
metadata: {name: swarm}
spec: {type: docker-swarm, managers: {role: manager}, workers: {swarm: "yes"}}
Y
cat >"$repo/tenants/shop/shop.yaml" <<Y
apiVersion: nimbus.dev/v1alpha1
kind: Tenant
metadata: {name: shop}
spec: {cluster: swarm, quota: {cpu: "1", memory: 512Mi}}
---
apiVersion: nimbus.dev/v1alpha1
kind: Workload
metadata: {name: web}
spec:
  image: $image
  replicas: 3
  cpu: 100m
  memory: 64Mi
  ports: [{port: 8000, hostPort: 8080, mode: host}]
Y
cd "$repo"
step "nimbus plan"
"$nimbus" plan .
step "nimbus apply"
"$nimbus" apply --auto-approve .
step "the service answers on every node"
# (a task counts as running once its process started; the server binds its port a moment later)
for k in 1 2 3; do printf 'h%s: ' $k; curl -fsS -m 3 --retry 20 --retry-connrefused --retry-delay 0 "http://$net.1$k:8080/"; done
$S h1 'docker node ls; docker service ls'
step "a second plan has nothing to do"
"$nimbus" plan --detailed-exitcode .
step "scaled by hand to 1, then corrected"
$S h1 'docker service scale -d shop_web=1 >/dev/null'
"$nimbus" plan . | tail -4
"$nimbus" apply --auto-approve . | tail -2
$S h1 'docker service ls'

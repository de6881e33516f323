#!/usr/bin/env bash
# Docker Swarm (issue 11): nimbus against `docker stack deploy`, on the same 3 test hosts
# (testbed/ containers with their own dockerd, joined into one swarm), in one run.
# Each tool deploys 30 single-replica services of the bed's test image, each publishing its
# own port in host mode, and the time is taken until every service answers HTTP on its
# port. Then nimbus's idempotent plan of the 30 services.
#
#   bash bench/docker.sh          # needs root (the test bed); N services: SERVICES=30
set -euo pipefail
cd "$(dirname "$0")/.."
SERVICES=${SERVICES:-30}
PARALLELISM=${PARALLELISM:-10}   # the Repository's parallelism (nimbus's default is 10)
BED=${BED:-92}
TB=${TB:-/tmp/nimbus-bench-docker}
image=nimbus-test/py-tiny:2
. bench/lib.sh
N=3 bash testbed/docker/hosts-up.sh >/dev/null
S="ssh -F $TB/ssh_config"
net=10.233.$BED

# Both tools deploy onto the same swarm, formed first by nimbus (not timed).
repo=$work/repo; mkdir -p "$repo/tenants/bench"
cp "$TB/known_hosts" "$repo/"
cat >"$repo/nimbus.yaml" <<Y
apiVersion: nimbus.dev/v1alpha1
kind: Repository
metadata: {name: bench}
spec: {parallelism: $PARALLELISM, ssh: {identityFile: $TB/keys/id_ed25519, knownHosts: known_hosts}}
Y
for k in 1 2 3; do
  role=""; [ $k = 1 ] && role=", role: manager"
  printf -- '---\napiVersion: nimbus.dev/v1alpha1\nkind: Host\nmetadata: {name: h%s, labels: {swarm: "yes"%s}}\nspec: {address: %s.1%s}\n' $k "$role" $net $k
done >"$repo/hosts.yaml"
printf 'apiVersion: nimbus.dev/v1alpha1\nkind: Cluster\nmetadata: {name: swarm}\nspec: {type: docker-swarm, managers: {role: manager}, workers: {swarm: "yes"}}\n---\napiVersion: nimbus.dev/v1alpha1\nkind: Tenant\nmetadata: {name: bench}\nspec: {cluster: swarm}\n' >"$repo/cluster.yaml"
(cd "$repo" && "$nimbus" apply --auto-approve . >/dev/null)

wait_answers() {   # $1 = first port
  local p
  for p in $(seq "$1" $(( $1 + SERVICES - 1 ))); do
    until curl -fs -m 1 -o /dev/null "http://$net.11:$p/" || curl -fs -m 1 -o /dev/null "http://$net.12:$p/" \
          || curl -fs -m 1 -o /dev/null "http://$net.13:$p/"; do sleep 0.05; done
  done
}

# nimbus: 30 Workloads.
for i in $(seq 1 "$SERVICES"); do
  printf -- '---\napiVersion: nimbus.dev/v1alpha1\nkind: Workload\nmetadata: {name: s%s}\nspec: {image: "%s", replicas: 1, cpu: 50m, memory: 32Mi, ports: [{port: 8000, hostPort: %s, mode: host}]}\n' \
    "$i" "$image" $((8100 + i))
done >"$repo/tenants/bench/services.yaml"
t0=$(now)
(cd "$repo" && "$nimbus" apply --auto-approve . >/dev/null)
wait_answers 8101
t_nimbus=$(echo "$(now) - $t0" | bc)

# docker stack deploy of the same 30 services, from a compose file, on the manager.
{
  echo 'version: "3.8"'; echo 'services:'
  for i in $(seq 1 "$SERVICES"); do
    cat <<C
  s$i:
    image: $image
    deploy:
      replicas: 1
      endpoint_mode: dnsrr
      resources: {limits: {cpus: "0.05", memory: 32M}, reservations: {cpus: "0.05", memory: 32M}}
    ports: [{target: 8000, published: $((8200 + i)), mode: host}]
C
  done
} >"$work/stack.yml"
$S h1 "cat > /root/stack.yml" <"$work/stack.yml"
t0=$(now)
$S h1 "docker stack deploy -c /root/stack.yml stk >/dev/null 2>&1"
wait_answers 8201
t_stack=$(echo "$(now) - $t0" | bc)

# The idempotent plan of the 30 services on 3 nodes (median of 5).
plans=()
for _ in 1 2 3 4 5; do
  t0=$(now); (cd "$repo" && "$nimbus" plan --detailed-exitcode . >/dev/null); plans+=("$(echo "$(now) - $t0" | bc)")
done
t_plan=$(printf '%s\n' "${plans[@]}" | sort -g | sed -n 3p)

printf '\n%-44s %8s\n' "run ($SERVICES services, 3 nodes, parallelism $PARALLELISM)" "seconds"
printf '%-44s %8.2f\n' "nimbus apply, until every service answers" "$t_nimbus"
printf '%-44s %8.2f\n' "docker stack deploy, until every one answers" "$t_stack"
printf '%-44s %8.3f\n' "nimbus idempotent plan (median of 5)" "$t_plan"
printf 'nimbus / docker stack deploy: %.2fx\n' "$(echo "$t_nimbus / $t_stack" | bc -l)"

#!/usr/bin/env bash
# WireGuard mesh (issue 12): nimbus builds a full mesh of N test hosts from nothing (the agent
# put on each over SSH, keys made on the hosts, wireguard-go in userspace), then one host is
# added. Prints:
#   - mesh from nothing: seconds from `nimbus apply` starting until every pair of the N hosts
#     has a handshake (checked on every host with `wg show latest-handshakes`);
#   - the idempotent plan of the N-host mesh (median of REPEAT runs);
#   - one host added: seconds from `nimbus apply` starting until all N others list its key
#     and each of them has pinged its overlay address.
# Anchors (not run here): innernet polls for new peers every 60 s; headscale takes about 7 s
# to spread a peer at 650 nodes.
#
#   bash bench/mesh.sh                  # N=20 REPEAT=5; needs root (the test bed)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20}
REPEAT=${REPEAT:-5}
BED=${BED:-93}
TB=${TB:-/tmp/nimbus-bench-mesh}
cache=${NIMBUS_TESTBED_CACHE:-/var/tmp/nimbus-testbed}
. bench/lib.sh
# The agent as shipped: the release binary without its symbols.
objcopy --strip-all "$nimbus" "$work/nimbus-agent"
export NIMBUS_AGENT_BINARY=$work/nimbus-agent
mkdir -p "$cache"
flock "$cache/.lock" env TB="$cache" bash testbed/rootfs-systemd.sh >/dev/null
N=$((N + 1)) ROOTFS="$cache/rootfs-systemd" bash testbed/hosts-up.sh >/dev/null


r=$work/repo
bed_repo "$r" mesh 64
cat >"$r/network.yaml" <<EOF
apiVersion: nimbus.dev/v1alpha1
kind: Network
metadata: {name: mesh}
spec: {members: {mesh: "yes"}}
EOF
hosts_yaml() {   # $1 = how many of the hosts are members
  for k in $(seq 1 $((N + 1))); do
    local member=no; [ "$k" -le "$1" ] && member=yes
    printf -- '---\napiVersion: nimbus.dev/v1alpha1\nkind: Host\nmetadata: {name: h%s, labels: {mesh: "%s"}}\nspec: {address: 10.233.%s.%s}\n' "$k" "$member" "$BED" "$((10 + k))"
  done >"$r/hosts.yaml"
}
# Hosts first (facts read), so that the timings below are the mesh's own.
hosts_yaml 0
(cd "$r" && "$nimbus" apply --auto-approve . >/dev/null)

# Every pair with a handshake: on each host, as many non-zero latest handshakes as peers.
all_handshakes() {   # $1 = number of members
  local k
  for k in $(seq 1 "$1"); do
    S "h$k" "wg show wg-mesh latest-handshakes 2>/dev/null | awk '\$2 > 0' | wc -l" | grep -qx "$(($1 - 1))" || return 1
  done
}

hosts_yaml "$N"
start=$(now)
(cd "$r" && "$nimbus" apply --auto-approve . >"$work/apply1.log" 2>&1) || { cat "$work/apply1.log"; exit 1; }
applied=$(now)
until all_handshakes "$N"; do sleep 0.2; done
meshed=$(now)

plans=()
for _ in $(seq "$REPEAT"); do
  t0=$(now)
  (cd "$r" && "$nimbus" plan --detailed-exitcode . >"$work/plan.log" 2>&1) || { cat "$work/plan.log"; echo "the plan is not empty"; exit 1; }
  plans+=("$(since "$(now)" "$t0")")
done

# One host added: every member lists its key and pings it.
new=h$((N + 1))
hosts_yaml $((N + 1))
start2=$(now)
(cd "$r" && "$nimbus" apply --auto-approve . >"$work/apply2.log" 2>&1) || { cat "$work/apply2.log"; exit 1; }
applied2=$(now)
key=$(S "$new" "wg show wg-mesh public-key")
address=$(S "$new" "ip -4 -o address show dev wg-mesh" | awk '{print $4}' | cut -d/ -f1)
reach() {   # $1 = member: lists the new key and pings the new address
  local deadline=$(( $(date +%s) + 60 ))
  until S "$1" "wg show wg-mesh peers | grep -qx '$key' && ping -c 1 -W 1 $address >/dev/null"; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "h$1 never reached $new" >&2; return 1; }
  done
  now >"$work/reached-$1"
}
for k in $(seq 1 "$N"); do reach "h$k" & done
wait
last=$(cat "$work"/reached-* | sort -g | tail -1)

printf '\nWireGuard mesh of %s test hosts (wireguard-go), nimbus %s\n' "$N" "$("$nimbus" --version | awk '{print $2}')"
printf '  mesh from nothing: apply %.2f s; every pair with a handshake %.2f s after apply started\n' \
  "$(since "$applied" "$start")" "$(since "$meshed" "$start")"
printf '  idempotent plan of the %s-host mesh: %.3f s (median of %s)\n' "$N" "$(printf '%s\n' "${plans[@]}" | median)" "$REPEAT"
printf '  one host added (%s at %s): apply %.2f s; listed and pinged by all %s others %.2f s after apply started\n' \
  "$new" "$address" "$(since "$applied2" "$start2")" "$N" "$(since "$last" "$start2")"
printf '  anchors (not run here): innernet polls every 60 s; headscale ~7 s to spread a peer at 650 nodes\n'

#!/usr/bin/env bash
# Issue 28: `nimbus discover` of N hosts (default 30) against an idempotent `nimbus plan` of the
# same hosts, in one run, alternating, median of REPEAT runs each. Each host (testbed/
# containers: systemd-nspawn, real systemd and sshd, own netns) has what nimbus manages (5 Files
# and a Service, applied first) and things made by hand for discovery to find (20 files under
# /etc/legacy and a unit). The goal: discovery takes no more than 2x the plan.
#
#   sudo bash bench/discover.sh          # N=30 REPEAT=5
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
N=${N:-30}
REPEAT=${REPEAT:-5}
BED=${BED:-91}
TB=${TB:-/tmp/nimbus-bench-discover}
cache=${NIMBUS_TESTBED_CACHE:-/var/tmp/nimbus-testbed}
work=$(mktemp -d)
export TB BED

cleanup() {
  bash "$here/testbed/hosts-down.sh" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

bash scripts/setup.sh >/dev/null
cargo build --release -q -p nimbus
nimbus=$here/${CARGO_TARGET_DIR:-target}/release/nimbus
mkdir -p "$cache"
flock "$cache/.lock" env TB="$cache" bash testbed/rootfs-systemd.sh >/dev/null
echo "== $N hosts (bring-up: testbed/hosts-up.sh)"
N=$N ROOTFS="$cache/rootfs-systemd" bash testbed/hosts-up.sh | tail -1

r=$work/repo
mkdir -p "$r/.bed"
cp "$TB/keys/id_ed25519" "$TB/known_hosts" "$r/.bed/"
cat >"$r/nimbus.yaml" <<EOF
apiVersion: nimbus.dev/v1alpha1
kind: Repository
metadata: {name: bench}
spec:
  parallelism: 64
  ssh: {user: root, identityFile: .bed/id_ed25519, knownHosts: .bed/known_hosts}
EOF
for k in $(seq 1 "$N"); do
  printf -- '---\napiVersion: nimbus.dev/v1alpha1\nkind: Host\nmetadata: {name: h%s, labels: {bench: "yes"}}\nspec: {address: 10.233.%s.%s}\n' "$k" "$BED" "$((10+k))"
done >"$r/hosts.yaml"
for i in 1 2 3 4 5; do
  printf -- '---\napiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata: {name: file%s}\nspec:\n  hosts: {bench: "yes"}\n  path: /srv/bench/file%s.conf\n  content: "file %s\\n"\n' "$i" "$i" "$i"
done >"$r/files.yaml"
printf 'apiVersion: nimbus.dev/v1alpha1\nkind: Service\nmetadata: {name: bench}\nspec:\n  hosts: {bench: "yes"}\n  unit: |\n    [Service]\n    ExecStart=/bin/sleep infinity\n    [Install]\n    WantedBy=multi-user.target\n' >"$r/service.yaml"
(cd "$r" && "$nimbus" apply --auto-approve . >"$work/apply.log" 2>&1) || { tail -20 "$work/apply.log"; exit 1; }
for k in $(seq 1 "$N"); do
  ssh -F "$TB/ssh_config" "h$k" 'mkdir -p /etc/legacy && for i in $(seq 1 20); do echo "setting $i" > /etc/legacy/f$i.conf; done && printf "[Service]\nExecStart=/bin/sleep infinity\n" > /etc/systemd/system/legacy.service' &
done
wait

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
plans=(); discovers=()
for _ in $(seq 1 "$REPEAT"); do
  t0=$(now); (cd "$r" && "$nimbus" plan --detailed-exitcode . >"$work/plan.log" 2>&1) || { cat "$work/plan.log"; echo "the plan is not empty" >&2; exit 1; }; t1=$(now)
  plans+=("$(python3 -c "print(f'{$t1-$t0:.3f}')")")
  t0=$(now); (cd "$r" && "$nimbus" discover --path /etc/legacy --path /srv/bench . >"$work/discover.log" 2>&1) || { cat "$work/discover.log"; exit 1; }; t1=$(now)
  discovers+=("$(python3 -c "print(f'{$t1-$t0:.3f}')")")
done
found=$(head -1 "$work/discover.log")
p=$(printf '%s\n' "${plans[@]}" | median)
d=$(printf '%s\n' "${discovers[@]}" | median)
echo "  idempotent plan: median $p s (runs: ${plans[*]})"
echo "  discover:        median $d s (runs: ${discovers[*]}); $found"
echo "  discover / plan: $(python3 -c "print(f'{$d/$p:.2f}')")"

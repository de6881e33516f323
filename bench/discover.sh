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
N=${N:-30}
REPEAT=${REPEAT:-5}
BED=${BED:-91}
TB=${TB:-/tmp/nimbus-bench-discover}
cache=${NIMBUS_TESTBED_CACHE:-/var/tmp/nimbus-testbed}
. bench/lib.sh
mkdir -p "$cache"
flock "$cache/.lock" env TB="$cache" bash testbed/rootfs-systemd.sh >/dev/null
echo "== $N hosts (bring-up: testbed/hosts-up.sh)"
N=$N ROOTFS="$cache/rootfs-systemd" bash testbed/hosts-up.sh | tail -1

r=$work/repo
bed_repo "$r" bench 64
for k in $(seq 1 "$N"); do
  printf -- '---\napiVersion: nimbus.dev/v1alpha1\nkind: Host\nmetadata: {name: h%s, labels: {bench: "yes"}}\nspec: {address: 10.233.%s.%s}\n' "$k" "$BED" "$((10+k))"
done >"$r/hosts.yaml"
for i in 1 2 3 4 5; do
  printf -- '---\napiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata: {name: file%s}\nspec:\n  hosts: {bench: "yes"}\n  path: /srv/bench/file%s.conf\n  content: "file %s\\n"\n' "$i" "$i" "$i"
done >"$r/files.yaml"
printf 'apiVersion: nimbus.dev/v1alpha1\nkind: Service\nmetadata: {name: bench}\nspec:\n  hosts: {bench: "yes"}\n  unit: |\n    [Service]\n    ExecStart=/bin/sleep infinity\n    [Install]\n    WantedBy=multi-user.target\n' >"$r/service.yaml"
(cd "$r" && "$nimbus" apply --auto-approve . >"$work/apply.log" 2>&1) || { tail -20 "$work/apply.log"; exit 1; }
for k in $(seq 1 "$N"); do
  S "h$k" 'mkdir -p /etc/legacy && for i in $(seq 1 20); do echo "setting $i" > /etc/legacy/f$i.conf; done && printf "[Service]\nExecStart=/bin/sleep infinity\n" > /etc/systemd/system/legacy.service' &
done
wait

plans=(); discovers=()
for _ in $(seq 1 "$REPEAT"); do
  t0=$(now); (cd "$r" && "$nimbus" plan --detailed-exitcode . >"$work/plan.log" 2>&1) || { cat "$work/plan.log"; echo "the plan is not empty" >&2; exit 1; }; t1=$(now)
  plans+=("$(since "$t1" "$t0")")
  t0=$(now); (cd "$r" && "$nimbus" discover --path /etc/legacy --path /srv/bench . >"$work/discover.log" 2>&1) || { cat "$work/discover.log"; exit 1; }; t1=$(now)
  discovers+=("$(since "$t1" "$t0")")
done
found=$(head -1 "$work/discover.log")
p=$(printf '%s\n' "${plans[@]}" | median)
d=$(printf '%s\n' "${discovers[@]}" | median)
echo "  idempotent plan: median $p s (runs: ${plans[*]})"
echo "  discover:        median $d s (runs: ${discovers[*]}); $found"
echo "  discover / plan: $(python3 -c "print(f'{$d/$p:.2f}')")"

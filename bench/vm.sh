#!/usr/bin/env bash
# VMs (issue 14): plan-to-ready of the busybox test guest under TCG (no KVM here), nimbus
# against the same qemu command started by hand, on one test-bed host, in one run.
#   nimbus:  from the start of `nimbus apply` (which plans first) of a VM until the guest prints
#            NIMBUS-READY on its serial console;
#   by hand: from the start of an `ssh` that runs the very command line of nimbus's unit
#            (another disk, serial log and QMP socket) until the same marker.
# Both are timed from this machine, and both wait for the marker inside one ssh call. REPEAT
# runs each (default 5); prints medians and nimbus's overhead.
#
#   bash bench/vm.sh        # needs root (the test bed)
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT=${REPEAT:-5}
BED=${BED:-94}
TB=${TB:-/tmp/nimbus-bench-vm}
cache=${NIMBUS_TESTBED_CACHE:-/var/tmp/nimbus-testbed}
. bench/lib.sh
mkdir -p "$cache"
flock "$cache/.lock" env TB="$cache" bash testbed/rootfs-systemd.sh >/dev/null
flock "$cache/.lock" env SRC="$cache/rootfs-systemd" DST="$cache/rootfs-vm" bash testbed/vm/rootfs-vm.sh >/dev/null
flock "$cache/.lock" env OUT="$cache/guest" bash testbed/vm/guest.sh >/dev/null
N=1 ROOTFS="$cache/rootfs-vm" bash testbed/hosts-up.sh >/dev/null
S h1 'mkdir -p /srv/guest && cat > /srv/guest/vmlinux' <"$cache/guest/vmlinux"
S h1 'cat > /srv/guest/initrd.cpio.gz' <"$cache/guest/initrd.cpio.gz"


r=$work/repo
bed_repo "$r" vm
cat >"$r/hosts.yaml" <<EOF
apiVersion: nimbus.dev/v1alpha1
kind: Host
metadata: {name: h1}
spec: {address: 10.233.$BED.11}
EOF
vm_yaml() {
  cat <<EOF
apiVersion: nimbus.dev/v1alpha1
kind: VM
metadata: {name: guest}
spec:
  host: h1
  cpus: 1
  memory: 128Mi
  disk: {size: 64Mi}
  boot: {kernel: /srv/guest/vmlinux, initrd: /srv/guest/initrd.cpio.gz, cmdline: "console=ttyS0 quiet panic=-1"}
  ports: [{port: 80, hostPort: 8080}]
EOF
}
(cd "$r" && "$nimbus" apply --auto-approve . >/dev/null)   # the Host's facts, first

wait_ready='until grep -qa NIMBUS-READY "$0" 2>/dev/null; do sleep 0.02; done'
nimbus_times=() hand_times=()
for i in $(seq "$REPEAT"); do
  vm_yaml >"$r/vm.yaml"
  t0=$(now)
  (cd "$r" && "$nimbus" apply --auto-approve . >"$work/apply.log" 2>&1) || { cat "$work/apply.log"; exit 1; }
  S h1 "sh -c '$wait_ready' /var/lib/nimbus/vms/guest/serial.log"
  nimbus_times+=("$(since "$(now)" "$t0")")
  # The same command line, by hand: the unit's ExecStart with its own files.
  cmd=$(S h1 "sed -n 's/^ExecStart=//p' /etc/systemd/system/nimbus-vm-guest.service" | sed 's#/var/lib/nimbus/vms/guest/#/tmp/hand/#g; s#hostfwd=tcp::8080#hostfwd=tcp::8081#')
  S h1 "rm -rf /tmp/hand; mkdir -p /tmp/hand; qemu-img create -q -f qcow2 /tmp/hand/disk.qcow2 64M"
  printf '%s -daemonize -pidfile /tmp/hand/pid\n' "$cmd" | S h1 'cat > /tmp/hand/run.sh'
  t0=$(now)
  S h1 "sh /tmp/hand/run.sh && sh -c '$wait_ready' /tmp/hand/serial.log"
  hand_times+=("$(since "$(now)" "$t0")")
  S h1 'kill "$(cat /tmp/hand/pid)"; rm -rf /tmp/hand'
  rm "$r/vm.yaml"
  (cd "$r" && "$nimbus" apply --auto-approve . >/dev/null)
done

n=$(printf '%s\n' "${nimbus_times[@]}" | median)
h=$(printf '%s\n' "${hand_times[@]}" | median)
printf '\nbusybox guest under TCG, plan to NIMBUS-READY on the serial console (median of %s)\n' "$REPEAT"
printf '  nimbus apply (plan, unit, disk, start, QMP):  %.3f s   runs: %s\n' "$n" "${nimbus_times[*]}"
printf '  the same qemu command by hand over ssh:       %.3f s   runs: %s\n' "$h" "${hand_times[*]}"
printf '  overhead of nimbus: %.3f s\n' "$(since "$n" "$h")"

#!/usr/bin/env bash
# rootfs-vm.sh — variant of the test bed's pristine rootfs for VM hosts: qemu-system-x86 (TCG:
# there is no KVM on these machines), qemu-utils and btrfs-progs, from Debian's bookworm
# suites (inside the container, bookworm's qemu 7.2; the build machine's backported qemu-utils
# does not matter there).
#   SRC=/var/tmp/nimbus-testbed/rootfs-systemd DST=/var/tmp/nimbus-testbed/rootfs-vm bash rootfs-vm.sh
# Copies SRC (never modifies it); apt-get install in a chroot with a policy-rc.d so nothing
# starts. Cached: does nothing when DST has this script's stamp.
set -euo pipefail
SRC=${SRC:-/var/tmp/nimbus-testbed/rootfs-systemd}
DST=${DST:-/var/tmp/nimbus-testbed/rootfs-vm}
PKGS="qemu-system-x86 qemu-utils btrfs-progs nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils genisoimage"
STAMP="v1 $PKGS"
[ -f "$DST/etc/nimbus-vm.stamp" ] && [ "$(cat "$DST/etc/nimbus-vm.stamp")" = "$STAMP" ] && { echo "$DST ready (existing)"; exit 0; }
t0=${EPOCHREALTIME/./}
rm -rf "$DST" "$DST.new"
cp -a "$SRC" "$DST.new"
R=$DST.new
cp /etc/resolv.conf "$R/etc/resolv.conf.apt"; mv "$R/etc/resolv.conf" "$R/etc/resolv.conf.keep"; mv "$R/etc/resolv.conf.apt" "$R/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"; chmod +x "$R/usr/sbin/policy-rc.d"
mount -t proc proc "$R/proc"; mount --rbind /dev "$R/dev"; mount --make-rslave "$R/dev"
cleanup() { umount "$R/proc" 2>/dev/null || true; umount -R "$R/dev" 2>/dev/null || true; }
trap cleanup EXIT
chroot "$R" apt-get update -qq
DEBIAN_FRONTEND=noninteractive chroot "$R" apt-get install -y -q --no-install-recommends $PKGS >"$DST.apt.log" 2>&1 || { tail -30 "$DST.apt.log"; exit 1; }
cleanup; trap - EXIT
rm -f "$R/usr/sbin/policy-rc.d"
mv "$R/etc/resolv.conf.keep" "$R/etc/resolv.conf"
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/cache/apt/*.bin "$R"/var/lib/apt/lists/*_Packages "$R"/var/lib/apt/lists/*_InRelease
echo "$STAMP" >"$R/etc/nimbus-vm.stamp"
mv "$R" "$DST"
echo "$DST ready in $(( (${EPOCHREALTIME/./} - t0) / 1000 )) ms"

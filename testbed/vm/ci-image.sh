#!/usr/bin/env bash
# ci-image.sh (adapted from shared/testbed/vm/mk-ci-image.sh) — a Debian 12 guest with
# cloud-init, for the one test that boots a guest from a NoCloud seed: debootstrap (kernel,
# cloud-init) -> an ext4 image made from the directory (mke2fs -d: no loop device, no mount)
# -> base.qcow2; its kernel (uncompressed) and initrd are copied out for a direct kernel boot.
#   OUT=/var/tmp/nimbus-testbed/ci bash testbed/vm/ci-image.sh  -> $OUT/base.qcow2, vmlinux, initrd.img
# Cached: does nothing when the three files are there with this script's stamp.
set -euo pipefail
OUT=${OUT:-/var/tmp/nimbus-testbed/ci}; R=$OUT/rootfs
STAMP="v1 bookworm cloud-init nocloud"
[ -s "$OUT/base.qcow2" ] && [ -s "$OUT/vmlinux" ] && [ -s "$OUT/initrd.img" ] && [ "$(cat "$OUT/stamp" 2>/dev/null)" = "$STAMP" ] && { echo "$OUT ready (existing)"; exit 0; }
for tool in debootstrap mke2fs qemu-img; do
  command -v $tool >/dev/null || { echo "ci-image.sh: $tool is missing (testbed/setup.sh installs it)" >&2; exit 1; }
done
mkdir -p "$OUT"
t0=${EPOCHREALTIME/./}
if [ ! -x "$R/usr/bin/cloud-init" ]; then
  rm -rf "$R"
  # python3-cffi-backend must be named: debootstrap does not resolve the virtual
  # python3-cffi-backend-api-* that python3-cryptography (cloud-init -> oauthlib) depends on
  debootstrap --variant=minbase --include=systemd-sysv,udev,dbus,linux-image-amd64,initramfs-tools,\
cloud-init,python3-cffi-backend,ifupdown,isc-dhcp-client,iproute2,e2fsprogs,netbase \
    bookworm "$R" >"$OUT/debootstrap.log" 2>&1 || { tail -20 "$OUT/debootstrap.log"; exit 1; }
fi
rm -f "$R/usr/sbin/policy-rc.d"
: >"$R/etc/machine-id"; rm -f "$R/var/lib/dbus/machine-id"
printf 'nameserver 127.0.0.1\n' >"$R/etc/resolv.conf"
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' >"$R/etc/fstab"
# Only the NoCloud datasource (no probing of cloud metadata addresses); locale C.UTF-8 (the
# default en_US.UTF-8 is not generated: cc_locale would fail).
printf 'datasource_list: [ NoCloud, None ]\nlocale: C.UTF-8\n' >"$R/etc/cloud/cloud.cfg.d/90-nimbus.cfg"
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
  systemctl --root="$R" disable "$u" >/dev/null 2>&1 || true; done
KV=$(ls "$R/lib/modules" | sort -V | tail -1)
cp "$R/boot/initrd.img-$KV" "$OUT/initrd.img"
python3 -c 'import lzma,sys; d=open(sys.argv[1],"rb").read(); i=d.find(b"\xfd7zXZ\x00"); open(sys.argv[2],"wb").write(lzma.LZMADecompressor().decompress(d[i:]))' "$R/boot/vmlinuz-$KV" "$OUT/vmlinux"
rm -f "$OUT/root.raw"; truncate -s 2G "$OUT/root.raw"
mke2fs -q -t ext4 -L root -d "$R" "$OUT/root.raw"
qemu-img convert -O qcow2 "$OUT/root.raw" "$OUT/base.qcow2"; rm -f "$OUT/root.raw"
echo "$STAMP" >"$OUT/stamp"
echo "kernel $KV; base.qcow2 $(du -h "$OUT/base.qcow2" | cut -f1) in $(( (${EPOCHREALTIME/./} - t0) / 1000 )) ms"

#!/usr/bin/env bash
# guest.sh — the smallest bootable guest for the VM tests (adapted from the measured recipe in
# shared/testbed/vm/mk-initramfs.sh): Debian's kernel, unpacked (not installed), as an
# uncompressed vmlinux (qemu boots it directly through its PVH note, which under TCG saves the
# 3-5 s of the BIOS path and decompression), and a busybox-static initramfs that loads the
# virtio modules, configures eth0 from the kernel command line (nimbus.ip=ADDR/PFX,
# nimbus.gw=ADDR), serves HTTP on :80 and prints NIMBUS-READY on the serial console.
#   OUT=/var/tmp/nimbus-testbed/guest bash testbed/vm/guest.sh  -> $OUT/vmlinux, $OUT/initrd.cpio.gz
# Cached: does nothing when both files are there.
set -euo pipefail
OUT=${OUT:-/var/tmp/nimbus-testbed/guest}
STAMP="v4 acpi-poweroff evdev log"
[ -s "$OUT/vmlinux" ] && [ -s "$OUT/initrd.cpio.gz" ] && [ "$(cat "$OUT/stamp" 2>/dev/null)" = "$STAMP" ] && { echo "$OUT ready (existing)"; exit 0; }
W=$OUT/work; mkdir -p "$W/dl"
cd "$W/dl"
K=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
ls linux-image-*.deb >/dev/null 2>&1 || apt-get download "$K" busybox-static >/dev/null 2>&1
rm -rf "$W/k" "$W/bb" "$W/root"; mkdir -p "$W/k" "$W/bb"
dpkg-deb -x linux-image-*.deb "$W/k"; dpkg-deb -x busybox-static*.deb "$W/bb"
KV=$(ls "$W/k/lib/modules"); M=$W/k/lib/modules/$KV/kernel
python3 -c 'import lzma,sys; d=open(sys.argv[1],"rb").read(); i=d.find(b"\xfd7zXZ\x00"); open(sys.argv[2],"wb").write(lzma.LZMADecompressor().decompress(d[i:]))' "$W/k/boot/vmlinuz-$KV" "$OUT/vmlinux.new"
R=$W/root; mkdir -p "$R"/{bin,sbin,proc,sys,dev,tmp,etc,mods,www,usr/bin,usr/sbin}
cp "$W/bb/bin/busybox" "$R/bin/busybox"
for a in $("$R/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"; done
# load order = dependency order (no depmod/modprobe needed)
for m in drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev \
         drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci net/core/failover \
         drivers/net/net_failover drivers/net/virtio_net drivers/block/virtio_blk drivers/char/virtio_console \
         drivers/input/evdev drivers/acpi/button; do
  f=$(ls "$M/$m.ko" 2>/dev/null || find "$M" -name "$(basename $m).ko" | head -1); [ -n "$f" ] && cp "$f" "$R/mods/"
done
echo '<h1>nimbus guest</h1>' >"$R/www/index.html"
cat >"$R/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net virtio_blk virtio_console evdev button; do
  insmod /mods/$m.ko 2>/dev/null
done
ip link set lo up
for w in $(cat /proc/cmdline); do case $w in nimbus.ip=*) IP=${w#nimbus.ip=};; nimbus.gw=*) GW=${w#nimbus.gw=};; esac; done
if [ -n "$IP" ]; then
  i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
  ip addr add "$IP" dev eth0; ip link set eth0 up
  [ -n "$GW" ] && ip route add default via "$GW"
fi
httpd -h /www -p 80
# The ACPI power button (qemu's system_powerdown) powers the guest off: busybox acpid runs
# ./PWRF/00000080 (the power button's event) from its configuration folder.
mkdir -p /etc/acpi/PWRF
printf '#!/bin/sh\necho NIMBUS-POWEROFF\npoweroff -f\n' > /etc/acpi/PWRF/00000080
chmod +x /etc/acpi/PWRF/00000080
acpid -c /etc/acpi -l /tmp/acpid.log 2>/dev/null || true
echo "acpi: $(ls /dev/input 2>/dev/null | tr '\n' ' ') acpid=$(pidof acpid)"
echo "NIMBUS-READY uptime=$(cut -d' ' -f1 /proc/uptime) ip=$IP memory=$(awk '/MemTotal/{print $2}' /proc/meminfo)"
exec sh -c 'while :; do sleep 3600; done'
INIT
chmod +x "$R/init"
( cd "$R" && find . | "$W/bb/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1 ) >"$OUT/initrd.cpio.gz.new"
mv "$OUT/vmlinux.new" "$OUT/vmlinux"; mv "$OUT/initrd.cpio.gz.new" "$OUT/initrd.cpio.gz"
echo "$STAMP" >"$OUT/stamp"
rm -rf "$W"
echo "kernel $KV: $OUT/vmlinux ($(du -h "$OUT/vmlinux" | cut -f1)), $OUT/initrd.cpio.gz ($(du -h "$OUT/initrd.cpio.gz" | cut -f1))"

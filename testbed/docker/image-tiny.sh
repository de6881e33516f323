#!/usr/bin/env bash
# image-tiny.sh — a small python3 http.server image with no registry: FROM scratch + ADD of a
# rootfs tar holding only python3, its shared libs and a trimmed stdlib (taken from the test
# bed's rootfs). Prints the image size. ROOTFS, TAG overridable.
set -euo pipefail
ROOTFS=${ROOTFS:-/var/tmp/nimbus-testbed/rootfs-systemd}
TAG=${TAG:-nimbus-test/py-tiny:1}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
R=$W/root; mkdir -p "$R"/{usr/bin,tmp,srv,etc} ; chmod 1777 "$R/tmp"
PY=$(readlink -f "$ROOTFS/usr/bin/python3"); PY=${PY#$ROOTFS}
cp -a "$ROOTFS$PY" "$R$PY"; ln -s "$(basename "$PY")" "$R/usr/bin/python3"
# shared libs: ldd run in a chroot of the rootfs (paths as the rootfs sees them)
for l in $(chroot "$ROOTFS" ldd "$PY" | awk '/=> \//{print $3} /^\s*\/lib/{print $1}') /lib64/ld-linux-x86-64.so.2; do
  mkdir -p "$R$(dirname "$l")"; cp -aL "$ROOTFS$l" "$R$l"; done
V=$(basename "$PY")     # python3.11
mkdir -p "$R/usr/lib/$V"
tar -C "$ROOTFS/usr/lib/$V" --exclude=test --exclude=idlelib --exclude=tkinter --exclude=turtledemo \
    --exclude=lib2to3 --exclude=ensurepip --exclude=pydoc_data --exclude=site-packages --exclude=dist-packages \
    --exclude=config-\* -cf - . | tar -C "$R/usr/lib/$V" -xf -
# mimetypes/socket need a few /etc files; nobody user for the server
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$R/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$R/etc/group"
echo '<h1>nimbus test</h1>' >"$R/srv/index.html"
tar --numeric-owner -C "$R" -cf "$W/rootfs.tar" .
cat >"$W/Dockerfile" <<'DF'
FROM scratch
ADD rootfs.tar /
WORKDIR /srv
EXPOSE 8000
USER 65534
# python as PID 1 ignores SIGTERM: stop it with SIGINT, not after the 10 s grace period
STOPSIGNAL SIGINT
CMD ["/usr/bin/python3", "-m", "http.server", "8000"]
DF
docker build -q -t "$TAG" "$W"
docker image inspect -f '{{.Size}}' "$TAG" | awk -v t="$TAG" '{printf "%s: %.1f MB\n", t, $1/1e6}'

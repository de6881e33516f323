#!/usr/bin/env bash
# image-base.sh — a Debian 12 slim base image made here, for building nimbus's own image
# (deploy/Dockerfile) on machines with no registry: debootstrap --variant=minbase with
# ca-certificates and openssh-client (what the image's runtime stage needs), trimmed like
# Debian's own -slim images (no docs, man pages, locales or apt lists), imported with
# `docker import`. The root file system is cached as a tar under NIMBUS_TESTBED_CACHE, so a
# second machine run only imports it. Prints the image's tag.
#   bash testbed/docker/image-base.sh          # TAG=nimbus-local/debian:bookworm-slim
set -euo pipefail
cache=${NIMBUS_TESTBED_CACHE:-/var/tmp/nimbus-testbed}
TAG=${TAG:-nimbus-local/debian:bookworm-slim}
STAMP="v1 bookworm minbase ca-certificates,openssh-client"
tar_file=$cache/debian-slim.tar
mkdir -p "$cache"
exec 9>>"$cache/.base-lock"
flock 9
if docker image inspect "$TAG" >/dev/null 2>&1 \
   && [ "$(docker image inspect -f '{{index .Config.Labels "nimbus.base"}}' "$TAG")" = "$STAMP" ]; then
  echo "$TAG"; exit 0
fi
if [ ! -f "$tar_file" ] || [ "$(cat "$tar_file.stamp" 2>/dev/null)" != "$STAMP" ]; then
  command -v debootstrap >/dev/null || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }
  R=$(mktemp -d "$cache/debian-slim.XXXXXX")
  trap 'rm -rf "$R"' EXIT
  echo "image-base: debootstrap bookworm (Debian's default mirror), log in $cache/debian-slim.log" >&2
  if ! debootstrap --variant=minbase --include=ca-certificates,openssh-client bookworm "$R" \
      >"$cache/debian-slim.log" 2>&1; then
    tail -20 "$cache/debian-slim.log" >&2; echo "image-base: debootstrap failed" >&2; exit 1
  fi
  # What Debian's slim images leave out; the machine's resolver and name are the container's.
  rm -rf "$R"/usr/share/doc/* "$R"/usr/share/man/* "$R"/usr/share/info/* "$R"/var/lib/apt/lists/* \
         "$R"/var/cache/apt/*.bin "$R"/var/cache/apt/archives/*.deb "$R"/var/log/*.log
  find "$R/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
  : >"$R/etc/resolv.conf"; echo localhost >"$R/etc/hostname"
  tar --numeric-owner -C "$R" -cf "$tar_file.tmp" . && mv "$tar_file.tmp" "$tar_file"
  echo "$STAMP" >"$tar_file.stamp"
fi
docker import -c "LABEL nimbus.base=\"$STAMP\"" -c 'CMD ["/bin/bash"]' "$tar_file" "$TAG" >/dev/null
echo "$TAG"
